"""examples/websocket_echo.py: HTTP Upgrade to 101, then WebSocket frames. A real client
library (websockets) over loopback; hostile frames on a raw socket; and, in memory, frames
sent in the same read as the handshake reach the WebSocket machine, none lost."""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
from collections.abc import Iterator
from types import ModuleType

import pytest
from http_helpers import serve
from process_helpers import EXAMPLES, recv_exactly, running
from websocket_helpers import client_frame

websockets_sync = pytest.importorskip("websockets.sync.client")

HOST = "127.0.0.1"
KEY = base64.b64encode(b"0123456789abcdef")
HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("websocket_echo", EXAMPLES / "websocket_echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo = load_example()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running("examples/websocket_echo.py", "--port", "0") as server:
        yield server.port
        server.stop()
        assert server.process.stdout is not None
        server.process.stdout.close()


def test_a_websocket_client_gets_every_message_back(port: int) -> None:
    with websockets_sync.connect(f"ws://{HOST}:{port}/", proxy=None, open_timeout=20) as ws:
        ws.send("hello, wörld")
        assert ws.recv(timeout=20) == "hello, wörld"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=20) == b"\x00\xff"
        big = os.urandom(100_000)  # a 64-bit payload length
        ws.send(big)
        assert ws.recv(timeout=20) == big
        medium = "m" * 1000  # a 16-bit one
        ws.send(medium)
        assert ws.recv(timeout=20) == medium
        ws.send(["frag", "men", "ted"])  # one message in three frames
        assert ws.recv(timeout=20) == "fragmented"
        assert ws.ping(b"are you there").wait(20)
        ws.close(code=1000, reason="bye")
    assert ws.close_code == 1000


def exchange(port: int, data: bytes) -> bytes:
    """Handshake, send ``data``, read until the server closes."""
    with socket.create_connection((HOST, port), timeout=20) as sock:
        sock.sendall(HANDSHAKE)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += recv_exactly(sock, 1)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Sec-WebSocket-Accept: " + echo.accept_key(KEY) in head
        sock.sendall(data)
        received = b""
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def close_code(data: bytes) -> int:
    assert data[0] == 0x88, data
    return int.from_bytes(data[2:4], "big")


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (client_frame(1, b"hi", mask=b""), 1002),
        (bytes([0x81 | 0x40, 0x80]) + b"abcd", 1002),  # RSV1
        (client_frame(3, b""), 1002),  # reserved opcode
        (client_frame(9, b"p", fin=False), 1002),  # fragmented ping
        (client_frame(9, b"p" * 126), 1002),  # long ping
        (client_frame(0, b"x"), 1002),  # continuation of nothing
        (client_frame(1, b"a", fin=False) + client_frame(1, b"b"), 1002),  # new inside one
        (client_frame(1, b"\xff\xfe"), 1007),  # not UTF-8
        (client_frame(8, b"\x03"), 1002),  # a one-byte close payload
        (client_frame(8, (999).to_bytes(2, "big")), 1002),  # an invalid close code
        (bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"abcd", 1009),  # too big
    ],
)
def test_protocol_violations_are_closed_with_their_code(
    port: int, frames: bytes, code: int
) -> None:
    assert close_code(exchange(port, frames)) == code


def test_pings_interleave_with_a_fragmented_message(port: int) -> None:
    frames = (
        client_frame(1, b"ab", fin=False)
        + client_frame(9, b"ping!")
        + client_frame(0, b"cd")
        + client_frame(8, (1000).to_bytes(2, "big"))
    )
    received = exchange(port, frames)
    assert received == (
        echo.frame(10, b"ping!")
        + echo.frame(1, b"abcd")
        + echo.frame(8, (1000).to_bytes(2, "big"))
    )


def test_a_request_without_upgrade_gets_426_and_a_bad_handshake_400() -> None:
    plain = serve([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], echo.handle)
    assert plain.output.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    bad = HANDSHAKE.replace(b"Version: 13", b"Version: 8")
    assert serve([bad], echo.handle).output.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    # RFC 6455 §4.1 asks HTTP/1.1, and RFC 9110 §15.2 forbids a 101 to HTTP/1.0
    old = serve([HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/1.0")], echo.handle)
    assert old.output.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_frames_in_the_handshakes_read_reach_the_websocket_machine() -> None:
    wire = HANDSHAKE + client_frame(1, b"early") + client_frame(2, b"bird")
    for size in (1, 7, len(wire)):
        served = serve([wire[i : i + size] for i in range(0, len(wire), size)], echo.handle)
        head, frames = served.output.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert frames == echo.frame(1, b"early") + echo.frame(2, b"bird")
        assert served.state == "upgraded"


@pytest.mark.parametrize(
    "header",
    [
        bytes([0x81, 0x7F]) + (10 << 20).to_bytes(8, "big"),  # unmasked, 10 MiB announced
        bytes([0xC2, 0x80 | 126]) + (1000).to_bytes(2, "big") + b"abcd",  # RSV1
        bytes([0x83, 0x80 | 100]) + b"abcd",  # reserved opcode
        bytes([0x89, 0x80 | 126, 0xFF, 0xFF]) + b"abcd",  # a ping of 65535 bytes
        bytes([0x82, 0xFF]) + ((1 << 63) | 5).to_bytes(8, "big"),  # the length's top bit
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # HTTP after the upgrade (RSV bits set)
    ],
)
def test_a_header_that_breaks_a_rule_is_refused_before_its_payload(
    port: int, header: bytes
) -> None:
    # (before: the server waited for the announced payload, up to 16 MiB, before refusing;
    # the top bit was 1009)
    assert close_code(exchange(port, header)) == 1002


@pytest.mark.parametrize("code", [1012, 1013, 1014, 3000, 4999])
def test_registered_close_codes_are_echoed(port: int, code: int) -> None:
    data = code.to_bytes(2, "big")
    assert exchange(port, client_frame(8, data)) == echo.frame(8, data)


def test_the_426_says_the_upgrade_connection_option() -> None:
    plain = serve([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], echo.handle)
    head = plain.output.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert b"Upgrade: websocket" in head and b"Connection: Upgrade" in head  # RFC 9110 §7.8


def test_a_client_that_stops_reading_after_the_upgrade_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from runtime_helpers import client_socket, listen, scenario

    from statewire._reactor import Reactor

    # (the example's 30 s, made short: what is checked is that the upgrade keeps a limit)
    monkeypatch.setattr(echo.WebSocketEcho, "write_timeout", 0.5)
    frame = client_frame(2, b"x" * 65536)

    async def main(reactor: Reactor) -> str:
        port = await listen(reactor, echo.factory)
        sock = await client_socket(port, HANDSHAKE)
        loop = asyncio.get_running_loop()
        try:
            for _ in range(400):  # until the server stops reading (its echoes unsent)
                try:
                    await asyncio.wait_for(loop.sock_sendall(sock, frame), 1)
                except TimeoutError:
                    break  # (a frame left half sent: the server waits for its rest)
            await asyncio.sleep(3)  # the client never read: the server gives up on it
            for _ in range(2000):
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5)
                if not chunk:
                    return "closed"
            return "still open"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        finally:
            sock.close()

    assert scenario(main, timeout=60) in ("reset", "closed")
