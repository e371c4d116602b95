"""The RESP reply decoder: one RESP value (a reply, however nested) per frame.

The work is :class:`grammars.resp.ReplyReader`'s: it reads a value from its first byte and,
when the bytes end inside it, remembers how far it got (the aggregates open, the values
they hold, where the next one starts, how far a line was searched), so the unfinished
reply kept in ``pending`` is resumed on the new bytes only: a 512 MiB bulk fed a byte at a
time, or a million-element array in small reads, costs time linear in its size, and a reply
is delivered by the read that brings its last byte. Sizes, counts and depths over the
grammar's limits are refused from the header, before any body is buffered.
"""

from __future__ import annotations

from typing import Any

from grammars import GrammarError
from grammars.resp import ReplyReader, Resp
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FramingError


class ReplyDecoder(Decoder):
    __slots__ = ("_ends", "reader")

    def __init__(self, grammar: Resp, base: int) -> None:
        self.reader = ReplyReader(grammar.max_bulk, grammar.max_array, grammar.max_depth)
        self._ends: list[int] = []
        super().__init__(grammar, base)

    def _reset(self) -> None:
        self.reader.reset()

    def one(self, src: bytes, pos: int) -> Any:
        replies: list[Any] = []
        try:
            after = self.reader.read(src, pos, len(src), replies, None, 0, 1)
        except GrammarError:
            after = pos
        if not replies or replies[0] is None:
            # unfinished or bad: the general path cuts it again; so does a null reply
            # (``one`` answers None for "no frame here": a null cut here would be cut twice)
            self.reader.reset()
            return None
        size = after - pos
        base = self.base
        self._src_base = base - pos
        self.base = base + size
        self.end = after
        return replies[0]

    def feed(self, src: bytes, pos: int, limit: int) -> list[Any]:
        pending = self.pending
        if pending:
            held = len(pending)
            pending += memoryview(src)[pos:]
            if len(pending) < self.reader.need:
                return self._consumed(src, [])
            try:
                found = self.reader.scan(pending, 0, len(pending))
            except GrammarError:
                # cut the bad reply again from its first byte, to report it where it is
                src, pos = bytes(pending), 0
                pending.clear()
                self._reset()
                found = None
            else:
                if found is None:
                    self.need = self.reader.need
                    return self._consumed(src, [])
                # the pending reply is complete: cut what follows from ``src`` itself
                pending.clear()
                self.need = 0
                value, size = found
                end = pos + size - held
                self.base += size
                self._begin(src, end)
                self._start = end - size  # (negative: the reply began in earlier reads)
                self._frames = frames = self._cut_into(src, end, limit, [value], [end])
                return frames
        self._begin(src, pos)
        self._frames = frames = self._cut(src, pos, limit)
        return frames

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        return self._cut_into(src, pos, limit, [], [])

    def _cut_into(
        self, src: bytes, pos: int, limit: int, frames: list[Any], ends: list[int]
    ) -> list[Any]:
        """Cut replies from ``src[pos:]`` after ``frames`` (which ended at ``ends``)."""
        self._ends = ends
        reader = self.reader
        try:
            i = reader.read(src, pos, len(src), frames, ends, self._src_base, limit - len(frames))
        except GrammarError as error:
            reader.reset()
            bad = FramingError.from_grammar(error, 0, self.grammar)  # its offset is absolute
            self._fail(ends[-1] if ends else pos, bad)
            return frames
        if i == len(src):
            self._keep(src, i)
        elif len(frames) >= limit:
            self._stop(i)
        else:  # an unfinished reply: the reader remembers how far it got
            self._keep(src, i, reader.need)
        return frames

    def _position_after(self, delivered: int) -> int:
        # a reply's size on the wire is not its value's: the cut remembers where each ended
        if delivered == len(self._frames):
            return self._after_last
        return self._ends[delivered - 1] if delivered else self._start
