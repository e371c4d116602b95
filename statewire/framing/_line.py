"""The line decoder: ``bytes.split`` on whole reads, scan offsets across partial lines.

A read that completes at least one line is joined to the pending partial line once and
split in C. A read that completes none is appended to the pending bytes, and only its own
bytes (plus the ``len(delimiter) - 1`` before it, for a delimiter split across reads) are
searched, so a long line fed one byte at a time costs linear time.
"""

from __future__ import annotations

from typing import Any

from grammars import Line
from statewire.framing import _accel
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FramingError


class LineDecoder(Decoder):
    def __init__(self, grammar: Line, base: int) -> None:
        super().__init__(grammar, base)
        self.line = grammar
        self.delimiter = grammar.delimiter
        self.max_length = grammar.max_length
        self.c_cut = _accel.cut_lines
        self.c_limit = min(grammar.max_length, _accel.C_LIMIT)
        #: no delimiter starts before this index of ``pending``
        self.scanned = 0
        #: discarding a too-long line up to its delimiter (the DISCARD policy)
        self.discarding = False

    def _reset(self) -> None:
        self.scanned = 0
        self.discarding = False

    def feed(self, data: bytes) -> list[Any]:
        delimiter = self.delimiter
        pending = self.pending
        if self.discarding:
            if not self._discard(data):
                return []
            data = self._rest
        if pending:
            if not self._completes_line(data):
                pending += data
                self.scanned = max(len(pending) - len(delimiter) + 1, 0)
                if self.line.exceeds(pending):
                    self.error = self._too_long(self.base)
                return []
            src = bytes(pending) + data
            pending.clear()
        else:
            src = data
        self._src = src
        self._src_base = self.base
        if self.c_cut is not None:
            lines, end = self.c_cut(src, 0, delimiter, self.c_limit)
            tail = src[end:]
            if tail.find(delimiter) >= 0:  # C stops before a line over the limit
                return self._cut_before_long_line(src, [*lines, tail])
        else:
            lines = src.split(delimiter)
            tail = lines.pop()
            if len(src) > self.max_length and lines and max(map(len, lines)) > self.max_length:
                return self._cut_before_long_line(src, lines)
        self._frames = lines
        self.base += len(src) - len(tail)
        if tail:
            pending += tail
            self.scanned = max(len(tail) - len(delimiter) + 1, 0)
            if len(tail) > self.max_length and self.line.exceeds(tail):
                self.error = self._too_long(self.base)
        return lines

    def _completes_line(self, data: bytes) -> bool:
        """Whether ``pending + data`` holds a delimiter (pending alone held none before)."""
        delimiter, pending, scanned = self.delimiter, self.pending, self.scanned
        if pending.find(delimiter, scanned) >= 0:
            return True
        boundary = bytes(pending[scanned:]) + data[: len(delimiter) - 1]
        return boundary.find(delimiter) >= 0 or data.find(delimiter) >= 0

    def _cut_before_long_line(self, src: bytes, lines: list[bytes]) -> list[Any]:
        index = next(i for i, line in enumerate(lines) if len(line) > self.max_length)
        start = sum(map(len, lines[:index])) + index * len(self.delimiter)
        frames = lines[:index]
        self._frames = frames
        self.base += start
        self.pending += memoryview(src)[start:]
        self.error = self._too_long(self.base)
        return frames

    def _too_long(self, line_start: int) -> FramingError:
        return FramingError.from_grammar(self.line.too_long(0), line_start, self.line)

    def wire_size(self, frame: Any) -> int:
        return len(frame) + len(self.delimiter)

    def unfinished(self) -> bool:
        return bool(self.pending) or self.discarding

    def skip(self) -> bool:
        """Discard the too-long line through its delimiter, now or as it arrives."""
        self.error = None
        self.discarding = True
        if self._discard(b""):
            self.pending += self._rest
        return True

    def _discard(self, data: bytes) -> bool:
        """Drop bytes up to and including the next delimiter; keep only a possible
        partial delimiter meanwhile. True when the delimiter was found (then ``_rest`` is
        what follows it, and ``pending`` is empty)."""
        delimiter = self.delimiter
        window = bytes(self.pending) + data
        self.pending.clear()
        found = window.find(delimiter)
        if found < 0:
            keep = min(len(delimiter) - 1, len(window))
            dropped = len(window) - keep
            self.base += dropped
            self.pending += window[dropped:]
            self.scanned = 0
            return False
        self.base += found + len(delimiter)
        self.discarding = False
        self.scanned = 0
        self._rest = window[found + len(delimiter) :]
        return True

    _rest = b""
