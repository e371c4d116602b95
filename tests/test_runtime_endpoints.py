"""Endpoints and description strings; UNIX sockets and TLS over real sockets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import scenario, self_signed_certificate

from statewire._reactor import Reactor
from statewire.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    clientFromString,
    serverFromString,
    ssl_context,
)
from statewire.protocol import Factory, Protocol
from statewire.wire import Echo


class Collect(Protocol):
    """A client protocol that keeps what it receives."""

    def connectionMade(self) -> None:
        self.received = b""
        self.arrived = asyncio.Event()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.arrived.set()


async def _round_trip(client: Any) -> bytes:
    protocol = await client.connect(Factory.forProtocol(Collect))
    protocol.transport.write(b"ping")
    while len(protocol.received) < 4:
        protocol.arrived.clear()
        await asyncio.wait_for(protocol.arrived.wait(), 5)
    protocol.transport.loseConnection()
    return bytes(protocol.received)


def test_tcp_endpoints_listen_and_connect() -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        number = port.getHost().port  # type: ignore[union-attr]
        return await _round_trip(TCP4ClientEndpoint(reactor, "127.0.0.1", number))

    assert scenario(body) == b"ping"


def test_unix_socket_endpoints(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")

    async def body(reactor: Reactor) -> tuple[bytes, Any]:
        port = await UNIXServerEndpoint(reactor, path).listen(Factory.forProtocol(Echo))
        echoed = await _round_trip(UNIXClientEndpoint(reactor, path))
        host = port.getHost()
        port.stopListening()
        return echoed, host

    echoed, host = scenario(body)
    assert echoed == b"ping"
    assert host.type == "UNIX" and host.name == path
    assert not Path(path).exists()  # the socket file is removed on stop


def test_tls_echo_and_plaintext_to_a_tls_port(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)

    async def body(reactor: Reactor) -> tuple[bytes, bytes]:
        port = await SSL4ServerEndpoint(
            reactor, 0, ssl_context(cert, key), interface="127.0.0.1"
        ).listen(Factory.forProtocol(Echo))
        number = port.getHost().port  # type: ignore[union-attr]
        # plaintext to the TLS port: that connection fails, the port carries on
        reader, writer = await asyncio.open_connection("127.0.0.1", number)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        junk = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        client = ssl.create_default_context(cafile=cert)
        reader, writer = await asyncio.open_connection("127.0.0.1", number, ssl=client)
        writer.write(b"secret")
        echoed = await reader.readexactly(6)
        writer.close()
        return junk, echoed

    junk, echoed = scenario(body)
    assert b"secret" not in junk
    assert echoed == b"secret"


def test_server_from_string(tmp_path: Path) -> None:
    reactor = Reactor()
    tcp = serverFromString(reactor, "tcp:8007:interface=127.0.0.1")
    assert (type(tcp), tcp.port, tcp.interface) == (TCP4ServerEndpoint, 8007, "127.0.0.1")
    six = serverFromString(reactor, r"tcp6:port=8008:interface=\:\:1:backlog=7")
    assert (type(six), six.port, six.interface, six.backlog) == (
        TCP6ServerEndpoint,
        8008,
        "::1",
        7,
    )
    unix = serverFromString(reactor, "unix:/tmp/x.sock")
    assert (type(unix), unix.address) == (UNIXServerEndpoint, "/tmp/x.sock")
    cert, key = self_signed_certificate(tmp_path)
    tls = serverFromString(reactor, f"ssl:8443:privateKey={key}:certKey={cert}")
    assert type(tls) is SSL4ServerEndpoint
    client = clientFromString(reactor, "tcp:host=127.0.0.1:port=8007")
    assert (client.host, client.port) == ("127.0.0.1", 8007)
    assert clientFromString(reactor, "unix:/tmp/x.sock").path == "/tmp/x.sock"


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("udp:53", "unknown endpoint type 'udp'"),
        ("tcp:http", "port 'http'"),
        ("tcp:8007:colour=blue", "unknown option 'colour'"),
        ("tcp", "lacks port"),
        ("tcp:1:2:3:4", "too many values"),
        ("ssl:8443", "lacks privateKey"),
        ("tcp:8007:port=9", "'port' given twice"),
        ("tcp:8007:proxy=v3", "proxy in .* is not v1, v2 or any"),
        ("tcp:8007:proxyTrusted=10.0.0.0/8", "'proxyTrusted' without proxy="),
        ("tcp:8007:proxy=v2:proxyTimeout=0", "proxyTimeout in .* seconds > 0"),
        ("tcp:8007:proxy=v2:proxyTrusted=10.0.0.300/8", "proxyTrusted in .*10.0.0.300"),
    ],
)
def test_bad_descriptions_name_the_bad_part(description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        serverFromString(Reactor(), description)


def test_an_endpoint_behind_the_proxy_protocol_gives_the_clients_address() -> None:
    """``proxy=v1`` on a description: the protocol's ``getPeer()`` is the address the
    PROXY header names, over a real loopback socket."""
    from statewire.endpoints import ProxyServerEndpoint

    class Peer(Protocol):
        def dataReceived(self, data: bytes) -> None:
            peer = self.transport.getPeer()
            self.transport.write(f"{peer.host}:{peer.port} {data.decode()}".encode())
            self.transport.loseConnection()

    async def body(reactor: Reactor) -> bytes:
        endpoint = serverFromString(
            reactor, "tcp:0:interface=127.0.0.1:proxy=any:proxyTrusted=127.0.0.0/8"
        )
        assert type(endpoint) is ProxyServerEndpoint and endpoint.versions == ("v1", "v2")
        port = await endpoint.listen(Factory.forProtocol(Peer))
        reader, writer = await asyncio.open_connection("127.0.0.1", port.getHost().port)
        writer.write(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nhello")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer

    assert scenario(body) == b"192.0.2.7:40000 hello"
