"""The runtime's hand-over (statewire/runtime/connection.py): ``Connection.handOver`` and
``Connection.relay``, over real sockets on 127.0.0.1, on statewire's socket transport,
the loop's own transports (asyncio's, uvloop's) and a TLS port.

A protocol reads the start of the stream (here: one line), then passes the connection
on: the new protocol becomes the transport's own -- later reads, the loss go straight to
it -- gets the bytes read after that start first (or once it resumes reading, if it
paused), and sees the addresses a relay gives. statewire.proxy is the real user
(tests/test_proxy_fast.py); these hold the runtime to its part alone.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import HOST, listen, scenario, self_signed_certificate

from statewire._reactor import Reactor
from statewire.address import Address, IPv4Address
from statewire.endpoints import ssl_context
from statewire.error import Failure, connectionDone
from statewire.protocol import Factory, Protocol

CLIENT = IPv4Address("TCP", "192.0.2.7", 4242)
SERVER = IPv4Address("TCP", "198.51.100.1", 443)

TRANSPORTS = pytest.mark.parametrize(
    "kind", ["socket", "native", "uvloop"], ids=["socket transport", "asyncio", "uvloop"]
)


def run(body: Any, kind: str) -> Any:
    return scenario(body, native=kind != "socket", uvloop=kind == "uvloop")


class Relay:
    """What a reader says of the connection: the client's addresses and the line read."""

    def __init__(self, line: bytes, peer: Address | None, host: Address | None) -> None:
        self.header = line
        self.peer = peer
        self.host = host


class Recorder(Protocol):
    """Says what it sees of its transport when connected, then echoes; the loss noted."""

    lost: list[Failure] = []  # (set per test)

    def connectionMade(self) -> None:
        transport = self.transport
        peer, host = transport.getPeer(), transport.getHost()
        proxy = transport.proxy
        self.transport.write(
            b"%s %s:%d %s:%d %s %s\n"
            % (
                transport.header or b"-",
                peer.host.encode(),
                peer.port,
                host.host.encode(),
                host.port,
                b"direct" if proxy is None else b"via %d" % (transport.protocol is self),
                b"%d" % (proxy is None or proxy.port != peer.port),
            )
        )

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.append(reason)


class Pauser(Recorder):
    """Pauses reading when connected, resumes a little later."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.pauseProducing()
        self.transport.reactor.callLater(0.1, self.transport.resumeProducing)


class Closer(Recorder):
    """Closes as soon as it is connected."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.loseConnection()


class Raiser(Recorder):
    """Raises in connectionMade."""

    def connectionMade(self) -> None:
        raise RuntimeError("boom")


class FirstLine(Protocol):
    """Reads one line, then hands the connection over to a new ``kind`` protocol (from a
    timer when ``later``), relayed with the client's addresses unless ``local``."""

    kind: type[Protocol] = Recorder
    later = False
    local = False

    def __init__(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" not in self.buffer:
            return
        line, rest = self.buffer.split(b"\n", 1)
        peer, host = (None, None) if self.local else (CLIENT, SERVER)
        self.transport.relay = Relay(line, peer, host)
        if self.later:
            self.transport.reactor.callLater(0, self.transport.handOver, self.kind(), rest)
        else:
            self.transport.handOver(self.kind(), rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        raise AssertionError("the loss goes to the protocol handed the connection")


def reader(**attributes: Any) -> Factory:
    return Factory.forProtocol(type("Reader", (FirstLine,), attributes))


async def talk(port: int, pieces: list[bytes], expect: int, ssl_client: Any = None) -> bytes:
    reader_, writer = await asyncio.open_connection(HOST, port, ssl=ssl_client)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)  # separate reads, as far as the kernel lets them be
    got = b""
    while len(got) < expect:
        more = await asyncio.wait_for(reader_.read(expect - len(got)), 20)
        if not more:
            break
        got += more
    writer.close()
    return got


GREETING = b"hello 192.0.2.7:4242 198.51.100.1:443 via 1 1\n"


@pytest.fixture(autouse=True)
def fresh_losses() -> None:
    Recorder.lost = []


@TRANSPORTS
def test_the_new_protocol_gets_the_rest_first_then_every_read_and_the_loss(kind: str) -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, reader())
        got = await talk(port, [b"hel", b"lo\nfirst", b" second"], len(GREETING) + 12)
        for _ in range(100):  # bounded: the loss is delivered on a later turn
            if Recorder.lost:
                break
            await asyncio.sleep(0.01)
        return got

    assert run(body, kind) == GREETING + b"first second"
    assert len(Recorder.lost) == 1  # the new protocol's, not the reader's (it raises)


@TRANSPORTS
def test_bytes_handed_to_a_paused_protocol_wait_until_it_resumes(kind: str) -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, reader(kind=Pauser))
        return await talk(port, [b"hello\nfirst", b" second", b" third"], len(GREETING) + 18)

    assert run(body, kind) == GREETING + b"first second third"


@TRANSPORTS
def test_a_hand_over_from_a_timer_is_guarded_as_any_callback(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(reactor: Reactor) -> tuple[bytes, bytes]:
        broken = await listen(reactor, reader(later=True, kind=Raiser))
        working = await listen(reactor, reader(later=True))
        closed = await talk(broken, [b"hello\nfirst"], 1)
        served = await talk(working, [b"hello\nfirst"], len(GREETING) + 5)
        return closed, served

    closed, served = run(body, kind)
    assert closed == b""
    assert served == GREETING + b"first"
    # (named for the protocol that raised, in its connectionMade: not for handOver)
    assert "Raiser.makeConnection raised; closing the connection from" in caplog.text
    assert "RuntimeError: boom" in caplog.text


@TRANSPORTS
def test_a_protocol_that_closes_when_connected_gets_no_handed_bytes(kind: str) -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, reader(kind=Closer))
        return await talk(port, [b"hello\nnever echoed"], 1000)

    assert run(body, kind) == GREETING


async def talk_until(port: int, pieces: list[bytes], end: bytes) -> bytes:
    """:func:`talk`, reading until what came ends with ``end`` (bounded)."""
    reader_, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"".join(pieces))
    got = b""
    while not got.endswith(end):
        more = await asyncio.wait_for(reader_.read(4096), 20)
        if not more:
            break
        got += more
    writer.close()
    return got


@TRANSPORTS
def test_a_relay_without_addresses_keeps_the_sockets(kind: str) -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, reader(local=True))
        return await talk_until(port, [b"hi\nx"], b"\nx")

    header, peer, host, via, _, same = run(body, kind).split(b"\n")[0].split(b" ")
    assert (header, via, same) == (b"hi", b"via", b"0")  # the proxy: the peer itself
    assert peer.startswith(b"127.0.0.1:") and host.startswith(b"127.0.0.1:")
    assert peer != host


@TRANSPORTS
def test_a_direct_connection_has_no_relay(kind: str) -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, Factory.forProtocol(Recorder))
        return await talk_until(port, [b"x"], b"\nx")

    line = run(body, kind).split(b"\n")[0]
    assert line.startswith(b"- 127.0.0.1:") and line.endswith(b" direct 1")


@pytest.mark.parametrize("pause", [False, True], ids=["reading", "paused when connected"])
def test_over_a_tls_port_the_hand_over_is_the_same(tmp_path: Path, pause: bool) -> None:
    cert, key = self_signed_certificate(tmp_path)
    client = ssl.create_default_context(cafile=cert)

    async def body(reactor: Reactor) -> bytes:
        kind = Pauser if pause else Recorder
        port = reactor.listenSSL(0, reader(kind=kind), ssl_context(cert, key), interface=HOST)
        await port.ready
        number = port.getHost().port  # type: ignore[union-attr]
        return await talk(number, [b"hello\nfirst", b" second"], len(GREETING) + 12, client)

    assert scenario(body) == GREETING + b"first second"


class Upgrader(Recorder):
    """Pauses reading when connected, switches to TLS at once, resumes a little later;
    echoes what it reads."""

    context: ssl.SSLContext

    def connectionMade(self) -> None:
        self.transport.write(b"go\n")  # (before the switch: in plaintext)
        self.transport.pauseProducing()
        self.transport.startTLS(self.context)
        self.transport.reactor.callLater(0.1, self.transport.resumeProducing)


@pytest.mark.parametrize("kind", ["socket", "native"], ids=["socket transport", "asyncio"])
def test_bytes_handed_over_and_held_are_dropped_by_starttls(tmp_path: Path, kind: str) -> None:
    """Plaintext that came before the switch to TLS, held for a paused protocol, is never
    delivered as if it were protected (CVE-2011-0411), as for any held read."""
    cert, key = self_signed_certificate(tmp_path)
    server = ssl_context(cert, key)
    client = ssl.create_default_context(cafile=cert)

    def talk_tls(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=20) as sock:
            sock.sendall(b"hello\nPLAINTEXT")  # one read: PLAINTEXT is handed over
            go = b""
            while not go.endswith(b"go\n"):
                more = sock.recv(1)
                if not more:
                    raise AssertionError(f"closed after {go!r}")
                go += more
            with client.wrap_socket(sock, server_hostname=HOST) as tls:
                tls.sendall(b"secret")
                got = b""
                while len(got) < 6:
                    more = tls.recv(64)
                    if not more:
                        break
                    got += more
                return got

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, reader(kind=type("U", (Upgrader,), {"context": server})))
        return await asyncio.to_thread(talk_tls, port)

    assert run(body, kind) == b"secret"


class LateReader(Protocol):
    """Reads one line, then hands the connection over from a timer that fires after the
    client closed: once the loss was delivered here."""

    lost: list[Failure] = []  # (set per test)

    def dataReceived(self, data: bytes) -> None:
        if b"\n" in data:
            self.transport.reactor.callLater(0.2, self.transport.handOver, Recorder(), b"x")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.append(reason)


@TRANSPORTS
def test_a_hand_over_after_the_loss_connects_then_tells_the_new_protocol(kind: str) -> None:
    LateReader.lost = []

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(LateReader))
        _, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()
        for _ in range(200):  # bounded: the timer fires 0.2 s after the line
            if Recorder.lost:
                break
            await asyncio.sleep(0.01)

    run(body, kind)
    assert len(LateReader.lost) == 1
    assert len(Recorder.lost) == 1  # told of the end once, with the same reason
    assert Recorder.lost[0] is LateReader.lost[0]
