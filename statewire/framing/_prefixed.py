"""The length-prefixed decoder: one ``unpack_from`` and one slice per frame.

The header is checked against the limits as soon as it is complete, before any body byte is
buffered. A too-long frame can be discarded (the ``DISCARD`` policy, as Netty's
``LengthFieldBasedFrameDecoder`` does): its announced bytes are dropped as they arrive,
never buffered. A negative body length is fatal.
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
    def __init__(self, grammar: LengthPrefixed, base: int) -> None:
        super().__init__(grammar, base)
        self.prefixed = grammar
        order = ">" if grammar.byteorder == "big" else "<"
        self.unpack_from = struct.Struct(order + _FORMATS[grammar.width]).unpack_from
        usable = abs(grammar.adjust) < _accel.C_LIMIT
        self.c_cut = _accel.cut_prefixed if usable else None
        self.c_limit = min(grammar.max_length, _accel.C_LIMIT)
        #: bytes of a discarded too-long frame still to drop
        self.discard = 0
        self._announced = 0

    def feed(self, data: bytes) -> list[Any]:
        if self.discard:
            dropped = min(self.discard, len(data))
            self.discard -= dropped
            self.base += dropped
            data = data[dropped:]
            if self.discard:
                return []
        return super().feed(data)

    def _cut(self, src: bytes) -> list[Any]:
        grammar = self.prefixed
        unpack_from = self.unpack_from
        header = grammar.header_size
        field_at = grammar.length_offset
        adjust = grammar.adjust
        max_length = grammar.max_length
        frames: list[bytes]
        if self.c_cut is None:
            frames, i = [], 0
        else:
            big = grammar.byteorder == "big"
            frames, i = self.c_cut(src, 0, field_at, grammar.width, big, adjust, self.c_limit)
        append = frames.append
        n = len(src)
        while True:
            body = i + header
            if body > n:
                break
            length = unpack_from(src, i + field_at)[0] + adjust
            if not 0 <= length <= max_length:
                try:
                    grammar.body_length(length - adjust, i + field_at)
                except GrammarError as error:
                    self.error = FramingError.from_grammar(error, self._src_base, grammar)
                    self._announced = header + length
                break
            end = body + length
            if end > n:
                self._keep(src, i, end - i)
                return frames
            append(src[i : i + field_at] + src[body:end] if field_at else src[body:end])
            i = end
        self._keep(src, i, header)
        return frames

    def wire_size(self, frame: Any) -> int:
        return len(frame) + self.prefixed.width

    def unfinished(self) -> bool:
        return bool(self.pending) or self.discard > 0

    def skip(self) -> bool:
        """Drop a too-long frame's announced bytes, now and as they arrive."""
        if not isinstance(self.error, FrameTooLong):
            return False
        self.error = None
        dropped = min(self._announced, len(self.pending))
        del self.pending[:dropped]
        self.base += dropped
        self.discard = self._announced - dropped
        self.need = 0
        return True
