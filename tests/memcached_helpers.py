"""The real memcached, started on a free loopback port for a test module, and a raw
session against any memcached-speaking server."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

HOST = "127.0.0.1"
#: sent after a session, its reply says the session is over (a miss that names its key,
#: so a session may hold any command, ``mn`` too, as long as it leaves that key alone)
SENTINEL, SENTINEL_REPLY = b"mg __end__ k\r\n", b"EN k__end__\r\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start_memcached(*extra: str) -> Iterator[int]:
    """Run ``memcached`` on a free loopback port until the generator is closed."""
    binary = shutil.which("memcached")
    if binary is None:
        pytest.skip("memcached is not installed (.ci/run installs it)")
    port = free_port()
    user = ["-u", getpass.getuser()] if os.geteuid() == 0 else []
    server = subprocess.Popen(
        [binary, "-p", str(port), "-l", HOST, "-U", "0", *user, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("memcached did not start")
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def session(port: int, data: bytes, closing: bool = False) -> bytes:
    """Send ``data`` then the sentinel, and read until its reply (or until the server closes, when
    ``closing`` says it may). Bounded: 10 s and 8 MiB."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(data + SENTINEL)
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(got) < 8 << 20:
            if got.endswith(SENTINEL_REPLY):
                return got[: -len(SENTINEL_REPLY)]
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        if not closing:
            raise AssertionError(f"no end of session in {got[-200:]!r}")
        return got
