"""What a client connection costs to set up over loopback: ``TCP4ClientEndpoint`` against
``HostnameEndpoint`` (a literal address, and ``localhost`` through the loop's resolver),
with asyncio's ``open_connection`` as the peer. One connection at a time, from
``connect()`` to the connected protocol, then closed; median of the rounds, µs per
connection, and the ratio to ``TCP4ClientEndpoint``.

    python bench/bench_clients.py [--connections 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from statewire._reactor import Reactor
from statewire.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from statewire.protocol import Factory, Protocol

HOST = "127.0.0.1"


async def _endpoint_round(make: Callable[[], object], count: int) -> float:
    factory = Factory.forProtocol(Protocol)
    factory.noisy = False
    start = time.perf_counter()
    for _ in range(count):
        protocol = await make().connect(factory)  # type: ignore[attr-defined]
        protocol.transport.loseConnection()
    return time.perf_counter() - start


async def _asyncio_round(port: int, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        _, writer = await asyncio.open_connection(HOST, port)
        writer.close()
    return time.perf_counter() - start


async def _measure(connections: int, rounds: int) -> dict[str, float]:
    reactor = Reactor()
    server = Factory.forProtocol(Protocol)
    server.noisy = False
    listening = reactor.listenTCP(0, server, backlog=512, interface=HOST)
    await listening.ready
    port = listening.getHost().port  # type: ignore[union-attr]
    cases: dict[str, Callable[[], Awaitable[float]]] = {
        "TCP4ClientEndpoint 127.0.0.1": lambda: _endpoint_round(
            lambda: TCP4ClientEndpoint(reactor, HOST, port), connections
        ),
        "HostnameEndpoint 127.0.0.1": lambda: _endpoint_round(
            lambda: HostnameEndpoint(reactor, HOST, port), connections
        ),
        "HostnameEndpoint localhost": lambda: _endpoint_round(
            lambda: HostnameEndpoint(reactor, "localhost", port), connections
        ),
        "asyncio open_connection": lambda: _asyncio_round(port, connections),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(rounds):
            for name, run in cases.items():  # interleaved, so that drift hits all alike
                times[name].append(await run())
                await asyncio.sleep(0.05)  # let the closed connections go
    finally:
        await reactor.shutdown()
    return {name: statistics.median(t) / connections * 1e6 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(_measure(args.connections, args.rounds))
    base = results["TCP4ClientEndpoint 127.0.0.1"]
    print(f"client connection setup, {args.connections} connections x {args.rounds} rounds")
    print(f"{'client':32} {'µs/conn':>9} {'ratio':>7}")
    for name, micros in results.items():
        print(f"{name:32} {micros:9.1f} {micros / base:7.2f}")


if __name__ == "__main__":
    main()
