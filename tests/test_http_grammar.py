"""The HTTP/1.1 grammar (grammars.http1): what it accepts, what it refuses and why, and
Hypothesis round trips of every symmetric grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grammars import InvalidValueError, MalformedError, TruncatedError
from grammars.http1 import (
    MAX_CHUNK_LINE,
    MAX_FIELDS,
    MAX_REQUEST_LINE,
    Chunked,
    FieldsTooLarge,
    RequestHead,
    RequestLineTooLong,
    ResponseHead,
    UnsupportedVersion,
    chunked,
    content_of,
    parse_chunk_line,
    parse_field_line,
    parse_request_line,
    request_head,
    response_head,
)


def test_a_request_head_parses_to_its_parts() -> None:
    head = request_head().parse(b"GET /a?b HTTP/1.0\r\nHost: x\r\nX-A:  1 2 \t\r\n\r\nrest")
    assert head == RequestHead(b"GET", b"/a?b", (1, 0), ((b"Host", b"x"), (b"X-A", b"1 2")))


def test_a_response_head_builds_with_its_reason() -> None:
    wire = response_head().build(ResponseHead(404, ((b"Content-Length", b"0"),)))
    assert wire == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"GET  / HTTP/1.1", "not: method SP target"),
        (b"GET / HTTP/1.1 ", "not: method SP target"),
        (b"G(T / HTTP/1.1", "method is not a token"),
        (b"GET /\x00 HTTP/1.1", "not VCHAR"),
        (b"GET /\x7f HTTP/1.1", "not VCHAR"),
        (b"GET / HTTP/1.x", "malformed HTTP version"),
        (b"GET / http/1.1", "malformed HTTP version"),
        (b"GET / HTTP/11", "malformed HTTP version"),
    ],
)
def test_malformed_request_lines_are_refused(line: bytes, why: str) -> None:
    with pytest.raises(MalformedError, match=why.replace("(", r"\(")):
        parse_request_line(line)


def test_other_http_versions_are_unsupported_not_malformed() -> None:
    with pytest.raises(UnsupportedVersion):
        parse_request_line(b"GET / HTTP/2.0")
    assert parse_request_line(b"OPTIONS * HTTP/1.0") == (b"OPTIONS", b"*", (1, 0))


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b" folded", "obs-fold"),
        (b"\tfolded", "obs-fold"),
        (b"Host : x", "whitespace between a field name and its colon"),
        (b"Host\t: x", "whitespace between a field name and its colon"),
        (b"Ho st: x", "not a token"),
        (b": x", "not a token"),
        (b"Host x", "without a colon"),
        (b"X: a\x00b", "control character"),
        (b"X: a\x01b", "control character"),
        (b"X: a\x7fb", "control character"),
    ],
)
def test_malformed_field_lines_are_refused(line: bytes, why: str) -> None:
    with pytest.raises(MalformedError, match=why):
        parse_field_line(line)


def test_field_values_keep_inner_whitespace_and_obs_text() -> None:
    assert parse_field_line(b"X:\t a \t b\xff \t") == (b"X", b"a \t b\xff")
    assert parse_field_line(b"X:") == (b"X", b"")


def test_lines_must_end_with_crlf() -> None:
    assert content_of(b"GET / HTTP/1.1\r") == b"GET / HTTP/1.1"
    with pytest.raises(MalformedError, match="bare LF"):
        content_of(b"GET / HTTP/1.1")
    with pytest.raises(MalformedError, match="bare CR"):
        content_of(b"X: a\rb\r")
    with pytest.raises(MalformedError, match="bare LF"):
        request_head().parse(b"GET / HTTP/1.1\nHost: x\n\n")


def test_head_limits_raise_their_own_errors() -> None:
    with pytest.raises(RequestLineTooLong):
        request_head().parse(b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n")
    many = b"".join(b"X-%d: y\r\n" % i for i in range(MAX_FIELDS + 1))
    with pytest.raises(FieldsTooLarge):
        request_head().parse(b"GET / HTTP/1.1\r\n" + many + b"\r\n")
    request_head().parse(b"GET / HTTP/1.1\r\n" + many.split(b"\r\n", 1)[1] + b"\r\n")
    with pytest.raises(FieldsTooLarge):
        request_head().parse(b"GET / HTTP/1.1\r\nX: " + b"v" * (64 << 10) + b"\r\n\r\n")
    with pytest.raises(TruncatedError):
        request_head().parse(b"GET / HTTP/1.1\r\nHost: x\r\n")


@pytest.mark.parametrize(
    ("line", "size", "extensions"),
    [
        (b"0", 0, ()),
        (b"1aF", 0x1AF, ()),
        (b"000000000000000a", 10, ()),
        (b"5;a", 5, ((b"a", None),)),
        (b"5 ; a = b ;c", 5, ((b"a", b"b"), (b"c", None))),
        (b'5;q="x\\"y;z"', 5, ((b"q", b'x"y;z'),)),
    ],
)
def test_chunk_size_lines(line: bytes, size: int, extensions: object) -> None:
    assert parse_chunk_line(line) == (size, extensions)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b" 5",
        b"5 ",
        b"0x5",
        b"-1",
        b"+1",
        b"g",
        b"1" * 17,
        b"5;",
        b"5;=b",
        b"5;a=",
        b'5;a="open',
        b"5;a=b c",
        b"5,a",
        b"5;a=\x00",
        b"5;" + b"a" * MAX_CHUNK_LINE,
    ],
)
def test_bad_chunk_size_lines_are_refused(line: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_chunk_line(line)


def test_chunked_bodies_need_crlf_after_each_chunk() -> None:
    assert chunked().parse(b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n") == Chunked((b"abc",), ((b"T", b"1"),))
    with pytest.raises(MalformedError, match="CRLF"):
        chunked().parse(b"3\r\nabcX\r\n0\r\n\r\n")
    with pytest.raises(InvalidValueError):
        chunked().build(Chunked((b"",)))


# -- round trips ---------------------------------------------------------------------------

_TCHAR = st.sampled_from(b"!#$%&'*+-.^_`|~09azAZ")
tokens = st.lists(_TCHAR, min_size=1, max_size=12).map(bytes)
values = (
    st.lists(st.sampled_from(b"\t !az~\x80\xff"), min_size=0, max_size=20)
    .map(bytes)
    .map(lambda v: v.strip(b" \t"))
)
fields = st.lists(st.tuples(tokens, values), max_size=12).map(tuple)
targets = st.lists(st.integers(0x21, 0x7E), min_size=1, max_size=40).map(bytes)
versions = st.sampled_from([(1, 0), (1, 1)])


@given(tokens, targets, versions, fields)
def test_request_heads_round_trip(
    method: bytes,
    target: bytes,
    version: tuple[int, int],
    section: tuple[tuple[bytes, bytes], ...],
) -> None:
    head = RequestHead(method, target, version, section)
    assert request_head().parse(request_head().build(head)) == head


@given(st.integers(100, 999), fields, versions, values)
def test_response_heads_round_trip(
    status: int, section: tuple[tuple[bytes, bytes], ...], version: tuple[int, int], reason: bytes
) -> None:
    head = ResponseHead(status, section, reason, version)
    assert response_head().parse(response_head().build(head)) == head


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8).map(tuple), fields)
def test_chunked_bodies_round_trip(
    chunks: tuple[bytes, ...], trailers: tuple[tuple[bytes, bytes], ...]
) -> None:
    body = Chunked(chunks, trailers)
    assert chunked().parse(chunked().build(body)) == body
