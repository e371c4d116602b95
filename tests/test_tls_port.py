"""A ``listenSSL`` port on statewire's socket transport: TLS from the first byte.

The protocol is connected before the handshake, as Twisted connects it: its writes wait
for the handshake, its deadlines run during it, and the reactor knows the connection from
its accept (a shutdown closes one still in its handshake). A handshake that does not
complete in ``SocketTransport.tls_handshake_timeout`` seconds is aborted. Each test runs on
statewire's transport with its epoll poller, with the loop's readers, and on uvloop when
installed (``native_transports`` keeps asyncio's TLS, connected after the handshake: the
TLS tests of ``test_starttls.py`` and ``test_reliability.py`` run it). Real sockets on
127.0.0.1, a certificate made for the run; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from runtime_helpers import HOST, error_records, in_mode, scenario, self_signed_certificate

from statewire._reactor import Reactor, ssl_context
from statewire._transport import SocketTransport
from statewire.endpoints import serverFromString
from statewire.error import ConnectionAborted, ConnectionDone, Failure, connectionDone
from statewire.protocol import Factory, Protocol
from statewire.runtime import socket_transport

T = TypeVar("T")

MODES = ["epoll", "loop-readers"]
if importlib.util.find_spec("uvloop") is not None:
    MODES.append("uvloop-epoll")

#: seconds any client wait may take
PATIENCE = 10.0


@pytest.fixture(autouse=True)
def nothing_logged_at_error() -> Iterator[None]:
    """A silent or slow TLS peer is the peer's fault: logged at INFO, never at ERROR."""
    with error_records() as records:
        yield
    assert not [record.getMessage() for record in records]


@pytest.fixture(params=MODES)
def run(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Callable[[Reactor], Awaitable[T]]], T]]:
    """Run a scenario on a fresh reactor, its ports served the way the parameter says."""
    yield in_mode(request.param, monkeypatch)


class Greeter(Protocol):
    """Says hello in ``connectionMade``, echoes lines; notes what it saw there and how
    its connection ended, in its factory."""

    def connectionMade(self) -> None:
        factory: Any = self.factory
        factory.made.append(
            (type(self.transport), self.transport.TLS, self.transport.getPeerCertificate())
        )
        self.transport.write(b"hello\r\n")  # (before the handshake: held for after it)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        factory: Any = self.factory
        factory.lost.append(reason)


def greeter() -> Any:
    factory: Any = Factory.forProtocol(Greeter)
    factory.noisy = False
    factory.made = []
    factory.lost = []
    return factory


async def serve_tls(reactor: Reactor, factory: Any, certificate: tuple[str, str]) -> int:
    port = reactor.listenSSL(0, factory, ssl_context(*certificate), interface=HOST)
    await port.ready
    return port.getHost().port  # type: ignore[union-attr]


def client_context(certificate: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate[0])


async def silent_client(port: int) -> socket.socket:
    """A TCP connection to ``port`` that never says hello (connected, not blocking)."""
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    return sock


async def closed_by_server(sock: socket.socket) -> bytes:
    """What ``sock`` reads until the server closes it (b"" on a reset)."""
    loop = asyncio.get_running_loop()
    got = b""
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 4096), PATIENCE):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got


async def lost(factory: Any, count: int = 1) -> list[Failure]:
    """The factory's protocols' ``connectionLost`` reasons, once ``count`` came."""
    for _ in range(int(PATIENCE / 0.01)):
        if len(factory.lost) >= count:
            break
        await asyncio.sleep(0.01)
    return list(factory.lost)


def test_the_protocol_is_connected_before_the_handshake_and_its_greeting_waits_for_it(
    run: Any, certificate: tuple[str, str]
) -> None:
    """connectionMade runs at the accept: ``TLS`` already says yes, there is no peer
    certificate yet, and the greeting it writes reaches the client encrypted, first."""
    factory = greeter()

    async def body(reactor: Reactor) -> bytes:
        port = await serve_tls(reactor, factory, certificate)
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_context(certificate))
        writer.write(b"ping\r\n")
        got = await asyncio.wait_for(reader.readexactly(13), PATIENCE)
        writer.close()
        return got

    assert run(body) == b"hello\r\nping\r\n"
    assert factory.made == [(SocketTransport, True, None)]


def test_a_peer_that_never_says_hello_is_aborted_at_the_handshake_deadline(
    run: Any, certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP client that connects and sends nothing, and one that stops halfway through
    its hello, are each aborted once ``tls_handshake_timeout`` passes: the protocol is
    told ``ConnectionAborted``, and nothing of its greeting ever left in plaintext."""
    monkeypatch.setattr(SocketTransport, "tls_handshake_timeout", 0.3)
    factory = greeter()

    async def body(reactor: Reactor) -> tuple[bytes, bytes, list[Failure]]:
        port = await serve_tls(reactor, factory, certificate)
        silent = await silent_client(port)
        halfway = await silent_client(port)
        await asyncio.get_running_loop().sock_sendall(halfway, b"\x16\x03\x01\x02\x00\x01")
        read = await asyncio.gather(closed_by_server(silent), closed_by_server(halfway))
        return read[0], read[1], await lost(factory, 2)

    silent, halfway, reasons = run(body)
    assert silent == halfway == b""
    assert [type(reason.value) for reason in reasons] == [ConnectionAborted] * 2


def test_the_handshake_deadline_ends_with_the_handshake(
    run: Any, certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection whose handshake completed outlives the handshake deadline."""
    monkeypatch.setattr(SocketTransport, "tls_handshake_timeout", 0.2)
    factory = greeter()

    async def body(reactor: Reactor) -> tuple[bytes, list[Failure]]:
        port = await serve_tls(reactor, factory, certificate)
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_context(certificate))
        hello = await asyncio.wait_for(reader.readexactly(7), PATIENCE)
        await asyncio.sleep(0.5)
        writer.write(b"still here\r\n")
        echoed = await asyncio.wait_for(reader.readexactly(12), PATIENCE)
        writer.close()
        return hello + echoed, list(factory.lost)

    assert run(body) == (b"hello\r\nstill here\r\n", [])


@pytest.mark.parametrize("greets", [False, True], ids=["silent-server", "greeting-server"])
def test_a_shutdown_closes_a_connection_still_in_its_handshake(
    run: Any,
    certificate: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    greets: bool,
) -> None:
    """The reactor knows a TLS connection from its accept: a shutdown closes one whose
    client never said hello. At once when nothing was written for it; a greeting written
    waits for the handshake, which has ``CLOSING_HANDSHAKE_TIMEOUT`` more (here 0.3 s),
    then is aborted: the shutdown never waits for its own abort (5 s)."""
    monkeypatch.setattr(socket_transport, "CLOSING_HANDSHAKE_TIMEOUT", 0.3)

    class Quiet(Greeter):
        def connectionMade(self) -> None:
            pass

    factory = greeter()
    if not greets:
        factory.protocol = Quiet
    read: list[bytes] = []

    async def body(reactor: Reactor) -> None:
        port = await serve_tls(reactor, factory, certificate)
        silent = await silent_client(port)
        await asyncio.sleep(0.1)
        assert len(reactor.connections) == 1
        closed = asyncio.ensure_future(closed_by_server(silent))
        await reactor.shutdown()
        read.append(await closed)

    with caplog.at_level(logging.INFO, logger="statewire"):
        run(body)
    assert read == [b""]
    assert [type(reason.value) for reason in factory.lost] == (
        [ConnectionAborted] if greets else [ConnectionDone]
    )
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "still open after" in m]
    expired = "did not complete in 0.3 s after its connection began to close"
    assert len([m for m in messages if expired in m]) == greets


def test_a_refused_connection_arms_no_handshake_deadline(
    run: Any,
    certificate: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection the factory refuses (``buildProtocol`` returns None) is closed at
    once and leaves no handshake timer behind (it would hold the transport, and log a
    timeout for a connection long gone)."""
    monkeypatch.setattr(SocketTransport, "tls_handshake_timeout", 0.2)

    class Refusing(Factory):
        noisy = False

        def buildProtocol(self, addr: Any) -> None:
            return None

    async def body(reactor: Reactor) -> bytes:
        port = await serve_tls(reactor, Refusing(), certificate)
        got = await closed_by_server(await silent_client(port))
        await asyncio.sleep(0.5)
        return got

    with caplog.at_level(logging.INFO, logger="statewire"):
        assert run(body) == b""
    assert not [r for r in caplog.records if "TLS handshake" in r.getMessage()]


def test_a_context_that_cannot_serve_is_refused_by_listen_ssl() -> None:
    """A client context, no context at all, or a server context with no certificate: an
    error from ``listenSSL`` itself, the port never bound (before: every connection
    failed, said only at INFO). A client's hello offering everything, in memory, is what
    finds the missing certificate."""

    async def body(reactor: Reactor) -> list[str]:
        errors = []
        cases: list[tuple[Any, type[Exception]]] = [
            (ssl.create_default_context(), ValueError),
            ("ctx", TypeError),
            (ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), ValueError),  # no cert
        ]
        for context, error in cases:
            with pytest.raises(error) as raised:
                reactor.listenSSL(0, greeter(), context, interface=HOST)
            errors.append(str(raised.value))
        assert not reactor.ports
        return errors

    client, text, no_certificate = scenario(body, 10)
    assert "cannot serve TLS" in client and "PROTOCOL_TLS_CLIENT" in client
    assert "takes an ssl.SSLContext, not str" in text
    assert "cannot answer a client's hello (no certificate loaded?)" in no_certificate


def test_a_close_during_the_handshake_with_nothing_written_closes_at_once(
    run: Any, certificate: tuple[str, str]
) -> None:
    """``loseConnection`` in ``connectionMade`` with nothing written: the connection
    closes without waiting for a handshake (as Twisted's TLS aborts it): the client's
    handshake fails, and the protocol hears of a clean close."""

    class Refuser(Greeter):
        def connectionMade(self) -> None:
            self.transport.loseConnection()

    factory = greeter()
    factory.protocol = Refuser

    async def body(reactor: Reactor) -> list[Failure]:
        port = await serve_tls(reactor, factory, certificate)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(
                asyncio.open_connection(HOST, port, ssl=client_context(certificate)),
                PATIENCE,
            )
        return await lost(factory)

    reasons = run(body)
    assert len(reasons) == 1 and not isinstance(reasons[0].value, ConnectionAborted)


def test_a_key_protected_by_a_passphrase_is_refused_without_a_prompt(tmp_path: Path) -> None:
    """``ssl_context`` and ``ssl:`` descriptions: a ``ValueError`` saying why, never
    OpenSSL's prompt on the terminal (a server, or each of its workers, would wait)."""
    cert, key = self_signed_certificate(tmp_path, passphrase=b"secret")
    with pytest.raises(ValueError, match="passphrase"):
        ssl_context(cert, key)

    async def body(reactor: Reactor) -> None:
        with pytest.raises(ValueError, match="passphrase"):
            serverFromString(reactor, f"ssl:0:privateKey={key}:certKey={cert}")

    scenario(body, 10)
