"""``statewire serve --workers``: line-echo throughput with 1 and 2 workers, how the
connections spread over the workers, and requests lost during reloads under load.

The server is ``statewire serve`` running a ``LineReceiver`` echo (``statewire.basic``) that
first says which worker took the connection (its process id); this process is the client
(asyncio). Throughput: ``--connections`` connections each pipeline ``--lines`` lines of 32
bytes and wait for every echoed byte; the ratio 2 workers / 1 worker is printed. On this
2-core machine the client shares the cores with the workers, so the ratio is bounded by
the client too: it is printed with the client's own CPU time, to show where the time went.
Spread: connections per worker (max/min) with ``SO_REUSEPORT`` (the default) and with one
socket shared by the workers (handed to the supervisor as ``--listen fd:N``). Reload: two
clients make one request per connection while the supervisor is sent ``--reloads`` SIGHUPs;
requests refused, reset or unanswered are counted (target: 0).

    python bench/bench_workers.py [--lines 5000] [--connections 32] [--reloads 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LINE = b"x" * 31 + b"\n"
TARGET = """
import os
from statewire.basic import LineReceiver
from statewire.protocol import Factory

class Echo(LineReceiver):
    delimiter = b"\\n"

    def connectionMade(self):
        self.sendLine(b"%d" % os.getpid())

    def lineReceived(self, line):
        self.sendLine(line)

factory = Factory.forProtocol(Echo)
"""
ROOT = Path(__file__).resolve().parent.parent


class Served:
    """``statewire serve TARGET --workers N``, its port and output, until stopped."""

    def __init__(self, target: Path, workers: int, listen: str, pass_fds: tuple[int, ...] = ()):
        options = ["--workers", str(workers), "--listen", listen, "--drain-timeout", "5"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "statewire", "serve", f"{target}:factory", *options],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=pass_fds,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        found = self.wait_for(r"listening on [^\s]+:(\d+)")
        self.port = int(found[-1])
        self.wait_for(r"serving \S+ in \d+ workers")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, "".join(list(self.output)))
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise RuntimeError(f"{pattern!r} not seen:\n{''.join(self.output)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def _echo_connection(port: int, lines: int) -> int:
    """One connection: its worker's pid, after ``lines`` lines echoed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pid = int(await reader.readline())
    writer.write(LINE * lines)
    await reader.readexactly(len(LINE) * lines)
    writer.close()
    await writer.wait_closed()
    return pid


async def _echo_load(port: int, connections: int, lines: int) -> tuple[float, list[int]]:
    started = time.perf_counter()
    pids = await asyncio.gather(*(_echo_connection(port, lines) for _ in range(connections)))
    return time.perf_counter() - started, list(pids)


async def _spread(port: int, connections: int) -> collections.Counter[int]:
    """Which worker took each of ``connections`` connections (all open at once)."""
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    pids = collections.Counter([int(await reader.readline()) for reader, _ in opened])
    for _, writer in opened:
        writer.close()
        await writer.wait_closed()
    return pids


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def throughput(target: Path, connections: int, lines: int) -> None:
    rates = {}
    for workers in (1, 2):
        served = Served(target, workers, "tcp:0:interface=127.0.0.1")
        try:
            asyncio.run(_echo_load(served.port, connections, 100))  # warm up
            cpu = _cpu()
            seconds, pids = asyncio.run(_echo_load(served.port, connections, lines))
            client = _cpu() - cpu
        finally:
            served.stop()
        rates[workers] = connections * lines / seconds
        per = sorted(collections.Counter(pids).values())
        print(
            f"{workers} worker(s): {rates[workers] / 1e3:8.0f} k lines/s  "
            f"({seconds:.2f} s, client CPU {client:.2f} s = {client / seconds:.0%} of a core; "
            f"connections per worker {per})"
        )
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


def spread(target: Path, connections: int) -> None:
    shared = socket.socket()
    shared.bind(("127.0.0.1", 0))
    shared.listen(128)
    modes = {
        "SO_REUSEPORT": ("tcp:0:interface=127.0.0.1", ()),
        "one shared socket": (f"fd:{shared.fileno()}", (shared.fileno(),)),
    }
    try:
        for name, (listen, fds) in modes.items():
            served = Served(target, 2, listen, fds)
            port = shared.getsockname()[1] if fds else served.port
            try:
                counts = asyncio.run(_spread(port, connections))
            finally:
                served.stop()
            values = sorted(counts.values()) + [0] * (2 - len(counts))
            print(
                f"spread, {name}: {connections} connections -> per worker {sorted(values)} "
                f"(max/min {max(values) / max(min(values), 1):.2f})"
            )
    finally:
        shared.close()


def reloads(target: Path, count: int) -> None:
    served = Served(target, 2, "tcp:0:interface=127.0.0.1")
    done = threading.Event()
    answered = [0]
    failed: list[str] = []

    def client() -> None:
        for _ in range(100_000):
            if done.is_set():
                return
            try:
                with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
                    sock.sendall(b"ping\n")
                    data = b""
                    while data.count(b"\n") < 2:
                        chunk = sock.recv(100)
                        if not chunk:
                            raise ConnectionError(f"closed after {data!r}")
                        data += chunk
                answered[0] += 1
            except OSError as error:
                failed.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for number in range(1, count + 1):
            time.sleep(0.2)
            served.process.send_signal(signal.SIGHUP)
            served.wait_for("reloaded: the", count=number)
            served.wait_for("exited with code 0", count=2 * number)
        time.sleep(0.2)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
        served.stop()
    print(
        f"reload under load: {count} reloads, {answered[0]} requests answered, "
        f"{len(failed)} refused/reset/unanswered {failed[:3]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small loads, to check it runs")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.reloads = 2_000, 1
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "echo_pid.py"
        target.write_text(TARGET)
        print(f"CPUs: {os.cpu_count()}; python {sys.version.split()[0]}")
        throughput(target, args.connections, args.lines)
        spread(target, 64)
        reloads(target, args.reloads)


if __name__ == "__main__":
    main()
