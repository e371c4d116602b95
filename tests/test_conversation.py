"""A declared client and a declared server of the same protocol, talking over a real
loopback socket, driven by :mod:`statewire.testing.conversation` from both diagrams: the
RESP client against miniredis (and a small command table), the memcached client against
examples/memcached.py, a key-value client against examples/keyvalue.py with the kit's own
frames; and servers and a client broken on purpose, which the conversation must catch."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Protocol

import pytest
from automat import TypeMachineBuilder
from client_helpers import load_example
from hypothesis import Phase, settings
from hypothesis import strategies as st

from grammars.resp import OK, Error
from statewire.declarative import MachineProtocol
from statewire.error import ConnectionLost
from statewire.machine import graph_of
from statewire.protocol import ClientFactory
from statewire.protocols.memcache import ITEM_OVERHEAD, MAX_ITEM
from statewire.protocols.memcache import Inputs as MemcacheInputs
from statewire.protocols.memcache_client import ErrorReply as MemcacheErrorReply
from statewire.protocols.memcache_client import MemcacheClient, MemcacheClientProtocol
from statewire.protocols.resp import (
    CommandTable,
    Inputs,
    RESPConnection,
    RESPFactory,
    RESPServer,
)
from statewire.protocols.resp_client import ErrorReply, RespClient, RespClientProtocol
from statewire.testing.conversation import Coverage, check_conversation

miniredis = load_example("miniredis.py", "miniredis_for_conversations")

#: few examples of a few steps: every step is a round trip on a real socket
CONVERSATIONS = settings(max_examples=30, stateful_step_count=50)
#: Redis's machine has the most edges (a subscribed client's WATCH among them)
RESP_CONVERSATIONS = settings(max_examples=80, stateful_step_count=50)
#: fewer, where no coverage is required
SHORT = settings(max_examples=20, stateful_step_count=30)
#: a broken end: the first failure is enough (no shrinking, which replays it)
ONE_BUG = settings(max_examples=60, stateful_step_count=50, phases=[Phase.generate])

PASSWORD = b"sesame"


def argv(*words: bytes | st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """Requests of these words (a strategy, or the word itself)."""
    return st.tuples(*(w if isinstance(w, st.SearchStrategy) else st.just(w) for w in words)).map(
        list
    )


KEYS = st.sampled_from([b"k", b"n"])
#: few channels and patterns, so that unsubscribing empties the subscriptions often
CHANNELS = st.sampled_from([b"news", b"sport"])
PATTERNS = st.sampled_from([b"n*", b"s?ort"])
SECRETS = st.sampled_from([PASSWORD, b"wrong"])

#: the requests of each input of the server, as the RESP client sends them. One channel
#: or pattern per (un)subscription: each is then confirmed by one reply, which the client
#: matches to its request (a request naming two would get two)
RESP_FRAMES = {
    Inputs.command: st.one_of(
        argv(b"SET", KEYS, st.sampled_from([b"1", b"v"])),
        argv(b"GET", KEYS),
        argv(b"INCR", KEYS),
        argv(b"DEL", KEYS),
        argv(b"UNWATCH"),
        argv(b"NOSUCHCOMMAND", KEYS),
        argv(b"PING", b"too", b"many"),  # a machine command of the wrong arity is a command
    ),
    Inputs.auth: st.one_of(argv(b"AUTH", SECRETS), argv(b"AUTH", b"default", SECRETS)),
    Inputs.hello: st.one_of(
        argv(b"HELLO"), argv(b"HELLO", b"2"), argv(b"HELLO", b"2", b"AUTH", b"default", SECRETS)
    ),
    Inputs.ping: st.one_of(argv(b"PING"), argv(b"PING", b"hi")),
    Inputs.multi: argv(b"MULTI"),
    Inputs.exec: argv(b"EXEC"),
    Inputs.discard: argv(b"DISCARD"),
    Inputs.subscribe: argv(b"SUBSCRIBE", CHANNELS),
    Inputs.unsubscribe: argv(b"UNSUBSCRIBE", CHANNELS),
    Inputs.psubscribe: argv(b"PSUBSCRIBE", PATTERNS),
    Inputs.punsubscribe: argv(b"PUNSUBSCRIBE", PATTERNS),
    Inputs.ssubscribe: argv(b"SSUBSCRIBE", CHANNELS),
    Inputs.sunsubscribe: argv(b"SUNSUBSCRIBE", CHANNELS),
    Inputs.watch: argv(b"WATCH", KEYS),
    Inputs.quit: argv(b"QUIT"),
    Inputs.reset: argv(b"RESET"),
}


async def connect_resp(reactor: Any, host: str, port: int) -> RespClient:
    return await RespClient.connect(reactor, host, port, timeout=5)


async def call(client: RespClient, input: str, frame: list[bytes]) -> Any:
    """The server's frame is a request's words: the client sends them as one command."""
    return await client.call(*frame)


async def hang_up(client: Any) -> None:
    await client.close()


def converse_resp(factory: Any, **options: Any) -> Coverage:
    """The conversation of the RESP client with the servers ``factory`` makes."""
    defaults: dict[str, Any] = {
        "connect": connect_resp,
        "send": call,
        "close": hang_up,
        "frames": RESP_FRAMES,
        "error_reply": ErrorReply,
    }
    return check_conversation(factory, RespClientProtocol, **{**defaults, **options})


# -- RESP ---------------------------------------------------------------------------------------


def test_the_resp_client_and_miniredis_make_every_edge_of_both_diagrams() -> None:
    """With a password, every edge of the server's diagram can be made through the client:
    AUTH (right or wrong) in ``anonymous``, ``admitted`` after it, transactions, pub/sub
    and ``emptied``, RESET back to ``anonymous``, QUIT to ``closed`` (the client's ``lost``
    takes it to ``closed``, and the model connects again), and the loss in every state when
    the client hangs up. The client's diagram: each reply loops on ``replies``, the loss
    ends in ``closed``."""
    coverage = converse_resp(
        lambda: miniredis.MiniRedisFactory(PASSWORD),
        require_coverage=True,
        # a RESP3 subscriber's MULTI (the client speaks RESP2)
        unreachable=[("subscribed", "resp3_multi", "queuing_subscribed")],
        settings=RESP_CONVERSATIONS,
    )
    server = {(t.source, t.input, t.target) for t in graph_of(RESPServer).transitions}
    server.remove(("subscribed", "resp3_multi", "queuing_subscribed"))
    assert coverage.server == server and coverage.server_missed == frozenset()
    assert coverage.client == {("replies", "reply", "replies"), ("replies", "lost", "closed")}
    # refusals in every state that reads, each answered with an error reply and the state
    # kept (NOAUTH, EXEC without MULTI, WATCH inside MULTI, MULTI in pub/sub mode...)
    assert {state for state, _ in coverage.refused} == {
        "anonymous",
        "ready",
        "queuing",
        "subscribed",
    }


def test_without_a_password_the_client_never_finds_the_server_anonymous() -> None:
    """No password: the server admits each connection at once, and RESET goes through
    ``anonymous`` to ``ready`` in one request, so no request is ever read in
    ``anonymous``: the edges out of it that need one are out of the client's reach."""
    coverage = converse_resp(lambda: miniredis.MiniRedisFactory(None), settings=CONVERSATIONS)
    assert ("anonymous", "admitted", "ready") in coverage.server
    assert ("ready", "reset", "anonymous") in coverage.server
    out_of_reach = {
        (t.source, t.input, t.target)
        for t in graph_of(RESPServer).transitions
        if t.source == "anonymous" and t.input != "admitted"
    }
    assert len(out_of_reach) == 5 and out_of_reach <= coverage.server_missed


# -- servers broken on purpose -------------------------------------------------------------------


def small_table(hang_up_on_set: bool = False) -> CommandTable:
    """A RESP server's commands: SET and GET over a dict (a SET that hangs up, when
    asked)."""
    table = CommandTable()
    data: dict[bytes, bytes] = {}

    @table.command(b"set", 3)
    def set_(connection: RESPConnection, args: list[bytes]) -> Any:
        data[args[0]] = args[1]
        if hang_up_on_set:
            connection.close()
        return OK

    @table.command(b"get", 2)
    def get(connection: RESPConnection, args: list[bytes]) -> Any:
        return data.get(args[0])

    return table


def test_a_small_command_table_talks_as_the_diagram_says() -> None:
    coverage = converse_resp(lambda: RESPFactory(small_table()), settings=SHORT)
    assert ("ready", "command", "ready") in coverage.server


def test_a_server_closing_where_its_diagram_reads_on_is_caught() -> None:
    """A SET that hangs up: the diagram says ``ready --command--> ready``, a state that
    reads the next request, but the connection ends."""
    with pytest.raises(AssertionError, match=r"connection ended|failed with"):
        converse_resp(lambda: RESPFactory(small_table(hang_up_on_set=True)), settings=ONE_BUG)


class Agreeable(RESPServer):
    """Answers +OK to what its state refuses, as if it had done it."""

    def remoteError(self, error: Any) -> None:
        self.transport.write(b"+OK\r\n")


def test_a_refusal_that_is_not_an_error_reply_is_caught() -> None:
    with pytest.raises(AssertionError, match="expected an error reply"):
        converse_resp(lambda: RESPFactory.forProtocol(Agreeable, small_table()), settings=ONE_BUG)


class Touchy(RespClientProtocol):
    """A client that hangs up when the server answers an error, though its diagram reads
    on in ``replies``."""

    def answer(self, value: Any) -> None:
        super().answer(value)
        if isinstance(value, Error):
            self.transport.loseConnection()


class TouchyClient(RespClient):
    protocol_class = Touchy


async def connect_touchy(reactor: Any, host: str, port: int) -> RespClient:
    return await TouchyClient.connect(reactor, host, port, timeout=5)


def test_a_client_leaving_where_its_diagram_reads_on_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"connection ended|failed with"):
        converse_resp(lambda: RESPFactory(small_table()), connect=connect_touchy, settings=ONE_BUG)


# -- memcached ----------------------------------------------------------------------------------

memcached = load_example("memcached.py", "memcached_for_conversations")

MC_KEYS = st.sampled_from([b"k", b"n"])
SIZES = st.integers(0, 8)
#: just over the item limit (a key, the value and the item's overhead): dropped as it comes
OVERSIZE = MAX_ITEM - ITEM_OVERHEAD
#: a value that fits the item limit but no read of the server's (see STORES)
CUT_BLOCK = 600 << 10
STORES = st.one_of(
    # plain sets first (what Hypothesis draws most): the retrievals then find items
    MC_KEYS.flatmap(lambda k: SIZES.map(lambda n: b"set %s 0 0 %d" % (k, n))),
    st.tuples(st.sampled_from([b"add", b"replace", b"append", b"prepend"]), MC_KEYS, SIZES).map(
        b"%s %s 0 0 %d".__mod__
    ),
    st.tuples(MC_KEYS, SIZES, st.integers(1, 3)).map(b"cas %s 0 0 %d %d".__mod__),
    st.tuples(MC_KEYS, SIZES).map(b"ms %s %d".__mod__),
    # a block larger than a read (the server reads at most 256 KiB at a time): it cannot
    # come whole with its line, so ``storing`` reads it (a small one is read with its line)
    MC_KEYS.map(lambda k: b"set %s 0 0 %d" % (k, CUT_BLOCK)),
)
#: the requests of each input of the server, as the memcached client sends them: one reply
#: each (no ``stats``, no ``mg ... v``: their replies are more than the client asks for)
MEMCACHE_FRAMES = {
    MemcacheInputs.store: STORES,
    MemcacheInputs.oversize: MC_KEYS.map(lambda k: b"set %s 0 0 %d" % (k, OVERSIZE)),
    MemcacheInputs.refused: st.tuples(MC_KEYS, SIZES).map(lambda t: b"ms %s %d Zq" % t),
    MemcacheInputs.quit: st.just(b"quit"),
    MemcacheInputs.request: st.one_of(
        # retrievals half the time: the client's ``value`` state needs an item found
        st.tuples(st.sampled_from([b"get", b"gets", b"gat 0", b"gats 0"]), MC_KEYS).map(b" ".join),
        st.one_of(
            st.tuples(st.sampled_from([b"delete", b"md", b"mg"]), MC_KEYS).map(b" ".join),
            MC_KEYS.map(lambda k: b"touch %s 0" % k),
            st.tuples(st.sampled_from([b"incr", b"decr"]), MC_KEYS).map(b"%s %s 1".__mod__),
            st.sampled_from([b"version", b"flush_all", b"verbosity 1", b"mn"]),
        ),
    ),
}
RETRIEVALS = (b"get", b"gets", b"gat", b"gats")


async def connect_memcache(reactor: Any, host: str, port: int) -> MemcacheClient:
    return await MemcacheClient.connect(reactor, host, port, timeout=5)


async def send_line(client: MemcacheClient, input: str, frame: bytes) -> Any:
    """The server's frame is a command line: the client sends it, with a data block of the
    size announced for a storage command (memcached's ``quit`` has no reply: the request
    fails when the server closes)."""
    words = frame.split()
    wire = frame + b"\r\n"
    if input in ("store", "oversize", "refused"):
        size = int(words[2] if words[0] == b"ms" else words[4])
        wire += b"v" * size + b"\r\n"
    if input == "quit":
        with contextlib.suppress(ConnectionLost):
            await client.protocol.request(wire)
        return None
    return await client.protocol.request(wire, retrieval=words[0] in RETRIEVALS)


#: edges no memcached client call causes: ``unknown`` (an unknown command is refused by
#: the route, before any input), and the loss in the middle of a data block the client
#: sends whole (or of a value it reads whole)
MEMCACHE_UNREACHABLE = {
    ("commands", "unknown", "commands"),
    ("storing", "lost", "closed"),
    ("swallowing", "lost", "closed"),
}
MEMCACHE_CLIENT_UNREACHABLE = {("value", "lost", "closed")}


def test_the_memcached_client_and_server_make_every_edge_within_reach() -> None:
    """Storage commands are read whole in ``commands`` (the block comes with the line) or,
    a block larger than a read, through ``storing``; an oversize item through
    ``swallowing`` (its pieces dropped as they come), a refused ``ms`` too; QUIT closes
    (and ``closed`` takes the loss); the client reads statuses, errors, and values through
    its ``value`` state."""
    coverage = check_conversation(
        lambda: memcached.MemcacheFactory(memcached.LRUStore()),
        MemcacheClientProtocol,
        connect=connect_memcache,
        send=send_line,
        close=hang_up,
        frames=MEMCACHE_FRAMES,
        error_reply=MemcacheErrorReply,
        require_coverage=True,
        unreachable=MEMCACHE_UNREACHABLE,
        client_unreachable=MEMCACHE_CLIENT_UNREACHABLE,
        settings=CONVERSATIONS,
    )
    assert ("swallowing", "swallowed", "commands") in coverage.server
    assert ("closed", "lost", "closed") in coverage.server
    assert ("value", "block", "replies") in coverage.client


# -- keyvalue: frames from the kit's own strategies ---------------------------------------------

keyvalue = load_example("keyvalue.py", "keyvalue_for_conversations")


class Reply(Protocol):
    """The key-value client's inputs: a response, and the loss."""

    def reply(self, body: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class KeyValueConnection(MachineProtocol):
    """A client of examples/keyvalue.py: requests sent at once, responses in order."""

    def connectionMade(self) -> None:
        self.waiting: deque[asyncio.Future[bytes]] = deque()

    def ask(self, body: bytes) -> asyncio.Future[bytes]:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(keyvalue.FRAMES.build(body))
        return future


kv = TypeMachineBuilder(Reply, KeyValueConnection)
kv_replies, kv_closed = kv.state("replies"), kv.state("closed")


@kv_replies.upon(Reply.reply).loop()
def kv_answer(machine: Reply, core: KeyValueConnection, body: bytes) -> None:
    core.waiting.popleft().set_result(body)


@kv_replies.upon(Reply.lost).to(kv_closed)
def kv_fail(machine: Reply, core: KeyValueConnection, reason: object) -> None:
    while core.waiting:
        core.waiting.popleft().set_exception(ConnectionLost("the connection ended"))


class KeyValueClient(KeyValueConnection):
    machine = kv.build()
    framings = {kv_replies: keyvalue.FRAMES}
    routes = {kv_replies: Reply.reply}
    lost = Reply.lost


class Refused(Exception):
    """The key-value server answered ``0x02`` and why."""


async def connect_keyvalue(reactor: Any, host: str, port: int) -> KeyValueClient:
    factory = ClientFactory.forProtocol(KeyValueClient)
    protocol: KeyValueClient = await reactor.connectTCP(host, port, factory, 5).connected
    return protocol


async def ask(client: KeyValueClient, input: str, body: bytes) -> bytes:
    reply = await client.ask(body)
    if reply[:1] == keyvalue.ERROR:
        raise Refused(reply[1:].decode())
    return reply


async def close_keyvalue(client: KeyValueClient) -> None:
    client.transport.loseConnection()


#: the requests the kit's own strategies rarely make: a SET with its separator, and small
#: frames of other opcodes (the grammar's own may be 64 KiB)
KEYVALUE_FRAMES = {
    "set": st.tuples(st.sampled_from([b"a", b"key"]), st.binary(max_size=4)).map(
        b"S%s\0%s".__mod__
    ),
    "unknown": st.binary(max_size=4).filter(lambda frame: frame[:1] not in b"GSDQ"),
}


def test_frames_from_the_servers_route_and_grammar_make_every_edge_but_the_idle_timeout() -> None:
    """GET, DELETE and QUIT requests are the kit's own, made from the server's route and
    grammar (an opcode and a tail). The idle timeout's edge is left out (real time); QUIT
    is answered, then the server closes."""
    coverage = check_conversation(
        keyvalue.KeyValueFactory,
        KeyValueClient,
        connect=connect_keyvalue,
        send=ask,
        close=close_keyvalue,
        frames=KEYVALUE_FRAMES,
        error_reply=Refused,
        connection=lambda client: client,
        require_coverage=True,
        settings=SHORT,
    )
    server = {(t.source, t.input, t.target) for t in graph_of(keyvalue.KeyValue).transitions}
    assert coverage.server == server - {("ready", "idle", "closed")}
    assert coverage.client == {("replies", "reply", "replies"), ("replies", "lost", "closed")}
