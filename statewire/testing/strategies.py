"""Hypothesis strategies derived from grammars, and arbitrary chunkings.

``from_grammar(g)`` generates values that ``g`` builds and parses back to an equal value;
``encoded(g)`` the wire bytes of such values; ``chunkings(data)`` every way of cutting bytes
into reads. One-line properties built on them are in :mod:`statewire.testing.properties`.

What can be derived
-------------------
* The framings of :mod:`grammars` (line, netstring, prefixed, fixed, raw). Limits matter
  most at their edges, so their values are of exactly ``max_length`` bytes now and then,
  besides small ones.
* construct's integers of every width and byte order (``FormatField``: ``Int8ub`` ..
  ``Int64sl``, ``Byte``, ``Short`` ...; ``BytesInteger``, ``BitsInteger``, ``VarInt``,
  ``ZigZag``), ``Flag``, and finite floats that survive packing (``Float16/32/64``).
* ``Bytes(n)`` (``n`` an int or a function of the context), ``GreedyBytes``, and the
  strings ``PascalString``, ``CString``, ``PaddedString``, ``GreedyString`` in any encoding:
  text the encoding round-trips, with no NUL in a ``CString``, no trailing NUL in a
  ``PaddedString`` (parsing strips it with the padding), and fitting the length field or
  the size.
* ``Enum`` (its names, as the ``EnumIntegerString`` parsing returns, and unnamed integers),
  ``FlagsEnum`` (a ``Container`` of booleans, consistent for overlapping flags),
  ``Mapping``, ``OneOf`` (its valid values), ``Const`` (its value), ``Computed`` and
  ``Index`` (what they compute), ``Pass`` (``None``), ``Default``, ``Check``,
  ``Terminated``.
* ``Struct`` (a ``Container``; construct's equality ignores the ``_io`` key parsing adds),
  ``Sequence`` (a list), ``FocusedSeq``, ``Array``, ``GreedyRange``, ``PrefixedArray``,
  ``Prefixed``, ``FixedSized``, ``NullTerminated``, ``NullStripped``, ``Padded``,
  ``Padding``, ``Aligned``, ``Optional``, ``Select`` (values of its first alternative only:
  whether a later one's bytes are refused by the earlier ones, only parsing can tell),
  ``If``/``IfThenElse``, ``Switch``, ``StopIf``, ``Renamed``, ``Rebuild``, ``Checksum``,
  ``Transformed`` and ``Restreamed`` (so ``Bitwise``, ``BitStruct``, ``Bytewise``,
  ``ByteSwapped``), ``ProcessXor``, ``ProcessRotateLeft``, any ``Tunnel`` (``Compressed``),
  ``LazyBound``, ``NamedTuple``, and any other ``Adapter`` (``Hex``, ``ExprAdapter``,
  validators, your own): its values are its ``_decode`` of its subcon's values, so an
  encoder that does not invert the decoder fails the round trip, as it should.

Sizes stay small: free lengths are at most :data:`SMALL` bytes or characters, free counts
at most :data:`COUNT` elements; a fixed size (``Bytes(300)``, ``Array(100, ...)``) is
honoured whatever it is.

How values are made
-------------------
Values are drawn in stream order against a context shaped like the one construct parses
with, so ``Bytes(this.length)``, ``Switch(this.type, ...)``, ``If(this.flag, ...)`` and
``Computed(this.a * 2)`` see the fields drawn before them (and ``this._``, ``this._params``,
``this._index`` work). A field that a later size or count depends on (found by calling the
later fields' expressions on a stand-in context that records what they look up) is kept
small enough to size something; a field a ``Switch`` selects on (``this.<field>``) is
mostly one of the ``Switch``'s keys, so every case is reached.

Computed fields take the value parsing gives them. ``Computed`` and ``Checksum`` are
evaluated on the fields drawn before them: a checksum is computed from the data just drawn,
which is what building writes and parsing reads back. A ``Rebuild`` is evaluated where it
stands if it needs only earlier fields, else once the later ones are drawn (as building
does); if a later field depends on it (``PrefixedArray``'s count,
``Rebuild(Int8ub, len_(this.data))`` then ``Bytes(this.length)``) it is drawn first and
the example is kept only when the rebuilt value agrees.

Greedy constructs (``GreedyBytes``, ``GreedyRange``, ``Tunnel`` ...) round-trip only at the
end of their stream, and an ``Optional`` is absent only there; padding, terminators and
length fields limit what fits in them. The byte and text strategies aim inside those
limits, and the rare values that still miss are discarded (``assume``); inside ``Bitwise``
a variable number of bits must make whole bytes, which is found by drawing again.

Anything else raises :class:`UnsupportedGrammar` naming the construct type and the path to
it (``"no strategy for construct.core.RepeatUntil at header.items"``; ``items[]`` is an
element of ``items``, ``[2]`` an unnamed field): ``RepeatUntil`` (its predicate decides
where the list ends), ``Union``, ``RawCopy``, ``Pointer``, ``Peek``, ``Seek``, ``Tell``,
``OffsettedEnd`` (their values depend on stream positions or overlap), the ``Lazy*`` types
(they parse into functions), ``Pickled``, ``Numpy``, ``Error``, a value-needing field that is
built from None (anonymous), and greedy constructs where nothing round-trips (followed by
more bytes, or by a ``FixedSized``'s padding).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from construct import Container
from hypothesis import strategies as st

from grammars import Fixed, LengthPrefixed, Line, Netstring, Raw
from statewire.testing._construct import (
    _ANY_ROOM,
    COUNT,
    EDGE_LIMIT,
    SMALL,
    UnsupportedGrammar,
    _derive,
    _line_values,
    _Place,
    _prefixed_values,
    _root_context,
    _sized,
)

__all__ = [
    "COUNT",
    "EDGE_LIMIT",
    "SMALL",
    "UnsupportedGrammar",
    "chunked",
    "chunkings",
    "encoded",
    "from_grammar",
]


# -- the public strategies -----------------------------------------------------------------


def from_grammar(grammar: Any, context: Mapping[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """A strategy of values that ``grammar`` builds and parses back to an equal value.

    ``grammar`` is a framing of :mod:`grammars` or a construct grammar made of the types
    the module documentation lists. ``context`` is the construct context the grammar is
    built and parsed with (``grammar.build(value, **context)``), e.g. for
    ``fixed(this.size)`` or ``Bytes(this._params.n)``.

    :raises UnsupportedGrammar: naming the first construct type no strategy can be derived
        for, and where it is in ``grammar``.
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
    gen = _derive(grammar, _Place())
    params = dict(context or {})

    @st.composite
    def values(draw: st.DrawFn) -> Any:
        return gen(draw, _root_context(params), _ANY_ROOM)

    return values()


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
