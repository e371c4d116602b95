"""A small upload server declared as a state machine (automat's ``TypeMachineBuilder``).

    USER alice          -> 230 hello alice
    PUT notes.txt 5     -> 150 send 5 bytes        (the next 5 bytes are the file, raw)
    hello               -> 226 stored notes.txt
    GET notes.txt       -> 213 5 / hello
    QUIT                -> 221 bye              (the server closes)

Mixed line and raw framing is nothing more than two states: ``ready`` reads CRLF lines,
``receiving`` reads exactly the announced number of bytes (``fixed(size)``, the size taken
from the PUT command). ``PUT`` or ``GET`` before ``USER`` is out of order: the server answers
``503 bad sequence of commands`` and stays where it was. Unknown verbs get ``500``. A client
silent for 30 seconds (``--idle`` to change) is told so and disconnected.

python examples/upload.py --port 8007
statewire serve examples/upload.py:factory --listen tcp:8007:interface=127.0.0.1
statewire diagram examples/upload.py:UploadServer
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.machine import (
    Timeout,
    UnexpectedInput,
    UnroutableFrame,
    by_verb,
)
from statewire.protocol import Factory

#: largest file the server accepts (bytes)
MAX_FILE = 1 << 20
IDLE_SECONDS = 30.0


class Commands(Protocol):
    """The machine's inputs: one per command, plus the body, the timeout and the loss."""

    def user(self, name: bytes) -> None: ...
    def put(self, name: bytes, size: int) -> None: ...
    def get(self, name: bytes) -> None: ...
    def quit(self) -> None: ...
    def unknown(self, line: bytes) -> None: ...
    def body(self, data: bytes) -> None: ...
    def idle(self) -> None: ...
    def lost(self, reason: object) -> None: ...


class UploadSession(MachineProtocol):
    """The machine's core: what the transitions below can do to the connection."""

    sends = line(b"\r\n")

    @property
    def files(self) -> dict[bytes, bytes]:
        files: dict[bytes, bytes] = self.factory.files
        return files


@dataclass
class Session:
    user: bytes


@dataclass
class Incoming:
    user: bytes
    name: bytes
    size: int


builder = TypeMachineBuilder(Commands, UploadSession)
anonymous = builder.state("anonymous")
ready = builder.state("ready", lambda machine, core, name: Session(name))
receiving = builder.state(
    "receiving", lambda machine, core, name, size: Incoming(core.user, name, size)
)
closed = builder.state("closed")


@anonymous.upon(Commands.user).to(ready)
def log_in(machine: Commands, core: UploadSession, name: bytes) -> None:
    core.user = name
    core.send(b"230 hello " + name)


@ready.upon(Commands.put).to(receiving)
def start_upload(
    machine: Commands, core: UploadSession, session: Session, name: bytes, size: int
) -> None:
    core.send(b"150 send %d bytes" % size)


@receiving.upon(Commands.body).to(ready)
def store(machine: Commands, core: UploadSession, incoming: Incoming, data: bytes) -> None:
    core.files[incoming.name] = data
    core.send(b"226 stored " + incoming.name)


@ready.upon(Commands.get).loop()
def send_file(machine: Commands, core: UploadSession, session: Session, name: bytes) -> None:
    data = core.files.get(name)
    if data is None:
        core.send(b"550 no such file")
    else:
        core.send(b"213 %d" % len(data))
        core.transport.write(data)


def say_unknown(machine: Commands, core: UploadSession, *rest: object) -> None:
    core.send(b"500 unknown command")


def say_bye(machine: Commands, core: UploadSession, *rest: object) -> None:
    core.send(b"221 bye")
    core.close()


def time_out(machine: Commands, core: UploadSession, *rest: object) -> None:
    core.send(b"421 idle too long")
    core.close()


anonymous.upon(Commands.unknown).loop()(say_unknown)
ready.upon(Commands.unknown).loop()(say_unknown)
anonymous.upon(Commands.quit).to(closed)(say_bye)
ready.upon(Commands.quit).to(closed)(say_bye)
anonymous.upon(Commands.idle).to(closed)(time_out)
ready.upon(Commands.idle).to(closed)(time_out)
receiving.upon(Commands.idle).to(closed)(time_out)
for state in (anonymous, ready, receiving, closed):
    state.upon(Commands.lost).to(closed).returns(None)


def _put_arguments(name: bytes, size: bytes) -> tuple[bytes, int]:
    count = int(size)
    if not 0 < count <= MAX_FILE:
        raise ValueError(f"size must be 1..{MAX_FILE}")
    return name, count


_commands = by_verb(
    {
        b"USER": Commands.user,
        b"PUT": (Commands.put, _put_arguments),
        b"GET": Commands.get,
        b"QUIT": Commands.quit,
    },
    unknown=Commands.unknown,
)


class UploadServer(UploadSession):
    """The upload protocol: the machine above, with a framing and a route per state."""

    user = b""
    machine = builder.build()
    framings = {
        anonymous: line(b"\r\n", max_length=1024),
        ready: line(b"\r\n", max_length=1024),
        receiving: lambda protocol, incoming: fixed(incoming.size),
    }
    routes = {anonymous: _commands, ready: _commands, receiving: Commands.body}
    timeouts = {
        anonymous: Timeout(IDLE_SECONDS, Commands.idle, idle=True),
        ready: Timeout(IDLE_SECONDS, Commands.idle, idle=True),
        receiving: Timeout(IDLE_SECONDS, Commands.idle, idle=True),
    }
    lost = Commands.lost
    # answer and stay: a command out of order, or with bad arguments; a line over 1 KiB
    # closes (framing cannot go on after it)
    close_on_error = False
    error_reply = {
        UnexpectedInput: b"503 bad sequence of commands",
        UnroutableFrame: b"501 bad arguments",
    }


class UploadFactory(Factory):
    protocol = UploadServer

    def __init__(self) -> None:
        self.files: dict[bytes, bytes] = {}


factory = UploadFactory()


def main() -> None:
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
