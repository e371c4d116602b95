"""The default reply grammar of a declared protocol: the framing of the state a transition
leads to, so a reply sent on leaving a ``fixed(n)`` block is a line, not a block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb
from statewire.testing.memory import Clock, StringTransport


class Commands(Protocol):
    def put(self, size: int) -> None: ...
    def block(self, data: bytes) -> None: ...
    def quit(self) -> None: ...


class Core(MachineProtocol):  # declares no `sends`
    #: whether PUT is answered (on entering the block state)
    announces = False


@dataclass
class Incoming:
    size: int


builder = TypeMachineBuilder(Commands, Core)
command = builder.state("command")
receiving = builder.state("receiving", lambda machine, core, size: Incoming(size))
closed = builder.state("closed")


@command.upon(Commands.put).to(receiving)
def announce(machine: Commands, core: Core, size: int) -> None:
    if core.announces:
        core.send(b"SEND %d" % size)


@receiving.upon(Commands.block).to(command)
def stored(machine: Commands, core: Core, incoming: Incoming, data: bytes) -> None:
    core.send(b"STORED")


@command.upon(Commands.quit).to(closed)
def bye(machine: Commands, core: Core) -> None:
    core.send(b"BYE")


class Server(Core):
    machine = builder.build()
    framings = {command: line(), receiving: lambda protocol, incoming: fixed(incoming.size)}
    routes = {
        command: by_verb(
            {b"PUT": (Commands.put, lambda size: (int(size),)), b"QUIT": Commands.quit}
        ),
        receiving: Commands.block,
    }


def _run(*reads: bytes) -> tuple[bytes, Server]:
    server = Server()
    server.clock = Clock()
    transport = StringTransport()
    server.makeConnection(transport)
    for data in reads:
        server.dataReceived(data)
    return transport.value(), server


def test_a_reply_on_leaving_a_block_state_is_a_line_of_the_state_it_returns_to() -> None:
    written, server = _run(b"PUT 12\r\n", b"twelve bytes")
    assert written.endswith(b"STORED\r\n")
    assert server.machine_state == "command"
    assert not server.transport.aborted


def test_a_reply_on_entering_a_block_state_uses_the_block_framing() -> None:
    """The documented rule cuts both ways: entering ``fixed(12)``, the reply is built by
    ``fixed(12)``, and ``SEND 12`` (6 bytes) cannot be: a local error, the connection is
    aborted. Such a protocol declares ``sends``."""

    class Announcing(Server):
        announces = True

    server = Announcing()
    server.clock = Clock()
    server.makeConnection(StringTransport())
    server.dataReceived(b"PUT 12\r\n")
    assert server.transport.aborted and server.transport.value() == b""

    class Declared(Announcing):
        sends = line()

    declared = Declared()
    declared.clock = Clock()
    transport = StringTransport()
    declared.makeConnection(transport)
    declared.dataReceived(b"PUT 3\r\nabc")
    assert transport.value() == b"SEND 3\r\nSTORED\r\n"


def test_a_state_that_reads_nothing_replies_with_the_framing_last_used() -> None:
    written, server = _run(b"QUIT\r\n")
    assert written == b"BYE\r\n"
    assert server.machine_state == "closed"


def test_a_framing_declared_as_an_expression_of_the_state_data() -> None:
    """``fixed(this.size + 2)`` frames from the state's data at run time (a block and its
    CRLF, as memcached's) and the diagram prints it as the author wrote it."""
    from construct import this

    from statewire.diagram import to_mermaid

    class Blocks(Server):
        framings = {command: line(), receiving: fixed(this.size + 2)}

    server = Blocks()
    server.clock = Clock()
    transport = StringTransport()
    server.makeConnection(transport)
    server.dataReceived(b"PUT 3\r\nab")
    server.dataReceived(b"c\r\nQUIT\r\n")
    assert transport.value() == b"STORED\r\nBYE\r\n"
    assert "s_receiving : fixed(size + 2)" in to_mermaid(Blocks)
