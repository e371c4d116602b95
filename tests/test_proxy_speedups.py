"""The v1 ``TCP4`` line and the plain v2 TCP header read in C (``statewire._proxy_speedups``)
answer exactly as the pure-Python readings (``statewire.proxy.scan_v1_tcp4``,
``scan_v2_plain``) do. v1: on valid lines, on lines with bytes changed, inserted or
removed, on every cut of a line, and on numbers at and past their bounds; v2: on headers of
any address and port, every cut, a byte of the fixed part changed, TLVs and other
commands; and without the accelerator (``STATEWIRE_PURE=1``) connections read the same
headers in Python."""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import assert_runs_pure
from test_proxy_grammar import near_v1_lines

from grammars.proxy import ProxyHeader, encode
from statewire.address import IPv4Address
from statewire.proxy import V1_IN_C, quick_scan, scan_v1_tcp4, scan_v2_plain

v1_tcp4: Callable[[bytes], tuple[str, int, int] | None] | None
v2_plain: Callable[[bytes], tuple[str, int, int, bool] | None] | None
try:
    from statewire._proxy_speedups import v1_tcp4, v2_plain
except ImportError:  # not built
    v1_tcp4 = v2_plain = None

needs_c = pytest.mark.skipif(v1_tcp4 is None, reason="statewire._proxy_speedups is not built")


def _same(data: bytes) -> tuple[str, int, int] | None:
    """The C reading of ``data``, checked equal to the expression's."""
    assert v1_tcp4 is not None
    fast = v1_tcp4(data)
    assert fast == scan_v1_tcp4(data)
    return fast


def test_connections_read_v1_lines_in_c_when_it_is_built() -> None:
    assert V1_IN_C is (v1_tcp4 is not None and os.environ.get("STATEWIRE_PURE") != "1")


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_quick_scan_reads_any_bytes_like_line(kind: Callable[[bytes], Any]) -> None:
    line = b"PROXY TCP4 203.0.113.9 198.51.100.2 61000 8080\r\n"
    found = quick_scan(kind(line + b"GET"))
    assert found is not None
    version, peer, header, size = found
    assert isinstance(peer, IPv4Address)
    assert (version, peer.host, peer.port, header, size) == (1, "203.0.113.9", 61000, line, 48)


@needs_c
@given(near_v1_lines(), st.sampled_from([b"", b"\r\n", b"\r\nGET / HTTP/1.1\r\n", b"\n"]))
def test_c_reads_near_valid_lines_as_the_expression(line: bytes, after: bytes) -> None:
    _same(line + after)


octet = st.one_of(
    st.integers(0, 300).map(lambda n: b"%d" % n),
    st.integers(0, 99).map(lambda n: b"0%d" % n),  # a leading zero
    st.sampled_from([b"", b"1234", b"-1", b"+1", b"1 ", b"0x1"]),
)
port = st.one_of(
    st.integers(0, 70000).map(lambda n: b"%d" % n),
    st.integers(0, 9999).map(lambda n: b"0%d" % n),
    st.sampled_from([b"", b"123456", b"65535", b"65536", b"99999", b"-1"]),
)
quads = st.lists(octet, min_size=3, max_size=5).map(b".".join)


@needs_c
@pytest.mark.parametrize("gap", [b" ", b"  ", b"\t", b"_", b""])
@given(quads, quads, port, port)
def test_c_checks_each_number_and_separator_as_the_expression(
    gap: bytes, source: bytes, destination: bytes, sport: bytes, dport: bytes
) -> None:
    line = b"PROXY TCP4 " + gap.join([source, destination, sport, dport]) + b"\r\n"
    read = _same(line + b"rest")
    if gap == b" " and read is not None:
        assert read == (source.decode(), int(sport), len(line))
    elif gap != b" ":
        assert read is None


@needs_c
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", ("0.0.0.0", 0)),
        (
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            ("255.255.255.255", 65535),
        ),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /", ("192.168.0.1", 56324)),
        (b"PROXY TCP4 256.0.0.1 1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 65536 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 65536\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 01 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\r", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\r\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\rX", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 99999999999999999999999\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 18446744073709551616 1\r\n", None),  # 2**64: no wrap
        (b"PROXY TCP4 18446744073709551616.1.1.1 1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 4294967297.1.1.1 1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 1..1.1 1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1  1\r\n", None),
        (b"PROXY TCP4 1,1.1.1 1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1_1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1\t1.1.1.1 1 1\r\n", None),
        (b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1X\n", None),
        (b"PROXY TCP6 ::1 ::1 1 1\r\n", None),
        (b"PROXY UNKNOWN\r\n", None),
        (b"proxy TCP4 1.1.1.1 1.1.1.1 1 1\r\n", None),
        (b"", None),
    ],
)
def test_c_reads_the_bounds(line: bytes, expected: tuple[str, int] | None) -> None:
    read = _same(line)
    assert (read if read is None else read[:2]) == expected
    if read is not None:
        assert line[read[2] - 2 : read[2]] == b"\r\n"


@needs_c
def test_c_never_reads_a_line_from_a_part_of_one() -> None:
    line = b"PROXY TCP4 203.0.113.9 198.51.100.2 61000 8080\r\n"
    assert _same(line) == ("203.0.113.9", 61000, len(line))
    for cut in range(len(line)):
        assert _same(line[:cut]) is None


@needs_c
def test_c_refuses_what_is_not_bytes() -> None:
    assert v1_tcp4 is not None
    with pytest.raises(TypeError):
        v1_tcp4(bytearray(b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\r\n"))  # type: ignore[arg-type]


def test_without_the_accelerator_connections_read_v1_lines_with_the_expression() -> None:
    program = textwrap.dedent(
        """
        from statewire import proxy
        assert not proxy.V1_IN_C
        line = b"PROXY TCP4 203.0.113.9 198.51.100.2 61000 8080\\r\\n"
        version, peer, header, size = proxy.quick_scan(line + b"GET")
        assert (version, peer.host, peer.port, header, size) == (
            1, "203.0.113.9", 61000, line, len(line))
        assert proxy.quick_scan(line.replace(b"203", b"300")) is None
        print("pure")
        """
    )
    assert_runs_pure(program)


# -- v2: a TCP header without TLVs ------------------------------------------------------------


def _same_v2(data: bytes) -> tuple[str, int, int, bool] | None:
    assert v2_plain is not None
    fast = v2_plain(data)
    assert fast == scan_v2_plain(data)
    return fast


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@needs_c
@given(
    st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    ports,
    ports,
    st.binary(max_size=8),
    st.data(),
)
def test_c_reads_a_plain_v2_header_as_python(
    addresses: tuple[str, str], sport: int, dport: int, after: bytes, data: st.DataObject
) -> None:
    source, destination = addresses
    wire = encode(ProxyHeader.tcp((source, sport), (destination, dport), 2))
    read = _same_v2(wire + after)
    assert read is not None
    # the host as a socket's address gives it (inet_ntop: an IPv4-mapped one in its dotted
    # form, ``::ffff:0.0.0.0``, where ipaddress writes ``::ffff:0:0``)
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    host = socket.inet_ntop(family, socket.inet_pton(family, source))
    assert read == (host, sport, len(wire), ":" in source)
    for cut in range(len(wire)):  # never a header from a part of one
        assert _same_v2(wire[:cut]) is None
    changed = bytearray(wire + after)  # a byte of the fixed part changed: only what Python takes
    at = data.draw(st.integers(0, 15))
    changed[at] = data.draw(st.integers(0, 255))
    _same_v2(bytes(changed))


@needs_c
def test_c_leaves_v2_headers_with_tlvs_or_other_commands_to_python() -> None:
    tlv = encode(ProxyHeader.tcp(("192.0.2.7", 1), ("192.0.2.1", 2), 2, [(0x04, b"")]))
    local = encode(ProxyHeader.local())
    for wire in (tlv, local, b"", b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\r\n"):
        assert _same_v2(wire) is None
    assert v2_plain is not None
    with pytest.raises(TypeError):
        v2_plain(bytearray(tlv))  # type: ignore[arg-type]


@needs_c
def test_an_ipv4_mapped_source_reads_as_a_socket_gives_it() -> None:
    for source in ("::ffff:0:0", "::ffff:1.2.3.4"):
        wire = encode(ProxyHeader.tcp((source, 1000), ("::1", 80), 2))
        host = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, source))
        assert _same_v2(wire) == (host, 1000, len(wire), True)
        assert host.endswith((".0.0.0", ".2.3.4"))  # (the dotted form, as inet_ntop writes)
