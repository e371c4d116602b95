"""Short declarations: one class that is both core and protocol (``declare()``), and state
data made from the input's arguments (``arguments()``), checked when declared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from automat import TypeMachineBuilder
from construct import this

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.machine import DefinitionError, arguments, by_verb
from statewire.testing.memory import StringTransport


class Inputs(Protocol):
    def put(self, name: bytes, size: int) -> None: ...
    def body(self, data: bytes) -> None: ...


@dataclass
class Incoming:
    name: bytes
    size: int


@dataclass
class Swapped:
    size: int
    name: bytes


def _machine(core: type, data: type) -> tuple[object, object, object]:
    builder = TypeMachineBuilder(Inputs, core)
    ready = builder.state("ready")
    receiving = builder.state("receiving", arguments(data))

    @ready.upon(Inputs.put).to(receiving)
    def start(machine: Inputs, core: MachineProtocol, name: bytes, size: int) -> None:
        core.send(b"go")

    @receiving.upon(Inputs.body).to(ready)
    def store(machine: Inputs, core: MachineProtocol, incoming: data, block: bytes) -> None:  # type: ignore[valid-type]
        core.send(b"got %s %s" % (incoming.name, block))

    return builder.build(), ready, receiving


def _words(name: bytes, size: bytes) -> tuple[bytes, int]:
    return name, int(size)


def test_one_class_is_core_and_protocol() -> None:
    class Upload(MachineProtocol):
        sends = line()

    machine, ready, receiving = _machine(Upload, Incoming)
    Upload.declare(
        machine,
        framings={ready: line(), receiving: fixed(this.size)},
        routes={ready: by_verb({b"PUT": (Inputs.put, _words)}), receiving: Inputs.body},
    )
    protocol = Upload()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"PUT notes 5\r\nhel")
    protocol.dataReceived(b"loPUT x 1\r\n!")
    assert transport.value() == b"go\r\ngot notes hello\r\ngo\r\ngot x !\r\n"
    assert protocol.machine_state == "ready"


def test_arguments_whose_names_differ_from_the_inputs_are_refused_when_declared() -> None:
    class Upload(MachineProtocol):
        pass

    machine, ready, receiving = _machine(Upload, Swapped)
    with pytest.raises(DefinitionError, match=r"arguments\(Swapped\).*name, size.*size, name"):
        Upload.declare(machine, framings={ready: line(), receiving: fixed(this.size)})


def test_declare_refuses_what_a_subclass_would() -> None:
    class Upload(MachineProtocol):
        pass

    machine, ready, _ = _machine(Upload, Incoming)
    with pytest.raises(DefinitionError):
        Upload.declare(machine, routes={ready: by_verb({b"PUT": ("no_such_input", _words)})})


def test_error_replies_per_kind_of_remote_error() -> None:
    from statewire.framing import FrameTooLong
    from statewire.machine import BadArguments, UnexpectedInput, UnknownKey

    class Upload(MachineProtocol):
        sends = line()
        close_on_error = False
        error_reply = {
            UnknownKey: b"500 unknown command",
            BadArguments: b"501 bad arguments",
            UnexpectedInput: b"503 bad sequence",
            FrameTooLong: b"500 line too long",
        }

    machine, ready, receiving = _machine(Upload, Incoming)
    Upload.declare(
        machine,
        framings={ready: line(max_length=64), receiving: fixed(this.size)},
        routes={
            ready: by_verb({b"PUT": (Inputs.put, _words), b"BODY": Inputs.body}),
            receiving: Inputs.body,
        },
    )
    protocol = Upload()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"NOPE\r\nPUT x\r\nPUT x y\r\nBODY z\r\n")
    assert transport.value() == (
        b"500 unknown command\r\n501 bad arguments\r\n501 bad arguments\r\n503 bad sequence\r\n"
    )
    assert protocol.machine_state == "ready" and not transport.disconnecting
    transport.clear()
    protocol.dataReceived(b"x" * 100)
    assert transport.value() == b"500 line too long\r\n"
    assert transport.disconnecting  # Policy.CLOSE: framing cannot go on, close_on_error or not


def test_one_idle_timeout_over_two_states_keeps_its_timer_and_its_meaning() -> None:
    from statewire.machine import Timeout
    from statewire.testing.memory import Clock

    class Idle(Protocol):
        def put(self, name: bytes, size: int) -> None: ...
        def body(self, data: bytes) -> None: ...
        def idle(self) -> None: ...

    class Upload(MachineProtocol):
        sends = line()

    builder = TypeMachineBuilder(Idle, Upload)
    ready = builder.state("ready")
    receiving = builder.state("receiving", arguments(Incoming))
    done = builder.state("done")

    @ready.upon(Idle.put).to(receiving)
    def start(machine: Idle, core: Upload, name: bytes, size: int) -> None:
        pass

    @receiving.upon(Idle.body).to(ready)
    def store(machine: Idle, core: Upload, incoming: Incoming, block: bytes) -> None:
        core.send(b"stored")

    def bye(machine: Idle, core: Upload, *rest: object) -> None:
        core.send(b"idle")
        core.close()

    ready.upon(Idle.idle).to(done)(bye)
    receiving.upon(Idle.idle).to(done)(bye)
    quiet = Timeout(10, Idle.idle, idle=True)
    Upload.declare(
        builder.build(),
        framings={ready: line(), receiving: fixed(this.size)},
        routes={ready: by_verb({b"PUT": (Idle.put, _words)}), receiving: Idle.body},
        timeouts={ready: quiet, receiving: quiet},
    )

    class Counting(Clock):
        scheduled = 0

        def callLater(self, delay: float, f: Any, *args: Any) -> Any:
            self.scheduled += 1
            return super().callLater(delay, f, *args)

    protocol, transport, clock = Upload(), StringTransport(), Counting()
    protocol.clock = clock
    protocol.makeConnection(transport)
    clock.advance(6)
    protocol.dataReceived(b"PUT x 2\r\n")  # ready -> receiving: the same idle timeout
    protocol.dataReceived(b"ab")  # -> ready again
    assert clock.scheduled == 1  # one timer all along, not one per state entered
    clock.advance(9)
    assert transport.value() == b"stored\r\n"  # 9 s of silence: not idle yet
    clock.advance(1.5)
    assert transport.value() == b"stored\r\nidle\r\n" and transport.disconnecting
