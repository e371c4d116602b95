"""Review regressions for the write side's deadlines and backpressure: a closing download
that still progresses is not cut off, an idle timeout does not fire on a peer that is
taking our replies while we hold its requests, a slow but steady reader outlives
``write_timeout``, and the deadlines refuse values that would break the loop's timers."""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import client_socket, listen, scenario

from statewire._reactor import Reactor
from statewire.machine import Timeout
from statewire.protocol import Factory, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import upload

TRANSPORTS = pytest.mark.parametrize("native", [False, True], ids=["socket", "native"])
MiB = 1 << 20


async def _client(port: int, send: bytes = b"", rcvbuf: int = 65536) -> socket.socket:
    return await client_socket(port, send, rcvbuf)


async def _read_slowly(sock: socket.socket, step: int, pause: float, limit: float) -> bytes:
    """Read ``step`` bytes every ``pause`` seconds until EOF (``limit`` seconds at most);
    a reset raises."""
    loop = asyncio.get_running_loop()
    got = bytearray()

    async def go() -> None:
        while True:
            await asyncio.sleep(pause)
            chunk = await loop.sock_recv(sock, step)
            if not chunk:
                return
            got.extend(chunk)

    await asyncio.wait_for(go(), limit)
    return bytes(got)


class Download(Protocol):
    """Writes ``size`` bytes and closes at once, with a short ``close_timeout``."""

    size = 6 * MiB

    def connectionMade(self) -> None:
        self.transport.close_timeout = 0.5
        self.transport.write(bytes(self.size))
        self.transport.loseConnection()


@TRANSPORTS
def test_a_closing_download_that_progresses_is_not_cut_off(native: bool) -> None:
    """``close_timeout`` ends a close the peer does not take part in; a peer reading
    steadily (here 6 MiB at about 2.5 MiB/s, far longer than the 0.5 s deadline) gets
    every byte, then a clean EOF."""

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Download))
        sock = await _client(port)
        got = await _read_slowly(sock, 256 * 1024, 0.1, 30)
        sock.close()
        assert len(got) == Download.size

    scenario(body, timeout=40, native=native)


class Patient(upload.UploadServer):
    """upload with a short idle timeout."""

    timeouts = {
        state: Timeout(0.4, upload.Commands.idle, idle=True)
        for state in (upload.anonymous, upload.ready, upload.receiving)
    }


@TRANSPORTS
def test_an_idle_timeout_spares_a_peer_taking_our_replies(native: bool) -> None:
    """Pipelined GETs held by backpressure: the server does not read, but the peer reads
    every reply steadily; the 0.4 s idle timeout must not fire until it really is idle."""
    gets = 6
    file = bytes(range(256)) * 4096

    async def body(reactor: Reactor) -> None:
        factory = upload.UploadFactory()
        factory.protocol = Patient
        factory.noisy = False
        factory.files[b"f"] = file
        port = await listen(reactor, factory)
        sock = await _client(port, b"USER a\r\n" + b"GET f\r\n" * gets)
        got = await _read_slowly(sock, 256 * 1024, 0.1, 30)
        sock.close()
        reply = b"213 %d\r\n" % len(file) + file
        assert got.startswith(b"230 hello a\r\n" + reply * gets), len(got)
        assert got.endswith(b"421 idle too long\r\n")  # then idle for real

    scenario(body, timeout=40, native=native)


class SlowAndSteady(Protocol):
    """Writes 8 MiB with a 1 s ``write_timeout``."""

    lost: list[Any] = []

    def connectionMade(self) -> None:
        self.transport.write_timeout = 1.0
        self.transport.write(bytes(8 * MiB))

    def connectionLost(self, reason: Any) -> None:
        SlowAndSteady.lost.append(reason)


def test_write_timeout_spares_a_slow_steady_reader() -> None:
    """What counts is what the peer acknowledges, not what the kernel's send buffer took:
    a reader taking 64 KiB every 0.25 s (far less than half a send buffer per second) is
    never aborted by a 1 s ``write_timeout``."""

    async def body(reactor: Reactor) -> None:
        SlowAndSteady.lost = []
        port = await listen(reactor, Factory.forProtocol(SlowAndSteady))
        sock = await _client(port)
        loop = asyncio.get_running_loop()
        got = 0
        for _ in range(14):  # 3.5 s: more than three write_timeouts
            await asyncio.sleep(0.25)
            got += len(await loop.sock_recv(sock, 65536))
        sock.close()
        assert got > 0
        assert SlowAndSteady.lost == [], "a slow reader was aborted"

    scenario(body, timeout=30)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-1, ValueError),
        (0, ValueError),
        ("soon", TypeError),
    ],
)
def test_the_write_deadlines_refuse_bad_values(value: Any, error: type) -> None:
    async def body(reactor: Reactor) -> None:
        seen: list[Any] = []

        class Probe(Protocol):
            def connectionMade(self) -> None:
                for name in ("close_timeout", "write_timeout"):
                    with pytest.raises(error):
                        setattr(self.transport, name, value)
                self.transport.write_timeout = None
                self.transport.close_timeout = None
                seen.append(True)
                self.transport.loseConnection()

        port = await listen(reactor, Factory.forProtocol(Probe))
        sock = await _client(port)
        while not seen:
            await asyncio.sleep(0.01)
        sock.close()

    scenario(body, timeout=10)
