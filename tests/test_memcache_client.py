"""The declared memcached client: reply lines and value blocks matched to requests in
order, errors per request, connection loss failing what waits; in memory (any chunking of
the replies, Hypothesis), against the declared server in memory, and over real loopback
sockets against the real ``memcached`` and statewire's own ``examples/memcached.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from client_helpers import Sink, load_example, run
from hypothesis import given
from hypothesis import strategies as st
from memcached_helpers import HOST, start_memcached
from runtime_helpers import listen, scenario

from grammars.memcache import Arithmetic, Delete, Retrieval, Storage, parse_command
from statewire._reactor import Reactor
from statewire.diagram import to_mermaid
from statewire.endpoints import clientFromString
from statewire.error import ConnectionDone, ConnectionLost, Failure
from statewire.protocols.memcache_client import (
    MAX_VALUE,
    ErrorReply,
    Item,
    MemcacheClient,
    MemcacheClientProtocol,
    Replies,
    Waiting,
)
from statewire.testing.memory import Loopback, StringTransport
from statewire.testing.model import check_protocol
from statewire.testing.strategies import chunked

example = load_example("memcached.py", "memcached_for_clients")


def in_memory() -> tuple[MemcacheClient, StringTransport]:
    protocol = MemcacheClientProtocol()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return MemcacheClient(protocol), transport


async def started(*calls: Awaitable[Any]) -> list[asyncio.Future[Any]]:
    """The calls as tasks that have sent their requests (and wait for the replies)."""
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)
    return tasks


async def settle(tasks: list[asyncio.Future[Any]]) -> list[Any]:
    """What each task returned or raised, once the replies fed are read."""
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    return list(done)


# -- in memory --------------------------------------------------------------------------------


def test_the_diagram_reads_as_the_client_states() -> None:
    text = to_mermaid(MemcacheClientProtocol)
    for part in (
        "s_replies : line CRLF ≤ 4 KiB",
        "s_value : fixed(size + 2)",
        "s_replies --> s_value : VALUE / expect_block",
        "s_value --> s_replies : block / keep",
        "s_replies --> s_replies : END / found",
        "from any state, connection lost (lost)",
    ):
        assert part in text


def test_requests_are_the_grammars_commands_and_replies_come_in_order() -> None:
    async def body() -> None:
        client, transport = in_memory()
        tasks = await started(
            client.set(b"k", b"a\r\nb", flags=3),
            client.get_many(b"k", b"gone"),
            client.incr("n", 5),
            client.delete(b"k"),
            client.get(b"k"),
        )
        assert transport.value() == (
            b"set k 3 0 4\r\na\r\nb\r\nget k gone\r\nincr n 5\r\ndelete k\r\nget k\r\n"
        )
        assert client.waiting == 5
        client.protocol.dataReceived(b"STORED\r\nVALUE k 3 4\r\na\r\nb\r\nEND\r\n")
        client.protocol.dataReceived(b"12\r\nDELETED\r\nEND\r\n")
        assert await settle(tasks) == [True, {b"k": b"a\r\nb"}, 12, True, None]
        assert client.protocol.machine_state == "replies" and client.waiting == 0

    run(body)


def test_gets_gives_the_items_with_their_cas() -> None:
    async def body() -> None:
        client, _ = in_memory()
        tasks = await started(client.get_items(b"a", b"b", cas=True))
        client.protocol.dataReceived(b"VALUE a 1 1 7\r\nx\r\nVALUE b 0 0 8\r\n\r\nEND\r\n")
        assert await settle(tasks) == [[Item(b"a", 1, b"x", 7), Item(b"b", 0, b"", 8)]]

    run(body)


def test_an_error_reply_fails_its_request_only() -> None:
    async def body() -> None:
        client, transport = in_memory()
        tasks = await started(client.incr(b"s"), client.set(b"k", b"v"), client.get(b"k"))
        client.protocol.dataReceived(
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
            b"SERVER_ERROR out of memory storing object\r\nEND\r\n"
        )
        incr, stored, got = await settle(tasks)
        assert isinstance(incr, ErrorReply) and incr.kind == b"CLIENT_ERROR"
        assert isinstance(stored, ErrorReply) and b"out of memory" in stored.line
        assert got is None and not transport.aborted

    run(body)


def test_the_loss_mid_value_fails_every_waiting_request_and_every_later_one() -> None:
    async def body() -> None:
        client, _ = in_memory()
        tasks = await started(client.get(b"k"), client.set(b"k", b"v"))
        client.protocol.dataReceived(b"VALUE k 0 10\r\nhel")
        assert client.protocol.machine_state == "value"
        client.protocol.connectionLost(Failure(ConnectionDone()))
        for lost in await settle(tasks):
            assert isinstance(lost, ConnectionLost)
            assert "the connection was closed before the reply came" in str(lost)
        assert client.protocol.machine_state == "closed"
        with pytest.raises(ConnectionLost, match="not sent"):
            await client.get(b"k")

    run(body)


@pytest.mark.parametrize(
    ("reply", "call"),
    [
        (b"END\r\n", "set"),  # a retrieval's end for a storage command
        (b"STORED\r\n", "get"),  # a line for a retrieval
        (b"VALUE k 0 1\r\nxyz\r\n", "get"),  # a block not ended by CRLF
        (b"VALUE k 0 x\r\n", "get"),  # a size that is not one
        (b"VALUE k 0 %d\r\n" % (MAX_VALUE + 1), "get"),  # a size over the limit
        (b"STORED\r\nSTORED\r\n", "set"),  # a reply nobody asked for
    ],
)
def test_a_reply_that_breaks_the_protocol_closes_and_fails_what_waits(
    reply: bytes, call: str
) -> None:
    async def body() -> None:
        client, transport = in_memory()
        request = client.get(b"k") if call == "get" else client.set(b"k", b"v")
        tasks = await started(request)
        client.protocol.dataReceived(reply)
        assert transport.aborted
        client.protocol.connectionLost(Failure(ConnectionLost()))
        (result,) = await settle(tasks)
        if reply.startswith(b"STORED\r\nSTORED"):
            assert result is True  # the first reply was its own
        else:
            assert isinstance(result, ConnectionLost)

    run(body)


def test_keys_memcached_would_split_are_refused_before_sending() -> None:
    async def body() -> None:
        client, transport = in_memory()
        for key in (b"a b", b"a\r\nflush_all", b"", b"k" * 251, "\x7f"):
            with pytest.raises(ValueError, match="not a memcached key"):
                await client.get(key)
        assert transport.value() == b""

    run(body)


keys = st.binary(min_size=1, max_size=250).map(lambda k: bytes(b % 94 + 33 for b in k))


@given(key=keys, value=st.binary(max_size=50), flags=st.integers(0, 2**32 - 1))
def test_every_request_is_a_command_the_grammar_reads_back(
    key: bytes, value: bytes, flags: int
) -> None:
    async def body() -> bytes:
        client, transport = in_memory()
        tasks = await started(
            client.set(key, value, flags=flags),
            client.get(key),
            client.incr(key, 3),
            client.delete(key),
        )
        for task in tasks:
            task.cancel()
        return transport.value()

    wire = run(body)
    head, rest = wire.split(b"\r\n", 1)
    assert parse_command(head) == Storage(b"set", key, flags, 0, len(value))
    assert rest[: len(value) + 2] == value + b"\r\n"
    lines = rest[len(value) + 2 :].split(b"\r\n")
    assert [parse_command(line) for line in lines[:-1]] == [
        Retrieval(b"get", (key,)),
        Arithmetic(b"incr", key, 3),
        Delete(key),
    ]


items = st.builds(
    Item,
    st.binary(min_size=1, max_size=8).map(lambda k: bytes(b % 90 + 33 for b in k)),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=40),
)
replies = st.one_of(
    st.tuples(st.just("get"), st.lists(items, max_size=3)),
    st.tuples(st.just("line"), st.sampled_from([b"STORED", b"NOT_STORED", b"DELETED", b"7"])),
    st.tuples(
        st.just("error"), st.sampled_from([b"ERROR", b"CLIENT_ERROR bad", b"SERVER_ERROR x"])
    ),
)


def wire_of(kind: str, reply: Any) -> bytes:
    if kind == "get":
        blocks = [
            b"VALUE %s %d %d\r\n%s\r\n" % (i.key, i.flags, len(i.value), i.value) for i in reply
        ]
        return b"".join(blocks) + b"END\r\n"
    return reply + b"\r\n"  # type: ignore[no-any-return]


@given(data=st.data(), expected=st.lists(replies, min_size=1, max_size=8))
def test_any_chunking_of_the_replies_gives_each_request_its_own(
    data: st.DataObject, expected: list[tuple[str, Any]]
) -> None:
    wire = b"".join(wire_of(kind, reply) for kind, reply in expected)
    chunks = data.draw(chunked(wire))

    async def body() -> list[Any]:
        client, transport = in_memory()
        futures = [
            client.protocol.request(b"get x\r\n", retrieval=True)
            if kind == "get"
            else client.protocol.request(b"set x 0 0 0\r\n\r\n")
            for kind, _ in expected
        ]
        for chunk in chunks:
            client.protocol.dataReceived(chunk)
        assert not transport.aborted and client.protocol.machine_state == "replies"
        return await settle(futures)

    for (kind, reply), got in zip(expected, run(body), strict=True):
        if kind == "error":
            assert isinstance(got, ErrorReply) and got.line == reply
        else:
            assert got == reply


def test_a_declared_client_and_a_declared_server_in_memory() -> None:
    async def body() -> None:
        protocol = MemcacheClientProtocol()
        server = example.MemcacheFactory(example.LRUStore(1 << 20)).buildProtocol(None)
        link = Loopback(protocol, server)
        client = MemcacheClient(protocol)
        tasks = await started(client.set(b"k", b"v\r\n"), client.get(b"k"), client.incr(b"k"))
        link.pump()
        stored, value, refused = await settle(tasks)
        assert (stored, value) == (True, b"v\r\n") and isinstance(refused, ErrorReply)
        assert protocol.machine_state == "replies" and server.machine_state == "commands"

    run(body)


# -- over sockets -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memcached_port() -> Iterator[int]:
    yield from start_memcached()


Serve = Callable[[Reactor], Awaitable[int]]


async def serve_example(reactor: Reactor) -> int:
    """examples/memcached.py (statewire's declared server) in this process, on a socket."""
    return await listen(reactor, example.MemcacheFactory(example.LRUStore(64 << 20)))


@pytest.fixture(params=["memcached", "examples/memcached.py"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """Where the client connects: the real memcached, or statewire's own server."""
    if request.param != "memcached":
        return serve_example
    port: int = request.getfixturevalue("memcached_port")

    async def real(reactor: Reactor) -> int:
        return port

    return real


def with_client(serve: Serve, body: Callable[[MemcacheClient], Awaitable[Any]]) -> Any:
    async def main(reactor: Reactor) -> Any:
        client = await MemcacheClient.connect(reactor, HOST, await serve(reactor), timeout=5)
        try:
            await client.protocol.request(b"flush_all\r\n")
            return await body(client)
        finally:
            await client.close()

    return scenario(main, timeout=30)


def test_commands_and_their_replies(serve: Serve) -> None:
    async def body(client: MemcacheClient) -> None:
        assert await client.set(b"greeting", b"hello\r\nworld", flags=7) is True
        assert await client.add(b"greeting", b"again") is False
        assert await client.get(b"greeting") == b"hello\r\nworld"
        assert await client.get_items(b"greeting") == [Item(b"greeting", 7, b"hello\r\nworld")]
        assert await client.get(b"missing") is None
        assert await client.set(b"n", b"40") and await client.incr(b"n", 2) == 42
        assert await client.decr(b"n", 50) == 0 and await client.incr(b"nothing") is None
        assert await client.delete(b"n") is True and await client.delete(b"n") is False
        big = bytes(range(256)) * 2000
        assert await client.set(b"big", big) and await client.get(b"big") == big
        assert (await client.version())[:2] == b"1."

    with_client(serve, body)


def test_pipelined_requests_get_their_replies_in_order(serve: Serve) -> None:
    async def body(client: MemcacheClient) -> None:
        count = 1000
        stored = await asyncio.gather(*(client.set(b"k%d" % i, b"v%d" % i) for i in range(count)))
        assert stored == [True] * count
        values = await asyncio.gather(*(client.get(b"k%d" % i) for i in range(count)))
        assert values == [b"v%d" % i for i in range(count)]
        await client.set(b"n", b"0")
        assert await asyncio.gather(*(client.incr(b"n") for _ in range(count))) == list(
            range(1, count + 1)
        )

    with_client(serve, body)


def test_an_error_in_a_pipeline_fails_that_request_only(serve: Serve) -> None:
    async def body(client: MemcacheClient) -> None:
        results = await asyncio.gather(
            client.set(b"s", b"text"),
            client.incr(b"s"),
            client.set(b"huge", b"h" * (2 << 20)),
            client.protocol.request(b"bogus\r\n"),
            client.get(b"s"),
            return_exceptions=True,
        )
        assert results[0] is True and results[4] == b"text"
        assert isinstance(results[1], ErrorReply) and results[1].kind == b"CLIENT_ERROR"
        assert isinstance(results[2], ErrorReply) and b"too large" in results[2].line
        assert isinstance(results[3], ErrorReply) and results[3].line == b"ERROR"

    with_client(serve, body)


def test_the_server_closing_fails_the_requests_behind_it(serve: Serve) -> None:
    async def body(client: MemcacheClient) -> None:
        stored = await started(client.set(b"a", b"1"))  # sent before quit
        quit = client.protocol.request(b"quit\r\n")
        results = await settle([*stored, quit, *await started(client.get(b"a"))])
        assert results[0] is True
        for lost in results[1:]:
            assert isinstance(lost, ConnectionLost)
            # closed, or reset: a request that reaches a server which has closed after
            # ``quit`` gets a reset from the kernel (memcached's case, now and then)
            assert str(lost).endswith("before the reply came"), lost
            assert "was closed" in str(lost) or "reset" in str(lost), lost
        with pytest.raises(ConnectionLost):
            await client.get(b"a")

    with_client(serve, body)


def test_a_client_from_an_endpoint_description() -> None:
    async def main(reactor: Reactor) -> None:
        port = await serve_example(reactor)
        endpoint = clientFromString(reactor, f"tcp:host={HOST}:port={port}:timeout=5")
        client = await MemcacheClient.from_endpoint(endpoint)
        assert await client.set(b"k", b"v") and await client.get(b"k") == b"v"
        await client.close()
        await client.close()  # a second close is harmless

    scenario(main, timeout=30)


# -- the model-based kit: the client walked on its own diagram --------------------------------


class AskedClient(MemcacheClientProtocol):
    """The client with, before each reply, a request of the kind it answers waiting (a
    retrieval for ``VALUE`` and ``END``, another command for a line): the model plays the
    application, so that every reply the diagram allows has a request to answer."""

    def oldest(self, retrieval: bool) -> Any:
        if not self.waiting or (self.waiting[0].items is not None) is not retrieval:
            self.waiting.appendleft(Waiting(Sink(), retrieval))  # type: ignore[arg-type]
        return super().oldest(retrieval)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        if not self.waiting:
            self.waiting.append(Waiting(Sink(), False))  # type: ignore[arg-type]
        super().settle(result, error)


#: reply lines and a value block of consistent sizes
MODEL_FRAMES = {
    Replies.value: st.sampled_from([b"VALUE k 0 3", b"VALUE key 5 3 99"]),
    Replies.block: st.just(b"abc\r\n"),
    Replies.end: st.just(b"END"),
    Replies.status: st.sampled_from([b"STORED", b"NOT_FOUND", b"DELETED", b"12", b"VERSION 1"]),
    Replies.error: st.sampled_from([b"ERROR", b"CLIENT_ERROR bad", b"SERVER_ERROR x"]),
}


def test_the_model_walks_every_transition_of_the_clients_diagram() -> None:
    """statewire.testing.model drives the client from its diagram: each reply line and
    value block generated for its input, fed in arbitrary reads; every accepted one must
    land in the state the diagram says, none refused."""
    missed = check_protocol(AskedClient, frames=MODEL_FRAMES, require_coverage=True)
    assert missed == set()
