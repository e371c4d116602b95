"""statewire's memcached against its peers, pipelined, in the same run.

Four servers, each in its own process on a free loopback port: ``examples/memcached.py``
served by ``statewire serve`` (``--uvloop`` if asked), a Twisted ``LineReceiver`` one and a
hand-written asyncio one (``bench/memcache_peers.py``), and the real ``memcached -t 1``.
One client process drives each in turn: ``--connections`` connections, each sending
``--depth`` requests at a time (pre-built bytes) and waiting for their replies, for
``--seconds``; replies are counted by their terminators, so the client costs little. Two
loads: ``get`` of a 100-byte value, and ``set`` of one. Prints requests per second and the
ratios; the targets are >= 3x Twisted and >= 1x the hand-written asyncio server.

``--in-process`` measures the request paths alone, without sockets: each server's protocol
fed the same pipelined requests in 64 KiB reads (a transport that drops what is written),
nanoseconds a request (the median of the rounds, alternated), statewire's Python calls a
request (``cProfile``'s count, built-ins included); and, as a floor, what statewire's
memcached does for a request once it is framed and routed: the line parsed
(``parse_command``) and the command run (``run``, or ``store`` with its block), with no
framing and no machine. Where that floor alone costs a third of the Twisted peer's whole
request or more, no engine, however fast, makes the server 3x the peer.

    python bench/bench_memcache.py [--seconds 3] [--connections 10] [--depth 16] [--uvloop]
    python bench/bench_memcache.py --in-process [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import selectors
import shutil
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resp import HOST, free_port, serving

VALUE = b"v" * 100
LOADS = {
    "get": (b"get bench:key\r\n", b"END\r\n"),
    "set": (b"set bench:key 0 0 100\r\n" + VALUE + b"\r\n", b"STORED\r\n"),
}


def drive(port: int, load: str, connections: int, depth: int, seconds: float) -> float:
    """Requests per second: ``connections`` pipelines of ``depth`` until ``seconds``."""
    request, reply = LOADS[load]
    batch = request * depth
    with socket.create_connection((HOST, port), timeout=5) as setup:
        setup.sendall(LOADS["set"][0])
        setup.recv(100)
    selector = selectors.DefaultSelector()
    owed: dict[socket.socket, int] = {}
    tails: dict[socket.socket, bytes] = {}
    for _ in range(connections):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        owed[sock], tails[sock] = depth, b""
        sock.sendall(batch)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            for key, _ in selector.select(timeout=deadline - now):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = tails[sock] + sock.recv(1 << 20)
                count = data.count(reply)
                # a reply cut by the read; the terminators cannot overlap themselves
                tails[sock] = data[-(len(reply) - 1) :]
                owed[sock] -= count
                done += count
                if owed[sock] <= 0:
                    owed[sock] += depth
                    sock.sendall(batch)
        elapsed = time.perf_counter() - start
    finally:
        for sock in owed:
            selector.unregister(sock)
            sock.close()
    return done / elapsed


class _Dropped(asyncio.Transport):
    """A transport that takes what is written and keeps none of it (for the Twisted and
    statewire protocols, and the asyncio one: an ``asyncio.Transport``)."""

    disconnecting = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def writeSequence(self, data: object) -> None:
        pass

    def getPeer(self) -> None:
        return None

    def getHost(self) -> None:
        return None


def in_process(requests: int, rounds: int) -> None:
    """ns a request for each peer's protocol, statewire's and the floor (see the module)."""
    import cProfile
    import pstats
    import statistics

    from memcache_peers import AsyncioMemcache, twisted_memcache

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import memcached

    from grammars.memcache import parse_command
    from statewire.protocols._memcache_ops import run, store
    from statewire.testing.memory import Clock

    def statewire() -> object:
        protocol = memcached.factory.buildProtocol(None)
        protocol.clock = Clock()
        protocol.makeConnection(_Dropped())
        return protocol

    def twisted() -> object:
        protocol = twisted_memcache({})()
        protocol.makeConnection(_Dropped())
        return protocol

    def hand_written() -> object:
        protocol = AsyncioMemcache({})
        protocol.connection_made(_Dropped())
        protocol.dataReceived = protocol.data_received  # type: ignore[attr-defined]
        return protocol

    makers = {"statewire": statewire, "twisted": twisted, "asyncio": hand_written}
    core = statewire()
    print(f"in process, {requests} pipelined requests in 64 KiB reads, median of {rounds}")
    print(f"{'load':<6}" + "".join(f"{name:>12}" for name in [*makers, "floor"]) + "   calls")
    for load, (request, _) in LOADS.items():
        stream = LOADS["set"][0] + request * requests  # (the key set first, for get)
        reads = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
        line, _, block = request.partition(b"\r\n")
        value = block[:-2]

        def floor(line: bytes = line, value: bytes = value) -> None:
            for _ in range(requests):
                if value:
                    store(core, parse_command(line), value)  # type: ignore[arg-type]
                else:
                    run(core, parse_command(line))  # type: ignore[arg-type]

        costs: dict[str, list[float]] = {name: [] for name in [*makers, "floor"]}
        for _ in range(rounds):
            for name, make in makers.items():
                protocol = make()
                start = time.perf_counter()
                for read in reads:
                    protocol.dataReceived(read)  # type: ignore[attr-defined]
                costs[name].append((time.perf_counter() - start) * 1e9 / requests)
            start = time.perf_counter()
            floor()
            costs["floor"].append((time.perf_counter() - start) * 1e9 / requests)
        profile = cProfile.Profile()
        protocol = statewire()
        profile.enable()
        for read in reads:
            protocol.dataReceived(read)  # type: ignore[attr-defined]
        profile.disable()
        calls = pstats.Stats(profile).total_calls / requests  # type: ignore[attr-defined]
        medians = {name: statistics.median(found) for name, found in costs.items()}
        print(
            f"{load:<6}"
            + "".join(f"{medians[name]:>12,.0f}" for name in costs)
            + f"   {calls:.1f}"
        )
        tw = medians["twisted"]
        print(
            f"  {load}: statewire / twisted {tw / medians['statewire']:.2f}x, / asyncio "
            f"{medians['asyncio'] / medians['statewire']:.2f}x; the floor alone is "
            f"{medians['floor'] / tw:.2f} of twisted's whole request (3x needs <= 0.33)"
        )


def servers(uvloop: bool) -> list[tuple[str, list[str]]]:
    python = sys.executable
    serve = [python, "-m", "statewire", "serve", "examples/memcached.py:factory"]
    found = [
        ("statewire", [*serve, *(["--uvloop"] if uvloop else []), "--listen"]),
        ("twisted", [python, "bench/memcache_peers.py", "twisted"]),
        ("asyncio", [python, "bench/memcache_peers.py", "asyncio"]),
    ]
    binary = shutil.which("memcached")
    if binary is not None:
        user = ["-u", getpass.getuser()] if os.geteuid() == 0 else []
        found.append(("memcached -t 1", [binary, "-t", "1", "-U", "0", "-l", HOST, *user, "-p"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="the request paths alone")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.in_process:
        in_process(args.requests, args.rounds)
        return
    results: dict[str, dict[str, float]] = {}
    for name, command in servers(args.uvloop):
        port = free_port()
        argument = f"tcp:{port}:interface={HOST}" if name == "statewire" else str(port)
        with serving([*command, argument], port):
            results[name] = {
                load: drive(port, load, args.connections, args.depth, args.seconds)
                for load in LOADS
            }
    ours = results["statewire"]
    print(
        f"pipelined memcached, {args.connections} connections x depth {args.depth}, "
        f"{args.seconds:g} s a load (requests/s)"
    )
    print(f"{'server':<16}" + "".join(f"{load:>12}" for load in LOADS))
    for name, figures in results.items():
        print(f"{name:<16}" + "".join(f"{figures[load]:>12,.0f}" for load in LOADS))
    for name, figures in results.items():
        if name != "statewire":
            ratios = "  ".join(f"{load} {ours[load] / figures[load]:.2f}x" for load in LOADS)
            print(f"statewire / {name}: {ratios}")


if __name__ == "__main__":
    main()
