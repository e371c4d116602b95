"""Review of session 24 (59fbfdb + 1c60abb: pub/sub inside MULTI/EXEC, ``queuing_subscribed``,
EXECABORT; 485144a + 016c23b: memcached ``stats``, the size limit, appends over it).

Each difference from the real servers found is a test asserting the real server's
behaviour (two, both older than these commits, fixed the same stop: ``AUTH user pass`` with
no password set; an ``ms`` append with ``I`` and an older CAS, which memcached refuses
``EX``); the plain tests hold what was checked and holds.
The references: ``redis-server`` 7.0 and ``memcached`` 1.6, on free loopback ports."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memcached_helpers import serve_example, start_memcached
from test_memcache_server import Client as MemcacheClient
from test_memcache_stats import counted_alike
from test_resp_pubsub import unordered
from test_resp_server import SENTINEL, SENTINEL_REPLY, normalized
from test_resp_server import miniredis as _miniredis

from statewire.testing import differential
from statewire.testing.differential import Sentinel
from statewire.testing.memory import Conversation
from statewire.testing.strategies import chunkings

HOST = "127.0.0.1"
#: PING __end__!!, sent after a session: its reply ends it
END = Sentinel(SENTINEL, SENTINEL_REPLY)


def same(mini: int, real: int, data: bytes, closing: bool = False) -> bytes:
    """Replay ``data`` on both (then the sentinel PING); replies equal, once what Redis
    orders by its hash tables (an UNSUBSCRIBE of all, pmessages) is put in one order."""
    return differential.same_replies(
        mini, real, data, sentinel=None if closing else END, normalize=unordered, closing=closing
    )


class Redis(Conversation):
    def __init__(self, factory: object = None) -> None:
        super().__init__(factory or _miniredis.MiniRedisFactory(None))


# -- RESP: findings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "session",
    [
        b"AUTH default x\r\n",  # Redis: +OK
        b"AUTH bob x\r\n",  # Redis: -WRONGPASS invalid username-password pair ...
        b"HELLO 3 AUTH default x\r\nRESET\r\n",  # Redis: the HELLO map
        b"MULTI\r\nHELLO 3 AUTH default x\r\nEXEC\r\nRESET\r\n",  # Redis: *1 then the map
    ],
)
def test_auth_with_a_user_when_no_password_is_set(
    mini_port: int, redis_port: int, session: bytes
) -> None:
    same(mini_port, redis_port, session)


# -- RESP: what holds, against redis-server ---------------------------------------------------

#: every session ends with RESET, so the sentinel PING is answered outside pub/sub mode
SESSIONS = [
    # WATCH and transactions with pub/sub inside
    b"WATCH k\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\nPING\r\n",
    b"WATCH k\r\nSET k 2\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nWATCH k\r\nSET k 2\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nWATCH k\r\nSET k 3\r\nMULTI\r\nPUBLISH a x\r\nEXEC\r\nPING\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nWATCH k\r\nEXEC\r\n",
    # DISCARD from queuing_subscribed
    b"MULTI\r\nSUBSCRIBE a\r\nDISCARD\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nSET k 1\r\nDISCARD\r\nPING\r\nUNSUBSCRIBE\r\nGET k\r\n",
    b"HELLO 3\r\nMULTI\r\nSUBSCRIBE a\r\nDISCARD\r\nGET k\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nDISCARD x\r\nEXEC\r\nPING\r\n",
    # RESET inside MULTI after a queued SUBSCRIBE
    b"MULTI\r\nSUBSCRIBE a\r\nRESET\r\nGET k\r\nPING\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nRESET\r\nGET k\r\n",
    # HELLO 2/3 queued with SUBSCRIBE
    b"MULTI\r\nHELLO 3\r\nSUBSCRIBE a\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nMULTI\r\nSUBSCRIBE a\r\nHELLO 2\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nMULTI\r\nHELLO 2\r\nSUBSCRIBE a\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nHELLO 3\r\nGET k\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nMULTI\r\nSUBSCRIBE a\r\nUNSUBSCRIBE a\r\nHELLO 2\r\nEXEC\r\nGET k\r\n",
    b"MULTI\r\nHELLO 3\r\nHELLO 2\r\nHELLO 3\r\nHELLO 4\r\nHELLO x\r\nHELLO 3 BOGUS\r\nEXEC\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nHELLO 2\r\nUNSUBSCRIBE a\r\nEXEC\r\nMULTI\r\nEXEC\r\n",
    # EXECABORT after a queued error plus a queued SUBSCRIBE: not subscribed after
    b"MULTI\r\nNOPE\r\nSUBSCRIBE a\r\nEXEC\r\nGET k\r\nPING\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nGET\r\nEXEC\r\nGET k\r\nPING\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nEXEC x\r\nGET k\r\nEXEC\r\nPING\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nGET\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nEXEC\r\nEXEC x\r\nDISCARD\r\nDISCARD x\r\nMULTI x\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nHELLO 2\r\nEXEC\r\nEXEC x\r\nDISCARD\r\nMULTI\r\nHELLO 3\r\n",
    b"SUBSCRIBE a\r\nMULTI\r\nEXEC\r\nDISCARD\r\nEXEC x\r\n",
    # nested MULTI in RESP3 pub/sub mode
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nMULTI\r\nEXEC\r\nPING\r\n",
    b"HELLO 3\r\nMULTI\r\nSUBSCRIBE a\r\nMULTI\r\nEXEC\r\nPING\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI x\r\nEXEC\r\n",
    # (P|S)(UN)SUBSCRIBE combinations
    b"MULTI\r\nPSUBSCRIBE n*\r\nSSUBSCRIBE s\r\nUNSUBSCRIBE\r\nEXEC\r\nPING\r\n",
    b"MULTI\r\nPSUBSCRIBE n*\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nEXEC\r\nPING\r\nGET k\r\n",
    b"MULTI\r\nSUBSCRIBE a b\r\nUNSUBSCRIBE a\r\nPUBLISH b hi\r\nPUBLISH a hi\r\nEXEC\r\nPING\r\n",
    b"MULTI\r\nSUBSCRIBE a a a\r\nUNSUBSCRIBE b a b\r\nEXEC\r\n",
    b"MULTI\r\nPSUBSCRIBE a a\r\nPUNSUBSCRIBE b a\r\nEXEC\r\n",
    b"MULTI\r\nSUNSUBSCRIBE s t\r\nSSUBSCRIBE s\r\nEXEC\r\n",
    b"HELLO 3\r\nMULTI\r\nSSUBSCRIBE s\r\nEXEC\r\n"
    b"SSUBSCRIBE s\r\nMULTI\r\nSSUBSCRIBE t\r\nEXEC\r\n",
    b"MULTI\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nSUNSUBSCRIBE\r\nEXEC\r\n",
    b"MULTI\r\nSUBSCRIBE\r\nPSUBSCRIBE\r\nEXEC\r\n",
    # (an UNSUBSCRIBE of all inside EXEC's array: in the order of Redis's hash table, which
    # unordered() cannot see inside the array, so the channels are named)
    b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nSUBSCRIBE b\r\n"
    b"UNSUBSCRIBE a b\r\nEXEC\r\nGET k\r\nPING\r\n",
    # self-published messages inside EXEC's array, in the encoding of that moment
    b"HELLO 3\r\nMULTI\r\nSUBSCRIBE a b\r\nPUBLISH b hi\r\nHELLO 2\r\nPUBLISH a hi\r\nEXEC\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nPUBLISH a 1\r\nPSUBSCRIBE *\r\nPUBLISH a 2\r\nPUNSUBSCRIBE\r\n"
    b"UNSUBSCRIBE\r\nPUBLISH a 3\r\nEXEC\r\n",
    b"MULTI\r\nPING\r\nPING x\r\nSUBSCRIBE a\r\nPING\r\nPING y\r\nEXEC\r\nPING\r\nPING z\r\n",
    b"MULTI\r\nSET k v\r\nSUBSCRIBE a\r\nINCR k\r\nLPUSH k x\r\nEXEC\r\n",
    # the client's state after EXEC
    b"MULTI\r\nSUBSCRIBE a\r\nEXEC\r\nUNSUBSCRIBE\r\nGET k\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\n",
    b"MULTI\r\nSUBSCRIBE a\r\nUNSUBSCRIBE a\r\nEXEC\r\nGET k\r\n",
    b"MULTI\r\nSELECT 1\r\nSET k 9\r\nSUBSCRIBE a\r\nEXEC\r\nRESET\r\nGET k\r\n",
    b"MULTI\r\nHELLO 3 SETNAME x\r\nCLIENT GETNAME\r\nEXEC\r\n",
]


@pytest.mark.parametrize("session", SESSIONS)
def test_pub_sub_in_transactions_as_redis(mini_port: int, redis_port: int, session: bytes) -> None:
    same(mini_port, redis_port, b"FLUSHALL\r\n" + session + b"RESET\r\n")


@pytest.mark.parametrize(
    "session",
    [
        b"MULTI\r\nSUBSCRIBE a\r\nQUIT\r\nGET k\r\n",
        b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nQUIT\r\n",
        b"MULTI\r\nSUBSCRIBE a\r\nEXEC\r\nQUIT\r\n",
        b"MULTI\r\nHELLO 3\r\nSUBSCRIBE a\r\nEXEC\r\nQUIT\r\n",
    ],
)
def test_quit_inside_and_after_a_subscribing_transaction(
    mini_port: int, redis_port: int, session: bytes
) -> None:
    same(mini_port, redis_port, session, closing=True)


def _read_until(sock: socket.socket, end: bytes, deadline: float) -> bytes:
    got = b""
    while not got.endswith(end):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {end!r} in {got[-300:]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {end!r}: {got[-300:]!r}")
        got += chunk
    return got


def _steps(port: int, steps: list[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes]]:
    """Two clients take turns: each step sends its bytes and reads until its end."""
    deadline = time.monotonic() + 10
    socks: dict[str, socket.socket] = {}
    heard = []
    try:
        for who, data, end in steps:
            if who not in socks:
                socks[who] = socket.create_connection((HOST, port), timeout=10)
            socks[who].sendall(data)
            heard.append((who, unordered(normalized(_read_until(socks[who], end, deadline)))))
    finally:
        for sock in socks.values():
            sock.close()
    return heard


TWO_CLIENTS = [
    # a RESP3 subscriber in queuing_subscribed gets a message published meanwhile
    [
        ("s", b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nSET k 1\r\n", b"+QUEUED\r\n"),
        ("p", b"PUBLISH a hi\r\n", b":1\r\n"),
        ("s", b"EXEC\r\nPING\r\n", b"+PONG\r\n"),
    ],
    # a RESP2 SUBSCRIBE queued: not subscribed before EXEC, subscribed after
    [
        ("s", b"MULTI\r\nSUBSCRIBE a\r\n", b"+QUEUED\r\n"),
        ("p", b"PUBLISH a one\r\n", b":0\r\n"),
        ("s", b"EXEC\r\n", b":1\r\n"),
        ("p", b"PUBLISH a two\r\n", b":1\r\n"),
        ("s", b"PING\r\n", b"$0\r\n\r\n"),
    ],
    # a watched key changed by another client: EXEC refused, the SUBSCRIBE never ran
    [
        ("s", b"WATCH k\r\nMULTI\r\nSUBSCRIBE a\r\n", b"+QUEUED\r\n"),
        ("p", b"SET k 2\r\nPUBLISH a hi\r\n", b":0\r\n"),
        ("s", b"EXEC\r\nPING\r\n", b"+PONG\r\n"),
    ],
    # a queued HELLO 2 makes a RESP3 subscriber a RESP2 one in pub/sub mode
    [
        ("s", b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nHELLO 2\r\n", b"+QUEUED\r\n"),
        ("p", b"PUBLISH a hi\r\n", b":1\r\n"),
        ("s", b"EXEC\r\n", b"*0\r\n"),
        ("p", b"PUBLISH a hi2\r\n", b":1\r\n"),
        ("s", b"GET k\r\n", b"context\r\n"),
    ],
    # QUIT of a client subscribed by a transaction: nobody listens afterwards
    [
        ("s", b"MULTI\r\nSUBSCRIBE a\r\nPSUBSCRIBE a*\r\nEXEC\r\n", b":2\r\n"),
        ("s", b"QUIT\r\n", b"+OK\r\n"),
        ("p", b"PUBLISH a hi\r\n", b":0\r\n"),
    ],
]


@pytest.mark.parametrize("steps", TWO_CLIENTS)
def test_two_clients_around_a_subscribing_transaction(
    mini_port: int, redis_port: int, steps: list[tuple[str, bytes, bytes]]
) -> None:
    differential.exchange(mini_port, b"FLUSHALL\r\n", END)
    differential.exchange(redis_port, b"FLUSHALL\r\n", END)
    assert _steps(mini_port, steps) == _steps(redis_port, steps)


# -- RESP: in memory ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "session",
    [
        b"MULTI\r\nSUBSCRIBE a\r\nPSUBSCRIBE n*\r\nEXEC\r\n",
        b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nPSUBSCRIBE p*\r\nSUBSCRIBE b\r\nEXEC\r\n",
        b"HELLO 3\r\nSSUBSCRIBE s\r\nMULTI\r\nSUBSCRIBE b\r\nPSUBSCRIBE q\r\n",
        b"WATCH k\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\n",
        b"HELLO 3\r\nSUBSCRIBE a\r\nWATCH k\r\nMULTI\r\nSUBSCRIBE b\r\n",
        b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nSUBSCRIBE b\r\nEXEC\r\nWATCH k z\r\n",
    ],
)
def test_a_connection_lost_after_a_subscribing_transaction_empties_the_registries(
    session: bytes,
) -> None:
    client = Redis()
    client(session)
    factory = client.factory
    assert factory.subscribers or factory.shard_subscribers or factory.watchers
    client.protocol.connectionLost(None)
    assert client.state == "closed"
    for registry in ("subscribers", "pattern_subscribers", "shard_subscribers", "watchers"):
        assert not getattr(factory, registry), registry


VOCABULARY = [
    *(b"MULTI", b"EXEC", b"DISCARD", b"SUBSCRIBE a", b"SUBSCRIBE a b", b"PSUBSCRIBE n*"),
    *(b"SSUBSCRIBE s", b"UNSUBSCRIBE", b"UNSUBSCRIBE a", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"),
    *(b"HELLO 3", b"HELLO 2", b"PING", b"PING x", b"GET k", b"SET k 1", b"WATCH k"),
    *(b"PUBLISH a m", b"PUBLISH nx m", b"EXEC x", b"GET", b"NOPE", b"MULTI x", b"RESET"),
]


@st.composite
def resp_sessions(draw: st.DrawFn) -> bytes:
    words = draw(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=14))
    if draw(st.booleans()):
        return b"".join(w + b"\r\n" for w in words)
    return b"".join(
        b"*%d\r\n" % len(w.split()) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in w.split())
        for w in words
    )


@settings(max_examples=60)
@given(st.data())
def test_any_chunking_of_a_pub_sub_transaction_session_answers_alike(data: st.DataObject) -> None:
    session = data.draw(resp_sessions())
    whole = Redis()
    expected = whole(session)
    cut = Redis()
    got = b"".join(cut(chunk) for chunk in data.draw(chunkings(session, max_chunks=30)))
    assert got == expected
    assert cut.state == whole.state


# -- memcached: against the real server ------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[int]:
    yield from serve_example()


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    yield from start_memcached("-t", "1")


#: the largest value of a 1-byte key and flags 0 that memcached stores (1 MiB item limit)
LIMIT = 1048576 - 59 - 1


def _big(command: bytes, size: int, then: bytes = b"") -> bytes:
    return command % size + b"x" * size + b"\r\n" + then


LIMIT_SESSIONS = [
    _big(b"ms k %d F1\r\n", LIMIT - 4, b"mg k s f\r\n"),
    _big(b"ms k %d F1\r\n", LIMIT - 3, b"mg k s f\r\n"),
    _big(b"ms k %d F4294967296\r\n", LIMIT - 3, b"mg k s f\r\n"),  # flags kept to 32 bits
    _big(b"ms k %d q\r\n", LIMIT + 1, b"mn\r\n"),
    _big(b"set kk 0 0 1\r\na\r\nms a2s= %d b\r\n", LIMIT - 1, b"mg kk s v\r\n"),
    _big(b"set kk 0 0 1\r\na\r\nms a2s= %d b\r\n", LIMIT, b"mg kk s v\r\n"),
    _big(b"set k 0 0 1\r\na\r\nset k 0 0 %d noreply\r\n", LIMIT + 1, b"get k\r\n"),
    _big(b"set k 0 0 1\r\na\r\ncas k 0 0 %d 1\r\n", LIMIT + 1, b"get k\r\n"),
    _big(b"set k 5 0 10\r\n0123456789\r\nappend k 0 0 %d\r\n", LIMIT - 14, b"mg k s f\r\n"),
    _big(b"set k 5 0 10\r\n0123456789\r\nappend k 0 0 %d\r\n", LIMIT - 13, b"mg k s f\r\n"),
    _big(b"set k 0 0 10\r\n0123456789\r\nprepend k 0 0 %d noreply\r\n", LIMIT - 9, b"mn\r\n"),
    _big(b"set k 0 0 10\r\n0123456789\r\nms k %d MP q Oab k c\r\n", LIMIT - 9, b"mn\r\n"),
    _big(b"set k 0 0 10\r\n0123456789\r\nms k %d MA Oab k c C99\r\n", LIMIT - 9, b"mn\r\n"),
    _big(b"ms k %d MA N0 Oab k c\r\n", LIMIT, b"mg k s\r\n"),
    _big(b"ms k %d MA N0 Oab k c\r\n", LIMIT + 1, b"mg k s\r\n"),
]


@pytest.mark.parametrize("session", LIMIT_SESSIONS, ids=range(len(LIMIT_SESSIONS)))
def test_the_size_limit_at_the_byte_as_memcached(
    served: int, memcached: int, session: bytes
) -> None:
    counted_alike(served, memcached, session)


STATS_SESSIONS = [
    # invalidated (md I) items: stale hits, the win, a stale item's ms with I and C
    b"set k 0 0 1\r\n1\r\nmd k I T30\r\nmg k v c t s f k Oq\r\nmg k v\r\nms k 1 I C1\r\n2\r\n"
    b"mg k v c\r\n",
    b"set k 0 0 1\r\n1\r\nmd k I\r\nms k 1 C999 I\r\n2\r\nmg k v\r\n",
    # (no incr after a retrieval in one pipeline: memcached makes a new item, and counts it
    # in total_items, when a reply still in flight holds the old one)
    b"set k 0 0 1\r\n1\r\nmd k I\r\nget k\r\ngets k\r\ntouch k 10\r\ngat 0 k\r\n",
    # md / ma quiet modes
    b"set k 0 0 1\r\n1\r\nmd k I\r\nmd k q\r\nmd k q\r\nmd k\r\nmn\r\n",
    b"ma k q\r\nma k q N0 J7\r\nma k q\r\nma k v q\r\nma k MD q D100 v\r\nmn\r\n",
    b"ma k q N0\r\nma k q C1\r\nma k q MX\r\nmn\r\n",
    b"set k 0 0 1\r\n1\r\nmd k q C999\r\nmd k q x\r\nmd k I q\r\nmg k v\r\nmd k C0 q\r\nmn\r\n",
    # gat / touch on expired items, incr/decr on non-numbers, cas on a missing key
    b"set k 0 -1 1\r\n1\r\ngat 10 k\r\ngats 10 k\r\ntouch k 10\r\nmg k t v\r\n",
    b"set k 0 0 1\r\na\r\nincr k 1\r\ndecr k 1\r\n"
    b"ma k\r\nincr k 1 noreply\r\nincr q 1\r\nma q\r\n",
    b"set k 0 0 20\r\n18446744073709551616\r\nincr k 1\r\nset k 0 0 2\r\n-1\r\ndecr k 1\r\n",
    b"cas m 0 0 1 1\r\nx\r\ncas m 0 0 1 1 noreply\r\nx\r\ngets m\r\nms m 1 C1\r\nx\r\nmd m C1\r\n",
    # ms modes with C and q
    b"ms k 1 ME\r\na\r\nms k 1 ME\r\nb\r\nms k 1 MR\r\n"
    b"c\r\nms k 1 MR q\r\nc\r\nms z 1 MR q\r\nc\r\n"
    b"ms k 1 MS C1 q\r\nd\r\nmn\r\n",
    b"ms k 1 MA N0\r\na\r\nms k 1 MP N0\r\nb\r\nms z 1 MA\r\nc\r\nms z 1 MA q\r\nc\r\nmg k v\r\n",
    # mg with many flags, on a miss and on a hit
    b"mg k v c f s t k O1 q h l\r\nmg k N30 v c t s\r\nmg k v c t s h l\r\nmg k R30 v t c\r\n"
    b"mg k T5 t v\r\nmg k E77 c\r\n",
    # noreply variants
    b"touch k 10 noreply\r\nset k 0 0 1 noreply\r\n1\r\ntouch k 10 noreply\r\ngat 5 k\r\n"
    b"delete k noreply\r\ndelete k noreply\r\nincr k 1 noreply\r\ndecr k 1 noreply\r\nmn\r\n",
    b"set k 0 0 1\r\n1\r\nappend k 0 0 1 noreply\r\n2\r\n"
    b"prepend z 0 0 1 noreply\r\n2\r\nget k\r\n",
    b"set a 0 0 1\r\n1\r\nget a a a b b\r\ngets a b a\r\n"
    b"gat 0 a a b\r\nmg a\r\nmg b v q\r\nmn\r\n",
    b"set n 0 0 1\r\n5\r\nma n MD D10\r\nma n v\r\nma n MI D18446744073709551615 v\r\n"
    b"ma n v N0 J1 c t\r\n",
]


@pytest.mark.parametrize("session", STATS_SESSIONS, ids=range(len(STATS_SESSIONS)))
def test_replies_and_counters_as_memcached(served: int, memcached: int, session: bytes) -> None:
    counted_alike(served, memcached, session)


@pytest.mark.parametrize(
    "session",
    [
        # memcached: EX, the item left as it was; statewire: HD, then VA 2 X W / nz
        b"set k 0 0 1\r\nn\r\nms k 1 MA I C1\r\nz\r\nmg k v\r\n",
        # memcached: EX Oa kk c0 (q hides no failure); statewire: nothing, then zn
        b"set k 0 0 1\r\nn\r\nms k 1 MP I C1 q Oa k c\r\nz\r\nmg k v\r\nmn\r\n",
        # a stale item (md I) too: memcached EX
        b"set k 0 0 1\r\nn\r\nmd k I\r\nms k 1 MA I C1\r\nz\r\nmg k v\r\n",
    ],
)
def test_an_append_with_i_and_an_older_cas_is_exists(
    served: int, memcached: int, session: bytes
) -> None:
    counted_alike(served, memcached, session)


def test_a_set_or_replace_with_i_and_an_older_cas_stores_stale_as_memcached(
    served: int, memcached: int
) -> None:
    for mode in (b"MS", b"MR", b"ME"):
        counted_alike(
            served, memcached, b"set k 0 0 1\r\nn\r\nms k 1 %s I C1\r\nz\r\nmg k v\r\n" % mode
        )


def test_flush_all_variants_as_memcached(served: int, memcached: int) -> None:
    # (no delayed flush: memcached's whole-second clock also drops what is stored in the
    # rest of that second, the probe of the next session included; documented as not
    # imitated)
    counted_alike(
        served,
        memcached,
        b"flush_all 0\r\nflush_all -1\r\nflush_all noreply\r\nflush_all x\r\n"
        b"flush_all 0 noreply\r\nflush_all 0 2\r\nmn\r\n",
    )


# -- memcached: in memory ---------------------------------------------------------------------

_MEMCACHE_WORDS = [
    b"set k 0 0 1\r\n1\r\n",
    b"set k 7 -1 1 noreply\r\n2\r\n",
    b"append k 0 0 1\r\nx\r\n",
    b"cas k 0 0 1 1\r\ny\r\n",
    b"get k n\r\n",
    b"gat 0 k\r\n",
    b"incr k 1\r\n",
    b"decr n 1 noreply\r\n",
    b"touch k 10\r\n",
    b"delete k\r\n",
    b"mg k v c f s t k Oq q\r\n",
    b"mg aw== b v\r\n",
    b"ms k 1 MA C1 I q\r\nz\r\n",
    b"ms k 1 ME T0 F5\r\nz\r\n",
    b"md k I q\r\n",
    b"ma n N0 J3 q v\r\n",
    b"mn\r\n",
    b"flush_all\r\n",
    b"bogus\r\n",
    _big(b"ms a2s= %d b\r\n", LIMIT + 1),
    _big(b"set k 0 0 %d noreply\r\n", LIMIT + 1),
]


@settings(max_examples=25)
@given(st.data())
def test_any_chunking_of_a_memcached_session_counts_alike(data: st.DataObject) -> None:
    words = data.draw(st.lists(st.sampled_from(_MEMCACHE_WORDS), min_size=1, max_size=10))
    session = b"".join(words)
    whole = MemcacheClient()
    expected = whole(session)
    cut = MemcacheClient()
    got = b"".join(cut(chunk) for chunk in data.draw(chunkings(session, max_chunks=30)))
    assert got == expected
    assert cut.factory.stats == whole.factory.stats
