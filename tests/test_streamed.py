"""``streamed(n)``: a block of known size delivered as the pieces that arrive, never a byte
past it; the same bytes as ``fixed(n)`` under any chunking, pauses and switches."""

from __future__ import annotations

from typing import Any

import pytest
from construct import this
from hypothesis import given
from hypothesis import strategies as st

from grammars import Piece, fixed, line, streamed
from statewire.framing import Framer, TruncatedFrame
from statewire.testing.strategies import chunkings

HEAD = line(b"\r\n")


def _wire(blocks: list[bytes]) -> bytes:
    return b"".join(b"%d\r\n%s" % (len(block), block) for block in blocks) + b"end\r\n"


class _Announced:
    """A line announcing a size, then that many bytes framed by ``body(size)``. Records
    lines and whole blocks (pieces joined at ``last``), and each piece's size."""

    def __init__(self, body: Any, pause: bool = False) -> None:
        self.body = body
        self.pause = pause
        self.seen: list[tuple[str, bytes]] = []
        self.pieces: list[Piece] = []
        self._block = b""
        self.framer = Framer(HEAD, self.on_frame)

    def on_frame(self, frame: Any) -> None:
        if self.framer.grammar is HEAD:
            self.seen.append(("line", frame))
            if frame != b"end":
                self.framer.switch(self.body(int(frame)))
            return
        if isinstance(frame, Piece):
            self.pieces.append(frame)
            self._block += frame
            if not frame.last:
                if self.pause:
                    self.framer.pause()
                return
            frame, self._block = self._block, b""
        self.seen.append(("block", frame))
        self.framer.switch(HEAD)

    def run(self, chunks: list[bytes]) -> list[tuple[str, bytes]]:
        for chunk in chunks:
            self.framer.feed(chunk)
            while self.framer.paused:
                self.framer.resume()
        self.framer.eof()
        return self.seen


@given(data=st.data(), pause=st.booleans())
def test_streamed_frames_the_bytes_fixed_frames_under_any_chunking(
    accel: str, data: st.DataObject, pause: bool
) -> None:
    blocks = data.draw(st.lists(st.binary(max_size=30), max_size=5))
    wire = _wire(blocks)
    chunks = data.draw(chunkings(wire))
    reference = _Announced(fixed).run([wire])
    stream = _Announced(streamed, pause=pause)
    assert stream.run(chunks) == reference
    assert [bytes(block) for kind, block in reference if kind == "block"] == blocks
    # a piece is what arrived: never empty unless the block is, never past the block
    assert all(piece or piece.last for piece in stream.pieces)
    assert sum(len(piece) for piece in stream.pieces) == sum(map(len, blocks))


def test_a_piece_is_what_one_read_brought() -> None:
    pieces: list[Piece] = []
    framer = Framer(streamed(10), pieces.append)
    for chunk in (b"abc", b"defg", b"hijXYZ"):
        framer.feed(chunk)
    assert pieces == [b"abc", b"defg", b"hij"]
    assert [piece.last for piece in pieces] == [False, False, True]
    assert framer.buffered == b"XYZ"  # after the block: left for the next framing


def test_an_empty_block_is_one_empty_last_piece() -> None:
    seen = _Announced(streamed).run([b"0\r\nend\r\n"])
    assert seen == [("line", b"0"), ("block", b""), ("line", b"end")]


def test_a_block_cut_short_by_the_end_of_the_stream_is_truncated() -> None:
    framer = Framer(streamed(8), lambda piece: None)
    framer.feed(b"abc")
    with pytest.raises(TruncatedFrame):
        framer.eof()


def test_nothing_of_the_block_yet_at_the_end_of_the_stream_is_no_frame_cut_short() -> None:
    framer = Framer(streamed(8), lambda piece: None)
    framer.eof()  # as for fixed(8): the stream ended between frames


def test_the_size_may_come_from_the_context() -> None:
    pieces: list[Piece] = []
    framer = Framer(streamed(this.size + 2), pieces.append, context={"size": 3})
    framer.feed(b"abc\r\nrest")
    assert pieces == [b"abc\r\n"] and pieces[0].last
    assert streamed(this.size + 2).describe() == "streamed(size + 2)"


def test_construct_parses_a_whole_block_as_one_last_piece_and_builds_it_back() -> None:
    piece = streamed(5).parse(b"hello")
    assert piece == b"hello" and isinstance(piece, Piece) and piece.last
    assert streamed(5).build(b"hello") == b"hello"
    assert repr(piece) == "Piece(b'hello', last=True)"


@given(data=st.data())
def test_the_generic_path_frames_a_streamed_block_whole(data: st.DataObject) -> None:
    # (an empty block is no frame on the generic path, as for fixed(0))
    blocks = data.draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4))
    wire = _wire(blocks)
    slow = _Announced(streamed)
    slow.framer = Framer(HEAD, slow.on_frame, fast=False)
    assert slow.run(data.draw(chunkings(wire))) == _Announced(fixed).run([wire])
