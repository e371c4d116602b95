"""Adversarial review of the owned engine (``MachineProtocol.machine_engine``, an
:class:`~statewire.machine.Engine` reaching its connection through a per-class ``Host``).

Tests under "bugs" failed on the branch when written (each comment says where and why);
the others pin behaviour the refactor must keep: what outputs, hooks and observers get on
every path, the ``basic`` helpers, a protocol before and after its connection, the clock.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import struct
import subprocess
import sys
import textwrap
import weakref
from typing import Any, Protocol

import pytest
from automat import MethodicalMachine, TypeMachineBuilder

from grammars import fixed, line
from statewire.basic import (
    Int16StringReceiver,
    LineOnlyReceiver,
    LineReceiver,
    NetstringReceiver,
    StatefulProtocol,
)
from statewire.declarative import MachineProtocol
from statewire.error import Failure
from statewire.machine import (
    Engine,
    Observer,
    Plan,
    Timeout,
    TransitionCallback,
    UnexpectedInput,
    by_key,
    by_verb,
    forward,
    observe,
    unobserve,
)
from statewire.testing.memory import Clock, StringTransport

# -- a protocol that takes every path ---------------------------------------------------------


class Inputs(Protocol):
    def ping(self) -> None: ...
    def echo(self, word: bytes) -> None: ...
    def go(self) -> None: ...
    def note(self) -> None: ...
    def data(self, block: bytes) -> None: ...
    def tick(self) -> None: ...
    def talk(self) -> None: ...
    def said(self, text: bytes) -> None: ...
    def to_keys(self) -> None: ...
    def k_loop(self, frame: bytes) -> None: ...
    def k_hook(self, frame: bytes) -> None: ...
    def k_back(self, frame: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class ProbeCore(MachineProtocol):
    """Records, for each output and hook, what it was given as the core."""

    sends = line(b"\n")

    def connectionMade(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def echoed(self, word: bytes) -> None:
        self.seen.append(("echoed", self))

    def hooked(self, frame: bytes) -> None:
        self.seen.append(("hooked", self))


builder = TypeMachineBuilder(Inputs, ProbeCore)
command = builder.state("command")
block = builder.state("block")
talking = builder.state("talking")
keyed = builder.state("keyed")
gone = builder.state("gone")


@command.upon(Inputs.ping).loop()
def _ping(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("ping", core))
    core.send(b"pong")


command.upon(Inputs.echo).loop()(forward("echoed"))


@command.upon(Inputs.go).to(block)
def _go(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("go", core))
    core.inputs.note()  # postponed until this transition is done


@command.upon(Inputs.note).loop()
def _note_command(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("note", core))


@block.upon(Inputs.note).loop()
def _note_block(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("note", core))


@block.upon(Inputs.data).to(command)
def _data(machine: Inputs, core: ProbeCore, block: bytes) -> None:
    core.seen.append(("data", core))


@block.upon(Inputs.tick).to(command)
def _tick(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("tick", core))


@command.upon(Inputs.talk).to(talking)
def _talk(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("talk", core))


@talking.upon(Inputs.said).loop()
def _said(machine: Inputs, core: ProbeCore, text: bytes) -> None:
    core.seen.append(("said", core))
    if text == b"keys":
        core.inputs.to_keys()


@talking.upon(Inputs.to_keys).to(keyed)
def _to_keys(machine: Inputs, core: ProbeCore) -> None:
    core.seen.append(("to_keys", core))


@keyed.upon(Inputs.k_loop).loop()
def _k_loop(machine: Inputs, core: ProbeCore, frame: bytes) -> None:
    core.seen.append(("k_loop", core))


keyed.upon(Inputs.k_hook).loop()(forward("hooked"))


@keyed.upon(Inputs.k_back).to(command)
def _k_back(machine: Inputs, core: ProbeCore, frame: bytes) -> None:
    core.seen.append(("k_back", core))


for _state in (command, block, talking, keyed):

    @_state.upon(Inputs.lost).to(gone)
    def _lost(machine: Inputs, core: ProbeCore, reason: object) -> None:
        core.seen.append(("lost", core))


def _first_word(frame: bytes) -> bytes:
    return bytes(frame).split(b" ", 1)[0]


class Probe(ProbeCore):
    machine = builder.build()
    framings = {
        command: line(b"\n", max_length=64),
        block: fixed(3),
        talking: line(b"\n", max_length=64),
        keyed: line(b"\n", max_length=64),
    }
    routes = {
        command: by_verb(
            {b"PING": Inputs.ping, b"ECHO": Inputs.echo, b"GO": Inputs.go, b"TALK": Inputs.talk}
        ),
        block: Inputs.data,
        talking: Inputs.said,
        keyed: by_key(
            _first_word,
            {b"k": Inputs.k_loop, b"h": Inputs.k_hook, b"back": Inputs.k_back, b"go": Inputs.go},
        ),
    }
    timeouts = {block: Timeout(5, Inputs.tick)}
    lost = Inputs.lost


class Recorder(Observer):
    """An observer keeping what each of its calls was given as the connection."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.calls: list[tuple[str, Any]] = []

    def started(self, protocol: Any) -> TransitionCallback | None:
        self.calls.append(("started", protocol))
        self.state_seen = protocol.machine_state
        return (lambda old, input, new, frame: None) if self.trace else None

    def received(self, protocol: Any, size: int) -> None:
        self.calls.append(("received", protocol))

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        self.calls.append(("failed", protocol))

    def stopped(self, protocol: Any) -> None:
        self.calls.append(("stopped", protocol))


def _run_probe(observer: Recorder | None) -> tuple[Probe, StringTransport]:
    protocol = Probe()
    protocol.clock = clock = Clock()
    transport = StringTransport()
    if observer is not None:
        observe(observer)
    try:
        protocol.makeConnection(transport)
    finally:
        if observer is not None:
            unobserve(observer)
    protocol.dataReceived(b"PING\nECHO hi\nGO\n")
    protocol.dataReceived(b"abc")
    protocol.dataReceived(b"GO\n")
    clock.advance(6)
    protocol.dataReceived(b"TALK\nhello\nkeys\nk 1\nh 2\nback\n")
    protocol.inputs.note()  # user code calling an input directly
    protocol.connectionLost(Failure(ConnectionError("gone")))
    return protocol, transport


EXPECTED = [
    "ping",
    "echoed",
    "go",
    "note",
    "data",
    "go",
    "note",
    "tick",
    "talk",
    "said",
    "said",
    "to_keys",
    "k_loop",
    "hooked",
    "k_back",
    "note",
    "lost",
]


@pytest.mark.parametrize("how", ["untraced", "observed", "traced"])
def test_every_output_and_hook_gets_the_protocol_on_every_path(how: str) -> None:
    """Fast loops and transits (by_verb, by_key, direct handler), the general path (an
    observer's tracer), postponed inputs, a timeout's input, an input called by user code
    and the ``lost`` input: each output is given the protocol, never the engine."""
    observer = None if how == "untraced" else Recorder(trace=how == "traced")
    protocol, transport = _run_probe(observer)
    assert [name for name, _ in protocol.seen] == EXPECTED
    assert all(core is protocol for _, core in protocol.seen)
    assert transport.value() == b"pong\n"
    assert protocol.machine_state == "gone"
    if observer is not None:
        kinds = {kind for kind, _ in observer.calls}
        assert kinds == {"started", "received", "stopped"}
        assert all(who is protocol for _, who in observer.calls)
        assert observer.state_seen == "command"  # machine_state readable from started()


def test_observers_are_told_of_errors_with_the_protocol() -> None:
    observer = Recorder(trace=False)
    protocol = Probe()
    protocol.clock = Clock()
    transport = StringTransport()
    observe(observer)
    try:
        protocol.makeConnection(transport)
    finally:
        unobserve(observer)
    protocol.dataReceived(b"NOPE\n")
    assert ("failed", protocol) in observer.calls
    assert transport.disconnecting


# -- remote and local errors go to the protocol's own methods ---------------------------------


class Overriding(Probe):
    """Overrides both error methods (as protocols do to word their replies)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.errors: list[tuple[str, Any, Any]] = []

    def remoteError(self, error: Any) -> None:
        self.errors.append(("remote", type(error), self))

    def localError(self, error: Exception) -> None:
        self.errors.append(("local", type(error), self))


def test_a_subclass_s_remote_and_local_error_methods_are_the_ones_called() -> None:
    protocol = Overriding()
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"NOPE\n")  # an unknown verb: remote
    protocol.dataReceived(b"x" * 100 + b"\n")  # too long: remote (framing)
    assert [kind for kind, _, _ in protocol.errors] == ["remote", "remote"]
    assert all(who is protocol for _, _, who in protocol.errors)
    assert not transport.disconnecting  # the overrides did not close

    def broken(word: bytes) -> None:
        raise ValueError("ours")

    protocol2 = Overriding()
    protocol2.clock = Clock()
    protocol2.makeConnection(StringTransport())
    protocol2.echoed = broken  # type: ignore[method-assign]
    protocol2.dataReceived(b"ECHO x\n")
    assert protocol2.errors == [("local", ValueError, protocol2)]


def test_an_input_the_state_refuses_is_a_remote_error_given_to_the_protocol() -> None:
    class Keep(Overriding):
        def remoteError(self, error: Any) -> None:
            self.errors.append(("remote", error, self))

    protocol = Keep()
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"TALK\nkeys\ngo x\nnope 1\nk 1\n")
    first, second = (error for _, error, _ in protocol.errors)
    assert isinstance(first, UnexpectedInput) and first.state == "keyed"
    assert type(second).__name__ == "UnknownKey" and second.state == "keyed"
    assert all(who is protocol for _, _, who in protocol.errors)
    assert protocol.machine_state == "keyed" and protocol.seen[-1] == ("k_loop", protocol)


# -- MethodicalMachine ------------------------------------------------------------------------


class Methodical(MachineProtocol):
    _machine = MethodicalMachine()
    sends = line(b"\n")

    def connectionMade(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @_machine.state(initial=True)
    def lines(self) -> None: ...

    @_machine.state()
    def blocks(self) -> None: ...

    @_machine.state()
    def closed(self) -> None: ...

    @_machine.input()
    def said(self, text: bytes) -> None: ...

    @_machine.input()
    def switch(self) -> None: ...

    @_machine.input()
    def got(self, block: bytes) -> None: ...

    @_machine.input()
    def expired(self) -> None: ...

    @_machine.input()
    def disconnected(self, reason: object) -> None: ...

    @_machine.output()
    def _record_said(self, text: bytes) -> None:
        self.seen.append(("said", text))

    @_machine.output()
    def _record_switch(self) -> None:
        self.seen.append(("switch", self))

    @_machine.output()
    def _record_got(self, block: bytes) -> None:
        self.seen.append(("got", block))

    @_machine.output()
    def _record_expired(self) -> None:
        self.seen.append(("expired", self))

    @_machine.output()
    def _record_lost(self, reason: object) -> None:
        self.seen.append(("lost", self))

    lines.upon(said, enter=lines, outputs=[_record_said])
    lines.upon(switch, enter=blocks, outputs=[_record_switch])
    blocks.upon(got, enter=lines, outputs=[_record_got])
    blocks.upon(expired, enter=lines, outputs=[_record_expired])
    lines.upon(disconnected, enter=closed, outputs=[_record_lost])
    blocks.upon(disconnected, enter=closed, outputs=[_record_lost])

    machine = _machine
    framings = {lines: line(b"\n"), blocks: fixed(2)}
    routes = {lines: said, blocks: got}
    timeouts = {blocks: Timeout(3, expired)}
    lost = disconnected


def test_a_methodical_input_called_by_user_code_moves_the_framing() -> None:
    protocol = Methodical()
    protocol.clock = clock = Clock()
    protocol.makeConnection(StringTransport())
    assert protocol.inputs is protocol  # the machine is the protocol itself
    protocol.dataReceived(b"a\n")
    protocol.switch()  # called directly: the framing follows at once
    protocol.dataReceived(b"xy" + b"b\n")
    protocol.switch()
    clock.advance(4)  # the timeout's input
    protocol.dataReceived(b"c\n")
    protocol.connectionLost(Failure(ConnectionError("gone")))
    assert protocol.seen == [
        ("said", b"a"),
        ("switch", protocol),
        ("got", b"xy"),
        ("said", b"b"),
        ("switch", protocol),
        ("expired", protocol),
        ("said", b"c"),
        ("lost", protocol),
    ]
    assert protocol.machine_state == "closed"


# -- the engine object -----------------------------------------------------------------------


def test_the_engine_is_a_small_slotted_object_the_protocol_owns() -> None:
    protocol = Probe()
    assert protocol.machine_engine is None and protocol.inputs is None
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    engine = protocol.machine_engine
    assert isinstance(engine, Engine)
    assert not hasattr(engine, "__dict__")
    with pytest.raises(AttributeError):
        engine.anything = 1  # type: ignore[attr-defined]
    assert engine.state == protocol.machine_state == "command"
    assert engine.machine is protocol.inputs
    # what is left on the protocol is the declarative layer's own: the engine and two flags
    own = {"_sw_plan", "_sw_eng", "_sw_open", "_sw_input_closed", "_sw_reactor"}
    assert {name for name in vars(protocol) if name.startswith("_sw_")} <= own


class _TestHost:
    """A host that is no protocol: the engine is usable on its own (layer 3, sans-IO)."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.errors: list[tuple[str, Any, Any]] = []
        self.paused = 0

    def call_later(self, core: Any, seconds: float, f: Any, *args: Any) -> Any:
        return self.clock.callLater(seconds, f, *args)

    def seconds(self, core: Any) -> float:
        return self.clock.seconds()

    def loop(self, core: Any) -> Any:
        return None

    def read_limit(self, core: Any) -> int:
        return 10

    def pause_reading(self, core: Any) -> None:
        self.paused += 1

    def resume_reading(self, core: Any) -> None:
        self.paused -= 1

    def peer_progress(self, core: Any) -> int | None:
        return None

    def remote_error(self, core: Any, error: Any) -> None:
        self.errors.append(("remote", core, error))

    def local_error(self, core: Any, error: Exception) -> None:
        self.errors.append(("local", core, error))


def test_an_engine_runs_on_any_host_and_core() -> None:
    class Core:
        ticks = 0

    core, host = Core(), _TestHost()
    plan = Plan.of(Ticker)
    assert plan is not None
    engine = Engine(plan, core, host)
    engine.start()
    engine.receive(b"a\nb\npartial")
    assert engine.buffered == b"partial" and engine.state == "waiting"
    host.clock.advance(5.5)
    assert core.ticks == 1
    assert engine.clear() == b"partial"
    engine.lost(None)
    host.clock.advance(10)
    assert core.ticks == 1 and host.errors == []


def test_a_finished_connection_is_collected_with_its_engine() -> None:
    """No table shared by the class's connections keeps a connection (or its engine)."""
    observer = Recorder(trace=True)
    protocol, transport = _run_probe(observer)
    gone = weakref.ref(protocol)
    del protocol, transport, observer
    gc.collect()
    assert gone() is None


# -- before the connection and after it --------------------------------------------------------


def test_a_protocol_before_makeConnection_has_no_engine_and_does_nothing() -> None:
    protocol = Probe()
    assert protocol.machine_engine is None
    assert protocol.inputs is None
    assert protocol.discard_input() == b""
    protocol.refresh_framing()  # nothing to refresh
    protocol.transportCongested(True)  # nothing to hold
    protocol.connectionLost(Failure(ConnectionError("never connected")))
    receiver = Int16StringReceiver()
    assert receiver.recvd == b""


def test_a_protocol_after_connectionLost_stays_readable_and_inert() -> None:
    protocol = Probe()
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"PING\nGO\nab")
    protocol.connectionLost(Failure(ConnectionError("gone")))
    assert protocol.machine_state == "gone"
    protocol.dataReceived(b"PING\n")  # ignored: the connection is gone
    assert transport.value() == b"pong\n"
    assert protocol.discard_input() == b"ab"
    protocol.refresh_framing()
    protocol.send(b"late", line(b"\n"))
    protocol.close()
    assert transport.disconnecting and transport.value() == b"pong\nlate\n"


def test_close_stops_the_frames_already_buffered() -> None:
    class Closing(Probe):
        def echoed(self, word: bytes) -> None:
            super().echoed(word)
            self.close()

    protocol = Closing()
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"ECHO a\nPING\nPING\n")
    assert [name for name, _ in protocol.seen] == ["echoed"]
    assert transport.disconnecting and transport.value() == b""


# -- basic helpers ------------------------------------------------------------------------------


class Lines(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 10

    def connectionMade(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def lineReceived(self, line: bytes) -> None:
        self.got.append(("line", line))
        if line.startswith(b"raw"):
            self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        self.got.append(("raw", data[:3]))
        self.setLineMode(data[3:])

    def lineLengthExceeded(self, line: bytes) -> None:
        self.got.append(("too long", line))


@pytest.mark.parametrize("size", [1, 2, 5, 100])
def test_line_receiver_raw_mode_and_back_with_extra(size: int) -> None:
    protocol = Lines()
    protocol.makeConnection(StringTransport())
    stream = b"a\nraw\nXYZb\nc\n"
    for i in range(0, len(stream), size):
        protocol.dataReceived(stream[i : i + size])
    assert [kind for kind, _ in protocol.got][:3] == ["line", "line", "raw"]
    assert ("line", b"c") in protocol.got
    assert protocol.line_mode == 1 and protocol.machine_state == "line"


def test_line_receiver_too_long_and_clear_line_buffer() -> None:
    protocol = Lines()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"ok\n" + b"x" * 20 + b"\nrest")
    assert protocol.got == [("line", b"ok"), ("too long", b"x" * 20 + b"\nrest")]
    assert protocol.clearLineBuffer() == b""

    protocol2 = Lines()
    protocol2.makeConnection(StringTransport())
    protocol2.dataReceived(b"part")
    assert protocol2.clearLineBuffer() == b"part"
    protocol2.dataReceived(b"ial\n")
    assert protocol2.got == [("line", b"ial")]


def test_line_only_receiver_too_long_gets_that_line() -> None:
    class Only(LineOnlyReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 4

        def connectionMade(self) -> None:
            self.long: list[bytes] = []

        def lineReceived(self, line: bytes) -> None:
            raise AssertionError(line)

        def lineLengthExceeded(self, line: bytes) -> None:
            self.long.append(line)

    protocol = Only()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"toolong\nnext\n")
    assert protocol.long == [b"toolong"]


class Strings(Int16StringReceiver):
    MAX_LENGTH = 10

    def connectionMade(self) -> None:
        self.strings: list[bytes] = []
        self.exceeded: list[int] = []

    def stringReceived(self, string: bytes) -> None:
        self.strings.append(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self.exceeded.append(length)
        super().lengthLimitExceeded(length)


def test_intn_length_limit_and_recvd() -> None:
    protocol = Strings()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(struct.pack("!H", 3) + b"abc" + struct.pack("!H", 2) + b"d")
    assert protocol.strings == [b"abc"]
    assert protocol.recvd == struct.pack("!H", 2) + b"d"
    protocol.recvd = struct.pack("!H", 1) + b"z" + struct.pack("!H", 1)
    assert protocol.strings == [b"abc", b"z"]
    assert protocol.recvd == struct.pack("!H", 1)
    protocol.dataReceived(b"q" + struct.pack("!H", 500))
    assert protocol.strings == [b"abc", b"z", b"q"]
    assert protocol.exceeded == [500] and transport.disconnecting


def test_netstring_receiver_errors_mark_a_broken_peer() -> None:
    class Net(NetstringReceiver):
        MAX_LENGTH = 5

        def connectionMade(self) -> None:
            self.strings: list[bytes] = []

        def stringReceived(self, string: bytes) -> None:
            self.strings.append(string)

    for bad in (b"3:abc,x:", b"3:abc,99:"):
        protocol = Net()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(bad)
        assert protocol.strings == [b"abc"]
        assert protocol.brokenPeer == 1 and transport.disconnecting


def test_stateful_protocol_blocks() -> None:
    class Blocks(StatefulProtocol):
        def connectionMade(self) -> None:
            self.blocks: list[bytes] = []

        def getInitialState(self) -> tuple[Any, int]:
            return (self.header, 1)

        def header(self, data: bytes) -> tuple[Any, int]:
            self.blocks.append(data)
            return (self.body, int(data))

        def body(self, data: bytes) -> tuple[Any, int]:
            self.blocks.append(data)
            return (self.header, 1)

    protocol = Blocks()
    protocol.makeConnection(StringTransport())
    for byte in b"3abc2de0":
        protocol.dataReceived(bytes([byte]))
    assert protocol.blocks == [b"3", b"abc", b"2", b"de", b"0", b""]


class Waiting(LineReceiver):
    """Each line starts work that completes when the test says."""

    delimiter = b"\n"
    waiting_read_limit = 10  # set on the subclass: must be honoured

    def connectionMade(self) -> None:
        self.lines: list[bytes] = []
        self.works: list[asyncio.Future[None]] = []

    def lineReceived(self, line: bytes) -> asyncio.Future[None]:
        self.lines.append(line)
        work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.works.append(work)
        return work


def test_a_subclass_s_waiting_read_limit_pauses_and_its_own_pause_is_kept() -> None:
    async def scenario() -> None:
        protocol = Waiting()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"a\n" + b"b\n" * 4)  # 8 bytes wait: under the limit
        assert transport.producerState == "producing"
        protocol.dataReceived(b"c\n" * 2)  # 12: over the subclass's limit
        assert transport.producerState == "paused"
        assert protocol.machine_engine is not None and protocol.machine_engine.reading_held
        protocol.pauseProducing()  # the protocol pauses too
        protocol.works[0].set_result(None)
        await asyncio.sleep(0)
        assert transport.producerState == "paused"  # the protocol's pause is its to lift
        protocol.resumeProducing()
        await asyncio.sleep(0)
        assert transport.producerState == "producing"
        while len(protocol.works) < 7 or not protocol.works[-1].done():
            protocol.works[-1].set_result(None)
            await asyncio.sleep(0)
        assert protocol.lines == [b"a", b"b", b"b", b"b", b"b", b"c", b"c"]

    asyncio.run(scenario())


def test_resume_producing_leaves_the_engine_s_read_pause_alone() -> None:
    async def scenario() -> None:
        protocol = Waiting()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"a\n" + b"y" * 11)  # 11 unframed bytes wait: over 10
        assert transport.producerState == "paused"
        protocol.pauseProducing()
        protocol.resumeProducing()  # the work still runs: reading stays paused
        assert transport.producerState == "paused"
        protocol.works[0].set_result(None)
        await asyncio.sleep(0)
        assert transport.producerState == "producing"

    asyncio.run(scenario())


def test_the_default_waiting_read_limit_does_not_pause_small_reads() -> None:
    class Roomy(Waiting):
        waiting_read_limit = 64 * 1024

    async def scenario() -> None:
        protocol = Roomy()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"a\n" + b"b\n" * 100)
        assert transport.producerState == "producing"

    asyncio.run(scenario())


# -- clocks --------------------------------------------------------------------------------------


class Ticking(MachineProtocol):
    pass


class TickInputs(Protocol):
    def line(self, text: bytes) -> None: ...
    def tick(self) -> None: ...


_ticks = TypeMachineBuilder(TickInputs, Ticking)
_waiting = _ticks.state("waiting")


@_waiting.upon(TickInputs.line).loop()
def _line(machine: TickInputs, core: Any, text: bytes) -> None:
    pass


@_waiting.upon(TickInputs.tick).loop()
def _count(machine: TickInputs, core: Any) -> None:
    core.ticks = getattr(core, "ticks", 0) + 1


class Ticker(Ticking):
    machine = _ticks.build()
    framings = {_waiting: line(b"\n")}
    routes = {_waiting: TickInputs.line}
    timeouts = {_waiting: Timeout(5, TickInputs.tick)}


def test_the_protocol_s_clock_drives_its_timeouts() -> None:
    protocol = Ticker()
    protocol.clock = clock = Clock()
    protocol.makeConnection(StringTransport())
    clock.advance(5.5)
    assert protocol.ticks == 1  # type: ignore[attr-defined]
    assert protocol.seconds() == 5.5


def test_the_transport_s_reactor_drives_timeouts_without_a_clock() -> None:
    served = Clock()
    transport = StringTransport()
    transport.reactor = served  # type: ignore[attr-defined]
    protocol = Ticker()
    protocol.makeConnection(transport)
    served.advance(5.5)
    assert protocol.ticks == 1  # type: ignore[attr-defined]


def test_without_clock_or_reactor_the_running_loop_times_out() -> None:
    async def scenario() -> int:
        class Quick(Ticker):
            timeouts = {_waiting: Timeout(0.01, TickInputs.tick)}

        protocol = Quick()
        protocol.makeConnection(StringTransport())
        await asyncio.sleep(0.05)
        return int(getattr(protocol, "ticks", 0))

    assert asyncio.run(scenario()) >= 1


_NO_CLOCK = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_review_owned_engine import Ticker
    from statewire.testing.memory import StringTransport
    try:
        Ticker().makeConnection(StringTransport())
    except RuntimeError as error:
        print(error)
    else:
        print("no error")
    """
)


def _no_clock_message() -> str:
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, "-c", _NO_CLOCK.format(tests=tests)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.path.dirname(tests)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_clock_reactor_or_loop_connecting_says_to_set_clock() -> None:
    """In a fresh process (statewire's global reactor never made)."""
    message = _no_clock_message()
    assert "has no clock" in message and "`clock`" in message


# -- bugs ----------------------------------------------------------------------------------------


class HostKeeper(LineReceiver):
    """A client protocol keeping the host it connects to: the Twisted idiom."""

    delimiter = b"\n"
    MAX_LENGTH = 5

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lines: list[bytes] = []
        self.exceeded: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.exceeded.append(line)
        super().lineLengthExceeded(line)


def test_a_helper_with_its_own_host_attribute_handles_a_too_long_line() -> None:
    # BUG: declarative.py:221 makes the engine with ``self.host``, the new class attribute
    # naming the Host; an instance's own ``host`` (``self.host = host``, as Twisted clients
    # do) replaces it, so the first remote error calls "example.org".remote_error(...):
    # AttributeError out of dataReceived (then local_error fails the same way), where
    # before the refactor lineLengthExceeded was called and the connection closed
    protocol = HostKeeper("example.org", 6379)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"ok\n" + b"x" * 20 + b"\n")
    assert protocol.lines == [b"ok"]
    assert protocol.exceeded == [b"x" * 20 + b"\n"]
    assert transport.disconnecting


def test_a_protocol_class_naming_a_host_still_gets_its_timeouts() -> None:
    # BUG: same collision (declarative.py:150/221): a class attribute ``host`` (a client's
    # default server) is taken for the engine's Host; makeConnection then fails arming the
    # first timeout (_timers.py:82, 'str' object has no attribute 'seconds')
    class Client(Ticker):
        host = "example.org"

    protocol = Client()
    protocol.clock = clock = Clock()
    protocol.makeConnection(StringTransport())
    clock.advance(5.5)
    assert protocol.ticks == 1  # type: ignore[attr-defined]


def test_a_protocol_keeping_its_own_reactor_times_out_on_the_transport_s() -> None:
    # BUG: declarative.py:314 renamed the cached reactor ``_sw_reactor`` to ``_reactor``,
    # the name Twisted code keeps its injected reactor under (``self._reactor =
    # reactor``); the protocol's timeouts now run on that object instead of the reactor
    # serving the connection (before the refactor: on the transport's reactor)
    class Injected(Ticker):
        def __init__(self, reactor: Any) -> None:
            self._reactor = reactor

    served, other = Clock(), Clock()
    transport = StringTransport()
    transport.reactor = served  # type: ignore[attr-defined]
    protocol = Injected(other)
    protocol.makeConnection(transport)
    served.advance(5.5)
    assert getattr(protocol, "ticks", 0) == 1


def test_a_protocol_with_a_seconds_setting_keeps_its_timeouts() -> None:
    # BUG (behaviour change): ProtocolHost.seconds (declarative.py:387) calls the
    # protocol's public ``seconds()``; before, the engine read ``_clock().seconds()``. A
    # subclass with its own ``seconds`` (a setting, or a method with another meaning)
    # now breaks the timers: makeConnection raises TypeError ('int' is not callable)
    class Patient(Ticker):
        seconds = 30  # type: ignore[assignment]  # "how long to wait", the app's setting

    protocol = Patient()
    protocol.clock = clock = Clock()
    protocol.makeConnection(StringTransport())
    clock.advance(5.5)
    assert protocol.ticks == 1  # type: ignore[attr-defined]


def test_work_failing_while_closing_is_logged_with_the_protocol_s_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # BUG: _engine.py:523 logs ``type(self).__name__``, now the engine's class: every
    # protocol's message says "Engine: an output's work failed while closing" (before the
    # refactor: the protocol's class name, "Waiting: ...")
    async def scenario() -> None:
        protocol = Waiting()
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"a\n")
        protocol.close()
        protocol.works[0].set_exception(ValueError("late"))
        await asyncio.sleep(0)

    with caplog.at_level(logging.INFO, logger="statewire.machine"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records if "while closing" in r.getMessage()]
    assert messages and all(m.startswith("Waiting:") for m in messages), messages


def test_the_no_clock_error_names_a_clock_that_exists() -> None:
    # BUG: declarative.py:458 (default_clock) says "statewire.testing.Clock in tests", but
    # statewire.testing has no Clock (it is statewire.testing.memory.Clock)
    message = _no_clock_message()
    assert "statewire.testing.memory.Clock" in message, message


def test_a_second_makeConnection_leaves_no_timer_of_the_first() -> None:
    # BUG (edge): a protocol connected again gets a new engine, but the first engine's
    # timer stays scheduled and fires the first machine's timeout input on the protocol
    # (before the refactor, re-arming on the protocol cancelled it): here a tick at 5 s,
    # 2 s into the second connection whose own timeout is at 8 s
    protocol = Ticker()
    protocol.clock = clock = Clock()
    protocol.makeConnection(StringTransport())
    clock.advance(3)
    protocol.makeConnection(StringTransport())
    clock.advance(3)
    assert getattr(protocol, "ticks", 0) == 0
