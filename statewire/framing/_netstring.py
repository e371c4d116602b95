"""The netstring decoder: ``find(b":")`` and ``int()`` per frame, the header checked exactly.

The C accelerator, when built, cuts the run of well-formed netstrings; the Python loop
carries on from where it stopped. Well-formed headers take the loop's fast path; anything
else goes through :meth:`grammars.Netstring.scan_header`, which either needs more bytes or
raises the precise error. A netstring error cannot be resynchronised (there is no
delimiter to look for), so every one is fatal whatever the policy, as Twisted treats it.
"""

from __future__ import annotations

from typing import Any

from grammars import GrammarError, Netstring
from statewire.framing import _accel
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FramingError

_COMMA = 0x2C
_ZERO = 0x30


class NetstringDecoder(Decoder):
    __slots__ = ("c_cut", "c_limit", "netstring")

    def __init__(self, grammar: Netstring, base: int) -> None:
        super().__init__(grammar, base)
        self.netstring = grammar
        self.c_cut = _accel.cut_netstring
        self.c_limit = min(grammar.max_length, _accel.C_LIMIT)

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        grammar = self.netstring
        max_length = grammar.max_length
        span = grammar.max_digits + 1
        find = src.find
        frames: list[bytes]
        if self.c_cut is None:
            frames, i = [], pos
        else:
            frames, i = self.c_cut(src, pos, self.c_limit, limit)
        append = frames.append
        n = len(src)
        while i < n:
            if len(frames) >= limit:
                self._stop(i)
                return frames
            colon = find(b":", i, i + span)
            length = -1
            if colon > i:
                digits = src[i:colon]
                if digits.isdigit() and (colon == i + 1 or src[i] != _ZERO):
                    length = int(digits)
            if 0 <= length <= max_length:
                start = colon + 1
            else:
                try:
                    header = grammar.scan_header(src, i, n)
                except GrammarError as error:
                    self._fail(i, FramingError.from_grammar(error, self._src_base, grammar))
                    return frames
                if header is None:
                    self._keep(src, i, n - i + 1)
                    return frames
                length, start = header
            end = start + length
            if end >= n:
                self._keep(src, i, end + 1 - i)
                return frames
            if src[end] != _COMMA:
                missing = grammar.missing_comma(src[end : end + 1], end)
                self._fail(i, FramingError.from_grammar(missing, self._src_base, grammar))
                return frames
            append(src[start:end])
            i = end + 1
        self._keep(src, i)
        return frames

    def wire_size(self, frame: Any) -> int:
        return len(str(len(frame))) + len(frame) + 2
