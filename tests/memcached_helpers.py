"""The real memcached, started on a free loopback port for a test module, and a raw
session against any memcached-speaking server (``statewire.testing.differential``)."""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Iterator

import pytest

from statewire.testing.differential import HOST, Sentinel, exchange, free_port, server

__all__ = ["HOST", "SENTINEL", "free_port", "serve_example", "session", "start_memcached"]

#: sent after a session, its reply says the session is over (a miss that names its key,
#: so a session may hold any command, ``mn`` too, as long as it leaves that key alone)
SENTINEL = Sentinel(b"mg __end__ k\r\n", b"EN k__end__\r\n")


def start_memcached(*extra: str) -> Iterator[int]:
    """Run ``memcached`` on a free loopback port until the generator is closed."""
    binary = shutil.which("memcached")
    if binary is None:
        pytest.skip("memcached is not installed (.ci/run installs it)")
    user = ["-u", getpass.getuser()] if os.geteuid() == 0 else []
    with server([binary, "-p", "{port}", "-l", HOST, "-U", "0", *user, *extra]) as port:
        yield port


def serve_example() -> Iterator[int]:
    """``examples/memcached.py`` served by ``statewire serve`` in its own process, on a
    free loopback port, until the generator is closed (a module fixture's body)."""
    from process_helpers import running

    target = "examples/memcached.py:factory"
    with running("-m", "statewire", "serve", target, "--listen", "tcp:0:interface=127.0.0.1") as s:
        yield s.port
        s.stop()


def session(port: int, data: bytes, closing: bool = False) -> bytes:
    """Send ``data`` then the sentinel, and read until its reply (or until the server
    closes, when ``closing`` says it may). Bounded: 10 s and 8 MiB."""
    return exchange(port, data, SENTINEL, closing=closing)
