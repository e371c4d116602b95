"""The PROXY protocol grammar (grammars/proxy.py): the spec's own examples, its strict
rules for v1 and v2, round trips of every header Hypothesis makes, and arbitrary cuts:
no prefix of a valid header is refused, and no garbage is taken for one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grammars.errors import (
    GrammarError,
    InvalidValueError,
    MalformedError,
    TooLongError,
    TruncatedError,
)
from grammars.proxy import (
    PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE,
    V1_MAX,
    ChecksumError,
    Command,
    Detected,
    Family,
    NotProxyError,
    ProxyHeader,
    SSLInfo,
    Transport,
    _fast_v1,  # the two readings of v1: the fast path and the strict one, compared below
    _parse_v1,
    canonical,
    crc32c,
    detect,
    encode,
    encode_ssl,
    proxy,
    proxy_v1,
    proxy_v2,
    scan,
)

# -- the spec's examples -------------------------------------------------------------------


def test_the_specs_v1_example_leaves_the_request_after_it() -> None:
    data = (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    )
    found = scan(data)
    assert found is not None
    header, size = found
    assert data[size:] == b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    assert header == ProxyHeader.tcp(("192.168.0.1", 56324), ("192.168.0.11", 443), 1)


@pytest.mark.parametrize(
    ("line", "length"),
    [
        (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56),
        (b"PROXY TCP6 " + b":".join([b"ffff"] * 8) + b" " + b":".join([b"ffff"] * 8)
         + b" 65535 65535\r\n", 104),
        (b"PROXY UNKNOWN\r\n", 15),
        (b"PROXY UNKNOWN " + b":".join([b"ffff"] * 8) + b" " + b":".join([b"ffff"] * 8)
         + b" 65535 65535\r\n", 107),
    ],
)  # fmt: skip
def test_the_specs_longest_lines_are_accepted(line: bytes, length: int) -> None:
    assert len(line) == length
    assert scan(line) is not None
    assert proxy_v1().parse(line).version == 1


def test_unknown_ignores_what_follows_it() -> None:
    assert proxy().parse(b"PROXY UNKNOWN anything at all 1 2\r\n") == ProxyHeader.unknown()


def test_v1_takes_ipv6_as_inet_pton_writes_it() -> None:
    header = proxy().parse(b"PROXY TCP6 ::ffff:10.0.0.1 2001:DB8::1 1 0\r\n")
    assert header.source == "::ffff:10.0.0.1"  # as inet_ntop writes it
    assert header.destination == "2001:db8::1"
    assert (header.source_port, header.destination_port) == (1, 0)


V1_REFUSED = [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "leading zero in a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "port over 65535"),
    (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "leading zero in an address"),
    (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "address byte over 255"),
    (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "three address bytes"),
    (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "two spaces"),
    (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "two spaces after PROXY"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "a trailing space"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "a missing port"),
    (b"PROXY TCP4 ::1 ::1 1 2\r\n", "IPv6 in a TCP4 line"),
    (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "IPv4 in a TCP6 line"),
    (b"PROXY TCP6 fe80::1%1 ::1 1 2\r\n", "an IPv6 zone"),
    (b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "nine IPv6 groups"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "an unknown protocol"),
    (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "a lower-case protocol"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "a sign"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "a bare LF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "a bare CR"),
    (b"PROXY UNKNOWN\n\r\n", "a bare LF after UNKNOWN"),
    (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no space after PROXY"),
    (b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", "over 107 bytes"),
]


@pytest.mark.parametrize(("line", "why"), V1_REFUSED, ids=[w for _, w in V1_REFUSED])
def test_v1_is_read_strictly(line: bytes, why: str) -> None:
    with pytest.raises((MalformedError, TooLongError)):
        scan(line)
    with pytest.raises(GrammarError):
        proxy().parse(line)


def test_v1_without_crlf_in_107_bytes_is_too_long_from_byte_107() -> None:
    line = b"PROXY UNKNOWN " + b"a" * 200
    assert scan(line[: V1_MAX - 1]) is None
    with pytest.raises(TooLongError) as caught:
        scan(line[:V1_MAX])
    assert caught.value.limit == V1_MAX


@pytest.mark.parametrize(
    "start",
    [b"PROXY TCP4 1.2.3.4 x", b"PROXY XYZ ", b"PROXY TCP4 1.2.3.4\n", b"PROXY TCP4 1 2 3 4 5"],
)
def test_a_bad_v1_start_is_refused_before_its_crlf(start: bytes) -> None:
    with pytest.raises(MalformedError):
        scan(start)


def v2(ver_cmd: int, fam: int, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return SIGNATURE + bytes([ver_cmd, fam]) + size.to_bytes(2, "big") + body


def test_v2_tcp4_as_the_spec_lays_it_out() -> None:
    body = bytes([192, 168, 0, 1, 192, 168, 0, 11]) + (56324).to_bytes(2, "big")
    body += (443).to_bytes(2, "big")
    header = proxy_v2().parse(v2(0x21, 0x11, body) + b"after")
    assert header == ProxyHeader.tcp(("192.168.0.1", 56324), ("192.168.0.11", 443))


def test_v2_local_skips_its_length_whatever_it_is() -> None:
    data = v2(0x20, 0x00, b"\x04\x00\x02ab") + b"GET"
    found = scan(data)
    assert found is not None
    assert found[0].command is Command.LOCAL
    assert found[0].tlvs == ((PP2_TYPE_NOOP, b"ab"),)
    assert data[found[1] :] == b"GET"


def test_v2_unix_addresses_are_108_bytes_each() -> None:
    body = b"/run/client".ljust(108, b"\0") + b"/run/server.sock".ljust(108, b"\0")
    header = proxy().parse(v2(0x21, 0x31, body))
    assert (header.family, header.transport) == (Family.UNIX, Transport.STREAM)
    assert (header.source, header.destination) == (b"/run/client", b"/run/server.sock")
    assert proxy().build(header) == v2(0x21, 0x31, body)


def test_v2_tlvs_come_back_in_order_with_the_ssl_tlv_parsed() -> None:
    ssl = encode_ssl(SSLInfo(1, 0, ((PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3"),)))
    tlvs = ((PP2_TYPE_ALPN, b"h2"), (PP2_TYPE_AUTHORITY, b"example.com"), (PP2_TYPE_SSL, ssl))
    header = ProxyHeader.tcp(("::1", 1), ("::2", 2), tlvs=tlvs)
    parsed = proxy().parse(proxy().build(header))
    assert parsed == header
    info = parsed.ssl()
    assert info is not None and info.get(PP2_SUBTYPE_SSL_VERSION) == b"TLSv1.3"
    assert info.get(PP2_SUBTYPE_SSL_CN) is None


def test_crc32c_is_the_castagnoli_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_v2_crc32c_is_computed_when_built_and_checked_when_parsed() -> None:
    header = ProxyHeader.tcp(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(PP2_TYPE_CRC32C, b"....")])
    wire = proxy().build(header)
    parsed = proxy().parse(wire)
    value = parsed.tlv(PP2_TYPE_CRC32C)
    assert value is not None and value != b"...."
    assert proxy().build(parsed) == wire
    broken = bytearray(wire)
    broken[18] ^= 1  # one bit of the source address
    with pytest.raises(ChecksumError):
        scan(broken)


V2_REFUSED = [
    (v2(0x11, 0x11, bytes(12)), "version 1 in the version nibble"),
    (v2(0x22, 0x11, bytes(12)), "command 2"),
    (v2(0x21, 0x41, bytes(12)), "family 4"),
    (v2(0x21, 0x13, bytes(12)), "transport 3"),
    (v2(0x21, 0x10, bytes(12)), "INET with an UNSPEC transport"),
    (v2(0x21, 0x11, bytes(11)), "an address block too short"),
    (v2(0x21, 0x11, bytes(12) + b"\x04\x00"), "a truncated TLV head"),
    (v2(0x21, 0x11, bytes(12) + b"\x04\x00\x05abc"), "a TLV past the end"),
    (v2(0x21, 0x11, bytes(12) + b"\x03\x00\x02ab"), "a 2-byte CRC32C"),
    (v2(0x21, 0x11, bytes(12) + b"\x05\x00\x81" + bytes(129)), "a 129-byte UNIQUE_ID"),
    (v2(0x21, 0x11, bytes(12) + b"\x20\x00\x02ab"), "a short SSL TLV"),
]


@pytest.mark.parametrize(("data", "why"), V2_REFUSED, ids=[w for _, w in V2_REFUSED])
def test_v2_is_read_strictly(data: bytes, why: str) -> None:
    with pytest.raises(MalformedError):
        scan(data)


def test_a_huge_v2_length_is_refused_from_the_fixed_16_bytes() -> None:
    fixed = SIGNATURE + b"\x21\x11\xff\xff"
    with pytest.raises(TooLongError) as caught:
        scan(fixed, max_length=2048)
    assert caught.value.limit == 2048
    assert scan(fixed) is None  # within the spec's own bound: waits for the rest
    with pytest.raises(TooLongError):
        proxy_v2(2048).parse(fixed + bytes(100))


def test_bad_v2_bytes_are_refused_as_soon_as_they_arrive() -> None:
    with pytest.raises(MalformedError):
        scan(SIGNATURE + b"\x31")
    with pytest.raises(MalformedError):
        scan(SIGNATURE + b"\x21\x99")


def test_detect_tells_as_early_as_it_can() -> None:
    assert detect(b"") is Detected.INCOMPLETE
    assert detect(b"PROX") is Detected.INCOMPLETE
    assert detect(b"PROXY") is Detected.V1
    assert detect(SIGNATURE[:11]) is Detected.INCOMPLETE
    assert detect(SIGNATURE) is Detected.V2
    assert detect(b"\r\n\r\nGET") is Detected.NOT_PROXY
    assert detect(b"G") is Detected.NOT_PROXY
    with pytest.raises(NotProxyError):
        scan(b"GET / HTTP/1.0\r\n\r\n")


def test_the_grammars_keep_to_their_versions() -> None:
    v1_line = b"PROXY UNKNOWN\r\n"
    with pytest.raises(MalformedError):
        proxy_v2().parse(v1_line)
    with pytest.raises(InvalidValueError):
        proxy_v1().build(ProxyHeader.local())
    with pytest.raises(TruncatedError):
        proxy().parse(v1_line[:-1])


@pytest.mark.parametrize(
    "header",
    [
        ProxyHeader(1, Command.LOCAL),
        ProxyHeader(1, tlvs=((1, b"x"),)),
        ProxyHeader(2, Command.PROXY, Family.INET, Transport.STREAM, "::1", "::1", 1, 2),
        ProxyHeader(2, Command.PROXY, Family.INET, Transport.STREAM, "1.1.1.1", "1.1.1.1", 0, -1),
        ProxyHeader(2, Command.PROXY, Family.UNSPEC, Transport.UNSPEC, "1.1.1.1"),
        ProxyHeader(2, tlvs=((256, b""),)),
        ProxyHeader(2, tlvs=((PP2_TYPE_UNIQUE_ID, bytes(129)),)),
        ProxyHeader(3),
    ],
)  # fmt: skip
def test_what_cannot_be_sent_is_not_built(header: ProxyHeader) -> None:
    with pytest.raises(InvalidValueError):
        encode(header)


def test_a_v2_header_over_the_limit_is_not_built() -> None:
    header = ProxyHeader.local(tlvs=[(PP2_TYPE_NOOP, bytes(3000))])
    with pytest.raises(TooLongError):
        proxy_v2(2048).build(header)


# -- Hypothesis: every header, every cut ----------------------------------------------------

ports = st.integers(0, 0xFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: canonical(str(a), Family.INET6))


def _tcp(version: int, family: Family) -> st.SearchStrategy[ProxyHeader]:
    addresses = ipv4 if family is Family.INET else ipv6
    return st.builds(
        ProxyHeader,
        st.just(version),
        st.just(Command.PROXY),
        st.just(family),
        st.just(Transport.STREAM),
        addresses,
        addresses,
        ports,
        ports,
        tlvs=st.just(()),
    )


tlv_values = st.binary(max_size=40)
tlvs = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_NOOP]), tlv_values),
        st.tuples(st.just(PP2_TYPE_UNIQUE_ID), st.binary(max_size=128)),
        st.tuples(st.integers(0xE0, 0xFF), tlv_values),
        st.builds(
            lambda client, verify, subs: (PP2_TYPE_SSL, encode_ssl(SSLInfo(client, verify, subs))),
            st.integers(0, 7),
            st.integers(0, 0xFFFFFFFF),
            st.lists(st.tuples(st.integers(0x21, 0x25), tlv_values), max_size=3).map(tuple),
        ),
    ),
    max_size=4,
).map(tuple)

v1_headers = st.one_of(_tcp(1, Family.INET), _tcp(1, Family.INET6), st.just(ProxyHeader.unknown()))


@st.composite
def v2_headers(draw: st.DrawFn) -> ProxyHeader:
    family = draw(st.sampled_from(list(Family)))
    command = draw(st.sampled_from(list(Command)))
    extra = draw(tlvs)
    if family is Family.UNSPEC:
        return ProxyHeader(2, command, tlvs=extra)
    transport = draw(st.sampled_from([Transport.STREAM, Transport.DGRAM]))
    if family is Family.UNIX:
        path = st.binary(max_size=108).map(lambda p: p.rstrip(b"\0"))
        return ProxyHeader(2, command, family, transport, draw(path), draw(path), tlvs=extra)
    base = draw(_tcp(2, family))
    return ProxyHeader(
        2,
        command,
        family,
        transport,
        base.source,
        base.destination,
        base.source_port,
        base.destination_port,
        extra,
    )


headers = st.one_of(v1_headers, v2_headers())


@given(headers)
def test_every_header_parses_back_to_itself(header: ProxyHeader) -> None:
    grammar = proxy_v1() if header.version == 1 else proxy_v2()
    wire = grammar.build(header)
    assert grammar.parse(wire) == header
    assert proxy().parse(wire) == header
    assert len(wire) <= V1_MAX or header.version == 2


@given(v2_headers())
def test_a_crc32c_tlv_is_sealed_and_checked_anywhere_in_the_tlvs(header: ProxyHeader) -> None:
    sealed = header._replace(tlvs=((PP2_TYPE_CRC32C, bytes(4)), *header.tlvs))
    wire = proxy().build(sealed)
    parsed = proxy().parse(wire)
    assert proxy().build(parsed) == wire
    assert parsed.tlvs[1:] == header.tlvs


@given(headers, st.binary(max_size=64))
def test_no_prefix_of_a_header_is_refused_and_the_whole_one_stops_at_its_end(
    header: ProxyHeader, after: bytes
) -> None:
    wire = encode(header)
    for cut in range(len(wire)):
        assert scan(wire[:cut]) is None
    found = scan(wire + after)
    assert found == (header, len(wire))


@given(st.binary(max_size=300))
def test_garbage_is_refused_with_a_typed_error_or_waits_never_crashes(data: bytes) -> None:
    try:
        found = scan(data, max_length=256)
    except GrammarError:
        return
    if found is not None:
        _, size = found
        assert 0 < size <= len(data)
        assert scan(data[:size], max_length=256) == found


@given(st.sampled_from([b"PROXY ", SIGNATURE]), st.binary(max_size=120))
def test_near_misses_are_refused_or_parsed_never_crash(start: bytes, rest: bytes) -> None:
    data = start + rest
    try:
        found = scan(data, max_length=256)
    except GrammarError:
        # a refusal is final: no more bytes could have made it a header
        with pytest.raises(GrammarError):
            scan(data + b"\r\n" + bytes(300), max_length=256)
        return
    if found is not None:
        assert encode(found[0]) is not None


# -- the fast path of v1 is the strict reading ------------------------------------------------

ALPHABET = b"0123456789abcdefABCDEF.: PROXYTCP46UNKNOW\r\n-+x%"


@st.composite
def near_v1_lines(draw: st.DrawFn) -> bytes:
    """A valid v1 line (CRLF cut off), then a few bytes changed, inserted or removed."""
    line = bytearray(encode(draw(v1_headers))[:-2])
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(line)))
        byte = draw(st.sampled_from(list(ALPHABET)))
        edit = draw(st.sampled_from(["replace", "insert", "delete"]))
        if edit == "insert":
            line.insert(at, byte)
        elif at < len(line):
            if edit == "replace":
                line[at] = byte
            else:
                del line[at]
    return bytes(line)


@given(near_v1_lines())
def test_the_v1_fast_path_takes_exactly_what_the_strict_reading_takes(line: bytes) -> None:
    try:
        strict: ProxyHeader | None = _parse_v1(line)
    except GrammarError:
        strict = None
    fast = _fast_v1(line)
    if strict is not None and strict.family is not Family.UNSPEC:
        assert fast == strict
    else:
        assert fast is None
    # and scan, with its own one-expression reading of TCP4 lines, agrees with both
    if b"\r" in line or b"\n" in line:
        return  # scan would stop at an earlier CRLF
    if strict is None:
        with pytest.raises(GrammarError):
            scan(line + b"\r\n")
    else:
        assert scan(line + b"\r\nGET") == (strict, len(line) + 2)
