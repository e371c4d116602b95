"""RESP grammars: round trips (RESP2 and RESP3 values, commands), Redis's inline splitting,
limits refused from the header, and the fast command decoder proved equal to the grammar's
own reader under any chunking, on good and hostile bytes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from construct import ConstructError
from hypothesis import given
from hypothesis import strategies as st

from grammars import MalformedError, TooLongError, request, resp
from grammars.resp import (
    NULL_ARRAY,
    OK,
    Attributed,
    BigNumber,
    BlobError,
    Error,
    Map,
    Push,
    Set,
    Simple,
    Verbatim,
    split_inline,
)
from statewire.framing import Framer, FrameTooLong, FramingError, MalformedFrame
from statewire.testing.strategies import chunkings

line_text = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
scalars2 = st.one_of(
    st.binary(max_size=20),
    st.builds(Simple, line_text),
    st.builds(Error, line_text),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.none(),
    st.just(NULL_ARRAY),
)
values2 = st.recursive(scalars2, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
scalars3 = st.one_of(
    st.binary(max_size=20),
    st.builds(Simple, line_text),
    st.builds(Error, line_text),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.builds(BigNumber, st.integers()),
    st.builds(BlobError, st.binary(max_size=10)),
    st.builds(Verbatim, st.sampled_from([b"txt", b"mkd"]), st.binary(max_size=10)),
)


def _aggregates(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    items = st.lists(inner, max_size=3)
    pairs = st.lists(st.tuples(inner, inner), max_size=3).map(tuple)
    return st.one_of(
        items,
        pairs.map(Map),
        items.map(tuple).map(Set),
        items.map(tuple).map(Push),
        st.builds(Attributed, pairs.map(Map), inner),
    )


values3 = st.recursive(scalars3, _aggregates, max_leaves=12)
arguments = st.lists(st.binary(max_size=30), min_size=1, max_size=6)


@given(values2)
def test_resp2_values_round_trip(value: Any) -> None:
    grammar = resp(2)
    wire = grammar.build(value)
    assert grammar.parse(wire) == value
    assert grammar.encode(value) == wire


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("value", [b"", b"v", 0, -7, None, OK, Simple(b"OK"), True, NULL_ARRAY])
def test_the_replies_encoded_at_once_are_the_ones_built(version: int, value: Any) -> None:
    grammar = resp(version)
    assert grammar.encode(value) == grammar.build(value)


@given(values3)
def test_resp3_values_round_trip(value: Any) -> None:
    grammar = resp(3)
    wire = grammar.build(value)
    assert grammar.parse(wire) == value
    assert grammar.encode(value) == wire


def test_resp2_builds_resp3_values_as_redis_answers_resp2_clients() -> None:
    two, three = resp(2), resp(3)
    assert two.build({b"a": 1}) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert three.build({b"a": 1}) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert two.build(True) == b":1\r\n" and three.build(True) == b"#t\r\n"
    assert two.build(None) == b"$-1\r\n" and three.build(None) == b"_\r\n"
    assert two.build(NULL_ARRAY) == b"*-1\r\n" and three.build(NULL_ARRAY) == b"_\r\n"
    assert two.build(1.5) == b"$3\r\n1.5\r\n" and three.build(1.5) == b",1.5\r\n"
    assert three.build(math.inf) == b",inf\r\n"
    assert two.build(Push((b"message", b"c", b"m"))).startswith(b"*3\r\n")
    assert three.build(Push((b"message",))) == b">1\r\n$7\r\nmessage\r\n"
    assert two.build(Verbatim(b"txt", b"hi")) == b"$2\r\nhi\r\n"
    assert three.build(Verbatim(b"txt", b"hi")) == b"=6\r\ntxt:hi\r\n"
    assert three.build({1, 2}) == b"~2\r\n:1\r\n:2\r\n"
    assert two.build(BigNumber(1 << 70)) == b"$22\r\n1180591620717411303424\r\n"


def test_values_that_cannot_be_built_are_refused() -> None:
    for bad in (Simple(b"a\r\nb"), Error(b"x\n"), object(), Verbatim(b"toolong", b"")):
        with pytest.raises(ConstructError):
            resp(3).build(bad)


def test_deep_nesting_is_refused_when_parsing() -> None:
    wire = b"*1\r\n" * 100 + b":1\r\n"
    with pytest.raises(TooLongError):
        resp(3).parse(wire)
    assert resp(3, max_depth=200).parse(wire) is not None


@pytest.mark.parametrize(
    "wire",
    [b"$-2\r\n", b":12a\r\n", b"#x\r\n", b",nope\r\n", b"$1\r\nab\r\n", b"%-1\r\n", b"?\r\n"],
)
def test_malformed_values_are_refused(wire: bytes) -> None:
    with pytest.raises(MalformedError):
        resp(3).parse(wire)


@given(arguments)
def test_commands_round_trip(argv: list[bytes]) -> None:
    grammar = request()
    assert grammar.parse(grammar.build(argv)) == argv


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"PING", [b"PING"]),
        (b"  SET  k   v ", [b"SET", b"k", b"v"]),
        (b"SET \"a b\" 'c d'", [b"SET", b"a b", b"c d"]),
        (b"ECHO \"\\x41\\n\\\"\" 'it\\'s'", [b"ECHO", b'A\n"', b"it's"]),
        (b'a"b c"', [b"ab c"]),
        (b"", []),
        (b'GET "a"b', None),
        (b'GET "open', None),
        (b"GET 'open", None),
    ],
)
def test_inline_commands_split_as_redis_splits_them(
    line: bytes, words: list[bytes] | None
) -> None:
    assert split_inline(line) == words


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"PING\r\n", [b"PING"]),
        (b"PING\n", [b"PING"]),
        (b"\r\n", []),
        (b"*0\r\n", []),
        (b"*-5\r\n", []),
        (b"*1\r\n$0\r\n\r\n", [b""]),
    ],
)
def test_requests_redis_accepts(wire: bytes, value: list[bytes]) -> None:
    assert request().parse(wire) == value


@pytest.mark.parametrize(
    ("wire", "error", "message"),
    [
        (b"*abc\r\n", MalformedError, "Protocol error: invalid multibulk length"),
        (b"*01\r\n", MalformedError, "Protocol error: invalid multibulk length"),
        (b"*1\r\n*1\r\n", MalformedError, "Protocol error: expected '$', got '*'"),
        (b"*1\r\n$-1\r\n", TooLongError, "Protocol error: invalid bulk length"),
        (b"*1\r\n$x\r\n", MalformedError, "Protocol error: invalid bulk length"),
        (b"*1\r\n$2147483648\r\n", TooLongError, "Protocol error: invalid bulk length"),
        (b"*2000000\r\n", TooLongError, "Protocol error: invalid multibulk length"),
        (b'GET "a"b\r\n', MalformedError, "Protocol error: unbalanced quotes in request"),
        (b"x" * 70000, TooLongError, "Protocol error: too big inline request"),
    ],
)
def test_bad_requests_are_refused_with_redis_words(
    wire: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        request().parse(wire)
    assert raised.value.message == message  # type: ignore[attr-defined]


def reference(grammar: Any, wire: bytes) -> tuple[list[Any], tuple[str, int] | None]:
    """The commands the grammar reads one after another from the whole of ``wire``, and
    the error that stops it (message, offset), if one does."""
    frames, i = [], 0
    while True:
        try:
            found = grammar.scan(wire, i, len(wire))
        except (MalformedError, TooLongError) as error:
            return frames, (error.message, error.offset)
        if found is None:
            return frames, None
        frame, i = found
        frames.append(frame)


def fed(grammar: Any, chunks: list[bytes]) -> tuple[list[Any], tuple[str, int] | None]:
    frames: list[Any] = []
    errors: list[FramingError] = []
    framer = Framer(grammar, frames.append, on_error=errors.append)
    for chunk in chunks:
        if framer.error is not None:
            break
        framer.feed(chunk)
    return frames, (errors[0].message, errors[0].offset) if errors else None


small = request(max_bulk=40, max_array=6, max_inline=24)
inline_word = st.binary(min_size=1, max_size=6).filter(
    lambda w: not any(c in w for c in b" \t\r\n\x0b\x0c\0\"'")
)
pieces = st.one_of(
    arguments.map(lambda argv: request().build(argv)),
    st.lists(inline_word, max_size=4).map(lambda words: b" ".join(words) + b"\r\n"),
    st.sampled_from([b"*0\r\n", b"*-3\r\n", b"\n", b"PING\n", b"SET 'a b' \"c\\x41\"\r\n"]),
)
ODD_PIECES = [
    b"*abc\r\n",
    b"*1\r\n*1\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$99\r\n",
    b"*9\r\n",
    b"*1\r\n$3\r\nfooXY",
    b'x "a\r\n',
    b"$" + b"9" * 30,
    b"*1\r\n$41\r\n",
    b"y" * 30,
    b"GET a\0b\r\n",
    b"*01\r\n$1\r\na\r\n",  # leading zeros: Redis refuses them
    b"*1\r\n$01\r\na\r\n",
    b"*1\r\n$" + b"0" * 19 + b"1\r\na\r\n",
    b"*1\r\n$1\r\nab\r\n",
    b"*2\r\n$1\r\na\r\n:1\r\n",
    b"GET\ta  b\r\r\n",  # inline: tabs, runs of spaces, a CR inside the line
    b"  \r\n",
    b"x" * 23 + b"\r\n",  # the newline just within, and just past, the small limit
    b"x" * 24 + b"\r\n",
    b"SET a\x0bb\r\n",  # VT and FF: kept inside a word, skipped before one
    b"\x0bGET \x0ca\r\n",
    b"$3\r\nfoo\r\n",
    b"*2\r\n$1\r\naXY",  # no CRLF after a bulk, the command unfinished: refused at once
]
hostile = st.sampled_from(ODD_PIECES)


@given(st.data())
def test_fast_decoder_equals_the_grammar_under_any_chunking(
    accel: str, data: st.DataObject
) -> None:
    grammar = data.draw(st.sampled_from([request(), small]))
    parts = data.draw(st.lists(st.one_of(pieces, pieces, hostile), max_size=8))
    wire = b"".join(parts)
    chunks = data.draw(chunkings(wire))
    assert fed(grammar, chunks) == reference(grammar, wire)


@given(st.binary(max_size=120), st.data())
def test_random_bytes_read_as_the_grammar_reads_them(
    accel: str, wire: bytes, data: st.DataObject
) -> None:
    grammar = data.draw(st.sampled_from([request(), small]))
    assert fed(grammar, data.draw(chunkings(wire))) == reference(grammar, wire)


@pytest.mark.parametrize("piece", ODD_PIECES)
def test_each_odd_piece_reads_as_the_grammar_reads_it(accel: str, piece: bytes) -> None:
    """Each odd piece alone and between plain commands, in one read and cut anywhere in
    two: the fast paths (C or Python) take what the grammar takes and leave it the rest."""
    plain = request().build([b"GET", b"k"]) + b"PING\r\n"
    for grammar in (request(), small):
        for wire in (piece, plain + piece + plain):
            expected = reference(grammar, wire)
            for cut in range(len(wire) + 1):
                assert fed(grammar, [wire[:cut], wire[cut:]]) == expected, (wire, cut)


def test_a_huge_bulk_is_refused_from_its_header_before_any_body_byte() -> None:
    errors: list[FramingError] = []
    frames: list[Any] = []
    framer = Framer(request(), frames.append, on_error=errors.append)
    framer.feed(b"*1\r\n$2147")
    framer.feed(b"483648\r\n")  # 2 GiB announced
    assert isinstance(errors[0], FrameTooLong)
    assert errors[0].message == "Protocol error: invalid bulk length"
    assert errors[0].offset == 4 and not frames
    assert len(framer.buffered) < 32  # nothing but the header was kept


def test_oversize_arrays_and_inline_lines_are_refused_as_they_arrive() -> None:
    errors: list[FramingError] = []
    framer = Framer(request(), [].append, on_error=errors.append)
    framer.feed(b"*1048577\r\n")
    assert isinstance(errors[0], FrameTooLong)
    errors.clear()
    framer = Framer(request(), [].append, on_error=errors.append)
    for _ in range(64 * 1024 // 4096 + 1):
        framer.feed(b"a" * 4096)  # an inline command that never ends
    assert isinstance(errors[0], FrameTooLong)
    assert errors[0].message == "Protocol error: too big inline request"
    errors.clear()
    framer = Framer(request(), [].append, on_error=errors.append)
    framer.feed(b"*1\r\n$12a")  # refused before its CR arrives
    assert isinstance(errors[0], MalformedFrame)


def test_big_commands_fed_in_small_reads() -> None:
    argv = [b"RPUSH", b"k", *(b"%d" % i for i in range(5000))]
    body = [b"SET", b"k", bytes(range(256)) * 4000]
    wire = request().build(argv) + request().build(body) + b"PING\r\n"
    frames: list[Any] = []
    framer = Framer(request(), frames.append)
    for i in range(0, len(wire), 7):
        framer.feed(wire[i : i + 7])
    assert frames == [argv, body, [b"PING"]]
