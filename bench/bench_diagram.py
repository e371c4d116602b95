"""How long drawing a large protocol takes: a generated protocol of N states (each with a
line framing, three transitions and a timeout), drawn as DOT, Mermaid and SVG.

    python bench/bench_diagram.py [--states N]
"""

from __future__ import annotations

import argparse
import time
from typing import Protocol

from automat import TypeMachineBuilder

from grammars import line
from statewire.declarative import MachineProtocol
from statewire.diagram import render, to_dot, to_mermaid
from statewire.machine import Timeout


class Steps(Protocol):
    def forward(self, line: bytes) -> None: ...
    def back(self) -> None: ...
    def stay(self, line: bytes) -> None: ...


def hundred_states(count: int = 100) -> type[MachineProtocol]:
    """A declared protocol of ``count`` states in a ring: forward, back, stay."""
    builder = TypeMachineBuilder(Steps, MachineProtocol)
    states = [builder.state(f"s{i:03d}") for i in range(count)]
    for i, state in enumerate(states):
        state.upon(Steps.forward).to(states[(i + 1) % count]).returns(None)
        state.upon(Steps.back).to(states[i - 1]).returns(None)
        state.upon(Steps.stay).loop().returns(None)
    return type(
        f"Ring{count}",
        (MachineProtocol,),
        {
            "machine": builder.build(),
            "framings": {s: line(b"\n", max_length=1024) for s in states},
            "routes": {s: Steps.forward for s in states},
            "timeouts": {s: Timeout(30, Steps.back) for s in states},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=100)
    args = parser.parse_args()
    start = time.perf_counter()
    protocol = hundred_states(args.states)
    made = time.perf_counter()
    for name, draw in (
        ("DOT", lambda: to_dot(protocol)),
        ("Mermaid", lambda: to_mermaid(protocol)),
        ("SVG (renderer)", lambda: render(protocol, "svg")),
    ):
        begin = time.perf_counter()
        draw()
        print(f"{args.states} states, {name}: {(time.perf_counter() - begin) * 1e3:.1f} ms")
    print(f"defining the protocol (class creation, checks): {(made - start) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
