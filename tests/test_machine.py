"""The declarative layer: definitions checked, remote and local errors, timeouts, loss,
``MethodicalMachine`` protocols, and errors confined to their connection (real sockets)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import pytest
from automat import MethodicalMachine, TypeMachineBuilder
from runtime_helpers import scenario

from grammars import fixed, line, netstring
from statewire.declarative import MachineProtocol
from statewire.error import ConnectionDone, Failure
from statewire.machine import DefinitionError, Timeout, UnexpectedInput, by_key, by_verb
from statewire.protocol import Factory
from statewire.testing.memory import Clock, StringTransport


class Inputs(Protocol):
    def start(self) -> None: ...
    def data(self, payload: bytes) -> None: ...
    def note(self, line: bytes) -> None: ...
    def boom(self) -> None: ...
    def late(self) -> None: ...
    def lost(self, reason: object) -> None: ...


class Core(MachineProtocol):
    sends = line(b"\n")

    def connectionMade(self) -> None:
        self.events: list[object] = []


builder = TypeMachineBuilder(Inputs, Core)
idle = builder.state("idle")
busy = builder.state("busy")
gone = builder.state("gone")


@idle.upon(Inputs.start).to(busy)
def started(machine: Inputs, core: Core) -> None:
    core.events.append("start")
    core.send(b"started")


@idle.upon(Inputs.note).loop()
def noted(machine: Inputs, core: Core, text: bytes) -> None:
    core.events.append(("note", text))


@busy.upon(Inputs.data).to(idle)
def got_data(machine: Inputs, core: Core, payload: bytes) -> None:
    core.events.append(("data", payload))


@idle.upon(Inputs.boom).loop()
def boom(machine: Inputs, core: Core) -> None:
    raise RuntimeError("an output failed")


@busy.upon(Inputs.late).to(gone)
def too_late(machine: Inputs, core: Core) -> None:
    core.events.append("timed out")
    core.close()


for _state in (idle, busy, gone):
    _state.upon(Inputs.lost).to(gone)(
        lambda machine, core, reason: core.events.append(("lost", type(reason).__name__))
    )

Machine = builder.build()


class Demo(Core):
    machine = Machine
    framings = {idle: line(b"\n", max_length=20), busy: netstring(max_length=10)}
    routes = {
        idle: by_verb({b"START": Inputs.start, b"BOOM": Inputs.boom}, unknown=Inputs.note),
        busy: Inputs.data,
    }
    timeouts = {busy: Timeout(5, Inputs.late)}
    lost = Inputs.lost


def connect(cls: type[MachineProtocol] = Demo) -> tuple[Any, StringTransport, Clock]:
    protocol = cls()
    protocol.clock = clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


# -- definitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"framings": {"nowhere": line()}}, "names state 'nowhere'"),
        ({"routes": {idle: "missing"}}, "names input 'missing'"),
        ({"timeouts": {idle: Timeout(1, Inputs.late)}}, "no transition for its timeout input"),
        ({"lost": "vanished"}, "names input 'vanished'"),
        ({"machine": object()}, "must be a built TypeMachineBuilder"),
    ],
)
def test_inconsistent_definitions_are_refused_when_the_class_is_made(
    attributes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        type("Broken", (Demo,), attributes)


def test_a_class_without_a_machine_cannot_connect() -> None:
    with pytest.raises(TypeError, match="declares no machine"):
        MachineProtocol().makeConnection(StringTransport())


# -- frames, states, remote errors ----------------------------------------------------------


def test_frames_become_inputs_and_framing_follows_the_state() -> None:
    protocol, transport, _ = connect()
    protocol.dataReceived(b"hello\nSTART\n4:a\nb\n,note\n")
    assert protocol.events == [("note", b"hello"), "start", ("data", b"a\nb\n"), ("note", b"note")]
    assert protocol.machine_state == "idle"
    assert transport.value() == b"started\n"


def test_an_unaccepted_input_leaves_the_state_and_closes_by_default() -> None:
    class Strict(Demo):
        routes = {idle: by_verb({b"DATA": Inputs.data}), busy: Inputs.data}
        error_reply = b"503 bad sequence"

    protocol, transport, _ = connect(Strict)
    protocol.dataReceived(b"DATA x\nmore\n")
    assert protocol.machine_state == "idle"
    assert transport.value() == b"503 bad sequence\n"
    assert transport.disconnecting
    assert protocol.events == []  # the frame after the refused one is not delivered


def test_remote_errors_can_be_answered_without_closing() -> None:
    seen: list[Any] = []

    class Patient(Demo):
        routes = {idle: by_verb({b"DATA": Inputs.data}), busy: Inputs.data}
        close_on_error = False

        def remoteError(self, error: Any) -> None:
            seen.append(error)
            super().remoteError(error)

    protocol, transport, _ = connect(Patient)
    protocol.dataReceived(b"DATA x\nWHAT\n")
    assert [type(e) for e in seen] == [UnexpectedInput, type(seen[1])]
    assert seen[0].state == "idle" and seen[0].input == "data" and seen[0].frame == b"DATA x"
    assert "WHAT" in str(seen[1])
    assert not transport.disconnecting


def test_a_framing_error_is_a_remote_error_and_closes() -> None:
    class Patient(Demo):
        close_on_error = False

    protocol, transport, _ = connect(Patient)
    protocol.dataReceived(b"x" * 30)
    assert transport.disconnecting  # the framer cannot go on after a line over its limit
    protocol, transport, _ = connect(Patient)
    protocol.dataReceived(b"START\n99:")  # a netstring header over the limit of 10
    assert transport.disconnecting and protocol.machine_state == "busy"


def test_unroutable_frames_by_key() -> None:
    class Keyed(Demo):
        routes = {
            idle: by_key(lambda frame: frame[0], {ord("s"): Inputs.start}),
            busy: Inputs.data,
        }

    protocol, transport, _ = connect(Keyed)
    protocol.dataReceived(b"\n")  # the key function raises IndexError: unroutable, not a crash
    assert transport.disconnecting and not transport.aborted


def test_nothing_is_framed_after_close() -> None:
    protocol, transport, _ = connect()
    protocol.dataReceived(b"START\n1:a,")
    protocol.close()
    protocol.dataReceived(b"one\ntwo\n")
    assert protocol.events == ["start", ("data", b"a")]
    assert transport.disconnecting


# -- local errors ---------------------------------------------------------------------------


def test_an_exception_in_an_output_aborts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    protocol, transport, _ = connect()
    with caplog.at_level(logging.ERROR, "statewire.declarative"):
        protocol.dataReceived(b"BOOM\nafter\n")
    assert transport.aborted
    assert "RuntimeError" in caplog.text
    assert protocol.events == []


# -- timeouts and loss ----------------------------------------------------------------------


def test_a_timeout_fires_only_in_its_state() -> None:
    protocol, transport, clock = connect()
    clock.advance(100)
    assert protocol.events == []  # idle has no timeout
    protocol.dataReceived(b"START\n")
    clock.advance(4.9)
    assert protocol.events == ["start"]
    clock.advance(0.2)
    assert protocol.events == ["start", "timed out"]
    assert protocol.machine_state == "gone" and transport.disconnecting


def test_leaving_a_state_cancels_its_timeout() -> None:
    protocol, _, clock = connect()
    protocol.dataReceived(b"START\n")
    protocol.dataReceived(b"1:x,")
    clock.advance(10)  # (a wake-up scheduled for it may still come, and find nothing)
    assert protocol.events == ["start", ("data", b"x")]
    assert clock.pending() == []


def test_an_idle_timeout_is_rearmed_by_reads() -> None:
    class Idle(Demo):
        timeouts = {busy: Timeout(5, Inputs.late, idle=True)}

    protocol, _, clock = connect(Idle)
    protocol.dataReceived(b"START\n")
    for byte in b"9:ab":
        clock.advance(3)
        protocol.dataReceived(bytes([byte]))  # a slow netstring: each read is activity
    assert "timed out" not in protocol.events
    clock.advance(5)
    assert protocol.events[-1] == "timed out"


class Beats(Protocol):
    def beat(self, line: bytes) -> None: ...
    def late(self) -> None: ...


class Beating(MachineProtocol):
    sends = line(b"\n")


_beats = TypeMachineBuilder(Beats, Beating)
_waiting = _beats.state("waiting")
_over = _beats.state("over")


@_waiting.upon(Beats.beat).loop()
def _beat(machine: Beats, core: Beating, line: bytes) -> None:
    if line == b"again":  # (a loop: the deadline goes on, unless restarted)
        engine = core.machine_engine
        assert engine is not None
        engine.restart_timeout()


@_waiting.upon(Beats.late).to(_over)
def _late(machine: Beats, core: Beating) -> None:
    core.send(b"late")


_BEATS = _beats.build()


@pytest.mark.parametrize("idle", [False, True])
def test_restart_timeout_starts_the_state_s_timeout_again_from_now(idle: bool) -> None:
    class Deadline(Beating):
        machine = _BEATS
        framings = {_waiting: line(b"\n")}
        routes = {_waiting: Beats.beat}
        timeouts = {_waiting: Timeout(5, Beats.late, idle=idle)}

    protocol, transport, clock = connect(Deadline)
    engine = protocol.machine_engine
    clock.advance(3)
    protocol.dataReceived(b"again\n")  # inside a read, from an output: from t = 3
    clock.advance(4.9)
    assert protocol.machine_state == "waiting"
    engine.restart_timeout()  # outside a read: from t = 7.9, the clock read now
    clock.advance(4.9)
    assert protocol.machine_state == "waiting"
    clock.advance(0.2)
    assert protocol.machine_state == "over" and transport.value() == b"late\n"
    engine.restart_timeout()  # a state without a timeout: nothing
    clock.advance(100)
    assert transport.value() == b"late\n"


def test_a_loop_does_not_restart_a_deadline() -> None:
    class Deadline(Beating):
        machine = _BEATS
        framings = {_waiting: line(b"\n")}
        routes = {_waiting: Beats.beat}
        timeouts = {_waiting: Timeout(5, Beats.late)}

    protocol, _, clock = connect(Deadline)
    clock.advance(3)
    protocol.dataReceived(b"beat\n")
    clock.advance(2.1)
    assert protocol.machine_state == "over"


def test_connection_loss_is_an_input_and_cancels_the_timeout() -> None:
    protocol, _, clock = connect()
    protocol.dataReceived(b"START\n")
    protocol.connectionLost(Failure(ConnectionDone()))
    assert protocol.events == ["start", ("lost", "Failure")]
    assert clock.pending() == []


# -- reentrancy -----------------------------------------------------------------------------


class Chained(Protocol):
    def header(self, line: bytes) -> None: ...
    def ready(self) -> None: ...
    def block(self, data: bytes) -> None: ...


chained = TypeMachineBuilder(Chained, Core)
reading = chained.state("reading")
waiting = chained.state("waiting")
blocks = chained.state("blocks")


@reading.upon(Chained.header).to(waiting)
def header(machine: Chained, core: Core, text: bytes) -> None:
    machine.ready()  # postponed until this output returns; then frames use fixed(3)
    core.events.append(("header", text))


@waiting.upon(Chained.ready).to(blocks)
def ready(machine: Chained, core: Core) -> None:
    core.events.append("ready")


@blocks.upon(Chained.block).loop()
def block(machine: Chained, core: Core, data: bytes) -> None:
    core.events.append(("block", data))


class Reentrant(Core):
    machine = chained.build()
    framings = {reading: line(b"\n"), blocks: fixed(3)}
    routes = {reading: Chained.header, blocks: Chained.block}


@pytest.mark.parametrize("size", [1, 2, 5, 100])
def test_an_input_called_from_an_output_switches_framing_before_the_next_frame(size: int) -> None:
    protocol, _, _ = connect(Reentrant)
    stream = b"go\nabcdef\n"
    for i in range(0, len(stream), size):
        protocol.dataReceived(stream[i : i + size])
    assert protocol.events == [("header", b"go"), "ready", ("block", b"abc"), ("block", b"def")]
    assert protocol.machine_engine.buffered == b"\n"


# -- MethodicalMachine ----------------------------------------------------------------------


class Turnstile(MachineProtocol):
    """A coin-operated turnstile in automat's classic style: COIN, then a 4-byte ticket."""

    _machine = MethodicalMachine()
    machine = _machine

    def connectionMade(self) -> None:
        self.events: list[object] = []

    @_machine.state(initial=True)
    def locked(self) -> None:
        "Waiting for a coin."

    @_machine.state()
    def paying(self) -> None:
        "Waiting for the ticket."

    @_machine.input()
    def coin(self, line: bytes) -> None:
        "A coin went in."

    @_machine.input()
    def ticket(self, data: bytes) -> None:
        "The ticket arrived."

    @_machine.input()
    def expire(self) -> None:
        "Too slow."

    @_machine.output()
    def _ask(self, line: bytes) -> None:
        self.events.append(("coin", line))

    @_machine.output()
    def _pass(self, data: bytes) -> None:
        self.events.append(("ticket", data))

    @_machine.output()
    def _reset(self) -> None:
        self.events.append("expired")

    locked.upon(coin, enter=paying, outputs=[_ask])
    paying.upon(ticket, enter=locked, outputs=[_pass])
    paying.upon(expire, enter=locked, outputs=[_reset])

    framings = {"locked": line(b"\n"), "paying": fixed(4)}
    routes = {"locked": "coin", "paying": ticket}
    timeouts = {"paying": Timeout(2, expire)}


def test_methodical_machines_drive_framing_and_timeouts() -> None:
    protocol, _, clock = connect(Turnstile)
    protocol.dataReceived(b"c1\nTICKc2")
    protocol.dataReceived(b"\n")
    assert protocol.events == [("coin", b"c1"), ("ticket", b"TICK"), ("coin", b"c2")]
    assert protocol.machine_state == "paying"
    clock.advance(2)
    assert protocol.events[-1] == "expired" and protocol.machine_state == "locked"
    protocol.expire  # noqa: B018 - inputs stay reachable on the instance
    protocol.dataReceived(b"c3\n")
    assert protocol.machine_state == "paying"


# -- isolation over real sockets ------------------------------------------------------------


def test_errors_in_one_connection_leave_the_others_untouched() -> None:
    class Served(Demo):
        sends = line(b"\n")

    async def body(reactor: Any) -> tuple[bytes, bytes]:
        port = reactor.listenTCP(0, Factory.forProtocol(Served), interface="127.0.0.1")
        number = port.getHost().port
        good_r, good_w = await asyncio.open_connection("127.0.0.1", number)
        bad_r, bad_w = await asyncio.open_connection("127.0.0.1", number)
        bad_w.write(b"BOOM\n")  # an output raises: this connection is aborted (a reset)
        try:
            lost = await bad_r.read()
        except ConnectionResetError:
            lost = b"reset"
        good_w.write(b"START\n")
        started = await good_r.readline()
        good_w.close()
        bad_w.close()
        return lost, started

    lost, started = scenario(body)
    assert lost == b"reset"
    assert started == b"started\n"


def test_error_messages_do_not_carry_whole_frames() -> None:
    seen: list[str] = []

    class Keyed(Demo):
        framings = {idle: line(b"\n", max_length=100_000), busy: netstring(max_length=10)}
        routes = {idle: by_key(lambda frame: frame, {b"x": Inputs.start}), busy: Inputs.data}

        def remoteError(self, error: Any) -> None:
            seen.append(str(error))

    protocol, _, _ = connect(Keyed)
    protocol.dataReceived(b"y" * 50_000 + b"\n")
    assert len(seen) == 1 and len(seen[0]) < 300 and "50000 bytes" in seen[0]


# -- timeouts across re-entry (found in review) ----------------------------------------------


class Beat(Protocol):
    def tick(self) -> None: ...
    def back(self) -> None: ...
    def ping(self, line: bytes) -> None: ...


def _beating(loop: bool) -> type[MachineProtocol]:
    builder = TypeMachineBuilder(Beat, Core)
    a = builder.state("a")
    b = builder.state("b")

    if loop:
        a.upon(Beat.tick).loop()(lambda machine, core: core.transport.write(b"PING\n"))
    else:

        @a.upon(Beat.tick).to(b)
        def away(machine: Beat, core: Core) -> None:
            core.transport.write(b"PING\n")
            machine.back()  # postponed: b -> a within the same input

    b.upon(Beat.back).to(a).returns(None)
    a.upon(Beat.ping).to(b)(lambda machine, core, text: machine.back())
    return type(
        "Beating",
        (Core,),
        {
            "machine": builder.build(),
            "framings": {a: line(b"\n")},
            "routes": {a: Beat.ping},
            "timeouts": {a: Timeout(10, Beat.tick)},
        },
    )


@pytest.mark.parametrize("loop", [False, True])
def test_a_timeout_whose_transition_comes_back_fires_again(loop: bool) -> None:
    _, transport, clock = connect(_beating(loop))
    clock.advance(35)
    assert transport.value() == b"PING\n" * 3
    assert [call.getTime() for call in clock.pending()] == [40]


def test_leaving_and_reentering_a_state_in_one_input_rearms_its_timeout() -> None:
    protocol, transport, clock = connect(_beating(False))
    clock.advance(5)
    protocol.dataReceived(b"x\n")  # a -> b -> a: a's timeout starts again
    clock.advance(4)
    protocol.inputs.tick()  # called directly at 9: a -> b -> a again
    assert transport.value() == b"PING\n"
    clock.advance(9.9)  # 18.9: not yet (the timers are lazy: one may wake up and sleep)
    assert transport.value() == b"PING\n"
    clock.advance(0.1)  # 19: ten seconds after the state was entered again
    assert transport.value() == b"PING\n" * 2
    assert len(clock.pending()) == 1  # one wake-up scheduled, never more


def test_an_unannotated_state_data_parameter_is_refused_when_the_class_is_made() -> None:
    """automat checks a state's data against the annotation of the transition function's
    data parameter at every call: an empty one would fail at the first frame, so it is
    refused when the protocol is declared, naming the function and the parameter."""
    from dataclasses import dataclass
    from typing import Protocol as Inputs

    from automat import TypeMachineBuilder

    from grammars import fixed, line
    from statewire.declarative import MachineProtocol
    from statewire.machine import DefinitionError

    class Commands(Inputs):
        def put(self, size: int) -> None: ...
        def body(self, data: bytes) -> None: ...

    @dataclass
    class Incoming:
        size: int

    builder = TypeMachineBuilder(Commands, MachineProtocol)
    ready = builder.state("ready")
    receiving = builder.state("receiving", lambda machine, core, size: Incoming(size))

    @ready.upon(Commands.put).to(receiving)
    def start(machine: Commands, core: MachineProtocol, size: int) -> None:
        pass

    @receiving.upon(Commands.body).to(ready)
    def store(machine, core, incoming, data):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(DefinitionError, match=r"store: annotate .*'incoming'.*'receiving'"):

        class Server(MachineProtocol):
            machine = builder.build()
            framings = {ready: line(), receiving: lambda p, i: fixed(i.size)}
            routes = {ready: Commands.put, receiving: Commands.body}
