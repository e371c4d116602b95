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

import errno
import random
import shutil
import socket
import subprocess
import time
from collections import deque
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


#: the lowest port :func:`free_port` picks (below it: the ports services are known by)
FREE_PORTS_FROM = 20000
#: where Linux says its ephemeral ports are (``ip_local_port_range``)
_EPHEMERAL = "/proc/sys/net/ipv4/ip_local_port_range"
#: the picks' source: the system's randomness, which no seeding touches (Hypothesis seeds
#: ``random`` alike in every process: parallel test processes would pick alike)
_PICK = random.SystemRandom()


def _ephemeral_low() -> int | None:
    """The lowest port the system hands out by itself (to ``bind`` to port 0 and to
    ``connect``), where it says (Linux)."""
    try:
        with open(_EPHEMERAL) as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


#: the ports :func:`free_port` gave lately (two calls in a row never give the same)
_GIVEN: deque[int] = deque(maxlen=256)


def _bindable(port: int) -> bool:
    """Whether ``port`` is free on 127.0.0.1, and on ::1 where there is IPv6 (a server
    may listen on both)."""
    for family, host in ((socket.AF_INET, HOST), (socket.AF_INET6, "::1")):
        try:
            probe = socket.socket(family)
        except OSError:
            continue  # (no IPv6 here)
        with probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                if family == socket.AF_INET6 and error.errno == errno.EADDRNOTAVAIL:
                    continue  # (IPv6 without ::1)
                return False
    return True


def free_port() -> int:
    """A TCP port free on the loopback interface now, for a server started next.

    Picked at random below the system's ephemeral range (from :data:`FREE_PORTS_FROM`),
    where it says where that range is (Linux): the system never gives those ports away by
    itself, so between this call and the server's ``bind`` no client socket and no server
    listening on port 0 can take it, as they could a port released by the system's own
    choice (tests running in parallel make that likely). Free means bindable on
    127.0.0.1 and, where there is IPv6, on ::1; and no port is given twice in a row (the
    last 256 are not given again). Elsewhere, or when the range leaves no room, or no
    port tried was free: the system's choice."""
    low = _ephemeral_low()
    if low is not None and low - FREE_PORTS_FROM >= 1000:
        for _ in range(50):  # bounded
            port = _PICK.randrange(FREE_PORTS_FROM, low)
            if port not in _GIVEN and _bindable(port):
                _GIVEN.append(port)
                return port
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        chosen: int = probe.getsockname()[1]
        return chosen


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
