"""A PROXY header, then TLS: ``ssl:...:proxy=v2`` (and ``ProxyProtocolFactory(tls=...)``).

A proxy that passes TLS through (HAProxy's ``mode tcp`` with ``send-proxy``) sends its
header in plaintext, then the client's TLS stream. The port is plain; the relay reads the
header and hands the connection to the wrapped protocol with TLS from there on, the bytes
read with the header the start of the handshake. Judged over real sockets on 127.0.0.1:
a blocking client writing the header then TLS (apart, and in one segment with its
ClientHello), and real HAProxy in front of ``statewire serve``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from process_helpers import haproxy, running
from runtime_helpers import HOST, scenario

from statewire._reactor import Reactor
from statewire.basic import LineReceiver
from statewire.endpoints import serverFromString
from statewire.protocol import Factory
from statewire.proxy import ProxyProtocolFactory
from statewire.testing.differential import free_port

HEADER = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"


class Who(LineReceiver):
    """Answers each line with the client's address and whether the line came over TLS."""

    def lineReceived(self, line: bytes) -> None:
        peer = self.transport.getPeer()
        tls = "tls" if self.transport.TLS else "plain"
        self.sendLine(f"{peer.host} {peer.port} {tls} {line.decode()}".encode())


def read_line(sock: Any) -> bytes:
    data = b""
    for _ in range(100):  # bounded: the answers are one short line
        if data.endswith(b"\r\n"):
            break
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def header_then_tls(port: int, cert: str, one_segment: bool) -> bytes:
    """Send the header, then ask a line over TLS; the answer. ``one_segment``: the header
    and the ClientHello leave in one ``send`` (read together by the server)."""
    context = ssl.create_default_context(cafile=cert)
    with socket.create_connection((HOST, port), timeout=10) as raw:
        if not one_segment:
            raw.sendall(HEADER)
            with context.wrap_socket(raw, server_hostname=HOST) as tls:
                tls.sendall(b"hello\r\n")
                return read_line(tls)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        session = context.wrap_bio(incoming, outgoing, server_hostname=HOST)
        with pytest.raises(ssl.SSLWantReadError):
            session.do_handshake()
        raw.sendall(HEADER + outgoing.read())  # the header and the ClientHello together
        for _ in range(100):  # bounded: the handshake's round trips
            try:
                session.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    raw.sendall(outgoing.read())
                chunk = raw.recv(65536)
                assert chunk, "closed during the handshake"
                incoming.write(chunk)
        session.write(b"hello\r\n")
        raw.sendall(outgoing.read())
        answer = b""
        while not answer.endswith(b"\r\n"):
            chunk = raw.recv(65536)
            assert chunk, f"closed after {answer!r}"
            incoming.write(chunk)
            with contextlib.suppress(ssl.SSLWantReadError):
                answer += session.read(65536)
        return answer


@pytest.mark.parametrize("one_segment", [False, True], ids=["apart", "one-segment"])
def test_the_header_in_plaintext_then_tls(certificate: tuple[str, str], one_segment: bool) -> None:
    """``ssl:...:proxy=v1``: the wrapped protocol sees the header's client address, over
    TLS, whether the ClientHello came in the header's read or after it."""
    cert, key = certificate

    async def body(reactor: Reactor) -> bytes:
        description = f"ssl:0:interface={HOST}:privateKey={key}:certKey={cert}:proxy=v1"
        port = await serverFromString(reactor, description).listen(Factory.forProtocol(Who))
        number = port.getHost().port
        return await asyncio.to_thread(header_then_tls, number, cert, one_segment)

    assert scenario(body, 30) == b"192.0.2.7 40000 tls hello\r\n"


def test_plaintext_after_the_header_never_reaches_the_protocol(
    certificate: tuple[str, str],
) -> None:
    """A line sent in plaintext after the header is fed to TLS, fails the handshake,
    and is never delivered."""
    cert, key = certificate
    lines: list[bytes] = []

    class Noting(Who):
        def lineReceived(self, line: bytes) -> None:
            lines.append(line)

    async def body(reactor: Reactor) -> bytes:
        description = f"ssl:0:interface={HOST}:privateKey={key}:certKey={cert}:proxy=v1"
        port = await serverFromString(reactor, description).listen(Factory.forProtocol(Noting))
        reader, writer = await asyncio.open_connection(HOST, port.getHost().port)
        writer.write(HEADER + b"GET / HTTP/1.0\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return got

    got = scenario(body, 30)
    assert not got or got.startswith(b"\x15")  # an alert, or nothing
    assert lines == []


def test_native_transports_refuse_tls_after_the_header(
    certificate: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The loop's own transports cannot start TLS on bytes already read: the connection
    is refused after its header, said at INFO, and no protocol is built."""
    cert, key = certificate
    built: list[object] = []

    class Counting(Factory):
        protocol = Who

        def buildProtocol(self, addr: Any) -> Any:
            built.append(addr)
            return super().buildProtocol(addr)

    async def body(reactor: Reactor) -> list[bytes]:
        reactor.native_transports = True
        wrapped = ProxyProtocolFactory(Counting(), ("v1",), tls=ssl_server(cert, key))
        port = reactor.listenTCP(0, wrapped, interface=HOST)
        await port.ready
        got = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection(HOST, port.getHost().port)  # type: ignore[union-attr]
            writer.write(HEADER)
            got.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
        return got

    with caplog.at_level(logging.INFO, logger="statewire"):
        assert scenario(body, 30) == [b"", b""]
    assert built == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once for the port, not for each connection
    assert "needs statewire's socket transport" in warnings[0].getMessage()


def test_a_protocol_that_raises_in_connection_made_is_named_for_it(
    certificate: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from the wrapped protocol's ``connectionMade`` (here with TLS after
    the header) closes that connection and is logged as its ``makeConnection``'s, not as
    the ``dataReceived`` of the protocol that read the header."""
    cert, key = certificate

    class Boom(Who):
        def connectionMade(self) -> None:
            raise RuntimeError("boom")

    async def body(reactor: Reactor) -> bytes:
        wrapped = ProxyProtocolFactory(
            Factory.forProtocol(Boom), ("v1",), tls=ssl_server(cert, key)
        )
        port = reactor.listenTCP(0, wrapped, interface=HOST)
        await port.ready
        reader, writer = await asyncio.open_connection(HOST, port.getHost().port)  # type: ignore[union-attr]
        writer.write(HEADER)
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return got

    with caplog.at_level(logging.ERROR, logger="statewire"):
        assert scenario(body, 30) == b""
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and said[0].startswith("Boom.makeConnection raised"), said


def ssl_server(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_a_context_that_cannot_serve_is_refused_by_the_factory() -> None:
    """A client context, or no context: refused where it is given, not on each
    connection."""
    with pytest.raises(ValueError, match="cannot serve TLS"):
        ProxyProtocolFactory(Factory.forProtocol(Who), tls=ssl.create_default_context())
    with pytest.raises(TypeError, match=r"takes an ssl\.SSLContext"):
        ProxyProtocolFactory(Factory.forProtocol(Who), tls="context")  # type: ignore[arg-type]


def test_tls_with_direct_clients_is_refused(certificate: tuple[str, str]) -> None:
    """``required=False`` serves untrusted clients directly, with no header: their stream
    would be TLS from its first byte, which the relay does not serve; refused at once."""
    with pytest.raises(ValueError, match="tls= needs required=True"):
        ProxyProtocolFactory(
            Factory.forProtocol(Who),
            required=False,
            trusted=["127.0.0.0/8"],
            tls=ssl_server(*certificate),
        )


# -- behind real HAProxy -----------------------------------------------------------------------

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not installed (Debian: apt-get install haproxy)",
)

BACKEND = """
from statewire.basic import LineReceiver
from statewire.protocol import Factory


class Who(LineReceiver):
    def lineReceived(self, line):
        peer, header = self.transport.getPeer(), self.transport.header
        tls = "tls" if self.transport.TLS else "plain"
        self.sendLine(f"{peer.host} {peer.port} v{header.version} {tls} {line.decode()}".encode())


factory = Factory.forProtocol(Who)
"""


@needs_haproxy
def test_haproxy_passes_tls_through_with_a_v2_header(
    tmp_path: Path, certificate: tuple[str, str]
) -> None:
    """HAProxy (``mode tcp``, ``send-proxy-v2``) in front of ``statewire serve --listen
    ssl:...:proxy=v2``: the client's TLS reaches statewire through HAProxy, the server
    sees the client's own address from the header, and HAProxy's health checks (a
    LOCAL header, then a TLS handshake) keep the server up."""
    cert, key = certificate
    target = tmp_path / "who.py"
    target.write_text(BACKEND)
    backend, front = free_port(), free_port()
    listen = (
        f"ssl:{backend}:interface={HOST}:privateKey={key}:certKey={cert}"
        ":proxy=v2:proxyTrusted=127.0.0.0/8"
    )
    serve = ["-m", "statewire", "serve", f"{target}:factory", "--listen", listen]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running(*serve))
        assert server.port == backend
        config = (
            "defaults\n    mode tcp\n    timeout connect 2s\n"
            "    timeout client 30s\n    timeout server 30s\n\n"
            f"frontend front\n    bind {HOST}:{front}\n    default_backend app\n\n"
            f"backend app\n    server s1 {HOST}:{backend} send-proxy-v2 "
            # the health checks docs/proxy.md shows: a LOCAL header, then TLS
            "check check-send-proxy check-ssl verify none inter 100ms fall 1 rise 1\n"
        )
        stack.enter_context(haproxy(config, tmp_path, [front]))
        time.sleep(0.5)  # (a few checks: one failing would mark the server down)
        context = ssl.create_default_context(cafile=cert)
        for round_ in range(3):
            with (
                socket.create_connection((HOST, front), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=HOST) as tls,
            ):
                tls.sendall(b"hello %d\r\n" % round_)
                host, port, version, secure, *echo = read_line(tls).decode().split()
                assert (host, int(port)) == tls.getsockname()  # this client, not HAProxy
                assert (version, secure, echo) == ("v2", "tls", ["hello", str(round_)])
        log = (tmp_path / "haproxy.log").read_text()
        assert "is DOWN" not in log and "no server available" not in log, log
