"""The decoder protocol: how one grammar's frames are cut out of the byte stream.

A decoder owns the bytes it has not yet turned into frames (``pending``) and the absolute
stream offset of the first of them (``base``). ``feed(data)`` returns, in order, every frame
that ``pending + data`` completes; the bytes of an unfinished frame stay pending. The
decoders never call back into user code: the framer delivers the frames, and when delivery
stops early (a switch or a pause) it calls ``rewind(delivered)`` so that the frames not
delivered become pending bytes again, exactly as they arrived.

When the bytes prove a frame bad, ``feed`` returns the frames before it and sets ``error``;
the bad frame's bytes and everything after stay pending. ``skip()`` then tries to discard
the bad frame (the ``DISCARD`` policy) and says whether decoding can go on.
"""

from __future__ import annotations

from typing import Any

from statewire.framing.errors import FramingError


class Decoder:
    """Base class: pending bytes, the last batch (for ``rewind``), and the error slot."""

    #: Decoders whose frames are bytes can rebuild positions from frame sizes.
    def __init__(self, grammar: Any, base: int) -> None:
        self.grammar = grammar
        self.base = base
        self.pending = bytearray()
        #: bytes pending + data must reach before a frame can complete (0: try at once)
        self.need = 0
        self.error: FramingError | None = None
        self._src: bytes = b""
        self._src_base = base
        self._frames: list[Any] = []

    def feed(self, data: bytes) -> list[Any]:
        pending = self.pending
        if pending:
            if len(pending) + len(data) < self.need:
                pending += data
                return []
            src = bytes(pending) + data
            pending.clear()
        else:
            src = data
        if not src:
            return []
        self._src = src
        self._src_base = self.base
        self._frames = frames = self._cut(src)
        return frames

    def _cut(self, src: bytes) -> list[Any]:
        """Cut every complete frame of ``src``; leave the rest pending (see ``_keep``)."""
        raise NotImplementedError

    def _keep(self, src: bytes, start: int, need: int = 0) -> None:
        """Make ``src[start:]`` pending; ``need`` is how many bytes its frame needs."""
        self.pending += memoryview(src)[start:]
        self.base = self._src_base + start
        self.need = need

    def wire_size(self, frame: Any) -> int:
        """How many stream bytes ``frame`` was cut from."""
        raise NotImplementedError

    def _position_after(self, delivered: int) -> int:
        return sum(map(self.wire_size, self._frames[:delivered]))

    def rewind(self, delivered: int) -> None:
        """Only the first ``delivered`` frames of the last batch were used: pend the rest."""
        start = self._position_after(delivered)
        self.pending = bytearray(memoryview(self._src)[start:])
        self.base = self._src_base + start
        self.need = 0
        self.error = None
        self._frames = []
        self._reset()

    def _reset(self) -> None:
        """Forget scan state after ``rewind`` (pending may now hold whole frames)."""

    def take(self) -> bytes:
        """Remove and return every pending byte (the framer is switching grammars)."""
        data = bytes(self.pending)
        self.pending.clear()
        self.base += len(data)
        self.need = 0
        return data

    def skip(self) -> bool:
        """Discard the bad frame after ``error``; False when there is no way to resync."""
        return False

    def unfinished(self) -> bool:
        """Whether bytes of an incomplete frame are pending (for end of stream)."""
        return bool(self.pending)


class RawDecoder(Decoder):
    """Raw bytes: every feed is one frame, nothing is ever held back."""

    def _cut(self, src: bytes) -> list[Any]:
        self.base += len(src)
        return [src]

    def wire_size(self, frame: Any) -> int:
        return len(frame)


class FixedDecoder(Decoder):
    """Blocks of exactly ``size`` bytes (``size`` 0: one empty frame per feed)."""

    def __init__(self, grammar: Any, base: int, size: int) -> None:
        super().__init__(grammar, base)
        self.size = size
        self.need = size

    def feed(self, data: bytes) -> list[Any]:
        if self.size == 0 and not self.pending and not data:
            self._src, self._src_base, self._frames = b"", self.base, [b""]
            return self._frames
        return super().feed(data)

    def _cut(self, src: bytes) -> list[Any]:
        size = self.size
        if size == 0:
            self._keep(src, 0)
            return [b""]
        end = len(src) - len(src) % size
        frames = [src[i : i + size] for i in range(0, end, size)]
        self._keep(src, end, size)
        return frames

    def wire_size(self, frame: Any) -> int:
        return self.size
