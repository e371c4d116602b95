"""Client connections: statewire's own socket transport against the loop's transports.

``connectTCP`` serves a client connection with statewire's socket transport, as accepted
ones are; ``Reactor.native_transports = True`` gives it the loop's own transport (what it
used before). Both are measured in one run, on asyncio's loop and on uvloop, against the
same echo server (a hand-written asyncio protocol, in this process):

* echo: ``--connections`` clients (statewire ``LineReceiver``) each send ``--lines`` lines
  of 16 bytes in writes of 1000 lines and count the echoes: lines per second;
* idle: ``--idle`` client connections held open: Python memory per connection
  (``tracemalloc``: transport, protocol and the loop's objects for it).

    python bench/bench_client_transport.py [--lines 100000] [--connections 4] [--idle 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from typing import Any

from statewire._reactor import Reactor
from statewire.basic import LineReceiver
from statewire.protocol import ClientFactory

HOST = "127.0.0.1"
LINE = b"0123456789abcde\n"
BATCH = 1000


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _Counting(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.seen = 0
        self.factory.ready.append(self)  # type: ignore[attr-defined]

    def lineReceived(self, line: bytes) -> None:
        self.seen += 1
        factory: Any = self.factory
        if self.seen == factory.lines:
            factory.left -= 1
            if factory.left == 0:
                factory.done.set_result(None)


class _Clients(ClientFactory):
    protocol = _Counting

    def __init__(self, lines: int, connections: int) -> None:
        self.lines = lines
        self.left = connections
        self.ready: list[_Counting] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


async def _echo(native: bool, lines: int, connections: int) -> float:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoServer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    reactor = Reactor()
    reactor.native_transports = native
    factory = _Clients(lines, connections)
    try:
        connectors = [reactor.connectTCP(HOST, port, factory) for _ in range(connections)]
        await asyncio.gather(*(c.connected for c in connectors))
        chunk = LINE * BATCH
        start = time.perf_counter()
        for protocol in factory.ready:
            for _ in range(lines // BATCH):
                protocol.transport.write(chunk)
        await asyncio.wait_for(factory.done, 120)
        elapsed = time.perf_counter() - start
    finally:
        await reactor.shutdown()
        server.close()
        await server.wait_closed()
    return lines * connections / elapsed


async def _idle(native: bool, count: int) -> float:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoServer, HOST, 0, backlog=count)
    port = server.sockets[0].getsockname()[1]
    reactor = Reactor()
    reactor.native_transports = native
    factory = _Clients(1, count)
    try:
        await asyncio.sleep(0)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, count, 100):  # in batches: the backlog takes them
            batch = [
                reactor.connectTCP(HOST, port, factory)
                for _ in range(start, min(count, start + 100))
            ]
            await asyncio.gather(*(c.connected for c in batch))
        gc.collect()
        # the server's side of each connection is in this process too: counted apart
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    finally:
        await reactor.shutdown()
        server.close()
        await server.wait_closed()
    return (after - before) / count


def _run(coroutine: Any, uvloop: bool) -> Any:
    if not uvloop:
        return asyncio.run(coroutine)
    import uvloop as uv

    loop = uv.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"client echo: {args.connections} connections x {args.lines} lines; idle: {args.idle}")
    for uvloop in (False, True):
        loop_name = "uvloop" if uvloop else "asyncio"
        rates = {}
        for native in (False, True):
            rates[native] = max(
                _run(_echo(native, args.lines, args.connections), uvloop)
                for _ in range(args.rounds)
            )
        idle = {native: _run(_idle(native, args.idle), uvloop) for native in (False, True)}
        print(
            f"{loop_name:8} echo: statewire transport {rates[False]:>11,.0f} lines/s, "
            f"loop's transport {rates[True]:>11,.0f}  ratio {rates[False] / rates[True]:.2f}x"
        )
        print(
            f"{loop_name:8} idle: statewire transport {idle[False]:>8,.0f} B/conn, "
            f"loop's transport {idle[True]:>8,.0f} B/conn (server side included)"
        )


if __name__ == "__main__":
    main()
