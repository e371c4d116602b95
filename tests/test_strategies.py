"""Strategies derived from construct grammars: every supported type round-trips, fields see
the fields before them, unsupported types are named with their path, and the one-line
property helpers pass on good grammars and fail on bad ones."""

from __future__ import annotations

import hashlib
from typing import Any

import construct
import pytest
from construct import (
    Aligned,
    AlignedStruct,
    Array,
    Bit,
    BitsInteger,
    BitStruct,
    Bitwise,
    Byte,
    Bytes,
    BytesInteger,
    ByteSwapped,
    Bytewise,
    Check,
    Checksum,
    Compressed,
    Computed,
    Const,
    CString,
    Default,
    Enum,
    ExprAdapter,
    FixedSized,
    Flag,
    FlagsEnum,
    Float16b,
    Float32b,
    Float32l,
    Float64b,
    Float64l,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    GreedyString,
    Hex,
    If,
    IfThenElse,
    Index,
    Int8ub,
    Int16sb,
    Int16ub,
    Int16ul,
    Int32ub,
    LazyBound,
    Mapping,
    NamedTuple,
    Nibble,
    NullStripped,
    NullTerminated,
    OneOf,
    Optional,
    Padded,
    PaddedString,
    Padding,
    PascalString,
    Pass,
    Prefixed,
    PrefixedArray,
    ProcessXor,
    RawCopy,
    Rebuild,
    RepeatUntil,
    Sequence,
    Short,
    StopIf,
    Struct,
    Switch,
    Tell,
    Transformed,
    Union,
    VarInt,
    ZigZag,
    len_,
    obj_,
    this,
)
from hypothesis import find, given, settings
from hypothesis import strategies as st

import statewire.testing
from grammars import fixed, line, netstring, prefixed, raw
from statewire.testing import (
    UnsupportedGrammar,
    assert_chunking_invariant,
    assert_round_trip,
    encoded,
    from_grammar,
)
from statewire.testing.strategies import COUNT, SMALL

INTEGERS = {
    name: getattr(construct, name)
    for name in [
        f"Int{width}{sign}{order}"
        for width in (8, 16, 24, 32, 64)
        for sign in "us"
        for order in "bln"
    ]
}
SCALARS = {
    **INTEGERS,
    "Byte": Byte,
    "Short": Short,
    "BytesInteger(3, signed, swapped)": BytesInteger(3, signed=True, swapped=True),
    "BytesInteger(9)": BytesInteger(9),
    "BitsInteger(12)": BitsInteger(12),
    "BitsInteger(16, swapped)": BitsInteger(16, swapped=True),
    "VarInt": VarInt,
    "ZigZag": ZigZag,
    "Flag": Flag,
    "Float16b": Float16b,
    "Float32b": Float32b,
    "Float32l": Float32l,
    "Float64b": Float64b,
    "Float64l": Float64l,
}
BYTES_AND_STRINGS = {
    "Bytes(0)": Bytes(0),
    "Bytes(5)": Bytes(5),
    "Bytes(200)": Bytes(200),
    "GreedyBytes": GreedyBytes,
    "PascalString(Int8ub, utf8)": PascalString(Int8ub, "utf8"),
    "PascalString(VarInt, ascii)": PascalString(VarInt, "ascii"),
    "PascalString(Int16ul, utf16)": PascalString(Int16ul, "utf16"),
    "CString(utf8)": CString("utf8"),
    "CString(ascii)": CString("ascii"),
    "CString(utf16)": CString("utf16"),
    "CString(utf_32_le)": CString("utf_32_le"),
    "PaddedString(1, ascii)": PaddedString(1, "ascii"),
    "PaddedString(10, utf8)": PaddedString(10, "utf8"),
    "PaddedString(12, utf16)": PaddedString(12, "utf16"),
    "GreedyString(utf8)": GreedyString("utf8"),
    "GreedyString(utf_16_le)": GreedyString("utf_16_le"),
    "NullTerminated(GreedyBytes, 2-byte term)": NullTerminated(GreedyBytes, term=b"\0\0"),
    "NullStripped(GreedyBytes)": NullStripped(GreedyBytes, pad=b"\xff"),
    "FixedSized(6, GreedyBytes)": FixedSized(6, GreedyBytes),
    "FixedSized(6, CString)": FixedSized(6, CString("ascii")),
}
MAPPINGS_AND_SPECIALS = {
    "Enum": Enum(Int8ub, one=1, two=2, big=255),
    "Enum(alias)": Enum(Int16ub, a=1, b=2, also_b=2),
    "FlagsEnum": FlagsEnum(Int8ub, read=1, write=2, exec=4),
    "FlagsEnum(overlapping)": FlagsEnum(Int8ub, a=1, b=2, ab=3, none=0),
    "Mapping": Mapping(Int8ub, {"x": 1, "y": 2}),
    "Const(bytes)": Const(b"MAGIC"),
    "Const(int)": Const(7, Int16ub),
    "Computed": Computed(42),
    "Pass": Pass,
    "Default": Default(Int8ub, 5),
    "Hex": Hex(Int32ub),
    "OneOf": OneOf(Int8ub, [1, 2, 250]),
    "ExprAdapter(inverse)": ExprAdapter(Int8ub, lambda obj, ctx: obj - 128, lambda o, c: o + 128),
    "NamedTuple": NamedTuple("Point", "x y", Struct("x" / Int8ub, "y" / Int16sb)),
    "renamed": "name" / Int16ub,
}
COMPOSITES = {
    "Struct": Struct("a" / Int8ub, "b" / Flag, "c" / CString("utf8")),
    "Struct(anonymous)": Struct(Const(b"AB"), Padding(2), "x" / Int8ub, Computed(1)),
    "Struct(StopIf)": Struct("a" / Int8ub, StopIf(this.a < 100), "b" / Int8ub),
    "Struct(Check)": Struct("a" / Int8ub, Check(this.a != 3)),
    "Sequence": Sequence(Int8ub, "n" / Int8ub, Bytes(this.n), CString("ascii")),
    "FocusedSeq": FocusedSeq("v", Const(b"<"), "v" / Int16ub, "d" / Default(Byte, 7)),
    "Array": Array(3, Int16ul),
    "Array(Struct, Index)": Array(4, Struct("i" / Index, "v" / Int8ub)),
    "GreedyRange": GreedyRange(Int16ub),
    "GreedyRange(CString)": GreedyRange(CString("utf8")),
    "PrefixedArray": PrefixedArray(Int8ub, Int16ub),
    "PrefixedArray(VarInt, Struct)": PrefixedArray(VarInt, Struct("k" / Byte, "v" / Int8ub)),
    "Prefixed": Prefixed(Int16ub, GreedyBytes),
    "Prefixed(includelength)": Prefixed(Int8ub, GreedyBytes, includelength=True),
    "Prefixed(Struct)": Prefixed(VarInt, Struct("x" / Int8ub, "rest" / GreedyBytes)),
    "Optional": Optional(Int32ub),
    "Optional(mid-Struct)": Struct("o" / Optional(Int8ub), "x" / Int16ub),
    "Switch": Struct(
        "t" / Int8ub, "v" / Switch(this.t, {1: Int8ub, 2: CString("utf8")}, default=Bytes(2))
    ),
    "If": Struct("f" / Flag, "x" / If(this.f, Int32ub)),
    "IfThenElse": Struct("k" / Int8ub, "v" / IfThenElse(this.k > 99, Int16ub, Bytes(1))),
    "Padded": Padded(8, CString("ascii")),
    "Padding": Padding(3),
    "Aligned": Aligned(4, PascalString(Int8ub, "utf8")),
    "AlignedStruct": AlignedStruct(4, "a" / Int8ub, "b" / Int16ub, "c" / CString("ascii")),
    "Rebuild": Struct("n" / Rebuild(Int8ub, len_(this.data)), "data" / Bytes(this.n)),
    "Rebuild(from earlier)": Struct("a" / Int8ub, "b" / Rebuild(Int16ub, this.a * 3)),
    "Rebuild(not used later)": Struct(
        "n" / Rebuild(Int8ub, len_(this.s)), "s" / PascalString(Int8ub, "utf8")
    ),
    "Checksum": Struct(
        "data" / Prefixed(Int8ub, GreedyBytes),
        "sum" / Checksum(Bytes(32), lambda data: hashlib.sha256(data).digest(), this.data),
    ),
    "Transformed": Transformed(Bytes(4), lambda b: b[::-1], 4, lambda b: b[::-1], 4),
    "ByteSwapped": ByteSwapped(Int32ub),
    "BitStruct": BitStruct(
        "a" / Flag,
        "b" / Nibble,
        "c" / BitsInteger(3),
        "e" / Enum(BitsInteger(8), x=1, y=200),
        "w" / Bytewise(Int16ub),
    ),
    "Bitwise(GreedyRange(Bit))": Bitwise(GreedyRange(Bit)),
    "ProcessXor": ProcessXor(0x55, GreedyBytes),
    "Compressed": Compressed(PascalString(Int8ub, "utf8"), "zlib"),
    "LazyBound": Struct("n" / Int8ub, "next" / If(this.n > 200, LazyBound(lambda: Int16ub))),
    "framings in a Struct": Struct(
        "a" / line(b"\n"), "b" / netstring(), "c" / prefixed(1), "d" / fixed(4), "e" / raw()
    ),
}
CATALOGUE = {**SCALARS, **BYTES_AND_STRINGS, **MAPPINGS_AND_SPECIALS, **COMPOSITES}


@pytest.mark.parametrize("grammar", CATALOGUE.values(), ids=CATALOGUE.keys())
@given(data=st.data())
def test_every_supported_type_round_trips(grammar: Any, data: st.DataObject) -> None:
    value = data.draw(from_grammar(grammar))
    assert grammar.parse(grammar.build(value)) == value


# -- a realistic message -------------------------------------------------------------------

MessageType = Enum(Int8ub, ping=1, data=2, text=3, bye=4)
BODY = Switch(
    this.type,
    {
        "ping": Struct("seq" / Int32ub),
        "data": Struct("length" / Int16ub, "data" / Bytes(this.length)),
        "text": PaddedString(12, "utf8"),
    },
    default=Pass,
)
MESSAGE = Struct(
    "magic" / Const(b"SW"),
    "version" / Int8ub,
    "flags" / FlagsEnum(Int8ub, urgent=1, compressed=2, signed=4),
    "type" / MessageType,
    "payload" / Prefixed(Int16ub, GreedyBytes),
    "name" / CString("utf8"),
    "count" / Int8ub,
    "ports" / Array(this.count, Int16ul),
    "label" / Padded(16, PascalString(Int8ub, "ascii")),
    "body" / BODY,
)
#: MESSAGE with an optional trailer: it round-trips, but cannot be framed in a stream (an
#: absent trailer and the next message's first bytes look alike)
MESSAGE_WITH_TRAILER = Struct(*MESSAGE.subcons, "trailer" / Optional(Int32ub))
FIND = settings(max_examples=3000, derandomize=True, database=None)


@given(data=st.data())
def test_message_round_trips(data: st.DataObject) -> None:
    message = data.draw(from_grammar(MESSAGE_WITH_TRAILER))
    assert MESSAGE_WITH_TRAILER.parse(MESSAGE_WITH_TRAILER.build(message)) == message
    assert message.magic == b"SW"
    assert len(message.ports) == message.count <= COUNT


CASES = {
    "ping": lambda m: m.type == "ping" and m.body.seq > 0,
    "data": lambda m: m.type == "data" and len(m.body.data) > 2,
    "text": lambda m: m.type == "text" and len(m.body) > 2,
    "unnamed type, no body": lambda m: isinstance(m.type, int) and m.body is None,
    "flags": lambda m: m.flags.urgent and m.flags.signed and not m.flags.compressed,
    "absent trailer": lambda m: m.trailer is None,
    "present trailer": lambda m: m.trailer is not None,
    "sizes": lambda m: len(m.ports) > 2 and len(m.name) > 2 and m.label,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_message_values_reach_every_case(case: str) -> None:
    """Each case is found by a search of its own (one shared search of 300 examples found
    them all or not depending on which modules were loaded: Hypothesis mixes constants
    from loaded source into what it generates)."""
    found = find(from_grammar(MESSAGE_WITH_TRAILER), CASES[case], settings=FIND)
    assert CASES[case](found)


def test_enum_values_are_what_parsing_returns() -> None:
    name = find(from_grammar(MessageType), lambda v: isinstance(v, str), settings=FIND)
    assert type(name) is type(MessageType.parse(MessageType.build(name)))
    assert int(name) == MessageType.build(name)[0]


def test_the_helpers_pass_on_the_message() -> None:
    assert_round_trip(MESSAGE_WITH_TRAILER)
    assert_chunking_invariant(MESSAGE)


# -- fields that depend on earlier fields ---------------------------------------------------


@given(data=st.data())
def test_bytes_sized_by_an_earlier_field(data: st.DataObject) -> None:
    grammar = Struct("n" / Int32ub, "data" / Bytes(this.n), "twice" / Computed(this.n * 2))
    value = data.draw(from_grammar(grammar))
    assert len(value.data) == value.n <= SMALL  # a size field is kept small
    assert value.twice == 2 * value.n
    assert grammar.parse(grammar.build(value)) == value


@given(data=st.data())
def test_sizes_from_the_context(data: st.DataObject) -> None:
    assert len(data.draw(from_grammar(Bytes(this.n), {"n": 5}))) == 5
    grammar = Struct("a" / Bytes(this._params.n), "b" / Struct("c" / Bytes(this._._params.n)))
    value = data.draw(from_grammar(grammar, {"n": 3}))
    assert len(value.a) == len(value.b.c) == 3
    wire = data.draw(encoded(grammar, {"n": 3}))
    assert len(wire) == 6


@given(data=st.data())
def test_computed_fields_take_what_parsing_gives(data: st.DataObject) -> None:
    rebuilt = data.draw(from_grammar(COMPOSITES["Rebuild"]))
    assert rebuilt.n == len(rebuilt.data)
    summed = data.draw(from_grammar(COMPOSITES["Checksum"]))
    assert summed.sum == hashlib.sha256(summed.data).digest()
    counted = data.draw(from_grammar(PrefixedArray(Int32ub, Byte)))
    assert len(counted) <= COUNT


@given(data=st.data())
def test_strings_fit_their_framing(data: st.DataObject) -> None:
    assert "\0" not in data.draw(from_grammar(CString("utf8")))
    padded = data.draw(from_grammar(PaddedString(4, "utf8")))
    assert len(padded.encode()) <= 4 and not padded.endswith("\0")
    assert len(data.draw(from_grammar(PascalString(Int8ub, "ascii")))) <= SMALL
    assert data.draw(from_grammar(GreedyString("ascii"))).isascii()


@given(data=st.data())
def test_repetitions_and_greedy_bytes_stay_small(data: st.DataObject) -> None:
    assert len(data.draw(from_grammar(GreedyBytes))) <= SMALL
    assert len(data.draw(from_grammar(GreedyRange(Byte)))) <= COUNT
    assert len(data.draw(from_grammar(Bytes(300)))) == 300  # a fixed size is a fixed size


# -- unsupported grammars ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grammar", "message"),
    [
        (
            Struct("header" / Struct("items" / RepeatUntil(obj_ == 0, Int8ub))),
            "no strategy for construct.core.RepeatUntil at header.items",
        ),
        (RawCopy(Int8ub), "RawCopy at the top of the grammar: it parses into stream offsets"),
        (Struct("items" / Array(2, Struct("at" / Tell))), "Tell at items[].at"),
        (Sequence(Int8ub, Union(0, "a" / Int8ub)), "Union at [1]"),
        (
            Struct("rest" / GreedyBytes, "crc" / Int16ub),
            "GreedyBytes at rest: it reads to the end",
        ),
        (FixedSized(8, Struct("a" / Int8ub, "b" / GreedyBytes)), "GreedyBytes at b: it would"),
        (Struct(Int8ub), "FormatField at [0]: it is built from None"),
        (GreedyRange(Pass), "GreedyRange at the top of the grammar: its elements take no"),
    ],
    ids=[
        "path",
        "RawCopy",
        "array element",
        "sequence member",
        "greedy",
        "padding",
        "none",
        "loop",
    ],
)
def test_unsupported_types_are_named_with_their_path(grammar: Any, message: str) -> None:
    with pytest.raises(UnsupportedGrammar) as caught:
        from_grammar(grammar)
    assert message in str(caught.value)


# -- the property helpers ------------------------------------------------------------------


def test_round_trip_helper_fails_on_an_asymmetric_grammar() -> None:
    off_by_one = ExprAdapter(Int8ub, lambda obj, ctx: obj + 1, lambda obj, ctx: obj)
    with pytest.raises(AssertionError, match="parses back as"):
        assert_round_trip(off_by_one)


def test_round_trip_helper_reports_values_that_do_not_build() -> None:
    big = ExprAdapter(Int8ub, lambda obj, ctx: obj, lambda obj, ctx: obj if obj < 200 else 999)
    with pytest.raises(AssertionError, match="200 does not build: FormatFieldError"):
        assert_round_trip(big)  # shrunk to the first value that does not fit a byte


def test_round_trip_helper_with_a_context() -> None:
    assert_round_trip(Struct("a" / Bytes(this._params.n)), {"n": 2})
    assert_round_trip(fixed(this.size), {"size": 3})


@pytest.mark.parametrize(
    "grammar",
    [line(b"\n", max_length=16), netstring(max_length=20), prefixed(1), Int16ub],
    ids=repr,
)
def test_chunking_helper_passes_on_framable_grammars(grammar: Any) -> None:
    assert_chunking_invariant(grammar)


@pytest.mark.parametrize(
    "grammar",
    [MESSAGE_WITH_TRAILER, Struct("n" / Int8ub, "rest" / GreedyBytes), raw()],
    ids=["trailing Optional", "GreedyBytes", "raw"],
)
def test_chunking_helper_fails_where_reads_matter(grammar: Any) -> None:
    with pytest.raises(AssertionError, match="in one read"):
        assert_chunking_invariant(grammar)


def test_helpers_are_exported() -> None:
    assert statewire.testing.assert_round_trip is assert_round_trip
    assert set(statewire.testing.__all__) >= {"assert_chunking_invariant", "from_grammar"}
    with pytest.raises(AttributeError):
        statewire.testing.nothing_here  # noqa: B018
