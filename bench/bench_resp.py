"""miniredis against redis-server, both measured by redis-benchmark in the same run.

Each server runs in its own process on a free loopback port (miniredis served by
``statewire serve``, with ``--uvloop`` if asked); ``redis-benchmark -q -c 50 -n N -P 16
-t ping,set,get,incr`` drives each in turn and the requests per second are printed side by
side with their ratio. Every step is bounded in time.

    python bench/bench_resp.py [--requests 100000] [--uvloop]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TESTS = "ping,set,get,incr"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


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
def served(command: list[str], port: int) -> Iterator[tuple[int, int]]:
    """Run ``command`` (a server listening on ``port``): the block gets (port, pid)."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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


def benchmark(port: int, requests: int) -> dict[str, float]:
    """requests/s per test, as redis-benchmark's quiet mode prints them."""
    command = ["redis-benchmark", "-h", HOST, "-p", str(port), "-q", "-c", "50", "-P", "16"]
    done = subprocess.run(
        [*command, "-n", str(requests), "-t", TESTS],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = re.findall(r"^(\w+): ([\d.]+) requests per second", done.stdout, re.M)
    rates: dict[str, float] = {}
    for name, rate in found:
        rates.setdefault(name, float(rate))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--uvloop", action="store_true", help="serve miniredis on uvloop")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: redis-server, redis-tools)")
    port = free_port()
    redis = ["redis-server", "--save", "", "--appendonly", "no", "--port", str(port)]
    with serving([*redis, "--bind", HOST], port):
        theirs = benchmark(port, args.requests)
    port = free_port()
    listen = f"tcp:{port}:interface={HOST}"
    mini = [sys.executable, "-m", "statewire", "serve", "examples/miniredis.py:factory"]
    with serving([*mini, "--listen", listen, *(["--uvloop"] if args.uvloop else [])], port):
        ours = benchmark(port, args.requests)
    print(f"redis-benchmark -c 50 -n {args.requests} -P 16 (requests/s)")
    print(f"{'test':12} {'miniredis':>10} {'redis-server':>13} {'ratio':>6}")
    for name, rate in theirs.items():
        mine = ours.get(name, 0.0)
        print(f"{name:12} {mine:10,.0f} {rate:13,.0f} {mine / rate:6.2f}")


if __name__ == "__main__":
    main()
