"""The generic decoder: any construct grammar, tried on the buffer, resumed as bytes arrive.

Each attempt parses from a reader over the pending bytes that records how far the grammar
tried to read. When the bytes run out, the next attempt waits until that many bytes are
there, so a fixed header announcing a large body is parsed twice (header, then the whole
frame), not once per read: no quadratic re-parsing. Grammars that scan for a terminator
byte by byte (``CString``, a nested ``line``) are retried on every read until it arrives.

``max_length`` bounds the bytes one frame may need; a frame announcing more is refused as
soon as the grammar asks for them.
"""

from __future__ import annotations

from typing import Any

from construct import ConstructError, StreamError

from grammars import GrammarError, TruncatedError
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FrameTooLong, FramingError, MalformedFrame


class _Reader:
    """A read-only stream over bytes that remembers the furthest short read."""

    __slots__ = ("data", "position", "wanted")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0
        self.wanted = 0

    def read(self, size: int | None = -1) -> bytes:
        start = self.position
        if size is None or size < 0:
            chunk = self.data[start:]
        else:
            chunk = self.data[start : start + size]
            if len(chunk) < size:
                self.wanted = start + size
        self.position = start + len(chunk)
        return chunk

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, len(self.data))[whence]
        self.position = max(base + offset, 0)
        return self.position


class GenericDecoder(Decoder):
    __slots__ = ("_ends", "context", "max_length")

    def __init__(self, grammar: Any, base: int, context: dict[str, Any], max_length: int):
        super().__init__(grammar, base)
        self.context = context
        self.max_length = max_length
        self._ends: list[int] = []

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        reader = _Reader(src)
        frames: list[Any] = []
        ends: list[int] = []
        self._ends = ends
        position = pos
        n = len(src)
        while position < n:
            if len(frames) >= limit:
                self._stop(position)
                return frames
            reader.seek(position)
            reader.wanted = 0
            try:
                frame = self.grammar.parse_stream(reader, **self.context)
            except TruncatedError as error:
                return self._wait(src, position, max(error.needed, n + 1), frames)
            except StreamError:
                return self._wait(src, position, max(reader.wanted, n + 1), frames)
            except GrammarError as error:
                bad = FramingError.from_grammar(error, self._src_base, self.grammar)
                self._fail(position, bad)
                return frames
            except ConstructError as error:
                malformed = MalformedFrame(
                    str(error).replace("\n", ": "),
                    offset=self._src_base + reader.position,
                    grammar=self.grammar,
                )
                self._fail(position, malformed)
                return frames
            if reader.position == position:
                raise ValueError(f"grammar {self.grammar!r} parsed a frame of no bytes")
            frames.append(frame)
            position = reader.position
            ends.append(position)
        self._keep(src, position)
        return frames

    def _wait(self, src: bytes, start: int, needed: int, frames: list[Any]) -> list[Any]:
        """Pend ``src[start:]`` until ``needed`` bytes of ``src`` exist (or refuse it)."""
        if needed - start > self.max_length:
            too_long = FrameTooLong(
                f"frame needs more than max_length {self.max_length} bytes",
                offset=self._src_base + start + self.max_length,
                grammar=self.grammar,
                limit=self.max_length,
            )
            self._fail(start, too_long)
        else:
            self._keep(src, start, needed - start)
        return frames

    def _position_after(self, delivered: int) -> int:
        return self._ends[delivered - 1] if delivered else self._start
