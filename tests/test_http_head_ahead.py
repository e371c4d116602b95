"""A field section that came whole with its request line is read with it
(``read_fields_ahead``: ``Engine.peek_ahead``, then ``take_ahead``): the responses, and
whether the connection closes, are those of the same requests read a line a read (where
the head state frames each line) and a byte a read, for well-formed heads and for every
kind of bad field line; and a head read whole costs one frame, its request line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from http_helpers import serve_until_quiet
from hypothesis import given
from hypothesis import strategies as st

from statewire.machine import observe, unobserve
from statewire.protocols._http_connection import SECTION_AHEAD
from statewire.protocols._http_head import FieldSection, Refusal
from statewire.protocols.http import HTTPFactory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import httpd

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

#: field lines, each with its line end: good ones, and one of each way to break a rule
GOOD_LINES = [
    b"X-A: 1\r\n",
    b"x-b:\t two words \r\n",
    b"X-Empty:\r\n",
    b"Accept: */*\r\n",
    b"X-Obs: \x80\xff\r\n",
]
BAD_LINES = [
    b"X-Bare: lf\n",  # a bare LF
    b"X-Cr: a\rb\r\n",  # a bare CR
    b" folded\r\n",  # obs-fold
    b"X-Space : a\r\n",  # whitespace before the colon
    b"NoColon\r\n",
    b": no name\r\n",
    b"X-Ctl: a\x01b\r\n",  # a control byte
    b"X(A): b\r\n",  # not a token
    b"\n",  # a blank line ended by a bare LF
    b"Content-Length: 3\r\n",  # a body: "abc" follows the head (see below)
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Host: b\r\n",  # a second Host (every head has one)
]


def _head(lines: list[bytes], target: bytes = b"/echo") -> bytes:
    head = b"POST " + target + b" HTTP/1.1\r\n" + b"".join(lines) + b"\r\n"
    if b"Content-Length: 3\r\n" in lines:
        head += b"abc"
    elif b"Transfer-Encoding: chunked\r\n" in lines:
        head += b"3\r\nabc\r\n0\r\n\r\n"
    return head


class _HeadLines:
    """An observer counting the frames the head state reads (its ``line`` inputs)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, protocol: Any) -> Any:
        return self.moved

    def moved(self, source: str, input: str, target: str, frame: Any) -> None:
        if source == "head" and input == "line":
            self.count += 1

    def received(self, protocol: Any, size: int) -> None: ...
    def failed(self, protocol: Any, error: BaseException, local: bool) -> None: ...
    def stopped(self, protocol: Any) -> None: ...


def _serve(reads: list[bytes]) -> tuple[bytes, bool, int]:
    lines = _HeadLines()
    observe(lines)
    try:
        factory = HTTPFactory(httpd.handle, date=False)
        output, closed = asyncio.run(serve_until_quiet(reads, factory))
    finally:
        unobserve(lines)
    return output, closed, lines.count


def _ways(wire: bytes) -> list[list[bytes]]:
    """``wire`` whole, a line a read (cut after each LF) and a byte a read."""
    lines = wire.splitlines(keepends=True)
    return [[wire], lines, [wire[i : i + 1] for i in range(len(wire))]]


def _alike(wire: bytes) -> tuple[bytes, bool, int, int]:
    """What ``wire`` gets read whole, after checking it gets the same read any other way;
    the head state's frames read whole, and a line a read."""
    (whole, by_line, by_byte) = [_serve(reads) for reads in _ways(wire)]
    for output, closed, _ in (by_line, by_byte):
        assert (output, closed) == whole[:2], wire
    return (*whole, by_line[2])


@given(
    heads=st.lists(
        st.lists(st.sampled_from(GOOD_LINES) | st.sampled_from(BAD_LINES), max_size=6),
        min_size=1,
        max_size=3,
    )
)
def test_a_head_read_whole_or_a_line_a_read_gets_the_same_answer(
    heads: list[list[bytes]],
) -> None:
    wire = b"".join(_head([b"Host: a\r\n", *lines]) for lines in heads) + GET
    output, _, frames, line_frames = _alike(wire)
    if all(line in GOOD_LINES for lines in heads for line in lines):
        assert output.count(b"HTTP/1.1 200 OK\r\n") == len(heads) + 1
        # the first head read with its request line, one frame (those after it too, unless
        # the framing cut their lines in one batch already: then they are read as cut)
        assert frames <= line_frames - (len(heads[0]) + 2)


def _fields(count: int, size: int = 8) -> list[bytes]:
    return [b"X-%d: %s\r\n" % (n, b"v" * size) for n in range(count)]


def _section(size: int) -> list[bytes]:
    """Field lines (Host first) making a field section of ``size`` bytes, its blank line
    included."""
    lines = [b"Host: a\r\n"]
    left = size - 2 - len(lines[0])
    while left > 0:
        line = b"X-F: " + b"v" * min(1000, max(left - 7, 0)) + b"\r\n"
        if left - len(line) < 9 and left - len(line) != 0:  # no line shorter than "X-F: \r\n"
            line = b"X-F: " + b"v" * (left - 7) + b"\r\n"
        lines.append(line)
        left -= len(line)
    assert sum(map(len, lines)) + 2 == size
    return lines


HOST = [b"Host: a\r\n"]


@pytest.mark.parametrize(
    ("lines", "status", "ahead"),
    [
        pytest.param(HOST + _fields(99), 200, True, id="100 fields"),
        pytest.param(HOST + _fields(100), 431, True, id="101 fields"),
        pytest.param(_section(SECTION_AHEAD), 200, True, id="a section of SECTION_AHEAD"),
        pytest.param(_section(SECTION_AHEAD + 1), 200, False, id="a section one byte over"),
        pytest.param(_section(64 << 10), 200, False, id="a section of 64 KiB"),
        pytest.param(_section((64 << 10) + 1), 431, False, id="a section over 64 KiB"),
        pytest.param([*HOST, b"X-A: 1\r\n\r"], 400, False, id="a CR before the blank line"),
        pytest.param([b"Host: a\r\r\n"], 400, True, id="a CR before a CRLF"),
        pytest.param([], 400, True, id="no Host"),
    ],
)
def test_the_edges_of_a_head_read_whole(lines: list[bytes], status: int, ahead: bool) -> None:
    """At the limits (100 fields, 64 KiB) and at the fast path's own (a section of
    SECTION_AHEAD bytes), whole and a line a read alike; ``ahead``: the head read whole is
    read with its request line (one frame), else a line a frame."""
    output, closed, frames, line_frames = _alike(_head(lines))
    assert output.startswith(b"HTTP/1.1 %d " % status), output[:200]
    assert closed == (status != 200)
    if ahead:
        assert frames == 1
    else:
        assert frames == line_frames


def test_pipelined_heads_in_one_read_are_each_read_with_their_request_line() -> None:
    """Sixteen requests in one read, after others: each head is one frame, its request
    line (a take ahead has the framer deliver the rest of the read a frame at a time)."""
    lines = _HeadLines()
    observe(lines)
    try:
        factory = HTTPFactory(httpd.handle, date=False)
        output, closed = asyncio.run(serve_until_quiet([GET * 4, GET * 16], factory))
    finally:
        unobserve(lines)
    assert output.count(b"HTTP/1.1 200 OK\r\n") == 20
    assert not closed
    assert lines.count == 20


@pytest.mark.parametrize("bad", BAD_LINES)
def test_each_bad_line_among_good_ones_is_read_alike(bad: bytes) -> None:
    """A bad line followed by good ones (the section still ends with CRLF CRLF, so it is
    read with its request line): the answer of the same head read a line a read."""
    output, _, _, _ = _alike(_head([*HOST, b"X-A: 1\r\n", bad, b"X-B: 2\r\n"]) + GET)
    if bad in (b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"):
        assert output.startswith(b"HTTP/1.1 200 ")
    elif bad != b"Connection: close\r\n":
        assert output.startswith(b"HTTP/1.1 4"), output[:100]


def _added(frames: list[bytes], all_at_once: bool) -> Any:
    section = FieldSection()
    section.add(b"Host: a\r")
    try:
        if all_at_once:
            section.add_all(frames)
        else:
            for frame in frames:
                section.add(frame)
    except Refusal as refusal:
        return refusal.status, refusal.detail
    return section.fields, section.size


@given(
    lines=st.lists(
        st.sampled_from([line[:-1] for line in GOOD_LINES + BAD_LINES])
        | st.binary(max_size=12).map(lambda data: data.replace(b"\n", b"") + b"\r"),
        max_size=8,
    ),
    padding=st.sampled_from([0, 1000, 9000]),
    repeat=st.sampled_from([1, 12, 40]),
)
def test_a_section_added_at_once_is_added_as_line_by_line(
    lines: list[bytes], padding: int, repeat: int
) -> None:
    """``FieldSection.add_all`` against ``add`` of each line in turn: the same fields and
    size, or the same refusal (a line over the 64 KiB section, over 100 fields, or one
    malformed), for any lines but a blank one ended by its CR, which comes last."""
    frames = [line for line in lines * repeat if line != b"\r"]
    if padding:
        frames.insert(len(frames) // 2, b"X-Pad: " + b"p" * padding + b"\r")
    frames = frames * (8 if padding == 9000 else 1)
    frames.append(b"\r")
    assert _added(frames, True) == _added(frames, False)
