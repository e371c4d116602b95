"""Hardening of the write side (issue 15, items 3, 4, 7 and the transport part of 8).

3. A peer that pipelines requests and never reads the replies: delivery of frames stops
   while the transport's unsent data is over its high-water mark, so the server holds the
   mark plus one reply, not one reply per request (declared protocols, ``basic`` helpers,
   plain protocols using the producer API).
4. An exception from the transport's own I/O path (joining the output, sending) ends that
   connection only, logged once, and never reaches the loop's exception handler.
7. A peer that never reads is aborted: ``close_timeout`` bounds a close waiting for unsent
   data, ``write_timeout`` a connection whose unsent data does not move.
8. ``write`` and ``writeSequence`` take bytes-like objects only.

Every test but one (how the pauses compose, in memory) runs over real sockets on
127.0.0.1, on statewire's socket transport and on the loop's own transports (``native``),
and bounds its waits; none asserts a timing.

The figures of the issue are printed by running this file as a script against a server in
another process (whatever ``statewire`` its ``PYTHONPATH`` selects)::

    python tests/test_hardening_transport.py rss --gets 10000
    python tests/test_hardening_transport.py nonreaders --clients 40 --size 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import client_socket, error_records, listen, scenario

from statewire import _transport
from statewire._reactor import Reactor
from statewire._transport import HIGH_WATER, SocketTransport, Transport
from statewire.basic import LineReceiver
from statewire.error import ConnectionAborted, ConnectionDone
from statewire.machine import Timeout
from statewire.protocol import Factory, Protocol
from statewire.testing.memory import StringTransport

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import upload  # noqa: E402

sys.path.remove(str(ROOT / "examples"))

HOST = "127.0.0.1"
TRANSPORTS = pytest.mark.parametrize("native", [False, True], ids=["socket", "native"])
MiB = 1 << 20


# -- helpers ------------------------------------------------------------------------------


def watch_loop(seen: list[dict[str, Any]]) -> None:
    """Collect what reaches the running loop's exception handler."""
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context))


async def non_reader(port: int, send: bytes = b"", rcvbuf: int = 4096) -> socket.socket:
    """A connected client with a small receive buffer that will not read."""
    return await client_socket(port, send, rcvbuf)


async def read_exactly(sock: socket.socket, size: int, timeout: float) -> bytes:
    """Read ``size`` bytes (fails after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    chunks = bytearray()

    async def go() -> None:
        while len(chunks) < size:
            chunk = await loop.sock_recv(sock, min(size - len(chunks), 1 << 20))
            if not chunk:
                raise AssertionError(f"closed after {len(chunks)} of {size} bytes")
            chunks.extend(chunk)

    await asyncio.wait_for(go(), timeout)
    return bytes(chunks)


async def closed_by_server(sock: socket.socket, timeout: float) -> str:
    """Read and drop until the server closes: ``"eof"`` or ``"reset"``."""
    loop = asyncio.get_running_loop()

    async def go() -> str:
        while True:
            try:
                if not await loop.sock_recv(sock, 1 << 20):
                    return "eof"
            except ConnectionResetError:
                return "reset"

    return await asyncio.wait_for(go(), timeout)


async def until(condition: Any, timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


def unsent(connection: Any) -> int:
    """What a connection holds for its peer: the socket's backlog plus unflushed writes."""
    out = connection._out
    return int(connection._write_buffer_size()) + (sum(map(len, out)) if out else 0)


# -- 3. pipelined requests from a peer that never reads -----------------------------------


class CountingFiles(dict[bytes, bytes]):
    """upload's file store, counting the GETs that reached it."""

    gets = 0

    def get(self, key: bytes, default: Any = None) -> Any:  # type: ignore[override]
        self.gets += 1
        return super().get(key, default)


def upload_factory(protocol: type[upload.UploadServer], size: int) -> upload.UploadFactory:
    factory = upload.UploadFactory()
    factory.protocol = protocol
    factory.noisy = False
    factory.files = CountingFiles()
    factory.files[b"f"] = bytes(range(256)) * (size // 256)
    return factory


@TRANSPORTS
def test_pipelined_gets_from_a_non_reader_stop_at_the_high_water_mark(native: bool) -> None:
    """upload.py with a 1 MiB file; a client sends 20 GETs in one write and does not read.
    The server answers only as many as fit its high-water mark (plus what the kernel took),
    holds at most the mark plus one reply, and stops reading; once the client reads, every
    reply comes, whole and in order."""
    gets = 20
    reply_head = b"213 %d\r\n" % MiB

    async def body(reactor: Reactor) -> None:
        factory = upload_factory(upload.UploadServer, MiB)
        port = await listen(reactor, factory)
        request = b"USER a\r\n" + b"GET f\r\n" * gets
        sock = await non_reader(port, request, rcvbuf=64 * 1024)
        await until(lambda: factory.files.gets > 0, 5, "the first GET")
        (connection,) = reactor.connections
        held = []
        for _ in range(50):  # half a second of a client that does not read
            await asyncio.sleep(0.01)
            held.append(unsent(connection))
        answered = factory.files.gets
        assert answered < gets // 2, f"{answered} of {gets} GETs answered to a non-reader"
        assert max(held) <= HIGH_WATER + len(reply_head) + MiB
        expected = b"230 hello a\r\n" + (reply_head + factory.files[b"f"]) * gets
        got = await read_exactly(sock, len(expected), 30)
        assert got == expected
        assert factory.files.gets == gets
        sock.close()

    scenario(body, timeout=60, native=native)


REPLY = b"r" * (256 * 1024 - 2)


class BigLines(LineReceiver):
    """Answers each line with 256 KiB (a ``basic`` helper)."""

    handled = 0

    def lineReceived(self, line: bytes) -> None:
        type(self).handled += 1
        self.sendLine(REPLY)


class PlainProducer(Protocol):
    """A plain protocol cutting its own lines; it registers itself as the transport's
    producer, so the transport's pause reaches it between two lines of one read."""

    handled = 0

    def connectionMade(self) -> None:
        self.buffer = b""
        self.paused = False
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        self.work()

    def work(self) -> None:
        while not self.paused and b"\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n", 1)
            type(self).handled += 1
            self.transport.write(REPLY + b"\r\n")

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.work()

    def stopProducing(self) -> None:
        self.paused = True


class PlainCongested(PlainProducer):
    """The same, told by ``transportCongested`` instead of as a producer."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.paused = False

    def transportCongested(self, congested: bool) -> None:
        self.paused = congested
        if not congested:
            self.work()


@TRANSPORTS
@pytest.mark.parametrize(
    "protocol",
    [BigLines, PlainProducer, PlainCongested],
    ids=["LineReceiver", "plain-producer", "plain-congested"],
)
def test_pipelined_lines_from_a_non_reader_stay_bounded(native: bool, protocol: Any) -> None:
    """100 pipelined lines, each answered with 256 KiB, from a client that does not read:
    a ``LineReceiver``, and a plain protocol told as its own producer or by
    ``transportCongested``, handle only a few (the server holds the mark plus one reply);
    reading, the client gets them all."""
    lines = 100

    async def body(reactor: Reactor) -> None:
        protocol.handled = 0
        port = await listen(reactor, Factory.forProtocol(protocol))
        sock = await non_reader(port, b"x\r\n" * lines, rcvbuf=64 * 1024)
        await until(lambda: protocol.handled > 0, 5, "the first line")
        (connection,) = reactor.connections
        held = []
        for _ in range(30):
            await asyncio.sleep(0.01)
            held.append(unsent(connection))
        assert protocol.handled < 20, f"{protocol.handled} of {lines} lines answered"
        assert max(held) <= HIGH_WATER + len(REPLY) + 2
        got = await read_exactly(sock, lines * (len(REPLY) + 2), 30)
        assert got == (REPLY + b"\r\n") * lines
        sock.close()

    scenario(body, timeout=60, native=native)


class Recorder(LineReceiver):
    def connectionMade(self) -> None:
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        if line == b"fill":
            self.transportCongested(True)  # as the transport does when over the mark


def test_backpressure_and_a_user_pause_compose() -> None:
    """The transport's hold and the protocol's own ``pauseProducing`` are separate: each
    resume lifts only its own pause, and frames flow only when neither holds them."""
    protocol = Recorder()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"fill\r\na\r\nb\r\n")
    assert protocol.lines == [b"fill"]  # held after the frame that filled the buffer
    protocol.pauseProducing()
    protocol.transportCongested(False)  # drained, but the user still pauses
    assert protocol.lines == [b"fill"]
    protocol.transportCongested(True)
    protocol.resumeProducing()  # the user resumes, but the buffer is full again
    assert protocol.lines == [b"fill"]
    protocol.dataReceived(b"c\r\n")
    protocol.transportCongested(False)
    assert protocol.lines == [b"fill", b"a", b"b", b"c"]


# -- 4. failures of the transport's own I/O path ---------------------------------------


class Fragile(Protocol):
    """Records how its connections were lost."""

    lost: list[Any] = []

    def connectionLost(self, reason: Any) -> None:
        Fragile.lost.append(reason)


@TRANSPORTS
@pytest.mark.parametrize("inject", ["join", "send"])
def test_a_failing_flush_ends_that_connection_only(
    native: bool, inject: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``MemoryError`` from sending (or an error from joining the output) for one
    connection: nothing reaches the loop's exception handler, that connection is lost
    once with its buffers freed, it is logged once, and another connection is served
    (also after the failed one sends more, and through shutdown)."""
    cls = Transport if native else SocketTransport
    victims: list[Any] = []
    send = cls._send

    def failing_send(self: Any, data: bytes) -> None:
        if self.protocol.transport in victims:
            raise MemoryError("injected")
        send(self, data)

    if inject == "send":
        monkeypatch.setattr(cls, "_send", failing_send)
    Fragile.lost = []
    seen: list[dict[str, Any]] = []

    class Marked(Fragile):
        """Echoes; a read starting with ``die`` makes the next flush fail."""

        def dataReceived(self, data: bytes) -> None:
            if data.startswith(b"die"):
                victims.append(self.transport)
                if inject == "join":
                    self.transport.write(b"first")
                    self.transport._out.append(object())
                else:
                    self.transport.write(b"first")
                    self.transport.write(b"second")
                return
            self.transport.write(data)

    async def body(reactor: Reactor) -> None:
        watch_loop(seen)
        port = await listen(reactor, Factory.forProtocol(Marked))
        loop = asyncio.get_running_loop()
        other = await non_reader(port, rcvbuf=1 << 20)
        victim = await non_reader(port, b"die", rcvbuf=1 << 20)
        assert await closed_by_server(victim, 5) in ("eof", "reset")
        with suppress(OSError):
            await loop.sock_sendall(victim, b"more")
        victim.close()
        await until(lambda: len(Fragile.lost) == 1, 5, "connectionLost")
        (transport,) = victims
        assert transport._out is None  # the pending output was freed
        assert transport not in reactor.connections
        await loop.sock_sendall(other, b"still there")
        assert await read_exactly(other, 11, 5) == b"still there"
        other.close()
        await asyncio.sleep(0.05)

    with error_records() as records:
        scenario(body, timeout=30, native=native)
    assert not seen, seen
    assert len(Fragile.lost) == 2  # the victim, then the other one closing normally
    assert not Fragile.lost[0].check(ConnectionDone)
    failures = [r for r in records if "failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in records]


# -- 7. a peer that never reads outlives no deadline ------------------------------------

QUICK = 0.3


class QuickUpload(upload.UploadServer):
    """upload.py with a short idle timeout and close timeout."""

    timeouts = {
        state: Timeout(QUICK, upload.Commands.idle, idle=True)
        for state in (upload.anonymous, upload.ready, upload.receiving)
    }
    close_timeout = 0.5
    reasons: list[Any] = []

    def connectionLost(self, reason: Any) -> None:
        QuickUpload.reasons.append(reason)
        super().connectionLost(reason)


class StalledWrites(upload.UploadServer):
    """upload.py with a write timeout and no short read timeout. (Progress is what the
    kernel takes, and it wakes a writer only when half its send buffer, up to 2 MiB on
    loopback, has drained: a write timeout shorter than a second would abort readers
    that are merely slow.)"""

    write_timeout = 1.0
    reasons: list[Any] = []

    def connectionLost(self, reason: Any) -> None:
        StalledWrites.reasons.append(reason)
        super().connectionLost(reason)


@TRANSPORTS
def test_non_readers_timed_out_are_aborted_after_close_timeout(native: bool) -> None:
    """8 clients GET an 8 MiB file (more than the kernel's send buffer takes) and never
    read, against upload with a short idle timeout: the timeout queues ``421`` and closes,
    the close cannot finish (the peer does not read), and ``close_timeout`` aborts every
    one of them; the server is then empty."""
    clients = 8

    async def body(reactor: Reactor) -> None:
        QuickUpload.reasons = []
        factory = upload_factory(QuickUpload, 8 * MiB)
        port = await listen(reactor, factory)
        socks = [await non_reader(port, b"USER a\r\nGET f\r\n") for _ in range(clients)]
        await until(lambda: factory.files.gets == clients, 5, "every GET")
        await until(lambda: not reactor.connections, 10, "every non-reader aborted")
        for sock in socks:  # (whether a client sees the reset depends on its window)
            sock.close()
        assert len(QuickUpload.reasons) == clients
        assert all(reason.check(ConnectionAborted) for reason in QuickUpload.reasons)

    scenario(body, timeout=40, native=native)


@TRANSPORTS
def test_write_timeout_aborts_a_peer_that_never_reads(native: bool) -> None:
    """A declared ``write_timeout``: a client that GETs 16 MiB (more than the kernel's
    send buffer takes) and never reads is aborted although no read timeout is near; a
    client reading 4 MiB slowly is not."""

    async def body(reactor: Reactor) -> None:
        StalledWrites.reasons = []
        factory = upload_factory(StalledWrites, 4 * MiB)
        factory.files[b"big"] = bytes(16 * MiB)
        port = await listen(reactor, factory)
        stalled = await non_reader(port, b"USER a\r\nGET big\r\n")
        slow = await non_reader(port, b"USER b\r\nGET f\r\n", rcvbuf=64 * 1024)
        loop = asyncio.get_running_loop()
        expected = b"230 hello b\r\n213 %d\r\n" % (4 * MiB) + factory.files[b"f"]
        got = bytearray()
        while len(got) < len(expected):  # 512 KiB every 0.1 s: slow, never stalled 0.3 s
            await asyncio.sleep(0.1)
            got += await read_exactly(slow, min(512 * 1024, len(expected) - len(got)), 5)
        assert got == expected
        await until(lambda: StalledWrites.reasons, 5, "the non-reader aborted")
        assert len(StalledWrites.reasons) == 1
        assert StalledWrites.reasons[0].check(ConnectionAborted)
        await loop.sock_sendall(slow, b"QUIT\r\n")
        assert await read_exactly(slow, 9, 5) == b"221 bye\r\n"
        for sock in (stalled, slow):
            sock.close()
        await until(lambda: not reactor.connections, 5, "both closed")

    scenario(body, timeout=40, native=native)


class Dump(Protocol):
    """Writes 4 MiB and closes, with a short close timeout (a plain protocol)."""

    defaults: list[Any] = []
    lost: list[Any] = []

    def connectionMade(self) -> None:
        Dump.defaults.append(self.transport.close_timeout)
        self.transport.close_timeout = 0.3
        self.transport.write(b"d" * (4 * MiB))
        self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        Dump.lost.append(reason)


@TRANSPORTS
def test_close_timeout_of_a_plain_protocol(native: bool) -> None:
    """A plain protocol's ``loseConnection`` with 4 MiB unsent to a peer that never reads
    is aborted after the ``close_timeout`` it set (default ``CLOSE_TIMEOUT``, 30 s)."""

    async def body(reactor: Reactor) -> None:
        Dump.defaults, Dump.lost = [], []
        port = await listen(reactor, Factory.forProtocol(Dump))
        sock = await non_reader(port)
        await until(lambda: Dump.lost, 10, "the close aborted")
        assert Dump.lost[0].check(ConnectionAborted)
        assert Dump.defaults == [30.0] == [getattr(_transport, "CLOSE_TIMEOUT", None)]
        sock.close()

    scenario(body, timeout=30, native=native)


# -- 8. write takes bytes-like objects only ---------------------------------------------


class Writes(Protocol):
    """Tries ``write`` and ``writeSequence`` with good and bad arguments; records what
    each raised."""

    errors: list[str] = []

    def connectionMade(self) -> None:
        write, sequence = self.transport.write, self.transport.writeSequence
        for call, argument in [
            (write, 5),
            (write, 10**9),
            (write, "text"),
            (write, None),
            (sequence, [b"ok", 5]),
            (sequence, b"ab"),
        ]:
            try:
                call(argument)
            except TypeError as error:
                Writes.errors.append(str(error))
        write(b"b:")
        write(bytearray(b"ba:"))
        write(memoryview(b"xmv:")[1:])
        sequence([b"s", bytearray(b"q"), memoryview(b":")])
        self.transport.loseConnection()


@TRANSPORTS
def test_write_takes_bytes_like_objects_only(native: bool) -> None:
    """``write(5)`` no longer sends five NUL bytes (nor ``write(10**9)`` 1 GB): anything
    but bytes, bytearray or memoryview is a ``TypeError`` naming the type; a ``str`` keeps
    its "encode the text first" message; ``writeSequence`` checks each item."""

    async def body(reactor: Reactor) -> bytes:
        Writes.errors = []
        port = await listen(reactor, Factory.forProtocol(Writes))
        reader, writer = await asyncio.open_connection(HOST, port)
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data

    data = scenario(body, timeout=20, native=native)
    # b"ok" from the sequence that failed at its second item is sent: items go in turn
    assert data == b"okb:ba:mv:sq:"
    assert Writes.errors == [
        "write() takes a bytes-like object (bytes, bytearray, memoryview), not int",
        "write() takes a bytes-like object (bytes, bytearray, memoryview), not int",
        "write() takes bytes, not str: encode the text first",
        "write() takes a bytes-like object (bytes, bytearray, memoryview), not NoneType",
        "write() takes a bytes-like object (bytes, bytearray, memoryview), not int",
        "writeSequence() takes an iterable of bytes, not bytes",
    ]


# -- the figures, against a server in another process ---------------------------

_SERVER = """
import sys
sys.path.insert(0, {examples!r})
import logging, upload
from statewire import reactor
from statewire.machine import Timeout
logging.basicConfig(level=logging.WARNING)
upload.factory.files[b"f"] = bytes(range(256)) * ({size} // 256)
class Served(upload.UploadServer):
    if {idle!r}:
        timeouts = {{
            s: Timeout({idle!r}, upload.Commands.idle, idle=True)
            for s in (upload.anonymous, upload.ready, upload.receiving)
        }}

    def connectionLost(self, reason):
        print("lost", reason.type.__name__, flush=True)
        super().connectionLost(reason)

close = {close!r}
if close is not None:
    Served.close_timeout = close
upload.factory.protocol = Served
port = reactor.listenTCP(0, upload.factory, backlog=1024, interface="127.0.0.1")
print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
reactor.run()
"""


@contextmanager
def _upload_process(
    size: int,
    idle: float | None = None,
    lost: list[tuple[float, str]] | None = None,
    close: float | None = None,
) -> Iterator[tuple[int, int]]:
    """upload.py serving one file of ``size`` bytes in another process: ``(pid, port)``;
    each connection it loses is appended to ``lost`` as ``(time.monotonic(), reason)``;
    ``idle``, ``close``: its idle timeout and ``close_timeout`` when given."""
    code = _SERVER.format(examples=str(ROOT / "examples"), size=size, idle=idle, close=close)
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("lost") and lost is not None:
                lost.append((time.monotonic(), line.split()[1]))

    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        threading.Thread(target=read, daemon=True).start()
        yield process.pid, int(line.strip().rsplit(":", 1)[1])
    finally:
        process.terminate()
        process.wait(30)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def figure_rss(gets: int, seconds: float) -> None:
    """Server RSS growth for ``gets`` pipelined 1 MiB GETs from a client that never reads."""
    with _upload_process(MiB) as (pid, port):
        time.sleep(0.3)
        before = _rss(pid)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, port))
        sock.setblocking(False)
        request = b"USER a\r\n" + b"GET f\r\n" * gets
        start = time.monotonic()
        sent = 0
        peak = before
        while time.monotonic() - start < seconds:
            with suppress(BlockingIOError):
                if sent < len(request):
                    sent += sock.send(request[sent : sent + 65536])
            peak = max(peak, _rss(pid))
            time.sleep(0.05)
        print(
            f"{gets} pipelined GETs of 1 MiB ({len(request)} bytes, {sent} sent) from a "
            f"non-reader: server RSS {before / MiB:.1f} MiB -> peak {peak / MiB:.1f} MiB "
            f"(+{(peak - before) / MiB:.1f} MiB) within {seconds:.0f} s"
        )
        sock.close()


def figure_nonreaders(
    clients: int, size_mib: int, seconds: float, close: float | None = None
) -> None:
    """``clients`` non-readers each GET a ``size_mib`` MiB file from upload with a 1 s idle
    timeout: when does the server let go of their connections (as the server sees it: a
    reset may never reach a client whose window is shut)?"""
    lost: list[tuple[float, str]] = []
    with _upload_process(size_mib * MiB, idle=1.0, lost=lost, close=close) as (pid, port):
        socks = []
        for _ in range(clients):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((HOST, port))
            sock.sendall(b"USER a\r\nGET f\r\n")
            socks.append(sock)
        start = time.monotonic()  # every GET sent
        peak = 0
        while len(lost) < clients and time.monotonic() - start < seconds:
            peak = max(peak, _rss(pid))
            time.sleep(0.05)
        after = _rss(pid)
        how = sorted({reason for _, reason in lost})
        print(
            f"{clients} clients GET {size_mib} MiB and never read (idle timeout 1 s, "
            f"close_timeout {'default' if close is None else close}): "
            f"{len(lost)} connections lost by the server within {seconds:.0f} s"
            + (
                f" (the last {max(t for t, _ in lost) - start:.1f} s after the GETs)"
                if lost
                else ""
            )
            + (f", as {', '.join(how)}" if how else "")
            + f"; server RSS peak {peak / MiB:.0f} MiB, then {after / MiB:.0f} MiB"
        )
        for sock in socks:
            sock.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="figure", required=True)
    rss = commands.add_parser("rss")
    rss.add_argument("--gets", type=int, default=10_000)
    rss.add_argument("--seconds", type=float, default=5.0)
    idle = commands.add_parser("nonreaders")
    idle.add_argument("--clients", type=int, default=40)
    idle.add_argument("--size", type=int, default=16, help="MiB per file")
    idle.add_argument("--seconds", type=float, default=45.0)
    idle.add_argument("--close-timeout", type=float, default=None, help="default: 30 s")
    options = parser.parse_args()
    if options.figure == "rss":
        figure_rss(options.gets, options.seconds)
    else:
        figure_nonreaders(options.clients, options.size, options.seconds, options.close_timeout)
