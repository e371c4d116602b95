"""How :func:`statewire.testing.strategies.from_grammar` derives values from construct
grammars (the module documentation of :mod:`statewire.testing.strategies` says what is
supported and how); the framings' own value strategies are here too."""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

import construct.core as cc
from construct import Container
from construct.lib import bits2bytes, bytes2bits
from hypothesis import assume
from hypothesis import strategies as st

from grammars import Fixed, Framing, LengthPrefixed, Line, Netstring, Raw

#: Largest "small" value generated (bytes, text); values of exactly ``max_length`` come on
#: top for the framings, and fixed sizes (``Bytes(100)``) are honoured whatever they are.
SMALL = 64
#: Values of exactly ``max_length`` bytes are generated only below this size.
EDGE_LIMIT = 1 << 16
#: Most elements of a repetition whose length is free (``GreedyRange``, a count field).
COUNT = 16


class UnsupportedGrammar(TypeError):
    """No strategy can be derived for this construct type (yet)."""


# -- the framings --------------------------------------------------------------------------


def _sized(smallest: int, largest: int) -> st.SearchStrategy[bytes]:
    """Bytes of ``smallest`` to ``largest`` bytes: mostly short, sometimes the largest."""
    small = st.binary(min_size=smallest, max_size=max(smallest, min(largest, SMALL)))
    if largest > SMALL and largest <= EDGE_LIMIT:
        return st.one_of(small, st.binary(min_size=largest, max_size=largest))
    return small


def _line_values(grammar: Line, largest: int | None = None) -> st.SearchStrategy[bytes]:
    delimiter = grammar.delimiter

    def buildable(value: bytes) -> bool:
        return (value + delimiter).find(delimiter) == len(value)

    most = grammar.max_length if largest is None else min(largest, grammar.max_length)
    return _sized(0, most).map(lambda v: v.replace(delimiter, b"")).filter(buildable)


def _prefixed_values(
    grammar: LengthPrefixed, largest: int | None = None
) -> st.SearchStrategy[bytes]:
    smallest = max(0, grammar.adjust)
    most = min(grammar.max_length, (1 << (8 * grammar.width)) - 1 + grammar.adjust)
    if largest is not None:
        most = max(smallest, min(most, largest))
    header = st.binary(min_size=grammar.length_offset, max_size=grammar.length_offset)
    return st.builds(bytes.__add__, header, _sized(smallest, most))


# -- deriving strategies from construct grammars -------------------------------------------
#
# A grammar is turned once into a tree of "gens": functions ``gen(draw, context, room)``
# returning one value. ``context`` is the construct context as parsing would see it at that
# point (earlier fields included); ``room`` carries what the bytes of the value must look
# like, as far as the constructs around it say (a size limit, an exact size, a terminator
# that may not occur, a padding byte they may not end with, a text encoding): the byte
# leaves honour it, and the construct that set it checks the bytes in the end.


@dataclass(frozen=True)
class _Room:
    """Constraints on the bytes of a value, from the constructs around it."""

    most: int | None = None  # bytes it may take at most
    exact: int | None = None  # a greedy value takes exactly this many bytes
    term: bytes | None = None  # a unit that may not occur (at unit boundaries)
    pad: bytes | None = None  # a unit the bytes may not end with
    encoding: str | None = None  # the bytes are text in this encoding


_ANY_ROOM = _Room()

Gen = Callable[[st.DrawFn, Any, _Room], Any]


@dataclass(frozen=True)
class _Place:
    """Where a construct is in the grammar: what a strategy for it must respect."""

    path: str = ""
    #: nothing after it reads from its stream (greedy constructs need that)
    tail: bool = True
    #: zero padding (a FixedSized's) follows the end of its stream
    padded: bool = False
    #: it is all a FixedSized holds: a greedy value fills it exactly
    fill: bool = False
    #: inside Bitwise: every byte of the stream is one bit
    bitwise: bool = False
    #: built from None (an anonymous Struct field, a FocusedSeq field not focused on)
    from_none: bool = False
    #: a later size or count depends on it: integers at most this
    cap: int | None = None

    def inner(self, part: str = "", *, tail: bool = True, fill: bool = False) -> _Place:
        """The place of a construct inside this one, reading a stream of its own."""
        return _Place(
            path=_join(self.path, part),
            tail=tail,
            fill=fill,
            bitwise=self.bitwise,
            from_none=self.from_none,
        )


def _join(path: str, part: str) -> str:
    """``header`` + ``items`` is ``header.items``; ``items`` + ``[]`` is ``items[]``."""
    if not part:
        return path
    return f"{path}.{part}" if path and not part.startswith("[") else path + part


def _unsupported(con: Any, place: _Place, reason: str = "") -> UnsupportedGrammar:
    kind = type(con)
    where = place.path or "the top of the grammar"
    message = f"no strategy for {kind.__module__}.{kind.__qualname__} at {where}"
    return UnsupportedGrammar(f"{message}: {reason}" if reason else message)


def _eval(param: Any, context: Any) -> Any:
    return param(context) if callable(param) else param


def _root_context(params: Mapping[str, Any]) -> Any:
    """The context ``grammar.parse(data, **params)`` starts with."""
    context = Container(params)
    context._parsing = True
    context._building = False
    context._sizing = False
    context._params = context
    return context


def _nested(parent: Any, subcons: Any) -> Any:
    """The context a Struct (Sequence, FocusedSeq) gives its fields, as when parsing."""
    context = Container(
        _=parent,
        _params=parent.get("_params"),
        _root=None,
        _parsing=True,
        _building=False,
        _sizing=False,
        _subcons=subcons,
        _io=None,
        _index=parent.get("_index"),
    )
    context._root = parent.get("_root", context)
    return context


def _encode(con: Any, value: Any, context: Any) -> bytes:
    """The bytes ``con`` builds for ``value`` at a place whose context is ``context``."""
    building = Container(context)
    building._parsing = False
    building._building = True
    stream = io.BytesIO()
    con._build(value, stream, building, "(from_grammar)")
    return stream.getvalue()


def _unwrap(con: Any) -> Any:
    while isinstance(con, cc.Renamed):
        con = con.subcon
    return con


_ZERO_WIDTH = (
    cc.Computed,
    cc.Check,
    cc.StopIf,
    type(cc.Pass),
    type(cc.Index),
    type(cc.Terminated),
)


def _zero_width(con: Any) -> bool:
    """Whether ``con`` certainly reads no bytes."""
    inner = _unwrap(con)
    if isinstance(inner, _ZERO_WIDTH):
        return True
    try:
        return bool(inner.sizeof() == 0)
    except Exception:
        return False


def _int_range(con: Any) -> tuple[int, int] | None:
    """The integers a fixed-width integer construct holds, if it is one."""
    con = _unwrap(con)
    if isinstance(con, cc.FormatField) and con.fmtstr[1] in "bBhHlLqQ":
        return _bounds(8 * con.length, con.fmtstr[1].islower())
    if isinstance(con, cc.BytesInteger) and isinstance(con.length, int):
        return _bounds(8 * con.length, con.signed)
    if isinstance(con, cc.BitsInteger) and isinstance(con.length, int):
        return _bounds(con.length, con.signed)
    return None


def _bounds(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@lru_cache(maxsize=512)
def _integers(lo: int, hi: int, cap: int | None) -> st.SearchStrategy[int]:
    if cap is not None and lo <= cap and hi >= 0:
        return st.integers(max(lo, 0), min(hi, cap))
    return st.integers(lo, hi)


@lru_cache(maxsize=512)
def _binary(lo: int, hi: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=lo, max_size=hi)


# -- bytes and text --------------------------------------------------------------------------


def _other_byte(unit: bytes) -> int:
    """A byte value that does not occur in ``unit``."""
    return next(b for b in range(1, 256) if b not in unit)


def _has_unit(data: bytes, unit: bytes) -> bool:
    """Whether ``unit`` occurs in ``data`` at a multiple of its length (how a
    NullTerminated looks for its terminator)."""
    size = len(unit)
    return any(data[i : i + size] == unit for i in range(0, len(data) - size + 1, size))


def _strips(data: bytes, pad: bytes) -> bool:
    """Whether a NullStripped with ``pad`` would take bytes off the end of ``data``."""
    size = len(pad)
    partial = len(data) % size
    if partial and data[-partial:] == pad[:partial]:
        return True
    return len(data) >= size and data[-size:] == pad


def _encode_text(text: str, encoding: str) -> bytes:
    return b"" if text == "" else text.encode(encoding)  # as construct's StringEncoded


@lru_cache(maxsize=64)
def _alphabet(encoding: str, no_nul: bool) -> st.SearchStrategy[str]:
    return st.characters(codec=encoding, exclude_characters="\x00" if no_nul else None)


def _draw_bytes(draw: st.DrawFn, room: _Room, lo: int, hi: int, bitwise: bool) -> bytes:
    """Between ``lo`` and ``hi`` bytes that respect ``room``."""
    assume(0 <= lo <= hi)
    if room.encoding is not None:
        return _draw_text_bytes(draw, room, room.encoding, lo, hi)
    data = draw(_binary(lo, hi))
    if bitwise:
        return bytes(b & 1 for b in data)
    if room.term:
        size = len(room.term)
        if lo < hi and len(data) % size:
            data = data[: len(data) - len(data) % size]
        out = bytearray(data)
        for i in range(0, len(out) - size + 1, size):
            if out[i : i + size] == room.term:
                out[i] = _other_byte(room.term)
        data = bytes(out)
    if room.pad and _strips(data, room.pad):
        data = data[:-1] + bytes([_other_byte(room.pad)])
    return data


def _draw_text_bytes(draw: st.DrawFn, room: _Room, encoding: str, lo: int, hi: int) -> bytes:
    """The encoding of a text, between ``lo`` and ``hi`` bytes, that respects ``room``."""
    text = draw(st.text(_alphabet(encoding, room.term is not None), max_size=hi))
    if room.pad is not None:
        text = text.rstrip("\x00")
    data = _encode_text(text, encoding)
    while len(data) > hi:
        text = text[:-1]
        data = _encode_text(text, encoding)
    while len(data) < lo:  # an exact size: fill with a character every encoding has
        text += "a"
        data = _encode_text(text, encoding)
    assume(lo <= len(data) <= hi)
    assume(data.decode(encoding) == text)
    if room.term:
        assume(len(data) % len(room.term) == 0 and not _has_unit(data, room.term))
    if room.pad:
        assume(not _strips(data, room.pad))
    return data


def _greedy(con: Any, place: _Place, *, fills: bool = False) -> None:
    """Refuse a construct that reads to the end of its stream where no value round-trips.

    ``fills``: it can take exactly the size of an enclosing FixedSized.
    """
    if not place.tail:
        raise _unsupported(con, place, "it reads to the end of the stream, and more follows")
    if place.padded or (place.fill and not fills):
        raise _unsupported(con, place, "it would read the zero padding of a FixedSized")


def _greedy_size(room: _Room) -> tuple[int, int]:
    if room.exact is not None:
        return room.exact, room.exact
    most = SMALL if room.most is None else min(room.most, SMALL)
    return 0, most


# -- the gens, construct by construct ------------------------------------------------------


def _derive(con: Any, place: _Place) -> Gen:
    """The gen of ``con`` at ``place``; raises UnsupportedGrammar."""
    if isinstance(con, cc.Renamed):
        return _derive(con.subcon, place)
    if place.from_none and not isinstance(con, _FROM_NONE):
        raise _unsupported(
            con,
            place,
            "it is built from None here (an anonymous field, or a FocusedSeq field not "
            "focused on) but needs a value",
        )
    for kinds, maker in _MAKERS:
        if isinstance(con, kinds):
            return maker(con, place)
    raise _unsupported(con, place, _REASONS.get(type(con), ""))


def _static(strategy: st.SearchStrategy[Any]) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        return draw(strategy)

    return gen


def _constant(value: Any) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        return value

    return gen


def _evaluated(param: Any) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        return _eval(param, context)

    return gen


# framings inside other constructs


def _framing(con: Any, place: _Place) -> Gen:
    if not isinstance(con, (Line, Netstring, LengthPrefixed, Fixed, Raw)):
        raise _unsupported(con, place, "only the framings line, netstring, prefixed, fixed, raw")
    if place.bitwise:
        raise _unsupported(con, place, "a framing reads bytes, not bits")
    if isinstance(con, Raw):
        _greedy(con, place)
        return _static(st.binary(min_size=1, max_size=4 * SMALL))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        if isinstance(con, Line):
            return draw(_line_values(con, room.most))
        if isinstance(con, Netstring):
            most = con.max_length if room.most is None else min(con.max_length, room.most)
            return draw(_sized(0, max(most, 0)))
        if isinstance(con, LengthPrefixed):
            return draw(_prefixed_values(con, room.most))
        size = con.size_in(context)
        return draw(_binary(size, size))

    return gen


# numbers


def _format_field(con: Any, place: _Place) -> Gen:
    if place.bitwise:
        raise _unsupported(con, place, "it reads whole bytes inside Bitwise (use Bytewise)")
    code = con.fmtstr[1]
    if code == "?":
        return _static(st.booleans())
    if code in "efd":
        widths: dict[str, Literal[16, 32, 64]] = {"e": 16, "f": 32, "d": 64}
        finite = st.floats(width=widths[code], allow_nan=False, allow_infinity=False)
        return _static(finite)
    lo, hi = _bounds(8 * con.length, code.islower())
    return _static(_integers(lo, hi, place.cap))


def _bytes_integer(con: Any, place: _Place) -> Gen:
    # BitsInteger reads one byte per bit, inside Bitwise (its place) or not
    unit = 1 if isinstance(con, cc.BitsInteger) else 8
    if place.bitwise and unit == 8:
        raise _unsupported(con, place, "it reads whole bytes inside Bitwise (use Bytewise)")

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        length = _eval(con.length, context)
        assume(isinstance(length, int) and length > 0)
        if unit == 1 and _eval(con.swapped, context):
            assume(length % 8 == 0)  # byte-swapped bits need whole bytes
        lo, hi = _bounds(unit * length, bool(con.signed))
        return draw(_integers(lo, hi, place.cap))

    return gen


def _varint(con: Any, place: _Place) -> Gen:
    if place.bitwise:
        raise _unsupported(con, place, "it reads whole bytes inside Bitwise (use Bytewise)")
    if isinstance(con, type(cc.ZigZag)):
        return _static(_integers(-(1 << 63), (1 << 63) - 1, place.cap))
    return _static(_integers(0, (1 << 64) - 1, place.cap))


# bytes and strings


def _bytes(con: Any, place: _Place) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        length = _eval(con.length, context)
        assume(isinstance(length, int) and length >= 0)
        return _draw_bytes(draw, room, length, length, place.bitwise)

    return gen


def _greedy_bytes(con: Any, place: _Place) -> Gen:
    _greedy(con, place, fills=True)
    if place.bitwise:
        raise _unsupported(con, place, "inside Bitwise the bits would have to fill whole bytes")

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        lo, hi = _greedy_size(room)
        return _draw_bytes(draw, room, lo, hi, False)

    return gen


def _string(con: Any, place: _Place) -> Gen:
    encoding = con.encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _unsupported(con, place, f"unknown encoding {encoding!r}") from None
    if place.bitwise:
        raise _unsupported(con, place, "text inside Bitwise")
    sub = _derive(con.subcon, place)

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        data = sub(draw, context, replace(room, encoding=encoding))
        assume(isinstance(data, bytes))
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            assume(False)
        assume(_encode_text(text, encoding) == data)
        return text

    return gen


# mappings


def _builds_back(con: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``con`` (with no context) builds ``value`` and parses it back equal; and the
    value as parsed."""
    try:
        parsed = con.parse(con.build(value))
    except Exception:
        return False, None
    return bool(parsed == value), parsed


def _enum(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, place)
    names = [name for name in con.decmapping.values() if _builds_back(con, name)[0]]

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        pick = draw(st.integers(0, len(names)))
        if pick < len(names):
            return names[pick]
        raw = sub(draw, context, room)
        try:
            if raw in con.decmapping:
                return con.decmapping[raw]
        except TypeError:  # unhashable
            assume(False)
        assume(isinstance(raw, int))  # parsing returns unnamed integers as they are
        return raw

    return gen


def _flags_enum(con: Any, place: _Place) -> Gen:
    span = _int_range(con.subcon)
    flags = [
        (name, value)
        for name, value in con.flags.items()
        if isinstance(value, int) and value >= 0 and (span is None or value <= span[1])
    ]
    if not flags:
        raise _unsupported(con, place, "no flag fits its subcon")
    chosen = st.lists(st.booleans(), min_size=len(flags), max_size=len(flags))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        number = 0
        for (_, value), on in zip(flags, draw(chosen), strict=True):
            if on:
                number |= value
        # a flag is set when all its bits are: overlapping flags follow the others
        return Container((name, number & value == value) for name, value in con.flags.items())

    return gen


def _mapping(con: Any, place: _Place) -> Gen:
    keys = []
    for key, raw in con.encmapping.items():
        try:
            if con.decmapping[raw] == key:
                keys.append(key)
        except (KeyError, TypeError):
            pass
    if not keys:
        raise _unsupported(con, place, "no value of its mapping parses back to itself")
    return _static(st.sampled_from(keys))


def _named_tuple(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, place)

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        value = sub(draw, context, room)
        try:
            if isinstance(value, dict):
                fields = {k: v for k, v in value.items() if not str(k).startswith("_")}
                return con.factory(**fields)
            return con.factory(*value)
        except TypeError:
            assume(False)

    return gen


def _valids(con: Any) -> list[Any] | None:
    """The values ``OneOf(subcon, valids)`` accepts (found in the closure of its
    validator), or None for another validator."""
    cells = getattr(con.__dict__.get("_validate"), "__closure__", None) or ()
    for cell in cells:
        code = getattr(cell.cell_contents, "__code__", None)
        if code is not None and "valids" in code.co_freevars:
            inner = cell.cell_contents.__closure__[code.co_freevars.index("valids")]
            try:
                return list(inner.cell_contents)
            except TypeError:
                return None
    return None


def _one_of(con: Any, place: _Place) -> Gen:
    valids = _valids(con)
    if valids is not None:
        fitting = [value for value in valids if _builds_back(con, value)[0]]
        if fitting:
            return _static(st.sampled_from(fitting))
    return _adapter(con, place)


def _adapter(con: Any, place: _Place) -> Gen:
    """Any other adapter: its values are its decodings of its subcon's values (so a
    decoder that the encoder does not invert fails the round trip, as it should)."""
    sub = _derive(con.subcon, place)

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        raw = sub(draw, context, room)
        try:
            return con._decode(raw, context, place.path)
        except Exception:  # a validator refusing it, a decoder undefined there
            assume(False)

    return gen


# fields with a value of their own


def _const(con: Any, place: _Place) -> Gen:
    return _constant(con.value)


def _computed(con: Any, place: _Place) -> Gen:
    return _evaluated(con.func)


def _index(con: Any, place: _Place) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        return context.get("_index")

    return gen


def _pass(con: Any, place: _Place) -> Gen:
    return _constant(None)


def _terminated(con: Any, place: _Place) -> Gen:
    _greedy(con, place)
    return _constant(None)


def _check(con: Any, place: _Place) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        assume(_eval(con.func, context))
        return None

    return gen


def _rebuild(con: Any, place: _Place) -> Gen:
    # inside a Struct, Sequence or FocusedSeq the members handle Rebuild (see _members)
    return _evaluated(con.func)


def _default(con: Any, place: _Place) -> Gen:
    if place.from_none:
        return _evaluated(con.value)
    return _derive(con.subcon, place)


def _checksum(con: Any, place: _Place) -> Gen:
    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        return con.hashfunc(_eval(con.bytesfunc, context))

    return gen


# structures


@dataclass
class _Member:
    name: str | None
    gen: Gen | None
    rebuild: Any = None  # the Rebuild construct, if the member is one
    stop: Any = None  # the StopIf construct, if the member is one
    driver: bool = False  # later members depend on it


_MISSING = object()


def _expressions(con: Any) -> list[tuple[str, Any, Any]]:
    """``(role, expression, owner)`` for the context expressions in ``con``'s tree. Role:
    ``size`` (a byte count), ``count`` (an element count), ``key`` (a Switch's key) or
    ``other``."""
    found: list[tuple[str, Any, Any]] = []
    seen: set[int] = set()
    stack = [con]
    while stack:
        node = stack.pop()
        if not isinstance(node, cc.Construct) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, (cc.Bytes, cc.BytesInteger, cc.BitsInteger, cc.FixedSized, cc.Padded)):
            found.append(("size", node.length, node))
        elif isinstance(node, Fixed):
            found.append(("size", node.size, node))
        elif isinstance(node, cc.Aligned):
            found.append(("size", node.modulus, node))
        elif isinstance(node, cc.Array):
            found.append(("count", node.count, node))
        elif isinstance(node, cc.Switch):
            found.append(("key", node.keyfunc, node))
        for attr in ("condfunc", "func", "bytesfunc", "padfunc", "amount", "group", "swapped"):
            expression = node.__dict__.get(attr)
            if callable(expression):
                found.append(("other", expression, node))
        if isinstance(node, cc.Default):
            found.append(("other", node.value, node))
        for attr in (
            "subcon",
            "lengthfield",
            "thensubcon",
            "elsesubcon",
            "checksumfield",
            "defersubcon",
        ):
            stack.append(node.__dict__.get(attr))
        if isinstance(node, cc.Switch):
            stack.extend(node.cases.values())
            stack.append(node.default)
        stack.extend(node.__dict__.get("subcons") or ())
    return found


class _Probe:
    """A stand-in context: records the names an expression looks up in it."""

    __slots__ = ("_probe_depth", "_probe_key", "_probe_seen")

    def __init__(self, seen: set[str], key: object = None, depth: int = 0) -> None:
        self._probe_seen = seen
        self._probe_key = key
        self._probe_depth = depth

    def __getitem__(self, key: object) -> _Probe:
        if isinstance(key, str):
            self._probe_seen.add(key)
        return _Probe(self._probe_seen, key, self._probe_depth + 1)

    def __getattr__(self, name: str) -> _Probe:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def get(self, key: object, default: object = None) -> _Probe:
        return self[key]

    def _derived(self, *args: object) -> _Probe:
        return _Probe(self._probe_seen, None, -1)

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _derived
    __floordiv__ = __rfloordiv__ = __truediv__ = __rtruediv__ = __mod__ = __rmod__ = _derived
    __pow__ = __rpow__ = __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = _derived
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _derived
    __neg__ = __pos__ = __abs__ = __invert__ = _derived
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _derived  # type: ignore[assignment]

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    __int__ = __index__

    def __float__(self) -> float:
        return 0.0

    def __iter__(self) -> Any:
        return iter(())


def _probe(expression: Any) -> tuple[set[str], Any]:
    """The names ``expression`` looks up in its context, and what it returned."""
    seen: set[str] = set()
    result: Any = None
    if callable(expression):
        with suppress(Exception):
            result = expression(_Probe(seen))
    return seen, result


def _refers_to(result: Any, name: str) -> bool:
    """Whether an expression returned ``this.<name>`` of the probe it was called on."""
    return isinstance(result, _Probe) and result._probe_depth == 1 and result._probe_key == name


def _keyed(gen: Gen, keys: list[Any]) -> Gen:
    """``gen``, but mostly one of ``keys`` (the cases of a Switch selecting on it)."""

    def keyed(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        pick = draw(st.integers(0, len(keys)))
        return keys[pick] if pick < len(keys) else gen(draw, context, room)

    return keyed


def _members(
    con: Any, place: _Place, *, anonymous_from_none: bool, focus: str | None = None
) -> list[_Member]:
    """The gens of a Struct's (Sequence's, FocusedSeq's) members, with what later members
    depend on kept small or aimed at the Switch cases."""
    subcons = list(con.subcons)
    expressions = [_expressions(sc) for sc in subcons]
    members = []
    for i, sc in enumerate(subcons):
        name = sc.name
        later = subcons[i + 1 :]
        tail = place.tail and all(_zero_width(x) for x in later)
        from_none = (
            place.from_none
            or (anonymous_from_none and not name)
            or (focus is not None and name != focus)
        )
        cap: int | None = None
        driver = False
        keys: list[Any] = []
        if name:
            for role, expression, owner in (e for found in expressions[i + 1 :] for e in found):
                seen, result = _probe(expression)
                if name not in seen:
                    continue
                driver = True
                if role == "size":
                    cap = SMALL if cap is None else min(cap, SMALL)
                elif role == "count":
                    cap = COUNT if cap is None else min(cap, COUNT)
                elif role == "key" and _refers_to(result, name):
                    keys.extend(owner.cases)
        child = _Place(
            path=_join(place.path, name or f"[{i}]"),
            tail=tail,
            padded=(place.padded or place.fill) and tail,
            bitwise=place.bitwise,
            from_none=from_none,
            cap=cap,
        )
        inner = _unwrap(sc)
        if isinstance(inner, cc.StopIf):
            if focus is not None:
                raise _unsupported(inner, child, "StopIf inside a FocusedSeq")
            members.append(_Member(name, None, stop=inner))
            continue
        if isinstance(inner, cc.Rebuild):
            tentative = _derive(inner.subcon, replace(child, from_none=False))
            members.append(_Member(name, tentative, rebuild=inner, driver=driver))
            continue
        gen = _derive(sc, child)
        if keys and not from_none:
            parsed = [_builds_back(sc, key) for key in keys]
            valid = [value for ok, value in parsed if ok]
            if valid:
                gen = _keyed(gen, valid)
        members.append(_Member(name, gen, driver=driver))
    return members


def _draw_members(
    draw: st.DrawFn, members: list[_Member], context: Any, *, can_stop: bool = True
) -> list[Any]:
    """Draw the members in order into ``context``; return the values of all, in order (a
    StopIf that holds ends them, where it ``can_stop``)."""
    values: list[Any] = []
    pending: list[tuple[int, _Member, Any]] = []
    for member in members:
        if member.stop is not None:
            if _eval(member.stop.condfunc, context):
                # a Sequence stopped early parses into fewer values than it builds from
                assume(can_stop)
                break
            value = None
        elif member.rebuild is not None:
            try:  # from fields before it: known now
                value = _eval(member.rebuild.func, context)
            except (KeyError, AttributeError):  # from fields after it: known at the end
                value = _MISSING
            if value is _MISSING:
                assert member.gen is not None
                value = member.gen(draw, context, _ANY_ROOM) if member.driver else None
                pending.append((len(values), member, value if member.driver else _MISSING))
        else:
            assert member.gen is not None
            value = member.gen(draw, context, _ANY_ROOM)
        if member.name:
            context[member.name] = value
        values.append(value)
    for position, member, tentative in pending:
        final = _eval(member.rebuild.func, context)  # as building computes it
        if tentative is not _MISSING:
            assume(final == tentative)
        elif member.name:
            context[member.name] = final
        values[position] = final
    return values


def _struct(con: Any, place: _Place) -> Gen:
    members = _members(con, place, anonymous_from_none=True)

    def gen(draw: st.DrawFn, parent: Any, room: _Room) -> Any:
        context = _nested(parent, con._subcons)
        _draw_members(draw, members, context)
        return Container(
            (m.name, context[m.name]) for m in members if m.name and m.name in context
        )

    return gen


def _sequence(con: Any, place: _Place) -> Gen:
    members = _members(con, place, anonymous_from_none=False)

    def gen(draw: st.DrawFn, parent: Any, room: _Room) -> Any:
        context = _nested(parent, con._subcons)
        return _draw_members(draw, members, context, can_stop=False)

    return gen


def _focused(con: Any, place: _Place) -> Gen:
    focus = con.parsebuildfrom
    if not isinstance(focus, str) or focus not in con._subcons:
        raise _unsupported(con, place, "it focuses on a field it does not name")
    members = _members(con, place, anonymous_from_none=True, focus=focus)

    def gen(draw: st.DrawFn, parent: Any, room: _Room) -> Any:
        context = _nested(parent, con._subcons)
        _draw_members(draw, members, context)
        return context[focus]

    return gen


# repetitions


def _array(con: Any, place: _Place) -> Gen:
    if con.discard:
        raise _unsupported(con, place, "with discard=True it parses into an empty list")
    element = _derive(con.subcon, place.inner("[]", tail=False))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        count = _eval(con.count, context)
        assume(isinstance(count, int) and count >= 0)
        values = []
        for i in range(count):
            context["_index"] = i
            values.append(element(draw, context, _ANY_ROOM))
        return values

    return gen


def _greedy_range(con: Any, place: _Place) -> Gen:
    _greedy(con, place)
    if con.discard:
        raise _unsupported(con, place, "with discard=True it parses into an empty list")
    if _zero_width(con.subcon):
        raise _unsupported(con, place, "its elements take no bytes, so parsing never ends")
    try:
        con.subcon.parse(b"")
    except Exception:
        pass
    else:
        raise _unsupported(con, place, "its element parses from no bytes, so parsing never ends")
    element = _derive(con.subcon, place.inner("[]", tail=False))
    counts = st.integers(0, COUNT)

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        values = []
        for i in range(draw(counts)):
            context["_index"] = i
            value = element(draw, context, _ANY_ROOM)
            assume(_encode(con.subcon, value, context) != b"")
            values.append(value)
        return values

    return gen


# choices


def _absent_ok(con: Any, context: Any) -> bool:
    """Whether Optional(con) at the end of its stream builds None as nothing and parses
    nothing back as None: ``con`` neither builds None nor parses from no bytes."""
    try:
        _encode(con, None, context)
    except Exception:
        pass
    else:
        return False
    try:
        con._parse(io.BytesIO(b""), Container(context), "(from_grammar)")
    except Exception:
        return True
    return False


def _select(con: Any, place: _Place) -> Gen:
    # Values of the first alternative are built and parsed by it, as Select tries it first;
    # the others would need the first to refuse their bytes, which only parsing can tell.
    if not con.subcons:
        raise _unsupported(con, place, "no alternatives")
    first_con = con.subcons[0]
    first = _derive(first_con, place)
    optional = len(con.subcons) == 2 and isinstance(_unwrap(con.subcons[1]), type(cc.Pass))
    may_be_absent = optional and place.tail and not place.padded

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        if may_be_absent and draw(st.booleans()) and _absent_ok(first_con, context):
            return None
        return first(draw, context, room)

    return gen


def _if_then_else(con: Any, place: _Place) -> Gen:
    then, other = _derive(con.thensubcon, place), _derive(con.elsesubcon, place)

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        chosen = then if _eval(con.condfunc, context) else other
        return chosen(draw, context, room)

    return gen


def _switch(con: Any, place: _Place) -> Gen:
    cases = {key: _derive(case, place) for key, case in con.cases.items()}
    default = _derive(con.default, place)

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        try:
            chosen = cases.get(_eval(con.keyfunc, context), default)
        except TypeError:  # an unhashable key
            assume(False)
        return chosen(draw, context, room)

    return gen


# sizes, padding, terminators


def _padded(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, place.inner(tail=False))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        length = _eval(con.length, context)
        assume(isinstance(length, int) and length >= 0)
        value = sub(draw, context, _Room(most=length, encoding=room.encoding))
        assume(len(_encode(con.subcon, value, context)) <= length)
        return value

    return gen


def _aligned(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, place.inner(tail=False))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        modulus = _eval(con.modulus, context)
        assume(isinstance(modulus, int) and modulus >= 2)
        return sub(draw, context, _Room(encoding=room.encoding))

    return gen


def _prefixed(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, place.inner())
    extra = 0
    if con.includelength:
        try:
            extra = con.lengthfield.sizeof()
        except Exception:
            reason = "includelength with a length field of no fixed size"
            raise _unsupported(con, place, reason) from None
    span = _int_range(con.lengthfield)
    most = None if span is None else span[1] - extra

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        value = sub(draw, context, _Room(most=most, encoding=room.encoding))
        length = len(_encode(con.subcon, value, context)) + extra
        if span is not None:
            assume(span[0] <= length <= span[1])
        else:
            try:
                _encode(con.lengthfield, length, context)
            except Exception:
                assume(False)
        return value

    return gen


def _fixed_sized(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, place.inner(fill=True))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        length = _eval(con.length, context)
        assume(isinstance(length, int) and length >= 0)
        value = sub(draw, context, _Room(most=length, exact=length, encoding=room.encoding))
        assume(len(_encode(con.subcon, value, context)) <= length)
        return value

    return gen


def _null_terminated(con: Any, place: _Place) -> Gen:
    if con.include or not con.consume:
        raise _unsupported(con, place, "only include=False, consume=True round-trip")
    term = con.term
    if not term:
        raise _unsupported(con, place, "an empty terminator")
    sub = _derive(con.subcon, place.inner())

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        most = None if room.most is None else room.most - len(term)
        value = sub(draw, context, _Room(most=most, term=term, encoding=room.encoding))
        data = _encode(con.subcon, value, context)
        assume(len(data) % len(term) == 0 and not _has_unit(data, term))
        return value

    return gen


def _null_stripped(con: Any, place: _Place) -> Gen:
    pad = con.pad
    if not pad:
        raise _unsupported(con, place, "an empty pad")
    # it strips a FixedSized's zero padding too, if its pad is zeros
    zeros = not pad.strip(b"\x00")
    _greedy(con, replace(place, padded=place.padded and not zeros), fills=zeros)
    sub = _derive(con.subcon, place.inner())

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        value = sub(draw, context, _Room(most=room.most, pad=pad, encoding=room.encoding))
        assume(not _strips(_encode(con.subcon, value, context), pad))
        return value

    return gen


# streams transformed


def _bitwise_after(decoder: Any, bitwise: bool) -> bool:
    if decoder is bytes2bits:
        return True
    if decoder is bits2bytes:
        return False
    return bitwise


def _transformed(con: Any, place: _Place) -> Gen:
    if con.decodeamount is None:
        _greedy(con, place)
    bitwise = _bitwise_after(con.decodefunc, place.bitwise)
    inner = replace(place.inner(fill=isinstance(con.decodeamount, int)), bitwise=bitwise)
    sub = _derive(con.subcon, inner)
    exact = None
    if isinstance(con.encodeamount, int) and con.decodefunc not in (bytes2bits, bits2bytes):
        exact = con.encodeamount

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        return sub(draw, context, _Room(exact=exact))

    return gen


def _restreamed(con: Any, place: _Place) -> Gen:
    sub = _derive(con.subcon, replace(place, bitwise=_bitwise_after(con.decoder, place.bitwise)))

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        for _ in range(8):  # bits must make whole bytes: a few tries find such a value
            value = sub(draw, context, _ANY_ROOM)
            try:
                _encode(con, value, context)
            except Exception:
                continue
            return value
        assume(False)

    return gen


def _rest_of_stream(con: Any, place: _Place) -> Gen:
    """ProcessXor, ProcessRotateLeft, Tunnel (Compressed ...): the rest of the stream,
    transformed, is the subcon's stream."""
    _greedy(con, place)
    sub = _derive(con.subcon, place.inner())

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        value = sub(draw, context, _ANY_ROOM)
        if isinstance(con, cc.ProcessRotateLeft):
            group = _eval(con.group, context)
            assume(isinstance(group, int) and group >= 1)
            assume(len(_encode(con.subcon, value, context)) % group == 0)
        return value

    return gen


def _lazy_bound(con: Any, place: _Place) -> Gen:
    derived: list[Gen] = []  # derived at the first draw: the grammar may be recursive

    def gen(draw: st.DrawFn, context: Any, room: _Room) -> Any:
        if not derived:
            derived.append(_derive(con.subconfunc(), place))
        return derived[0](draw, context, room)

    return gen


def _compiled(con: Any, place: _Place) -> Gen:
    if con.defersubcon is None:
        raise _unsupported(con, place, "a compiled grammar without its source construct")
    return _derive(con.defersubcon, place)


_MAKERS: list[tuple[Any, Callable[[Any, _Place], Gen]]] = [
    (Framing, _framing),
    (cc.Compiled, _compiled),
    (cc.FormatField, _format_field),
    ((cc.BytesInteger, cc.BitsInteger), _bytes_integer),
    ((type(cc.VarInt), type(cc.ZigZag)), _varint),
    (type(cc.Flag), lambda con, place: _static(st.booleans())),
    (cc.Bytes, _bytes),
    (type(cc.GreedyBytes), _greedy_bytes),
    (cc.StringEncoded, _string),
    (cc.Enum, _enum),
    (cc.FlagsEnum, _flags_enum),
    (cc.Mapping, _mapping),
    (cc.NamedTuple, _named_tuple),
    (cc.Const, _const),
    (cc.Computed, _computed),
    (type(cc.Index), _index),
    (type(cc.Pass), _pass),
    (type(cc.Terminated), _terminated),
    (cc.Check, _check),
    (cc.Rebuild, _rebuild),
    (cc.Default, _default),
    (cc.Checksum, _checksum),
    (cc.Struct, _struct),
    (cc.Sequence, _sequence),
    (cc.FocusedSeq, _focused),
    (cc.Array, _array),
    (cc.GreedyRange, _greedy_range),
    (cc.Select, _select),
    (cc.IfThenElse, _if_then_else),
    (cc.Switch, _switch),
    (cc.Padded, _padded),
    (cc.Aligned, _aligned),
    (cc.Prefixed, _prefixed),
    (cc.FixedSized, _fixed_sized),
    (cc.NullTerminated, _null_terminated),
    (cc.NullStripped, _null_stripped),
    (cc.Transformed, _transformed),
    (cc.Restreamed, _restreamed),
    ((cc.ProcessXor, cc.ProcessRotateLeft, cc.Tunnel), _rest_of_stream),
    (cc.LazyBound, _lazy_bound),
    (cc.ExprValidator, _one_of),
    (cc.Adapter, _adapter),
]

#: what may be built from None, where a field gets no value (its gen then gives what
#: parsing returns)
_FROM_NONE = (
    cc.Const,
    cc.Computed,
    type(cc.Pass),
    type(cc.Index),
    type(cc.Terminated),
    cc.Check,
    cc.StopIf,
    cc.Rebuild,
    cc.Default,
    cc.Checksum,
    cc.Struct,
    cc.Sequence,
    cc.IfThenElse,
    cc.Switch,
    cc.Padded,
    cc.Aligned,
    cc.Prefixed,
    cc.FixedSized,
    cc.NullTerminated,
    cc.NullStripped,
    cc.Hex,
    cc.HexDump,
    cc.Compiled,
    cc.LazyBound,
)

_POSITIONS = "its value depends on stream positions"
_REASONS: dict[type, str] = {
    cc.RawCopy: "it parses into stream offsets",
    cc.Pointer: _POSITIONS,
    cc.Peek: "it parses what follows it",
    cc.Seek: _POSITIONS,
    type(cc.Tell): _POSITIONS,
    cc.OffsettedEnd: _POSITIONS,
    cc.Union: "its members overlap, so a value would have to agree with itself",
    cc.RepeatUntil: "its predicate decides where the list ends",
    cc.Lazy: "it parses into a function",
    cc.LazyStruct: "it parses into a lazy container",
    cc.LazyArray: "it parses into a lazy list",
    cc.StopIf: "StopIf outside a Struct or Sequence",
    type(cc.Error): "it never builds",
    type(cc.Pickled): "",
    type(cc.Numpy): "",
}
