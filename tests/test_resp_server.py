"""The RESP server and miniredis: the connection's machine (AUTH, MULTI, pub/sub, HELLO,
QUIT, RESET) in memory on a test clock; then over real loopback sockets, judged by redis-py
(pure-Python parser and hiredis), by redis-cli, and by the real redis-server: Hypothesis
generates command sessions and each is replayed, raw, against both; replies must be equal
byte for byte."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import EXAMPLES, running
from resp_helpers import start_redis

from grammars import request, resp
from statewire.diagram import to_mermaid
from statewire.protocols.resp import RESPServer
from statewire.testing import differential
from statewire.testing.differential import Sentinel
from statewire.testing.memory import Conversation
from statewire.testing.strategies import chunkings

HOST = "127.0.0.1"
END = b"__end__!!"
#: PING with an argument, sent after every session: its reply says the session is over
SENTINEL = request().build([b"PING", END])
SENTINEL_REPLY = b"$9\r\n__end__!!\r\n"
END = Sentinel(SENTINEL, SENTINEL_REPLY)


def load_miniredis() -> ModuleType:
    spec = importlib.util.spec_from_file_location("miniredis", EXAMPLES / "miniredis.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


miniredis = load_miniredis()


# -- in memory: the machine ------------------------------------------------------------------


class Client(Conversation):
    """A miniredis connection in memory, on a test clock."""

    def __init__(self, password: bytes | None = None, factory: Any = None) -> None:
        super().__init__(factory or miniredis.MiniRedisFactory(password))


def test_the_diagram_reads_as_the_connection_states() -> None:
    text = to_mermaid(RESPServer)
    for edge in (
        "s_anonymous --> s_ready : admitted",
        "s_ready --> s_queuing : MULTI / begin",
        "s_queuing --> s_ready : EXEC / commit",
        "s_ready --> s_subscribed : SUBSCRIBE / join",
        "s_subscribed --> s_ready : emptied",
        # a transaction that leaves the client in pub/sub mode: it queued a SUBSCRIBE, or
        # it is a RESP3 subscriber's (RESP2 pub/sub mode refuses MULTI)
        "s_queuing --> s_queuing_subscribed : SUBSCRIBE / enqueue",
        "s_queuing --> s_queuing_subscribed : PSUBSCRIBE / enqueue",
        "s_queuing_subscribed --> s_subscribed : EXEC / commit_subscribed",
        "s_queuing_subscribed --> s_subscribed : DISCARD / abandon_subscribed",
        "s_subscribed --> s_subscribed : MULTI / begin_subscribed",
        "s_subscribed --> s_queuing_subscribed : resp3_multi",
    ):
        assert edge in text
    assert "s_queuing --> s_queuing : SSUBSCRIBE / enqueue" in text  # refused at EXEC


def test_a_password_makes_every_command_but_auth_wait() -> None:
    client = Client(b"secret")
    assert client.state == "anonymous"
    assert client(b"GET k\r\nMULTI\r\nPING\r\n") == b"-NOAUTH Authentication required.\r\n" * 3
    assert client(b"FOO\r\n").startswith(b"-ERR unknown command 'FOO'")
    assert client(b"HELLO 3\r\n").startswith(b"-NOAUTH HELLO must be called")
    assert (
        client(b"AUTH nope\r\n")
        == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    )
    assert client(b"AUTH secret\r\nPING\r\n") == b"+OK\r\n+PONG\r\n"
    assert client.state == "ready"
    assert client(b"RESET\r\nGET k\r\n") == b"+RESET\r\n-NOAUTH Authentication required.\r\n"
    reply = client(b"HELLO 3 AUTH default secret\r\nGET k\r\n")
    assert reply.startswith(b"%7\r\n") and reply.endswith(b"_\r\n")


def test_without_a_password_clients_start_ready() -> None:
    client = Client()
    assert client.state == "ready"
    assert client(b"AUTH x\r\n").startswith(b"-ERR AUTH <password> called without any password")


def test_multi_queues_and_exec_answers_all() -> None:
    client = Client()
    assert (
        client(b"EXEC\r\nDISCARD\r\n")
        == b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"
    )
    assert client(b"MULTI\r\nSET a 1\r\nINCR a\r\nMULTI\r\n") == (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n-ERR MULTI calls can not be nested\r\n"
    )
    assert client.state == "queuing"
    assert client(b"EXEC\r\n") == b"*2\r\n+OK\r\n:2\r\n"
    assert client.state == "ready"
    assert (
        client(b"MULTI\r\nSET a 2\r\nDISCARD\r\nGET a\r\n")
        == b"+OK\r\n+QUEUED\r\n+OK\r\n$1\r\n2\r\n"
    )


def test_a_refused_command_dooms_the_transaction() -> None:
    client = Client()
    assert client(b"MULTI\r\nGET\r\nSET a b\r\nNOPE\r\nEXEC\r\nGET a\r\n") == (
        b"+OK\r\n-ERR wrong number of arguments for 'get' command\r\n+QUEUED\r\n"
        b"-ERR unknown command 'NOPE', with args beginning with: \r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
    )


def test_subscribed_clients_may_only_manage_subscriptions() -> None:
    client = Client()
    assert client(b"SUBSCRIBE a b\r\n").count(b"subscribe") == 2
    assert client.state == "subscribed"
    refused = client(b"GET x\r\n")
    assert refused == (
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        b"RESET are allowed in this context\r\n"
    )
    assert client(b"PING\r\n") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    other = Client(factory=client.factory)
    client.transport.clear()
    assert other(b"PUBLISH a hi\r\n") == b":1\r\n"
    assert client.transport.value() == b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
    client(b"UNSUBSCRIBE\r\n")
    assert client.state == "ready"
    assert other(b"PUBLISH a hi\r\n") == b":0\r\n"


SUBSCRIBED_A = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
GET_REFUSED = (
    b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
    b"RESET are allowed in this context\r\n"
)


def test_a_subscribe_queued_in_a_transaction_runs_at_exec_inside_its_array() -> None:
    client = Client()
    assert client(b"MULTI\r\nSUBSCRIBE a b\r\nGET k\r\n") == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n"
    assert client.state == "queuing_subscribed"
    # as Redis: the array counts two commands; SUBSCRIBE's two confirmations are elements
    assert client(b"EXEC\r\n") == (
        b"*2\r\n" + SUBSCRIBED_A + b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n" + b"$-1\r\n"
    )
    assert client.state == "subscribed"  # RESP2 pub/sub mode: GET is refused
    assert client(b"GET k\r\nPING\r\n") == GET_REFUSED + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert client.factory.subscribers.keys() == {b"a", b"b"}


@pytest.mark.parametrize(
    "transaction",
    [
        b"MULTI\r\nSUBSCRIBE a\r\nUNSUBSCRIBE a\r\nEXEC\r\n",  # nothing left
        b"MULTI\r\nPSUBSCRIBE a*\r\nDISCARD\r\n",  # nothing ran
        b"MULTI\r\nSUBSCRIBE a\r\nGET\r\nEXEC\r\n",  # EXECABORT: nothing ran
        b"WATCH k\r\nSET k 1\r\nMULTI\r\nSUBSCRIBE a\r\nEXEC\r\n",  # a watched key changed
        b"HELLO 3\r\nSUBSCRIBE a\r\nMULTI\r\nUNSUBSCRIBE\r\nEXEC\r\n",
    ],
)
def test_a_transaction_leaving_no_subscription_ends_ready(transaction: bytes) -> None:
    client = Client()
    client(transaction)
    assert client.state == "ready" and not client.factory.subscribers
    assert client(b"PING\r\nGET nope\r\n") in (b"+PONG\r\n$-1\r\n", b"+PONG\r\n_\r\n")


def test_unsubscribe_queued_in_a_transaction_confirms_inside_the_array() -> None:
    client = Client()
    assert client(b"MULTI\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE x y\r\nSUNSUBSCRIBE a\r\n") == (
        b"+OK\r\n" + b"+QUEUED\r\n" * 3
    )
    assert client.state == "queuing"
    assert client(b"EXEC\r\n") == (
        b"*3\r\n*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        b"*3\r\n$12\r\npunsubscribe\r\n$1\r\nx\r\n:0\r\n"
        b"*3\r\n$12\r\npunsubscribe\r\n$1\r\ny\r\n:0\r\n"
        b"*3\r\n$12\r\nsunsubscribe\r\n$1\r\na\r\n:0\r\n"
    )
    assert client.state == "ready"


def test_a_resp3_subscriber_runs_a_transaction_and_stays_subscribed() -> None:
    client = Client()
    client(b"HELLO 3\r\nSUBSCRIBE a\r\n")
    assert client(b"MULTI\r\n") == b"+OK\r\n"
    assert client.state == "queuing_subscribed"
    assert client(b"MULTI\r\nWATCH k\r\nPUBLISH a me\r\nGET k\r\n") == (
        b"-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n"
        b"+QUEUED\r\n+QUEUED\r\n"
    )
    # the message it sends itself comes where it is sent: inside EXEC's array
    assert client(b"EXEC\r\n") == (
        b"*2\r\n>3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nme\r\n:1\r\n_\r\n"
    )
    assert client.state == "subscribed"
    assert client(b"MULTI\r\nHELLO 2\r\nDISCARD\r\n") == b"+OK\r\n+QUEUED\r\n+OK\r\n"
    assert client.state == "subscribed"
    assert client(b"EXEC\r\nDISCARD\r\n") == (
        b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"
    )  # RESP3 pub/sub mode takes any command: the words of ``ready``
    assert client(b"HELLO 2\r\n").startswith(b"*14\r\n")  # now RESP2 pub/sub mode
    assert client(b"MULTI\r\n") == (
        b"-ERR Can't execute 'multi': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        b"RESET are allowed in this context\r\n"
    )
    assert client.state == "subscribed"


def test_hello_3_switches_the_replies_to_resp3() -> None:
    client = Client()
    hello = resp(3).parse(client(b"HELLO 3\r\n"))
    assert dict(hello.items)[b"proto"] == 3
    assert client(b"HSET h f v\r\nHGETALL h\r\nGET nope\r\n") == (
        b":1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n_\r\n"
    )
    assert client(b"SUBSCRIBE c\r\nGET nope\r\n") == (
        b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n_\r\n"
    )  # RESP3 clients run any command while subscribed
    assert client(b"RESET\r\nHGETALL h\r\n") == b"+RESET\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert client(b"HELLO 4\r\n") == b"-NOPROTO unsupported protocol version\r\n"


def test_quit_answers_then_closes() -> None:
    client = Client()
    assert client(b"QUIT\r\nPING\r\n") == b"+OK\r\n"
    assert client.state == "closed" and client.transport.disconnecting


def test_a_protocol_error_is_answered_then_the_connection_closed() -> None:
    client = Client()
    assert client(b"PING\r\n*1\r\n$-1\r\nPING\r\n") == (
        b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    )
    assert client.transport.disconnecting


def test_expire_conditions_compare_deadlines() -> None:
    client = Client()
    client(b"SET k v EX 100\r\n")
    assert client(b"EXPIRE k 50 GT\r\nEXPIRE k 200 GT\r\nTTL k\r\n") == b":0\r\n:1\r\n:200\r\n"
    assert client(b"EXPIRE k 300 LT\r\nEXPIRE k 10 LT\r\nTTL k\r\n") == b":0\r\n:1\r\n:10\r\n"
    assert client(b"PERSIST k\r\nEXPIRE k 5 GT\r\nEXPIRE k 5 LT\r\nTTL k\r\n") == (
        b":1\r\n:0\r\n:1\r\n:5\r\n"
    )


@given(garbage=st.binary(max_size=200), data=st.data())
def test_random_bytes_in_any_reads_are_refused_never_crash(
    garbage: bytes, data: st.DataObject
) -> None:
    client = Client()
    for chunk in data.draw(chunkings(garbage)):
        client.protocol.dataReceived(chunk)
    assert not client.transport.aborted  # no exception in our code
    replies = client.transport.value()
    i = 0
    while i < len(replies):
        found = resp(2).scan(replies, i, len(replies))
        assert found is not None
        i = found[1]


def test_keys_expire_on_the_connection_clock() -> None:
    client = Client()
    assert client(b"SET k v EX 10\r\nTTL k\r\nPEXPIRE j 5\r\n") == b"+OK\r\n:10\r\n:0\r\n"
    client.clock.advance(9.4)
    assert client(b"TTL k\r\nPTTL k\r\nGET k\r\n") == b":1\r\n:600\r\n$1\r\nv\r\n"
    client.clock.advance(0.6)
    assert client(b"GET k\r\nTTL k\r\nEXISTS k\r\n") == b"$-1\r\n:-2\r\n:0\r\n"


# -- over sockets ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_auth_port() -> Iterator[int]:
    yield from start_redis("--requirepass", "secret")


@pytest.fixture(scope="module")
def mini_auth_port() -> Iterator[int]:
    with running("examples/miniredis.py", "--port", "0", "--password", "secret") as server:
        yield server.port
        server.stop()


def exchange(
    port: int, data: bytes, until: bytes | None = SENTINEL_REPLY, closing: bool = False
) -> bytes:
    """Send ``data`` (then the sentinel PING) and return the replies before its reply; or,
    when ``until`` is None, everything until the server closes (or when ``closing`` says
    it may close first). Bounded: 10 s, 8 MiB."""
    return differential.exchange(port, data, END if until else None, closing=closing)


def normalized(replies: bytes) -> bytes:
    """Client ids differ between two servers (HELLO's ``id``)."""
    return re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"$2\r\nid\r\n:0\r\n", replies)


def same_replies(mini: int, real: int, data: bytes, until: bytes | None = SENTINEL_REPLY) -> bytes:
    sentinel = END if until else None
    return differential.same_replies(mini, real, data, sentinel=sentinel, normalize=normalized)


# -- sessions generated: replayed against both ---------------------------------------------

KEYS = [b"k1", b"k2", b"k3"]
VALUES = [b"1", b"-7", b"abc", b"", b"9223372036854775807", b"x y", b"0"]
NUMBERS = [b"0", b"1", b"-1", b"3", b"abc", b"99999999999999999999", b"-9223372036854775808"]

key = st.sampled_from(KEYS)
value = st.sampled_from(VALUES)
number = st.sampled_from(NUMBERS)
keys = st.lists(key, min_size=1, max_size=3)
set_options = st.lists(
    st.sampled_from(
        [
            *([b"NX"], [b"XX"], [b"GET"], [b"KEEPTTL"], [b"EX", b"100000"]),
            *([b"PX", b"100000000"], [b"EX", b"0"], [b"EX", b"abc"], [b"BOGUS"]),
        ]
    ),
    max_size=2,
).map(lambda options: [word for option in options for word in option])


def _cmd(*parts: Any) -> st.SearchStrategy[list[bytes]]:
    """A command: each part a word (bytes), a strategy of a word, or of a list of words."""
    strategies = [st.just([p]) if isinstance(p, bytes) else p for p in parts]
    wrapped = [s.map(lambda w: w if isinstance(w, list) else [w]) for s in strategies]
    return st.tuples(*wrapped).map(lambda words: [w for group in words for w in group])


pairs = st.lists(st.tuples(key, value), min_size=1, max_size=3).map(
    lambda items: [w for pair in items for w in pair]
)
commands = st.one_of(
    _cmd(b"GET", key),
    _cmd(b"SET", key, value, set_options),
    _cmd(b"GETDEL", key),
    _cmd(b"MGET", keys),
    _cmd(b"MSET", pairs),
    _cmd(b"MSET", key),
    _cmd(st.sampled_from([b"INCR", b"DECR", b"STRLEN", b"TYPE", b"TTL", b"PERSIST"]), key),
    _cmd(st.sampled_from([b"INCRBY", b"DECRBY"]), key, number),
    _cmd(b"APPEND", key, value),
    _cmd(st.sampled_from([b"EXISTS", b"DEL"]), keys),
    _cmd(
        b"EXPIRE",
        key,
        st.sampled_from([b"100000", b"-1", b"x"]),
        st.sampled_from([[], [b"NX"], [b"XX"]]),
    ),
    _cmd(b"PEXPIRE", key, b"100000000"),
    _cmd(
        st.sampled_from([b"LPUSH", b"RPUSH", b"SADD", b"SREM"]),
        key,
        st.lists(value, min_size=1, max_size=3),
    ),
    _cmd(st.sampled_from([b"LPOP", b"RPOP"]), key, st.sampled_from([[], [b"0"], [b"2"], [b"-1"]])),
    _cmd(b"LLEN", key),
    _cmd(b"LRANGE", key, number, number),
    _cmd(b"HSET", key, pairs),
    _cmd(b"HSET", key, key),
    _cmd(st.sampled_from([b"HGET", b"SISMEMBER"]), key, value),
    _cmd(b"HDEL", key, st.lists(value, min_size=1, max_size=2)),
    _cmd(st.sampled_from([b"HGETALL", b"HLEN", b"SCARD"]), key),
    _cmd(st.sampled_from([b"DBSIZE", b"PING", b"FLUSHDB"])),
    _cmd(b"ECHO", value),
    _cmd(b"PING", value),
    _cmd(b"SELECT", st.sampled_from([b"0", b"1", b"16", b"x"])),
    _cmd(b"CLIENT", st.sampled_from([[b"GETNAME"], [b"SETNAME", b"me"], [b"SETNAME"], [b"NOPE"]])),
    _cmd(st.sampled_from([b"GET", b"SET", b"LLEN", b"HGET"])),  # wrong arity
    # a session watches its own writes (inside MULTI, WATCH is refused)
    _cmd(b"WATCH", st.lists(key, max_size=2)),
    _cmd(b"UNWATCH", st.lists(key, max_size=1)),
    _cmd(st.sampled_from([b"NOSUCH", b"get2"]), st.lists(value, max_size=2)),  # unknown
    # PUBSUB on a server where no one listens (CHANNELS with a pattern no earlier test's
    # channel matches); its wrong subcommands and arities
    _cmd(
        b"PUBSUB",
        st.sampled_from([b"NUMSUB", b"SHARDNUMSUB", b"numsub"]),
        st.lists(key, max_size=3),
    ),
    _cmd(
        b"PUBSUB",
        st.sampled_from(
            [
                *([b"NUMPAT"], [b"HELP"], [b"CHANNELS", b"k*"], [b"shardChannels", b"k?"]),
                *([], [b"NUMPAT", b"x"], [b"HELP", b"x"], [b"CHANNELS", b"k*", b"x"]),
                *([b"SHARDCHANNELS", b"a", b"b"], [b"NOPE"], [b"NOPE", b"x"]),
            ]
        ),
    ),
)
#: unsubscribing from nothing (confirmed, naming nothing or each name: the client stays
#: out of pub/sub mode), and SSUBSCRIBE, which EXEC refuses; (P)SUBSCRIBE would change the
#: shape of the sentinel PING's reply: tests/test_resp_pubsub.py generates those
unsubscribing = _cmd(
    st.sampled_from([b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"]), st.lists(key, max_size=2)
)
transaction = st.tuples(
    st.lists(st.one_of(commands, unsubscribing, _cmd(b"SSUBSCRIBE", keys)), max_size=4),
    st.sampled_from([[b"EXEC"], [b"DISCARD"]]),
).map(lambda block: [[b"MULTI"], *block[0], block[1]])
alone = st.one_of(commands, unsubscribing)
blocks = st.one_of(alone.map(lambda c: [c]), transaction)


def encode(argv: list[bytes], inline: bool) -> bytes:
    plain = all(w and not any(c in w for c in b" \t\r\n\"'\0\x0b\x0c") for w in argv)
    if inline and plain:
        return b" ".join(argv) + b"\r\n"
    return request().build(argv)


@st.composite
def sessions(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([[], [[b"HELLO", b"3"]], [[b"HELLO", b"2"]]]))
    chosen = [command for block in draw(st.lists(blocks, max_size=10)) for command in block]
    words = [[b"FLUSHALL"], *version, *chosen]
    return b"".join(encode(argv, draw(st.booleans())) for argv in words)


@pytest.fixture(scope="module")
def servers(mini_port: int, redis_port: int) -> tuple[int, int]:
    return mini_port, redis_port


@given(session=sessions())
def test_generated_sessions_get_the_replies_redis_gives(
    servers: tuple[int, int], session: bytes
) -> None:
    same_replies(*servers, session)


@pytest.mark.parametrize(
    "session",
    [
        b"SUBSCRIBE a b\r\nGET x\r\nMULTI\r\nPING\r\nPING hi\r\nAUTH x\r\nUNSUBSCRIBE a\r\n"
        b"UNSUBSCRIBE\r\nGET x\r\n",
        b"HELLO 3\r\nSUBSCRIBE a\r\nGET x\r\nPING\r\nRESET\r\nGET x\r\n",
        b"MULTI\r\nHELLO 3\r\nPING\r\nEXEC\r\nHGETALL h\r\n",
        b"HELLO x\r\nHELLO 4\r\nHELLO 2 BOGUS\r\nHELLO 2 SETNAME me\r\nCLIENT GETNAME\r\n",
        b"SET k v\r\nRESET\r\nGET k\r\nUNSUBSCRIBE\r\nUNSUBSCRIBE a\r\n",
        b"\r\n\n   \r\n*0\r\n*-5\r\nPING\n",
        b'set "a b" \'c d\'\r\nget "a b"\r\nECHO "\\x41\\n"\r\n',
        # an EXEC refused before it runs ends the transaction: -EXECABORT ... because of:
        b"FLUSHALL\r\nMULTI\r\nSET k 1\r\nEXEC x\r\nGET k\r\nDISCARD\r\nEXEC x\r\n",
        b"MULTI\r\nSUBSCRIBE a\r\nEXEC x\r\nGET k\r\nPING\r\n",
    ],
)
def test_connection_states_answer_as_redis(servers: tuple[int, int], session: bytes) -> None:
    same_replies(*servers, session)


inline_text = st.lists(
    st.sampled_from(
        [b"a", b"b", b" ", b"  ", b'"', b"'", b"\\", b"x", b"4", b"f", b"\t", b"\x0b", b"\r"]
    ),
    max_size=12,
).map(b"".join)


@given(words=inline_text)
def test_inline_commands_are_split_as_redis_splits_them(
    servers: tuple[int, int], words: bytes
) -> None:
    # typed by hand: quotes, escapes, odd spaces; unbalanced quotes close the connection
    line = b"SET k " + words + b"\r\nGET k\r\nECHO " + words + b"\r\n"
    ours = exchange(servers[0], line, closing=True)
    assert ours == exchange(servers[1], line, closing=True)


@pytest.mark.parametrize(
    "session",
    [
        b"GET k\r\nFOO bar\r\nGET\r\nMULTI\r\nHELLO 3\r\nAUTH nope\r\nAUTH a b c\r\n"
        b"AUTH default nope\r\nAUTH secret\r\nGET k\r\nRESET\r\nGET k\r\n",
        b"HELLO 2 AUTH default secret\r\nPING\r\n",
        b"SUBSCRIBE a\r\nAUTH secret\r\nSUBSCRIBE a\r\nRESET\r\nPING\r\n",
        # EXEC refused before AUTH ends a transaction as Redis says it (EXECABORT ...
        # NOAUTH); of the wrong arity, the arity is checked first
        b"EXEC\r\nEXEC x\r\nMULTI\r\nDISCARD\r\nHELLO 3\r\n",
    ],
)
def test_authentication_answers_as_redis(
    mini_auth_port: int, redis_auth_port: int, session: bytes
) -> None:
    # the sentinel PING gets NOAUTH when the session ends unauthenticated: read to it
    ours = exchange(mini_auth_port, session + b"AUTH secret\r\n")
    theirs = exchange(redis_auth_port, session + b"AUTH secret\r\n")
    assert normalized(ours) == normalized(theirs)


@pytest.mark.parametrize(
    "session",
    [
        b"*11\r\n",
        b"*1\r\n$16385\r\n",
        b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*1\r\n$16385\r\n" + b"x" * 16385 + b"\r\nQUIT\r\n",
    ],
)
def test_limits_before_auth_are_redis_own(
    mini_auth_port: int, redis_auth_port: int, session: bytes
) -> None:
    ours = exchange(mini_auth_port, session, until=None)
    assert ours == exchange(redis_auth_port, session, until=None)


@pytest.mark.parametrize(
    "hostile",
    [
        b"*abc\r\nPING\r\n",
        b"PING\r\n*1\r\n*1\r\n*1\r\n*1\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$2147483648\r\n" + b"x" * 100_000,
        b'GET "a"b\r\nPING\r\n',
        b"x" * 70_000,
        b"GET a\0b\r\nPING\r\n" + b"x" * 70_000,  # a NUL hides the newline from Redis
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nvQUIT\r\n",
        b"QUIT\r\nPING\r\n",
        b"MULTI\r\nSET a b\r\nQUIT\r\n",
    ],
)
def test_hostile_input_is_answered_as_redis_answers_then_closed(
    servers: tuple[int, int], hostile: bytes
) -> None:
    mini, real = servers
    ours = exchange(mini, hostile, until=None)
    if hostile.startswith(b"*3\r\n$3\r\nSET"):  # Redis never checks a bulk's CRLF; we do
        assert ours == b"-ERR Protocol error: expected CRLF after a bulk string\r\n"
        return
    assert ours == exchange(real, hostile, until=None)


@given(garbage=st.binary(min_size=1, max_size=300))
def test_random_bytes_never_break_the_server(mini_port: int, garbage: bytes) -> None:
    with socket.create_connection((HOST, mini_port), timeout=10) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        replies = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            replies += chunk
    i = 0
    while i < len(replies):  # whatever came back is well-formed RESP
        found = resp(2).scan(replies, i, len(replies))
        assert found is not None, replies
        i = found[1]
    assert exchange(mini_port, b"") == b""  # and the server carries on: it answers the PING


# -- clients: redis-py and redis-cli -------------------------------------------------------


def _parsers() -> list[Any]:
    redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    from redis.connection import _HiredisParser, _RESP2Parser, _RESP3Parser
    from redis.utils import HIREDIS_AVAILABLE

    found = [("python", 2, _RESP2Parser), ("python", 3, _RESP3Parser)]
    if HIREDIS_AVAILABLE:
        found += [("hiredis", 2, _HiredisParser), ("hiredis", 3, _HiredisParser)]
    assert redis is not None
    return found


@pytest.mark.parametrize("which", ["python-2", "python-3", "hiredis-2", "hiredis-3"])
def test_redis_py_drives_miniredis(mini_port: int, which: str) -> None:
    import redis

    parsers = {f"{name}-{version}": (version, cls) for name, version, cls in _parsers()}
    if which not in parsers:
        pytest.skip("hiredis is not installed (pip install hiredis)")
    version, parser = parsers[which]
    db = which.startswith("hiredis") + 2 * (version == 3)  # one database per client
    pool = redis.ConnectionPool(
        host=HOST, port=mini_port, db=db, protocol=version, parser_class=parser
    )
    client = redis.Redis(connection_pool=pool)
    try:
        client.flushdb()
        assert client.ping() is True
        assert client.set("s", "v", ex=1000) is True and client.get("s") == b"v"
        assert client.ttl("s") == 1000 and client.persist("s") and client.ttl("s") == -1
        assert client.incr("n") == 1 and client.incrby("n", 41) == 42 and client.decr("n") == 41
        assert client.mset({"a": "1", "b": "2"}) and client.mget("a", "b", "z") == [
            b"1",
            b"2",
            None,
        ]
        assert client.append("a", "x") == 2 and client.strlen("a") == 2
        assert client.rpush("l", 1, 2, 3) == 3 and client.lrange("l", 0, -1) == [b"1", b"2", b"3"]
        assert client.lpop("l") == b"1" and client.rpop("l", 2) == [b"3", b"2"]
        assert client.hset("h", mapping={"f": "1", "g": "2"}) == 2
        assert client.hgetall("h") == {b"f": b"1", b"g": b"2"} and client.hlen("h") == 2
        assert client.sadd("t", "x", "y") == 2 and client.smembers("t") == {b"x", b"y"}
        assert client.sismember("t", "x") and client.scard("t") == 2
        assert client.type("h") == b"hash" and client.exists("h", "t", "zz") == 2
        assert sorted(client.keys("*")) == [b"a", b"b", b"h", b"n", b"s", b"t"]
        assert client.dbsize() == 6 and client.delete("a", "b") == 2
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            client.incr("h")
        with pytest.raises(redis.ResponseError, match="not an integer"):
            client.incr("s")
        pipe = client.pipeline(transaction=True)
        pipe.set("p", 1).incr("p").get("p")
        assert pipe.execute() == [True, 2, b"2"]
        assert client.client_setname("tester") and client.client_getname() in ("tester", b"tester")
        assert client.info("server")["redis_version"] == "7.0.15"
        assert isinstance(client.client_id(), int)
        pubsub = client.pubsub()
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert client.publish("news", "hello") == 1
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"hello"
        pubsub.close()
    finally:
        client.close()
        pool.disconnect()


def test_redis_py_authenticates(mini_auth_port: int) -> None:
    redis = pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    for version in (2, 3):
        client = redis.Redis(host=HOST, port=mini_auth_port, password="secret", protocol=version)
        assert client.ping() is True
        client.close()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    stranger = redis.Redis(host=HOST, port=mini_auth_port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):
        stranger.get("k")
    stranger.close()


def redis_cli(port: int, *args: str, stdin: bytes | None = None) -> str:
    executable = shutil.which("redis-cli")
    if executable is None:
        pytest.skip("redis-cli is not installed (Debian package redis-tools)")
    done = subprocess.run(
        [executable, "-h", HOST, "-p", str(port), *args],
        input=stdin,
        capture_output=True,
        timeout=20,
        check=True,
    )
    return done.stdout.decode()


def test_redis_cli_drives_miniredis(mini_port: int) -> None:
    assert redis_cli(mini_port, "-n", "5", "ping") == "PONG\n"
    assert redis_cli(mini_port, "-n", "5", "set", "greeting", "hello world") == "OK\n"
    assert redis_cli(mini_port, "-n", "5", "get", "greeting") == "hello world\n"
    assert redis_cli(mini_port, "-n", "5", "--no-raw", "lpush", "l", "a") == "(integer) 1\n"
    assert "redis_version:7.0.15" in redis_cli(mini_port, "info", "server")
    typed = b'SET k "two words"\nGET k\nINCR k\nHELLO 3\n'
    out = redis_cli(mini_port, "-n", "5", stdin=typed)
    assert out.startswith("OK\ntwo words\nERR value is not an integer or out of range\n")
    assert "proto" in out
    assert redis_cli(mini_port, "-n", "5", "-3", "--no-raw", "get", "nope") == "(nil)\n"


def test_before_auth_the_limits_are_redis_own_tighter_ones() -> None:
    client = Client(b"secret")
    assert client(b"*11\r\n") == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    client = Client(b"secret")
    assert client(b"*1\r\n$16385\r\n") == b"-ERR Protocol error: unauthenticated bulk length\r\n"
    client = Client(b"secret")  # the framing follows the state: after AUTH, the usual ones
    assert client(b"AUTH secret\r\n*1\r\n$16385\r\n") == b"+OK\r\n"
    assert client.state == "ready" and not client.transport.disconnecting


def test_a_client_gone_is_no_longer_a_subscriber() -> None:
    quitter = Client()
    quitter(b"SUBSCRIBE a\r\n")
    lost = Client(factory=quitter.factory)
    lost(b"SUBSCRIBE a b\r\n")
    publisher = Client(factory=quitter.factory)
    assert publisher(b"PUBLISH a x\r\n") == b":2\r\n"
    quitter(b"QUIT\r\n")
    lost.protocol.connectionLost()
    assert publisher(b"PUBLISH a x\r\nPUBLISH b x\r\n") == b":0\r\n:0\r\n"
    assert not quitter.factory.subscribers
