"""The length-prefixed decoder: one ``unpack_from`` and one slice per frame.

The C accelerator, when built, cuts the run of complete frames within the limit; the Python
loop carries on from where it stopped. The header is checked against the limits as soon as
it is complete, before any body byte is buffered. A too-long frame can be discarded (the
``DISCARD`` policy, as Netty's ``LengthFieldBasedFrameDecoder`` does): its announced bytes
are dropped as they arrive, never buffered. A negative body length is fatal.
"""

from __future__ import annotations

import struct
from typing import Any

from grammars import GrammarError, LengthPrefixed
from statewire.framing import _accel
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FrameTooLong, FramingError

_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


class PrefixedDecoder(Decoder):
    __slots__ = ("_announced", "c_cut", "c_limit", "discard", "prefixed", "unpack_from")

    def __init__(self, grammar: LengthPrefixed, base: int) -> None:
        self.prefixed = grammar
        super().__init__(grammar, base)
        order = ">" if grammar.byteorder == "big" else "<"
        self.unpack_from = struct.Struct(order + _FORMATS[grammar.width]).unpack_from
        usable = abs(grammar.adjust) < _accel.C_LIMIT
        self.c_cut = _accel.cut_prefixed if usable else None
        self.c_limit = min(grammar.max_length, _accel.C_LIMIT)

    def _reset(self) -> None:
        #: bytes of a discarded too-long frame still to drop
        self.discard = 0
        self._announced = 0

    def feed(self, src: bytes, pos: int, limit: int) -> list[Any]:
        if self.discard:
            pos = self.drop(src, pos)
            if self.discard:
                return self._consumed(src, [])
        return Decoder.feed(self, src, pos, limit)  # (not super(): a read's cost)

    def dropping(self) -> bool:
        return self.discard > 0

    def drop(self, src: bytes, pos: int) -> int:
        dropped = min(self.discard, len(src) - pos)
        self.discard -= dropped
        self.base += dropped
        return pos + dropped

    def _pending_frame(self, src: bytes, pos: int) -> tuple[Any, int, int] | None:
        pending = self.pending
        header = self.prefixed.header_size
        if len(pending) < header:
            return None  # the length is not known yet
        size = self.need  # the whole frame, header included (see _cut's _keep)
        end = pos + size - len(pending)
        field_at = self.prefixed.length_offset
        with memoryview(pending) as view:
            # one copy: the pending part and the read's part joined straight into the frame
            # (appending the read's part to ``pending`` first copied it twice, and
            # reallocating ``pending`` a third time)
            parts = (view[:field_at], view[header:], memoryview(src)[pos:end])
            frame = b"".join(parts if field_at else parts[1:])
            del parts
        pending.clear()
        return frame, size, end

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        grammar = self.prefixed
        unpack_from = self.unpack_from
        header = grammar.header_size
        field_at = grammar.length_offset
        adjust = grammar.adjust
        max_length = grammar.max_length
        frames: list[bytes]
        if self.c_cut is None:
            frames, i = [], pos
        else:
            big = grammar.byteorder == "big"
            frames, i = self.c_cut(
                src, pos, field_at, grammar.width, big, adjust, self.c_limit, limit
            )
        append = frames.append
        n = len(src)
        while i + header <= n:
            if len(frames) >= limit:
                self._stop(i)
                return frames
            length = unpack_from(src, i + field_at)[0] + adjust
            if not 0 <= length <= max_length:
                try:
                    grammar.body_length(length - adjust, i + field_at)
                except GrammarError as error:
                    self._announced = header + length
                    self._fail(i, FramingError.from_grammar(error, self._src_base, grammar))
                    return frames
            end = i + header + length
            if end > n:
                self._keep(src, i, end - i)
                return frames
            body = src[i + header : end]
            append(src[i : i + field_at] + body if field_at else body)
            i = end
        self._keep(src, i, header)
        return frames

    def wire_size(self, frame: Any) -> int:
        return len(frame) + self.prefixed.width

    def unfinished(self) -> bool:
        return bool(self.pending) or self.discard > 0

    def skip(self, src: bytes, pos: int) -> int | None:
        """Drop a too-long frame's announced bytes, now and as they arrive."""
        if not isinstance(self.error, FrameTooLong):
            return None
        self.error = None
        dropped = min(self._announced, len(src) - pos)
        self.discard = self._announced - dropped
        self.base += dropped
        return pos + dropped
