"""The RESP command decoder: Redis requests cut without construct, scan offsets across reads.

A read usually holds whole commands: the C accelerator cuts each ``*N`` array of ``$len``
bulk strings, and each inline command of plain words; without it, the loop takes each array
with a ``find`` and an ``int`` per header and a slice per argument. Anything else (an inline
command with quotes, a header it does not expect, bytes that end inside a command) goes to
:meth:`grammars.resp.Request.scan`, the grammar's own reader, which returns the command,
says it needs more bytes, or raises the precise error with Redis's words.

An unfinished command is kept whole in ``pending`` (the framer may switch grammars and take
it back), and what of it was already checked is remembered: the elements read (``_left``
counts those still missing), the position after them (``_scan``), and, while a bulk body
is arriving, the size ``pending`` must reach (``need``). So a 512 MiB argument fed a byte
at a time, or a million small ones, cost time linear in the bytes; an oversize bulk or
array is refused from its header, before any of its body is buffered.
"""

from __future__ import annotations

from typing import Any

from grammars import GrammarError
from grammars.resp import Request, read_header, split_inline
from statewire.framing import _accel
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FramingError

_STAR = 0x2A
_DOLLAR = 0x24
_ZERO = 0x30
#: a header line: the type byte, at most 20 characters, CRLF
_HEADER_SPAN = 23
#: the one way to write a bulk header for a body of n bytes (``$5`` for ``hello``)
_BULK_HEADER = b"$%d".__mod__


def _count(digits: bytes) -> int:
    """A non-negative header integer written as Redis writes it, else -1 (slow path)."""
    if digits.isdigit() and (digits[0] != _ZERO or len(digits) == 1):
        return int(digits)
    return -1


class RespDecoder(Decoder):
    __slots__ = (
        "_ends",
        "_left",
        "_scan",
        "c_array",
        "c_bulk",
        "c_cut",
        "c_inline",
        "c_one",
        "max_array",
        "max_bulk",
        "max_inline",
        "request",
    )

    def __init__(self, grammar: Request, base: int) -> None:
        self.request = grammar
        self.max_bulk = grammar.max_bulk
        self.max_array = grammar.max_array
        self.max_inline = grammar.max_inline
        self._ends: list[int] = []
        # (no bulk or array in memory comes near C_LIMIT: clamping changes no decision)
        self.c_bulk = min(grammar.max_bulk, _accel.C_LIMIT)
        self.c_array = min(grammar.max_array, _accel.C_LIMIT)
        self.c_inline = min(grammar.max_inline, _accel.C_LIMIT)
        self.c_cut = _accel.cut_resp
        self.c_one = _accel.one_resp
        super().__init__(grammar, base)

    def one(self, src: bytes, pos: int) -> Any:
        one = self.c_one
        if one is None:
            return None
        found = one(src, pos, self.c_bulk, self.c_array, self.c_inline)
        if found is None:
            return None
        command, end = found
        base = self.base
        self._src_base = base - pos
        self.base = base + end - pos
        self.end = end
        return command

    def _reset(self) -> None:
        #: index in ``pending`` after the elements of the unfinished command checked so far
        self._scan = 0
        #: elements still missing from the unfinished command; -1: its header is not read
        #: (-2: an inline command whose newline a NUL hides)
        self._left = -1

    def feed(self, src: bytes, pos: int, limit: int) -> list[Any]:
        pending = self.pending
        if pending:
            pending += memoryview(src)[pos:]
            if len(pending) < self.need or not self._advance():
                return self._consumed(src, [])
            src = bytes(pending)
            pos = 0
            pending.clear()
            self.need = 0
            self._reset()
        self._begin(src, pos)
        self._frames = frames = self._cut(src, pos, limit)
        return frames

    def _advance(self) -> bool:
        """Check the bytes added to the unfinished command; True once it is complete, or
        proved bad (``_cut`` then takes it, or reports the error)."""
        buf = self.pending
        n = len(buf)
        i = self._scan
        self.need = 0
        if self._left < 0:
            if buf[0] != _STAR:  # inline: look at the new bytes only
                return self._inline_ends(buf, i, n)
            try:
                header = read_header(buf, 0, n, "multibulk")
            except GrammarError:
                return True
            if header is None:
                return False
            count, i = header
            if count > self.max_array:
                return True
            self._left = max(count, 0)
        while self._left > 0 and i < n:
            if buf[i] != _DOLLAR:
                return True
            try:
                header = read_header(buf, i, n, "bulk")
            except GrammarError:
                return True
            if header is None:
                break
            size, body = header
            if not 0 <= size <= self.max_bulk:
                return True
            after = body + size + 2
            if after > n:
                self.need = after  # no need to look again before the body is here
                break
            if buf[after - 2 : after] != b"\r\n":
                return True  # proved bad: _cut reports it (not a wait for more bytes)
            i = after
            self._left -= 1
        self._scan = i
        return self._left == 0

    def _inline_ends(self, buf: bytearray, i: int, n: int) -> bool:
        """Whether the unfinished inline command in ``buf`` has its newline by now, or is
        too long. A NUL before the newline hides it, as in Redis: then only the length
        matters (``_left`` -2 remembers that)."""
        self._scan = n
        if self._left == -1:
            newline = buf.find(b"\n", i)
            if buf.find(b"\0", i, n if newline < 0 else newline) >= 0:
                self._left = -2
            elif newline >= 0:
                return True
        return n > self.max_inline

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        frames: list[Any] = []
        ends: list[int] = []
        self._ends = ends
        c_cut = self.c_cut
        if c_cut is not None:  # the plain commands in C, what follows them below
            pos = c_cut(src, pos, self.c_bulk, self.c_array, self.c_inline, limit, frames, ends)
        elif len(src) - pos <= limit:  # a batch that may take the whole read: split it once
            pos = self._cut_split(src, pos, frames, ends)
        return self._cut_each(src, pos, limit, frames, ends)

    def _cut_split(self, src: bytes, pos: int, frames: list[Any], ends: list[int]) -> int:
        """Cut the run of plain commands at ``src[pos]`` from one ``split`` of the read;
        return where it stopped (at anything else: a bulk holding CRLF, an error...).

        A command's bulk headers must read exactly ``$<length of the body after it>``:
        that one comparison checks the header's digits, its CRLF and the body's."""
        tokens = (src[pos:] if pos else src).split(b"\r\n")
        last = len(tokens) - 1  # tokens[last] did not end with CRLF
        check_bulk = self.max_bulk < len(src)
        max_array, max_inline = self.max_array, self.max_inline
        append, mark = frames.append, ends.append
        t = 0
        while t < last:
            head = tokens[t]
            if head[:1] == b"*":
                count = _count(head[1:])
                stop = t + 1 + 2 * count
                if not 0 < count <= max_array or stop > last:
                    break
                heads, bodies = tokens[t + 1 : stop : 2], tokens[t + 2 : stop : 2]
                if heads != list(map(_BULK_HEADER, map(len, bodies))) or (
                    check_bulk and max(map(len, bodies)) > self.max_bulk
                ):
                    break
                pos += len(head) + sum(map(len, heads)) + sum(map(len, bodies)) + 4 * count + 2
                append(bodies)
                t = stop
            # an inline command: at most max_inline bytes before its LF (its CR counted)
            elif len(head) < max_inline and b"\n" not in head and b"\0" not in head:
                words = split_inline(head)
                if words is None:
                    break
                pos += len(head) + 2
                append(words)
                t += 1
            else:
                break
            mark(pos)
        return pos

    def _cut_each(
        self, src: bytes, pos: int, limit: int, frames: list[Any], ends: list[int]
    ) -> list[Any]:
        """Cut commands one by one from ``src[pos]`` (after a split run, or a small batch)."""
        append = frames.append
        find = src.find
        max_bulk, max_array = self.max_bulk, self.max_array
        n = len(src)
        i = pos
        while i < n:
            if len(frames) >= limit:
                self._stop(i)
                return frames
            args: list[bytes] | None = None
            if src[i] == _STAR:  # the common case, read here; anything odd: the grammar
                cr = find(b"\r\n", i + 1, i + _HEADER_SPAN)
                count = _count(src[i + 1 : cr]) if cr > i else -1
                if 0 < count <= max_array:
                    args = []
                    j = cr + 2
                    for _ in range(count):
                        if j >= n or src[j] != _DOLLAR:
                            args = None
                            break
                        cr = find(b"\r\n", j + 1, j + _HEADER_SPAN)
                        size = _count(src[j + 1 : cr]) if cr > j else -1
                        end = cr + 2 + size
                        if not 0 <= size <= max_bulk or src[end : end + 2] != b"\r\n":
                            args = None
                            break
                        args.append(src[cr + 2 : end])
                        j = end + 2
                    if args is not None:
                        append(args)
                        i = j
                        ends.append(i)
                        continue
            try:
                found = self.request.scan(src, i, n)
            except GrammarError as error:
                self._fail(i, FramingError.from_grammar(error, self._src_base, self.request))
                return frames
            if found is None:
                self._keep(src, i)
                self._reset()
                self._advance()
                return frames
            command, i = found
            append(command)
            ends.append(i)
        self._keep(src, i)
        return frames

    def _position_after(self, delivered: int) -> int:
        # inline commands and ignored ``*0`` headers make a frame's size unknowable from
        # its value: the cut remembers where each frame ended
        if delivered == len(self._frames):
            return self._after_last
        return self._ends[delivered - 1] if delivered else self._start
