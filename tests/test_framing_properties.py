"""Hypothesis properties of the framer: chunking never matters, fast paths equal construct,
switches keep every byte, limits hold exactly at their edge."""

from __future__ import annotations

from typing import Any

import pytest
from construct import Bytes, Int16ub, Struct, this
from framing_helpers import run
from hypothesis import given
from hypothesis import strategies as st

from grammars import fixed, line, netstring, prefixed, raw
from statewire.framing import Framer, FrameTooLong, Policy, decode
from statewire.testing.strategies import chunked, chunkings, from_grammar

FRAMINGS = [
    line(),
    line(b"\n", max_length=8),
    line(b"\r\n\r\n", max_length=16),
    line(b"ab", max_length=4),
    netstring(),
    netstring(max_length=12),
    prefixed(),
    prefixed(1, max_length=20),
    prefixed(2, "little"),
    prefixed(4, includes_header=True),
    prefixed(2, length_offset=3, max_length=30),
    prefixed(2, length_adjustment=-1),
    fixed(3),
    fixed(1),
]
HEADER_BODY = Struct("size" / Int16ub, "body" / Bytes(this.size))


@pytest.mark.parametrize("grammar", FRAMINGS, ids=repr)
@given(data=st.data())
def test_decode_of_any_chunking_gives_the_frames_back(
    accel: str, grammar: Any, data: st.DataObject
) -> None:
    values = data.draw(st.lists(from_grammar(grammar), max_size=8))
    wire = b"".join(grammar.build(v) for v in values)
    chunks = data.draw(chunked(wire))
    assert decode(grammar, chunks) == values


@given(data=st.data())
def test_raw_delivers_every_byte_in_order(data: st.DataObject) -> None:
    wire = data.draw(st.binary(max_size=200))
    frames = decode(raw(), data.draw(chunkings(wire)))
    assert b"".join(frames) == wire
    assert all(frames)  # never an empty frame


@given(data=st.data())
def test_generic_grammar_of_any_chunking(data: st.DataObject) -> None:
    bodies = data.draw(st.lists(st.binary(max_size=40), max_size=6))
    values = [{"size": len(b), "body": b} for b in bodies]
    wire = b"".join(HEADER_BODY.build(v) for v in values)
    frames = decode(HEADER_BODY, data.draw(chunked(wire)))
    assert [(f.size, f.body) for f in frames] == [(len(b), b) for b in bodies]


def _noisy_stream(grammar: Any) -> st.SearchStrategy[bytes]:
    """Valid frames with random bytes spliced in: exercises every error path."""
    frames = st.lists(from_grammar(grammar).map(grammar.build), max_size=5)
    noise = st.binary(max_size=12) | st.sampled_from([b":", b"0", b"01:", b"9999999:", b"\xff"])

    @st.composite
    def stream(draw: st.DrawFn) -> bytes:
        parts = draw(frames)
        for _ in range(draw(st.integers(0, 2))):
            parts.insert(draw(st.integers(0, len(parts))), draw(noise))
        return b"".join(parts)

    return stream()


@pytest.mark.parametrize("grammar", FRAMINGS, ids=repr)
@given(data=st.data())
def test_fast_path_behaves_exactly_like_construct_parse(
    accel: str, grammar: Any, data: st.DataObject
) -> None:
    """Differential: same frames, same errors (type and offset), same bytes left."""
    wire = data.draw(_noisy_stream(grammar))
    chunks = data.draw(chunkings(wire))
    fast = run(grammar, chunks, fast=True)
    generic = run(grammar, chunks, fast=False)
    assert fast == generic
    assert fast.frames == _reference_frames(grammar, wire, len(fast.frames))


def _reference_frames(grammar: Any, wire: bytes, count: int) -> list[Any]:
    """The first ``count`` frames as construct's own ``parse`` reads them, one by one."""
    frames = []
    position = 0
    for _ in range(count):
        frame = grammar.parse(wire[position:])
        frames.append(frame)
        position += len(grammar.build(frame))
    return frames


SWITCHABLE = [line(), line(b"\n", max_length=10), netstring(), prefixed(2), fixed(4)]


@given(data=st.data())
def test_switching_between_any_two_frames_keeps_every_byte(
    accel: str, data: st.DataObject
) -> None:
    """Segments of frames, each in its own grammar; the consumer switches after each one."""
    segments = data.draw(
        st.lists(
            st.sampled_from(SWITCHABLE).flatmap(
                lambda g: st.tuples(st.just(g), st.lists(from_grammar(g), min_size=1, max_size=3))
            ),
            min_size=1,
            max_size=5,
        )
    )
    tail = data.draw(st.binary(max_size=20))
    wire = b"".join(g.build(v) for g, values in segments for v in values) + tail
    plan = [(g, len(values)) for g, values in segments] + [(raw(), 0)]
    received: list[tuple[Any, Any]] = []
    position = {"segment": 0, "count": 0}

    def on_frame(frame: Any) -> None:
        received.append((framer.grammar, frame))
        position["count"] += 1
        _, count = plan[position["segment"]]
        if position["count"] == count:
            position["segment"] += 1
            position["count"] = 0
            framer.switch(plan[position["segment"]][0])

    framer = Framer(plan[0][0], on_frame)
    for chunk in data.draw(chunkings(wire)):
        framer.feed(chunk)
    expected = [(g, v) for g, values in segments for v in values]
    assert received[: len(expected)] == expected
    assert b"".join(frame for _, frame in received[len(expected) :]) == tail


@given(data=st.data())
def test_a_protocol_switching_on_every_frame_sees_exact_offsets(
    accel: str, data: st.DataObject
) -> None:
    """The step path (one frame after each switch): inside the callback ``offset`` and
    ``buffered`` say exactly where the stream stands; a callback that raises, pauses or
    interrupts loses no frame and repeats none."""
    commands, block = line(b"\n", max_length=6), fixed(4)
    values = data.draw(
        st.lists(
            st.tuples(
                st.binary(max_size=6).filter(lambda v: b"\n" not in v),
                st.binary(min_size=4, max_size=4),
            ),
            max_size=8,
        )
    )
    wire = b"".join(c + b"\n" + b for c, b in values)
    actions = data.draw(
        st.lists(
            st.sampled_from(["none", "raise", "pause", "interrupt"]),
            min_size=2 * len(values),
            max_size=2 * len(values),
        )
    )
    received: list[bytes] = []
    fed = {"n": 0}
    offset = {"n": 0}

    def on_frame(frame: bytes) -> None:
        grammar = framer.grammar
        offset["n"] += len(frame) + (1 if grammar is commands else 0)
        assert framer.offset == offset["n"]
        assert framer.buffered == wire[offset["n"] : fed["n"]]
        received.append(frame)
        framer.switch(block if grammar is commands else commands)
        action = actions[len(received) - 1]
        if action == "raise":
            raise KeyError("the callback failed")
        if action == "pause":
            framer.pause()
        elif action == "interrupt":
            framer.interrupt()

    framer = Framer(commands, on_frame)
    for chunk in data.draw(chunkings(wire)):
        fed["n"] += len(chunk)
        pending = [chunk]
        while pending or framer.waiting or framer.paused:
            try:
                if framer.paused:
                    framer.resume()
                else:
                    framer.feed(pending.pop() if pending else b"")
            except KeyError:
                pass
            if not pending and not framer.waiting and not framer.paused:
                break
    assert received == [part for pair in values for part in pair]
    assert framer.buffered == b""


@given(data=st.data(), limit=st.integers(0, 20), extra=st.integers(0, 1))
def test_line_limit_is_exact_at_the_edge(
    accel: str, data: st.DataObject, limit: int, extra: int
) -> None:
    delimiter = data.draw(st.sampled_from([b"\n", b"\r\n", b"END"]))
    grammar = line(delimiter, max_length=limit)
    wire = b"x" * (limit + extra) + delimiter
    result = run(grammar, data.draw(chunked(wire)))
    if extra:
        assert result.frames == []
        assert result.errors == [(FrameTooLong, limit)]
    else:
        assert result.frames == [b"x" * limit]
        assert result.errors == []


@given(limit=st.integers(0, 300), extra=st.integers(0, 1))
def test_netstring_and_prefix_limits_refuse_from_the_header(
    accel: str, limit: int, extra: int
) -> None:
    """A header announcing one byte too many is refused before any body byte arrives."""
    size = limit + extra
    for grammar, header in [
        (netstring(max_length=limit), b"%d:" % size),
        (prefixed(2, max_length=limit), size.to_bytes(2, "big")),
    ]:
        result = run(grammar, [header])
        if extra:
            assert result.errors == [(FrameTooLong, 0)]
        else:
            assert result.errors == []
            assert run(grammar, [grammar.build(b"y" * size)]).frames == [b"y" * size]


@given(data=st.data())
def test_pausing_after_any_frame_changes_nothing(accel: str, data: st.DataObject) -> None:
    grammar = data.draw(st.sampled_from(SWITCHABLE))
    values = data.draw(st.lists(from_grammar(grammar), max_size=6))
    wire = b"".join(grammar.build(v) for v in values)
    pause_after = data.draw(st.sets(st.integers(0, len(values))))
    received: list[Any] = []

    def on_frame(frame: Any) -> None:
        received.append(frame)
        if len(received) in pause_after:
            framer.pause()

    framer = Framer(grammar, on_frame)
    for chunk in data.draw(chunkings(wire)):
        framer.feed(chunk)
        while framer.paused:
            framer.resume()
    assert received == values
    assert framer.buffered == b""


@pytest.mark.parametrize("grammar", FRAMINGS, ids=repr)
@given(data=st.data())
def test_errors_do_not_depend_on_chunking(accel: str, grammar: Any, data: st.DataObject) -> None:
    """Same frames and same errors (type, offset) for one read and for any reads."""
    wire = data.draw(_noisy_stream(grammar))
    whole = run(grammar, [wire])
    cut = run(grammar, data.draw(chunkings(wire)))
    assert (cut.frames, cut.errors) == (whole.frames, whole.errors)


@pytest.mark.parametrize(
    "grammar",
    [line(b"\n", max_length=6), line(b"\r\n", max_length=3), prefixed(1, max_length=5)],
    ids=repr,
)
@given(data=st.data())
def test_discard_policy_does_not_depend_on_chunking(
    accel: str, grammar: Any, data: st.DataObject
) -> None:
    wire = data.draw(_noisy_stream(grammar))
    whole = run(grammar, [wire], policy=Policy.DISCARD)
    cut = run(grammar, data.draw(chunkings(wire)), policy=Policy.DISCARD)
    assert (cut.frames, cut.errors) == (whole.frames, whole.errors)


@given(data=st.data())
def test_switch_while_paused_then_resume_keeps_every_byte(accel: str, data: st.DataObject) -> None:
    values = data.draw(st.lists(from_grammar(line(b"\n")), min_size=1, max_size=5))
    block = data.draw(st.binary(min_size=1, max_size=30))
    wire = b"".join(v + b"\n" for v in values) + block
    received: list[Any] = []

    def on_frame(frame: Any) -> None:
        received.append(frame)
        if len(received) == len(values):
            framer.pause()

    framer = Framer(line(b"\n"), on_frame)
    for chunk in data.draw(chunkings(wire)):
        framer.feed(chunk)
    assert received == values
    framer.switch(fixed(len(block)))
    framer.resume()
    assert received == [*values, block]
    assert framer.buffered == b""


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (line(b"\r\n", max_length=3), line(b"\r\n", max_length=16)),
        (line(b"\n", max_length=6), prefixed(1)),
        (prefixed(1, max_length=5), line(b"\n")),
    ],
    ids=repr,
)
@given(data=st.data())
def test_a_switch_after_a_dropped_frame_does_not_depend_on_chunking(
    accel: str, first: Any, second: Any, data: st.DataObject
) -> None:
    """An error callback whose work, run after it, switches grammars (as a declared
    machine's postponed input does): the rest of the frame being dropped is dropped as
    the first grammar cuts it, wherever the reads end, and the second frames what follows.
    (A read that ended inside the dropped frame used to hand its rest to the second.)"""
    wire = data.draw(_noisy_stream(first)) + data.draw(st.binary(max_size=20))

    def framed(chunks: list[bytes]) -> tuple[list[Any], list[Any], int]:
        frames: list[Any] = []
        errors: list[Any] = []

        def on_error(error: Any) -> None:
            errors.append((type(error), error.offset, framer.grammar is second))
            if framer.grammar is first:
                framer.after_frame(lambda: framer.switch(second))

        framer = Framer(
            first,
            lambda frame: frames.append((framer.grammar is second, frame)),
            on_error=on_error,
            policy=Policy.DISCARD,
        )
        for chunk in chunks:
            if framer.error is None:
                framer.feed(chunk)
        return frames, errors, framer.offset

    assert framed(data.draw(chunkings(wire))) == framed([wire])
