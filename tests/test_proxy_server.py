"""PROXY protocol support on the server side (statewire/proxy.py).

In memory on a test clock: every header however cut, what the wrapped protocol sees,
what is refused and logged. Over loopback sockets on this process's reactor: the same,
and the timeout. Judged by real HAProxy (``mode tcp``, ``send-proxy`` and
``send-proxy-v2`` with CRC32C and unique-id TLVs, health checks) in front of two statewire
processes, one killed mid-run; and by ``curl --haproxy-protocol`` against statewire's own
HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import ROOT, haproxy, running
from runtime_helpers import HOST, listen, scenario

from grammars.proxy import SIGNATURE, Family, ProxyHeader, Transport, canonical, encode
from statewire._reactor import Reactor
from statewire.address import Address, IPv4Address, IPv6Address, UNIXAddress
from statewire.basic import LineReceiver
from statewire.error import Failure, connectionDone
from statewire.protocol import Factory, Protocol
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.proxy import ProxiedTransport, ProxyProtocolFactory
from statewire.testing.differential import free_port
from statewire.testing.memory import Clock, StringTransport
from statewire.testing.strategies import chunked

REAL_PEER = IPv4Address("TCP", "10.1.1.1", 40000)
REAL_HOST = IPv4Address("TCP", "10.1.1.2", 8007)
CLIENT = ("203.0.113.7", 4242)
SERVER = ("198.51.100.1", 443)


class Recorder(Protocol):
    """Records what a wrapped protocol is told."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.peer: Address | None = None
        self.host: Address | None = None
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()
        self.host = self.transport.getHost()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


class Recorders(Factory):
    """Builds :class:`Recorder`s and keeps them, with the address each was built for."""

    def __init__(self, kind: type[Protocol] = Recorder) -> None:
        self.kind = kind
        self.built: list[Any] = []
        self.addresses: list[Address] = []

    def buildProtocol(self, addr: Address) -> Any:
        protocol = self.kind()
        protocol.factory = self
        self.built.append(protocol)
        self.addresses.append(addr)
        return protocol


class Memory:
    """One connection through a :class:`ProxyProtocolFactory`, in memory."""

    #: the in-memory transport's class
    transport_kind: type[StringTransport] = StringTransport

    def __init__(self, peer: Address = REAL_PEER, **options: Any) -> None:
        self.clock = Clock()
        self.inner = Recorders(options.pop("kind", Recorder))
        self.factory = ProxyProtocolFactory(self.inner, clock=self.clock, **options)
        self.transport = self.transport_kind(peer=peer, host=REAL_HOST)
        self.protocol = self.factory.buildProtocol(peer)
        if self.protocol is not None:
            self.protocol.makeConnection(self.transport)

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.protocol.dataReceived(chunk)

    @property
    def wrapped(self) -> Any:
        assert len(self.inner.built) <= 1
        return self.inner.built[0] if self.inner.built else None


def tcp(version: int) -> ProxyHeader:
    return ProxyHeader.tcp(CLIENT, SERVER, version)


# -- in memory ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_the_wrapped_protocol_sees_the_clients_address_and_every_byte_after(
    version: int,
) -> None:
    conn = Memory()
    assert conn.wrapped is None
    conn.feed(encode(tcp(version)) + b"hello", b" world")
    assert conn.inner.addresses == [IPv4Address("TCP", *CLIENT)]
    assert conn.wrapped.peer == IPv4Address("TCP", *CLIENT)
    assert conn.wrapped.host == IPv4Address("TCP", *SERVER)
    assert bytes(conn.wrapped.data) == b"hello world"
    transport = conn.wrapped.transport
    assert isinstance(transport, ProxiedTransport)
    assert transport.proxy == REAL_PEER
    assert transport.header == tcp(version)


payloads = st.binary(max_size=64)


@given(
    st.sampled_from([1, 2]),
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
    st.integers(0, 65535),
    payloads,
    st.data(),
)
def test_however_the_header_is_cut_the_wrapped_protocol_sees_the_same(
    version: int, host: str, port: int, payload: bytes, data: st.DataObject
) -> None:
    header = ProxyHeader.tcp((host, port), SERVER if ":" not in host else ("::1", 443), version)
    chunks = data.draw(chunked(encode(header) + payload))
    conn = Memory()
    conn.feed(*chunks)
    kind, family = (IPv6Address, Family.INET6) if ":" in host else (IPv4Address, Family.INET)
    assert conn.wrapped.peer == kind("TCP", canonical(host, family), port)  # as inet_ntop
    assert bytes(conn.wrapped.data) == payload
    assert not conn.transport.disconnecting


@pytest.mark.parametrize(
    "header", [ProxyHeader.local(), ProxyHeader.unknown()], ids=["v2 LOCAL", "v1 UNKNOWN"]
)
def test_local_and_unknown_keep_the_real_addresses(header: ProxyHeader) -> None:
    conn = Memory()
    conn.feed(encode(header) + b"ping")
    assert (conn.wrapped.peer, conn.wrapped.host) == (REAL_PEER, REAL_HOST)
    assert bytes(conn.wrapped.data) == b"ping"


def test_a_unix_stream_header_gives_unix_addresses() -> None:
    header = ProxyHeader(
        2, family=Family.UNIX, transport=Transport.STREAM, source=b"/run/c", destination=b"/run/s"
    )
    conn = Memory()
    conn.feed(encode(header))
    assert conn.wrapped.peer == UNIXAddress("/run/c")
    assert conn.wrapped.host == UNIXAddress("/run/s")


REFUSED = [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no header: a direct client"),
    (b"hello\r\n" + encode(tcp(1)), "a header after data"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "a malformed v1 header"),
    (b"PROXY UNKNOWN " + b"x" * 120, "a v1 line over 107 bytes"),
    (SIGNATURE + b"\x21\x11\xff\xff", "a huge v2 length"),
    (SIGNATURE + b"\x22", "a v2 command that does not exist"),
    (encode(tcp(1))[:-2] + b"\n", "a bare LF"),
]


@pytest.mark.parametrize(("data", "why"), REFUSED, ids=[w for _, w in REFUSED])
def test_refused_connections_close_before_the_wrapped_protocol_exists(
    data: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = Memory()
    with caplog.at_level(logging.INFO, logger="statewire"):
        for i in range(len(data)):  # byte by byte: refused as soon as it is proved
            conn.feed(data[i : i + 1])
        conn.feed(b"more bytes after the refusal")
    assert conn.transport.disconnecting
    assert conn.wrapped is None
    refusals = [r for r in caplog.records if "PROXY header refused" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.INFO
    assert "10.1.1.1:40000" in refusals[0].getMessage()
    conn.protocol.connectionLost(Failure(Exception("closed")))
    with caplog.at_level(logging.INFO, logger="statewire"):
        conn.clock.advance(60)  # the header's deadline passes: nothing more happens
    assert len([r for r in caplog.records if "PROXY header refused" in r.getMessage()]) == 1


def test_a_version_the_port_does_not_take_is_refused() -> None:
    conn = Memory(versions=("v1",))
    conn.feed(encode(tcp(2)))
    assert conn.transport.disconnecting and conn.wrapped is None
    conn = Memory(versions=("v2",))
    conn.feed(encode(tcp(1)))
    assert conn.transport.disconnecting and conn.wrapped is None


def test_a_slow_header_is_refused_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    conn = Memory(timeout=3.0)
    conn.feed(encode(tcp(1))[:10])
    conn.clock.advance(2.9)
    assert not conn.transport.disconnecting
    conn.clock.advance(0.1)  # 3.0 s: a connection made at a tick has up to 1.5 x timeout
    with caplog.at_level(logging.INFO, logger="statewire"):
        conn.clock.advance(1.5)
    assert conn.transport.disconnecting and conn.wrapped is None
    assert "no complete PROXY header within 3.0 s (10 bytes read)" in caplog.text
    conn.feed(encode(tcp(1))[10:])
    assert conn.wrapped is None


def test_a_header_read_in_time_is_never_timed_out() -> None:
    conn = Memory(timeout=3.0)
    conn.feed(encode(tcp(2)))
    conn.clock.advance(10)
    assert not conn.transport.disconnecting
    assert conn.clock.pending() == []  # the one timer of the factory is gone too


def test_one_timer_times_every_connection_between_timeout_and_one_and_a_half() -> None:
    clock = Clock()
    factory = ProxyProtocolFactory(Recorders(), clock=clock, timeout=3.0)
    made: list[tuple[float, StringTransport]] = []
    for step in range(80):  # 20 s in quarter seconds: a connection every 0.75 s till 6 s
        if step % 3 == 0 and clock.seconds() < 6:
            transport = StringTransport(peer=REAL_PEER, host=REAL_HOST)
            factory.buildProtocol(REAL_PEER).makeConnection(transport)
            made.append((clock.seconds(), transport))
        assert len(clock.pending()) <= 1  # one timer, whatever the connections
        for since, transport in made:
            age = clock.seconds() - since
            assert not transport.disconnecting or age >= 3.0
            assert transport.disconnecting or age <= 4.5
        clock.advance(0.25)
    assert all(t.disconnecting for _, t in made)
    assert clock.pending() == []  # nothing waits: the timer stopped


def test_an_untrusted_peer_is_refused_without_a_protocol(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="statewire"):
        conn = Memory(trusted=["192.0.2.0/24"])
    assert conn.protocol is None
    assert "not a trusted proxy" in caplog.text


def test_trusted_networks_match_mapped_ipv4_and_unix_only_when_named() -> None:
    factory = ProxyProtocolFactory(Recorders(), trusted=["10.0.0.0/8", "::1/128"])
    assert factory.is_trusted(IPv4Address("TCP", "10.9.9.9", 1))
    assert factory.is_trusted(IPv6Address("TCP", "::ffff:10.9.9.9", 1))
    assert factory.is_trusted(IPv6Address("TCP", "::1", 1))
    assert not factory.is_trusted(IPv4Address("TCP", "11.0.0.1", 1))
    assert not factory.is_trusted(UNIXAddress("/run/x"))
    assert ProxyProtocolFactory(Recorders(), trusted=["unix"]).is_trusted(UNIXAddress(None))


def test_not_required_serves_untrusted_peers_directly_and_never_reads_their_header() -> None:
    spoof = encode(ProxyHeader.tcp(("1.1.1.1", 1), ("2.2.2.2", 2), 1))
    conn = Memory(trusted=["192.0.2.0/24"], required=False)
    assert conn.protocol is conn.wrapped
    conn.feed(spoof + b"data")
    assert conn.wrapped.peer == REAL_PEER
    assert bytes(conn.wrapped.data) == spoof + b"data"
    trusted = Memory(peer=IPv4Address("TCP", "192.0.2.9", 1), trusted=["192.0.2.0/24"],
                     required=False)  # fmt: skip
    trusted.feed(b"no header")
    assert trusted.transport.disconnecting and trusted.wrapped is None


def test_guessing_and_nonsense_options_are_refused() -> None:
    with pytest.raises(ValueError, match="trusted"):
        ProxyProtocolFactory(Recorders(), required=False)
    with pytest.raises(ValueError):
        ProxyProtocolFactory(Recorders(), versions=("v3",))
    with pytest.raises(ValueError):
        ProxyProtocolFactory(Recorders(), timeout=0)


class Pauser(Recorder):
    """Pauses reading as soon as it is connected."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.pauseProducing()


def test_bytes_read_with_the_header_wait_while_the_wrapped_protocol_pauses() -> None:
    conn = Memory(kind=Pauser)
    conn.feed(encode(tcp(1)) + b"first")
    assert conn.transport.producerState == "paused"
    assert conn.wrapped.data == b""
    conn.wrapped.transport.resumeProducing()
    assert conn.transport.producerState == "paused"  # not before the held bytes are in
    conn.clock.advance(0)
    assert bytes(conn.wrapped.data) == b"first"
    assert conn.transport.producerState == "producing"


class Lines(LineReceiver):
    """A declared protocol: each line answered with the client's address."""

    def lineReceived(self, line: bytes) -> None:
        peer = self.transport.getPeer()
        self.sendLine(b"%s %s:%d" % (line, peer.host.encode(), peer.port))


def test_a_declared_protocol_runs_on_the_proxied_transport() -> None:
    conn = Memory(kind=Lines)
    conn.feed(encode(tcp(2)) + b"a\r\nb", b"\r\n")
    assert conn.transport.value() == b"a 203.0.113.7:4242\r\nb 203.0.113.7:4242\r\n"
    assert conn.transport.on_closing is not None  # set through the proxied transport
    with pytest.raises(AttributeError):
        conn.wrapped.transport.typo_timeout = 1  # not silently kept on the wrapper
    conn.wrapped.transport.loseConnection()
    assert conn.transport.disconnecting


def test_the_wrapped_factory_starts_and_stops_with_the_port() -> None:
    events: list[str] = []

    class Inner(Recorders):
        def startFactory(self) -> None:
            events.append("start")

        def stopFactory(self) -> None:
            events.append("stop")

    factory = ProxyProtocolFactory(Inner())
    factory.doStart()
    factory.doStop()
    assert events == ["start", "stop"]


# -- loopback sockets, this process's reactor -------------------------------------------------


class Greeter(Protocol):
    """Says who it thinks the client is, then echoes."""

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.transport.write(b"%s %d\n" % (peer.host.encode(), peer.port))

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


async def _talk(port: int, pieces: list[bytes], expect: int) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.001)  # separate reads, as far as the kernel lets them be
    got = await asyncio.wait_for(reader.read(expect) if expect else reader.read(), 20)
    while expect and len(got) < expect:
        more = await asyncio.wait_for(reader.read(expect - len(got)), 20)
        if not more:
            break
        got += more
    writer.close()
    return got


def test_over_sockets_the_header_whole_or_byte_by_byte() -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, ProxyProtocolFactory(Factory.forProtocol(Greeter)))
        for version in (1, 2):
            wire = encode(tcp(version))
            whole = await _talk(port, [wire + b"hi"], 19)
            assert whole == b"203.0.113.7 4242\nhi"
            split = [wire[i : i + 1] for i in range(len(wire))] + [b"yo"]
            assert await _talk(port, split, 19) == b"203.0.113.7 4242\nyo"
        # refused: closed with not a byte from the wrapped protocol
        assert await _talk(port, [b"GET / HTTP/1.0\r\n\r\n"], 0) == b""

    scenario(body)


def test_over_sockets_a_silent_client_is_closed_after_the_timeout() -> None:
    async def body(reactor: Reactor) -> None:
        factory = ProxyProtocolFactory(Factory.forProtocol(Greeter), timeout=0.2)
        port = await listen(reactor, factory)
        assert await _talk(port, [b"PROXY TCP4 "], 0) == b""

    scenario(body)


def test_over_sockets_an_untrusted_client_is_closed_at_once() -> None:
    async def body(reactor: Reactor) -> None:
        factory = ProxyProtocolFactory(Factory.forProtocol(Greeter), trusted=["192.0.2.0/24"])
        port = await listen(reactor, factory)
        assert await _talk(port, [encode(tcp(1))], 0) == b""

    scenario(body)


# -- real HAProxy in front of two statewire processes ----------------------------------------

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not installed (Debian: apt-get install haproxy)",
)

BACKEND = '''\
"""A statewire backend behind HAProxy: answers each line with what it knows of the client."""
import logging
import sys

from grammars.proxy import PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID
from statewire import reactor
from statewire.basic import LineReceiver
from statewire.protocol import Factory
from statewire.proxy import ProxyProtocolFactory

NAME = sys.argv[1]
#: connections that came with a LOCAL header: HAProxy's health checks (check-send-proxy)
LOCALS = [0]
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")


class Who(LineReceiver):
    def connectionMade(self):
        super().connectionMade()
        LOCALS[0] += self.transport.header.command == 0

    def lineReceived(self, line):
        if line == b"locals":
            self.sendLine(f"{NAME} {LOCALS[0]}".encode())
            return
        peer, host = self.transport.getPeer(), self.transport.getHost()
        header = self.transport.header
        tlvs = "crc" if header.tlv(PP2_TYPE_CRC32C) else "-"
        tlvs += "+id" if header.tlv(PP2_TYPE_UNIQUE_ID) else ""
        self.sendLine(
            f"{NAME} {peer.host} {peer.port} {host.host} {host.port} "
            f"v{header.version} {tlvs} {line.decode()}".encode()
        )


factory = ProxyProtocolFactory(Factory.forProtocol(Who), trusted=["127.0.0.0/8"], timeout=3)
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
reactor.run()
'''


def haproxy_config(frontends: dict[str, int], backends: list[int], host: str = "127.0.0.1") -> str:
    """An HAProxy configuration: one ``mode tcp`` frontend per PROXY version
    (``{"v1": port, "v2": port}``), each balancing over every backend port with health
    checks, sending the PROXY header (v2: with CRC32C and a unique ID). docs/proxy.md
    shows this function's output."""
    lines = [
        "global",
        "    maxconn 256",
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    # a refused connection is retried on another server",
        "    retries 3",
        "    option redispatch 1",
    ]
    for version, port in frontends.items():
        send = "send-proxy" if version == "v1" else "send-proxy-v2"
        lines += ["", f"frontend front_{version}", f"    bind {host}:{port}"]
        if version == "v2":
            lines.append("    unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid")
        lines += [
            f"    default_backend statewire_{version}",
            "",
            f"backend statewire_{version}",
            "    balance roundrobin",
        ]
        options = " proxy-v2-options crc32c,unique-id" if version == "v2" else ""
        for i, backend in enumerate(backends, 1):
            lines.append(
                f"    server s{i} {host}:{backend} {send}{options} "
                "check check-send-proxy inter 100ms fall 1 rise 1"
            )
    return "\n".join(lines) + "\n"


@pytest.fixture
def haproxy_factory(tmp_path: Path) -> Iterator[Any]:
    """Start HAProxy with a generated configuration; stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(frontends: dict[str, int], backends: list[int]) -> None:
            config = haproxy_config(frontends, backends)
            stack.enter_context(haproxy(config, tmp_path, list(frontends.values())))

        yield start


def ask(port: int, line: str = "who") -> tuple[tuple[str, int], list[str]]:
    """Connect through HAProxy, send ``line``; this client's address and the words of the
    answer (empty if the connection closed without one)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(line.encode() + b"\r\n")
        answer = b""
        while not answer.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return sock.getsockname(), answer.decode().split()


def served(port: int, line: str = "who", attempts: int = 5) -> tuple[tuple[str, int], list[str]]:
    """:func:`ask`, again while the connection closes without an answer (bounded)."""
    for _ in range(attempts):
        me, words = ask(port, line)
        if words:
            return me, words
        time.sleep(0.2)
    raise AssertionError(f"no answer through port {port} in {attempts} attempts")


def _connected_to(front: int, backend: str) -> socket.socket:
    """A connection through HAProxy that landed on ``backend`` (round robin: bounded)."""
    for _ in range(6):
        sock = socket.create_connection((HOST, front), timeout=10)
        sock.sendall(b"who\r\n")
        if sock.recv(4096).startswith(backend.encode() + b" "):
            return sock
        sock.close()
    raise AssertionError(f"round robin never reached {backend}")


@needs_haproxy
def test_haproxy_balances_two_backends_that_see_each_clients_own_address(
    haproxy_factory: Any,
) -> None:
    fronts = {"v1": free_port(), "v2": free_port()}
    with running("-c", BACKEND, "b1") as b1, running("-c", BACKEND, "b2") as b2:
        haproxy_factory(fronts, [b1.port, b2.port])
        for version, front in fronts.items():
            seen = set()
            for i in range(6):
                (host, port), words = served(front, f"hello{i}")
                name, peer, peer_port, dst, dst_port, ver, tlvs, echo = words
                assert (peer, int(peer_port)) == (host, port)  # this client, not HAProxy
                assert (dst, int(dst_port)) == (HOST, front)
                assert ver == version and echo == f"hello{i}"
                assert tlvs == ("crc+id" if version == "v2" else "-")
                seen.add(name)
            assert seen == {"b1", "b2"}  # round robin over both
        for _ in range(50):  # bounded: the health checks run every 100 ms
            _, (name, checks) = served(fronts["v2"], "locals")
            if int(checks) > 0:
                break
            time.sleep(0.1)
        assert int(checks) > 0  # HAProxy's v2 health checks: LOCAL headers, taken

        # a client on b2 stays connected while b1 is killed mid-run
        kept = _connected_to(fronts["v2"], "b2")
        try:
            b1.process.send_signal(signal.SIGKILL)
            b1.process.wait(10)
            for front in fronts.values():
                for i in range(6):
                    (host, port), words = served(front, f"after{i}")
                    assert words[0] == "b2"
                    assert (words[1], int(words[2])) == (host, port)
            kept.sendall(b"still\r\n")
            assert kept.recv(4096).split()[-1] == b"still"
        finally:
            kept.close()
        output = "".join(b2.output)
        assert "Traceback" not in output and "refused" not in output, output


@needs_haproxy
def test_haproxy_accepts_the_generated_configuration_of_the_docs(tmp_path: Path) -> None:
    config = tmp_path / "docs.cfg"
    config.write_text(haproxy_config({"v1": 8081, "v2": 8082}, [7001, 7002]))
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    docs = (ROOT / "docs" / "proxy.md").read_text()
    assert haproxy_config({"v1": 8081, "v2": 8082}, [7001, 7002]) in docs


# -- curl --haproxy-protocol against statewire's HTTP server ---------------------------------

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


async def whoami(request: Request, response: Response) -> None:
    client = request.client or ("?", 0)
    await response.send(200, [("Content-Type", "text/plain")], b"%s %d" % (
        client[0].encode(), client[1]))  # fmt: skip


@needs_curl
def test_curl_haproxy_protocol_reaches_the_http_server_as_itself() -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, ProxyProtocolFactory(HTTPFactory(whoami), versions=("v1",)))
        process = await asyncio.create_subprocess_exec(
            "curl", "-s", "--max-time", "20", "--haproxy-protocol", "-w",
            "\n%{local_ip} %{local_port}", f"http://{HOST}:{port}/",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        seen, local = out.decode().split("\n")
        assert seen == local  # the server saw curl's own address and port
        plain = await asyncio.create_subprocess_exec(
            "curl", "-s", "--max-time", "20", f"http://{HOST}:{port}/",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(plain.communicate(), 30)
        assert out == b""  # no header: refused before HTTP saw a byte

    scenario(body)
