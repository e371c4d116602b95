"""One request in flight over one connection, from a blocking client: what a round trip
costs on this machine whatever the server.

Serves ``bench_echo.py``'s key/value application (``GET key`` answered ``VALUE ...``)
with statewire on asyncio and on uvloop, Twisted's epoll reactor and the hand-written
asyncio server, each in its own process, alternated over rounds. The client is a plain
blocking socket that sends one request and waits for its answer, ``--requests`` times:
between two requests both processes sleep, so each round trip pays two wake-ups.

On a virtual machine a wake-up can cost more than a small request's whole handling, and
then every server gives about the same rate. That is what ``bench_echo.py``'s and
``bench_smtp.py``'s one-connection figures stand on, and why they swing between runs
and machines (docs/performance.md).

    python bench/bench_pingpong.py [--rounds 3] [--requests 20000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_echo import RR_SERVERS, start


def round_trips(port: int, requests: int) -> float:
    """Requests a second, one at a time over one connection (after 500 to warm up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(500):
            sock.sendall(b"GET key1\n")
            sock.recv(100)
        began = time.perf_counter()
        for _ in range(requests):
            sock.sendall(b"GET key1\n")
            if not sock.recv(100).startswith(b"VALUE"):
                raise RuntimeError("unexpected answer")
        return requests / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in RR_SERVERS}
    for _ in range(args.rounds):
        for name, kind in RR_SERVERS.items():
            process, port = start(kind, "kv")
            try:
                rates[name].append(round_trips(port, args.requests))
            finally:
                process.kill()
                process.wait()
    print(f"1 request in flight, 1 connection, a blocking client, {args.requests:,} requests")
    print("median requests/s [min-max], and the round trip in microseconds")
    for name, found in rates.items():
        median = statistics.median(found)
        print(
            f"  {name:22s} {median:>9,.0f} [{min(found):,.0f}-{max(found):,.0f}]"
            f"  {1e6 / median:6.1f} us"
        )


if __name__ == "__main__":
    main()
