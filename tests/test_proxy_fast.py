"""The fast road of the PROXY protocol (statewire/proxy.py): ``quick_scan`` against the
grammar's ``scan``, the CRC32C in C against the pure-Python one, and the hand-over of the
connection to the wrapped protocol -- on transports without hand-over (a
:class:`~statewire.proxy.ProxiedTransport` in between), and on statewire's own (the runtime's
hand-over: nothing in between) in memory, over loopback sockets (statewire's transport, the
loop's, uvloop's), over a TLS port and through the Twisted adapter."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import ssl
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import ROOT
from runtime_helpers import listen, scenario
from test_proxy_grammar import headers, near_v1_lines, v2_headers
from test_proxy_server import (
    CLIENT,
    REAL_HOST,
    REAL_PEER,
    SERVER,
    Greeter,
    Memory,
    Pauser,
    Recorder,
    Recorders,
    _talk,
    tcp,
)

from grammars import proxy as grammar
from grammars.errors import GrammarError
from grammars.proxy import (
    PP2_TYPE_CRC32C,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE,
    Family,
    ProxyHeader,
    Transport,
    encode,
    scan,
)
from statewire._reactor import Reactor
from statewire.address import Address, IPv4Address, IPv6Address
from statewire.error import Failure
from statewire.protocol import Factory
from statewire.proxy import (
    CRC32C_IN_C,
    ProxiedTransport,
    ProxyProtocolFactory,
    ProxyRelay,
    crc32c,
    header_address,
    quick_scan,
    read_header,
)
from statewire.testing.memory import StringTransport

HAS_GOOGLE_CRC32C = importlib.util.find_spec("google_crc32c") is not None

# -- quick_scan answers as scan does, or not at all -------------------------------------------


def _agrees(data: bytes, max_length: int = grammar.V2_MAX_LENGTH) -> bool:
    """Whether quick_scan's answer on ``data`` is scan's; True when it read it."""
    quick = quick_scan(data, max_length)
    if quick is None:
        return False
    version, peer, header, size = quick
    found = scan(data, max_length)
    assert found is not None
    expected, expected_size = found
    assert size == expected_size
    assert version == expected.version
    assert peer == header_address(expected)
    assert type(peer) is type(header_address(expected))  # the class's own equality
    assert header == data[:size]
    assert read_header(header) == expected
    return True


def _common(header: ProxyHeader) -> bool:
    """Whether quick_scan must read ``header``: v1 TCP4; v2 PROXY of TCP, any TLVs."""
    if header.command is not grammar.Command.PROXY or header.transport is not Transport.STREAM:
        return False
    if header.version == 1:
        return header.family is Family.INET
    return header.family in (Family.INET, Family.INET6)


@given(headers, st.binary(max_size=32))
def test_quick_scan_reads_the_common_headers_as_scan_does(
    header: ProxyHeader, after: bytes
) -> None:
    wire = encode(header)
    assert _agrees(wire + after) == _common(header)
    for cut in range(len(wire)):  # never a header from a part of one
        assert quick_scan(wire[:cut]) is None


@given(v2_headers(), st.binary(max_size=16))
def test_quick_scan_checks_a_crc32c_tlv_anywhere_as_scan_does(
    header: ProxyHeader, after: bytes
) -> None:
    at = len(header.tlvs) // 2
    sealed = header._replace(
        tlvs=(*header.tlvs[:at], (PP2_TYPE_CRC32C, bytes(4)), *header.tlvs[at:])
    )
    wire = encode(sealed)
    assert _agrees(wire + after) == _common(sealed)


@given(headers, st.data())
def test_quick_scan_never_takes_what_scan_refuses(
    header: ProxyHeader, data: st.DataObject
) -> None:
    """A byte of a header changed (a CRC, a length, an address, a TLV): quick_scan takes it
    only if scan takes it, and then reads it alike."""
    wire = bytearray(encode(header) + b"rest")
    at = data.draw(st.integers(0, len(wire) - 1))
    wire[at] = data.draw(st.integers(0, 255))
    changed = bytes(wire)
    max_length = data.draw(st.sampled_from([grammar.V2_MAX_LENGTH, 2048, 40, 12, 0]))
    try:
        scan(changed, max_length)
    except GrammarError:
        assert quick_scan(changed, max_length) is None
        return
    _agrees(changed, max_length)


@given(near_v1_lines(), st.binary(max_size=8))
def test_quick_scan_takes_exactly_the_v1_lines_scan_takes(line: bytes, after: bytes) -> None:
    data = line + b"\r\n" + after
    try:
        found = scan(data)
    except GrammarError:
        found = None
    if found is None:
        assert quick_scan(data) is None
    else:
        assert _agrees(data) == _common(found[0])


@given(st.binary(max_size=120))
def test_quick_scan_on_garbage_is_none_or_scans_answer(data: bytes) -> None:
    for start in (b"", b"PROXY TCP4 ", SIGNATURE + b"\x21\x11", SIGNATURE + b"\x21\x21"):
        try:
            scan(start + data)
        except GrammarError:
            assert quick_scan(start + data) is None
            continue
        _agrees(start + data)


def test_quick_scan_refuses_a_bad_crc32c_to_scan() -> None:
    wire = bytearray(encode(tcp(2)._replace(tlvs=((PP2_TYPE_CRC32C, bytes(4)),))))
    wire[-1] ^= 0x01
    assert quick_scan(bytes(wire)) is None
    with pytest.raises(grammar.ChecksumError):
        scan(bytes(wire))


# -- CRC32C: in C when google-crc32c is there, the same numbers as the pure-Python one ------


@given(st.binary(max_size=600))
def test_crc32c_is_the_pure_python_crc32c(data: bytes) -> None:
    assert crc32c(data) == grammar.crc32c(data)
    assert crc32c(bytearray(data)) == grammar.crc32c(data)


@pytest.mark.skipif(not HAS_GOOGLE_CRC32C, reason="google-crc32c is not installed")
@given(st.binary(max_size=600))
def test_google_crc32c_is_the_pure_python_crc32c(data: bytes) -> None:
    import google_crc32c

    assert google_crc32c.value(data) == grammar.crc32c(data)


def test_crc32c_runs_in_c_when_google_crc32c_is_installed() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the Castagnoli check value
    if HAS_GOOGLE_CRC32C:
        import google_crc32c

        in_c = google_crc32c.implementation == "c"
        assert in_c is CRC32C_IN_C
    else:
        assert not CRC32C_IN_C


def test_without_google_crc32c_the_pure_python_crc32c_checks_the_same_headers() -> None:
    """In a fresh interpreter where google-crc32c cannot be imported: the pure-Python
    fallback, taken for every CRC32C (good and bad) exactly as the C one is."""
    program = textwrap.dedent(
        """
        import sys
        sys.modules["google_crc32c"] = None  # import google_crc32c raises ImportError
        from grammars.proxy import PP2_TYPE_CRC32C, ProxyHeader, encode
        from statewire import proxy
        assert not proxy.CRC32C_IN_C
        assert proxy.crc32c(b"123456789") == 0xE3069283
        crc = [(PP2_TYPE_CRC32C, bytes(4))]
        wire = encode(ProxyHeader.tcp(("192.0.2.7", 1), ("192.0.2.1", 2), 2, crc))
        assert proxy.quick_scan(wire)[3] == len(wire)
        assert proxy.quick_scan(wire[:-1] + bytes([wire[-1] ^ 1])) is None
        print("pure")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"


# -- the hand-over: a transport that delivers to its ``protocol`` -----------------------------


class Delivering(StringTransport):
    """A memory transport that delivers as statewire's do: to its ``protocol``."""

    protocol: Any = None

    def receive(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def lose(self, reason: Failure) -> None:
        self.protocol.connectionLost(reason)


class Handed(Memory):
    """:class:`Memory`, through a :class:`Delivering` transport."""

    transport_kind = Delivering
    transport: Delivering

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.transport.protocol = self.protocol  # what it delivers to, as on statewire's

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.transport.receive(chunk)


@pytest.mark.parametrize(
    "wire",
    [
        encode(tcp(1)),
        encode(tcp(2)),
        encode(tcp(2)._replace(tlvs=((PP2_TYPE_CRC32C, bytes(4)), (PP2_TYPE_UNIQUE_ID, b"id")))),
        encode(ProxyHeader.local()),
    ],
    ids=["v1", "v2", "v2 crc32c+id", "v2 LOCAL"],
)
def test_the_transport_is_handed_to_the_wrapped_protocol(wire: bytes) -> None:
    conn = Handed()
    reader = conn.protocol
    conn.feed(wire[:5], wire[5:] + b"one")
    wrapped = conn.wrapped
    assert conn.transport.protocol is wrapped  # later reads go straight to it
    assert isinstance(wrapped.transport, ProxiedTransport) and wrapped.transport.relay is reader
    conn.feed(b" two")
    assert bytes(wrapped.data) == b"one two"
    header = scan(wire)
    assert header is not None
    assert wrapped.transport.header == header[0]
    conn.transport.lose(Failure(Exception("gone")))
    assert wrapped.lost is not None


@given(headers, st.binary(max_size=16))
def test_the_wrapped_protocol_sees_every_header_as_scan_reads_it(
    header: ProxyHeader, after: bytes
) -> None:
    conn = Handed()
    conn.feed(encode(header) + after)
    assert conn.wrapped.transport.header == header
    assert conn.wrapped.peer == (header_address(header) or REAL_PEER)
    assert conn.wrapped.host == (header_address(header, False) or conn.transport.getHost())
    assert bytes(conn.wrapped.data) == after


@pytest.mark.parametrize("version", [1, 2])
def test_a_header_whole_in_the_first_read_gives_the_same_as_one_cut(version: int) -> None:
    whole, cut = Handed(), Handed()
    wire = encode(tcp(version))
    whole.feed(wire + b"data")
    cut.feed(wire[:3], wire[3:], b"data")
    for conn in (whole, cut):
        assert conn.wrapped.peer == IPv4Address("TCP", *CLIENT)
        assert conn.wrapped.host == IPv4Address("TCP", *SERVER)
        assert bytes(conn.wrapped.data) == b"data"
        assert conn.inner.addresses == [IPv4Address("TCP", *CLIENT)]
    assert whole.wrapped.transport.header == cut.wrapped.transport.header == tcp(version)


def test_an_ipv6_header_gives_ipv6_addresses() -> None:
    conn = Handed()
    conn.feed(encode(ProxyHeader.tcp(("2001:db8::7", 4242), ("2001:db8::1", 443), 2)) + b"x")
    assert conn.wrapped.peer == IPv6Address("TCP", "2001:db8::7", 4242)
    assert conn.wrapped.host == IPv6Address("TCP", "2001:db8::1", 443)


def test_handed_bytes_read_with_the_header_wait_while_the_wrapped_protocol_pauses() -> None:
    conn = Handed(kind=Pauser)
    conn.feed(encode(tcp(2)) + b"first")
    assert conn.transport.producerState == "paused"
    assert conn.wrapped.data == b""
    conn.wrapped.transport.resumeProducing()
    conn.clock.advance(0)
    assert bytes(conn.wrapped.data) == b"first"
    assert conn.transport.producerState == "producing"
    conn.feed(b" then")
    assert bytes(conn.wrapped.data) == b"first then"


REFUSED = [
    (lambda w: w[:-1] + bytes([w[-1] ^ 1]), "a bad CRC32C"),
    (lambda w: w[:14] + b"\x08\x01" + w[16:], "a length over max_length"),
    (lambda w: w[:12] + b"\x31" + w[13:], "version 3"),
    (lambda w: b"GET / HTTP/1.1\r\n\r\n", "no header"),
]


@pytest.mark.parametrize(("spoil", "why"), REFUSED, ids=[w for _, w in REFUSED])
def test_a_spoiled_first_read_is_refused_as_before(
    spoil: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    wire = encode(tcp(2)._replace(tlvs=((PP2_TYPE_UNIQUE_ID, b"id"), (PP2_TYPE_CRC32C, bytes(4)))))
    conn = Handed()
    with caplog.at_level(logging.INFO, logger="statewire"):
        conn.feed(spoil(wire) + b"data")
    assert conn.transport.disconnecting and conn.wrapped is None
    assert conn.transport.protocol is conn.protocol  # never handed over
    assert "PROXY header refused from 10.1.1.1:40000" in caplog.text


def test_a_wrapped_protocol_that_closes_at_once_gets_no_bytes() -> None:
    class Closer(Recorder):
        def connectionMade(self) -> None:
            super().connectionMade()
            self.transport.loseConnection()

    conn = Handed(kind=Closer)
    conn.feed(encode(tcp(1)) + b"ignored")
    assert conn.transport.disconnecting
    assert conn.wrapped.data == b""


# -- the runtime's hand-over, in memory -------------------------------------------------------


class HandingOver(StringTransport):
    """A memory transport with the hand-over of statewire's transports
    (``Connection.handOver``, ``relay``): it delivers to its ``protocol``, reports its
    relay's addresses, holds handed bytes while paused."""

    protocol: Any = None
    relay: Any = None
    held = b""

    def getPeer(self) -> Address:
        relay = self.relay
        return self.peer if relay is None or relay.peer is None else relay.peer

    def getHost(self) -> Address:
        relay = self.relay
        return self.host if relay is None or relay.host is None else relay.host

    @property
    def header(self) -> Any:
        return None if self.relay is None else self.relay.header

    def handOver(self, protocol: Any, data: bytes = b"") -> None:
        self.protocol = protocol
        self.held += data
        protocol.makeConnection(self)
        held = self.held
        if held and not self.disconnecting and self.producerState != "paused":
            self.held = b""
            protocol.dataReceived(held)

    def receive(self, data: bytes) -> None:
        self.protocol.dataReceived(data)


class Relayed(Handed):
    """:class:`Memory`, through a :class:`HandingOver` transport."""

    transport_kind = HandingOver
    transport: HandingOver  # type: ignore[assignment]


@given(headers, st.binary(max_size=16))
def test_handed_over_the_wrapped_protocol_sees_every_header_as_scan_reads_it(
    header: ProxyHeader, after: bytes
) -> None:
    conn = Relayed()
    reader = conn.protocol
    assert isinstance(reader, ProxyRelay)
    conn.feed(encode(header) + after)
    wrapped = conn.wrapped
    assert wrapped.transport is conn.transport  # nothing in between
    assert conn.transport.protocol is wrapped and conn.transport.relay is reader
    assert conn.transport.header == header
    assert wrapped.peer == (header_address(header) or REAL_PEER)
    assert wrapped.host == (header_address(header, False) or REAL_HOST)
    assert conn.inner.addresses == [header_address(header) or REAL_PEER]
    assert bytes(wrapped.data) == after
    assert reader.proxy == REAL_PEER


@given(near_v1_lines(), st.binary(max_size=8), st.integers(1, 8))
def test_handed_over_a_v1_line_is_taken_exactly_when_scan_takes_it(
    line: bytes, after: bytes, pieces: int
) -> None:
    data = line + b"\r\n" + after
    try:
        found = scan(data)
    except GrammarError:
        found = None
    for cut in {0, len(data) // pieces}:  # whole in the first read, and cut
        conn = Relayed()
        conn.feed(*((data,) if not cut else (data[:cut], data[cut:])))
        if found is None:
            assert conn.wrapped is None and conn.transport.disconnecting
        else:
            assert conn.transport.header == found[0]
            assert conn.wrapped.peer == (header_address(found[0]) or REAL_PEER)
            assert bytes(conn.wrapped.data) == data[found[1] :]


@given(headers, st.data())
def test_handed_over_a_spoiled_header_is_taken_exactly_when_scan_takes_it(
    header: ProxyHeader, data: st.DataObject
) -> None:
    """A byte of a header changed (a CRC, a length, an address, a TLV), whole in the first
    read: the relay's own reading takes it only if scan takes it, and then reads it alike."""
    wire = bytearray(encode(header) + b"rest")
    at = data.draw(st.integers(0, len(wire) - 1))
    wire[at] = data.draw(st.integers(0, 255))
    changed = bytes(wire)
    max_length = data.draw(st.sampled_from([grammar.V2_MAX_LENGTH, 2048, 40, 12, 0]))
    try:
        found = scan(changed, max_length)
    except GrammarError:
        found = None
    conn = Relayed(max_length=min(max_length, 0xFFFF))
    conn.feed(changed)
    if found is None:  # refused, or waiting for more
        assert conn.wrapped is None
        return
    assert conn.transport.header == found[0]
    assert conn.wrapped.peer == (header_address(found[0]) or REAL_PEER)
    assert bytes(conn.wrapped.data) == changed[found[1] :]


def test_the_factory_makes_its_relays_as_the_class_does() -> None:
    factory = ProxyProtocolFactory(Recorders(), timeout=None)
    made, built = ProxyRelay(factory, REAL_PEER), factory.buildProtocol(REAL_PEER)
    assert type(built) is ProxyRelay
    for name in ProxyRelay.__slots__:
        assert getattr(made, name, "unset") == getattr(built, name, "unset"), name


def test_handed_over_bytes_wait_while_the_wrapped_protocol_pauses() -> None:
    conn = Relayed(kind=Pauser)
    conn.feed(encode(tcp(1)) + b"first")
    assert conn.wrapped.data == b"" and conn.transport.held == b"first"


def test_a_refused_header_is_never_handed_over(caplog: pytest.LogCaptureFixture) -> None:
    conn = Relayed()
    with caplog.at_level(logging.INFO, logger="statewire"):
        conn.feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\nGET /")
    assert conn.wrapped is None and conn.transport.relay is None
    assert conn.transport.disconnecting
    assert "PROXY header refused from 10.1.1.1:40000" in caplog.text


# -- over loopback: statewire's socket transport and the loop's own ----------------------------


class Owner(Greeter):
    """Greets, and says whether its transport delivers to it directly, and what it says of
    the proxy and the header."""

    def connectionMade(self) -> None:
        transport = self.transport
        handed = transport.protocol is self and isinstance(transport.relay, ProxyRelay)
        self.transport.write(b"handed\n" if handed else b"not handed\n")
        host, proxy = transport.getHost(), transport.proxy
        self.transport.write(
            b"v%d %s:%d via %s\n"
            % (transport.header.version, host.host.encode(), host.port, proxy.host.encode())
        )
        super().connectionMade()


TRANSPORTS = pytest.mark.parametrize(
    "kind", ["socket", "native", "uvloop"], ids=["socket transport", "asyncio", "uvloop"]
)


def _run(body: Any, kind: str) -> Any:
    return scenario(body, native=kind != "socket", uvloop=kind == "uvloop")


@TRANSPORTS
def test_over_sockets_the_connection_is_handed_to_the_wrapped_protocol(kind: str) -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, ProxyProtocolFactory(Factory.forProtocol(Owner)))
        for version, wire in ((1, encode(tcp(1))), (2, encode(tcp(2)))):
            said = b"handed\nv%d 198.51.100.1:443 via 127.0.0.1\n" % version
            expect = said + b"203.0.113.7 4242\nhi"
            assert await _talk(port, [wire + b"hi"], len(expect)) == expect
            cut = [wire[:7], wire[7:], b"hi"]
            assert await _talk(port, cut, len(expect)) == expect

    _run(body, kind)


@TRANSPORTS
def test_over_sockets_a_local_header_keeps_the_real_addresses(kind: str) -> None:
    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, ProxyProtocolFactory(Factory.forProtocol(Greeter)))
        return await _talk(port, [encode(ProxyHeader.local()) + b"hi"], 18)  # an ephemeral port

    got = _run(body, kind)
    assert got.startswith(b"127.0.0.1 ") and got.endswith(b"\nhi")


@TRANSPORTS
def test_over_sockets_bytes_with_the_header_wait_while_the_wrapped_protocol_pauses(
    kind: str,
) -> None:
    class Slow(Greeter):
        def connectionMade(self) -> None:
            super().connectionMade()
            self.transport.pauseProducing()
            self.transport.reactor.callLater(0.1, self.transport.resumeProducing)

    async def body(reactor: Reactor) -> bytes:
        port = await listen(reactor, ProxyProtocolFactory(Factory.forProtocol(Slow)))
        return await _talk(port, [encode(tcp(2)) + b"first", b" second"], 29)

    assert _run(body, kind) == b"203.0.113.7 4242\nfirst second"


def test_over_a_tls_port_the_header_inside_tls_is_read_and_handed_over(tmp_path: Any) -> None:
    from runtime_helpers import self_signed_certificate

    from statewire.endpoints import ssl_context

    cert, key = self_signed_certificate(tmp_path)
    client = ssl.create_default_context(cafile=cert)

    async def body(reactor: Reactor) -> bytes:
        factory = ProxyProtocolFactory(Factory.forProtocol(Owner))
        port = reactor.listenSSL(0, factory, ssl_context(cert, key), interface="127.0.0.1")
        await port.ready
        number = port.getHost().port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", number, ssl=client)
        writer.write(encode(tcp(2)) + b"hi")
        got = b""
        while not got.endswith(b"hi"):
            more = await asyncio.wait_for(reader.read(4096), 20)
            if not more:
                break
            got += more
        writer.close()
        return got

    got = scenario(body)
    assert got == b"handed\nv2 198.51.100.1:443 via 127.0.0.1\n203.0.113.7 4242\nhi"


def test_through_the_twisted_adapter_the_wrapped_protocol_sees_the_client() -> None:
    """Twisted's transports have no hand-over: the wrapped protocol gets a
    ProxiedTransport, and the relay passes the reads on."""
    pytest.importorskip("twisted")
    from twisted.internet import address as taddress
    from twisted.internet.error import ConnectionDone
    from twisted.internet.testing import StringTransport as TwistedStringTransport
    from twisted.python.failure import Failure as TwistedFailure

    from statewire.twisted import adapt

    inner = Recorders()
    factory = adapt(ProxyProtocolFactory(inner, timeout=None))
    protocol = factory.buildProtocol(taddress.IPv4Address("TCP", "10.1.1.1", 40000))
    transport = TwistedStringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(encode(tcp(2)) + b"one")
    protocol.dataReceived(b" two")
    (wrapped,) = inner.built
    assert isinstance(wrapped.transport, ProxiedTransport)
    assert wrapped.peer == IPv4Address("TCP", *CLIENT)
    assert wrapped.host == IPv4Address("TCP", *SERVER)
    assert wrapped.transport.header == tcp(2)
    assert wrapped.transport.proxy == IPv4Address("TCP", "10.1.1.1", 40000)
    assert bytes(wrapped.data) == b"one two"
    protocol.connectionLost(TwistedFailure(ConnectionDone()))
    assert wrapped.lost is not None


# -- trust: decided once per host ----------------------------------------------------------


def test_trust_is_decided_alike_however_many_hosts_connect_and_follows_new_networks() -> None:
    factory = ProxyProtocolFactory(Factory(), trusted=["10.0.0.0/8", "2001:db8::/32"])
    hosts = [f"10.{i // 256}.{i % 256}.1" for i in range(1500)]
    hosts += [f"11.0.{i // 256}.{i % 256}" for i in range(1500)]
    hosts += ["::ffff:10.0.0.1", "2001:db8::5", "2001:db9::5", "fe80::1%eth0", "nonsense"]
    expected = [h.startswith(("10.", "::ffff:10.", "2001:db8:")) for h in hosts]
    for _ in range(2):  # decided, then remembered (or decided again once forgotten)
        verdicts = [factory.is_trusted(IPv4Address("TCP", h, 1)) for h in hosts]
        assert verdicts == expected
    factory.trusted = ()  # new networks: nothing decided before holds
    assert not factory.is_trusted(IPv4Address("TCP", "10.0.0.1", 1))
