"""Adversarial review of the RESP reply reader and its framing decoder, the RESP server's
globs and WATCH, and memcached's newer meta flags: each failing test is a bug found, each
passing one a pin. Real sockets on 127.0.0.1; redis-server and memcached as references."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from memcached_helpers import serve_example, session, start_memcached
from runtime_helpers import listen, scenario

from grammars import GrammarError, raw
from grammars.resp import MAX_INLINE, NULL_ARRAY, OK, BigNumber, ReplyReader, Simple, resp
from statewire.error import ConnectionLost
from statewire.framing import Framer, FramingError, Policy
from statewire.protocol import Factory, Protocol
from statewire.protocols.glob import Glob
from statewire.protocols.resp_client import RespClient
from statewire.testing.differential import HOST

HUGE_BIG_NUMBER = b"(" + b"1" * 5000 + b"\r\n"


def frames_of(wire: bytes, chunks: list[bytes] | None = None, **limits: int) -> Any:
    """What a resp() framer delivers for ``chunks`` (default: ``wire`` a byte at a time),
    and the errors it reports."""
    got: list[Any] = []
    errors: list[FramingError] = []
    framer = Framer(resp(**limits), got.append, on_error=errors.append)
    for chunk in chunks if chunks is not None else [wire[i : i + 1] for i in range(len(wire))]:
        if framer.error is None:
            framer.feed(chunk)
    return got, [(type(e).__name__, e.offset) for e in errors]


# -- the reply decoder: bugs ----------------------------------------------------------------


def test_a_big_number_past_pythons_digit_limit_is_a_framing_error_not_a_crash() -> None:
    # grammars/resp.py _big: int() of more than 4300 digits raises ValueError, which
    # neither the reader nor the decoder catch: feed() raises it (invariant 5)
    got: list[Any] = []
    errors: list[FramingError] = []
    framer = Framer(resp(), got.append, on_error=errors.append)
    framer.feed(b"+OK\r\n" + HUGE_BIG_NUMBER)
    assert got == [OK]
    assert len(errors) == 1 and errors[0].offset == 5


def test_the_reader_refuses_a_huge_big_number_with_a_grammar_error() -> None:
    with pytest.raises(GrammarError):
        ReplyReader().feed(b"*1\r\n" + HUGE_BIG_NUMBER)


def test_a_client_gets_the_reply_before_a_huge_big_number() -> None:
    # the ValueError escapes the framer in the middle of a batch: the reply cut before it
    # is never delivered, the first request fails as if the server had sent nothing
    class Hostile(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.seen = getattr(self, "seen", b"") + data
            if self.seen.count(b"*2\r\n") == 2:
                self.transport.write(b"$1\r\na\r\n" + HUGE_BIG_NUMBER)

    async def main(reactor: Any) -> list[Any]:
        port = await listen(reactor, Factory.forProtocol(Hostile))
        client = await RespClient.connect(reactor, HOST, port, timeout=5)
        try:
            return list(
                await asyncio.gather(
                    client.call(b"GET", b"a"), client.call(b"GET", b"b"), return_exceptions=True
                )
            )
        finally:
            await client.close()

    first, second = scenario(main, timeout=30)
    assert first == b"a"
    assert isinstance(second, ConnectionLost)


def test_a_simple_string_of_max_inline_bytes_frames_alike_however_cut() -> None:
    # grammars/resp.py ReplyReader.scan (and Resp._line): with the text's MAX_INLINE
    # bytes and its CR read, but not the LF, the line is "too long" -- the same bytes in
    # one read are a good reply (invariant 1)
    wire = b"+" + b"a" * MAX_INLINE + b"\r\n"
    whole = frames_of(wire, [wire])
    assert whole == ([Simple(b"a" * MAX_INLINE)], [])
    assert frames_of(wire, [wire[:-1], wire[-1:]]) == whole


def test_an_error_line_of_max_inline_bytes_frames_alike_however_cut() -> None:
    wire = b"*1\r\n-" + b"E" * MAX_INLINE + b"\r\n"
    assert frames_of(wire, [wire[:-1], wire[-1:]]) == frames_of(wire, [wire])


def slow_and_fast(wire: bytes, **limits: int) -> list[Any]:
    """The errors' kinds and offsets a framer reports for ``wire`` on the fast path, then
    on the grammar's own (``fast=False``)."""
    outcomes = []
    for fast in (True, False):
        errors: list[FramingError] = []
        Framer(resp(**limits), lambda frame: None, on_error=errors.append, fast=fast).feed(wire)
        outcomes.append([(type(e).__name__, e.offset) for e in errors])
    return outcomes


def test_a_too_deep_reply_is_refused_at_the_same_offset_on_both_paths() -> None:
    # ReplyReader.scan refuses the aggregate whose element would be too deep (offset 8);
    # Resp._value, the oracle, refuses the element itself (offset 12)
    fast, slow = slow_and_fast(b"+A\r\n*1\r\n*1\r\n:1\r\n", max_depth=1)
    assert fast == slow


def test_a_too_long_line_is_refused_at_the_same_offset_on_both_paths() -> None:
    # Resp._line raises with ``offset=i``: the text's index in the parsed buffer, no
    # ``base`` (the grammar's path says 1 for a line at stream offset 4)
    fast, slow = slow_and_fast(b"+A\r\n+" + b"a" * (MAX_INLINE + 10))
    assert fast == slow == [("FrameTooLong", 4)]


# -- the reply decoder: pins ---------------------------------------------------------------


def nested(depth: int, leaf: bytes = b":1\r\n") -> bytes:
    return b"*1\r\n" * depth + leaf


@pytest.mark.parametrize("max_depth", [0, 1, 3])
def test_nesting_at_the_depth_limit_reads_and_past_it_is_refused_as_the_grammar_does(
    max_depth: int,
) -> None:
    at, past = nested(max_depth), nested(max_depth + 1)
    assert frames_of(at, max_depth=max_depth)[0] == [resp(max_depth=max_depth).parse(at)]
    got, errors = frames_of(past, max_depth=max_depth)
    assert got == [] and [name for name, _ in errors] == ["FrameTooLong"]
    with pytest.raises(GrammarError):
        resp(max_depth=max_depth).parse(past)
    # an empty aggregate, or a null, one level past: no element, so nothing too deep
    for leaf in (b"*0\r\n", b"*-1\r\n", b"%0\r\n"):
        assert frames_of(nested(max_depth, leaf), max_depth=max_depth)[1] == []


def test_limits_at_the_boundary_read_and_one_past_is_refused_from_the_header() -> None:
    assert frames_of(b"$3\r\nabc\r\n", max_bulk=3)[0] == [b"abc"]
    assert frames_of(b"*2\r\n:1\r\n:2\r\n", max_array=2)[0] == [[1, 2]]
    # past the limit: refused from the header alone, no body sent
    assert frames_of(b"+A\r\n$4\r\n", max_bulk=3) == ([Simple(b"A")], [("FrameTooLong", 4)])
    assert frames_of(b"+A\r\n*3\r\n", max_array=2) == ([Simple(b"A")], [("FrameTooLong", 4)])
    assert frames_of(b"%2\r\n", max_array=1)[1] == [("FrameTooLong", 0)]


@pytest.mark.parametrize(
    "wire",
    [
        b"*3\r\n*-1\r\n$-1\r\n_\r\n",
        b"%2\r\n$-1\r\n*-1\r\n_\r\n*0\r\n",
        b"|1\r\n*-1\r\n_\r\n*2\r\n$-1\r\n*-1\r\n",
        b"~2\r\n=4\r\ntxt:\r\n=5\r\nmkd:x\r\n",
        b">4\r\n,inf\r\n,-inf\r\n,-0\r\n,1.5e300\r\n",
        b"*2\r\n(-123456789012345678901234567890\r\n(0\r\n",
        b"|0\r\n|1\r\n+a\r\n+b\r\n:7\r\n",
    ],
)
def test_odd_values_in_nested_positions_read_as_the_grammar_reads_them(wire: bytes) -> None:
    expected = resp().parse(wire)
    got, errors = frames_of(wire)
    assert errors == [] and got == [expected]


def test_nulls_keep_their_kind_nested() -> None:
    got, _ = frames_of(b"*2\r\n*-1\r\n$-1\r\n")
    assert got == [[NULL_ARRAY, None]] and got[0][0] is NULL_ARRAY
    assert frames_of(b"*1\r\n(-0\r\n")[0] == [[BigNumber(0)]]


@pytest.mark.parametrize("wire", [b"=3\r\ntxt\r\n", b"=0\r\n\r\n", b"=-1\r\n", b"*1\r\n%-1\r\n"])
def test_short_verbatims_and_null_maps_are_refused_however_cut(wire: bytes) -> None:
    got, errors = frames_of(wire)
    assert got == [] and len(errors) == 1
    assert frames_of(wire, [wire]) == (got, errors)


def test_nan_reads_as_nan() -> None:
    got, _ = frames_of(b",nan\r\n")
    assert got[0] != got[0]


def test_discard_on_a_too_long_reply_stops_as_close_keeping_the_bad_reply() -> None:
    got: list[Any] = []
    errors: list[FramingError] = []
    framer = Framer(resp(max_bulk=3), got.append, on_error=errors.append, policy=Policy.DISCARD)
    framer.feed(b"+A\r\n*2\r\n:1\r\n$4\r\nabcd\r\n+B\r\n")
    assert got == [Simple(b"A")] and [e.offset for e in errors] == [12]
    assert framer.error is not None
    assert framer.buffered == b"*2\r\n:1\r\n$4\r\nabcd\r\n+B\r\n"


def test_the_offset_of_an_error_in_a_reply_begun_in_an_earlier_read_is_absolute() -> None:
    got, errors = frames_of(b"", [b"+A\r\n*2\r\n:1\r\n", b"$99\r\nxx"], max_bulk=10)
    assert got == [Simple(b"A")] and errors == [("FrameTooLong", 12)]


def test_a_read_of_one_reply_and_part_of_the_next_then_a_switch_keeps_every_byte() -> None:
    got: list[Any] = []

    def on_frame(frame: Any) -> None:
        got.append(frame)
        if len(got) == 1:
            framer.switch(raw())

    framer = Framer(resp(), on_frame)
    framer.feed(b"*2\r\n:1\r\n:2\r\n*3\r\n:1")
    framer.feed(b"\r\n")
    assert got[0] == [1, 2] and b"".join(got[1:]) == b"*3\r\n:1\r\n"


def test_pause_mid_reply_and_clear_mid_reply() -> None:
    got: list[Any] = []

    def on_frame(frame: Any) -> None:
        got.append(frame)
        framer.pause()

    framer = Framer(resp(), on_frame)
    framer.feed(b"+A\r\n*2\r\n:1\r\n")
    assert (got, framer.buffered, framer.offset) == ([Simple(b"A")], b"*2\r\n:1\r\n", 4)
    framer.feed(b":2\r\n+B")
    framer.resume()
    assert (got[1:], framer.buffered, framer.offset) == ([[1, 2]], b"+B", 16)
    framer.resume()
    framer.feed(b"\r\n")
    assert got[2:] == [Simple(b"B")] and framer.offset == 20

    got.clear()
    plain = Framer(resp(), got.append)
    plain.feed(b"+A\r\n*2\r\n:1\r\n")
    assert plain.clear() == b"*2\r\n:1\r\n" and plain.offset == 12
    plain.feed(b"+C\r\n")
    assert got == [Simple(b"A"), Simple(b"C")] and plain.offset == 16


def calls_to_frame_byte_by_byte(wire: bytes) -> int:
    got: list[Any] = []
    framer = Framer(resp(), got.append)
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += 1

    sys.setprofile(count)
    try:
        for i in range(len(wire)):
            framer.feed(wire[i : i + 1])
    finally:
        sys.setprofile(None)
    assert len(got) == 1
    return calls


@pytest.mark.parametrize("element", [b":1\r\n", b"_\r\n", b"*0\r\n", b"|1\r\n+a\r\n+b\r\n_\r\n"])
def test_a_huge_array_of_tiny_elements_fed_byte_by_byte_costs_linear_work(element: bytes) -> None:
    def work(n: int) -> int:
        return calls_to_frame_byte_by_byte(b"*%d\r\n" % n + element * n)

    small, large = work(500), work(2000)
    assert large <= 4.4 * small  # 4x the elements: about 4x the calls, not 16x


# -- globs against redis-server ------------------------------------------------------------


def command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def conversation(port: int, steps: list[tuple[int, bytes]]) -> list[bytes]:
    """Send each step's bytes on connection 0 or 1 (opened on ``port``), then ``PING``;
    return what came back before each ``+PONG``. Bounded: 5 s a step."""
    socks = [socket.create_connection((HOST, port), timeout=5) for _ in range(2)]
    try:
        replies = []
        for who, data in steps:
            sock = socks[who]
            if not data:
                time.sleep(0.25)  # (an expiry: a PX of 100 ms has passed)
                continue
            sock.sendall(data + b"PING\r\n")
            got = b""
            while not got.endswith(b"+PONG\r\n"):
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
            replies.append(got[:-7])
        return replies
    finally:
        for sock in socks:
            sock.close()


GLOB_KEYS = [b"", b"a", b"ab", b"a*b", b"a]", b"\\", b"\x7f", b"\x80", b"\xff", b"-", b"^", b"[a"]
GLOB_PATTERNS = [
    b"*",
    b"**",
    b"",
    b"?",
    b"[",
    b"[^",
    b"[]a]",
    b"[a-]",
    b"[^a-]",
    b"[\x7f-\x80]",
    b"[\x01-\x80]",
    b"[z-a]",
    b"a\\",
    b"\\*",
    b"a\\*b",
    b"[\\]]",
    b"*[",
    b"a*" * 1001,
    b"*a" * 1000,
    b"*a" * 1001 + b"*",
]


def test_globs_match_as_redis_keys_does(mini_port: int, redis_port: int) -> None:
    setup = command(b"FLUSHALL") + b"".join(command(b"SET", k, b"1") for k in GLOB_KEYS)
    asks = [(0, setup)] + [(0, command(b"KEYS", p)) for p in GLOB_PATTERNS]
    ours, theirs = conversation(mini_port, asks), conversation(redis_port, asks)
    decoded = [
        (sorted(resp().parse(a)), sorted(resp().parse(b)))
        for a, b in zip(ours[1:], theirs[1:], strict=True)
    ]
    for pattern, (mine, real) in zip(GLOB_PATTERNS, decoded, strict=True):
        assert mine == real, pattern


PUBSUB_SESSIONS = [
    # ``*`` takes no empty channel in PUBLISH (Redis's KEYS shortcut is KEYS's alone)
    [(0, b"PSUBSCRIBE *\r\n"), (1, command(b"PUBLISH", b"", b"m") + b"PUBLISH x m\r\n")],
    # (one pattern per channel: Redis sends a channel's pmessages in its dict's hash order)
    [(0, b"PSUBSCRIBE a* a* [b\r\n"), (1, b"PUBLISH a m\r\nPUBLISH ab m\r\nPUBLISH b m\r\n")],
    [(0, b"PSUBSCRIBE " + b"a*" * 1001 + b"\r\n"), (1, b"PUBLISH " + b"a" * 1001 + b" m\r\n")],
    [(0, b"PSUBSCRIBE [\x7f-\x80]\r\n"), (1, command(b"PUBLISH", b"\xff", b"m"))],
]


def pubsub_conversation(port: int, steps: list[tuple[int, bytes]]) -> list[bytes]:
    """:func:`conversation` with a RESP3 subscriber (connection 0): the pushes it got are
    read with the reply to its last step."""
    return conversation(port, [(0, b"HELLO 3\r\n"), *steps, (0, b"PUNSUBSCRIBE\r\n")])


@pytest.mark.parametrize("steps", PUBSUB_SESSIONS, ids=range(len(PUBSUB_SESSIONS)))
def test_pattern_subscriptions_get_what_redis_sends(
    mini_port: int, redis_port: int, steps: list[tuple[int, bytes]]
) -> None:
    ours, theirs = pubsub_conversation(mini_port, steps), pubsub_conversation(redis_port, steps)
    hello = 1  # HELLO's reply names the client's id, which differs
    assert ours[hello:] == theirs[hello:]


def test_a_hostile_glob_costs_at_most_subject_times_pattern_steps() -> None:
    pattern, subject = b"*a" * 40 + b"b", b"a" * 400
    glob = Glob(pattern)
    steps = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        if frame.f_code is Glob.match.__code__:
            steps += 1
            return trace
        return None

    sys.settrace(trace)
    try:
        assert glob.match(subject) is False
    finally:
        sys.settrace(None)
    assert steps <= 8 * len(pattern) * len(subject)


# -- WATCH against redis-server -------------------------------------------------------------

EXEC = command(b"MULTI") + command(b"SET", b"w", b"1") + command(b"EXEC")
WATCH_SESSIONS = [
    [(0, b"FLUSHALL\r\nSET k v\r\nWATCH k\r\nSET k v\r\n"), (0, EXEC)],
    [(0, b"FLUSHALL\r\nSET k v\r\nWATCH k\r\nGET k\r\n"), (0, EXEC)],
    [(0, b"FLUSHALL\r\nSET k v\r\nWATCH k\r\n"), (1, b"PERSIST k\r\nSET k v NX\r\n"), (0, EXEC)],
    [(0, b"FLUSHALL\r\nWATCH k\r\n"), (1, b"FLUSHDB\r\nDEL k\r\nSET k v XX\r\n"), (0, EXEC)],
    [(0, b"FLUSHALL\r\nSET k v\r\nWATCH k\r\n"), (1, b"SELECT 1\r\nFLUSHDB\r\n"), (0, EXEC)],
    [(0, b"FLUSHALL\r\nSET k v\r\nWATCH k\r\n"), (1, b"FLUSHALL\r\n"), (0, EXEC)],
    [(0, b"FLUSHALL\r\nSELECT 1\r\nWATCH k\r\nSELECT 0\r\n"), (1, b"SET k v\r\n"), (0, EXEC)],
    [
        (0, b"FLUSHALL\r\nSELECT 1\r\nWATCH k\r\nSELECT 0\r\n"),
        (1, b"SELECT 1\r\nSET k v\r\n"),
        (0, EXEC),
    ],
    [(0, b"FLUSHALL\r\nSET k v PX 100\r\nWATCH k\r\nSELECT 1\r\n"), (0, b""), (0, EXEC)],
    [
        (0, b"FLUSHALL\r\nSET k v PX 100\r\n"),
        (0, b""),
        (0, b"WATCH k\r\n"),
        (1, b"DEL k\r\n"),
        (0, EXEC),
    ],
    [
        (0, b"FLUSHALL\r\nSET k v PX 100\r\n"),
        (0, b""),
        (0, b"WATCH k\r\n"),
        (1, b"SET k v\r\n"),
        (0, EXEC),
    ],
    [(0, b"FLUSHALL\r\nSET k 1\r\nWATCH k\r\n"), (1, b'INCRBY k 0\r\nAPPEND k ""\r\n'), (0, EXEC)],
]


@pytest.mark.parametrize("steps", WATCH_SESSIONS, ids=range(len(WATCH_SESSIONS)))
def test_watch_sessions_answer_as_redis(
    mini_port: int, redis_port: int, steps: list[tuple[int, bytes]]
) -> None:
    assert conversation(mini_port, steps) == conversation(redis_port, steps)


# -- memcached's meta flags against memcached --------------------------------------------------


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    yield from start_memcached()


@pytest.fixture(scope="module")
def served() -> Iterator[int]:
    yield from serve_example()


def same_session(ours: int, theirs: int, data: bytes) -> None:
    data = b"flush_all\r\n" + data
    assert session(ours, data) == session(theirs, data)


@pytest.mark.parametrize(
    "data",
    [
        b"set k 0 0 2\r\n15\r\nmg k v\r\ndecr k 10\r\nmg k v\r\n",
        b"set k 0 0 1\r\n5\r\nmd k I\r\nmg k v\r\nincr k 1\r\nmg k v\r\n",
        b"set k 0 0 1\r\n5\r\nmd k I\r\nmg k v\r\nma k\r\nmg k v\r\n",
    ],
    ids=["decr", "incr-stale", "ma-stale"],
)
@pytest.mark.xfail(
    strict=True,
    reason="known difference: memcached rewrites a number in place only when no queued "
    "reply still holds the item, so what incr/decr/ma do after an mg depends on how the "
    "pipeline was cut into reads (and on its 20 requests per event); statewire's replies "
    "must not depend on chunking (ARCHITECTURE invariant 1), so it always rewrites in "
    "place, as memcached does on a connection that waits for each reply",
)
def test_a_number_changed_right_after_a_pipelined_mg_is_a_new_item(
    served: int, memcached: int, data: bytes
) -> None:
    # memcached rewrites a number in place only when nobody else holds the item; an mg's
    # reply, queued in the same batch, still does: incr/decr/ma then store a new item --
    # no space padding, no X/Z of a stale item. statewire/protocols/_memcache_ops.py
    # _add_delta always rewrites in place (``replace`` keeps ``stale`` and ``won``).
    # (Classic ``get`` releases the item: ``get k``, ``decr k 10`` pads, in both.)
    same_session(served, memcached, data)


@pytest.mark.parametrize(
    "line",
    [b"ms " + b"QUFB" * 62 + b"QQ== 1 b", b"ms " + b"a" * 251 + b" 1"],
    ids=["base64", "plain"],
)
def test_ms_with_a_key_token_over_250_bytes_does_not_swallow_its_data(
    served: int, memcached: int, line: bytes
) -> None:
    # memcached refuses the key before reading the data length: the data line is then
    # read as a command (ERROR); ours swallows it
    same_session(served, memcached, line + b"\r\nx\r\nmg k\r\n")


def test_mg_h_and_l_flags_answer_as_memcached(served: int, memcached: int) -> None:
    same_session(served, memcached, b"set s 0 0 2\r\nhi\r\nmg s h l\r\nmg s h l v\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"set s 0 0 2\r\nhi\r\nmd s I\r\nmd s I\r\nmg s v\r\nmg s v\r\n",
        b"set s 0 0 2\r\nhi\r\nmd s I\r\nms s 2 MA\r\nxx\r\nmg s v\r\n",
        b"set s 0 0 2\r\nhi\r\nmd s I\r\nms s 2 I MS\r\nxx\r\nmg s v\r\n",
        b"mg n N30 v\r\nmd n I\r\nmg n v\r\nmg n v\r\n",
        b"set k 0 100 1\r\n5\r\nmg k R100\r\nmg k R101\r\nmg k R4294967296\r\n",
        b"mg k N4294967296 t v\r\nmg k v t\r\n",
        b"mg " + b"QUFB" * 62 + b"QQ== b v\r\nmd Zm9v b I\r\nmg Zm9v b b v\r\n",
        b"set s 0 0 2\r\nhi\r\nmd s I\r\nmg s\r\nmg s q\r\nmg s k q\r\nmn\r\n",
    ],
)
def test_meta_sessions_pinned_against_memcached(served: int, memcached: int, data: bytes) -> None:
    same_session(served, memcached, data)


def test_ma_with_a_cas_that_does_not_match_is_refused(served: int, memcached: int) -> None:
    # memcached compares ma's C token with the item's CAS (EX when they differ); ours
    # ignores C and changes the number
    same_session(
        served, memcached, b"set k 0 0 1\r\n5\r\nma k C1 v\r\nmg k v\r\nma k C1 q\r\nmn\r\n"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"mg k E5 v\r\n",
        b"ms k 1 E7\r\nx\r\nmg k c v\r\n",
        b"md k E5\r\n",
        b"ma k E5\r\n",
        b"mg k S\r\nmd k S\r\n",
        b"mg k D\r\nmd k D\r\n",
    ],
    ids=["mg-E", "ms-E", "md-E", "ma-E", "S", "D"],
)
def test_meta_flags_memcached_refuses_are_refused(
    served: int, memcached: int, data: bytes
) -> None:
    # grammars/memcache.py META_FLAGS takes the same letters for every meta command, E
    # and S included; memcached 1.6.18 (the version the server reports) refuses them,
    # and ours then ignores them (``ms k 1 E7`` stores a CAS that is not 7)
    same_session(served, memcached, b"set k 0 0 1\r\n5\r\n" + data)
