"""The common request line and field section read in C (``statewire.protocols.
_http1_speedups``) are read exactly as the grammar reads them: ``request_line`` and
``FieldSection.read_ahead`` give the same results, and the same refusals, with the
accelerator and without it, on near-valid lines and sections, with a byte changed,
inserted or removed, cut anywhere, at and past the limits; the common forms are the C
reading's (it is used); and without the accelerator (``STATEWIRE_PURE=1``) heads are
read in Python."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import assert_runs_pure

from grammars.http1 import MAX_FIELD_BYTES, MAX_FIELDS
from statewire.protocols import _http_head
from statewire.protocols._http_head import FieldSection, Refusal, request_line

try:
    from statewire.protocols import _http1_speedups
except ImportError:  # not built
    _http1_speedups = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(
    _http1_speedups is None or _http_head.quick_section is None,
    reason="the C accelerator is not built, or STATEWIRE_PURE=1",
)


@contextmanager
def _pure() -> Iterator[None]:
    """The grammar's reading only, for the time of the block."""
    saved = _http_head.quick_request_line, _http_head.quick_section
    _http_head.quick_request_line = _http_head.quick_section = None
    try:
        yield
    finally:
        _http_head.quick_request_line, _http_head.quick_section = saved


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("read", call())
    except Refusal as refusal:
        return ("refused", refusal.status, refusal.detail)


def _mutated(data: bytes, how: int, at: int, byte: int) -> bytes:
    """``data`` with one byte changed (0), inserted (1) or removed (2) at ``at``."""
    at = at % (len(data) + 1)
    if how == 0 and at < len(data):
        return data[:at] + bytes([byte]) + data[at + 1 :]
    if how == 1:
        return data[:at] + bytes([byte]) + data[at:]
    return data[:at] + data[at + 1 :]


mutations = st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(0, 255))


def test_heads_are_read_in_c_when_it_is_built() -> None:
    built = _http1_speedups is not None and os.environ.get("STATEWIRE_PURE") != "1"
    assert (_http_head.quick_request_line is not None) is built
    assert (_http_head.quick_section is not None) is built


# -- the request line ------------------------------------------------------------------------


def _mostly(good: list[bytes], bad: list[bytes], noise: st.SearchStrategy[bytes]) -> Any:
    """One of ``good`` most of the time (so that most of the lines made are the common form
    the C reading takes, some of them broken after), else one of ``bad``, or ``noise``."""
    other = st.sampled_from(bad) | noise
    return st.integers(0, 9).flatmap(lambda n: st.sampled_from(good) if n < 8 else other)


methods = _mostly(
    [b"GET", b"POST", b"HEAD", b"DELETE", b"M-SEARCH", b"get"],
    [b"CONNECT", b"", b"G@T", b"GE\x00T"],
    st.binary(max_size=6),
)
targets = _mostly(
    [b"/", b"/a/b?c=d&e", b"/%20x", b"/~user/i.html"],
    [b"/a#frag", b"*", b"http://example.org/p?q", b"example.org:443", b"/a b", b"/\x80", b""],
    st.binary(max_size=8).map(lambda b: b"/" + b),
)
versions = _mostly(
    [b"HTTP/1.1", b"HTTP/1.0"],
    [b"HTTP/2.0", b"HTTP/1.10", b"http/1.1", b"HTTP/1.1 ", b"HTTP/11"],
    st.binary(max_size=9),
)
line_ends = st.sampled_from([b"\r"] * 12 + [b"", b"\r\r", b" \r"])
spaces = st.sampled_from([b" "] * 12 + [b"  ", b"\t"])


def _same_request_line(frame: bytes) -> Any:
    fast = _outcome(lambda: request_line(frame))
    with _pure():
        assert _outcome(lambda: request_line(frame)) == fast, frame
    return fast


@needs_c
@given(methods, spaces, targets, spaces, versions, line_ends, mutations)
def test_a_request_line_is_read_alike_with_c_and_without(
    method: bytes,
    first: bytes,
    target: bytes,
    second: bytes,
    version: bytes,
    end: bytes,
    mutation: tuple[int, int, int],
) -> None:
    frame = method + first + target + second + version + end
    _same_request_line(frame)
    _same_request_line(_mutated(frame, *mutation))


@needs_c
@pytest.mark.parametrize(
    "frame",
    [
        b"GET / HTTP/1.1\r",
        b"POST /echo?x=1 HTTP/1.0\r",
        b"M-SEARCH /a%20b HTTP/1.1\r",
        b"GET /" + b"a" * 8000 + b" HTTP/1.1\r",
    ],
)
def test_a_common_request_line_is_read_in_c(frame: bytes) -> None:
    assert _http_head.quick_request_line is not None
    known = _http_head.quick_request_line(frame, 8192)
    assert known is not None
    assert ("read", known) == _same_request_line(frame)


@needs_c
@pytest.mark.parametrize(
    "frame",
    [
        b"CONNECT example.org:443 HTTP/1.1\r",  # the authority-form
        b"CONNECT /x HTTP/1.1\r",
        b"OPTIONS * HTTP/1.1\r",
        b"GET http://example.org/ HTTP/1.1\r",  # the absolute-form
        b"GET /a#b HTTP/1.1\r",
        b"GET / HTTP/2.0\r",  # 505
        b"GET / HTTP/1.1",  # a bare LF
        b"GET / HTTP/1.1\r\r",
        b"GET  / HTTP/1.1\r",
    ],
)
def test_any_other_request_line_is_left_to_the_grammar(frame: bytes) -> None:
    assert _http_head.quick_request_line is not None
    assert _http_head.quick_request_line(frame, 8192) is None
    _same_request_line(frame)


@needs_c
def test_a_request_line_past_the_length_given_is_left_to_the_grammar() -> None:
    assert _http_head.quick_request_line is not None
    frame = b"GET /" + b"a" * 20 + b" HTTP/1.1\r"
    assert _http_head.quick_request_line(frame, len(frame) - 1) is not None
    assert _http_head.quick_request_line(frame, len(frame) - 2) is None
    # the largest length there is (no overflow working out the longest line it allows)
    assert _http_head.quick_request_line(frame, sys.maxsize) is not None


@needs_c
def test_the_limits_may_be_any_integer_like_value() -> None:
    assert _http1_speedups is not None

    class Index:
        def __index__(self) -> int:
            return 8192

    known = _http1_speedups.request_line(b"GET / HTTP/1.1\r", Index())  # type: ignore[arg-type]
    assert known == (b"GET", b"/", (1, 1))
    section = _http1_speedups.field_section(b"\r\n", Index(), Index())  # type: ignore[arg-type]
    assert section == ([], 2)


# -- the field section -----------------------------------------------------------------------

names = _mostly(
    [b"Host", b"content-length", b"X-A", b"x_b", b"!#$%&'*+-.^_`|~"],
    [b"X(A)", b"X A", b"", b"\xc3\xa9"],
    st.binary(max_size=5),
)
ows = st.sampled_from([b"", b" ", b"\t", b"  \t"] * 3 + [b" \x0b"])
values = _mostly(
    [b"", b"a", b"two  words", b"\x80\xff", b"a:b", b"text/html; q=0.9"],
    [b"a\x01b", b"a\rb", b"a\nb", b"\x7f", b"a\x00"],
    st.binary(max_size=6),
)
ends = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r", b" \r\n"])
field_lines = st.builds(
    lambda name, before, value, after, end: name + b":" + before + value + after + end,
    names,
    ows,
    values,
    ows,
    ends,
) | st.sampled_from([b" folded\r\n", b"NoColon\r\n", b"\r\n", b"\n", b"X : a\r\n"])
tails = st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"abc", b"\r\n", b"\r\n\r\n"])
#: lines read before the section goes on (a section read in part, line by line)
prefilled = st.lists(st.sampled_from([b"Host: a\r", b"X-B: b\r"]), max_size=2)


def _read(data: bytes, before: list[bytes]) -> Any:
    section = FieldSection()
    for frame in before:
        section.add(frame)
    outcome = _outcome(lambda: section.read_ahead(data))
    return outcome, section.fields, section.size


def _same_section(data: bytes, before: list[bytes] = []) -> Any:  # noqa: B006 (never changed)
    fast = _read(data, before)
    with _pure():
        assert _read(data, before) == fast, data
    return fast


@needs_c
@given(
    st.lists(field_lines, max_size=6),
    st.booleans(),
    tails,
    prefilled,
    mutations,
    st.integers(0, 400),
)
def test_a_field_section_is_read_alike_with_c_and_without(
    lines: list[bytes],
    ended: bool,
    tail: bytes,
    before: list[bytes],
    mutation: tuple[int, int, int],
    cut: int,
) -> None:
    data = b"".join(lines) + (b"\r\n" if ended else b"") + tail
    _same_section(data, before)
    _same_section(_mutated(data, *mutation), before)
    _same_section(data[:cut], before)


@needs_c
@pytest.mark.parametrize(
    "data, fields, size",
    [
        (b"\r\n", [], 2),
        (b"\r\nGET / HTTP/1.1\r\n", [], 2),
        (b"Host: a\r\n\r\n", [(b"Host", b"a")], 11),
        (
            b"Host:a\r\nX-B: \t two  words \t\r\n\r\nabc",
            [(b"Host", b"a"), (b"X-B", b"two  words")],
            31,
        ),
        (b"X-Obs: \x80\xff\r\nX-Empty:\r\n\r\n", [(b"X-Obs", b"\x80\xff"), (b"X-Empty", b"")], 23),
    ],
)
def test_a_common_field_section_is_read_in_c(
    data: bytes, fields: list[tuple[bytes, bytes]], size: int
) -> None:
    assert _http_head.quick_section is not None
    assert _http_head.quick_section(data, MAX_FIELD_BYTES, MAX_FIELDS) == (fields, size)
    assert _same_section(data) == (("read", size), fields, size)


def _section(count: int, width: int = 8) -> bytes:
    return b"".join(b"X-%05d: %s\r\n" % (n, b"v" * width) for n in range(count)) + b"\r\n"


@needs_c
def test_the_field_limits_are_the_grammars() -> None:
    assert _http_head.quick_section is not None
    at_most = _section(MAX_FIELDS)
    assert _same_section(at_most)[0] == ("read", len(at_most))
    assert _http_head.quick_section(at_most, MAX_FIELD_BYTES, MAX_FIELDS) is not None
    one_more = _section(MAX_FIELDS + 1)
    assert _http_head.quick_section(one_more, MAX_FIELD_BYTES, MAX_FIELDS) is None
    assert _same_section(one_more)[0][:2] == ("refused", 431)
    # the bytes: a section of exactly the limit is read, one byte more is refused
    exact = _section(40, 1500)  # (40 lines of 1511 bytes)
    pad = MAX_FIELD_BYTES - len(exact)
    exact = exact[:-2] + b"X-Pad: " + b"p" * (pad - 9) + b"\r\n\r\n"
    assert len(exact) == MAX_FIELD_BYTES
    with_c = _http_head.quick_section(exact, MAX_FIELD_BYTES, MAX_FIELDS)
    assert with_c is not None and with_c[1] == MAX_FIELD_BYTES
    assert _same_section(exact)[0] == ("read", MAX_FIELD_BYTES)
    over = exact[:-4] + b"p\r\n\r\n"
    assert _http_head.quick_section(over, MAX_FIELD_BYTES, MAX_FIELDS) is None
    assert _same_section(over)[0][:2] == ("refused", 431)


@needs_c
def test_the_accelerator_refuses_what_is_not_bytes() -> None:
    assert _http1_speedups is not None
    with pytest.raises(TypeError):
        _http1_speedups.request_line(bytearray(b"GET / HTTP/1.1\r"), 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _http1_speedups.field_section("\r\n", 10, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _http1_speedups.field_section(b"\r\n", 10)  # type: ignore[call-arg]
    with pytest.raises(OverflowError):
        _http1_speedups.field_section(b"\r\n", 1 << 80, 10)


def test_without_the_accelerator_heads_are_read_in_python() -> None:
    script = textwrap.dedent(
        """
        from statewire.protocols import _http_head
        from statewire.protocols._http_head import FieldSection, request_line
        assert _http_head.quick_request_line is None and _http_head.quick_section is None
        section = FieldSection()
        assert section.read_ahead(b"Host: a\\r\\n\\r\\nGET") == 11
        assert section.fields == [(b"Host", b"a")]
        assert request_line(b"GET / HTTP/1.1\\r") == (b"GET", b"/", (1, 1))
        print("pure")
        """
    )
    assert_runs_pure(script)
