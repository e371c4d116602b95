"""Memory a connection's protocol objects hold, in process (no sockets): statewire's
declared helpers against Twisted's, each connected to its own in-memory transport.

Measured with tracemalloc over N connections kept alive; the transports' own share is
measured alone and subtracted, so the figures are what the protocol side costs.

    python bench/bench_memory.py [--connections N]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.testing import StringTransport as TwistedTransport
from twisted.protocols import basic as twisted_basic

from statewire import basic
from statewire.testing.memory import Clock, StringTransport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import upload

CLOCK = Clock()


class Lines(basic.LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        pass


class TwistedLines(twisted_basic.LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        pass


class Nothing:
    def makeConnection(self, transport: object) -> None:
        pass


def _upload() -> Any:
    protocol = upload.UploadServer()
    protocol.clock = CLOCK  # its initial state arms a timer
    return protocol


def per_connection(make: Callable[[], Any], transport: Callable[[], Any], count: int) -> float:
    """Bytes allocated and kept per connection of ``make()`` on ``transport()``."""
    kept = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(count):
        protocol, wire = make(), transport()
        protocol.makeConnection(wire)
        kept.append((protocol, wire))
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    count = parser.parse_args().connections
    ours_transport = per_connection(Nothing, StringTransport, count)
    theirs_transport = per_connection(Nothing, TwistedTransport, count)
    rows = [
        (
            "LineReceiver",
            per_connection(Lines, StringTransport, count) - ours_transport,
            per_connection(TwistedLines, TwistedTransport, count) - theirs_transport,
        ),
        (
            "declared upload (timer armed)",
            per_connection(_upload, StringTransport, count) - ours_transport,
            None,
        ),
    ]
    print(f"{count} connections kept, bytes per connection (transport share subtracted)")
    for name, ours, theirs in rows:
        peer = "-" if theirs is None else f"{theirs:.0f}"
        print(f"{name:<32} statewire {ours:>6.0f}   Twisted {peer:>6}")


if __name__ == "__main__":
    main()
