"""``Framer.take_ahead``: a callback reads the bytes after its frame, of a length it knows,
when the read holds them all, with no switch; the frames after them, the offsets and what
is delivered are the same as when it switches to a block framing to read them, however the
stream was cut into reads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grammars import fixed, line
from statewire.framing import Framer, Policy
from statewire.testing.strategies import chunkings


class Session:
    """Lines ``N`` announce a body of ``N`` bytes (which may hold line ends); a body is
    read by ``take_ahead`` when it came whole, else by switching to ``fixed(N)`` and back
    (or always so, ``ahead=False``). A line ``!`` pauses the framer until :meth:`feed`
    resumes it; a line over 16 bytes is refused (``DISCARD``: dropped, framing goes on)."""

    def __init__(self, ahead: bool = True, peek: bool = False) -> None:
        self.ahead = ahead
        #: look first (``peek_ahead``), and take only what was seen whole
        self.peek = peek
        self.lines = line(b"\n", max_length=16)
        self.framer = Framer(
            self.lines, self.on_frame, on_error=self.on_error, policy=Policy.DISCARD
        )
        #: what was delivered, each with the framer's offset inside its callback (and what
        #: it holds after, with ``buffered=True``)
        self.events: list[tuple[Any, ...]] = []
        self.taken = 0
        self.buffered = False

    def seen(self, kind: str, frame: bytes) -> None:
        framer = self.framer
        after = (framer.buffered,) if self.buffered else ()
        self.events.append((kind, frame, framer.offset, *after))

    def on_error(self, error: Exception) -> None:
        self.events.append(("error", type(error).__name__, self.framer.offset))

    def on_frame(self, frame: Any) -> None:
        framer = self.framer
        if framer.grammar is not self.lines:
            self.seen("body", frame)
            framer.switch(self.lines)
            return
        self.seen("line", frame)
        if frame == b"!":
            framer.pause()
        elif frame.isdigit():
            size = int(frame)
            body = None
            if self.peek:
                seen = framer.peek_ahead(size)
                if seen is not None and len(seen) == size:
                    body = framer.take_ahead(size)
                    assert body == seen
                # (else switched for: peek_ahead sees nothing inside a batch whose frames
                # after this one are cut already, where take_ahead would give them back)
            elif self.ahead:
                body = framer.take_ahead(size)
            if body is not None:
                self.taken += 1
                self.seen("body", body)
            else:
                framer.switch(fixed(size))

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.framer.feed(chunk)
            while self.framer.paused:
                self.framer.resume()


MESSAGES = st.lists(
    st.one_of(
        st.binary(max_size=12).map(lambda body: b"%d\n" % len(body) + body),
        st.sampled_from([b"word\n", b"!\n", b"\n", b"a line over sixteen bytes\n"]),
    ),
    max_size=8,
)


@given(st.data(), MESSAGES)
def test_taken_ahead_or_switched_for_alike_under_any_chunking(
    accel: str, data: Any, messages: list[bytes]
) -> None:
    stream = b"".join(messages)
    reads = data.draw(chunkings(stream))
    sessions = []
    for ahead, peek in ((False, False), (True, False), (True, True)):
        # the same reads: the same frames, offsets, bytes held (peek_ahead first: the same)
        session = Session(ahead=ahead, peek=peek)
        session.buffered = True
        session.feed(reads)
        sessions.append(session)
    switching, taking, peeking = sessions
    assert taking.events == switching.events == peeking.events
    assert peeking.taken <= taking.taken
    whole = Session(ahead=False)
    whole.feed([stream])  # and what one read gives, whatever the reads
    assert [event[:3] for event in taking.events] == whole.events
    assert taking.framer.offset == whole.framer.offset == len(stream)


@pytest.mark.parametrize(
    ("reads", "taken", "events"),
    [
        # one read: the line framer cut "b\n" and "c\n" out of the body in its batch before
        # the first callback ran; take_ahead gives them back and takes the body whole
        (
            [b"a\n" + b"4\n" + b"b\nc\n" + b"z\n"],
            1,
            [("line", b"a", 2), ("line", b"4", 4), ("body", b"b\nc\n", 8), ("line", b"z", 10)],
        ),
        # the body not all there: nothing taken, nothing consumed; fixed(5) reads it
        (
            [b"5\nabc", b"de\nz\n"],
            0,
            [("line", b"5", 2), ("body", b"abcde", 7), ("line", b"", 8), ("line", b"z", 10)],
        ),
    ],
    ids=["past lines cut ahead", "not all there"],
)
def test_a_body_is_taken_when_its_read_holds_it(
    reads: list[bytes], taken: int, events: list[Any]
) -> None:
    session = Session()
    session.feed(reads)
    assert session.taken == taken
    assert session.events == events


def test_take_ahead_outside_a_callback_is_refused() -> None:
    framer = Framer(line(), lambda frame: None)
    with pytest.raises(RuntimeError, match="callback"):
        framer.take_ahead(1)
    with pytest.raises(RuntimeError, match="callback"):
        framer.peek_ahead(1)


@pytest.mark.parametrize("before", [b"", b"x\n"], ids=["alone", "in a batch"])
def test_peek_ahead_sees_the_rest_of_the_read_up_to_its_limit_and_takes_nothing(
    before: bytes,
) -> None:
    # alone: the frame is the read's first (its one-frame path); in a batch, the frames
    # after P are cut already: peek_ahead sees nothing there (they are delivered as cut),
    # and at the batch's last frame, E, nothing follows in the read
    seen: list[Any] = []

    def on_frame(frame: bytes) -> None:
        seen.append(frame)
        if frame == b"P":
            seen.extend([framer.peek_ahead(4), framer.peek_ahead(100), framer.peek_ahead(0)])
        elif frame == b"E":
            seen.append(framer.peek_ahead(4))
        elif frame == b"S":
            framer.switch(line(b";"))
            seen.append(framer.peek_ahead(4))

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(before + b"P\nab\ncd\nE\n")
    peeked = [b"ab\nc", b"ab\ncd\nE\n", b""] if not before else [None, None, None]
    assert seen == [*([b"x"] if before else []), b"P", *peeked, b"ab", b"cd", b"E", b""]
    assert framer.offset == len(before) + 10
    framer.feed(b"S\nz;")
    assert seen[-3:] == [b"S", None, b"z"]
    with pytest.raises(TypeError):
        framer.peek_ahead(1.0)  # type: ignore[arg-type]


def test_after_a_switch_or_an_unread_nothing_is_taken() -> None:
    seen: list[Any] = []

    def on_frame(frame: bytes) -> None:
        if frame == b"switch":
            framer.switch(line(b";"))
            seen.append(framer.take_ahead(1))
        elif frame == b"unread":
            framer.unread(b"\n")  # (framed again first: an empty line)
            seen.append(framer.take_ahead(1))
        elif frame == b"negative":
            seen.append(framer.take_ahead(-1))
        else:
            seen.append(frame)

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"negative\nunread\nswitch\nab;")
    assert seen == [None, None, b"", None, b"ab"]


@pytest.mark.parametrize("before", [b"", b"x\n"], ids=["alone", "in a batch"])
def test_a_callback_may_take_twice(before: bytes) -> None:
    # the one-frame path and a batch alike (a batch's first take gives the batch back)
    taken: list[Any] = []

    def on_frame(frame: bytes) -> None:
        if frame == b"4T":
            taken.extend([framer.take_ahead(2), framer.take_ahead(2)])

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(before + b"4T\nabcd")
    assert taken == [b"ab", b"cd"]
    assert framer.offset == len(before) + 7


def test_a_size_that_is_no_integer_is_refused_and_nothing_moves() -> None:
    seen: list[Any] = []

    def on_frame(frame: bytes) -> None:
        if frame == b"float":
            with pytest.raises(TypeError):
                framer.take_ahead(2.0)  # type: ignore[arg-type]
        seen.append(frame)

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"float\nab\n")
    framer.feed(b"c\n")
    assert seen == [b"float", b"ab", b"c"]


def test_work_after_the_frame_or_an_interrupt_takes_nothing() -> None:
    seen: list[Any] = []

    def on_frame(frame: bytes) -> None:
        if frame == b"after":
            framer.after_frame(lambda: None)
            seen.append(framer.take_ahead(1))
        elif frame == b"interrupt":
            framer.interrupt()
            seen.append(framer.take_ahead(1))
        else:
            seen.append(frame)

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"after\ninterrupt\nz\n")
    framer.feed(b"")
    assert seen == [None, None, b"z"]


@pytest.mark.parametrize("before", [b"", b"x\n"], ids=["alone", "in a batch"])
def test_after_a_take_an_interrupt_ends_the_taking(before: bytes) -> None:
    seen: list[Any] = []

    def on_frame(frame: bytes) -> None:
        if frame == b"T":
            seen.append(framer.take_ahead(1))
            framer.interrupt()
            seen.append(framer.take_ahead(1))

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(before + b"T\nab\n")
    framer.feed(b"")
    assert seen == [b"a", None]


def test_after_a_take_the_frames_of_the_read_come_one_at_a_time() -> None:
    """A stream whose frames are each read with what follows them (pipelined requests,
    each taking its own block): after a take, the framer delivers the rest of the read a
    frame at a time, as after a switch, so that every frame may look ahead and take
    (inside a batch ``peek_ahead`` sees nothing: the frames after it are cut already).
    Batches warmed first, then a read of such frames: every one saw its block."""
    took: list[Any] = []

    def on_frame(frame: bytes) -> None:
        if frame.startswith(b"n"):
            size = int(frame[1:])
            # what a frame must see to know how much to take (None inside a batch)
            took.append(framer.peek_ahead(size))
            took.append(framer.take_ahead(size))
        else:
            took.append(frame)

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"a\n" * 50)  # plain lines: batches grow
    took.clear()
    framer.feed(b"n3\nxyzn2\nabn1\nq" * 20)
    assert took == [b"xyz", b"xyz", b"ab", b"ab", b"q", b"q"] * 20
    assert framer.offset == 100 + 15 * 20
