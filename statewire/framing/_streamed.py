"""The decoder of :func:`grammars.streamed`: a block of known size cut as it arrives.

Each feed delivers at most one :class:`~grammars.streamed.Piece`: the bytes at hand, up to
what is left of the block. Nothing is ever pending: a piece is what arrived. After the
last piece the decoder is blocked, like ``fixed(0)`` after its empty frame: the bytes that
follow wait for the protocol to switch to the next framing.
"""

from __future__ import annotations

from typing import Any

from grammars.streamed import Piece
from statewire.framing._decoder import Decoder


class StreamedDecoder(Decoder):
    """Pieces of a block of ``size`` bytes; ``left`` bytes of it are still to come."""

    __slots__ = ("left", "size")
    sized = True

    def __init__(self, grammar: Any, base: int, size: int) -> None:
        self.size = size
        self.left = size
        super().__init__(grammar, base)

    def restart(self, base: int) -> None:
        super().restart(base)
        self.left = self.size
        self.eager = self.size == 0  # an empty block is one empty, last piece at once
        self.blocked = False

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        left = self.left
        if left == 0:  # only an empty block: its one piece, then nothing
            self.eager = False
            self._done(pos)
            return [Piece(b"", last=True)]
        end = min(len(src), pos + left)
        self.left = left = left - (end - pos)
        piece = Piece(src[pos:end] if pos or end < len(src) else src, last=left == 0)
        if left == 0:
            self._done(end)
        else:
            self._consumed(src, [])
            self._after_last = end
            self.base = self._src_base + end
        return [piece]

    def _done(self, end: int) -> None:
        """The block is complete: the bytes from ``end`` on wait for the next framing."""
        self._stop(end)
        self.more = False
        self.blocked = True

    def rewind(self, delivered: int) -> int:
        if delivered == 0 and self._frames:  # the piece was not taken: it is left again
            self.left += len(self._frames[0])
            self.blocked = False
            self.eager = self.size == 0
        return super().rewind(delivered)

    def wire_size(self, frame: Any) -> int:
        return len(frame)

    def unfinished(self) -> bool:
        """Some of the block came but not all of it (for end of stream)."""
        return 0 < self.left < self.size
