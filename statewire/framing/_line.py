"""The line decoder: lines cut in C (or by ``bytes.split``), scan offsets across reads.

Bytes that complete no line are appended to the pending partial line, and only they (plus
the ``len(delimiter) - 1`` bytes before them, for a delimiter split across reads) are
searched, so a long line fed one byte at a time costs linear time. Without the C
accelerator, a batch that may take the whole buffer is cut by ``bytes.split``; a small batch
(just after a switch) by ``find``, so its cost follows the lines it takes, not the buffer.
"""

from __future__ import annotations

from typing import Any

from grammars import Line
from statewire.framing import _accel
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FramingError


class LineDecoder(Decoder):
    __slots__ = (
        "c_cut",
        "c_limit",
        "delimiter",
        "delimiter_size",
        "discarding",
        "line",
        "max_length",
        "scanned",
    )

    def __init__(self, grammar: Line, base: int) -> None:
        super().__init__(grammar, base)
        self.line = grammar
        self.delimiter = grammar.delimiter
        self.delimiter_size = len(grammar.delimiter)
        self.max_length = grammar.max_length
        self.c_cut = _accel.cut_lines
        self.c_limit = min(grammar.max_length, _accel.C_LIMIT)

    def _reset(self) -> None:
        #: no delimiter starts before this index of ``pending``
        self.scanned = 0
        #: dropping a too-long line up to its delimiter (the DISCARD policy)
        self.discarding = False

    def restart(self, base: int) -> None:
        # the base class's restart and _reset in one call (a switch back to lines)
        self.base = base
        if self.pending:
            self.pending.clear()
        self.need = 0
        self.error = None
        self.scanned = 0
        self.discarding = False

    def feed(self, src: bytes, pos: int, limit: int) -> list[Any]:
        if self.discarding:
            pos = self._discard(src, pos)
            if self.discarding:
                return self._consumed(src, [])
        return Decoder.feed(self, src, pos, limit)  # (not super(): a read's cost)

    def one(self, src: bytes, pos: int) -> Any:
        if self.discarding:
            return None
        size = self.delimiter_size
        hit = src.find(self.delimiter, pos, pos + self.max_length + size)  # (no further)
        if hit < 0:
            return None
        end = hit + size
        base = self.base
        self._src_base = base - pos
        self.base = base + end - pos
        self.end = end
        return src[pos:hit]

    def _absorbed(self) -> None:
        self.scanned = max(len(self.pending) - len(self.delimiter) + 1, 0)
        if self.line.exceeds(self.pending):
            self.error = self._too_long(self.base)

    def _completes(self, src: bytes, pos: int) -> bool:
        """Whether ``pending + src[pos:]`` holds a delimiter (pending held none before)."""
        delimiter, pending, scanned = self.delimiter, self.pending, self.scanned
        if pending.find(delimiter, scanned) >= 0:
            return True
        boundary = bytes(pending[scanned:]) + src[pos : pos + len(delimiter) - 1]
        return boundary.find(delimiter) >= 0 or src.find(delimiter, pos) >= 0

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        delimiter = self.delimiter
        if self.c_cut is not None:
            lines, end = self.c_cut(src, pos, delimiter, self.c_limit, limit)
        else:
            if len(src) - pos <= limit:
                lines = (src[pos:] if pos else src).split(delimiter)
                tail = lines.pop()
                end = len(src) - len(tail)
            else:
                lines, end = self._find_lines(src, pos, limit)
            longest = max(map(len, lines), default=0) if len(src) - pos > self.max_length else 0
            if longest > self.max_length:
                return self._before_long_line(lines, pos)
        if len(lines) >= limit:
            self._stop(end)
        else:
            self._cut_tail(src, end)
        return lines

    def _find_lines(self, src: bytes, pos: int, limit: int) -> tuple[list[bytes], int]:
        delimiter = self.delimiter
        size = len(delimiter)
        lines: list[bytes] = []
        find = src.find
        while len(lines) < limit:
            hit = find(delimiter, pos)
            if hit < 0:
                break
            lines.append(src[pos:hit])
            pos = hit + size
        return lines, pos

    def _cut_tail(self, src: bytes, start: int) -> None:
        """``src[start:]`` starts with no line the cut could take: pend it, or fail on it."""
        rest = len(src) - start
        if not rest:  # the read ended with a delimiter: nothing to pend (_keep, shortened)
            self._after_last = start
            self.base = self._src_base + start
            self.need = 0
            self.end = start
            self.scanned = 0
            return
        if rest > self.max_length and (
            src.find(self.delimiter, start) >= 0 or self.line.exceeds(src[start:])
        ):
            self._fail(start, self._too_long(self._src_base + start))
        else:
            self._keep(src, start)
            self.scanned = max(rest - len(self.delimiter) + 1, 0)

    def _before_long_line(self, lines: list[bytes], pos: int) -> list[Any]:
        """The pure-Python split took a line over the limit: stop before it."""
        index = next(i for i, line in enumerate(lines) if len(line) > self.max_length)
        start = pos + sum(map(len, lines[:index])) + index * len(self.delimiter)
        self._fail(start, self._too_long(self._src_base + start))
        return lines[:index]

    def _too_long(self, line_start: int) -> FramingError:
        return FramingError.from_grammar(self.line.too_long(0), line_start, self.line)

    def wire_size(self, frame: Any) -> int:
        return len(frame) + len(self.delimiter)

    def unfinished(self) -> bool:
        return bool(self.pending) or self.discarding

    def skip(self, src: bytes, pos: int) -> int | None:
        """Drop the too-long line through its delimiter, now or as it arrives."""
        self.error = None
        self.discarding = True
        return self._discard(src, pos)

    def dropping(self) -> bool:
        return self.discarding

    def drop(self, src: bytes, pos: int) -> int:
        return self._discard(src, pos)

    def _discard(self, src: bytes, pos: int) -> int:
        """Drop the stream through the next delimiter and return the position in ``src``
        after it; or return ``len(src)``, still discarding, with only a possible partial
        delimiter left pending. The stream here is ``pending + src[pos:]``."""
        delimiter = self.delimiter
        keep = len(delimiter) - 1
        pending = self.pending
        carry = bytes(pending[max(len(pending) - keep, 0) :])
        src_base = self.base + len(pending) - pos  # stream offset of src[0]
        pending.clear()
        hit = (carry + src[pos : pos + keep]).find(delimiter)
        if hit >= 0:
            after = pos + hit + len(delimiter) - len(carry)
        else:
            found = src.find(delimiter, pos)
            after = found + len(delimiter) if found >= 0 else -1
        if after >= 0:
            self.base = src_base + after
            self.discarding = False
            self.scanned = 0
            return after
        stream_end = carry + src[max(pos, len(src) - keep) :]
        tail = stream_end[max(len(stream_end) - keep, 0) :] if keep else b""
        pending += tail
        self.base = src_base + len(src) - len(tail)
        return len(src)
