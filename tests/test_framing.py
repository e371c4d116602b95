"""The framer's documented behaviour: errors and the state they leave, policies, pausing,
end of stream, reentrancy, the generic path's re-parsing, and Twisted's receivers."""

from __future__ import annotations

from typing import Any

import pytest
from construct import Bytes, Const, Int16ub, Struct, Subconstruct, this
from framing_helpers import run
from hypothesis import given
from hypothesis import strategies as st

from grammars import InvalidValueError, fixed, line, netstring, prefixed, raw
from statewire.framing import (
    Framer,
    FrameTooLong,
    FramingError,
    MalformedFrame,
    Policy,
    TruncatedFrame,
    decode,
    encode,
)
from statewire.testing.strategies import chunked

# -- Twisted ticket #6556 and other edges --------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [[b"abcde\r", b"\n"], [b"abcde", b"\r\n"], [b"abcde", b"\r", b"\n"], [b"abcde\r\n"]],
)
def test_delimiter_ending_exactly_at_max_length(accel: str, chunks: list[bytes]) -> None:
    assert decode(line(b"\r\n", max_length=5), chunks) == [b"abcde"]


def test_multibyte_delimiter_split_across_every_boundary(accel: str) -> None:
    grammar = line(b"\r\n\r\n")
    wire = b"one\r\n\r\ntwo\r\nstill two\r\n\r\n"
    for cut in range(len(wire) + 1):
        assert decode(grammar, [wire[:cut], wire[cut:]]) == [b"one", b"two\r\nstill two"]


def test_too_long_line_is_refused_before_its_delimiter_arrives(accel: str) -> None:
    errors: list[FramingError] = []
    framer = Framer(line(b"\n", max_length=4), [].append, on_error=errors.append)
    framer.feed(b"abcd")
    assert errors == []
    framer.feed(b"e")
    assert [type(e) for e in errors] == [FrameTooLong]
    assert errors[0].offset == 4


# -- errors and the state they leave -------------------------------------------------------


def test_close_policy_stops_and_keeps_the_bad_bytes(accel: str) -> None:
    frames: list[bytes] = []
    framer = Framer(netstring(), frames.append)
    with pytest.raises(MalformedFrame) as caught:
        framer.feed(b"2:ok,x:bad,3:abc,")
    assert frames == [b"ok"]
    assert caught.value.offset == 5
    assert framer.error is caught.value
    assert framer.buffered == b"x:bad,3:abc,"
    with pytest.raises(MalformedFrame):
        framer.feed(b"more")  # stopped: later feeds raise the same error
    assert framer.buffered == b"x:bad,3:abc,"


def test_error_offsets_count_from_the_start_of_the_stream(accel: str) -> None:
    errors: list[FramingError] = []

    def on_frame(frame: bytes) -> None:
        framer.switch(netstring(max_length=3))

    framer = Framer(line(b"\n"), on_frame, on_error=errors.append)
    framer.feed(b"switch\n" + b"9:123456789,")
    assert [(type(e), e.offset) for e in errors] == [(FrameTooLong, 7)]
    assert "9 bytes, more than max_length 3" in str(errors[0])


def test_discard_policy_drops_a_long_line_and_goes_on(accel: str) -> None:
    wire = b"ok\n" + b"x" * 50 + b"\nok2\n" + b"y" * 9 + b"\nlast\n"

    @given(chunks=chunked(wire))
    def check(chunks: list[bytes]) -> None:
        result = run(line(b"\n", max_length=5), chunks, policy=Policy.DISCARD)
        assert result.frames == [b"ok", b"ok2", b"last"]
        assert result.errors == [(FrameTooLong, 8), (FrameTooLong, 63)]

    check()


def test_discarding_does_not_buffer_the_long_line(accel: str) -> None:
    frames: list[bytes] = []
    framer = Framer(
        line(b"\r\n", max_length=10), frames.append, on_error=lambda e: None, policy=Policy.DISCARD
    )
    held = []
    for _ in range(1000):
        framer.feed(b"z" * 1000)
        held.append(len(framer.buffered))
    framer.feed(b"\r\nafter\r\n")
    assert max(held) <= 1
    assert frames == [b"after"]


def test_discard_policy_drops_a_long_prefixed_frame_unbuffered(accel: str) -> None:
    errors: list[FramingError] = []
    frames: list[bytes] = []
    framer = Framer(
        prefixed(2, max_length=4), frames.append, on_error=errors.append, policy=Policy.DISCARD
    )
    framer.feed(b"\x00\x02ok\x03\xe8")  # announces 1000 bytes
    assert [type(e) for e in errors] == [FrameTooLong]
    framer.feed(b"q" * 999)
    assert framer.buffered == b""
    framer.feed(b"q\x00\x03end")
    assert frames == [b"ok", b"end"]


def test_discard_policy_cannot_resync_a_malformed_netstring(accel: str) -> None:
    result = run(netstring(), [b"2:ok,2:xyz,1:a,"], policy=Policy.DISCARD)
    assert result.frames == [b"ok"]
    assert result.errors == [(MalformedFrame, 9)]
    assert result.buffered == b"2:xyz,1:a,"


def test_discard_policy_without_callback_raises_and_resumes(accel: str) -> None:
    frames: list[bytes] = []
    framer = Framer(line(b"\n", max_length=3), frames.append, policy=Policy.DISCARD)
    with pytest.raises(FrameTooLong):
        framer.feed(b"a\nlong\nb\n")
    assert frames == [b"a"]
    assert framer.error is None
    framer.feed(b"")
    assert frames == [b"a", b"b"]


# -- end of stream, pausing, reentrancy, switching from outside ----------------------------


def test_eof_inside_a_frame_is_truncated(accel: str) -> None:
    framer = Framer(prefixed(), [].append)
    framer.feed(b"\x00\x00\x00\x05abc")
    with pytest.raises(TruncatedFrame) as caught:
        framer.eof()
    assert caught.value.offset == 0
    assert "7 bytes buffered" in str(caught.value)


def test_eof_between_frames_is_clean_and_final(accel: str) -> None:
    frames: list[bytes] = []
    framer = Framer(line(b"\n"), frames.append)
    framer.feed(b"a\n")
    framer.eof()
    assert framer.error is None
    with pytest.raises(RuntimeError, match="after eof"):
        framer.feed(b"b\n")
    assert frames == [b"a"]


def test_eof_while_paused_waits_for_the_held_frames(accel: str) -> None:
    frames: list[bytes] = []

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        framer.pause()

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"a\nb\nc\n")
    framer.eof()
    assert frames == [b"a"]
    while framer.paused:
        framer.resume()
    assert frames == [b"a", b"b", b"c"]


def test_feed_from_inside_a_callback_is_queued_in_order(accel: str) -> None:
    frames: list[bytes] = []

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        if frame == b"1":
            framer.feed(b"3\n")

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"1\n2\n")
    assert frames == [b"1", b"2", b"3"]


def test_switch_between_feeds_reframes_the_buffer_at_once(accel: str) -> None:
    frames: list[bytes] = []
    framer = Framer(line(b"\n"), frames.append)
    framer.feed(b"head\nabcdef")
    framer.switch(fixed(this.size), context={"size": 3})
    assert frames == [b"head", b"abc", b"def"]


def test_flipping_grammar_on_every_byte_does_not_recurse(accel: str) -> None:
    count = 0

    def on_frame(frame: bytes) -> None:
        nonlocal count
        count += 1
        framer.switch(line(b"x") if count % 2 else fixed(1))  # one byte a frame either way

    framer = Framer(fixed(1), on_frame)
    framer.feed(b"x" * 20_000)  # far deeper than the recursion limit if it recursed
    assert count == 20_000


def test_fixed_zero_delivers_one_empty_frame(accel: str) -> None:
    frames: list[bytes] = []

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        if frame == b"go":
            framer.switch(fixed(0))
        elif frame == b"":
            framer.switch(line(b"\n"))

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"go\nnext\n")
    assert frames == [b"go", b"", b"next"]


def test_encode_uses_the_grammar() -> None:
    assert encode(netstring(), b"hi") == b"2:hi,"
    assert encode(fixed(this.size), b"ab", size=2) == b"ab"
    assert Framer(line(b"\n"), [].append).encode(b"x") == b"x\n"


# -- the generic path ----------------------------------------------------------------------


class Counted(Subconstruct):  # type: ignore[misc]
    """Counts parse attempts of the wrapped grammar."""

    def __init__(self, subcon: Any) -> None:
        super().__init__(subcon)
        self.attempts = 0

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        self.attempts += 1
        return self.subcon._parse(stream, context, path)


def test_generic_path_does_not_reparse_a_large_frame_per_read() -> None:
    grammar = Counted(Struct("size" / Int16ub, "body" / Bytes(this.size)))
    wire = grammar.build({"size": 60_000, "body": b"b" * 60_000})
    frames = decode(grammar, [wire[i : i + 1] for i in range(len(wire))])
    assert frames[0].body == b"b" * 60_000
    # one attempt on the first byte, one with the header, one with the whole frame
    assert grammar.attempts <= 3


def test_generic_path_reports_construct_errors_as_malformed() -> None:
    grammar = Struct("magic" / Const(b"SW"), "value" / Int16ub)
    result = run(grammar, [b"SW\x00\x01XX\x00\x02"], fast=False)
    assert [f.value for f in result.frames] == [1]
    assert result.errors[0][0] is MalformedFrame
    assert result.buffered == b"XX\x00\x02"


def test_generic_path_refuses_a_frame_larger_than_max_length() -> None:
    grammar = Struct("size" / Int16ub, "body" / Bytes(this.size))
    errors: list[FramingError] = []
    framer = Framer(grammar, [].append, on_error=errors.append, max_length=100)
    framer.feed(b"\x01\x00")  # announces 256 bytes
    assert [type(e) for e in errors] == [FrameTooLong]


def test_generic_path_refuses_a_grammar_that_reads_nothing() -> None:
    with pytest.raises(ValueError, match="no bytes"):
        decode(Struct(), [b"x"])


def test_an_exception_in_on_frame_keeps_the_later_frames(accel: str) -> None:
    frames: list[bytes] = []

    def on_frame(frame: bytes) -> None:
        if frame == b"bad" and b"bad" not in frames:
            frames.append(frame)
            raise RuntimeError("user code failed")
        frames.append(frame)

    framer = Framer(line(b"\n"), on_frame)
    with pytest.raises(RuntimeError):
        framer.feed(b"one\nbad\ntwo\nthree")
    assert frames == [b"one", b"bad"]
    assert framer.buffered == b"two\nthree"
    framer.feed(b"\n")
    assert frames == [b"one", b"bad", b"two", b"three"]


def test_switching_out_of_raw_keeps_every_byte(accel: str) -> None:
    """A raw frame is the whole read; the grammar after it starts with the next byte."""
    received: list[tuple[str, bytes]] = []
    raw_mode, lines = raw(), line(b"\n")

    def on_frame(frame: bytes) -> None:
        received.append((framer.grammar.describe(), frame))
        if framer.grammar is raw_mode:
            framer.switch(lines)

    framer = Framer(raw_mode, on_frame)
    framer.feed(b"hello\n")
    framer.feed(b"a\nb\n")
    assert received == [
        ("raw", b"hello\n"),
        ("line LF ≤ 16 KiB", b"a"),
        ("line LF ≤ 16 KiB", b"b"),
    ]
    assert framer.offset == 10


@pytest.mark.parametrize(
    ("grammar", "wire"),
    [(line(b"\n", max_length=3), b"abcdefg\nXYZ"), (prefixed(1, max_length=3), b"\x05abcdeXYZ")],
    ids=["line", "prefixed"],
)
def test_switch_from_on_error_frames_the_bad_bytes_under_any_chunking(
    accel: str, grammar: Any, wire: bytes
) -> None:
    @given(chunks=chunked(wire))
    def check(chunks: list[bytes]) -> None:
        frames: list[bytes] = []
        framer = Framer(
            grammar,
            frames.append,
            on_error=lambda error: framer.switch(raw()),
            policy=Policy.DISCARD,
        )
        for chunk in chunks:
            framer.feed(chunk)
        assert b"".join(frames) == wire
        assert framer.offset == len(wire)

    check()


@pytest.mark.parametrize(
    ("max_length", "wire", "error", "offset"),
    [
        (12, b"13x", FrameTooLong, 0),
        (100, b"01x", MalformedFrame, 0),
        (12, b"1x", MalformedFrame, 1),
    ],
)
def test_netstring_header_errors_do_not_depend_on_reads(
    accel: str, max_length: int, wire: bytes, error: type, offset: int
) -> None:
    for cut in range(1, len(wire) + 1):
        result = run(netstring(max_length), [wire[:cut], wire[cut:]])
        assert result.errors == [(error, offset)], cut


def test_eof_delivers_frames_left_behind_by_a_raised_error(accel: str) -> None:
    frames: list[bytes] = []
    framer = Framer(line(b"\n", max_length=3), frames.append, policy=Policy.DISCARD)
    with pytest.raises(FrameTooLong):
        framer.feed(b"toolong\nok\n")
    framer.eof()
    assert frames == [b"ok"]
    assert framer.error is None


def test_bytes_like_reads_give_bytes_frames(accel: str) -> None:
    for grammar in (line(b"\n"), netstring(), prefixed(1), fixed(2), raw()):
        wire = grammar.build(b"ab")
        frames = decode(grammar, [bytearray(wire[:1]), memoryview(wire[1:])])
        assert b"".join(frames) == b"ab"  # raw: one frame a read; the others: one frame
        assert all(type(frame) is bytes for frame in frames)


def test_a_switch_that_cannot_be_made_changes_nothing(accel: str) -> None:
    frames: list[bytes] = []
    lines = line(b"\n")

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        if frame.startswith(b"SIZE"):
            framer.switch(fixed(this.size), context={"size": int(frame.split()[1])})

    framer = Framer(lines, on_frame)
    with pytest.raises(InvalidValueError):
        framer.feed(b"SIZE -1\nabc\n")
    assert framer.grammar is lines
    framer.feed(b"x\n")
    assert frames == [b"SIZE -1", b"abc", b"x"]


def test_eof_waits_when_a_callback_pauses_during_it(accel: str) -> None:
    frames: list[bytes] = []

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        framer.pause()

    framer = Framer(line(b"\n", max_length=3), on_frame, policy=Policy.DISCARD)
    with pytest.raises(FrameTooLong):
        framer.feed(b"toolong\nok\nok2\n")
    framer.eof()
    assert frames == [b"ok"]
    while framer.paused:
        framer.resume()
    assert frames == [b"ok", b"ok2"]
    assert framer.error is None


@pytest.mark.parametrize(
    "grammar",
    [line(b"\r\n", max_length=8), line(b"\n", max_length=8), netstring(max_length=8), raw()],
    ids=["crlf", "lf", "netstring", "raw"],
)
@given(value=st.one_of(st.binary(max_size=12), st.sampled_from([b"a\r", b"\r", b"x\ny", b"\r\n"])))
def test_encode_fast_path_is_the_grammars_own_build(grammar: Any, value: bytes) -> None:
    try:
        expected: bytes | type[Exception] = grammar.build(value)
    except Exception as error:
        expected = type(error)
    try:
        got: bytes | type[Exception] = encode(grammar, value)
    except Exception as error:
        got = type(error)
    assert got == expected


def test_offsets_stay_whole_across_a_switch_while_a_line_is_dropped() -> None:
    """A switch while a too-long line is still being dropped, the read ending inside its
    multi-byte delimiter: what the old grammar holds (``\\r\\n\\r``) is buffered and
    counted, so ``clear()`` and every later offset stay where the stream is."""
    first, second = line(b"\r\n\r\n", max_length=3), line(b"\n", max_length=3)
    errors: list[int] = []

    def on_error(error: FramingError) -> None:
        errors.append(error.offset)
        if framer.grammar is first:
            framer.after_frame(lambda: framer.switch(second))

    framer = Framer(first, lambda frame: None, on_error=on_error, policy=Policy.DISCARD)
    framer.feed(b"abcdefg\r\n\r")
    assert (framer.offset, framer.buffered) == (7, b"\r\n\r")
    assert framer.clear() == b"\r\n\r"
    assert framer.offset == 10
    framer.feed(b"\nabcdef\n")
    assert errors == [3, 14] and framer.offset == 18
