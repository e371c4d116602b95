"""grammars.memcache: commands round-trip, data blocks, and every refusal answered with the
reply the real memcached gives (line by line against memcached itself, when installed)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memcached_helpers import start_memcached

from grammars import MalformedError, TruncatedError
from grammars.memcache import (
    MAX_DATA,
    MAX_KEY,
    Arithmetic,
    BadCommandLine,
    BadDataChunk,
    Command,
    Delete,
    MemcacheError,
    Meta,
    Retrieval,
    Simple,
    Storage,
    Touch,
    UnknownCommand,
    build_command,
    command,
    data_block,
    parse_command,
    value_line,
)

KEYS = st.binary(min_size=1, max_size=MAX_KEY).filter(lambda k: b" " not in k and b"\r\n" not in k)
U32 = st.integers(0, (1 << 32) - 1)
#: an expiry time: memcached reads 64 bits (and keeps 32 of them, the server's business)
I64 = st.integers(-(1 << 63), (1 << 63) - 1)
SIZES = st.integers(0, MAX_DATA)
META_FLAGS = st.tuples(
    st.sampled_from([b"v", b"f", b"t", b"c", b"k", b"s", b"q", b"O", b"T", b"N", b"I"]),
    st.sampled_from([b"", b"30", b"opaque"]),
)

COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        Storage,
        st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend"]),
        KEYS,
        U32,
        I64,
        SIZES,
        st.none(),
        st.booleans(),
    ),
    st.builds(Storage, st.just(b"cas"), KEYS, U32, I64, SIZES, st.integers(0, (1 << 64) - 1)),
    st.builds(
        Retrieval,
        st.sampled_from([b"get", b"gets"]),
        st.lists(KEYS, min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        Retrieval, st.sampled_from([b"gat", b"gats"]), st.lists(KEYS, max_size=4).map(tuple), I64
    ),
    st.builds(Delete, KEYS, st.booleans()),
    st.builds(
        Arithmetic,
        st.sampled_from([b"incr", b"decr"]),
        KEYS,
        st.integers(0, (1 << 64) - 1),
        st.booleans(),
    ),
    st.builds(Touch, KEYS, I64, st.booleans()),
    st.builds(Simple, st.sampled_from([b"version", b"stats", b"quit"])),
    st.builds(
        Meta,
        st.sampled_from([b"mg", b"md", b"ma", b"me"]),
        KEYS,
        st.none(),
        st.lists(META_FLAGS, max_size=4, unique_by=lambda f: f[0]).map(tuple),
    ),
    st.builds(
        Meta,
        st.just(b"ms"),
        KEYS,
        SIZES,
        st.lists(META_FLAGS, max_size=4, unique_by=lambda f: f[0]).map(tuple),
    ),
)


@given(COMMANDS)
def test_every_command_round_trips(value: Command) -> None:
    wire = build_command(value)
    assert parse_command(wire) == value
    assert command().parse(command().build(value)) == value


def test_commands_are_values() -> None:
    """Storage and Retrieval set their fields in one step (the hot path's own __init__):
    still frozen, equal and hashed by value, keyword or positional, with their defaults."""
    made = [
        Storage(b"set", b"k", 1, 2, 3),
        Storage(name=b"cas", key=b"k", flags=1, exptime=2, size=3, cas=9, noreply=True),
        Retrieval(b"get", (b"a", b"b")),
        Retrieval(name=b"gat", keys=(b"a",), exptime=5),
    ]
    assert made[0] == Storage(b"set", b"k", 1, 2, 3, None, False)
    assert hash(made[2]) == hash(Retrieval(b"get", (b"a", b"b"), None))
    assert made[3].exptime == 5 and made[1].cas == 9 and made[1].noreply
    for value in made:
        assert parse_command(bytes(value)) == value
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.name = b"x"  # type: ignore[misc]
    assert dataclasses.replace(made[0], key=b"z").key == b"z"


def test_examples() -> None:
    assert parse_command(b"set  k 1 -1 5 noreply") == Storage(b"set", b"k", 1, -1, 5, None, True)
    assert parse_command(b"set k 1 0 5 junk") == Storage(b"set", b"k", 1, 0, 5)  # as memcached
    assert parse_command(b"cas k 0 0 2 77") == Storage(b"cas", b"k", 0, 0, 2, 77)
    assert parse_command(b"gat 10") == Retrieval(b"gat", (), 10)
    assert parse_command(b"delete k 0 noreply") == Delete(b"k", noreply=True)
    meta = parse_command(b"mg k v T30 q")
    assert isinstance(meta, Meta) and meta.flag(b"T") == b"30" and meta.flag(b"v") == b""
    assert meta.flag(b"k") is None
    assert parse_command(b"mn anything") == Meta(b"mn")
    # me reads no flag: any word after its key is kept as it came, E, S or twice
    assert parse_command(b"me k E S S") == Meta(
        b"me", b"k", None, ((b"E", b""), (b"S", b""), (b"S", b""))
    )
    assert parse_command(b"mg k " + b"v" * 17) == Meta(b"mg", b"k", None, ((b"v", b"v" * 16),))
    seventeen = parse_command(b"mg k " + b" ".join(bytes([c]) for c in b"bcfhklqstuvCDFIJL"))
    assert isinstance(seventeen, Meta) and len(seventeen.flags) == 17  # memcached's most
    assert parse_command(b"set k 0 4294967306 1") == Storage(b"set", b"k", 0, (1 << 32) + 10, 1)
    assert parse_command(b"touch k -9223372036854775808") == Touch(b"k", -(1 << 63))
    assert parse_command(b"gat 9223372036854775807 k") == Retrieval(b"gat", (b"k",), (1 << 63) - 1)
    assert value_line(b"k", 3, 5) == b"VALUE k 3 5"
    assert value_line(b"k", 3, 5, cas=9) == b"VALUE k 3 5 9"


@pytest.mark.parametrize(
    ("line", "error", "reply"),
    [
        (b"", UnknownCommand, b"ERROR"),
        (b"bogus", UnknownCommand, b"ERROR"),
        (b"get", UnknownCommand, b"ERROR"),
        (b"set k 0 0", UnknownCommand, b"ERROR"),
        (b"set k 0 0 5 noreply extra", UnknownCommand, b"ERROR"),
        (b"cas k 0 0 5", UnknownCommand, b"ERROR"),
        (b"set k x 0 5", BadCommandLine, b"CLIENT_ERROR bad command line format"),
        (b"set k 0 0 -1", BadCommandLine, b"CLIENT_ERROR bad command line format"),
        (b"set k 0 0 1x", BadCommandLine, b"CLIENT_ERROR bad command line format"),
        (b"get " + b"k" * 251, BadCommandLine, b"CLIENT_ERROR bad command line format"),
        (b"incr k abc", BadCommandLine, b"CLIENT_ERROR invalid numeric delta argument"),
        (b"incr k -1", BadCommandLine, b"CLIENT_ERROR invalid numeric delta argument"),
        (b"touch k abc", BadCommandLine, b"CLIENT_ERROR invalid exptime argument"),
        (b"touch k 9223372036854775808", BadCommandLine, b"CLIENT_ERROR invalid exptime argument"),
        (b"gat -9223372036854775809 k", BadCommandLine, b"CLIENT_ERROR invalid exptime argument"),
        (
            b"set k 0 9223372036854775808 1",
            BadCommandLine,
            b"CLIENT_ERROR bad command line format",
        ),
        (b"gat x k", BadCommandLine, b"CLIENT_ERROR invalid exptime argument"),
        (
            b"delete k x",
            BadCommandLine,
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
        ),
        (b"mg f %", BadCommandLine, b"CLIENT_ERROR invalid flag"),
        (b"ms k", BadCommandLine, b"CLIENT_ERROR bad command line format"),
        # memcached 1.6.18 takes neither E nor S, in any meta command
        (b"mg k E5", BadCommandLine, b"CLIENT_ERROR invalid flag"),
        (b"ms k 1 E7", BadCommandLine, b"CLIENT_ERROR invalid flag"),
        (b"md k S", BadCommandLine, b"CLIENT_ERROR invalid or duplicate flag"),
        (b"ma k E", BadCommandLine, b"CLIENT_ERROR invalid or duplicate flag"),
        (b"mg k v v", BadCommandLine, b"CLIENT_ERROR duplicate flag"),
        (b"mg k " + b"v " * 18, BadCommandLine, b"CLIENT_ERROR options flags are too long"),
        (b"ms k 1 " + b"v " * 17, BadCommandLine, b"CLIENT_ERROR options flags too long"),
        (b"md k " + b"v " * 18, BadCommandLine, b"CLIENT_ERROR options flags too long"),
        (b"set k 0 0 2147483646", BadCommandLine, b"CLIENT_ERROR bad command line format"),
        (b"ms k 2147483646", BadCommandLine, b"CLIENT_ERROR bad command line format"),
    ],
)
def test_refusals_carry_memcacheds_reply(line: bytes, error: type, reply: bytes) -> None:
    with pytest.raises(error) as raised:
        parse_command(line)
    assert isinstance(raised.value, MalformedError)
    assert raised.value.reply == reply


def test_data_blocks() -> None:
    assert data_block(0).parse(b"\r\n") == b""
    assert data_block(5).build(b"he\r\nl") == b"he\r\nl\r\n"
    with pytest.raises(BadDataChunk) as raised:
        data_block(5).parse(b"helloXY")
    assert raised.value.reply == b"CLIENT_ERROR bad data chunk" and raised.value.offset == 5
    with pytest.raises(TruncatedError):
        data_block(5).parse(b"hel")
    assert data_block(5).describe() == "data block(5) + CRLF"


#: words of the lines the quick path reads (get, gets, set), and of the lines it must leave
_HOT_WORDS = st.one_of(
    st.sampled_from([b"get", b"gets", b"set", b"noreply", b"0", b"00", b"+1", b"-1", b"k"]),
    st.sampled_from([b"4294967295", b"4294967296", b"999999999", b"2147483645", b"2147483646"]),
    st.sampled_from([b"9" * 18, b"9" * 19, b"\xff", b"k" * MAX_KEY, b"k" * (MAX_KEY + 1)]),
    st.binary(min_size=1, max_size=4).filter(lambda w: b" " not in w),
)


def _outcome(line: bytes) -> object:
    try:
        return parse_command(line)
    except MemcacheError as error:
        return type(error), error.reply


_NUMBERS = st.one_of(
    st.sampled_from([b"0", b"00", b"+1", b"-1", b"4294967295", b"4294967296", b"2147483645"]),
    st.sampled_from([b"2147483646", b"999999999", b"9" * 18, b"9" * 19, b"x", b"1x"]),
    st.integers(0, 1 << 70).map(lambda n: b"%d" % n),
)
_SETS = st.tuples(
    st.sampled_from([b"set", b"add"]),
    st.sampled_from([b"k", b"k" * MAX_KEY, b"k" * (MAX_KEY + 1)]),
    _NUMBERS,
    _NUMBERS,
    _NUMBERS,
    st.sampled_from([(), (b"noreply",), (b"other",), (b"noreply", b"x")]),
).map(lambda t: [*t[:5], *t[5]])


@pytest.mark.parametrize(
    "line",
    [
        b"set k 4294967295 0 5",
        b"set k 4294967296 0 5",
        b"set k 0 999999999999999999 5",
        b"set k 0 9999999999999999999 5",
        b"set k 0 99999999999999999999 5",
        b"set k 0 0 2147483645",
        b"set k 0 0 2147483646",
        b"set k 0 0 999999999",
        b"set k 0 0 9999999999",
        b"set k 0 -1 5",
        b"set k +0 0 5 noreply",
        b"set " + b"k" * MAX_KEY + b" 0 0 5",
        b"set " + b"k" * (MAX_KEY + 1) + b" 0 0 5",
        b"get " + b"k" * (MAX_KEY + 1),
        b"get a " + b"k" * (MAX_KEY + 1),
        b"gets a b c",
        b"get",
    ],
)
def test_the_quick_paths_edges(line: bytes) -> None:
    assert _outcome(line) == _outcome(b" " + line)


@given(st.one_of(st.lists(_HOT_WORDS, min_size=1, max_size=7), _SETS))
def test_the_quick_path_reads_as_the_general_one(words: list[bytes]) -> None:
    """``get``/``gets``/``set`` lines take a quick path; a leading space (which memcached
    ignores) sends the same line down the general one: both read it alike."""
    line = b" ".join(words)
    assert _outcome(line) == _outcome(b" " + line)


@given(st.binary(max_size=300))
def test_any_line_parses_or_is_refused_with_a_reply(line: bytes) -> None:
    try:
        parsed = parse_command(line)
    except MemcacheError as error:
        assert error.reply.startswith((b"ERROR", b"CLIENT_ERROR"))
    else:
        assert parse_command(bytes(parsed)) == parsed


# -- against the real memcached -------------------------------------------------------------


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    yield from start_memcached()


def _first_reply(port: int, wire: bytes) -> bytes:
    """The first line memcached answers to ``wire``; empty if it answered nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(wire + b"mn\r\n")  # mn answers MN: the end of what this line caused
        seen = b""
        while b"MN\r\n" not in seen:
            chunk = client.recv(65536)
            if not chunk:
                break
            seen += chunk
    first = seen.split(b"\r\n", 1)[0]
    return b"" if first == b"MN" else first


WORDS = st.sampled_from(
    [
        *(b"set", b"get", b"gat", b"delete", b"incr", b"touch", b"cas", b"mg", b"ms", b"md"),
        *(b"k", b"0", b"1", b"-1", b"x", b"noreply", b"v", b"T5", b"%", b"18446744073709551616"),
        *(b"4294967306", b"9223372036854775807", b"-9223372036854775809"),
    ]
)


@given(st.lists(WORDS, min_size=1, max_size=7))
def test_refusals_match_memcached(memcached: int, words: list[bytes]) -> None:
    """Each line: refused here with memcached's own reply, or accepted here and not
    refused by memcached (a storage command is sent with its data block)."""
    line = b" ".join(words)
    if words[0] == b"ms":
        return  # whether memcached reads ms's data block after a refusal is the server's part
    try:
        parsed = parse_command(line)
    except MemcacheError as error:
        assert _first_reply(memcached, line + b"\r\n") == error.reply, line
        return
    if isinstance(parsed, Meta):
        return  # a meta flag's token is the server's to check, not the line's
    block = b""
    if isinstance(parsed, Storage):
        if parsed.size > 64:
            return  # memcached would wait for that many bytes
        block = b"v" * parsed.size + b"\r\n"
    reply = _first_reply(memcached, line + b"\r\n" + block)
    assert not reply.startswith((b"ERROR", b"CLIENT_ERROR")), (line, reply)
