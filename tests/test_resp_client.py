"""The declared RESP client: replies matched to requests in order, errors per request,
connection loss failing what waits; in memory (any chunking of the replies, Hypothesis),
against a declared server in memory, and over real loopback sockets against the real
``redis-server`` and statewire's own miniredis."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from client_helpers import Sink, load_example, run
from hypothesis import given, reject
from hypothesis import strategies as st
from runtime_helpers import listen, scenario

from grammars import request, resp
from grammars.errors import InvalidValueError
from grammars.resp import (
    NULL_ARRAY,
    Attributed,
    BigNumber,
    BlobError,
    Error,
    Map,
    Push,
    Set,
    Simple,
    Verbatim,
)
from statewire._reactor import Reactor
from statewire.diagram import to_mermaid
from statewire.endpoints import clientFromString
from statewire.error import ConnectionDone, ConnectionLost, Failure
from statewire.framing import FramingError
from statewire.protocol import Factory, Protocol
from statewire.protocols.resp_client import (
    ErrorReply,
    Replies,
    RespClient,
    RespClientProtocol,
)
from statewire.testing.differential import HOST
from statewire.testing.memory import Loopback, StringTransport
from statewire.testing.model import check_protocol
from statewire.testing.strategies import chunked

miniredis = load_example("miniredis.py", "miniredis_for_clients")


def in_memory() -> tuple[RespClient, StringTransport]:
    protocol = RespClientProtocol()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return RespClient(protocol), transport


def outcome(future: asyncio.Future[Any]) -> Any:
    """The reply, or the exception, of a settled request."""
    assert future.done()
    error = future.exception()
    return future.result() if error is None else error


# -- in memory --------------------------------------------------------------------------------


def test_the_diagram_reads_as_the_client_states() -> None:
    text = to_mermaid(RespClientProtocol)
    for part in (
        "s_replies : RESP3 value",
        "s_replies --> s_replies : reply / answer",
        "s_closed : reads nothing",
        "from any state, connection lost (lost)",
    ):
        assert part in text


def test_requests_are_commands_of_the_request_grammar_and_replies_come_in_order() -> None:
    async def body() -> None:
        client, transport = in_memory()
        calls = [client.call(b"SET", "k", 12), client.call(b"GET", b"k"), client.call("PING")]
        wire = transport.value()
        commands = []
        while wire:
            args, size = request().scan(wire, 0, len(wire)) or ([], 0)
            commands.append(args)
            wire = wire[size:]
        assert commands == [[b"SET", b"k", b"12"], [b"GET", b"k"], [b"PING"]]
        assert client.waiting == 3
        client.protocol.dataReceived(b"+OK\r\n$2\r\n12\r\n+PO")
        assert [outcome(c) for c in calls[:2]] == [Simple(b"OK"), b"12"]
        assert not calls[2].done()
        client.protocol.dataReceived(b"NG\r\n")
        assert outcome(calls[2]) == Simple(b"PONG") and client.waiting == 0

    run(body)


def test_an_error_reply_fails_its_request_only() -> None:
    async def body() -> None:
        client, _ = in_memory()
        calls = [client.call(b"GET", b"a"), client.call(b"LPUSH", b"a"), client.call(b"GET", b"a")]
        client.protocol.dataReceived(b"$-1\r\n-WRONGTYPE no\r\n$1\r\nx\r\n")
        assert outcome(calls[0]) is None and outcome(calls[2]) == b"x"
        error = outcome(calls[1])
        assert isinstance(error, ErrorReply)
        assert error.kind == b"WRONGTYPE" and error.text == b"WRONGTYPE no"
        assert client.protocol.machine_state == "replies"

    run(body)


def test_the_loss_fails_every_waiting_request_and_every_later_one() -> None:
    async def body() -> None:
        client, _ = in_memory()
        first, second = client.call(b"GET", b"a"), client.call(b"GET", b"b")
        client.protocol.dataReceived(b"$1\r\n1\r\n")
        client.protocol.connectionLost(Failure(ConnectionLost("reset by peer")))
        assert outcome(first) == b"1"
        lost = outcome(second)
        assert isinstance(lost, ConnectionLost) and "reset by peer" in str(lost)
        assert isinstance(lost.__cause__, ConnectionLost)
        assert client.protocol.machine_state == "closed"
        with pytest.raises(ConnectionLost, match="not sent"):
            await client.get(b"a")

    run(body)


def test_a_reply_nobody_asked_for_closes_the_connection() -> None:
    async def body() -> None:
        client, transport = in_memory()
        client.protocol.dataReceived(b"+OK\r\n")
        assert transport.aborted

    run(body)


def test_bytes_that_are_not_resp_fail_the_waiting_requests_saying_so() -> None:
    async def body() -> None:
        client, transport = in_memory()
        waiting = client.call(b"GET", b"a")
        client.protocol.dataReceived(b"?what\r\n")
        assert transport.aborted
        client.protocol.connectionLost(Failure(ConnectionDone()))
        with pytest.raises(ConnectionLost, match="bad RESP value"):
            await waiting

    run(body)


#: replies the grammar refuses: too long a bulk, too deep, a bad type byte, bad lengths
HOSTILE = {
    b"$536870913\r\n": "RESP length 536870913 over the limit",
    b"*1\r\n" * 65 + b":1\r\n": "nested deeper than 64",
    b"?what\r\n": "bad RESP value starting b'?'",
    b"$-2\r\n": "bad RESP length b'-2'",
    b"*-7\r\n": "bad RESP length b'-7'",
    b"~-1\r\n": "only arrays have a null length",
    b"$" + b"9" * 40: "bad RESP length",
}


@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE.values()))
def test_a_hostile_reply_fails_every_waiting_request_saying_why(hostile: bytes) -> None:
    """The replies before it answer their requests; the connection is closed and every
    request still waiting fails with ConnectionLost saying what the server did wrong."""

    async def body() -> None:
        client, transport = in_memory()
        calls = [client.call(b"GET", b"k%d" % i) for i in range(4)]
        client.protocol.dataReceived(b"$1\r\na\r\n" + hostile[:7])
        client.protocol.dataReceived(hostile[7:] + b"$1\r\nb\r\n")
        assert transport.aborted
        client.protocol.connectionLost(Failure(ConnectionDone()))
        assert outcome(calls[0]) == b"a"
        for call in calls[1:]:
            lost = outcome(call)
            assert isinstance(lost, ConnectionLost) and HOSTILE[hostile] in str(lost)
            assert isinstance(lost.__cause__, FramingError)
        assert client.protocol.machine_state == "closed"
        with pytest.raises(ConnectionLost):
            await client.get(b"k")

    run(body)


def test_a_push_goes_to_its_callback_and_answers_no_request() -> None:
    async def body() -> None:
        client, _ = in_memory()
        pushes: list[Push] = []
        client.protocol.on_push = pushes.append
        waiting = client.call(b"GET", b"k")
        client.protocol.dataReceived(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$1\r\nv\r\n")
        assert pushes == [Push((b"invalidate", [b"k"]))]
        assert outcome(waiting) == b"v"

    run(body)


def test_a_request_whose_caller_stopped_waiting_still_takes_its_reply() -> None:
    async def body() -> None:
        client, _ = in_memory()
        abandoned, wanted = client.call(b"GET", b"a"), client.call(b"GET", b"b")
        abandoned.cancel()
        client.protocol.dataReceived(b"$1\r\na\r\n$1\r\nb\r\n")
        assert outcome(wanted) == b"b"

    run(body)


one_line = st.binary(max_size=10).filter(lambda b: b"\r" not in b and b"\n" not in b)
leaves = st.one_of(
    st.binary(max_size=20),
    one_line.map(Simple),
    st.sampled_from([b"ERR nope", b"WRONGTYPE x", b"NOAUTH"]).map(Error),
    st.binary(max_size=10).map(BlobError),
    st.builds(Verbatim, st.sampled_from([b"txt", b"mkd"]), st.binary(max_size=10)),
    st.floats(allow_nan=False),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.none(),
    st.just(NULL_ARRAY),
    st.booleans(),
    st.integers(-(10**30), 10**30).map(BigNumber),
)
replies = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(st.binary(max_size=5), inner), max_size=3).map(
            lambda pairs: Map(tuple(pairs))
        ),
        st.lists(inner, max_size=3).map(lambda items: Set(tuple(items))),
        st.lists(inner, max_size=3).map(lambda items: Push(tuple(items))),
        st.builds(
            Attributed, st.builds(Map, st.tuples(st.tuples(one_line.map(Simple), inner))), inner
        ),
    ),
    max_leaves=12,
)


@given(
    data=st.data(),
    values=st.lists(replies.filter(lambda v: not isinstance(v, Push)), min_size=1, max_size=8),
    version=st.sampled_from([2, 3]),
)
def test_any_chunking_of_the_replies_gives_each_request_what_the_grammar_reads(
    data: st.DataObject, values: list[Any], version: int
) -> None:
    """The client reads replies as the bytes come; the grammar reads each one whole: the
    same value, however the bytes are cut (1-byte reads included)."""
    grammar = resp(version)
    try:
        encoded = [grammar.encode(v) for v in values]
    except InvalidValueError:  # RESP2 writes a blob error as a line: no CR or LF in it
        reject()
    wire = b"".join(encoded)
    expected = [grammar.parse(e) for e in encoded]
    chunks = data.draw(chunked(wire))

    async def body() -> list[Any]:
        client, transport = in_memory()
        calls = [client.call(b"GET", b"k%d" % i) for i in range(len(values))]
        for chunk in chunks:
            client.protocol.dataReceived(chunk)
        assert not transport.aborted and client.protocol.machine_state == "replies"
        return [outcome(c) for c in calls]

    got = run(body)
    for value, result in zip(expected, got, strict=True):
        if isinstance(value, (Error, BlobError)):
            assert isinstance(result, ErrorReply) and result.text == value.text
        else:
            assert result == value


@given(st.lists(st.binary(max_size=30), min_size=1, max_size=6))
def test_any_request_is_written_as_the_grammar_reads_it(args: list[bytes]) -> None:
    async def body() -> bytes:
        client, transport = in_memory()
        client.call(*args)
        return transport.value()

    assert request().parse(run(body)) == args


def test_a_declared_client_and_a_declared_server_in_memory() -> None:
    async def body() -> None:
        protocol = RespClientProtocol()
        server = miniredis.MiniRedisFactory(None).buildProtocol(None)
        link = Loopback(protocol, server)
        client = RespClient(protocol)
        calls = [client.call(b"SET", b"k", b"v"), client.call(b"GET", b"k"), client.call(b"HSET")]
        link.pump()
        assert [outcome(c) for c in calls[:2]] == [Simple(b"OK"), b"v"]
        assert isinstance(outcome(calls[2]), ErrorReply)
        assert protocol.machine_state == "replies" and server.machine_state == "ready"

    run(body)


# -- over sockets -------------------------------------------------------------------------------


Serve = Callable[[Reactor], Awaitable[int]]


async def serve_miniredis(reactor: Reactor) -> int:
    """miniredis (statewire's declared RESP server) in this process, on a real socket."""
    return await listen(reactor, miniredis.MiniRedisFactory(None))


@pytest.fixture(params=["redis-server", "miniredis"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """Where the client connects: the real redis-server, or statewire's miniredis."""
    if request.param == "miniredis":
        return serve_miniredis
    port: int = request.getfixturevalue("redis_port")

    async def real(reactor: Reactor) -> int:
        return port

    return real


def with_client(serve: Serve, body: Callable[[RespClient], Awaitable[Any]]) -> Any:
    async def main(reactor: Reactor) -> Any:
        client = await RespClient.connect(reactor, HOST, await serve(reactor), timeout=5)
        try:
            await client.call(b"FLUSHALL")
            return await body(client)
        finally:
            await client.close()

    return scenario(main, timeout=30)


def test_commands_and_their_replies(serve: Serve) -> None:
    async def body(client: RespClient) -> None:
        assert await client.set(b"greeting", b"hello") is True
        assert await client.set(b"greeting", b"again", b"NX") is False
        assert await client.get(b"greeting") == b"hello"
        assert await client.get(b"missing") is None
        assert await client.incr(b"n", 41) == 41 and await client.incr(b"n") == 42
        assert await client.delete(b"greeting", b"n", b"missing") == 2
        assert await client.call(b"RPUSH", b"l", b"a", b"b") == 2
        assert await client.call(b"LRANGE", b"l", 0, -1) == [b"a", b"b"]
        assert await client.call(b"ECHO", b"\r\n\x00") == b"\r\n\x00"

    with_client(serve, body)


def test_pipelined_requests_get_their_replies_in_order(serve: Serve) -> None:
    async def body(client: RespClient) -> None:
        count = 2000
        sets = [client.call(b"SET", b"k%d" % i, b"v%d" % i) for i in range(count)]
        gets = [client.call(b"GET", b"k%d" % i) for i in range(count)]
        incrs = [client.call(b"INCR", b"counter") for _ in range(count)]
        assert client.waiting == 3 * count
        results = await asyncio.gather(*sets, *gets, *incrs)
        assert results[:count] == [Simple(b"OK")] * count
        assert results[count : 2 * count] == [b"v%d" % i for i in range(count)]
        assert results[2 * count :] == list(range(1, count + 1))

    with_client(serve, body)


def test_big_values_split_across_reads_among_small_replies(serve: Serve) -> None:
    """Values of megabytes come in many reads, between small replies and nested ones."""

    async def body(client: RespClient) -> None:
        big = [bytes([65 + i]) * (3 << 20) + b"\r\n" for i in range(3)]
        await asyncio.gather(*[client.call(b"SET", b"big%d" % i, v) for i, v in enumerate(big)])
        calls = []
        for i in range(3):
            calls += [client.call(b"GET", b"big%d" % i), client.call(b"PING")]
            calls.append(client.call(b"MGET", b"big%d" % i, b"missing"))
        results = await asyncio.gather(*calls)
        for i in range(3):
            got, pong, both = results[3 * i : 3 * i + 3]
            assert got == big[i] and pong == Simple(b"PONG") and both == [big[i], None]

    with_client(serve, body)


def test_an_error_in_a_pipeline_fails_that_request_only(serve: Serve) -> None:
    async def body(client: RespClient) -> None:
        results = await asyncio.gather(
            client.call(b"SET", b"s", b"text"),
            client.call(b"INCR", b"s"),
            client.call(b"NOSUCHCOMMAND"),
            client.call(b"GET", b"s"),
            return_exceptions=True,
        )
        assert results[0] == Simple(b"OK") and results[3] == b"text"
        assert isinstance(results[1], ErrorReply) and results[1].kind == b"ERR"
        assert isinstance(results[2], ErrorReply) and b"unknown command" in results[2].text

    with_client(serve, body)


def test_the_server_closing_fails_the_requests_behind_it(serve: Serve) -> None:
    async def body(client: RespClient) -> None:
        calls = [client.call(b"SET", b"a", b"1"), client.call(b"QUIT")]
        calls += [client.call(b"GET", b"a"), client.call(b"GET", b"b")]
        results = list(await asyncio.gather(*calls, return_exceptions=True))
        assert results[:2] == [Simple(b"OK"), Simple(b"OK")]
        for lost in results[2:]:
            assert isinstance(lost, ConnectionLost)
            assert "the connection was closed before the reply came" in str(lost)
        with pytest.raises(ConnectionLost):
            await client.get(b"a")

    with_client(serve, body)


def test_resp3_replies(serve: Serve) -> None:
    async def body(client: RespClient) -> None:
        hello = await client.call(b"HELLO", 3)
        assert isinstance(hello, Map)
        await client.call(b"HSET", b"h", b"f", b"v")
        assert await client.call(b"HGETALL", b"h") == Map(((b"f", b"v"),))
        assert await client.get(b"missing") is None

    with_client(serve, body)


def test_an_abrupt_loss_fails_every_waiting_request() -> None:
    class Swallow(Protocol):
        """Reads the requests, never answers, and resets the connection at the third."""

        def dataReceived(self, data: bytes) -> None:
            self.seen = getattr(self, "seen", b"") + data
            if self.seen.count(b"*") >= 3:
                self.transport.abortConnection()

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Swallow))
        client = await RespClient.connect(reactor, HOST, port, timeout=5)
        results = await asyncio.gather(
            *(client.call(b"GET", b"k") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ConnectionLost) for r in results), results
        await client.close()

    scenario(main, timeout=30)


def test_a_client_from_an_endpoint_description() -> None:
    async def main(reactor: Reactor) -> None:
        port = await serve_miniredis(reactor)
        endpoint = clientFromString(reactor, f"tcp:host={HOST}:port={port}:timeout=5")
        client = await RespClient.from_endpoint(endpoint)
        assert await client.call(b"PING") == Simple(b"PONG")
        await client.close()
        await client.close()  # a second close is harmless

    scenario(main, timeout=30)


# -- the model-based kit: the client walked on its own diagram --------------------------------


class _AlwaysAsked(deque):  # type: ignore[type-arg]
    """The model plays the application: a request is always waiting for the next reply."""

    def __len__(self) -> int:
        return 1

    def popleft(self) -> Sink:
        return Sink()


class AskedClient(RespClientProtocol):
    """The client with a request always waiting, so that every reply the diagram allows
    has a request to answer."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.waiting = _AlwaysAsked()


#: replies of every type (built by the state's framing, ``resp()``; the model cuts them
#: into reads of its own)
MODEL_FRAMES = {
    Replies.reply: st.sampled_from(
        [
            Simple(b"OK"),
            b"v",
            12,
            None,
            True,
            1.5,
            BigNumber(123),
            Error(b"ERR x"),
            BlobError(b"txt:abc"),
            Verbatim(b"txt", b"abc"),
            [b"a", 1, [None, b""]],
            Map([(Simple(b"k"), Set([1]))]),
            Push([Simple(b"pushed")]),
        ]
    ),
}


def test_the_model_walks_every_transition_of_the_clients_diagram() -> None:
    """statewire.testing.model drives the client from its diagram: reads of replies
    generated for its input, fed in arbitrary reads; every accepted one must land in the
    state the diagram says, none refused."""
    missed = check_protocol(AskedClient, frames=MODEL_FRAMES, require_coverage=True)
    assert missed == set()
