"""miniredis against its peers and redis-server, all measured by redis-benchmark in one run.

Five servers, each in its own process on a free loopback port, started afresh for every
load: ``examples/miniredis.py`` served by ``statewire serve`` on asyncio and with
``--uvloop``; a Twisted ``LineReceiver`` server (raw mode for bulk strings) and a
hand-written asyncio protocol on ``hiredis.Reader`` (both ``bench/resp_peers.py``); and the
real ``redis-server`` (persistence off). Each is driven by::

    redis-benchmark -q -c 50 -n N -P 16 -t ping,set,get,incr,lpush,lrange_100,mset

and the same with ``-P 1`` (its own N), ``--rounds`` times in turn (the median is kept).
Prints requests per second per test and the ratios statewire / twisted (target >= 3x),
statewire / asyncio+hiredis (target >= 1x, floor 0.8x) and statewire / redis-server (aim
>= 0.5x at ``-P 16`` on SET and GET). Every step is bounded in time; every server is
stopped at the end, whatever happens. The machine's load shows in the figures: on a busy
machine, use ``--rounds 3``.

    python bench/bench_resp.py [--requests 50000] [--requests-p1 20000] [--rounds 1]
        [--quick] [--servers NAME,...]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from statewire.testing.differential import free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TESTS = "ping,set,get,incr,lpush,lrange_100,mset"
#: a redis-benchmark run longer than this is a failure, not a figure
BENCHMARK_TIMEOUT = 300.0
OURS = ("statewire asyncio", "statewire uvloop")
#: peer -> (label in the ratios, target)
PEERS = {
    "twisted": ("twisted", ">=3x"),
    "asyncio+hiredis": ("asyncio+hiredis", ">=1x (floor 0.8x)"),
    "redis-server": ("redis-server", "aim >=0.5x at -P 16 on SET/GET"),
}
RATE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)( \([^)]*\))?: ([\d.]+) requests per second")


def wait_for(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {HOST}:{port}")


@contextmanager
def serving(command: list[str], port: int) -> Iterator[int]:
    """Run ``command`` (a server listening on ``port``) until the block ends."""
    with served(command, port) as (listening, _):
        yield listening


@contextmanager
def served(command: list[str], port: int, tree: str | None = None) -> Iterator[tuple[int, int]]:
    """Run ``command`` (a server listening on ``port``): the block gets (port, pid).
    ``tree``: run it from that checkout of statewire, imported from there, instead of this
    one (a before/after comparison in one run)."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": tree}
    process = subprocess.Popen(
        command,
        cwd=tree or ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _miniredis(uvloop: bool) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        serve = [sys.executable, "-m", "statewire", "serve", "examples/miniredis.py:factory"]
        listen = ["--listen", f"tcp:{port}:interface={HOST}"]
        return [*serve, *listen, *(["--uvloop"] if uvloop else [])]

    return command


def _peer(kind: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [sys.executable, "bench/resp_peers.py", kind, str(port)]

    return command


def _redis_server(port: int) -> list[str]:
    persistence = ["--save", "", "--appendonly", "no"]
    return [
        "redis-server",
        *persistence,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--maxclients",
        "12000",
    ]


#: server name -> its command line for a port (each listens on 127.0.0.1 only)
SERVERS: dict[str, Callable[[int], list[str]]] = {
    "statewire asyncio": _miniredis(False),
    "statewire uvloop": _miniredis(True),
    "twisted": _peer("twisted"),
    "asyncio+hiredis": _peer("hiredis"),
    "redis-server": _redis_server,
}


def benchmark(port: int, requests: int, pipeline: int = 16) -> dict[str, float]:
    """requests/s per test (PING_INLINE, SET, LRANGE_100...), as redis-benchmark's quiet
    mode prints them; the LPUSH that only fills the list for LRANGE is left out."""
    command = ["redis-benchmark", "-h", HOST, "-p", str(port), "-q", "-c", "50"]
    done = subprocess.run(
        [*command, "-n", str(requests), "-P", str(pipeline), "-t", TESTS],
        capture_output=True,
        text=True,
        timeout=BENCHMARK_TIMEOUT,
        check=True,
    )
    rates: dict[str, float] = {}
    # quiet mode rewrites its progress line with carriage returns: the last one counts
    for text in re.split(r"[\r\n]", done.stdout):
        match = RATE.match(text)
        if match and "needed" not in (match[2] or ""):
            rates[match[1]] = float(match[3])
    return rates


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else 0.0


def report(pipeline: int, requests: int, results: dict[str, dict[str, float]]) -> None:
    """Print the requests/s table and the ratios for one pipeline depth."""
    names = list(results)
    tests = list(dict.fromkeys(t for rates in results.values() for t in rates))
    print(f"\nredis-benchmark -q -c 50 -n {requests} -P {pipeline} -t {TESTS} (requests/s)")
    print(f"{'test':<12}" + "".join(f"{name:>19}" for name in names))
    for test in tests:
        cells = "".join(f"{results[name].get(test, 0.0):>19,.0f}" for name in names)
        print(f"{test:<12}{cells}")
    ours = [name for name in OURS if name in results]
    peers = [name for name in PEERS if name in results]
    print(f"\nratios at -P {pipeline} (above 1: statewire faster)")
    header = [f"{o.split()[1]}/{PEERS[p][0]}" for p in peers for o in ours]
    print(f"{'test':<12}" + "".join(f"{cell:>24}" for cell in header))
    for test in tests:
        row = [
            _ratio(results[o].get(test, 0.0), results[p].get(test, 0.0))
            for p in peers
            for o in ours
        ]
        print(f"{test:<12}" + "".join(f"{cell:>24}" for cell in row))
    for peer in peers:
        label, target = PEERS[peer]
        for name in ours:
            ratios = [
                results[name][t] / results[peer][t]
                for t in tests
                if results[name].get(t) and results[peer].get(t)
            ]
            by_test = " ".join(
                f"{t} {_ratio(results[name].get(t, 0.0), results[peer].get(t, 0.0))}"
                for t in tests
            )
            print(
                f"{name} / {label} at -P {pipeline}: geomean "
                f"{geometric_mean(ratios):.2f}x ({target}); {by_test}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000, help="-n at -P 16")
    parser.add_argument("--requests-p1", type=int, default=20_000, help="-n at -P 1")
    parser.add_argument("--rounds", type=int, default=1, help="runs a server, median kept")
    parser.add_argument("--quick", action="store_true", help="-n 5000 and 2000")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ", ".join(SERVERS),
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.requests_p1 = 5_000, 2_000
    chosen = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(chosen) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers: {', '.join(sorted(unknown))}")
    if shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-benchmark is not installed (Debian: redis-tools)")
    if "redis-server" in chosen and shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian: redis-server): left out", file=sys.stderr)
        chosen.remove("redis-server")
    started = time.perf_counter()
    for pipeline, requests in ((16, args.requests), (1, args.requests_p1)):
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
        for round_ in range(args.rounds):
            # the servers take turns, in a rotated order each round, so a busy spell of
            # the machine does not fall on one server only
            shift = round_ % len(chosen)
            for name in chosen[shift:] + chosen[:shift]:
                port = free_port()
                with serving(SERVERS[name](port), port):
                    samples[name].append(benchmark(port, requests, pipeline))
        results = {
            name: {test: statistics.median(run.get(test, 0.0) for run in runs) for test in runs[0]}
            for name, runs in samples.items()
        }
        report(pipeline, requests, results)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
