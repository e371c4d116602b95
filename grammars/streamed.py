"""A block of announced size read as pieces as they arrive: bodies too big to hold.

``fixed(n)`` delivers a block once all ``n`` bytes are there, so it holds them all; a
message body of 50 MiB, or the bytes of an oversize item a server must swallow, should
not be held. ``streamed(n)`` frames the same ``n`` bytes as one or more :class:`Piece`
frames, each what the reads brought (never a byte past the block), the last one marked
``last``. How the block is cut depends on the reads; what the pieces add up to does not.

Parsed by construct on its own (no framer), the block is one piece, ``last`` set.
"""

from __future__ import annotations

from typing import IO, Any

from grammars.fixed import Fixed, Size


class Piece(bytes):
    """Bytes of a streamed block; ``last`` is true on the piece that ends it."""

    last: bool

    def __new__(cls, data: bytes = b"", last: bool = False) -> Piece:
        piece = super().__new__(cls, data)
        piece.last = last
        return piece

    def __repr__(self) -> str:
        return f"Piece({bytes(self)!r}, last={self.last})"

    def __reduce__(self) -> Any:
        return (Piece, (bytes(self), self.last))


class Streamed(Fixed):
    """A block of ``size`` bytes, framed as the pieces that arrive (see the module)."""

    def describe(self) -> str:
        return "streamed" + super().describe()[len("fixed") :]

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Piece:
        data: bytes = super()._parse(stream, context, path)
        return Piece(data, last=True)


def streamed(size: Size) -> Streamed:
    """Exactly ``size`` bytes, delivered in pieces as they arrive; ``size`` may come from
    the context (``this.size``) as for :func:`~grammars.fixed`.

    >>> streamed(5).parse(b"hello")
    Piece(b'hello', last=True)
    >>> streamed(5).build(b"hello")
    b'hello'
    """
    return Streamed(size)
