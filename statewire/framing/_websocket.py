"""The WebSocket client-frame decoder: a header read from two to ten bytes, a slice and
an unmasking per frame (construct's interpreter took some 50 µs a frame).

A header that breaks a rule is refused as soon as the bytes it reads are there
(:func:`grammars.websocket.read_header`), before any of the payload is waited for; an
unfinished frame waits in ``pending`` until the bytes it needs have come (its header's,
then the whole frame's), so a frame of many reads costs its bytes once.
"""

from __future__ import annotations

from typing import Any

from grammars import GrammarError
from grammars.websocket import ClientFrames, Frame, read_header, unmask
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FramingError


class WebSocketDecoder(Decoder):
    __slots__ = ("deflate", "max_payload")

    def __init__(self, grammar: ClientFrames, base: int) -> None:
        self.max_payload = grammar.max_payload
        self.deflate = grammar.deflate
        super().__init__(grammar, base)

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        frames: list[Frame] = []
        n = len(src)
        max_payload = self.max_payload
        deflate = self.deflate
        while True:
            if pos < n and len(frames) >= limit:
                self._stop(pos)
                return frames
            try:
                head, length = read_header(src, pos, max_payload, deflate)
            except GrammarError as error:
                self._fail(
                    pos, FramingError.from_grammar(error, self._src_base + pos, self.grammar)
                )
                return frames
            if length < 0:
                self._keep(src, pos, head)
                return frames
            end = pos + head + length
            if end > n:
                self._keep(src, pos, head + length)
                return frames
            first = src[pos]
            payload = unmask(src[pos + head - 4 : pos + head], src[pos + head : end])
            frames.append(
                Frame(first >= 0x80, first & 0x0F, payload, head + length, first & 0x40 != 0)
            )
            pos = end

    def wire_size(self, frame: Any) -> int:
        wire: int = frame.wire
        return wire
