"""Redis glob patterns (``PSUBSCRIBE``, ``KEYS``), matched as Redis matches them.

:class:`Glob` is re-exported by :mod:`statewire.protocols.resp`.
"""

from __future__ import annotations

#: a glob's token for one byte is the set of bytes it takes, as a 256-bit mask (small
#: whatever the set: a pattern costs memory in proportion to its length); this one is ``?``
_ANY = (1 << 256) - 1
#: how many ``*`` a match may pass through before Redis gives up (its nesting limit)
_MAX_STARS = 1000


class Glob:
    """A Redis glob pattern (``PSUBSCRIBE``, ``KEYS``) read as Redis's ``stringmatchlen``
    reads it: ``*`` any run of bytes, ``?`` one byte, ``[abc]`` ``[^abc]`` ``[a-z]`` a set
    (a range's ends in either order, compared as C's signed ``char``; ``\\`` escapes
    inside), ``\\x`` the byte ``x``, anything else itself; case matters.

    Its quirks are kept, since a client sees them: an unclosed ``[`` is a set that ends
    with the pattern (``[`` alone matches nothing), ``[a-]`` is the range from ``a`` to
    ``]``, a trailing ``\\`` is itself, the empty string matches only the empty pattern
    (``*`` included), and a pattern whose match must pass more than 1000 ``*`` matches
    nothing. A match costs at most the subject's length times the pattern's, never more
    (Redis's own backtracking needed a guard against patterns built to blow it up).
    """

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        #: one byte mask per byte to match; ``None`` for a run of ``*``
        self._tokens = _glob_tokens(pattern)
        # (a final ``*`` ends a match without passing it on: it does not count)
        inner_stars = sum(token is None for token in self._tokens[:-1])
        self._hopeless = inner_stars > _MAX_STARS

    def match(self, subject: bytes) -> bool:
        """Whether ``subject`` matches the pattern."""
        tokens = self._tokens
        if not subject:
            return not tokens
        if self._hopeless:
            return False
        # one pass, going back only to the last ``*`` seen: every other token takes
        # exactly one byte, so trying the last star's next position is enough
        t = s = 0
        star, resume = -1, 0
        while s < len(subject):
            token = tokens[t] if t < len(tokens) else _END
            if token is None:
                star, resume = t, s
                t += 1
            elif token >> subject[s] & 1:
                t += 1
                s += 1
            elif star >= 0:
                resume += 1
                t, s = star + 1, resume
            else:
                return False
        return all(token is None for token in tokens[t:])

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


_END = 0  # past the pattern's end: no byte


def _glob_tokens(pattern: bytes) -> list[int | None]:
    tokens: list[int | None] = []
    i, n = 0, len(pattern)
    while i < n:
        byte = pattern[i]
        if byte == 0x2A:  # *: runs of them are one
            if not tokens or tokens[-1] is not None:
                tokens.append(None)
            i += 1
        elif byte == 0x3F:  # ?
            tokens.append(_ANY)
            i += 1
        elif byte == 0x5B:  # [
            members, i = _glob_set(pattern, i + 1)
            tokens.append(members)
        elif byte == 0x5C and i + 1 < n:  # \x
            tokens.append(1 << pattern[i + 1])
            i += 2
        else:
            tokens.append(1 << byte)
            i += 1
    return tokens


def _glob_set(pattern: bytes, i: int) -> tuple[int, int]:
    """The mask of the set that starts at ``i`` (after its ``[``), and where it ends."""
    n = len(pattern)
    negated = i < n and pattern[i] == 0x5E  # ^
    i += negated
    members = 0
    while i < n:
        byte = pattern[i]
        if byte == 0x5C and n - i >= 2:  # \x
            members |= 1 << pattern[i + 1]
            i += 2
        elif byte == 0x5D:  # ]
            i += 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # a-z (or z-a)
            members |= _range(byte, pattern[i + 2])
            i += 3
        else:
            members |= 1 << byte
            i += 1
    return (_ANY ^ members if negated else members), i


def _range(start: int, end: int) -> int:
    """The mask of the bytes from ``start`` to ``end`` (either order) compared as C's
    ``char``, which is signed on the machines Redis is built for: ``[\\x7f-\\x80]`` takes
    every byte, ``[\\x01-\\x80]`` those from ``\\x80`` to ``\\xff``, ``\\x00`` and ``\\x01``."""
    low, high = sorted((start - 256 if start > 127 else start, end - 256 if end > 127 else end))
    if low >= 0 or high < 0:  # one side of zero: a run of unsigned bytes
        return _run(low & 255, high & 255)
    return _run(0, high) | _run(low & 255, 255)  # across zero: both ends of the bytes


def _run(first: int, last: int) -> int:
    """The mask of the bytes ``first`` to ``last``."""
    return ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)
