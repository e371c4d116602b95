"""``Framer.unread``: a callback gives back the end of the frame it was handed; those bytes
are framed again, first, by the grammar current when it returns — before the rest of the
read and before reads held while the framer was paused — and stream offsets stay exact."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grammars import line, raw
from statewire.framing import Framer, FrameTooLong
from statewire.testing.strategies import chunkings


class Session:
    """A stream of ``raw`` text up to ``|``, then lines: the raw state finds its end,
    gives back what follows, and switches to lines (what SMTP's DATA does with CRLF.CRLF);
    ``!`` in a line pauses the framer until :meth:`resume`."""

    def __init__(self, max_length: int = 64) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.text = b""
        self.errors: list[Any] = []
        self.offsets: list[int] = []
        self.framer = Framer(raw(), self.on_frame, on_error=self.errors.append)
        self.lines = line(b"\n", max_length=max_length)

    def on_frame(self, frame: Any) -> None:
        framer = self.framer
        if framer.grammar is not self.lines:
            text = self.text + bytes(frame)
            end = text.find(b"|")
            if end < 0:
                self.text = text
                return
            self.events.append(("text", text[:end]))
            self.text = b""
            framer.switch(self.lines)
            framer.unread(text[end + 1 :][-len(frame) :] if end + 1 < len(text) else b"")
            return
        self.offsets.append(framer.offset)
        self.events.append(("line", frame))
        if frame.startswith(b"!"):
            framer.pause()

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.framer.feed(chunk)
            while self.framer.paused:
                self.framer.resume()


def expected(stream: bytes) -> list[tuple[str, bytes]]:
    head, _, rest = stream.partition(b"|")
    events = [("text", head)]
    *lines, _tail = rest.split(b"\n")
    return events + [("line", one) for one in lines]


STREAMS = st.builds(
    lambda text, lines: text + b"|" + b"".join(one + b"\n" for one in lines),
    st.binary(max_size=40).map(lambda b: b.replace(b"|", b"x").replace(b"\n", b"y")),
    st.lists(st.sampled_from([b"a", b"bb", b"!stop", b"", b"|pipe", b"x" * 20]), max_size=8),
)


@given(st.data(), STREAMS)
def test_what_is_given_back_is_framed_first_under_any_chunking(data: Any, stream: bytes) -> None:
    session = Session()
    session.feed(data.draw(chunkings(stream)))
    assert session.events == expected(stream)
    assert not session.errors


def test_given_back_bytes_come_before_reads_held_while_paused() -> None:
    # the framer is paused inside the raw callback's successor; reads arrive meanwhile:
    # the bytes given back (the lines after "|") come before them
    session = Session()
    session.feed([b"head|!one\nafter\n"])  # "!one" pauses; resume happens in feed
    assert session.events == [("text", b"head"), ("line", b"!one"), ("line", b"after")]
    held = Session()
    held.framer.pause()
    held.framer.feed(b"t|x\n")
    held.framer.feed(b"y\n")  # held behind the first read
    held.framer.resume()
    assert held.events == [("text", b"t"), ("line", b"x"), ("line", b"y")]


def test_offsets_stay_exact_after_bytes_are_given_back() -> None:
    session = Session(max_length=4)
    session.feed([b"abc|no\nlonger-than-four\n"])
    assert session.events == [("text", b"abc"), ("line", b"no")]
    assert session.offsets == [7]  # after "abc|no\n": 7 bytes, nothing counted twice
    (error,) = session.errors
    assert isinstance(error, FrameTooLong)
    # where the line starting at 7 passed its 4 bytes, as a line framer counts it
    assert error.offset == 7 + 4


def test_unread_outside_a_callback_is_refused() -> None:
    framer = Framer(raw(), lambda frame: None)
    with pytest.raises(RuntimeError, match="callback"):
        framer.unread(b"x")
