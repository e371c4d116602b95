"""The v1 ``TCP4`` line read in C (``statewire._proxy_speedups``) answers exactly as the
pure-Python expression (``statewire.proxy.scan_v1_tcp4``) does: on valid lines, on lines
with bytes changed, inserted or removed, on every cut of a line, and on numbers at and
past their bounds; and without the accelerator (``STATEWIRE_PURE=1``) connections read
the same lines with the expression."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import ROOT
from test_proxy_grammar import near_v1_lines

from statewire.address import IPv4Address
from statewire.proxy import V1_IN_C, quick_scan, scan_v1_tcp4

v1_tcp4: Callable[[bytes], tuple[str, int, int] | None] | None
try:
    from statewire._proxy_speedups import v1_tcp4
except ImportError:  # not built
    v1_tcp4 = None

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
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "STATEWIRE_PURE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"
