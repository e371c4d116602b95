"""``statewire serve --workers``: throughput with 1 and 2 workers (line echo and GET/VALUE
request/response), how the connections spread over the workers, and requests lost during
reloads under load.

The servers are ``statewire serve`` running, in 1 and in 2 workers side by side, measured in
turn (alternated over ``--rounds``, medians printed with [min-max]); this process is the
client (on uvloop when it is installed, as bench/bench_echo.py's client). Each connection
first learns which worker took it (its process id), so the connections per worker are
printed too.

- Line echo: a ``LineReceiver`` (``statewire.basic``); ``--connections`` connections each
  pipeline ``--lines`` lines of 32 bytes and wait for every echoed byte.
- GET/VALUE: bench/bench_echo.py's request/response protocol, declared the same way (a
  ``MachineProtocol`` whose ``TypeMachineBuilder`` machine routes ``GET key`` with
  ``by_verb``, answered ``VALUE ...`` from a 1000-key store), plus a ``PID`` verb; pipelined
  (``--requests`` over ``--connections`` connections) and with one request in flight per
  connection (``--requests`` / 5 over 100 connections).

The ratio 2 workers / 1 worker is printed. On this 2-core machine the client shares the
cores with the workers, so the ratio is bounded by the client too, and by any other
process running meanwhile: each line says where the time went, in cores (CPU seconds per
second of the load): the client's, the workers' (from /proc), and the whole machine's
busy time (idle excluded). The workers cannot have more than what the client and the
other processes leave of the cores (the machine's figure is coarse over a short load).

Spread: connections per worker (max/min) with ``SO_REUSEPORT`` (the default) and with one
socket shared by the workers (handed to the supervisor as ``--listen fd:N``). Reload: two
clients make one request per connection while the supervisor is sent ``--reloads``
SIGHUPs; requests refused, reset or unanswered are counted (target: 0).

    python bench/bench_workers.py [--rounds 3] [--lines 20000] [--requests 200000]
        [--connections 32] [--reloads 3] [--quick]
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_echo import client_loop

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
#: bench/bench_echo.py's GET/VALUE protocol (same store, same declaration), and ``PID``
TARGET_KV = """
import os
from typing import Protocol as Interface

from automat import TypeMachineBuilder

from grammars import line
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb
from statewire.protocol import Factory

STORE = {b"key%d" % i: b"value-%d-" % i + b"v" * 16 for i in range(1000)}


class Commands(Interface):
    def get(self, key: bytes) -> None: ...
    def pid(self) -> None: ...


builder = TypeMachineBuilder(Commands, MachineProtocol)
ready = builder.state("ready")


@ready.upon(Commands.get).loop()
def answer(machine, core, key):
    value = STORE.get(key)
    core.send(b"VALUE " + value if value is not None else b"MISSING")


@ready.upon(Commands.pid).loop()
def who(machine, core):
    core.send(b"PID %d" % os.getpid())


class KV(MachineProtocol):
    machine = builder.build()
    framings = {ready: line(b"\\n", max_length=1024)}
    routes = {ready: by_verb({b"GET": Commands.get, b"PID": Commands.pid})}


factory = Factory.forProtocol(KV)
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
        ready = self.wait_for(r"worker \d+ \(pid (\d+)\) ready", count=workers)
        self.pids = [int(pid) for pid in ready]

    def cpu(self) -> float:
        """CPU seconds the workers have used so far (0 where /proc cannot tell)."""
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

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


def _machine_busy() -> float:
    """CPU seconds every process of the machine has used so far, idle time excluded (0
    where /proc cannot tell): what the client and the workers leave to the others."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


REQUESTS = [b"GET key%d\n" % (i % 1000) for i in range(1000)]
BATCH = b"".join(REQUESTS)


class _KVClient(asyncio.Protocol):
    """Asks ``PID`` (which worker), then, on ``go()``, makes ``requests`` GETs, pipelined
    or one in flight; ``done`` resolves after the last answer."""

    transport: asyncio.Transport

    def __init__(self, requests: int, pipelined: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.requests = requests
        self.pipelined = pipelined
        self.answers = 0
        self.pid = 0
        self.buffer = b""
        self.ready: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"PID\n")

    def go(self) -> None:
        if self.pipelined:
            full, rest = divmod(self.requests, len(REQUESTS))
            self.transport.write(BATCH * full + b"".join(REQUESTS[:rest]))
        else:
            self.transport.write(REQUESTS[0])

    def data_received(self, data: bytes) -> None:
        if not self.pid:
            self.buffer += data
            if b"\n" in self.buffer:
                self.pid = int(self.buffer.split(b"\n", 1)[0].split()[1])
                self.ready.set_result(None)
            return
        self.answers += data.count(b"\n")
        if self.answers >= self.requests:
            if not self.done.done():
                self.done.set_result(None)
        elif not self.pipelined:
            self.transport.write(REQUESTS[self.answers % len(REQUESTS)])

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.ready, self.done):
            if not future.done():
                future.set_exception(RuntimeError("server closed early"))


async def _kv_load(
    port: int, connections: int, total: int, pipelined: bool
) -> tuple[float, list[int]]:
    """Seconds for ``total`` GETs over ``connections`` (connecting not timed); the worker
    of each connection."""
    loop = asyncio.get_running_loop()
    clients = []
    for i in range(connections):
        share = total // connections + (i < total % connections)
        _, client = await loop.create_connection(
            lambda share=share: _KVClient(share, pipelined, loop), "127.0.0.1", port
        )
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 30)
    started = time.perf_counter()
    for client in clients:
        client.go()
    await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), 300)
    elapsed = time.perf_counter() - started
    for client in clients:
        client.transport.close()
    return elapsed, [c.pid for c in clients]


def _check_kv(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET key7\nGET nokey\n")
        data = b""
        while data.count(b"\n") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    if data != b"VALUE value-7-" + b"v" * 16 + b"\nMISSING\n":
        raise RuntimeError(f"unexpected answer {data!r}")


def _side_by_side(
    target: Path,
    rounds: int,
    title: str,
    unit: str,
    total: int,
    load: Callable[[int], Coroutine[Any, Any, tuple[float, list[int]]]],
    check: Callable[[int], None] | None = None,
) -> float:
    """Serve ``target`` in 1 and in 2 workers at once; run ``load(port)`` on each in
    turn, ``rounds`` times (after one warm-up); print the rates and return the ratio."""
    servers = {}
    try:
        for workers in (1, 2):
            servers[workers] = Served(target, workers, "tcp:0:interface=127.0.0.1")
        loop = client_loop()  # uvloop when installed: less client CPU
        try:
            seconds: dict[int, list[float]] = {1: [], 2: []}
            shares: dict[int, list[float]] = {1: [], 2: []}
            used: dict[int, list[float]] = {1: [], 2: []}
            busy: dict[int, list[float]] = {1: [], 2: []}
            per_worker: dict[int, list[int]] = {}
            for served in servers.values():
                if check is not None:
                    check(served.port)
                loop.run_until_complete(load(served.port))  # warm up
            for _ in range(rounds):
                for workers, served in servers.items():
                    cpu, server_cpu, machine = _cpu(), served.cpu(), _machine_busy()
                    elapsed, pids = loop.run_until_complete(load(served.port))
                    busy[workers].append((_machine_busy() - machine) / elapsed)
                    seconds[workers].append(elapsed)
                    shares[workers].append((_cpu() - cpu) / elapsed)
                    used[workers].append((served.cpu() - server_cpu) / elapsed)
                    per_worker[workers] = sorted(collections.Counter(pids).values())
        finally:
            loop.close()
    finally:
        for served in servers.values():
            served.stop()
    print(f"{title} ({rounds} rounds; median [min-max])")
    rate = {}
    for workers in (1, 2):
        rate[workers] = total / statistics.median(seconds[workers])
        spread = f"[{total / max(seconds[workers]) / 1e3:.0f}-"
        spread += f"{total / min(seconds[workers]) / 1e3:.0f}]"
        print(
            f"  {workers} worker(s): {rate[workers] / 1e3:7.0f} k {unit}/s {spread:<12}"
            f"CPU in cores: client {statistics.median(shares[workers]):.2f}, "
            f"workers {statistics.median(used[workers]):.2f}, "
            f"machine {statistics.median(busy[workers]):.2f}; "
            f"connections per worker {per_worker[workers]}"
        )
    ratio = rate[2] / rate[1]
    print(f"  2 workers / 1 worker: {ratio:.2f}x")
    return ratio


def throughput(target: Path, rounds: int, connections: int, lines: int) -> None:
    _side_by_side(
        target,
        rounds,
        f"line echo: {connections} connections x {lines} pipelined lines of {len(LINE)} bytes",
        "lines",
        connections * lines,
        lambda port: _echo_load(port, connections, lines),
    )


def request_response(target: Path, rounds: int, connections: int, requests: int) -> None:
    scenarios = [
        (f"pipelined, {connections} connections", connections, requests, True),
        ("1 in flight, 100 connections", 100, requests // 5, False),
    ]
    for name, count, total, pipelined in scenarios:
        _side_by_side(
            target,
            rounds,
            f"GET/VALUE {name}: {total} requests",
            "requests",
            total,
            lambda port, count=count, total=total, pipelined=pipelined: _kv_load(
                port, count, total, pipelined
            ),
            _check_kv,
        )


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small loads, to check it runs")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.lines, args.requests, args.reloads = 1, 2_000, 20_000, 1
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "echo_pid.py"
        target.write_text(TARGET)
        kv = Path(folder) / "kv.py"
        kv.write_text(TARGET_KV)
        print(f"CPUs: {os.cpu_count()}; python {sys.version.split()[0]}; load average "
              f"{os.getloadavg()[0]:.2f} (other processes share this machine)")  # fmt: skip
        throughput(target, args.rounds, args.connections, args.lines)
        request_response(kv, args.rounds, args.connections, args.requests)
        spread(target, 64)
        reloads(target, args.reloads)


if __name__ == "__main__":
    main()
