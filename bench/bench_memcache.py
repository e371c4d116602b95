"""statewire's memcached against its peers, pipelined, in the same run.

Four servers, each in its own process on a free loopback port: ``examples/memcached.py``
served by ``statewire serve`` (``--uvloop`` if asked), a Twisted ``LineReceiver`` one and a
hand-written asyncio one (``bench/memcache_peers.py``), and the real ``memcached -t 1``.
One client process drives each in turn: ``--connections`` connections, each sending
``--depth`` requests at a time (pre-built bytes) and waiting for their replies, for
``--seconds``; replies are counted by their terminators, so the client costs little. Two
loads: ``get`` of a 100-byte value, and ``set`` of one. Prints requests per second and the
ratios; the targets are >= 3x Twisted and >= 1x the hand-written asyncio server.

    python bench/bench_memcache.py [--seconds 3] [--connections 10] [--depth 16] [--uvloop]
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
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
