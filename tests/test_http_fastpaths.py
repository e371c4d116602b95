"""The HTTP server's one-call fast paths against the general rules they shortcut
(differential, Hypothesis): each must give the same result, or the same refusal, for any
line or head, well-formed or not."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from grammars import GrammarError
from grammars.http1 import (
    content_of,
    field_line,
    field_of,
    parse_field_line,
    parse_request_line,
    request_line_of,
    status_line,
)
from statewire.protocols._http_exchange import Headers, reason
from statewire.protocols._http_head import (
    Refusal,
    body_length,
    expects_continue,
    head_rules,
    keeps_alive,
)

#: bytes the rules single out (CR, LF, SP, HTAB, colon, NUL, DEL, obs-text...) and a few
#: ordinary ones, so that generated lines hit every branch
_SPECIAL = b'\r\n \t:\x00\x7f\x80\xff/#*?%,;="\\'
_ORDINARY = b"aAzZ09-._~!$&'()+"
_BYTES = st.sampled_from(list(_SPECIAL + _ORDINARY)).map(lambda b: bytes([b]))
_PIECES = st.sampled_from(
    [b"GET", b"CONNECT", b"OPTIONS", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"Host", b"/a"]
)
_ANY = st.lists(st.one_of(_BYTES, _PIECES), max_size=12).map(b"".join)
#: lines shaped as the rules expect, with any bytes in their parts
_SHAPED = st.one_of(
    st.tuples(_ANY, _ANY, _ANY).map(b" ".join),
    st.tuples(_PIECES, _PIECES, _PIECES).map(b" ".join),
    st.tuples(_ANY, _ANY).map(b":".join),
    st.tuples(_PIECES, _ANY).map(b": ".join),
)
frames = st.one_of(_ANY, _SHAPED)


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    """What ``call(*args)`` gave: its result, or the kind and message of its error."""
    try:
        return ("value", call(*args))
    except Refusal as refusal:
        return ("refusal", (refusal.status, refusal.detail))
    except GrammarError as error:
        return (type(error).__name__, str(error))


def general_field(frame: bytes) -> tuple[bytes, bytes] | None:
    content = content_of(frame)
    return parse_field_line(content) if content else None


@settings(max_examples=600, deadline=None)
@given(st.one_of(frames, frames.map(lambda f: f + b"\r")))
def test_field_of_is_content_of_then_parse_field_line(frame: bytes) -> None:
    assert outcome(field_of, frame) == outcome(general_field, frame)


@settings(max_examples=600, deadline=None)
@given(st.one_of(frames, frames.map(lambda f: f + b"\r")))
def test_request_line_of_is_content_of_then_parse_request_line(frame: bytes) -> None:
    general = outcome(lambda f: parse_request_line(content_of(f)), frame)
    assert outcome(request_line_of, frame) == general


_NAMES = st.sampled_from(
    [
        b"Host",
        b"host",
        b"HOST",
        b"Content-Length",
        b"content-length",
        b"Transfer-Encoding",
        b"Connection",
        b"connection",
        b"Expect",
        b"X-A",
        b"Accept",
    ]
)
_VALUES = st.sampled_from(
    [
        b"",
        b"a",
        b"a:80",
        b"[::1]:8",
        b"a b",
        b"a,b",
        b"0",
        b"5",
        b"05",
        b"5, 5",
        b"5,6",
        b"+5",
        b"1234567890123456789",
        b"chunked",
        b"gzip, chunked",
        b"close",
        b"Keep-Alive",
        b"keep-alive, close",
        b"upgrade",
        b"100-continue",
        b"100-Continue",
        b"x",
    ]
)
heads = st.lists(st.tuples(_NAMES, _VALUES), max_size=6).map(tuple)


def general_rules(
    version: tuple[int, int], fields: Any, max_body: int
) -> tuple[int | None, bool, bool]:
    headers = Headers(fields)
    length = body_length(version, headers)
    if length is not None and length > max_body:
        raise Refusal(413, f"body of {length} bytes over the limit")
    waits = expects_continue(version, headers) and length != 0
    return length, keeps_alive(version, headers), waits


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([(1, 1), (1, 0)]), heads, st.sampled_from([0, 4, 1 << 20]))
def test_head_rules_are_the_general_rules(
    version: tuple[int, int], fields: Any, max_body: int
) -> None:
    def fast(*args: Any) -> tuple[int | None, bool, bool]:
        headers, length, keep_alive, waits = head_rules(*args)
        assert headers.fields == fields
        return length, keep_alive, waits

    assert outcome(fast, version, fields, max_body) == outcome(
        general_rules, version, fields, max_body
    )


def test_status_lines_and_field_lines_are_the_heads_grammar() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
    assert status_line(401) == b"HTTP/1.1 401 Unauthorized\r\n"
    assert status_line(502) == b"HTTP/1.1 502 Bad Gateway\r\n"
    assert status_line(413) == b"HTTP/1.1 413 Content Too Large\r\n"  # (RFC 9110's name)
    assert status_line(404, (1, 0)) == b"HTTP/1.0 404 %s\r\n" % reason(404)
    assert field_line(b"X-A", b"a b") == b"X-A: a b\r\n"
    for name, value in ((b"X A", b"1"), (b"X", b"a\r\nb"), (b"X", b" a"), (b"", b"a")):
        assert outcome(field_line, name, value)[0] == "InvalidValueError"
