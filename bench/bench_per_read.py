"""One short request per read, in process: the cost of a read that is one whole frame.

A declared ``GET``/``VALUE`` protocol (``by_verb``, one looping output) against Twisted's
``LineReceiver`` answering the same, each fed ``GET k\\r\\n`` one read at a time through
``dataReceived`` with a transport that drops what is written. Prints the best of
``--rounds`` rounds, ns per read, and the ratio (above 1: statewire is cheaper).

    python bench/bench_per_read.py [--reads 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Any
from typing import Protocol as Interface

from automat import TypeMachineBuilder
from twisted.protocols.basic import LineReceiver

from grammars import line
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb
from statewire.testing.memory import StringTransport

REQUEST = b"GET k\r\n"


class Commands(Interface):
    def get(self, key: bytes) -> None: ...


builder = TypeMachineBuilder(Commands, MachineProtocol)
ready = builder.state("ready")


@ready.upon(Commands.get).loop()
def answer(machine: Commands, core: MachineProtocol, key: bytes) -> None:
    core.transport.write(b"VALUE " + key + b"\r\n")


class DeclaredKV(MachineProtocol):
    machine = builder.build()
    framings = {ready: line(b"\r\n")}
    routes = {ready: by_verb({b"GET": Commands.get})}


class TwistedKV(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.transport.write(b"VALUE " + line[4:] + b"\r\n")


class _Sink:
    """A transport that drops what is written (both sides pay the same for it)."""

    disconnecting = False

    def write(self, data: bytes) -> None:
        pass


def _time(protocol: Any, reads: int) -> float:
    received = protocol.dataReceived
    start = time.perf_counter()
    for _ in range(reads):
        received(REQUEST)
    return (time.perf_counter() - start) / reads * 1e9


def ours(reads: int) -> float:
    protocol = DeclaredKV()
    protocol.makeConnection(StringTransport())
    protocol.transport = _Sink()  # after the connection is made: writes go nowhere
    return _time(protocol, reads)


def theirs(reads: int) -> float:
    protocol = TwistedKV()
    protocol.makeConnection(_Sink())
    return _time(protocol, reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    statewire = min(ours(args.reads) for _ in range(args.rounds))
    twisted = min(theirs(args.reads) for _ in range(args.rounds))
    print(f"one GET per read, {args.reads} reads, best of {args.rounds} rounds")
    print(f"statewire, declared (by_verb):   {statewire:7.0f} ns/read")
    print(f"Twisted LineReceiver:            {twisted:7.0f} ns/read")
    print(f"ratio {twisted / statewire:.2f}x (target >= 1x)")


if __name__ == "__main__":
    main()
