"""Hypothesis strategies derived from framing grammars, and arbitrary chunkings.

``from_grammar(g)`` generates values ``g`` can build (and so parse back); ``encoded(g)`` the
wire bytes of such values; ``chunkings(data)`` every way of cutting bytes into reads. Limits
matter most at their edges, so the value strategies produce values of exactly
``max_length`` bytes now and then, besides small ones.

Only the framings of :mod:`grammars` are derived so far; any other construct grammar raises
:class:`UnsupportedGrammar` naming its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from construct import Container
from hypothesis import strategies as st

from grammars import Fixed, LengthPrefixed, Line, Netstring, Raw

#: Largest "small" value generated; values of exactly ``max_length`` come on top.
SMALL = 64
#: Values of exactly ``max_length`` bytes are generated only below this size.
EDGE_LIMIT = 1 << 16


class UnsupportedGrammar(TypeError):
    """No strategy can be derived for this construct type (yet)."""


def _sized(smallest: int, largest: int) -> st.SearchStrategy[bytes]:
    """Bytes of ``smallest`` to ``largest`` bytes: mostly short, sometimes the largest."""
    small = st.binary(min_size=smallest, max_size=max(smallest, min(largest, SMALL)))
    if largest > SMALL and largest <= EDGE_LIMIT:
        return st.one_of(small, st.binary(min_size=largest, max_size=largest))
    return small


def _line_values(grammar: Line) -> st.SearchStrategy[bytes]:
    delimiter = grammar.delimiter

    def buildable(value: bytes) -> bool:
        return (value + delimiter).find(delimiter) == len(value)

    return _sized(0, grammar.max_length).map(lambda v: v.replace(delimiter, b"")).filter(buildable)


def _prefixed_values(grammar: LengthPrefixed) -> st.SearchStrategy[bytes]:
    smallest = max(0, grammar.adjust)
    largest = min(grammar.max_length, (1 << (8 * grammar.width)) - 1 + grammar.adjust)
    header = st.binary(min_size=grammar.length_offset, max_size=grammar.length_offset)
    return st.builds(bytes.__add__, header, _sized(smallest, largest))


def from_grammar(grammar: Any, context: Mapping[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """A strategy of values that ``grammar`` builds and parses back unchanged.

    ``context`` is the construct context, needed for ``fixed(this.size)``.
    """
    kind = type(grammar)
    if kind is Line:
        return _line_values(grammar)
    if kind is Netstring:
        return _sized(0, grammar.max_length)
    if kind is LengthPrefixed:
        return _prefixed_values(grammar)
    if kind is Fixed:
        size = grammar.size_in(Container(context or {}))
        return st.binary(min_size=size, max_size=size)
    if kind is Raw:
        return st.binary(min_size=1, max_size=4 * SMALL)
    raise UnsupportedGrammar(
        f"no strategy for {kind.__module__}.{kind.__qualname__} yet; "
        "from_grammar supports line, netstring, prefixed, fixed and raw"
    )


def encoded(grammar: Any, context: Mapping[str, Any] | None = None) -> st.SearchStrategy[bytes]:
    """The wire bytes of one value of ``grammar``."""
    return from_grammar(grammar, context).map(lambda v: grammar.build(v, **(context or {})))


def chunkings(data: bytes, *, max_chunks: int | None = None) -> st.SearchStrategy[list[bytes]]:
    """Every way of cutting ``data`` into consecutive reads, empty reads included.

    ``b"".join(chunks) == data`` always holds; the shrinker tends towards one whole read.
    """
    limit = max_chunks if max_chunks is not None else max(len(data), 1) + 2
    cuts = st.lists(st.integers(0, len(data)), max_size=limit - 1)

    def cut(points: list[int]) -> list[bytes]:
        bounds = [0, *sorted(points), len(data)]
        return [data[a:b] for a, b in pairwise(bounds)]

    return cuts.map(cut)


def chunked(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """``chunkings`` of ``data`` biased to the extremes: one read, 1-byte reads, random."""
    return st.one_of(
        st.just([data]),
        st.just([data[i : i + 1] for i in range(len(data))]),
        chunkings(data),
    )
