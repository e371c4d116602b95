"""Pattern pub/sub (PSUBSCRIBE, PUNSUBSCRIBE, pmessage) and the Redis glob matcher: the
matcher against a real redis-server's KEYS on generated patterns, the connection's machine
in memory, and whole subscriber/publisher sessions replayed against miniredis and
redis-server, RESP2 and RESP3, compared byte for byte (up to the order Redis gives its own
hash tables)."""

from __future__ import annotations

import socket
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_resp_server import Client, normalized

from grammars import request, resp
from grammars.resp import Push
from statewire.protocols.resp import Glob
from statewire.testing import differential
from statewire.testing.differential import HOST, Sentinel

END = Sentinel(request().build([b"PING", b"__end__!!"]), b"$9\r\n__end__!!\r\n")


# -- the glob matcher -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        (b"*", b"anything", True),
        (b"*", b"", False),  # the empty string matches only the empty pattern
        (b"", b"", True),
        (b"**", b"a", True),
        (b"a*", b"a", True),
        (b"a*b", b"a", False),
        (b"a*b*c", b"aXbYc", True),
        (b"a*b*c", b"aXbYcd", False),
        (b"?", b"", False),
        (b"?", b"\xff", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"[z-a]", b"b", True),  # a range's ends in either order
        (b"[a-]", b"]", True),  # the range from a to ]
        (b"[a-]", b"\\", False),
        (b"[a-]]", b"a", True),
        (b"[", b"a", False),  # an unclosed [ is a set ending with the pattern
        (b"[a", b"a", True),
        (b"[]", b"a", False),
        (b"[^]", b"a", True),
        (b"[^", b"z", True),
        (b"[]a]", b"a]", False),
        (b"[\\]]", b"]", True),
        (b"\\*", b"*", True),
        (b"\\*", b"a", False),
        (b"\\", b"\\", True),  # a trailing backslash is itself
        (b"[\x7f-\x80]", b"a", True),  # compared as signed chars: -128..127
        (b"[\x01-\x80]", b"a", False),
        (b"a" + b"*a" * 1000, b"a" * 1001, True),
        (b"a" + b"*a" * 1001, b"a" * 1002, False),  # past Redis's nesting limit
        (b"*" * 5000 + b"x", b"a" * 5000, False),  # runs of stars are one, no blow-up
    ],
)
def test_globs_read_as_redis_reads_them(pattern: bytes, subject: bytes, matches: bool) -> None:
    assert Glob(pattern).match(subject) is matches


def test_a_long_pattern_costs_memory_in_proportion_to_its_length() -> None:
    pattern = b"[a-z\x80-\xff]" * 20_000  # 200 KB of sets, each of 150 bytes
    tracemalloc.start()
    try:
        glob = Glob(pattern)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 100 * len(pattern)  # (a set of 150 Python ints would be 40 times this)
    assert glob.match(b"q" * 20_000) and not glob.match(b"Q" * 20_000)


#: what patterns and subjects are made of: the special bytes and a few ordinary ones
GLOB_BYTES = [b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b", b"z", b"\x80", b"\xff"]
glob_text = st.lists(st.sampled_from(GLOB_BYTES), max_size=8).map(b"".join)


def _keys(port: int, subjects: list[bytes], pattern: bytes) -> set[bytes]:
    """The subjects a real Redis's ``KEYS pattern`` finds among ``subjects``."""
    words = [[b"FLUSHALL"], *([b"SET", s, b"1"] for s in subjects), [b"KEYS", pattern]]
    replies = differential.exchange(port, b"".join(request().build(w) for w in words), END)
    found, i = None, 0
    while i < len(replies):
        scanned = resp(2).scan(replies, i, len(replies))
        assert scanned is not None
        found, i = scanned
    assert isinstance(found, list)
    return set(found)


@given(pattern=glob_text, subjects=st.lists(glob_text, min_size=1, max_size=8, unique=True))
def test_the_matcher_agrees_with_redis_keys(
    redis_port: int, pattern: bytes, subjects: list[bytes]
) -> None:
    if pattern == b"*":
        return  # KEYS * is Redis's shortcut (it takes the empty key); not the matcher
    glob = Glob(pattern)
    assert {s for s in subjects if glob.match(s)} == _keys(redis_port, subjects, pattern)


@given(pattern=glob_text, subjects=st.lists(glob_text, min_size=1, max_size=8, unique=True))
def test_miniredis_keys_finds_what_redis_finds(
    mini_port: int, redis_port: int, pattern: bytes, subjects: list[bytes]
) -> None:
    assert _keys(mini_port, subjects, pattern) == _keys(redis_port, subjects, pattern)


# -- in memory: the machine ------------------------------------------------------------------


def test_patterns_and_channels_share_one_count_and_leave_together() -> None:
    client = Client()
    assert client(b"PSUBSCRIBE n* x?\r\nSUBSCRIBE news\r\n") == (
        b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n"
        b"*3\r\n$10\r\npsubscribe\r\n$2\r\nx?\r\n:2\r\n"
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:3\r\n"
    )
    assert client.state == "subscribed"
    assert client(b"UNSUBSCRIBE\r\n") == b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:2\r\n"
    assert client.state == "subscribed"  # patterns remain
    assert client(b"UNSUBSCRIBE\r\n") == b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:2\r\n"
    assert client(b"PUNSUBSCRIBE nope\r\n") == b"*3\r\n$12\r\npunsubscribe\r\n$4\r\nnope\r\n:2\r\n"
    assert client(b"PUNSUBSCRIBE\r\n") == (
        b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:1\r\n"
        b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nx?\r\n:0\r\n"
    )
    assert client.state == "ready"
    assert client(b"PUNSUBSCRIBE\r\n") == b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
    assert client.state == "ready"
    assert not client.factory.pattern_subscribers


def test_a_pattern_subscriber_gets_pmessages_and_is_counted_per_subscription() -> None:
    listener = Client()
    listener(b"PSUBSCRIBE news.*\r\nSUBSCRIBE news.art\r\n")
    listener.transport.clear()
    publisher = Client(factory=listener.factory)
    assert publisher(b"PUBLISH news.art hi\r\nPUBLISH sport x\r\n") == b":2\r\n:0\r\n"
    assert listener.transport.value() == (
        b"*3\r\n$7\r\nmessage\r\n$8\r\nnews.art\r\n$2\r\nhi\r\n"
        b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$8\r\nnews.art\r\n$2\r\nhi\r\n"
    )
    listener(b"QUIT\r\n")
    assert publisher(b"PUBLISH news.art hi\r\n") == b":0\r\n"
    assert not listener.factory.pattern_subscribers and not listener.factory.subscribers


def test_resp3_pattern_messages_are_pushes_and_any_command_runs() -> None:
    client = Client()
    client(b"HELLO 3\r\n")
    assert client(b"PSUBSCRIBE c*\r\nPUBLISH cat x\r\nGET k\r\n") == (
        b">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:1\r\n"
        b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$3\r\ncat\r\n$1\r\nx\r\n:1\r\n_\r\n"
    )
    assert client(b"PUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n") == (
        b">3\r\n$12\r\npunsubscribe\r\n$2\r\nc*\r\n:0\r\n>3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n"
    )
    assert client.state == "ready"


@pytest.mark.parametrize(
    ("verb", "mine", "registry"),
    [
        (b"PSUBSCRIBE", "patterns", "pattern_subscribers"),
        (b"SSUBSCRIBE", "shard_channels", "shard_subscribers"),
    ],
)
def test_reset_quit_and_a_lost_connection_drop_the_subscriptions(
    verb: bytes, mine: str, registry: str
) -> None:
    client = Client()
    client(verb + b" a b\r\n")
    other = Client(factory=client.factory)
    other(verb + b" a\r\n")
    assert client(b"RESET\r\n") == b"+RESET\r\n"
    assert client.state == "ready" and not getattr(client.protocol, mine)
    assert set(getattr(client.factory, registry)) == {b"a"}
    other.protocol.connectionLost()
    assert not getattr(client.factory, registry)
    client(verb + b" x\r\nQUIT\r\n")
    assert not getattr(client.factory, registry)


def test_shard_channels_keep_their_own_count_and_keep_the_client_subscribed() -> None:
    client = Client()
    assert client(b"SSUBSCRIBE a b\r\nSUBSCRIBE c\r\n") == (
        b"*3\r\n$10\r\nssubscribe\r\n$1\r\na\r\n:1\r\n"
        b"*3\r\n$10\r\nssubscribe\r\n$1\r\nb\r\n:2\r\n"
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    )
    assert client(b"UNSUBSCRIBE\r\n") == b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n"
    assert client.state == "subscribed"  # shard channels remain
    publisher = Client(factory=client.factory)
    client.transport.clear()
    assert (
        publisher(b"SPUBLISH a hi\r\nPUBLISH a no\r\nSPUBLISH c no\r\n") == b":1\r\n:0\r\n:0\r\n"
    )
    assert client.transport.value() == b"*3\r\n$8\r\nsmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
    assert client(b"SUNSUBSCRIBE b\r\nSUNSUBSCRIBE\r\n") == (
        b"*3\r\n$12\r\nsunsubscribe\r\n$1\r\nb\r\n:1\r\n"
        b"*3\r\n$12\r\nsunsubscribe\r\n$1\r\na\r\n:0\r\n"
    )
    assert client.state == "ready" and not client.factory.shard_subscribers
    assert client(b"SUNSUBSCRIBE\r\n") == b"*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n"


def test_ssubscribe_in_a_transaction_is_queued_like_subscribe() -> None:
    client = Client()
    assert client(b"MULTI\r\nSSUBSCRIBE x\r\nSUNSUBSCRIBE\r\nDISCARD\r\n") == (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+OK\r\n"
    )
    assert client.state == "ready"


def test_psubscribe_in_a_transaction_is_queued_like_subscribe() -> None:
    client = Client()
    assert client(b"MULTI\r\nPSUBSCRIBE x\r\nPUNSUBSCRIBE\r\nDISCARD\r\n") == (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+OK\r\n"
    )


# -- PUBSUB: what the registries hold ---------------------------------------------------------

IN_PUBSUB_MODE = (
    b"only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
)


def test_pubsub_reads_the_channel_pattern_and_shard_registries() -> None:
    listener = Client()
    listener(b"SUBSCRIBE news news.art\r\nPSUBSCRIBE n* n*\r\nSSUBSCRIBE s1 s2\r\n")
    other = Client(factory=listener.factory)
    other(b"HELLO 3\r\nSUBSCRIBE news\r\nPSUBSCRIBE n* x?\r\nSSUBSCRIBE s1\r\n")
    asker = Client(factory=listener.factory)
    assert asker(b"PUBSUB NUMSUB news news.art zz news\r\nPUBSUB NUMSUB\r\n") == (
        b"*8\r\n$4\r\nnews\r\n:2\r\n$8\r\nnews.art\r\n:1\r\n$2\r\nzz\r\n:0\r\n"
        b"$4\r\nnews\r\n:2\r\n*0\r\n"
    )
    assert asker(b"PUBSUB NUMPAT\r\n") == b":2\r\n"  # n* and x?: each pattern once
    assert sorted(asker.protocol.factory.active_channels()) == [b"news", b"news.art"]
    assert asker(b"pubsub channels *.art\r\nPUBSUB CHANNELS s*\r\n") == (
        b"*1\r\n$8\r\nnews.art\r\n*0\r\n"  # shard channels are not channels
    )
    assert asker(b"PUBSUB SHARDCHANNELS ?1\r\nPUBSUB SHARDNUMSUB s1 s2 news\r\n") == (
        b"*1\r\n$2\r\ns1\r\n*6\r\n$2\r\ns1\r\n:2\r\n$2\r\ns2\r\n:1\r\n$4\r\nnews\r\n:0\r\n"
    )
    listener(b"RESET\r\n")  # what is left: the other client's
    assert asker(b"PUBSUB CHANNELS\r\nPUBSUB NUMPAT\r\nPUBSUB SHARDCHANNELS\r\n") == (
        b"*1\r\n$4\r\nnews\r\n:2\r\n*1\r\n$2\r\ns1\r\n"
    )
    other.protocol.connectionLost()
    assert asker(b"PUBSUB CHANNELS\r\nPUBSUB NUMPAT\r\nPUBSUB SHARDNUMSUB s1\r\n") == (
        b"*0\r\n:0\r\n*2\r\n$2\r\ns1\r\n:0\r\n"
    )


def test_pubsub_patterns_are_redis_globs_without_the_star_shortcut() -> None:
    listener = Client()
    listener(b'SUBSCRIBE "" a[b\r\n')
    asker = Client(factory=listener.factory)
    # "*" matches no empty name (Redis's KEYS has a shortcut for it; PUBSUB has none)
    assert asker(b'PUBSUB CHANNELS *\r\nPUBSUB CHANNELS ""\r\n') == (
        b"*1\r\n$3\r\na[b\r\n*1\r\n$0\r\n\r\n"
    )
    assert asker(b"PUBSUB CHANNELS a[[]b\r\nPUBSUB CHANNELS a\\[b\r\n") == (
        b"*1\r\n$3\r\na[b\r\n" * 2
    )


def test_pubsub_subcommands_and_arities_are_checked_as_redis_checks_them() -> None:
    client = Client()
    assert client(b"PUBSUB\r\nPUBSUB nOpE x\r\nPUBSUB NUMPAT x\r\nPUBSUB HELP x\r\n") == (
        b"-ERR wrong number of arguments for 'pubsub' command\r\n"
        b"-ERR unknown subcommand 'nOpE'. Try PUBSUB HELP.\r\n"
        b"-ERR wrong number of arguments for 'pubsub|numpat' command\r\n"
        b"-ERR wrong number of arguments for 'pubsub|help' command\r\n"
    )
    # CHANNELS takes one pattern: its handler says so, naming the subcommand as sent
    assert client(b"PUBSUB channels a b\r\nPUBSUB SHARDCHANNELS a b\r\n") == (
        b"-ERR unknown subcommand or wrong number of arguments for 'channels'. "
        b"Try PUBSUB HELP.\r\n"
        b"-ERR unknown subcommand or wrong number of arguments for 'SHARDCHANNELS'. "
        b"Try PUBSUB HELP.\r\n"
    )
    help_text = client(b"PUBSUB help\r\n")
    assert help_text.startswith(
        b"*14\r\n+PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"
    )
    assert help_text.endswith(b"+HELP\r\n+    Prints this help.\r\n")
    client(b"HELLO 3\r\n")
    assert client(b"PUBSUB HELP\r\n") == help_text  # simple strings in RESP3 as well


def test_resp2_pub_sub_mode_refuses_pubsub_naming_the_subcommand() -> None:
    client = Client()
    client(b"SUBSCRIBE a\r\n")
    assert client(b"PUBSUB NUMSUB a\r\npubsub Channels x y\r\nCLIENT id\r\n") == (
        b"-ERR Can't execute 'pubsub|numsub': " + IN_PUBSUB_MODE + b"\r\n"
        b"-ERR Can't execute 'pubsub|channels': " + IN_PUBSUB_MODE + b"\r\n"
        b"-ERR Can't execute 'client|id': " + IN_PUBSUB_MODE + b"\r\n"
    )
    # an unknown subcommand and a wrong arity are answered first, as anywhere
    assert client(b"PUBSUB NOPE\r\nPUBSUB\r\n") == (
        b"-ERR unknown subcommand 'NOPE'. Try PUBSUB HELP.\r\n"
        b"-ERR wrong number of arguments for 'pubsub' command\r\n"
    )
    assert client.state == "subscribed"


def test_resp3_pub_sub_mode_and_transactions_run_pubsub() -> None:
    client = Client()
    client(b"HELLO 3\r\nSUBSCRIBE a\r\n")
    assert client(b"PUBSUB NUMSUB a\r\nPUBSUB CHANNELS\r\n") == (
        b"*2\r\n$1\r\na\r\n:1\r\n*1\r\n$1\r\na\r\n"  # NUMSUB: a flat array, no map
    )
    assert client(b"MULTI\r\nPUBSUB NUMPAT\r\nPUBSUB CHANNELS a b\r\nEXEC\r\n") == (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:0\r\n"
        b"-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. "
        b"Try PUBSUB HELP.\r\n"
    )
    assert client(b"MULTI\r\nPUBSUB NUMPAT x\r\nEXEC\r\n") == (
        b"+OK\r\n-ERR wrong number of arguments for 'pubsub|numpat' command\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    )
    assert client.state == "subscribed"


# -- over sockets: a subscriber and a publisher, against both servers -----------------------


def _read_until(sock: socket.socket, end: bytes, deadline: float) -> bytes:
    got = b""
    while not got.endswith(end):
        if time.monotonic() > deadline or len(got) > 1 << 20:
            raise AssertionError(f"no {end!r} in {got[-200:]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {end!r}: {got[-200:]!r}")
        got += chunk
    return got


def two_clients(port: int, subscriber: bytes, publisher: bytes) -> tuple[bytes, bytes]:
    """A subscriber sends ``subscriber`` (its subscriptions), then a publisher sends
    ``publisher``; then the subscriber resets. Both transcripts. Bounded: 10 s, 1 MiB."""
    deadline = time.monotonic() + 10
    mark = b"__subscribed__"
    with socket.create_connection((HOST, port), timeout=10) as sub:
        # PING answers in every mode; its argument closes the reply in each of them
        sub.sendall(subscriber + request().build([b"PING", mark]))
        heard = _read_until(sub, mark + b"\r\n", deadline)
        published = differential.exchange(port, publisher, END)
        sub.sendall(b"RESET\r\n")
        heard += _read_until(sub, b"+RESET\r\n", deadline)
    return heard, published


def _frames(replies: bytes) -> list[tuple[bytes, Any]]:
    out, i = [], 0
    while i < len(replies):
        scanned = resp(3).scan(replies, i, len(replies))
        assert scanned is not None, replies[i:]
        value, j = scanned
        out.append((replies[i:j], value))
        i = j
    return out


def _kind(value: Any) -> bytes | None:
    items = value.items if isinstance(value, Push) else value
    if isinstance(items, (list, tuple)) and items and isinstance(items[0], bytes):
        return items[0]
    return None


_ORDERED_BY_HASH = (b"unsubscribe", b"sunsubscribe", b"pmessage")


def unordered(replies: bytes) -> bytes:
    """The replies, with what Redis orders by its hash tables put in one order: the
    channels an ``UNSUBSCRIBE`` (or ``SUNSUBSCRIBE``) of all lists (each confirmation
    keeps its count), and the ``pmessage`` of several patterns a message matched."""
    frames = _frames(normalized(replies))
    out: list[bytes] = []
    i = 0
    while i < len(frames):
        kind = _kind(frames[i][1])
        j = i
        while j < len(frames) and _kind(frames[j][1]) == kind:
            j += 1
        run = frames[i:j] if kind in _ORDERED_BY_HASH else frames[i : i + 1]
        if kind == b"pmessage":
            out += sorted(frame for frame, _ in run)
        elif kind in (
            b"unsubscribe",
            b"sunsubscribe",
        ):  # (a confirmation naming no channel stays as it is)
            names = iter(sorted(_name_of(value) for _, value in run if _name_of(value)))
            out += [
                frame.replace(_name_of(value), next(names), 1) if _name_of(value) else frame
                for frame, value in run
            ]
        else:
            out.append(run[0][0])
        i += len(run)
    return b"".join(out)


def _name_of(value: Any) -> bytes:
    items = value.items if isinstance(value, Push) else value
    name = items[1]
    return b"$%d\r\n%s\r\n" % (len(name), name) if isinstance(name, bytes) else b""


def channel_lists_sorted(replies: bytes) -> bytes:
    """The publisher's replies, each array of names alone (``PUBSUB CHANNELS``,
    ``SHARDCHANNELS``: in Redis's hash table's order) sorted; the rest as it is. (The
    publisher never subscribes, so no message is such an array.)"""
    out = []
    for frame, value in _frames(replies):
        if isinstance(value, list) and all(isinstance(name, bytes) for name in value):
            names = sorted(b"$%d\r\n%s\r\n" % (len(name), name) for name in value)
            frame = b"*%d\r\n%s" % (len(value), b"".join(names))
        out.append(frame)
    return b"".join(out)


def same_transcripts(mini: int, real: int, subscriber: bytes, publisher: bytes) -> None:
    ours = two_clients(mini, subscriber, publisher)
    theirs = two_clients(real, subscriber, publisher)
    assert unordered(ours[0]) == unordered(theirs[0]), (subscriber, publisher)
    assert channel_lists_sorted(ours[1]) == channel_lists_sorted(theirs[1]), (
        subscriber,
        publisher,
    )


CHANNELS = [b"news", b"news.art", b"nexus", b"a[b", b"x*", b"", b"\xff"]
PATTERNS = [b"news*", b"ne?s", b"n[ae]*", b"*", b"x\\*", b"a[[]b", b"[^n]*", b"*s"]


#: ``PUBSUB``'s counting subcommands, whose replies keep the order asked (no hash table's):
#: NUMPAT, and NUMSUB and SHARDNUMSUB of up to two channels
counting = st.one_of(
    st.just([b"NUMPAT"]),
    st.tuples(
        st.sampled_from([b"NUMSUB", b"SHARDNUMSUB", b"numsub"]),
        st.lists(st.sampled_from(CHANNELS), max_size=2),
    ).map(lambda q: [q[0], *q[1]]),
)


def _words(*words: bytes) -> bytes:
    wire: bytes = request().build(list(words))
    return wire


subscriptions = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([b"SUBSCRIBE", b"UNSUBSCRIBE"]),
            st.lists(st.sampled_from(CHANNELS), max_size=3),
        ),
        st.tuples(
            st.sampled_from([b"PSUBSCRIBE", b"PUNSUBSCRIBE"]),
            st.lists(st.sampled_from(PATTERNS), max_size=3),
        ),
        st.tuples(
            st.sampled_from([b"SSUBSCRIBE", b"SUNSUBSCRIBE"]),
            st.lists(st.sampled_from(CHANNELS), max_size=3),
        ),
        st.tuples(st.just(b"PING"), st.sampled_from([[], [b"hi"]])),
        # refused in RESP2 pub/sub mode; their replies do not depend on hash tables
        st.tuples(st.just(b"PUBSUB"), counting),
    ).filter(lambda c: c[1] or c[0] in _TAKE_NONE),
    max_size=6,
)
_TAKE_NONE = (b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE", b"PING")
#: what a transaction queues: the pub/sub commands run at EXEC, inside its array, and GET and
#: PING (answered as in pub/sub mode once a SUBSCRIBE ran). Each names what it (un)subscribes
#: (to all: Redis's order of several channels is its hash table's, which ``unordered`` puts
#: right only outside an array) but PUNSUBSCRIBE (patterns: in the order given)
queued = st.one_of(
    st.tuples(
        st.sampled_from([b"SUBSCRIBE", b"UNSUBSCRIBE", b"SSUBSCRIBE", b"SUNSUBSCRIBE"]),
        st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2),
    ),
    st.tuples(
        st.sampled_from([b"PSUBSCRIBE", b"PUNSUBSCRIBE"]),
        st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2),
    ),
    st.tuples(st.sampled_from([b"PUNSUBSCRIBE", b"GET", b"PING"]), st.just([])).map(
        lambda c: (c[0], [b"k"] if c[0] == b"GET" else [])
    ),
    st.tuples(st.just(b"PUBSUB"), counting),
)
transactions = st.tuples(st.lists(queued, max_size=4), st.sampled_from([b"EXEC", b"DISCARD"])).map(
    lambda t: [(b"MULTI", []), *t[0], (t[1], [])]
)
#: a subscriber's session: requests alone, transactions, and GET (refused or not: the state
#: after a transaction shows)
sessions = st.lists(
    st.one_of(
        subscriptions.map(lambda commands: commands[:2]),
        transactions,
        st.just([(b"GET", [b"k"])]),
    ),
    max_size=4,
).map(lambda blocks: [command for block in blocks for command in block])
#: the publisher's requests: messages, and what PUBSUB says of the subscriber's channels
#: (CHANNELS' order is Redis's hash table's: ``channel_lists_sorted`` sorts it)
publications = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([b"PUBLISH", b"SPUBLISH"]),
            st.sampled_from(CHANNELS),
            st.sampled_from([b"m", b""]),
        ),
        counting.map(lambda words: (b"PUBSUB", *words)),
        st.tuples(
            st.sampled_from([b"CHANNELS", b"SHARDCHANNELS"]),
            st.lists(st.sampled_from(PATTERNS), max_size=1),
        ).map(lambda q: (b"PUBSUB", q[0], *q[1])),
    )
)


@given(
    version=st.sampled_from([b"", b"HELLO 3\r\n"]),
    subscribing=subscriptions,
    publishing=publications.map(lambda ps: ps[:4]),
)
def test_subscriber_and_publisher_sessions_match_redis(
    mini_port: int,
    redis_port: int,
    version: bytes,
    subscribing: list[tuple[bytes, list[bytes]]],
    publishing: list[tuple[bytes, ...]],
) -> None:
    _play(mini_port, redis_port, version, subscribing, publishing)


def _play(
    mini_port: int,
    redis_port: int,
    version: bytes,
    subscribing: list[tuple[bytes, list[bytes]]],
    publishing: list[tuple[bytes, ...]],
) -> None:
    """A subscriber's session (after ``version``) and a publisher's, on both servers."""
    subscriber = version + b"".join(_words(name, *args) for name, args in subscribing)
    publisher = b"".join(_words(*publication) for publication in publishing)
    same_transcripts(mini_port, redis_port, subscriber, publisher)


@given(
    version=st.sampled_from([b"", b"HELLO 3\r\n"]),
    subscribing=sessions,
    publishing=publications.map(lambda ps: ps[:3]),
)
def test_sessions_with_transactions_match_redis(
    mini_port: int,
    redis_port: int,
    version: bytes,
    subscribing: list[tuple[bytes, list[bytes]]],
    publishing: list[tuple[bytes, ...]],
) -> None:
    # pub/sub commands queued in MULTI run at EXEC, inside its array; a RESP3 subscriber may
    # run a transaction (RESP2 pub/sub mode refuses MULTI, EXEC, DISCARD, GET)
    _play(mini_port, redis_port, version, subscribing, publishing)


#: pub/sub in a transaction, then GET and PING: whether the client is in pub/sub mode
#: after EXEC; then the publisher's messages (whether its subscriptions are live)
IN_TRANSACTIONS = [
    (b"MULTI\r\nSUBSCRIBE a b\r\nGET k\r\nEXEC\r\nGET k\r\nPING\r\n", b"PUBLISH a x\r\n"),
    (b"MULTI\r\nPSUBSCRIBE a*\r\nEXEC\r\nGET k\r\nPING x\r\n", b"PUBLISH ab x\r\n"),
    (
        b"MULTI\r\nUNSUBSCRIBE\r\nUNSUBSCRIBE a\r\nPUNSUBSCRIBE\r\nPUNSUBSCRIBE x y\r\n"
        b"SUNSUBSCRIBE\r\nSUNSUBSCRIBE a\r\nEXEC\r\nGET k\r\n",
        b"PUBLISH a x\r\n",
    ),
    (b"MULTI\r\nSSUBSCRIBE a\r\nEXEC\r\nGET k\r\n", b"SPUBLISH a x\r\n"),
    (b"MULTI\r\nSUBSCRIBE a\r\nUNSUBSCRIBE a\r\nPING\r\nEXEC\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"MULTI\r\nSUBSCRIBE a\r\nDISCARD\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"MULTI\r\nSUBSCRIBE a\r\nGET\r\nEXEC\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"WATCH k\r\nSET k 1\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"MULTI\r\nSUBSCRIBE a\r\nPUBLISH a me\r\nEXEC\r\n", b"PUBLISH a x\r\n"),
    (b"MULTI\r\nPUBLISH a x\r\nSUBSCRIBE a\r\nPUBLISH a y\r\nEXEC\r\n", b""),
    (b"MULTI\r\nHELLO 3\r\nSUBSCRIBE a\r\nGET k\r\nEXEC\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"MULTI\r\nSUBSCRIBE a\r\nEXEC\r\nMULTI\r\nEXEC\r\nDISCARD\r\n", b""),
    (b"SUBSCRIBE a\r\nMULTI\r\nEXEC\r\nAUTH x\r\n", b""),
    # a RESP3 subscriber's transaction
    (
        b"SUBSCRIBE a\r\nMULTI\r\nPUBLISH a me\r\nGET k\r\nEXEC\r\nGET k\r\n",
        b"PUBLISH a x\r\n",
    ),
    (b"SSUBSCRIBE a\r\nMULTI\r\nSPUBLISH a me\r\nEXEC\r\n", b"SPUBLISH a x\r\n"),
    (b"SUBSCRIBE a\r\nMULTI\r\nUNSUBSCRIBE a\r\nEXEC\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"SUBSCRIBE a\r\nMULTI\r\nUNSUBSCRIBE a\r\nDISCARD\r\n", b"PUBLISH a x\r\n"),
    (b"SUBSCRIBE a\r\nMULTI\r\nHELLO 2\r\nPING\r\nEXEC\r\nGET k\r\n", b"PUBLISH a x\r\n"),
    (b"SUBSCRIBE a\r\nMULTI\r\nSUBSCRIBE b\r\nHELLO 2\r\nEXEC\r\nGET k\r\n", b"PUBLISH b x\r\n"),
    (
        b"SUBSCRIBE a\r\nWATCH k\r\nMULTI\r\nMULTI\r\nWATCH k\r\nPING\r\nEXEC\r\n"
        b"EXEC\r\nDISCARD\r\nAUTH x\r\n",
        b"SET k v\r\nPUBLISH a x\r\n",
    ),
]


@pytest.mark.parametrize("version", [b"", b"HELLO 3\r\n"], ids=["resp2", "resp3"])
@pytest.mark.parametrize(("subscriber", "publisher"), IN_TRANSACTIONS)
def test_pub_sub_in_transactions_answers_as_redis(
    mini_port: int, redis_port: int, version: bytes, subscriber: bytes, publisher: bytes
) -> None:
    same_transcripts(mini_port, redis_port, version + subscriber, publisher)


@pytest.mark.parametrize(
    ("subscriber", "publisher"),
    [
        (b"PSUBSCRIBE news* n?ws\r\n", b"PUBLISH news x\r\nPUBLISH nows y\r\nPUBLISH no z\r\n"),
        (
            b"PSUBSCRIBE * a\r\nSUBSCRIBE a\r\nPUNSUBSCRIBE a\r\n",
            b"PUBLISH a x\r\nPUBLISH b y\r\n",
        ),
        (b"HELLO 3\r\nPSUBSCRIBE *\r\nGET k\r\nPING\r\n", b"PUBLISH k v\r\n"),
        (b"PSUBSCRIBE a*\r\nGET k\r\nPUNSUBSCRIBE\r\nGET k\r\n", b"PUBLISH ab x\r\n"),
        (b"PUNSUBSCRIBE\r\nPSUBSCRIBE\r\nPSUBSCRIBE a\r\nUNSUBSCRIBE\r\n", b"PUBLISH a x\r\n"),
        # shard channels: their own count, no pattern sees them, pub/sub mode until all go
        (
            b"SSUBSCRIBE a b\r\nSUBSCRIBE c\r\nPSUBSCRIBE *\r\nGET k\r\nSUNSUBSCRIBE a\r\n",
            b"SPUBLISH b x\r\nPUBLISH b y\r\nSPUBLISH a z\r\nSPUBLISH\r\n",
        ),
        (
            b"SSUBSCRIBE a\r\nSUBSCRIBE c\r\nUNSUBSCRIBE c\r\nGET k\r\nSUNSUBSCRIBE\r\n"
            b"SUNSUBSCRIBE\r\nGET k\r\n",
            b"SPUBLISH a x\r\n",
        ),
        (
            b"SUNSUBSCRIBE\r\nSUNSUBSCRIBE a b\r\nSSUBSCRIBE\r\nSSUBSCRIBE a a\r\n",
            b"PUBLISH a x\r\n",
        ),
        (b"HELLO 3\r\nSSUBSCRIBE a\r\nGET k\r\nSPUBLISH a me\r\n", b"SPUBLISH a x\r\n"),
    ],
)
def test_pattern_sessions_answer_as_redis(
    mini_port: int, redis_port: int, subscriber: bytes, publisher: bytes
) -> None:
    same_transcripts(mini_port, redis_port, subscriber, publisher)


#: PUBSUB asked by the publisher while the subscriber listens, and by the subscriber itself
#: (RESP2 pub/sub mode refuses it; RESP3 runs it, in a transaction too)
PUBSUB_SESSIONS = [
    (
        b'SUBSCRIBE news news.art a[b ""\r\nPSUBSCRIBE n* x? n*\r\nSSUBSCRIBE s1 s2\r\n',
        b"PUBSUB CHANNELS\r\nPUBSUB CHANNELS n*\r\nPUBSUB CHANNELS *\r\nPUBSUB CHANNELS a[[]b\r\n"
        b"PUBSUB NUMSUB news zz news a[b\r\nPUBSUB NUMSUB\r\nPUBSUB NUMPAT\r\n"
        b"PUBSUB SHARDCHANNELS\r\nPUBSUB shardchannels ?2\r\nPUBSUB SHARDNUMSUB s1 news\r\n"
        b"PUBSUB SHARDNUMSUB\r\nPUBSUB channels a b\r\nPUBSUB SHARDCHANNELS a b\r\n"
        b"PUBSUB NOPE\r\nPUBSUB\r\nPUBSUB NUMPAT x\r\nPUBSUB HELP\r\nPUBSUB help x\r\n"
        b"MULTI\r\nPUBSUB NUMSUB news\r\nPUBSUB CHANNELS x y\r\nEXEC\r\n"
        b"MULTI\r\nPUBSUB NOPE\r\nEXEC\r\n",
    ),
    (
        b"SUBSCRIBE a\r\nPUBSUB NUMSUB a\r\nPUBSUB CHANNELS a b\r\nPUBSUB NOPE\r\n"
        b"PUBSUB NUMPAT x\r\nCLIENT ID\r\nCLIENT NOPE\r\nUNSUBSCRIBE\r\nPUBSUB NUMSUB a\r\n",
        b"PUBSUB NUMSUB a\r\n",
    ),
    (
        b"HELLO 3\r\nSUBSCRIBE a\r\nPSUBSCRIBE a*\r\nPUBSUB NUMSUB a\r\nPUBSUB CHANNELS\r\n"
        b"PUBSUB NUMPAT\r\nPUBSUB HELP\r\nPUBSUB CHANNELS a b\r\n"
        b"MULTI\r\nPUBSUB SHARDNUMSUB a\r\nPUBSUB NUMSUB a\r\nEXEC\r\n",
        b"PUBSUB NUMSUB a\r\nPUBSUB NUMPAT\r\n",
    ),
    (
        b"MULTI\r\nSUBSCRIBE a\r\nPUBSUB NUMSUB a\r\nEXEC\r\nPUBSUB NUMSUB a\r\n",
        b"PUBSUB NUMSUB a\r\n",
    ),
]


@pytest.mark.parametrize(("subscriber", "publisher"), PUBSUB_SESSIONS)
def test_pubsub_answers_as_redis(
    mini_port: int, redis_port: int, subscriber: bytes, publisher: bytes
) -> None:
    same_transcripts(mini_port, redis_port, subscriber, publisher)


def test_redis_py_pattern_subscriptions(mini_port: int) -> None:
    redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    for version in (2, 3):
        client = redis.Redis(host=HOST, port=mini_port, protocol=version)
        pubsub = client.pubsub()
        try:
            pubsub.psubscribe("news.*")
            first = pubsub.get_message(timeout=5)
            assert first is not None and first["type"] == "psubscribe"
            assert client.publish("news.art", "hello") == 1
            message = pubsub.get_message(timeout=5)
            assert message is not None and message["type"] == "pmessage"
            assert (message["pattern"], message["channel"], message["data"]) == (
                b"news.*",
                b"news.art",
                b"hello",
            )
            pubsub.punsubscribe()
            last = pubsub.get_message(timeout=5)
            assert last is not None and last["type"] == "punsubscribe" and last["data"] == 0
        finally:
            pubsub.close()
            client.close()


def test_redis_py_shard_channels(mini_port: int) -> None:
    redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    for version in (2, 3):
        client = redis.Redis(host=HOST, port=mini_port, protocol=version)
        pubsub = client.pubsub()
        try:
            pubsub.ssubscribe("orders")
            first = pubsub.get_sharded_message(timeout=5)
            assert first is not None and first["type"] == "ssubscribe"
            assert client.publish("orders", "not for shards") == 0
            assert client.spublish("orders", "hello") == 1
            message = pubsub.get_sharded_message(timeout=5)
            assert message is not None and message["type"] == "smessage"
            assert (message["channel"], message["data"]) == (b"orders", b"hello")
            pubsub.sunsubscribe()
            last = pubsub.get_sharded_message(timeout=5)
            assert last is not None and last["type"] == "sunsubscribe" and last["data"] == 0
        finally:
            pubsub.close()
            client.close()


def _settled(client: Any) -> None:
    """Wait (5 s at most) until the server has dropped the earlier tests' subscriptions
    (a closed connection's go when the server sees it close)."""
    deadline = time.monotonic() + 5
    while client.pubsub_channels() or client.pubsub_shardchannels() or client.pubsub_numpat():
        assert time.monotonic() < deadline, "subscriptions left over"
        time.sleep(0.01)


def test_redis_py_pubsub_introspection(mini_port: int) -> None:
    redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    for version in (2, 3):
        client = redis.Redis(host=HOST, port=mini_port, protocol=version)
        listener = client.pubsub()
        try:
            _settled(client)
            assert client.pubsub_numsub("news") == [(b"news", 0)]
            listener.subscribe("news", "news.art")
            listener.psubscribe("n*")
            for _ in range(3):
                confirmed = listener.get_message(timeout=5)
                assert confirmed is not None and "subscribe" in confirmed["type"]
            listener.ssubscribe("orders")
            confirmed = listener.get_sharded_message(timeout=5)
            assert confirmed is not None and confirmed["type"] == "ssubscribe"
            assert sorted(client.pubsub_channels()) == [b"news", b"news.art"]
            assert client.pubsub_channels("*.art") == [b"news.art"]
            assert client.pubsub_numsub("news", "zz") == [(b"news", 1), (b"zz", 0)]
            assert client.pubsub_numpat() == 1
            assert client.pubsub_shardchannels() == [b"orders"]
            assert client.pubsub_shardchannels("x*") == []
            assert client.pubsub_shardnumsub("orders", "news") == [(b"orders", 1), (b"news", 0)]
        finally:
            listener.close()
            client.close()
