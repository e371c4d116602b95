"""``transport.startTLS``: a plain connection switched to TLS in the middle of its stream.

A small line server answers ``STARTTLS`` with ``220 ready``, drops what followed the
command in its buffer (the protocol's part of RFC 3207) and upgrades. Every behaviour is
checked on each way a server connection can be served: statewire's socket transport (epoll
poller, loop readers) and the loop's native transports, on asyncio and on uvloop when
installed; clients upgrade through ``connectTCP`` (asyncio transports). Real sockets on
127.0.0.1, a certificate made for the run; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from runtime_helpers import HOST, error_records, in_mode, listen, scenario

from statewire._reactor import Reactor, ssl_context
from statewire._transport import LoopPoller, SocketTransport, Transport
from statewire.error import ConnectionAborted, ConnectionDone, Failure
from statewire.protocol import ClientFactory, Factory, Protocol
from statewire.testing.memory import StringTransport

T = TypeVar("T")

MODES = ["epoll", "loop-readers", "native"]
if importlib.util.find_spec("uvloop") is not None:
    MODES += ["uvloop-epoll", "uvloop-native"]

#: seconds any blocking client call may take
PATIENCE = 10.0


@pytest.fixture(autouse=True)
def nothing_logged_at_error() -> Iterator[None]:
    """Every TLS failure here is the peer's fault: logged at INFO, never at ERROR."""
    with error_records() as records:
        yield
    assert not [record.getMessage() for record in records]


@pytest.fixture(params=MODES)
def run(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Callable[[Reactor], Awaitable[T]]], T]]:
    """Run a scenario on a fresh reactor whose ports serve the way the parameter names."""
    yield in_mode(request.param, monkeypatch)


class LineServer(Protocol):
    """Lines: ``STARTTLS`` upgrades, ``QUIT`` says bye and closes, ``ABORT`` aborts,
    ``DOWNLOAD`` sends 4 MiB and closes, ``ECHO`` echoes every byte from then on; any
    other line is answered ``OK <line>``. Every line executed is noted in
    ``factory.commands``."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.echoing = False
        self.factory.protocols.append(self)
        self.transport.write(b"200 hello\r\n")

    def dataReceived(self, data: bytes) -> None:
        if self.echoing:
            self.factory.received += len(data)
            self.transport.write(data)
            return
        self.buffer += data
        while b"\r\n" in self.buffer and not self.echoing:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.factory.commands.append(line)
            if line == b"STARTTLS":
                self.transport.write(b"220 ready\r\n")
                self.buffer = b""  # sent in plaintext after the command: never executed
                self.starttls()
                return
            if line == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.loseConnection()
                return
            if line == b"DOWNLOAD":
                self.transport.write(b"d" * (4 << 20))
                self.transport.loseConnection()
                return
            if line == b"ABORT":
                self.transport.abortConnection()
                return
            if line == b"ECHO":
                self.echoing = True
                rest, self.buffer = self.buffer, b""
                if rest:
                    self.dataReceived(rest)
                return
            self.transport.write(b"OK " + line + b"\r\n")

    def starttls(self) -> None:
        self.factory.peers.append(self.transport.getPeer())
        self.transport.startTLS(self.factory.context)
        self.factory.peers.append(self.transport.getPeer())

    def transportCongested(self, congested: bool) -> None:
        if congested:
            self.factory.congested += 1
            if not self.factory.congestion.done():
                self.factory.congestion.set_result(None)

    def connectionLost(self, reason: Failure) -> None:
        if not self.factory.lost.done():
            self.factory.lost.set_result(reason)


def server_factory(certificate: tuple[str, str], protocol: Any = LineServer) -> Any:
    factory = Factory.forProtocol(protocol)
    factory.context = ssl_context(*certificate)
    factory.commands = []
    factory.protocols = []
    factory.peers = []
    factory.received = 0
    factory.congested = 0
    loop = asyncio.get_running_loop()
    factory.congestion = loop.create_future()
    factory.lost = loop.create_future()
    return factory


def client_context(certificate: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate[0])


def read_line(sock: Any) -> bytes:
    """One CRLF-ended line, read a byte at a time (nothing after it is taken)."""
    line = b""
    for _ in range(1000):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
        if line.endswith(b"\r\n"):
            break
    return line


@contextmanager
def upgraded(
    port: int, certificate: tuple[str, str], rcvbuf: int = 0, **options: Any
) -> Iterator[ssl.SSLSocket]:
    """A blocking client (with a receive buffer of ``rcvbuf`` bytes, if given): connect,
    STARTTLS, then the client side of the handshake."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as raw:
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(PATIENCE)
        raw.connect((HOST, port))
        assert read_line(raw) == b"200 hello\r\n"
        raw.sendall(b"STARTTLS\r\n")
        assert read_line(raw) == b"220 ready\r\n"
        context = client_context(certificate)
        with context.wrap_socket(raw, server_hostname=HOST, **options) as tls:
            yield tls


def test_lines_after_starttls_then_close_notify(run: Any, certificate: tuple[str, str]) -> None:
    """Lines travel in TLS after the upgrade; the server's loseConnection ends the TLS
    stream with a close_notify (no ragged EOF); the addresses do not change."""

    def client(port: int) -> list[bytes]:
        with upgraded(port, certificate, suppress_ragged_eofs=False) as tls:
            tls.sendall(b"PING\r\n")
            got = [read_line(tls)]
            tls.sendall(b"QUIT\r\n")
            got.append(read_line(tls))
            got.append(tls.recv(100))  # b"" on a close_notify; SSLEOFError on a bare EOF
            return got

    async def body(reactor: Reactor) -> tuple[list[bytes], Any]:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        got = await asyncio.to_thread(client, port)
        reason = await asyncio.wait_for(factory.lost, PATIENCE)
        return got, (reason, factory)

    got, (reason, factory) = run(body)
    assert got == [b"OK PING\r\n", b"221 bye\r\n", b""]
    assert factory.commands == [b"STARTTLS", b"PING", b"QUIT"]
    assert reason.check(ConnectionDone)
    before, after = factory.peers
    assert before == after and after.host == HOST


def test_a_download_after_starttls_arrives_whole_then_close_notify(
    run: Any, certificate: tuple[str, str]
) -> None:
    """4 MiB written then loseConnection: all of it arrives, then our close_notify, then
    the close; the socket is no longer watched."""

    def client(port: int) -> tuple[int, bytes]:
        with upgraded(port, certificate, suppress_ragged_eofs=False) as tls:
            tls.sendall(b"DOWNLOAD\r\n")
            size = 0
            for _ in range(10_000):
                chunk = tls.recv(1 << 16)  # SSLEOFError if the stream is cut short
                if not chunk:
                    break
                size += len(chunk)
            return size, chunk

    async def body(reactor: Reactor) -> tuple[tuple[int, bytes], Failure, int]:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        got = await asyncio.to_thread(client, port)
        reason = await asyncio.wait_for(factory.lost, PATIENCE)
        return got, reason, _watched(reactor)

    (size, last), reason, watched = run(body)
    assert (size, last) == (4 << 20, b"")
    assert reason.check(ConnectionDone)
    assert watched == 0


def _watched(reactor: Reactor) -> int:
    """Sockets the reactor's poller still watches."""
    poller = reactor._current_poller
    if poller is None:
        return 0
    if isinstance(poller, LoopPoller):
        return len(poller._interest)
    return len(poller._watched)  # type: ignore[attr-defined]


def test_plaintext_pipelined_behind_starttls_is_never_executed(
    run: Any, certificate: tuple[str, str]
) -> None:
    """A command sent in plaintext in the same packet as STARTTLS is dropped with the
    protocol's buffer; the session then goes on in TLS."""

    def client(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=PATIENCE) as raw:
            assert read_line(raw) == b"200 hello\r\n"
            raw.sendall(b"STARTTLS\r\nINJECTED\r\n")
            assert read_line(raw) == b"220 ready\r\n"
            with client_context(certificate).wrap_socket(raw, server_hostname=HOST) as tls:
                tls.sendall(b"PING\r\nQUIT\r\n")
                return read_line(tls) + read_line(tls)

    async def body(reactor: Reactor) -> tuple[bytes, Any]:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        got = await asyncio.to_thread(client, port)
        await asyncio.wait_for(factory.lost, PATIENCE)
        return got, factory

    got, factory = run(body)
    assert got == b"OK PING\r\n221 bye\r\n"
    assert factory.commands == [b"STARTTLS", b"PING", b"QUIT"]


class DeferredUpgrade(LineServer):
    """Switches some time after its 220 reply (as a server that checks something first),
    paused meanwhile. ``go_on(held)`` imitates, on the asyncio transports, plaintext
    received and held then: as when a loop delivers a read after the pause (uvloop does
    at the start of a connection)."""

    def starttls(self) -> None:
        self.transport.pauseProducing()
        self.factory.paused.set_result(self)

    def go_on(self, held: bytes = b"") -> None:
        if held and isinstance(self.transport, Transport):
            self.transport._received(held)
        self.transport.startTLS(self.factory.context)
        self.transport.resumeProducing()


def test_plaintext_received_but_not_delivered_is_dropped(
    run: Any, certificate: tuple[str, str]
) -> None:
    """Bytes the transport received and holds undelivered when startTLS is called are
    dropped, never delivered after the switch."""

    def client(port: int) -> bytes:
        with upgraded(port, certificate) as tls:
            tls.sendall(b"PING\r\nQUIT\r\n")
            return read_line(tls) + read_line(tls)

    async def body(reactor: Reactor) -> tuple[bytes, Any]:
        factory = server_factory(certificate, DeferredUpgrade)
        factory.paused = asyncio.get_running_loop().create_future()
        port = await listen(reactor, factory)
        reply = asyncio.ensure_future(asyncio.to_thread(client, port))
        protocol = await asyncio.wait_for(factory.paused, PATIENCE)
        protocol.go_on(held=b"INJECTED\r\n")
        return await asyncio.wait_for(reply, PATIENCE), factory

    reply, factory = run(body)
    assert reply == b"OK PING\r\n221 bye\r\n"
    assert factory.commands == [b"STARTTLS", b"PING", b"QUIT"]


def test_plaintext_sent_behind_starttls_fails_the_handshake(
    run: Any, certificate: tuple[str, str]
) -> None:
    """Plaintext the client sends after STARTTLS, while the server waits to answer it, is
    read as TLS once the server switches: the handshake fails, nothing is executed."""

    async def body(reactor: Reactor) -> tuple[Failure, Any]:
        factory = server_factory(certificate, DeferredUpgrade)
        factory.paused = asyncio.get_running_loop().create_future()
        port = await listen(reactor, factory)
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await reader.readline() == b"200 hello\r\n"
        writer.write(b"STARTTLS\r\n")
        protocol = await asyncio.wait_for(factory.paused, PATIENCE)
        assert await asyncio.wait_for(reader.readline(), PATIENCE) == b"220 ready\r\n"
        writer.write(b"INJECTED\r\n")
        await writer.drain()
        protocol.go_on()
        reason: Failure = await asyncio.wait_for(factory.lost, PATIENCE)
        writer.close()
        return reason, factory

    reason, factory = run(body)
    assert factory.commands == [b"STARTTLS"]
    assert reason.check(ssl.SSLError), reason


def test_a_failed_handshake_loses_the_connection_with_the_ssl_error(
    run: Any, certificate: tuple[str, str]
) -> None:
    """Garbage instead of a ClientHello: the connection is lost, connectionLost gets the
    ssl.SSLError, the client sees the connection end; no hang."""

    def client(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=PATIENCE) as raw:
            assert read_line(raw) == b"200 hello\r\n"
            raw.sendall(b"STARTTLS\r\n")
            assert read_line(raw) == b"220 ready\r\n"
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n" * 20)
            tail = b""
            for _ in range(100):  # an alert perhaps, then the end
                try:
                    chunk = raw.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                tail += chunk
            return tail

    async def body(reactor: Reactor) -> tuple[bytes, Failure, Any]:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        tail = await asyncio.to_thread(client, port)
        reason: Failure = await asyncio.wait_for(factory.lost, PATIENCE)
        return tail, reason, factory

    tail, reason, factory = run(body)
    assert reason.check(ssl.SSLError), reason
    assert factory.commands == [b"STARTTLS"]
    assert b"HTTP" not in tail


def test_the_handshake_runs_while_the_protocol_pauses_reading(
    run: Any, certificate: tuple[str, str]
) -> None:
    """A protocol paused right after startTLS: the handshake completes all the same, and
    the data that follows waits until the protocol resumes."""

    class PausedAfterUpgrade(LineServer):
        def starttls(self) -> None:
            self.transport.startTLS(self.factory.context)
            self.transport.pauseProducing()

    def client(port: int, handshaken: asyncio.Future[None], loop: Any) -> bytes:
        with upgraded(port, certificate) as tls:  # completes only if the server reads
            tls.sendall(b"PING\r\n")
            loop.call_soon_threadsafe(handshaken.set_result, None)
            return read_line(tls)

    async def body(reactor: Reactor) -> tuple[bytes, list[bytes]]:
        loop = asyncio.get_running_loop()
        factory = server_factory(certificate, PausedAfterUpgrade)
        port = await listen(reactor, factory)
        handshaken: asyncio.Future[None] = loop.create_future()
        reply = asyncio.ensure_future(asyncio.to_thread(client, port, handshaken, loop))
        await asyncio.wait_for(handshaken, PATIENCE)
        before = list(factory.commands)
        factory.protocols[0].transport.resumeProducing()
        return await asyncio.wait_for(reply, PATIENCE), before

    reply, before = run(body)
    assert reply == b"OK PING\r\n"
    assert before == [b"STARTTLS"]


class EchoClient(asyncio.Protocol):
    """The client of the echo test: reads lines until TLS, then collects the echo."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrived = asyncio.Event()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()

    async def until(self, size: int) -> bytes:
        """The next ``size`` bytes (each read waited for at most PATIENCE seconds)."""
        for _ in range(100_000):
            if len(self.data) >= size:
                break
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), PATIENCE)
        got = bytes(self.data[:size])
        del self.data[:size]
        return got


@pytest.mark.parametrize("banner", [0, 1 << 20], ids=["plain", "big-write-during-handshake"])
def test_mebibytes_echoed_after_starttls_with_backpressure(
    run: Any, certificate: tuple[str, str], banner: int
) -> None:
    """Mebibytes echoed in TLS to a client that reads nothing until the server is
    congested (more than the kernel's send buffer may grow to): the server pauses,
    resumes, and every byte comes back in order. With a banner, the server writes 1 MiB
    right after startTLS: held, over the high-water mark, during the handshake, then sent
    encrypted first."""
    payload = bytes(range(256)) * 4096 * max(8, 2 * _send_buffer_max() >> 20)

    class Banner(LineServer):
        def starttls(self) -> None:
            super().starttls()
            self.transport.write(b"b" * banner)

    async def body(reactor: Reactor) -> tuple[bytes, bytes, int]:
        loop = asyncio.get_running_loop()
        factory = server_factory(certificate, Banner)
        port = await listen(reactor, factory)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        client = EchoClient()
        plain, _ = await loop.create_connection(lambda: client, sock=sock)
        assert await client.until(11) == b"200 hello\r\n"
        plain.write(b"STARTTLS\r\n")
        assert await client.until(11) == b"220 ready\r\n"
        tls = await loop.start_tls(
            plain, client, client_context(certificate), server_hostname=HOST
        )
        assert tls is not None
        got_banner = await client.until(banner)
        tls.pause_reading()
        tls.write(b"ECHO\r\n" + payload)
        received = loop.create_task(_until(lambda: factory.received == len(payload)))
        await asyncio.wait(
            [factory.congestion, received], timeout=PATIENCE, return_when="FIRST_COMPLETED"
        )
        received.cancel()
        tls.resume_reading()
        echoed = await client.until(len(payload))
        tls.close()
        return got_banner, echoed, factory.congested

    got_banner, echoed, congested = run(body)
    assert got_banner == b"b" * banner
    assert echoed == payload
    assert congested >= 1


def _send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to (Linux), else 4 MiB."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(int(PATIENCE / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)


def test_client_side_starttls_through_connect_tcp(run: Any, certificate: tuple[str, str]) -> None:
    """A statewire client upgrades against the server's upgrade: it writes a command
    right after startTLS (sent encrypted once the handshake is done), checks the
    server's certificate, and each side hears of a clean close."""
    seen: dict[str, Any] = {}

    class Client(Protocol):
        def connectionMade(self) -> None:
            self.buffer = b""

        def dataReceived(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                seen.setdefault("lines", []).append(line)
                if line == b"200 hello":
                    self.transport.write(b"STARTTLS\r\n")
                elif line == b"220 ready":
                    self.transport.startTLS(client_context(certificate))
                    self.transport.write(b"PING\r\n")
                elif line == b"OK PING":
                    seen["certificate"] = self.transport.getPeerCertificate(binary_form=True)
                    self.transport.write(b"QUIT\r\n")

        def connectionLost(self, reason: Failure) -> None:
            seen["reason"] = reason
            seen["done"].set_result(None)

    async def body(reactor: Reactor) -> Any:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        seen["done"] = asyncio.get_running_loop().create_future()
        reactor.connectTCP(HOST, port, ClientFactory.forProtocol(Client))
        await asyncio.wait_for(seen["done"], PATIENCE)
        return await asyncio.wait_for(factory.lost, PATIENCE)

    server_reason = run(body)
    assert seen["lines"] == [b"200 hello", b"220 ready", b"OK PING", b"221 bye"]
    der = ssl.PEM_cert_to_DER_cert(Path(certificate[0]).read_text())
    assert seen["certificate"] == der
    assert seen["reason"].check(ConnectionDone)
    assert server_reason.check(ConnectionDone)


def test_a_client_that_does_not_trust_the_server_fails_the_handshake(
    run: Any, certificate: tuple[str, str]
) -> None:
    """connectTCP's startTLS checks the server's certificate: with the default trust
    store, our self-signed one fails, and the client's connectionLost gets the
    ssl.SSLCertVerificationError."""
    seen: dict[str, Any] = {}

    class Client(Protocol):
        def dataReceived(self, data: bytes) -> None:
            if data.startswith(b"200"):
                self.transport.write(b"STARTTLS\r\n")
            elif data.startswith(b"220"):
                self.transport.startTLS(ssl.create_default_context(cafile=None, capath=None))

        def connectionLost(self, reason: Failure) -> None:
            seen["done"].set_result(reason)

    async def body(reactor: Reactor) -> Failure:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        seen["done"] = asyncio.get_running_loop().create_future()
        reactor.connectTCP(HOST, port, ClientFactory.forProtocol(Client))
        reason: Failure = await asyncio.wait_for(seen["done"], PATIENCE)
        await asyncio.wait_for(factory.lost, PATIENCE)
        return reason

    reason = run(body)
    assert reason.check(ssl.SSLCertVerificationError), reason


def test_abort_after_starttls(run: Any, certificate: tuple[str, str]) -> None:
    """abortConnection on an upgraded connection resets it: ConnectionAborted."""

    def client(port: int) -> bytes:
        with upgraded(port, certificate) as tls:
            tls.sendall(b"ABORT\r\n")
            try:
                return tls.recv(100)
            except (ConnectionResetError, ssl.SSLError):
                return b"reset"

    async def body(reactor: Reactor) -> tuple[bytes, Failure]:
        factory = server_factory(certificate)
        port = await listen(reactor, factory)
        got = await asyncio.to_thread(client, port)
        return got, await asyncio.wait_for(factory.lost, PATIENCE)

    got, reason = run(body)
    assert got in (b"reset", b"")
    assert reason.check(ConnectionAborted)


@pytest.mark.parametrize("deadline", ["close_timeout", "write_timeout"])
def test_write_deadlines_abort_a_peer_that_stops_reading_after_starttls(
    run: Any, certificate: tuple[str, str], deadline: str
) -> None:
    """After the upgrade the write deadlines still hold: 4 MiB written to a peer that
    reads nothing is aborted after close_timeout once closing, or after write_timeout."""

    class Flood(LineServer):
        def dataReceived(self, data: bytes) -> None:
            if b"FLOOD" in data:
                setattr(self.transport, deadline, 0.5)
                self.transport.write(b"f" * (4 << 20))
                if deadline == "close_timeout":
                    self.transport.loseConnection()
                return
            super().dataReceived(data)

    def client(port: int, done: Any) -> None:
        with upgraded(port, certificate, rcvbuf=4096) as tls:
            tls.sendall(b"FLOOD\r\n")
            done.result(PATIENCE)  # holds the connection open, reading nothing

    async def body(reactor: Reactor) -> Failure:
        import concurrent.futures

        factory = server_factory(certificate, Flood)
        port = await listen(reactor, factory)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = asyncio.ensure_future(asyncio.to_thread(client, port, done))
        try:
            return await asyncio.wait_for(factory.lost, PATIENCE)
        finally:
            done.set_result(None)
            await thread

    reason = run(body)
    assert reason.check(ConnectionAborted), reason


def test_starttls_refusals(run: Any, certificate: tuple[str, str]) -> None:
    """startTLS twice, with something that is not an SSLContext, on a closing or a TLS
    connection: each a clear error, and the connection is not touched by it."""
    errors: list[BaseException] = []

    class Twice(LineServer):
        def starttls(self) -> None:
            try:
                self.transport.startTLS("context")
            except TypeError as error:
                errors.append(error)
            super().starttls()
            try:
                self.transport.startTLS(self.factory.context)
            except RuntimeError as error:
                errors.append(error)

    def client(port: int) -> bytes:
        with upgraded(port, certificate) as tls:
            tls.sendall(b"PING\r\nQUIT\r\n")
            return read_line(tls) + read_line(tls)

    class OnTLS(Protocol):
        def connectionMade(self) -> None:
            try:
                self.transport.startTLS(self.factory.context)
            except RuntimeError as error:
                errors.append(error)
            self.transport.write(b"refused\r\n")  # (held for after the handshake)
            self.transport.loseConnection()

    class Closing(Protocol):
        def connectionMade(self) -> None:
            self.transport.loseConnection()
            try:
                self.transport.startTLS(self.factory.context)
            except RuntimeError as error:
                errors.append(error)

    async def body(reactor: Reactor) -> bytes:
        factory = server_factory(certificate, Twice)
        port = await listen(reactor, factory)
        got = await asyncio.to_thread(client, port)
        tls_factory = server_factory(certificate, OnTLS)
        tls_port = reactor.listenSSL(0, tls_factory, tls_factory.context, interface=HOST)
        await tls_port.ready
        reader, writer = await asyncio.open_connection(
            HOST, tls_port.getHost().port, ssl=client_context(certificate)
        )
        refused = await asyncio.wait_for(reader.read(), PATIENCE)
        assert refused == b"refused\r\n"
        writer.close()
        closing_port = await listen(reactor, server_factory(certificate, Closing))
        reader, writer = await asyncio.open_connection(HOST, closing_port)
        await asyncio.wait_for(reader.read(), PATIENCE)
        writer.close()
        return got

    assert run(body) == b"OK PING\r\n221 bye\r\n"
    assert [type(error) for error in errors] == [TypeError] + [RuntimeError] * 3
    assert "already called it" in str(errors[1])
    assert "TLS already" in str(errors[2])
    assert "closing" in str(errors[3])


def test_socket_transports_serve_plain_ports() -> None:
    """The socket-transport modes above really exercise SocketTransport (and native
    ones Transport)."""
    kinds: list[type] = []

    class Note(Protocol):
        def connectionMade(self) -> None:
            kinds.append(type(self.transport))
            self.transport.loseConnection()

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Note))
        reader, writer = await asyncio.open_connection(HOST, port)
        await asyncio.wait_for(reader.read(), PATIENCE)
        writer.close()

    scenario(body)
    scenario(body, native=True)
    assert kinds == [SocketTransport, Transport]


def test_string_transport_records_starttls() -> None:
    """In memory, startTLS is recorded with what was written before it; a second call
    raises as on the real transports."""
    transport = StringTransport()
    protocol = LineServer()
    protocol.factory = Factory()
    protocol.factory.protocols = []
    protocol.factory.commands = []
    protocol.factory.peers = []
    protocol.factory.context = context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"STARTTLS\r\nINJECTED\r\n")
    assert transport.tls is not None
    assert transport.tls["context"] is context
    assert transport.value()[: transport.tls["written"]] == b"200 hello\r\n220 ready\r\n"
    assert protocol.factory.commands == [b"STARTTLS"]
    with pytest.raises(RuntimeError):
        transport.startTLS(context)
