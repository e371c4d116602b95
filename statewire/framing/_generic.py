"""The generic decoder: any construct grammar, tried on the buffer, retried as bytes arrive.

Theory of operation
-------------------
construct cannot suspend a parse, so an unfinished frame is parsed again from its start
when more bytes may finish it. Retrying on every read is quadratic for a grammar that
scans (``CString``, a ``line`` in a ``Struct``, ``GreedyRange``): fed one byte at a time,
a frame of ``n`` bytes would be parsed ``n`` times. Retrying less often risks the opposite
fault, a complete frame left undelivered while the peer waits for the reply to it. The
decoder keeps both promises by watching what each failed attempt asked of the stream:

* The reader notes every read that ran past the bytes there, and who made it: a read of a
  fixed count (construct's ``stream_read``: ``Bytes(n)``, an integer, ...), the unit-by-unit
  scan of ``NullTerminated`` (``CString``) with its terminator, the window of a nested
  ``line`` with its delimiter, or anything else (a read to the end, a custom construct).
* A retry is *triggered* only by new bytes that could change the outcome of the failed
  attempt: the count reached; the terminator, at a unit boundary, among the new bytes; the
  delimiter among them, or the line past its limit; for anything else, any byte. A
  triggered retry runs at once, so a frame whose last byte arrived is delivered by the
  ``feed`` that brought it.
* Triggered retries are limited per frame to a few more than the grammar has parts (each
  one moves a loop-free grammar past a part, so those never run out); beyond that, and
  for growth that triggers nothing, the frame is retried when its pending bytes have
  doubled since the last attempt. Each attempt costs about the bytes it spans, so the
  work per frame is at most (parts + 2) times its length: linear under any chunking.
* A grammar that loops over counted parts (``Array``, ``GreedyRange``, ``RepeatUntil``)
  and is dribbled in reads smaller than its items can use up its retries; its frame then
  waits for the doubling, :meth:`~statewire.framing.Framer.eof` or ``feed(b"")``, which
  both retry whatever was held back. Linear time is what the framer guarantees.

``max_length`` bounds the bytes one frame may span: every attempt sees at most that many
bytes, and an attempt that asks for more is refused with ``FrameTooLong`` at the frame's
start plus ``max_length``. Frames and errors therefore do not depend on how the bytes were
cut into reads.
"""

from __future__ import annotations

import operator
import sys
from types import FrameType
from typing import Any, SupportsIndex

from construct import Construct, ConstructError, NullTerminated, StreamError, VarInt, ZigZag
from construct.core import stream_read

from grammars import GrammarError, Line, TruncatedError
from statewire.framing._decoder import Decoder
from statewire.framing.errors import FrameTooLong, FramingError, MalformedFrame

# the code objects that tell the reader who asked for bytes that are not there yet
_COUNTED_READ = stream_read.__code__
_SCAN_READ = NullTerminated._parse.__code__
_LINE_READ = Line._parse.__code__

# kinds of short read: what new bytes could change the outcome of the failed attempt
_COUNT = 0  # (kind, end): the bytes up to ``end``
_SCAN = 1  # (kind, position, terminator): the terminator at ``position`` + k * len(term)
_LINE = 2  # (kind, start, delimiter, limit): the delimiter, or more than start + limit
_ANY = 3  # (kind,): any byte

#: triggered retries allowed per frame beyond the grammar's number of parts
_SPARE_RETRIES = 4


def _satisfied_at(short: tuple[Any, ...]) -> int:
    """The fewest bytes of the frame with which a short read could be satisfied."""
    kind = short[0]
    if kind == _COUNT:
        end: int = short[1]
        return end
    if kind == _SCAN:
        return int(short[1]) + len(short[2])
    return 0  # a line or an unknown read: the next byte


#: this module's globals, which its own frames have
_GLOBALS = globals()


class _Reader:
    """A read-only stream over ``data[:end]`` that notes each read running past ``end``."""

    __slots__ = ("data", "end", "position", "short")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)
        self.position = 0
        self.short: list[tuple[Any, ...]] = []

    def read(self, size: SupportsIndex | None = -1) -> bytes:
        start = self.position
        end = self.end
        count = -1 if size is None else operator.index(size)  # (a NumPy integer too)
        if count < 0:
            chunk = self.data[start:end]
            self.short.append((_ANY,))
        else:
            chunk = self.data[start : min(start + count, end)]
            if start + count > end:
                self._note(start, count, chunk)
        self.position = start + len(chunk)
        return chunk

    def _note(self, start: int, size: int, chunk: bytes) -> None:
        """Note a short read and what would satisfy it. Looking at the caller's frame is
        slow, but a short read happens about once per failed attempt; reads that are
        satisfied, the hot path, never come here."""
        # the reader's caller: the first frame not of this module (compiled by mypyc, its
        # functions have no frame, and the caller's is the first)
        caller: FrameType | None = sys._getframe()
        while caller is not None and caller.f_globals is _GLOBALS:
            caller = caller.f_back
        if caller is None:  # pragma: no cover - a read always has a caller
            self.short.append((_ANY,))
            return
        code = caller.f_code
        if code is _COUNTED_READ:
            scanner = caller.f_back
            if scanner is not None and scanner.f_code is _SCAN_READ:
                self.short.append((_SCAN, start, scanner.f_locals["self"].term))
            else:
                self.short.append((_COUNT, start + size))
        elif code is _LINE_READ:
            grammar: Line = caller.f_locals["self"]
            # a window holding the delimiter gives the same line whatever follows it
            if chunk.find(grammar.delimiter) < 0:
                self.short.append((_LINE, start, grammar.delimiter, grammar.max_length))
        else:
            self.short.append((_ANY,))

    def tell(self) -> int:
        return self.position

    def seek(self, offset: SupportsIndex, whence: SupportsIndex = 0) -> int:
        base = (0, self.position, self.end)[operator.index(whence)]
        self.position = max(base + operator.index(offset), 0)
        return self.position


#: constructs that make one short read per byte they take, up to this many bytes
_BYTEWISE = {id(VarInt): 10, id(ZigZag): 10}


def count_parts(grammar: Any, path: frozenset[int] = frozenset()) -> int:
    """How many short reads parsing ``grammar`` may run into: one per construct it is
    made of, counted at each place it is used (``Sequence(Int32ub, Int32ub)`` has two),
    ten for a ``VarInt`` (a read per byte); a construct inside itself counts once."""
    if not isinstance(grammar, Construct) or id(grammar) in path:
        return 0
    bytewise = _BYTEWISE.get(id(grammar))
    if bytewise is not None:
        return bytewise
    path = path | {id(grammar)}
    children: list[Any] = []
    for name in ("subcon", "thensubcon", "elsesubcon", "default"):
        children.append(getattr(grammar, name, None))
    children.extend(getattr(grammar, "subcons", None) or ())
    cases = getattr(grammar, "cases", None)
    if isinstance(cases, dict):
        children.extend(cases.values())
    return 1 + sum(count_parts(child, path) for child in children)


class GenericDecoder(Decoder):
    """Frames of any construct grammar (see the module documentation)."""

    __slots__ = (
        "_checked",
        "_ends",
        "_forced",
        "_resumed",
        "_retries",
        "_short",
        "_tried",
        "context",
        "max_length",
        "parts",
    )

    def __init__(self, grammar: Any, base: int, context: dict[str, Any], max_length: int):
        self.context = context
        self.max_length = max_length
        #: triggered retries a frame may have: counted when a frame first waits
        self.parts = 0
        self._ends: list[int] = []
        super().__init__(grammar, base)

    def _reset(self) -> None:
        #: what the last failed attempt read short (see _Reader), in frame positions
        self._short: list[tuple[Any, ...]] = []
        #: pending bytes at the last attempt, and up to where new ones were looked at
        self._tried = 0
        self._checked = 0
        #: triggered retries the pending frame has left
        self._retries = 0
        self._forced = False
        self._resumed = False

    def retry(self) -> bool:
        if not self.pending or self._tried >= len(self.pending):
            return False
        self._forced = True
        return True

    def _completes(self, src: bytes, pos: int) -> bool:
        """Whether the new bytes ``src[pos:]`` call for another attempt (module docs)."""
        have = len(self.pending) + len(src) - pos
        if have < self.need and not self._forced:
            return False
        if self._forced or have >= 2 * self._tried or have >= self.max_length:
            self._forced = False
        elif self._retries > 0 and self._triggered(src, pos, have):
            self._retries -= 1
        else:
            self._checked = have
            return False
        self._resumed = True  # the next _cut starts with the pending frame
        return True

    def _triggered(self, src: bytes, pos: int, have: int) -> bool:
        """Whether bytes from ``_checked`` to ``have`` satisfy a short read of the attempt."""
        pending = self.pending
        checked = self._checked
        for short in self._short:
            kind = short[0]
            if kind == _COUNT:
                if have >= short[1]:
                    return True
            elif kind == _SCAN:
                _, start, term = short
                unit = len(term)
                if unit == 1:  # the common case (CString): no alignment, no carry-over
                    if src.find(term, pos) >= 0:
                        return True
                    continue
                # units wholly before ``checked`` were seen (and were not the terminator)
                first = max(start, start + (checked - start) // unit * unit)
                window = bytes(pending[first:]) + src[pos:]
                hit = window.find(term)
                while hit >= 0:
                    if hit % unit == 0:
                        return True
                    hit = window.find(term, hit + 1)
            elif kind == _LINE:
                _, start, delimiter, limit = short
                if have - start > limit or src.find(delimiter, pos) >= 0:
                    return True
                # a delimiter may begin in the bytes seen before
                carry = len(delimiter) - 1
                first = max(start, checked - carry)
                if (
                    carry
                    and (bytes(pending[first:]) + src[pos : pos + carry]).find(delimiter) >= 0
                ):
                    return True
            else:
                return True
        return False

    def _cut(self, src: bytes, pos: int, limit: int) -> list[Any]:
        resumed, self._resumed = self._resumed, False
        reader = _Reader(src)
        frames: list[Any] = []
        ends: list[int] = []
        self._ends = ends
        position = pos
        n = len(src)
        max_length = self.max_length
        while position < n:
            if len(frames) >= limit:
                self._stop(position)
                return frames
            reader.seek(position)
            # an attempt never sees past the limit, so what it makes of the bytes cannot
            # depend on whether more of them had arrived
            reader.end = min(n, position + max_length)
            reader.short.clear()
            try:
                frame = self.grammar.parse_stream(reader, **self.context)
            except TruncatedError as error:
                # (a grammar of one's own may say None: how far is not known)
                needed = getattr(error, "needed", None)
                needed = needed if type(needed) is int else 0
                self._wait(src, position, reader, needed, bool(frames) or not resumed)
                return frames
            except StreamError:
                self._wait(src, position, reader, 0, bool(frames) or not resumed)
                return frames
            except GrammarError as error:
                bad = FramingError.from_grammar(error, self._src_base, self.grammar)
                self._fail(position, bad)
                return frames
            except Exception as error:
                # construct's own errors, and whatever else a grammar raises on bytes the
                # peer chose (a huge VarInt length put in a message...): the peer's fault
                text = str(error).replace("\n", ": ")
                if not isinstance(error, ConstructError):
                    text = f"{type(error).__name__}: {text[:200]}"
                malformed = MalformedFrame(
                    text, offset=self._src_base + reader.position, grammar=self.grammar
                )
                self._fail(position, malformed)
                return frames
            if reader.position == position:
                if not reader.short:  # it never even looked: no bytes make it a frame
                    raise ValueError(f"grammar {self.grammar!r} parsed a frame of no bytes")
                # it looked and found too few (a GreedyRange on a partial item): a frame
                # takes at least a byte, so wait for more, as on a short read
                self._wait(src, position, reader, position + 1, bool(frames) or not resumed)
                return frames
            frames.append(frame)
            position = reader.position
            ends.append(position)
        self._keep(src, position)
        return frames

    def _wait(self, src: bytes, start: int, reader: _Reader, needed: int, fresh: bool) -> None:
        """Pend ``src[start:]``, an unfinished frame, noting what could finish it (or
        refuse it, if it needs more than ``max_length`` bytes). ``needed`` is the end a
        grammar's ``TruncatedError`` gave, 0 for construct's ``StreamError``; ``fresh``:
        the frame is not the one pending before this batch."""
        have = len(src) - start
        notes = reader.short
        short: list[tuple[Any, ...]] = []
        if needed and not (notes and notes[-1][0] == _LINE):
            # one of the grammars of ``grammars`` said how far it must see: trust it
            short.append((_COUNT, needed - start))
        else:
            # construct's reads; those an Optional or a GreedyRange swallowed count too
            for note in notes:
                kind = note[0]
                # frame positions, so the notes survive the bytes moving into ``pending``
                if kind == _COUNT:
                    short.append((_COUNT, note[1] - start))
                elif kind == _SCAN:
                    short.append((_SCAN, note[1] - start, note[2]))
                elif kind == _LINE:
                    short.append((_LINE, note[1] - start, note[2], note[3]))
                else:
                    short.append(note)
            if not short:
                short.append((_ANY,))
        need = min(map(_satisfied_at, short))
        need = max(need, have + 1)
        if need > self.max_length:
            too_long = FrameTooLong(
                f"frame needs more than max_length {self.max_length} bytes",
                offset=self._src_base + start + self.max_length,
                grammar=self.grammar,
                limit=self.max_length,
            )
            self._fail(start, too_long)
            return
        if fresh:  # a new frame: a new allowance
            if not self.parts:
                self.parts = count_parts(self.grammar) + _SPARE_RETRIES
            self._retries = self.parts
        self._keep(src, start, need)
        self._short = short
        self._tried = self._checked = have

    def _position_after(self, delivered: int) -> int:
        return self._ends[delivered - 1] if delivered else self._start
