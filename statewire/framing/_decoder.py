"""The decoder protocol: how one grammar's frames are cut out of the byte stream.

The framer owns the bytes not yet looked at, as ``(src, pos)``: a bytes object and the
position of the first such byte, so nothing is copied when a batch stops early. A decoder
owns only the bytes of an unfinished frame (``pending``) and knows the stream offset of the
first byte not yet consumed (``base``).

``feed(src, pos, limit)`` cuts at most about ``limit`` frames from ``pending + src[pos:]``
and returns them in order. Afterwards ``src``/``end`` say where the framer's bytes now stand:
when the decoder stopped at ``limit`` (``more`` is true) or at a bad frame (``error`` is
set) the bytes from ``end`` on are still the framer's; otherwise all of them were consumed
or moved to ``pending``. The decoders never call user code: when delivery stops early (a
switch or a pause), ``rewind(delivered)`` gives the position, in ``src``, just after the
last frame delivered, and forgets the rest of the batch.

``skip(src, pos)`` tries to discard a bad frame (the ``DISCARD`` policy); it returns where
framing goes on, or ``None`` when there is no way to resynchronise. ``retry()`` asks a
decoder that held pending bytes back without trying them (the generic path) to try them
on the next ``feed``, at the end of the stream or when the framer is fed ``b""``.
"""

from __future__ import annotations

from typing import Any

from statewire.framing.errors import FramingError


class Decoder:
    """Base class: pending bytes, the batch bookkeeping, and the error slot."""

    # one decoder per connection: slots keep idle connections small
    __slots__ = (
        "_after_last",
        "_frames",
        "_src_base",
        "_start",
        "base",
        "blocked",
        "eager",
        "end",
        "error",
        "grammar",
        "more",
        "need",
        "pending",
        "src",
    )
    #: whether the decoder frames blocks whose ``size`` the framer sets from the context
    #: (then it is reused whatever the context, with the size of the moment)
    sized = False

    def __init__(self, grammar: Any, base: int) -> None:
        #: whether the decoder has a frame to deliver even with no bytes (``fixed(0)``)
        self.eager = False
        #: whether the decoder can frame nothing more until the grammar changes
        self.blocked = False
        self.grammar = grammar
        self.pending = bytearray()
        self.error: FramingError | None = None
        self.src: bytes = b""
        self.end = 0
        self.more = False
        self._frames: list[Any] = []
        # a batch's bookkeeping (set by each feed and by ``one``)
        self._start = 0
        self._src_base = base
        #: position in ``src`` just after the last frame cut
        self._after_last = 0
        self.restart(base)

    def restart(self, base: int) -> None:
        """Start afresh at stream offset ``base`` (a new decoder, or one reused).

        What a batch leaves behind (``_frames``, ``_start``, ...) is set again by the next
        one; only the partial frame and the error are forgotten here."""
        self.base = base
        if self.pending:
            self.pending.clear()
        #: bytes ``pending`` must reach before its frame can complete (0: try at once)
        self.need = 0
        self.error = None
        self._reset()

    def one(self, src: bytes, pos: int) -> Any:
        """The frame at ``src[pos]`` when it is whole and good, cut with no bookkeeping
        beyond ``base`` and ``end``; else ``None`` and nothing changed (the framer then
        takes :meth:`feed`). Only called with nothing pending and no error: the framer's
        step after a switch, when one frame is all a batch may take."""
        return None

    def feed(self, src: bytes, pos: int, limit: int) -> list[Any]:
        pending = self.pending
        if pending:
            if not self._completes(src, pos):
                pending += memoryview(src)[pos:]
                self._absorbed()
                return self._consumed(src, [])
            whole = self._pending_frame(src, pos)
            if whole is not None:
                return self._after_pending(src, limit, *whole)
            src = bytes(pending) + src[pos:]
            pos = 0
            pending.clear()
        self._begin(src, pos)
        self._frames = frames = self._cut(src, pos, limit)
        return frames

    def _pending_frame(self, src: bytes, pos: int) -> tuple[Any, int, int] | None:
        """When the pending frame's size is known (a block, a prefixed frame whose header
        has come) and ``src[pos:]`` completes it: the frame, its size on the wire and the
        position in ``src`` just after it, the pending bytes used up; else ``None`` (the
        pending bytes and ``src`` are then cut together, which copies ``src``)."""
        return None

    def _after_pending(self, src: bytes, limit: int, frame: Any, size: int, end: int) -> list[Any]:
        """``frame`` (``size`` bytes on the wire, its last at ``src[end - 1]``) completed
        the pending bytes: cut what follows from ``src`` itself, with no copy of it."""
        self.need = 0
        self.base += size
        self._begin(src, end)
        self._start = end - size  # (may be negative: the frame's start was pending)
        frames = [frame]
        if limit > 1:
            frames += self._cut(src, end, limit - 1)
        elif end < len(src):
            self._stop(end)
        else:
            self._keep(src, end)
        self._frames = frames
        return frames

    def settle(self) -> None:
        """The framer has delivered every frame cut: drop the batch's references (its
        frames and the bytes they were cut from)."""
        self.src = b""
        self._frames = []

    def _completes(self, src: bytes, pos: int) -> bool:
        """Whether ``pending + src[pos:]`` may complete the pending frame."""
        return len(self.pending) + len(src) - pos >= self.need

    def _absorbed(self) -> None:
        """Hook: bytes that complete nothing were appended to ``pending``."""

    def _begin(self, src: bytes, pos: int) -> None:
        self.src = src
        self._start = pos
        self._src_base = self.base - pos
        self.more = False

    def _consumed(self, src: bytes, frames: list[Any]) -> list[Any]:
        """Every byte of ``src`` was cut or is pending."""
        self.src = src
        self.end = len(src)
        self.more = False
        return frames

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        """Cut frames from ``src[pos:]``; end with ``_keep``, ``_stop`` or ``_fail``."""
        raise NotImplementedError

    def _keep(self, src: bytes, start: int, need: int = 0) -> None:
        """Make ``src[start:]``, an unfinished frame, pending; its frame needs ``need``."""
        self._after_last = start
        self.pending += memoryview(src)[start:]
        self.base = self._src_base + start
        self.need = need
        self.end = len(src)

    def _stop(self, start: int) -> None:
        """The batch is full: the framer keeps ``src[start:]`` for the next one."""
        self._after_last = start
        self.base = self._src_base + start
        self.end = start
        self.more = True

    def _fail(self, start: int, error: FramingError) -> None:
        """The frame at ``src[start]`` is bad: the framer keeps it and what follows."""
        self._after_last = start
        self.base = self._src_base + start
        self.end = start
        self.error = error

    def wire_size(self, frame: Any) -> int:
        """How many stream bytes ``frame`` was cut from."""
        raise NotImplementedError

    def _position_after(self, delivered: int) -> int:
        if delivered == len(self._frames):
            return self._after_last
        return self._start + sum(map(self.wire_size, self._frames[:delivered]))

    def rewind(self, delivered: int) -> int:
        """Only ``delivered`` frames of the last batch were used: return the position in
        ``src`` after them. The rest of the batch is forgotten; the framer keeps its bytes."""
        end = self._position_after(delivered)
        self.base = self._src_base + end
        self.pending.clear()
        self.need = 0
        self.error = None
        self._frames = []
        self._reset()
        return end

    def _reset(self) -> None:
        """Forget the subclass's scan state (after ``rewind`` and on ``restart``)."""

    def take(self) -> bytes:
        """Remove and return the pending bytes (the framer is switching grammars)."""
        data = bytes(self.pending)
        self.pending.clear()
        self.need = 0
        return data

    def skip(self, src: bytes, pos: int) -> int | None:
        """Discard the bad frame at ``src[pos]``; return where framing goes on, or None."""
        return None

    def unfinished(self) -> bool:
        """Whether bytes of an incomplete frame are pending (for end of stream)."""
        return bool(self.pending)

    def dropping(self) -> bool:
        """Whether the rest of a bad frame is still to be dropped (after ``skip``)."""
        return False

    def drop(self, src: bytes, pos: int) -> int:
        """Drop more of the bad frame ``skip`` began to drop, from ``src[pos:]``: the
        position after it, or ``len(src)`` when it goes on past ``src``."""
        return pos

    def retry(self) -> bool:
        """Make the next ``feed`` try the pending bytes even if no byte is added, when
        some were held back untried (the generic path defers retries); True if so."""
        return False


class RawDecoder(Decoder):
    """Raw bytes: whatever is there is one frame; nothing is ever held back."""

    __slots__ = ()

    def one(self, src: bytes, pos: int) -> Any:
        # the bytes there are the frame: a raw state's read is delivered by the framer's
        # one-frame path (no batch, nothing to give back)
        end = len(src)
        if pos >= end:
            return None
        base = self.base
        self._src_base = base - pos
        self.base = base + end - pos
        self.end = end
        return src[pos:] if pos else src

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        self._consumed(src, [])
        self._after_last = len(src)
        self.base = self._src_base + len(src)
        return [src[pos:] if pos else src]

    def wire_size(self, frame: Any) -> int:
        return len(frame)


class FixedDecoder(Decoder):
    """Blocks of exactly ``size`` bytes.

    ``size`` 0 frames one empty block as soon as it becomes current, and then nothing: the
    bytes after it wait for the next switch (a protocol switches after an empty body).
    """

    __slots__ = ("size",)
    sized = True

    def __init__(self, grammar: Any, base: int, size: int) -> None:
        self.size = size
        super().__init__(grammar, base)

    def restart(self, base: int) -> None:
        self.base = base
        if self.pending:
            self.pending.clear()
        self.error = None
        size = self.size
        self.need = size
        self.eager = size == 0
        self.blocked = False

    def _pending_frame(self, src: bytes, pos: int) -> tuple[Any, int, int] | None:
        pending = self.pending
        end = pos + self.size - len(pending)
        pending += memoryview(src)[pos:end]
        frame = bytes(pending)
        pending.clear()
        return frame, self.size, end

    def one(self, src: bytes, pos: int) -> Any:
        size = self.size
        end = pos + size
        if not size or end > len(src):
            return None
        base = self.base
        self._src_base = base - pos
        self.base = base + size
        self.end = end
        return src[pos:end]

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        size = self.size
        if size == 0:
            self._stop(pos)
            if self.eager:
                self.eager = False
                return [b""]
            self.more = False
            self.blocked = True
            return []
        whole = len(src) - (len(src) - pos) % size
        end = min(whole, pos + limit * size)
        frames = [src[i : i + size] for i in range(pos, end, size)]
        if end < whole:
            self._stop(end)
        else:
            self._keep(src, end, size)
        return frames

    def wire_size(self, frame: Any) -> int:
        return self.size
