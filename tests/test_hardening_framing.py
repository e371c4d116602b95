"""Framing hardening (issue 15, items 1, 2, 6 and 8): the generic path re-parses a dribbled
frame a bounded number of times and never strands a complete one, its ``max_length`` does
not depend on reads, no ``on_error`` callback makes ``feed`` loop, and ``feed`` takes
bytes-like objects only."""

from __future__ import annotations

import math
from typing import Any, Protocol

import pytest
from automat import TypeMachineBuilder
from construct import (
    Array,
    Byte,
    Bytes,
    Const,
    CString,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Prefixed,
    Sequence,
    Struct,
    Subconstruct,
    VarInt,
    this,
)
from framing_helpers import run
from hypothesis import given
from hypothesis import strategies as st

from grammars import limited, line, netstring, prefixed, raw
from statewire.declarative import MachineProtocol
from statewire.framing import Framer, FrameTooLong, FramingError, MalformedFrame, Policy
from statewire.testing.memory import StringTransport
from statewire.testing.strategies import chunked


class Counted(Subconstruct):  # type: ignore[misc]
    """Counts the parse attempts of the wrapped grammar and the bytes they went through."""

    def __init__(self, subcon: Any) -> None:
        super().__init__(subcon)
        self.attempts = 0
        self.spanned = 0

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        self.attempts += 1
        start = stream.tell()
        try:
            return self.subcon._parse(stream, context, path)
        finally:
            self.spanned += stream.tell() - start


def dribble(framer: Framer, wire: bytes) -> None:
    for i in range(len(wire)):
        framer.feed(wire[i : i + 1])


# -- 1. scanning grammars dribbled a byte at a time ----------------------------------------

#: (grammar, one frame of it): grammars that scan for a terminator
SCANNING = {
    "CString": (CString("ascii"), b"x" * 2000 + b"\0"),
    "Struct(line)": (Struct("text" / line(b"\n", 1 << 20)), b"x" * 8000 + b"\n"),
    "Struct(line CRLF, CString)": (
        Struct("head" / line(b"\r\n", 1 << 20), "name" / CString("ascii")),
        b"h\r" * 2000 + b"\r\n" + b"n" * 2000 + b"\0",
    ),
}


@pytest.mark.parametrize("name", list(SCANNING))
def test_a_dribbled_scanning_frame_is_parsed_a_bounded_number_of_times(name: str) -> None:
    grammar, wire = SCANNING[name]
    counted = Counted(grammar)
    frames: list[Any] = []
    dribble(Framer(counted, frames.append), wire)
    assert len(frames) == 1
    # before: one attempt per byte (thousands); now: the doublings plus a few triggered
    assert counted.attempts <= 2 * math.log2(len(wire)) + 16
    # the work: each attempt goes through at most the bytes there; in all, a few times
    # the frame (a constant), not the frame times its length
    assert counted.spanned <= 8 * len(wire)


def test_the_work_grows_linearly_with_the_frame() -> None:
    for size in (1000, 10_000, 100_000):
        counted = Counted(Struct("text" / line(b"\n", 1 << 20)))
        dribble(Framer(counted, [].append), b"y" * size + b"\n")
        # the doublings (less than twice the frame) and the attempt that completes it;
        # one attempt per read would be about size * size / 2
        assert counted.spanned <= 3 * (size + 1)


#: grammars whose frames a peer may send and then wait for the reply to
REQUESTS = {
    "CString": (CString("ascii"), ["a", "", "hello" * 20]),
    "Struct(n, Bytes(n))": (
        Struct("n" / Int8ub, "body" / Bytes(this.n)),
        [{"n": 1, "body": b"x"}, {"n": 0, "body": b""}, {"n": 70, "body": b"y" * 70}],
    ),
    "Struct(CString, n, Bytes(n))": (
        Struct("name" / CString("ascii"), "n" / Int8ub, "body" / Bytes(this.n)),
        [{"name": "k" * 300, "n": 1, "body": b"!"}, {"name": "", "n": 2, "body": b"ab"}],
    ),
    "Struct(line, line)": (
        Struct("a" / line(b"\r\n", 4096), "b" / line(b"\r\n", 4096)),
        [{"a": b"GET /" * 50, "b": b"Host: x"}, {"a": b"", "b": b"\r"}],
    ),
    "Struct(Int16ub, CString)": (
        Struct("id" / Int16ub, "name" / CString("utf16")),
        [{"id": 7, "name": "héllo" * 30}, {"id": 0, "name": ""}],
    ),
    "Struct(Const, line, netstring)": (
        Struct("magic" / Const(b"SW"), "a" / line(b"\n", 100), "b" / netstring(100)),
        [{"a": b"x" * 90, "b": b"y" * 90}],
    ),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_no_complete_frame_waits_for_bytes_that_will_not_come(name: str) -> None:
    """A peer that sent its requests and waits for the replies: every frame is delivered
    by the ``feed`` that brought its last byte, however the bytes were cut."""
    grammar, values = REQUESTS[name]
    frames_wire = [grammar.build(value) for value in values]
    wire = b"".join(frames_wire)
    whole = run(grammar, [wire]).frames

    @given(chunks=chunked(wire))
    def check(chunks: list[bytes]) -> None:
        frames: list[Any] = []
        framer = Framer(grammar, frames.append)
        fed = 0
        for chunk in chunks:
            framer.feed(chunk)
            fed += len(chunk)
            complete = sum(1 for end in _ends(frames_wire) if end <= fed)
            assert len(frames) == complete, (fed, len(frames))
        assert frames == whole

    check()
    # the worst cut, one byte a read
    frames: list[Any] = []
    framer = Framer(grammar, frames.append)
    for i, end in enumerate(_ends(frames_wire)):
        start = _ends(frames_wire)[i - 1] if i else 0
        dribble(framer, wire[start:end])
        assert len(frames) == i + 1
    assert frames == whole


def _ends(frames_wire: list[bytes]) -> list[int]:
    ends, total = [], 0
    for frame in frames_wire:
        total += len(frame)
        ends.append(total)
    return ends


#: grammars looping over counted items: each byte may complete the frame
LOOPING = {
    "Struct(n, Array(n, Int8ub))": (
        Struct("n" / Int8ub, "items" / Array(this.n, Int8ub)),
        bytes([200]) + bytes(range(200)),
    ),
    # items up to a terminator; a frame cut short always ends in a short read of it
    "Struct(GreedyRange, Const)": (
        Struct("items" / GreedyRange(Const(b"a")), "end" / Const(b"\n")),
        b"a" * 2000 + b"\n",
    ),
}


@pytest.mark.parametrize("name", list(LOOPING))
@pytest.mark.parametrize("finish", ["eof", "empty feed"])
def test_a_looping_frame_held_back_is_delivered_at_eof_and_by_an_empty_feed(
    name: str, finish: str
) -> None:
    """A grammar looping over counted items, dribbled in reads smaller than its items,
    uses up its triggered retries; the frame then waits for its bytes to double, for
    ``feed(b"")`` or for the end of the stream, never for ever, and costs linear time."""
    grammar, wire = LOOPING[name]
    counted = Counted(grammar)
    frames: list[Any] = []
    errors: list[FramingError] = []
    framer = Framer(counted, frames.append, on_error=errors.append)
    dribble(framer, wire)
    assert counted.attempts <= 2 * math.log2(len(wire)) + 16
    assert counted.spanned <= 16 * len(wire)
    if finish == "eof":
        framer.eof()
    else:
        framer.feed(b"")
    assert frames == [grammar.parse(wire)]
    assert errors == []


def test_eof_inside_a_held_back_frame_is_truncated_once() -> None:
    errors: list[FramingError] = []
    framer = Framer(CString("ascii"), [].append, on_error=errors.append)
    dribble(framer, b"abc\0" + b"d" * 100)
    framer.eof()
    assert [(type(e).__name__, e.offset) for e in errors] == [("TruncatedFrame", 4)]


# -- 1. max_length per declared framing ----------------------------------------------------


def test_limited_sets_the_generic_paths_max_length_per_grammar() -> None:
    errors: list[FramingError] = []
    frames: list[str] = []
    framer = Framer(limited(CString("ascii"), 16), frames.append, on_error=errors.append)
    framer.feed(b"short\0" + b"x" * 40)
    assert frames == ["short"]
    assert [(type(e), e.offset, getattr(e, "limit", None)) for e in errors] == [
        (FrameTooLong, 6 + 16, 16)
    ]
    # the grammar itself refuses the same frames, parsing and building
    with pytest.raises(Exception, match="max_length 16"):
        limited(CString("ascii"), 16).parse(b"x" * 40 + b"\0")
    with pytest.raises(Exception, match="max_length 16"):
        limited(CString("ascii"), 16).build("x" * 40)
    assert limited(CString("ascii"), 16).build("ok") == b"ok\0"


class Names(Protocol):
    def name(self, value: str) -> None: ...


_names = TypeMachineBuilder(Names, MachineProtocol)
_ready = _names.state("ready")


@_ready.upon(Names.name).loop()
def _greet(machine: Names, core: MachineProtocol, value: str) -> None:
    core.send(b"hello " + value.encode() + b"\0")


class CStringGreeter(MachineProtocol):
    """A declared protocol whose requests are NUL-terminated names of at most 64 bytes."""

    machine = _names.build()
    framings = {_ready: limited(CString("ascii"), 64)}
    sends = raw()
    routes = {_ready: Names.name}


def test_a_declared_cstring_protocol_answers_a_dribbled_request_and_refuses_long_ones() -> None:
    protocol = CStringGreeter()
    transport = StringTransport()
    protocol.makeConnection(transport)
    for byte in b"alice\0bob\0":
        protocol.dataReceived(bytes([byte]))
    assert transport.value() == b"hello alice\0hello bob\0"
    protocol.dataReceived(b"m" * 65)  # past the framing's own limit, not the 1 MiB default
    assert transport.disconnecting


# -- 2. the generic path's max_length does not depend on reads -----------------------------

LIMITED = {
    "CString": (CString("ascii"), "c" * 99),
    "Struct(n, Bytes(n))": (
        Struct("n" / Int8ub, "body" / Bytes(this.n)),
        {"n": 99, "body": b"b" * 99},
    ),
}


@pytest.mark.parametrize("name", list(LIMITED))
def test_a_frame_over_max_length_is_refused_however_it_arrives(name: str) -> None:
    grammar, value = LIMITED[name]
    wire = grammar.build(value)
    assert len(wire) == 100
    for cuts in ([wire], [wire[:50], wire[50:]], [wire[i : i + 1] for i in range(100)]):
        errors: list[FramingError] = []
        frames: list[Any] = []
        framer = Framer(grammar, frames.append, on_error=errors.append, max_length=16)
        for chunk in cuts:
            if framer.error is None:
                framer.feed(chunk)
        assert frames == []
        assert [(type(e), e.offset) for e in errors] == [(FrameTooLong, 16)], len(cuts)


#: generic grammars and how to draw a stream of their frames (valid or not)
GENERIC = {
    "CString": (CString("ascii"), st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"."))),
    "Struct(n, Bytes(n))": (Struct("n" / Int8ub, "body" / Bytes(this.n)), st.binary(max_size=40)),
    "Struct(Const, line)": (Struct(Const(b"K"), "v" / line(b"\r\n", 20)), st.binary(max_size=30)),
    "Struct(CString, Int16ub)": (
        Struct("k" / CString("ascii"), "v" / Int16ub),
        st.binary(max_size=30).map(lambda b: b.replace(b"\0", b".")),
    ),
}


def _frame_of(name: str, data: bytes) -> bytes:
    """A well-formed frame of GENERIC[name] made from ``data``."""
    if name == "CString":
        return data + b"\0"
    if name == "Struct(n, Bytes(n))":
        return bytes([len(data)]) + data
    if name == "Struct(Const, line)":
        return b"K" + data.replace(b"\r\n", b"..")[:20] + b"\r\n"
    return data + b"\0" + b"\x01\x02"


@pytest.mark.parametrize("name", list(GENERIC))
def test_generic_frames_and_errors_do_not_depend_on_reads_with_limits(name: str) -> None:
    grammar, data = GENERIC[name]

    @given(
        pieces=st.lists(st.tuples(st.booleans(), data), max_size=5),
        max_length=st.integers(1, 48),
        cuts=st.data(),
    )
    def check(pieces: list[tuple[bool, bytes]], max_length: int, cuts: st.DataObject) -> None:
        wire = b"".join(_frame_of(name, d) if ok else d for ok, d in pieces)
        expected = _framed(grammar, [wire], max_length)
        chunks = cuts.draw(chunked(wire))
        assert _framed(grammar, chunks, max_length) == expected
        assert _framed(grammar, [wire[i : i + 1] for i in range(len(wire))], max_length) == (
            expected
        )

    check()


def _framed(grammar: Any, chunks: list[bytes], max_length: int) -> tuple[Any, ...]:
    frames: list[Any] = []
    errors: list[tuple[type, int]] = []
    framer = Framer(
        grammar,
        frames.append,
        on_error=lambda e: errors.append((type(e), e.offset)),
        max_length=max_length,
    )
    for chunk in chunks:
        if framer.error is not None:
            break
        framer.feed(chunk)
    if framer.error is None:
        framer.eof()
    return frames, errors


# -- 6. no on_error callback makes feed loop -----------------------------------------------


class Loops(AssertionError):
    """Raised by a callback called far more often than the bytes could justify."""


def test_switching_to_a_grammar_refusing_the_same_bytes_is_fatal_not_a_loop() -> None:
    refusing = Struct(Const(b"A"))
    calls = 0

    def on_error(error: FramingError) -> None:
        nonlocal calls
        calls += 1
        if calls > 1000:
            raise Loops(calls)
        framer.switch(refusing)  # the same bytes, refused again

    framer = Framer(refusing, [].append, on_error=on_error, policy=Policy.DISCARD)
    framer.feed(b"B")
    assert calls == 2
    assert isinstance(framer.error, MalformedFrame)
    assert framer.buffered == b"B"


def test_a_two_grammar_cycle_in_on_error_is_fatal_not_a_loop() -> None:
    first, second = Struct(Const(b"A")), line(b"\n", max_length=0)
    calls = 0

    def on_error(error: FramingError) -> None:
        nonlocal calls
        calls += 1
        if calls > 1000:
            raise Loops(calls)
        framer.switch(second if framer.grammar is first else first)

    framer = Framer(first, [].append, on_error=on_error, policy=Policy.DISCARD)
    framer.feed(b"xy")
    assert calls <= 3
    assert framer.error is not None


def test_a_switch_that_makes_progress_is_still_honoured_after_an_error() -> None:
    frames: list[bytes] = []

    def on_error(error: FramingError) -> None:
        framer.switch(line(b"\n"))

    framer = Framer(Struct(Const(b"A")), frames.append, on_error=on_error, policy=Policy.DISCARD)
    framer.feed(b"B\nC\n")
    assert frames == [b"B", b"C"]
    assert framer.error is None


#: grammars an error handler may switch to
CHOICES = [
    Struct(Const(b"A")),
    Struct(Const(b"AB")),
    line(b"\n", max_length=2),
    netstring(3),
    prefixed(1, max_length=2),
    CString("ascii"),
    raw(),
]


@given(
    data=st.binary(max_size=30),
    reads=st.integers(1, 8),
    actions=st.lists(st.sampled_from([None, "pause", *range(len(CHOICES))]), max_size=40),
    start=st.integers(0, len(CHOICES) - 2),
    policy=st.sampled_from(Policy),
)
def test_feed_always_returns_whatever_the_error_handler_does(
    data: bytes, reads: int, actions: list[Any], start: int, policy: Policy
) -> None:
    calls = 0

    def on_error(error: FramingError) -> None:
        nonlocal calls
        calls += 1
        if calls > 10 * (len(data) + 2):
            raise Loops(calls)
        action = actions[(calls - 1) % len(actions)] if actions else None
        if action == "pause":
            framer.pause()
            framer.resume()  # from inside a callback: takes effect after it
        elif action is not None:
            framer.switch(CHOICES[action])

    framer = Framer(CHOICES[start], [].append, on_error=on_error, policy=policy, max_length=4)
    for i in range(0, len(data), reads):
        if framer.error is not None:
            break
        framer.feed(data[i : i + reads])
    # every error callback answered a byte consumed, or was the last (fatal) one
    assert calls <= len(data) + 2


# -- 8. feed takes bytes-like objects only -------------------------------------------------


@pytest.mark.parametrize("bad", [5, "text", [104, 105], None, 3.0])
def test_feed_refuses_what_is_not_bytes_like(bad: Any) -> None:
    frames: list[bytes] = []
    framer = Framer(line(b"\n"), frames.append)
    with pytest.raises(TypeError, match=type(bad).__name__):
        framer.feed(bad)
    assert framer.buffered == b""
    framer.feed(bytearray(b"a\n"))
    framer.feed(memoryview(b"b\n"))
    assert frames == [b"a", b"b"]


@pytest.mark.parametrize(
    ("grammar", "wire"),
    [
        (Sequence(*[Int32ub] * 10), bytes(range(40))),
        (Sequence(*[CString("ascii")] * 20), b"ab\0" * 20),
        (Struct(*[f"f{i}" / VarInt for i in range(5)]), b"\x80\x80\x80\x80\x04" * 5),
        (Struct("a" / Byte, *[Const(b"\r\n")] * 16), b"\x07" + b"\r\n" * 16),
    ],
    ids=["Int32ub x10", "CString x20", "VarInt x5", "Const x16"],
)
def test_a_shared_or_bytewise_part_does_not_strand_a_frame(grammar: Any, wire: bytes) -> None:
    """Review regression: a construct used at several places counts at each (one
    instance, many parts), and a VarInt counts a part per byte, so the retry budget never
    runs out before the frame is whole: each frame is delivered by the feed that brings
    its last byte, however small the reads."""
    value = grammar.parse(wire)
    for size in (1, 2, 4):
        frames: list[Any] = []
        framer = Framer(grammar, frames.append)
        for start in range(0, len(wire), size):
            framer.feed(wire[start : start + size])
        assert frames == [value], (size, len(wire))


def test_what_a_grammar_raises_on_the_peers_bytes_is_a_malformed_frame() -> None:
    """Review regression: construct formats a huge VarInt length into its error message,
    and Python refuses to print an int of 4300 digits: that ValueError escaped ``feed``."""
    errors: list[Any] = []
    framer = Framer(Prefixed(VarInt, GreedyBytes), lambda frame: None, on_error=errors.append)
    framer.feed(b"\x80" * 3000 + b"\x01")
    assert [type(e).__name__ for e in errors] == ["MalformedFrame"]


def test_a_grammar_matching_no_bytes_waits_instead_of_raising() -> None:
    """Review regression: ``GreedyRange(Int16ub)`` matched nothing on a lone byte after a
    read that ended mid-item, and ``feed`` raised; it now waits for the next byte."""
    frames: list[Any] = []
    framer = Framer(GreedyRange(Int16ub), frames.append)
    for read in (b"\x00\x01", b"\x00", b"\x02", b""):
        framer.feed(read)
    assert [item for frame in frames for item in frame] == [1, 2]
