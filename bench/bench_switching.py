"""A declared protocol that changes state on every frame, against Twisted's hand-toggled one.

memcached's ``set`` in miniature, in process, on in-memory transports: a command line
``set KEY SIZE``, then a block of SIZE bytes and CRLF, stored, answered ``STORED``. In
statewire it is two states of a ``TypeMachineBuilder`` machine (``commands``: a line;
``storing``: ``fixed(this.size + 2)``, the size taken from the command's state data); in
Twisted a ``LineReceiver`` that flips ``setRawMode`` and back. Each round feeds the same
requests in 64 KiB reads; the median of the rounds is printed, ns per request, and the
ratio (higher is better for statewire; the engine issue's target is >= 1.5x).

    python bench/bench_switching.py [--requests 50000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder
from construct import this
from twisted.protocols import basic

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb
from statewire.testing.memory import StringTransport


class Inputs(Protocol):
    def store(self, key: bytes, size: int) -> None: ...
    def block(self, data: bytes) -> None: ...


class Core(MachineProtocol):
    values: dict[bytes, bytes]


@dataclass
class Pending:
    key: bytes
    size: int


builder = TypeMachineBuilder(Inputs, Core)
commands = builder.state("commands")
storing = builder.state("storing", lambda machine, core, key, size: Pending(key, size + 2))


@commands.upon(Inputs.store).to(storing)
def expect(machine: Inputs, core: Core, key: bytes, size: int) -> None:
    pass


@storing.upon(Inputs.block).to(commands)
def stored(machine: Inputs, core: Core, pending: Pending, data: bytes) -> None:
    core.values[pending.key] = data[:-2]
    core.transport.write(b"STORED\r\n")


def _set(key: bytes, size: bytes) -> tuple[bytes, int]:
    return key, int(size)


class Declared(Core):
    machine = builder.build()
    framings = {commands: line(b"\r\n"), storing: fixed(this.size)}
    routes = {commands: by_verb({b"set": (Inputs.store, _set)}), storing: Inputs.block}


class Toggled(basic.LineReceiver):
    """Twisted: the command line, then raw mode for the block, then line mode again."""

    def connectionMade(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.pending: tuple[bytes, int] | None = None
        self.buffer = b""

    def lineReceived(self, line: bytes) -> None:
        words = line.split()
        self.pending = (words[1], int(words[2]) + 2)
        self.buffer = b""
        self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        assert self.pending is not None
        key, size = self.pending
        self.buffer += data
        if len(self.buffer) < size:
            return
        block, rest = self.buffer[:size], self.buffer[size:]
        self.values[key] = block[:-2]
        self.transport.write(b"STORED\r\n")
        self.pending = None
        self.setLineMode(rest)


def _chunks(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _run(protocol: object, chunks: list[bytes]) -> float:
    transport = StringTransport()
    protocol.makeConnection(transport)  # type: ignore[attr-defined]
    start = time.perf_counter()
    for chunk in chunks:
        protocol.dataReceived(chunk)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    chunks = _chunks((b"set key 16\r\n" + b"b" * 16 + b"\r\n") * args.requests)
    ours, theirs = [], []
    for _ in range(args.rounds):
        declared = Declared()
        declared.values = {}
        ours.append(_run(declared, chunks))
        assert declared.values == {b"key": b"b" * 16}
        toggled = Toggled()
        theirs.append(_run(toggled, chunks))
        assert toggled.values == {b"key": b"b" * 16}
    mine, peer = statistics.median(ours), statistics.median(theirs)
    per = 1e9 / args.requests
    print(f"set KEY 16 + block, {args.requests} requests in 64 KiB reads, median of {args.rounds}")
    print(f"statewire, declared (2 state changes a request): {mine * per:8.0f} ns/request")
    print(f"Twisted LineReceiver, setRawMode/setLineMode:    {peer * per:8.0f} ns/request")
    print(f"ratio {peer / mine:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
