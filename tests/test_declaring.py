"""Short declarations: one class that is both core and protocol (``declare()``), and state
data made from the input's arguments (``arguments()``), checked when declared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
