"""Differential sessions: the same bytes sent to two servers over loopback, the replies
compared. For a protocol ported to statewire and the original it imitates (miniredis and
``redis-server``, ``examples/memcached.py`` and ``memcached``: ``tests/test_resp_server.py``
and ``tests/test_memcache_server.py`` are built on this).

* :func:`server` starts a server process on a free loopback port and stops it after;
* :func:`exchange` sends a session and reads the replies up to a *sentinel*: a request
  sent last whose reply says the session is over;
* :func:`same_replies` replays a session on both and fails, naming the session and the
  first difference, unless the replies (after a ``normalize`` for what may differ, a
  client id, a counter) are equal.

Driven by Hypothesis (a strategy of sessions made from the protocol's own grammar),
a difference shrinks to the shortest session that shows it::

    @given(st.lists(commands(), min_size=1, max_size=12))
    def test_sessions_match(ours: int, theirs: int, requests: list[bytes]) -> None:
        same_replies(ours, theirs, b"".join(requests), sentinel=SENTINEL)

Only loopback addresses are ever used; every wait is bounded in time and bytes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Sentinel:
    """A request sent after every session, and the reply that ends it."""

    request: bytes
    reply: bytes


class ServerUnavailable(Exception):
    """The reference server is not installed, or did not start."""


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server(command: Sequence[str], *, start_timeout: float = 15.0) -> Iterator[int]:
    """Run ``command`` until the block ends; ``{port}`` in it is replaced by a free
    loopback port, which the block gets once the server accepts connections. Raises
    :class:`ServerUnavailable` when the program is not installed or never listens."""
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    if shutil.which(argv[0]) is None:
        raise ServerUnavailable(f"{argv[0]} is not installed")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ServerUnavailable(f"{argv[0]} did not listen on {port}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def exchange(
    port: int,
    data: bytes,
    sentinel: Sentinel | None,
    *,
    closing: bool = False,
    timeout: float = 10.0,
    limit: int = 8 << 20,
) -> bytes:
    """Send ``data`` then the sentinel's request; return what came back before the
    sentinel's reply. With no sentinel, or when ``closing`` says the server may close
    first, read until it closes. Bounded: ``timeout`` seconds and ``limit`` bytes."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data + (sentinel.request if sentinel else b""))
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < limit:
            if sentinel is not None and got.endswith(sentinel.reply):
                return got[: -len(sentinel.reply)]
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            got += chunk
    if sentinel is not None and not closing:
        raise AssertionError(f"no end of session (no {sentinel.reply!r}) in {got[-200:]!r}")
    return got


def same_replies(
    ours: int,
    theirs: int,
    data: bytes,
    *,
    sentinel: Sentinel | None,
    normalize: Callable[[bytes], bytes] = lambda replies: replies,
    closing: bool = False,
) -> bytes:
    """Replay ``data`` on the server at ``ours`` and at ``theirs``; fail unless their
    replies, normalized, are equal. Returns our replies."""
    mine = exchange(ours, data, sentinel, closing=closing)
    real = exchange(theirs, data, sentinel, closing=closing)
    if normalize(mine) != normalize(real):
        at = _first_difference(normalize(mine), normalize(real))
        raise AssertionError(
            f"the servers differ on session {data[:500]!r}: at byte {at}, "
            f"ours {normalize(mine)[at : at + 80]!r}, theirs {normalize(real)[at : at + 80]!r}"
        )
    return mine


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


__all__ = [
    "HOST",
    "Sentinel",
    "ServerUnavailable",
    "exchange",
    "free_port",
    "same_replies",
    "server",
]
