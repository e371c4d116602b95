"""``Framer.after_frame``: work asked for from inside a frame's callback runs once the
callback returns, before the next frame is cut — after a switch the callback asked for,
and with the grammar that work switches to framing what follows, under any chunking."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from grammars import fixed, line, raw
from statewire.framing import Framer
from statewire.testing.strategies import chunkings


class Chained:
    """``go`` (a line) switches to ``raw`` at once, and asks for work that switches to
    ``fixed(3)``: the work's switch must win (what an input called from an output does)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.framer = Framer(line(b"\n"), self.on_frame)

    def on_frame(self, frame: Any) -> None:
        framer = self.framer
        self.events.append(frame)
        if frame == b"go":
            assert framer.after_frame(self.later)
            framer.switch(raw())

    def later(self) -> None:
        self.events.append("later")
        self.framer.switch(fixed(3))

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.framer.feed(chunk)


@given(st.data())
def test_the_work_runs_before_the_next_frame_and_its_switch_wins(data: Any) -> None:
    stream = b"go\nabcdef"
    chained = Chained()
    chained.feed(data.draw(chunkings(stream)))
    assert chained.events == [b"go", "later", b"abc", b"def"]


def test_work_may_ask_for_more_work() -> None:
    events: list[Any] = []
    framer: Framer

    def on_frame(frame: bytes) -> None:
        events.append(frame)
        if frame == b"a":
            framer.after_frame(first)

    def first() -> None:
        events.append("first")
        framer.after_frame(second)  # (asked while the first runs)

    def second() -> None:
        events.append("second")

    framer = Framer(line(b"\n"), on_frame)
    framer.feed(b"a\nb\nc\n")
    assert events == [b"a", "first", "second", b"b", b"c"]


def test_outside_a_callback_it_does_nothing() -> None:
    called: list[int] = []
    framer = Framer(line(b"\n"), lambda frame: None)
    assert framer.after_frame(lambda: called.append(1)) is False
    framer.feed(b"x\n")
    assert called == []


@given(st.data())
def test_an_after_queue_appended_to_in_a_callback_is_drained_before_the_next_frame(
    data: Any,
) -> None:
    """``Framer.after_queue``: what a callback appends is drained once it returns, before
    the next frame is cut (the drain's switch frames what follows), under any chunking;
    appended to outside a callback it is a plain list: nothing is drained."""
    events: list[Any] = []
    framer = Framer(line(b"\n"), lambda frame: (events.append(frame), queue.append(queued)))

    def queued() -> None:
        events.append("queued")

    def drain() -> None:
        while queue:
            queue.pop(0)()
        events.append("drained")
        framer.switch(fixed(2) if framer.grammar is lines else lines)

    lines = framer.grammar
    queue = framer.after_queue(drain)
    queue.append(queued)
    assert events == [] and queue == [queued]  # outside a callback: nothing more
    queue.clear()
    for chunk in data.draw(chunkings(b"go\nabxy\n")):
        framer.feed(chunk)
    each = ["queued", "drained"]
    assert events == [b"go", *each, b"ab", *each, b"xy", *each]
