"""Memory of the real protocols' servers, each in its own process: idle connections, and
one huge value sent slowly.

Servers: ``examples/miniredis.py`` and ``examples/memcached.py`` served by ``statewire
serve`` (asyncio, and ``--uvloop``), the hand-written peers of ``bench/resp_peers.py`` and
``bench/memcache_peers.py`` (Twisted ``LineReceiver``, asyncio), and the real
``redis-server`` and ``memcached -t 1`` when installed. The server's memory is its RSS
(``VmRSS`` in ``/proc/PID/status``); the peak is ``VmHWM``, reset before a transfer
(``/proc/PID/clear_refs``) where the kernel allows it, and the RSS sampled after every
write besides.

* Idle connections: ``--connections`` clients connect (the fd limit is raised within the
  hard limit; if it is too low the count is cut down, and said); once the server has
  accepted them all (counted in ``/proc/PID/fd``), the RSS growth per connection; then each
  sends one request (``PING``, ``version``) and reads its answer, and the growth again.
* A huge value through a slow sender: a ``SET`` of ``--value`` MiB (RESP), sent in 64 KiB
  writes ``--pause`` ms apart, bounded by ``--seconds``; peak RSS growth and its multiple
  of the value (miniredis keeps the value: about 1x is the least it can be). For memcached,
  a ``set`` of the same size: items over 1 MiB are refused at the header
  (``SERVER_ERROR object too large for cache``) and the block swallowed, so what is
  measured is the swallowing path, whose growth must stay near one read. The hand-written
  memcached peers have no item limit and re-copy their buffer on every read (quadratic),
  so they are left out of that one.

    python bench/bench_memory_protocols.py [--connections 10000] [--value 100] [--quick]
"""

from __future__ import annotations

import argparse
import getpass
import os
import resource
import shutil
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resp import HOST, free_port, served
from bench_resp import SERVERS as RESP_SERVERS

CHUNK = 64 * 1024
#: fds a process needs besides its connections (stdio, listener, epoll, imports...)
SPARE_FDS = 64
#: connections opened before the server is waited for: well under a backlog of 50 (statewire
#: and Twisted listen with 50 by default; an overflow costs a 1 s SYN retransmission)
BATCH = 20


@dataclass(frozen=True)
class Kind:
    """A protocol as the bench speaks it: one small request and the end of its answer."""

    name: str
    request: bytes
    answer_ends: bytes
    servers: dict[str, Callable[[int], list[str]]]


def _memcached_servers() -> dict[str, Callable[[int], list[str]]]:
    def statewire(uvloop: bool) -> Callable[[int], list[str]]:
        def command(port: int) -> list[str]:
            serve = [sys.executable, "-m", "statewire", "serve", "examples/memcached.py:factory"]
            listen = ["--listen", f"tcp:{port}:interface={HOST}"]
            return [*serve, *listen, *(["--uvloop"] if uvloop else [])]

        return command

    def peer(kind: str) -> Callable[[int], list[str]]:
        return lambda port: [sys.executable, "bench/memcache_peers.py", kind, str(port)]

    found = {
        "statewire asyncio": statewire(False),
        "statewire uvloop": statewire(True),
        "twisted": peer("twisted"),
        "asyncio": peer("asyncio"),
    }
    binary = shutil.which("memcached")
    if binary is not None:
        user = ["-u", getpass.getuser()] if os.geteuid() == 0 else []
        options = ["-t", "1", "-U", "0", "-c", "12000", "-l", HOST, *user]
        found["memcached -t 1"] = lambda port: [binary, *options, "-p", str(port)]
    return found


def kinds() -> list[Kind]:
    resp = dict(RESP_SERVERS)
    if shutil.which("redis-server") is None:
        resp.pop("redis-server")
    return [
        Kind("miniredis", b"*1\r\n$4\r\nPING\r\n", b"\r\n", resp),
        Kind("memcached", b"version\r\n", b"\r\n", _memcached_servers()),
    ]


def status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
    with open(f"/proc/{pid}/status") as lines:
        for row in lines:
            if row.startswith(field + ":"):
                return int(row.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset_peak(pid: int) -> bool:
    """Reset the process's ``VmHWM`` to its current RSS (Linux >= 4.0, own processes)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft fd limit toward ``wanted`` (servers started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if ceiling > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    return soft


def wait_accepted(pid: int, fds: int, seconds: float) -> int:
    """Wait (at most ``seconds``) until the server holds ``fds`` descriptors."""
    deadline = time.monotonic() + seconds
    held = open_fds(pid)
    while held < fds and time.monotonic() < deadline:
        time.sleep(0.02)
        held = open_fds(pid)
    return held


def ask(sock: socket.socket, request: bytes, answer_ends: bytes) -> None:
    sock.sendall(request)
    answer = b""
    for _ in range(100):  # an answer of a few bytes: a few reads at most
        answer += sock.recv(4096)
        if answer.endswith(answer_ends):
            return
    raise RuntimeError(f"no answer to {request!r}: {answer[:80]!r}")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    # closed with RST: no TIME_WAIT piles up over the servers and their 10 000 connections
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def idle(kind: Kind, command: list[str], port: int, count: int, seconds: float) -> str:
    """RSS growth per connection: connected, then after one request each."""
    clients: list[socket.socket] = []
    with served(command, port) as (_, pid):
        try:
            for _ in range(10):  # warm-up: what the first connections load stays loaded
                with connect(port) as warm:
                    ask(warm, kind.request, kind.answer_ends)
            time.sleep(0.5)
            fds, before = open_fds(pid), status(pid, "VmRSS")
            deadline = time.monotonic() + seconds
            for n in range(count):
                if time.monotonic() > deadline:
                    break
                clients.append(connect(port))
                if n % BATCH == BATCH - 1:
                    wait_accepted(pid, fds + len(clients) - BATCH // 2, 10)
            accepted = wait_accepted(pid, fds + len(clients), 20) - fds
            time.sleep(1.0)
            connected = status(pid, "VmRSS")
            for sock in clients:
                sock.sendall(kind.request)
            for sock in clients:
                if time.monotonic() > deadline + 30:
                    raise RuntimeError("answers too slow")
                answer = b""
                for _ in range(100):
                    answer += sock.recv(4096)
                    if answer.endswith(kind.answer_ends):
                        break
            time.sleep(1.0)
            asked = status(pid, "VmRSS")
        finally:
            for sock in clients:
                sock.close()
    if accepted <= 0:
        return "no connection accepted"
    note = "" if accepted == count else f" (only {accepted} of {count} accepted)"
    per = (connected - before) * 1024 / accepted
    after_one = (asked - before) * 1024 / accepted
    return f"{per:>8,.0f} B {after_one:>14,.0f} B{note}"


def huge_value(
    header: bytes, trailer: bytes, size: int, pause: float, seconds: float, port: int, pid: int
) -> tuple[int, int, str, float]:
    """Send ``header``, ``size`` bytes in 64 KiB writes ``pause`` s apart, ``trailer``:
    (peak RSS growth KiB, growth once answered KiB, the answer, seconds taken)."""
    chunk = b"x" * CHUNK
    time.sleep(0.3)
    before = status(pid, "VmRSS")
    cleared = reset_peak(pid)
    peak_before = status(pid, "VmHWM")
    peak = before
    sent = 0
    started = time.monotonic()
    deadline = started + seconds
    with connect(port) as sock:
        sock.settimeout(30)
        sock.sendall(header)
        while sent < size and time.monotonic() < deadline:
            piece = chunk if size - sent >= CHUNK else chunk[: size - sent]
            sock.sendall(piece)
            sent += len(piece)
            peak = max(peak, status(pid, "VmRSS"))
            time.sleep(pause)
        taken = time.monotonic() - started
        if sent < size:
            return peak - before, 0, f"stopped after {sent >> 20} MiB ({seconds:g} s)", taken
        sock.sendall(trailer)
        answer = b""
        answered = time.monotonic() + 30
        while not answer.endswith(b"\r\n") and time.monotonic() < answered:
            piece = sock.recv(4096)
            if not piece:
                break
            answer += piece
        time.sleep(0.3)
        after = status(pid, "VmRSS")
        high = status(pid, "VmHWM")
        if cleared or high > peak_before:
            peak = max(peak, high)
        peak = max(peak, after)
        text = answer.decode("latin-1").strip()[:60] or "(connection closed)"
        return peak - before, after - before, text, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--value", type=int, default=100, help="MiB of the huge value")
    parser.add_argument("--pause", type=float, default=2.0, help="ms between 64 KiB writes")
    parser.add_argument("--seconds", type=float, default=60.0, help="bound of each transfer")
    parser.add_argument("--quick", action="store_true", help="1000 connections, 16 MiB")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-value", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.value = 1000, 16
    started = time.perf_counter()
    if not args.skip_idle:
        limit = raise_fd_limit(args.connections + SPARE_FDS)
        count = min(args.connections, limit - SPARE_FDS)
        note = (
            ""
            if count == args.connections
            else f" (fd limit {limit}: cut from {args.connections})"
        )
        print(f"idle connections: server RSS growth per connection at {count} connections{note}")
        print(f"{'server':<30}{'connected':>10} {'after a request':>16}")
        for kind in kinds():
            for name, command in kind.servers.items():
                port = free_port()
                figure = idle(kind, command(port), port, count, seconds=120)
                print(f"{kind.name + ' ' + name:<30}{figure}", flush=True)
    if not args.skip_value:
        size = args.value << 20
        print(
            f"\na {args.value} MiB value in 64 KiB writes {args.pause:g} ms apart "
            f"(bound {args.seconds:g} s): server RSS growth"
        )
        print(f"{'server':<30}{'peak':>10}{'x value':>9}{'answered':>11}  answer")
        header = {
            "miniredis": b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % size,
            "memcached": b"set big 0 0 %d\r\n" % size,
        }
        for kind in kinds():
            for name, command in kind.servers.items():
                if kind.name == "memcached" and name in ("twisted", "asyncio"):
                    continue  # no item limit, and a buffer re-copied every read: quadratic
                port = free_port()
                with served(command(port), port) as (_, pid):
                    peak, after, answer, taken = huge_value(
                        header[kind.name],
                        b"\r\n",
                        size,
                        args.pause / 1000,
                        args.seconds,
                        port,
                        pid,
                    )
                label = f"{kind.name} {name}"
                print(
                    f"{label:<30}{peak / 1024:>7,.1f} MiB{peak / (size >> 10):>8.2f}x"
                    f"{after / 1024:>7,.1f} MiB  {answer} ({taken:.1f} s)",
                    flush=True,
                )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
