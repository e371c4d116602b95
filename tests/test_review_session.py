"""Regressions found by reviewing this session's code with hostile input: the memcached
server (numbers no C integer holds, LRU accounting), ``streamed`` under the driver's holds,
``declare()`` misuse, and observers (tracing, metrics) that fail or see odd names. Each
test names what broke; in memory unless it compares with the real memcached."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
import test_declaring
import test_memcache_server as memcache
import test_tracing
from automat import TypeMachineBuilder
from construct import this
from memcached_helpers import start_memcached
from process_helpers import running

from grammars import Piece, fixed, line, streamed
from statewire.declarative import MachineProtocol
from statewire.machine import DefinitionError, by_key, by_verb, observe, unobserve
from statewire.metrics import Metrics, transitions_in
from statewire.protocol import Factory
from statewire.testing.memory import Conversation, StringTransport

# -- memcached: numbers -----------------------------------------------------------------------


def test_incr_on_a_value_of_thousands_of_digits_is_non_numeric_not_a_crash() -> None:
    # int() of more than 4300 digits raised ValueError: the connection was aborted
    client = memcache.Client()
    digits = b"1" * 5000
    assert client(b"set k 0 0 5000\r\n" + digits + b"\r\n") == b"STORED\r\n"
    non_numeric = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert client(b"incr k 1\r\ndecr k 1\r\n") == non_numeric * 2
    assert client(b"ma k\r\n") == non_numeric
    assert not client.transport.disconnecting
    # leading zeros are no digits too many, as for strtoull
    zeros = b"0" * 34 + b"5"
    assert client(b"set z 0 0 35\r\n" + zeros + b"\r\nincr z 1\r\n") == b"STORED\r\n6\r\n"


def test_flush_all_and_verbosity_read_their_number_as_memcached_does() -> None:
    client = memcache.Client()
    bad_exptime = b"CLIENT_ERROR invalid exptime argument\r\n"
    assert client(b"flush_all " + b"9" * 5000 + b"\r\n") == bad_exptime  # was a crash
    assert client(b"flush_all 99999999999999999999\r\n") == bad_exptime  # ERANGE
    client(b"set k 0 0 1\r\na\r\n")
    assert client(b"flush_all -5\r\nget k\r\n") == b"OK\r\nEND\r\n"  # negative: now
    bad_format = b"CLIENT_ERROR bad command line format\r\n"
    assert client(b"verbosity abc\r\nverbosity -1\r\n") == bad_format * 2
    assert client(b"verbosity " + b"9" * 5000 + b"\r\n") == bad_format
    assert client(b"verbosity 4294967296\r\nverbosity abc noreply\r\n") == b"OK\r\n"
    assert not client.transport.disconnecting


def test_already_expired_is_never_never_whatever_the_clock_reads() -> None:
    # expiry was ``now - 1`` (or ``now`` plus a past Unix time less the wall clock): 0.0,
    # which means "never expires", when the connection's clock read 1.0
    client = Conversation(memcache.example.MemcacheFactory(memcache.example.LRUStore()))
    client.clock.advance(1.0)
    client.factory.wall_clock = lambda: 1_700_000_000.0
    assert client(b"set k 0 -1 1\r\na\r\nget k\r\n") == b"STORED\r\nEND\r\n"
    assert client(b"set j 0 1699999999 1\r\nb\r\nget j\r\n") == b"STORED\r\nEND\r\n"
    assert client(b"set m 0 1700000001 1\r\nc\r\nget m\r\n").count(b"VALUE") == 1


def test_flush_all_at_a_unix_time_already_past_flushes_nothing() -> None:
    client = memcache.Client()
    client.factory.wall_clock = lambda: 1_700_000_000.0
    client(b"set k 0 0 1\r\na\r\n")
    assert client(b"flush_all 1000000000\r\nget k\r\n") == b"OK\r\nVALUE k 0 1\r\na\r\nEND\r\n"
    assert client(b"flush_all 1700000005\r\nget k\r\n").count(b"VALUE") == 1
    client.clock.advance(6)
    assert client(b"get k\r\n") == b"END\r\n"  # a Unix time to come flushes then


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    target = "examples/memcached.py:factory"
    with running("-m", "statewire", "serve", target, "--listen", "tcp:0:interface=127.0.0.1") as s:
        theirs = start_memcached()
        try:
            yield s.port, next(theirs)
        finally:
            theirs.close()
            s.stop()


HOSTILE_NUMBERS = [
    b"set k 0 0 5000\r\n" + b"1" * 5000 + b"\r\nincr k 1\r\ndecr k 1\r\nma k\r\n",
    b"set z 0 0 35\r\n" + b"0" * 34 + b"5\r\nincr z 1\r\n",
    b"flush_all " + b"9" * 5000 + b"\r\n",
    b"flush_all -1\r\nflush_all 99999999999999999999\r\nflush_all +5\r\nflush_all -0\r\n",
    b"set k 0 0 1\r\na\r\nflush_all -5\r\nget k\r\n",
    b"verbosity 99999999999999999999\r\nverbosity abc\r\nverbosity -1\r\n",
    b"verbosity 4294967296\r\nverbosity abc noreply\r\nverbosity 1 2\r\n",
    b"verbosity " + b"9" * 5000 + b"\r\n",
    # a Unix time already past flushes nothing in memcached (it flushed everything here)
    b"set k 0 0 1\r\na\r\nflush_all 1000000000\r\ngets k\r\n",
    b"set k 0 0 1\r\na\r\nflush_all 2592001\r\nset j 0 0 1\r\nb\r\ngets k j\r\n",
    b"set k 0 0 1\r\na\r\nflush_all 2592000\r\ngets k\r\nflush_all\r\ngets k\r\n",
]

#: meta flags whose token is no number memcached reads, or out of its range; opaque tokens
#: longer than memcached echoes. Each was answered otherwise (HD, or other words) before
BAD_META_TOKENS = [
    b"ms k 1 T99999999999999999999\r\na\r\nms k 1 Fabc\r\na\r\nms k 1 F-1\r\na\r\n",
    b"ms k 1 F\r\na\r\nms k 1 MX\r\na\r\nms k 1 Cabc\r\na\r\nms k 1 Tabc\r\na\r\n",
    b"ms k 1 F4294967296\r\na\r\nmg k f\r\n",
    b"md k C\r\nmd k Cabc\r\nmd k C99999999999999999999\r\n",
    b"ma k N0 Jabc\r\nma n N0 J-5\r\nma n N0 D99999999999999999999\r\nma n N0 Dabc\r\n",
    b"ma n N0 D18446744073709551615\r\nma n Nabc\r\nma n N0 Tabc\r\n",
    b"set k 0 0 1\r\n5\r\nmg k Tabc\r\nmg k T99999999999999999999\r\n",
    b"set k 0 0 1\r\n5\r\nma k Tabc\r\nma k T99999999999999999999\r\n",
    b"set k 0 0 1\r\n5\r\nmg k O" + b"1" * 31 + b" v\r\nmg k O" + b"1" * 32 + b" v\r\n",
    b"ms k 1 O" + b"1" * 32 + b"\r\na\r\nmd k O" + b"1" * 32 + b"\r\n",
    b"ma k O" + b"1" * 32 + b"\r\nmn O" + b"1" * 32 + b"\r\nme k O" + b"1" * 32 + b"\r\n",
    b"mg k q O" + b"1" * 32 + b"\r\nmn\r\n",
    # ms's C flag: ignored by the add mode, looked at after the append/prepend mode's miss
    b"ms k 1 ME C5\r\na\r\nms k 1 ME C5\r\nb\r\nmg k v\r\n",
    b"ms k 1 MA C5\r\na\r\nms k 1 MP C5\r\na\r\nms k 1 MS C5\r\na\r\nms k 1 MR C5\r\na\r\n",
    b"set k 0 0 1\r\na\r\nms k 1 MA C5\r\nb\r\nms k 1 MR C5\r\nb\r\nmg k v\r\n",
    # "-0" is a number strtoul reads (0)
    b"ms k 1 F-0\r\na\r\nmg k f v\r\nms k 1 C-0\r\na\r\nma k N0 J-0 D-0 v\r\nmd k C-0\r\n",
]


@pytest.mark.parametrize("requests", HOSTILE_NUMBERS)
def test_hostile_numbers_are_answered_as_memcached_answers_them(
    servers: tuple[int, int], requests: bytes
) -> None:
    memcache.same_replies(*servers, requests)


@pytest.mark.parametrize("requests", BAD_META_TOKENS)
def test_bad_meta_tokens_are_refused_as_memcached_refuses_them(
    servers: tuple[int, int], requests: bytes
) -> None:
    memcache.same_replies(*servers, requests)


# -- memcached: the LRU store's accounting ----------------------------------------------------


def _check_accounting(store: Any) -> None:
    from statewire.protocols.memcache import ITEM_OVERHEAD

    items = store._items.items()
    real = sum(len(key) + len(item.value) + ITEM_OVERHEAD for key, (item, _) in items)
    assert store.used == real and store.used <= store.limit


@pytest.mark.parametrize("seed", range(40))
def test_lru_accounting_never_drifts_under_growth_and_eviction(seed: int) -> None:
    rnd = random.Random(seed)
    client = memcache.Client(limit=rnd.choice([200, 400, 1000, 5000]))
    for _ in range(60):
        key = rnd.choice([b"a", b"b", b"c", b"n"])
        value = rnd.choice([b"1", b"99", b"x" * rnd.randint(0, 300), b"18446744073709551615"])
        size = len(value)
        client(
            rnd.choice(
                [
                    b"set %s 0 0 %d\r\n%s\r\n" % (key, size, value),
                    b"append %s 0 0 %d\r\n%s\r\n" % (key, size, value),
                    b"prepend %s 0 0 %d\r\n%s\r\n" % (key, size, value),
                    b"incr %s 18446744073709551615\r\n" % key,
                    b"decr %s 100\r\n" % key,
                    b"ma %s N0 J9 D3\r\n" % key,
                    b"ms %s %d MA\r\n%s\r\n" % (key, size, value),
                    b"gat 5 %s\r\nmg %s T2 v\r\ntouch %s 1\r\n" % (key, key, key),
                    b"delete %s\r\nflush_all 3\r\n" % key,
                    b"ms %s 2000\r\n" % key + b"z" * 2002,
                ]
            )
        )
        if rnd.random() < 0.2:
            client.clock.advance(rnd.choice([1, 2, 5]))
        _check_accounting(client.factory.storage)
        assert not client.transport.disconnecting


# -- streamed blocks under the driver's holds --------------------------------------------------


class _Future:
    """A future the test completes by hand (the driver holds frames until it does)."""

    def __init__(self) -> None:
        self._callbacks: list[Any] = []
        self._done = False

    def add_done_callback(self, callback: Any) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def finish(self) -> None:
        self._done = True
        for callback in self._callbacks:
            callback(self)


class Blocks(Protocol):
    def head(self, size: int) -> None: ...
    def piece(self, data: bytes) -> None: ...
    def last(self, data: bytes) -> None: ...


class BlockCore(MachineProtocol):
    pending: list[_Future]
    log: list[tuple[str, Any]]


@dataclass
class Block:
    size: int


_blocks = TypeMachineBuilder(Blocks, BlockCore)
_idle = _blocks.state("idle")
_body = _blocks.state("body", lambda machine, core, size: Block(size))


@_idle.upon(Blocks.head).to(_body)
def _start(machine: Blocks, core: BlockCore, size: int) -> None:
    core.log.append(("head", size))


@_body.upon(Blocks.piece).loop()
def _piece(machine: Blocks, core: BlockCore, block: Block, data: bytes) -> _Future:
    core.log.append(("piece", bytes(data)))
    core.pending.append(future := _Future())
    return future


@_body.upon(Blocks.last).to(_idle)
def _last(machine: Blocks, core: BlockCore, block: Block, data: bytes) -> _Future:
    core.log.append(("last", bytes(data)))
    core.pending.append(future := _Future())
    return future


class BlockServer(BlockCore):
    machine = _blocks.build()
    framings = {_idle: line(b"\n"), _body: streamed(this.size)}
    routes = {
        _idle: by_key(lambda frame: 1, {1: (Blocks.head, lambda frame: (int(frame),))}),
        _body: by_key(lambda piece: piece.last, {False: Blocks.piece, True: Blocks.last}),
    }


@pytest.mark.parametrize("seed", range(60))
def test_streamed_pieces_waited_on_lose_and_reorder_nothing(seed: int) -> None:
    wire = b"5\nhello3\nabc0\n4\nwxyz"
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(wire)), rnd.randint(0, len(wire) - 1)))
    chunks = [wire[i:j] for i, j in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    talk = Conversation(Factory.forProtocol(BlockServer))
    protocol: Any = talk.protocol
    protocol.pending, protocol.log = [], []
    for chunk in chunks:
        talk(chunk)
        while protocol.pending and rnd.random() < 0.6:
            protocol.pending.pop(0).finish()
    for _ in range(100):
        if not protocol.pending:
            break
        protocol.pending.pop(0).finish()
    blocks, block = [], b""
    for kind, value in protocol.log:
        if kind == "head":
            blocks.append(value)
        else:
            block += value
            if kind == "last":
                blocks.append(block)
                block = b""
    assert blocks == [5, b"hello", 3, b"abc", 0, b"", 4, b"wxyz"]
    assert talk.state == "idle" and not talk.transport.disconnecting


def test_a_piece_is_always_a_piece() -> None:
    assert isinstance(streamed(3).parse(b"abc"), Piece) and fixed(3).parse(b"abc") == b"abc"


# -- declare() ----------------------------------------------------------------------------------


def _declared() -> tuple[type[MachineProtocol], Any]:
    class Upload(MachineProtocol):
        sends = line()

    machine, ready, receiving = test_declaring._machine(Upload, test_declaring.Incoming)
    put = (test_declaring.Inputs.put, test_declaring._words)
    routes = {ready: by_verb({b"PUT": put}), receiving: test_declaring.Inputs.body}
    Upload.declare(machine, framings={ready: line(), receiving: fixed(this.size)}, routes=routes)
    return Upload, machine


def test_declaring_a_class_twice_is_refused_and_open_connections_go_on() -> None:
    # a second declare() swapped the plan under open connections, which then broke
    upload, machine = _declared()
    protocol, transport = upload(), StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"PUT a 3\r\n")
    with pytest.raises(DefinitionError, match="declared already"):
        upload.declare(machine)
    protocol.dataReceived(b"abcPUT b 1\r\nx")
    assert transport.value() == b"go\r\ngot a abc\r\ngo\r\ngot b x\r\n"
    assert not transport.disconnecting


def test_a_refused_declaration_changes_nothing() -> None:
    class Upload(MachineProtocol):
        pass

    machine, ready, receiving = test_declaring._machine(Upload, test_declaring.Incoming)
    with pytest.raises(DefinitionError):
        Upload.declare(
            machine,
            framings={ready: line(), receiving: fixed(this.size)},
            routes={ready: by_verb({b"PUT": ("no_such_input", test_declaring._words)})},
        )
    assert Upload.machine is None and Upload.framings == {} and Upload.routes == {}
    with pytest.raises(TypeError, match="declares no machine"):
        Upload().makeConnection(StringTransport())


def test_a_subclass_of_a_declared_class_may_declare_its_own() -> None:
    upload, _ = _declared()

    class Again(upload):  # type: ignore[valid-type,misc]
        pass

    machine, ready, receiving = test_declaring._machine(Again, test_declaring.Incoming)
    put = (test_declaring.Inputs.put, test_declaring._words)
    Again.declare(
        machine,
        framings={ready: line(), receiving: fixed(this.size)},
        routes={ready: by_verb({b"PUT": put}), receiving: test_declaring.Inputs.body},
    )
    assert Again.machine is machine and upload.machine is not machine


# -- observers ------------------------------------------------------------------------------------


class _Failing:
    def __init__(self, where: str) -> None:
        self.where = where

    def _maybe(self, where: str) -> None:
        if self.where == where:
            raise RuntimeError(f"observer fails in {where}")

    def started(self, protocol: Any) -> Any:
        self._maybe("started")

        def transition(old: str, input: str, new: str, frame: Any) -> None:
            self._maybe("transition")

        return transition

    def received(self, protocol: Any, size: int) -> None:
        self._maybe("received")

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        self._maybe("failed")

    def stopped(self, protocol: Any) -> None:
        self._maybe("stopped")


@pytest.mark.parametrize("where", ["started", "transition", "received", "failed", "stopped"])
def test_an_observer_that_raises_never_breaks_a_connection(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    # it raised out of makeConnection / dataReceived / connectionLost, or aborted the
    # connection from the transition tracer
    failing = _Failing(where)
    observe(failing)
    try:
        with caplog.at_level(logging.ERROR, logger="statewire.observe"):
            protocol: Any
            protocol, transport = test_tracing._connect()
            protocol.dataReceived(test_tracing.SESSION)
            protocol.connectionLost(None)
    finally:
        unobserve(failing)
    assert transport.value().endswith(b"221 bye\r\n")  # the whole session was answered
    assert b"500 unknown command" in transport.value()
    assert [r.name for r in caplog.records] == ["statewire.observe"]  # logged once


def test_label_values_with_any_character_survive_the_exposition() -> None:
    # transitions_in() split lines with splitlines(), which also cuts at \r, \x0b, \x85...
    metrics = Metrics()

    class Odd:
        machine_state = "s"

    names = ['a"b', "c\\d", "e\nf", "g\\nh", "k\rl", "m\x0bn", "o\x85p", "q\u2028r"]
    for name in names:
        metrics.started(Odd())(name, 'in"put', name, None)
    found = transitions_in(metrics.exposition(), "Odd")
    assert found == {(name, 'in"put', name): 1 for name in names}


def test_a_peer_name_cannot_forge_trace_lines(caplog: pytest.LogCaptureFixture) -> None:
    # a UNIX peer's name (which a PROXY v2 header may carry) went into the line as it was
    from statewire import tracing

    class Peer:
        name = "evil\n#9 1.2.3.4:5 forged --line--> here"

    class Transport:
        def getPeer(self) -> Peer:
            return Peer()

    class Connection:
        transport = Transport()

    tracer = tracing.Tracer(logging.getLogger("statewire.trace.review"))
    with caplog.at_level(logging.INFO, logger="statewire.trace.review"):
        tracer.started(Connection())("a", "go", "b", b"xy")
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "evil\\n#9" in record.getMessage()
