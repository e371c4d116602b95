"""The resumable reply reader (:class:`grammars.resp.ReplyReader`): it reads what the
grammar builds, the same values as the grammar's own reader under any chunking, refuses
hostile replies from their header with the error the grammar gives, and looks at each byte
a bounded number of times however the stream is cut."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from grammars import GrammarError, MalformedError, TooLongError, resp
from grammars.resp import (
    MAX_BULK,
    MAX_DEPTH,
    MAX_INLINE,
    Attributed,
    BigNumber,
    BlobError,
    Error,
    Map,
    Push,
    ReplyReader,
    Set,
    Simple,
    Verbatim,
)
from statewire.testing.strategies import chunked

line_text = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
leaves = st.one_of(
    st.binary(max_size=40),
    st.builds(Simple, line_text),
    st.builds(Error, line_text),
    st.builds(BlobError, line_text),
    st.builds(Verbatim, st.sampled_from([b"txt", b"mkd"]), st.binary(max_size=12)),
    st.floats(allow_nan=False),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.integers(-(10**40), 10**40).map(BigNumber),
    st.none(),
    st.booleans(),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(inner, inner), max_size=3).map(lambda p: Map(tuple(p))),
        st.lists(inner, max_size=3).map(lambda items: Set(tuple(items))),
        st.lists(inner, max_size=3).map(lambda items: Push(tuple(items))),
        st.builds(
            Attributed, st.lists(st.tuples(inner, inner), max_size=2).map(tuple).map(Map), inner
        ),
    ),
    max_leaves=16,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with a NaN equal to itself (a RESP2 float is read back as its text)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def read_all(chunks: list[bytes], reader: ReplyReader | None = None) -> list[Any]:
    reader = reader or ReplyReader()
    got: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk, got)
    return got


@given(st.lists(values, min_size=1, max_size=6))
def test_what_the_grammar_builds_in_resp3_reads_back_as_the_same_values(
    replies: list[Any],
) -> None:
    grammar = resp(3)
    wire = b"".join(grammar.encode(v) for v in replies)
    reader = ReplyReader()
    assert reader.feed(wire) == replies
    assert not reader.unfinished and reader.offset == len(wire)


@given(st.lists(values, min_size=1, max_size=6), st.sampled_from([2, 3]))
def test_the_reader_reads_what_the_grammar_reads(replies: list[Any], version: int) -> None:
    grammar = resp(version)
    wire = b"".join(grammar.encode(v) for v in replies)
    expected, at = [], 0
    while at < len(wire):
        found = grammar.scan(wire, at, len(wire))
        assert found is not None
        expected.append(found[0])
        at = found[1]
    got = ReplyReader().feed(wire)
    assert len(got) == len(expected) and all(map(same, got, expected))


@given(data=st.data(), replies=st.lists(values, min_size=1, max_size=6))
def test_any_chunking_gives_the_same_replies(data: st.DataObject, replies: list[Any]) -> None:
    wire = b"".join(resp(3).encode(v) for v in replies)
    chunks = data.draw(chunked(wire))
    reader = ReplyReader()
    assert read_all(chunks, reader) == replies
    assert not reader.unfinished and reader.offset == len(wire)


def test_a_reply_cut_anywhere_waits_for_its_end() -> None:
    reader = ReplyReader()
    assert reader.feed(b"*2\r\n$5\r\nhel") == []
    assert reader.unfinished and reader.offset == 0
    assert reader.feed(b"lo\r\n:7\r") == []
    assert reader.feed(b"\n+OK\r\n$3\r\n") == [[b"hello", 7], Simple(b"OK")]
    assert reader.offset == 24 and reader.unfinished
    assert reader.feed(b"abc\r\n") == [b"abc"] and not reader.unfinished


# -- hostile replies ------------------------------------------------------------------------

#: replies the grammar refuses, each with the error; all refused from a header
HOSTILE = [
    (b"$%d\r\n" % (MAX_BULK + 1), TooLongError),
    (b"*%d\r\n" % (1 << 21), TooLongError),
    (b"*1\r\n" * (MAX_DEPTH + 1) + b":1\r\n", TooLongError),
    (b"?what\r\n", MalformedError),
    (b"\x00\r\n", MalformedError),
    (b"$-2\r\n", MalformedError),
    (b"*-3\r\n", MalformedError),
    (b"%-1\r\n", MalformedError),
    (b"!-1\r\n", MalformedError),
    (b"$-0\r\n", MalformedError),
    (b"$01\r\nx\r\n", MalformedError),
    (b"$1x\r\n", MalformedError),
    (b"$" + b"9" * 30, MalformedError),
    (b"$3\r\nabcde", MalformedError),
    (b"=5\r\nhello\r\n", MalformedError),
    (b":1.5\r\n", MalformedError),
    (b"#x\r\n", MalformedError),
    (b"+" + b"a" * (MAX_INLINE + 1), TooLongError),
]


@pytest.mark.parametrize(
    ("wire", "error"), HOSTILE, ids=[w[:12].decode("latin-1") for w, _ in HOSTILE]
)
def test_a_hostile_reply_is_refused_as_the_grammar_refuses_it(
    wire: bytes, error: type[GrammarError]
) -> None:
    with pytest.raises(error):
        ReplyReader().feed(wire)
    with pytest.raises(error):
        resp().parse(wire + b"\r\n" * 40)


@given(
    data=st.data(),
    good=st.lists(values, max_size=3),
    bad=st.sampled_from(HOSTILE),
)
def test_a_hostile_reply_after_good_ones_under_any_chunking(
    data: st.DataObject, good: list[Any], bad: tuple[bytes, type[GrammarError]]
) -> None:
    """The replies before it are read, then the error, the same whatever the reads."""
    prefix = b"".join(resp(3).encode(v) for v in good)
    wire, error = prefix + bad[0], bad[1]
    got: list[Any] = []
    reader = ReplyReader()
    with pytest.raises(error) as raised:
        for chunk in data.draw(chunked(wire)):
            reader.feed(chunk, got)
    assert got == good
    assert raised.value.offset is not None and len(prefix) <= raised.value.offset < len(wire)


@given(data=st.data(), wire=st.binary(max_size=60))
def test_any_bytes_give_the_same_values_and_error_under_any_chunking(
    data: st.DataObject, wire: bytes
) -> None:
    """Whatever the bytes, the reader raises nothing but the grammar's errors, and what it
    makes of them does not depend on how they are cut."""

    def outcome(chunks: list[bytes]) -> tuple[list[Any], Any]:
        got: list[Any] = []
        reader = ReplyReader()
        try:
            for chunk in chunks:
                reader.feed(chunk, got)
        except GrammarError as error:
            return got, (type(error), error.offset)
        return got, reader.offset

    whole = outcome([wire])
    cut = outcome(data.draw(chunked(wire)))
    assert len(cut[0]) == len(whole[0]) and all(map(same, cut[0], whole[0]))
    assert cut[1] == whole[1]


def test_a_bulk_over_the_limit_is_refused_before_its_body() -> None:
    reader = ReplyReader(max_bulk=10)
    assert reader.feed(b"$10\r\n0123456789\r\n") == [b"0123456789"]
    with pytest.raises(TooLongError) as raised:
        reader.feed(b"$11\r\n")
    assert raised.value.limit == 10 and raised.value.offset == 17


# -- linear time ----------------------------------------------------------------------------


class Watched(bytearray):
    """A buffer that counts the bytes its ``find`` calls were asked to search, and the
    bytes read from it by index or slice."""

    searched = 0
    read = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        stop = len(self) if end is None else min(end, len(self))
        self.searched += max(0, stop - start)
        return super().find(sub, start, end)

    def __getitem__(self, key: Any) -> Any:
        got = super().__getitem__(key)
        self.read += len(got) if isinstance(key, slice) else 1
        return got


@pytest.mark.parametrize(
    "wire",
    [
        b"+" + b"a" * 20_000 + b"\r\n",
        b"*3000\r\n" + b":12\r\n" * 3000,
        b"$30000\r\n" + b"b" * 30_000 + b"\r\n",
        b"*1\r\n" * 60 + b"%1\r\n+k\r\n" + b"~2\r\n,1.5\r\n(99\r\n",
    ],
    ids=["a long line", "many small values", "a big blob", "deep"],
)
def test_a_reply_fed_a_byte_at_a_time_is_searched_in_linear_time(wire: bytes) -> None:
    """As a framer does: the unfinished reply's buffer grows by a byte per read and the
    reader resumes on it. Each byte is searched and read a bounded number of times (no
    value is read twice), and the blob's body not at all until it has all come
    (``need``)."""
    reader = ReplyReader()
    buf = Watched()
    found = None
    tries = 0
    for byte in range(len(wire)):
        buf.append(wire[byte])
        if len(buf) < reader.need:
            continue
        tries += 1
        found = reader.scan(buf, 0, len(buf))
        if found is not None:
            break
    assert found is not None and found[1] == len(wire)
    assert found[0] == resp().parse(wire)
    assert buf.searched <= 30 * len(wire) and buf.read <= 30 * len(wire)
    if wire.startswith(b"$"):
        assert tries < 20  # the header's bytes, then the body once it has all come


@given(st.binary(min_size=1, max_size=30))
def test_a_reply_needs_its_last_byte(body: bytes) -> None:
    """No value is read before its last byte has come."""
    wire = resp().encode([body, Simple(b"x")])
    assume(len(wire) > 1)
    reader = ReplyReader()
    assert reader.feed(wire[:-1]) == []
    assert reader.feed(wire[-1:]) == [[body, Simple(b"x")]]


@given(data=st.data(), replies=st.lists(values, min_size=1, max_size=6))
def test_read_gives_whole_values_their_ends_and_where_the_rest_starts(
    data: st.DataObject, replies: list[Any]
) -> None:
    """As a framer calls it: whole values up to a limit, each with its end; an unfinished
    one is resumed by ``scan`` on its bytes with more after them."""
    encoded = [resp(3).encode(v) for v in replies]
    wire = b"".join(encoded)
    bounds = [sum(map(len, encoded[: k + 1])) for k in range(len(encoded))]
    cut = data.draw(st.integers(0, len(wire)))
    limit = data.draw(st.integers(-1, len(replies)))
    reader = ReplyReader()
    got: list[Any] = []
    ends: list[int] = []
    stop = reader.read(wire[:cut], 0, cut, got, ends, 0, limit)
    whole = [b for b in bounds if b <= cut][: None if limit < 0 else limit]
    assert ends == whole and got == replies[: len(whole)]
    assert stop == (whole[-1] if whole else 0)
    if stop < len(wire) and len(got) < len(replies):
        # the rest of the value that starts at ``stop`` comes: it is read from there
        rest = bytearray(wire[stop:cut])
        found = None
        for byte in wire[cut:]:
            rest.append(byte)
            if len(rest) >= reader.need:
                found = reader.scan(rest, 0, len(rest))
                if found is not None:
                    break
        if found is None:
            found = reader.scan(rest, 0, len(rest))
        assert found is not None and found[0] == replies[len(got)]
