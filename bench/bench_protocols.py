"""Protocol throughput: declarative statewire protocols against Twisted's hand-written ones.

Every contender is a protocol whose per-frame job is the same trivial one (count the frame);
each receives the same 200 000 small frames, fed in 64 KiB reads through an in-memory
transport. Contenders alternate round by round (A, B, A, B, ...); the table shows the median
time per frame, the spread (min-max over rounds) and the ratio of Twisted's median to
statewire's (above 1: statewire is faster), with the target each ratio has to meet.

The first rows are the declarative layer itself: a protocol declared as a
``TypeMachineBuilder`` machine (line framing, one self-loop transition per frame doing the
job), and the same one declared with automat's classic ``MethodicalMachine``, both with
dispatch compiled from the machine's transition table, against Twisted's ``LineReceiver``.
Then each helper of ``statewire.basic`` against its Twisted namesake.

    python bench/bench_protocols.py [--frames N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

from automat import MethodicalMachine, TypeMachineBuilder
from twisted.internet.testing import StringTransport as TwistedTransport
from twisted.protocols import basic as twisted_basic

from grammars import line, netstring, prefixed
from statewire import basic
from statewire.declarative import MachineProtocol
from statewire.testing.memory import StringTransport

CHUNK = 64 * 1024


class Lines(Protocol):
    def line(self, line: bytes) -> None: ...


class Counter(MachineProtocol):
    count = 0


builder = TypeMachineBuilder(Lines, Counter)
reading = builder.state("reading")


@reading.upon(Lines.line).loop()
def count_line(machine: Lines, core: Counter, line: bytes) -> None:
    core.count += 1


class DeclaredCounter(Counter):
    machine = builder.build()
    framings = {reading: line(b"\r\n")}
    routes = {reading: Lines.line}


class MethodicalCounter(MachineProtocol):
    _machine = MethodicalMachine()
    machine = _machine
    count = 0

    @_machine.state(initial=True)
    def reading(self) -> None:
        "Reading lines."

    @_machine.input()
    def got_line(self, line: bytes) -> None:
        "A line arrived."

    @_machine.output()
    def _count(self, line: bytes) -> None:
        self.count += 1

    reading.upon(got_line, enter=reading, outputs=[_count])
    framings = {"reading": line(b"\r\n")}
    routes = {"reading": "got_line"}


def _counting(cls: type, method: str) -> type:
    def received(self: Any, frame: bytes) -> None:
        self.count += 1

    return type(f"Counting{cls.__name__}", (cls,), {"count": 0, method: received})


def _run(cls: type, transport: Callable[[], Any]) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        protocol = cls()
        protocol.makeConnection(transport())
        data_received = protocol.dataReceived
        for chunk in chunks:
            data_received(chunk)
        count: int = protocol.count
        return count

    return run


def _ours(cls: type, method: str | None = None) -> Callable[[list[bytes]], int]:
    return _run(cls if method is None else _counting(cls, method), StringTransport)


def _theirs(cls: type, method: str) -> Callable[[list[bytes]], int]:
    return _run(_counting(cls, method), TwistedTransport)


def _payloads(count: int) -> list[bytes]:
    rng = random.Random(7)
    return [
        bytes(rng.choice(b"abcdefghij ") for _ in range(rng.randint(4, 40))) for _ in range(count)
    ]


def _time(run: Callable[[list[bytes]], int], chunks: list[bytes], frames: int) -> float:
    start = time.perf_counter()
    counted = run(chunks)
    elapsed = time.perf_counter() - start
    if counted != frames:
        raise AssertionError(f"counted {counted} frames, expected {frames}")
    return elapsed / frames * 1e9


def _fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.0f} [{min(samples):.0f}-{max(samples):.0f}]"


def compare(frames: int, rounds: int) -> None:
    payloads = _payloads(frames)
    crlf = b"".join(line(b"\r\n").build(p) for p in payloads)
    strings = b"".join(netstring(99999).build(p) for p in payloads)
    u32 = b"".join(prefixed(4, max_length=99999).build(p) for p in payloads)
    u16 = b"".join(prefixed(2, max_length=99999).build(p) for p in payloads)
    line_receiver = _theirs(twisted_basic.LineReceiver, "lineReceived")
    cases = [
        (
            "declared (TypeMachine)",
            _ours(DeclaredCounter),
            "LineReceiver",
            line_receiver,
            crlf,
            1.5,
        ),
        (
            "declared (Methodical)",
            _ours(MethodicalCounter),
            "LineReceiver",
            line_receiver,
            crlf,
            1.5,
        ),
        (
            "LineReceiver",
            _ours(basic.LineReceiver, "lineReceived"),
            "LineReceiver",
            line_receiver,
            crlf,
            1.5,
        ),
        (
            "LineOnlyReceiver",
            _ours(basic.LineOnlyReceiver, "lineReceived"),
            "LineOnlyReceiver",
            _theirs(twisted_basic.LineOnlyReceiver, "lineReceived"),
            crlf,
            1.0,
        ),
        (
            "NetstringReceiver",
            _ours(basic.NetstringReceiver, "stringReceived"),
            "NetstringReceiver",
            _theirs(twisted_basic.NetstringReceiver, "stringReceived"),
            strings,
            3.0,
        ),
        (
            "Int32StringReceiver",
            _ours(basic.Int32StringReceiver, "stringReceived"),
            "Int32StringReceiver",
            _theirs(twisted_basic.Int32StringReceiver, "stringReceived"),
            u32,
            1.5,
        ),
        (
            "Int16StringReceiver",
            _ours(basic.Int16StringReceiver, "stringReceived"),
            "Int16StringReceiver",
            _theirs(twisted_basic.Int16StringReceiver, "stringReceived"),
            u16,
            1.5,
        ),
    ]
    print(
        f"{frames} frames of 4-40 bytes in {CHUNK // 1024} KiB reads, {rounds} rounds, "
        "median ns/frame [min-max]; each frame increments a counter"
    )
    print(f"{'statewire':<24}{'':>20}{'Twisted':>22}{'':>20}{'ratio':>8}{'target':>8}")
    for name, ours_run, peer, peer_run, wire, target in cases:
        chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(rounds):
            ours.append(_time(ours_run, chunks, frames))
            theirs.append(_time(peer_run, chunks, frames))
        ratio = statistics.median(theirs) / statistics.median(ours)
        goal = f">={target:g}x" if target else "-"
        print(f"{name:<24}{_fmt(ours):>20}{peer:>22}{_fmt(theirs):>20}{ratio:>7.2f}x{goal:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20 000 frames, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.rounds = 20_000, 3
    compare(args.frames, args.rounds)


if __name__ == "__main__":
    main()
