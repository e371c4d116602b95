"""Run an example (or ``statewire serve``) as its own process for a test, find its port, and
read its output as it comes (a full pipe would block the server)."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class Server:
    """A served example's process, its port, and its output (read as it comes: a full pipe
    would block the server, and statewire logs whole frames in its protocol errors)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self._port()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _port(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and not self.reader.is_alive():
                    break
                continue
            if "listening on" in line or "starting on" in line:
                return int(line.strip().rsplit(":", 1)[1])
        raise AssertionError(f"no listening line: {''.join(self.output)}")

    def wait(self) -> str:
        """Wait for the server to exit; return all it printed."""
        self.process.wait(20)
        self.reader.join(10)
        return "".join(self.output)

    def stop(self, number: int = signal.SIGINT) -> str:
        """Stop the server with signal ``number``; it must exit with 0. Its output."""
        self.process.send_signal(number)
        out = self.wait()
        assert self.process.returncode == 0, out
        return out


@contextmanager
def running(*command: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``python COMMAND`` from the project's root until the block ends."""
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        yield Server(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def spawned(command: list[str], **options: Any) -> Iterator[subprocess.Popen[str]]:
    """``command`` run for the block (``subprocess.Popen``'s ``options``, text mode), a
    process that does not say where it listens; killed at the end if still running."""
    process = subprocess.Popen(command, text=True, **options)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def terminated(process: subprocess.Popen[str]) -> str:
    """Stop ``process`` with ``SIGTERM``; it must exit with 0. Its output (or errors)."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, (out, err)
    return out or err or ""


def statewire_command(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m statewire ARGS`` run to its end (at most 60 s), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "statewire", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=None if env is None else {**os.environ, **env},
    )


def recv_exactly(sock: socket.socket, count: int, timeout: float = 10) -> bytes:
    """Read ``count`` bytes from ``sock``, or fewer if the peer closes first."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def assert_runs_pure(program: str) -> None:
    """Run ``program`` (Python source) in a process of its own without the C accelerators
    (``STATEWIRE_PURE=1``): it must succeed and print ``pure``, its last word."""
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "STATEWIRE_PURE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"


@contextmanager
def haproxy(config: str, folder: Path, ports: list[int]) -> Iterator[subprocess.Popen[bytes]]:
    """Run HAProxy (in the foreground, ``-db``) with ``config``, written in ``folder`` with
    its log, until it listens on every one of ``ports`` (bounded: 20 s); stopped when the
    block ends."""
    path = folder / "haproxy.cfg"
    path.write_text(config)
    log = folder / "haproxy.log"
    with log.open("wb") as out:  # (the child keeps its own copy)
        process = subprocess.Popen(
            ["haproxy", "-f", str(path), "-db"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        for port in ports:
            for _ in range(200):
                if process.poll() is not None:
                    raise AssertionError(f"haproxy exited: {log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise AssertionError(f"haproxy did not listen on {port}: {log.read_text()}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
