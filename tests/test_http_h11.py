"""Differential test against h11 (in memory): generated requests, valid and hostile, are
fed to h11's server and to statewire's; both must agree on accepting or refusing each, and
on the body an accepted request carries. The deliberate differences (statewire is
stricter) are listed in DIFFERENCES and each is shown by a test of its own; see
docs/http.md."""

from __future__ import annotations

import h11
import pytest
from http_helpers import responses, serve
from hypothesis import given, settings
from hypothesis import strategies as st

#: field lines both parsers take
GOOD_FIELDS = [
    b"Host: example.org",
    b"Accept: */*",
    b"X-Token: a b\tc",
    b"X-Empty:",
    b"X-Obs-Text: caf\xe9",
    b"Connection: keep-alive",
    b"Cache-Control:   no-cache   ",
]
#: field lines both parsers refuse
BAD_FIELDS = [
    b"Host : x",
    b"X: a\x00b",
    b"X\x7f: a",
    b"No colon here",
    b": empty-name",
]
#: (framing field lines, body) pairs
BODIES = [
    ([], b""),
    ([b"Content-Length: 5"], b"hello"),
    ([b"Content-Length: 0"], b""),
    ([b"Content-Length: 5", b"Content-Length: 5"], b"hello"),
    ([b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ([b"Transfer-Encoding: chunked"], b"2;a=b\r\nhe\r\n3\r\nllo\r\n0\r\nT: 1\r\n\r\n"),
    ([b"Transfer-Encoding: Chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    ([b"Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"),
    ([b"Transfer-Encoding: chunked"], b"5\r\nhelloXX0\r\n\r\n"),
    ([b"Transfer-Encoding: chunked"], b"-5\r\nhello\r\n0\r\n\r\n"),
    ([b"Transfer-Encoding: gzip"], b""),
    ([b"Content-Length: 5", b"Content-Length: 6"], b"hello!"),
    ([b"Content-Length: -1"], b""),
    ([b"Content-Length: 1x"], b"a"),
]
METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"X-CUSTOM", b"G@T"]
TARGETS = [b"/", b"/a/b?c=d", b"*", b"http://h/p", b"/%00", b"/\x80"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.x", b"HTTP/11"]

#: inputs where statewire refuses what h11 takes, on purpose (each has a test below)
DIFFERENCES = {
    "bare LF line ends",
    "whitespace after a chunk size",
    "Transfer-Encoding in HTTP/1.0",
    "an expectation other than 100-continue",
    "obs-fold",
    "a control byte other than NUL in a field value",
    "a target form the method may not use",
}


def h11_verdict(wire: bytes) -> tuple[bool, bytes]:
    """Whether h11's server takes the first request of ``wire`` whole, and its body."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    body = b""
    try:
        for _ in range(1000):
            event = server.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return True, body
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return False, body
    except h11.RemoteProtocolError:
        return False, body
    raise AssertionError("h11 looped")


def our_verdict(wire: bytes) -> tuple[bool, bytes]:
    """Whether statewire answers 200 (the test application's) and the body it saw."""
    found = responses(serve([wire]).output)
    if not found or found[0][0] != 200:
        return False, b""
    # the application answers "METHOD target length body trailers"
    return True, found[0][1]


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    method = draw(st.sampled_from(METHODS))
    target = draw(st.sampled_from(TARGETS))
    if target == b"*" and method != b"G@T":
        method = b"OPTIONS"  # a deliberate difference otherwise, shown below
    version = draw(st.sampled_from(VERSIONS))
    framing, body = draw(st.sampled_from(BODIES))
    fields = draw(st.lists(st.sampled_from(GOOD_FIELDS[1:]), max_size=4))
    if draw(st.booleans()):
        fields.append(draw(st.sampled_from(BAD_FIELDS)))
    if version == b"HTTP/1.0" and any(f.startswith(b"Transfer-Encoding") for f in framing):
        framing, body = [], b""  # a deliberate difference, shown below
    lines = [GOOD_FIELDS[0], *draw(st.permutations([*fields, *framing]))]
    head = b"%s %s %s\r\n" % (method, target, version) + b"".join(line + b"\r\n" for line in lines)
    return head + b"\r\n" + body, body


@settings(max_examples=300, deadline=None)
@given(requests())
def test_statewire_and_h11_agree_on_what_to_accept(case: tuple[bytes, bytes]) -> None:
    wire, _ = case
    theirs, their_body = h11_verdict(wire)
    ours, answer = our_verdict(wire)
    assert ours == theirs, wire
    if ours:
        length = answer.split(b" ", 3)[2]
        assert int(length) == len(their_body)


@pytest.mark.parametrize(
    "wire",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_both_refuse_what_the_generator_does_not_make(wire: bytes) -> None:
    assert h11_verdict(wire)[0] is our_verdict(wire)[0] is False


@pytest.mark.parametrize(
    ("difference", "wire"),
    [
        ("bare LF line ends", b"GET / HTTP/1.1\nHost: x\n\n"),
        (
            "whitespace after a chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1 \r\na\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "an expectation other than 100-continue",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: x\r\n\r\n",
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
        (
            "a control byte other than NUL in a field value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\x7f\r\n\r\n",
        ),
        ("a target form the method may not use", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a target form the method may not use", b"GET h:80 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a target form the method may not use", b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ],
)
def test_deliberate_differences_from_h11(difference: str, wire: bytes) -> None:
    assert difference in DIFFERENCES
    assert h11_verdict(wire)[0] is True
    assert our_verdict(wire)[0] is False
