"""One HTTP request a read, in process: what a server costs a request, sockets aside.

The request ``wrk`` sends (``GET /``, ``Host`` and ``--fields`` more header fields), one
read at a time, to one connection with a test clock and a transport that keeps only the
count of its writes. Each read is handed in from a callback of the event loop, and the
next read comes from the callback it schedules: one loop turn a read, as a socket server
takes, and no task running while the server reads (so the server starts its handler's
task as it does under a socket, not inside the bench's). Prints the microseconds a
request (the median of ``--rounds``), the Python calls a request (``cProfile``'s count,
built-ins included, the loop's own included) and the writes a request. Not a comparison
of servers under load: the socket runs of ``bench/bench_http.py`` are; this one tells where
a change moved the server's own cost, and what the sockets add to it there.

The server (one of):

* ``examples/httpd.py``'s factory (the default);
* ``--asgi``: ``bench/bench_http.py``'s ASGI application through
  ``statewire.protocols.asgi.asgi``;
* ``--uvicorn``: the same application through uvicorn's ``httptools`` protocol (uvicorn
  and httptools installed), its transport the same counting one, its ``Date`` and
  ``Server`` fields set as uvicorn's server sets them: what ``--asgi`` is compared with.

    python bench/bench_http_request.py [--requests 5000] [--rounds 5] [--fields 0]
        [--post BYTES] [--asgi | --uvicorn] [--uvloop]

``--post BYTES`` sends ``POST /echo`` with a body of BYTES instead (in the read of its head,
as wrk sends it). ``--uvloop`` runs the loop on uvloop. ``--access-log FILE`` has the server
log each request to FILE (statewire's :class:`~statewire.protocols.http.AccessLog`, or
uvicorn's own access log), the lines alone, through a ``logging.FileHandler``.
``--metrics`` has a :class:`statewire.metrics.Metrics` count the responses (by status,
their durations in a histogram), as ``statewire serve --metrics`` does; the connection
observer that ``--metrics`` also turns on is left out (``bench/bench_tracing.py``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "examples"))
sys.path.insert(0, str(BENCH))


class _Counted:
    """A transport keeping only the count of writes (statewire's and asyncio's methods)."""

    disconnecting = False
    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writeSequence(self, data: Any) -> None:
        self.writes += 1

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass

    def getPeer(self) -> None:
        return None

    def getHost(self) -> None:
        return None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    # asyncio's, for uvicorn's protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        names = {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}
        return names.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _statewire(factory: Any) -> tuple[Callable[[bytes], None], _Counted]:
    from statewire.testing.memory import Clock

    protocol = factory.buildProtocol(None)
    protocol.clock = Clock()
    transport = _Counted()
    protocol.makeConnection(transport)
    return protocol.dataReceived, transport


#: the file each request is logged to (``--access-log``), or ``None``
ACCESS_LOG: list[str | None] = [None]
#: whether the server's responses are counted (``--metrics``: ``statewire.metrics``)
COUNTED: list[bool] = [False]


def _log_handler(logger: str) -> logging.Logger:
    """The logger ``logger``, writing the lines alone to ``--access-log``'s file (and
    nowhere else)."""
    path = ACCESS_LOG[0]
    assert path is not None
    chosen = logging.getLogger(logger)
    if any(isinstance(old, logging.FileHandler) for old in chosen.handlers):
        return chosen  # (set up for an earlier connection)
    for old in list(chosen.handlers):
        chosen.removeHandler(old)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    chosen.addHandler(handler)
    chosen.setLevel(logging.INFO)
    chosen.propagate = False
    return chosen


def _logged(factory: Any) -> Any:
    """``factory`` logging each request to ``--access-log``'s file, if given."""
    if ACCESS_LOG[0] is not None:
        from statewire.protocols.http import AccessLog

        factory.access_log = AccessLog(_log_handler("statewire.access"))
    if COUNTED[0]:
        from statewire import metrics

        metrics.Metrics().count_responses(factory)  # (only the responses: no observer)
    return factory


def _uvicorn(loop: asyncio.AbstractEventLoop) -> tuple[Callable[[bytes], None], _Counted]:
    import bench_http  # type: ignore[import-not-found]
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    logs = ACCESS_LOG[0] is not None
    config = Config(
        app=bench_http.app, lifespan="off", access_log=logs, log_level="warning", http="httptools"
    )
    config.load()
    if logs:
        _log_handler("uvicorn.access")
    state: dict[str, Any] = {}
    if "app_state" in inspect.signature(HttpToolsProtocol).parameters:  # (uvicorn >= 0.32)
        state["app_state"] = {}
    server_state = ServerState()
    # what uvicorn's server sets on each tick (its Date and Server fields: statewire sends both)
    date = [(b"date", formatdate(usegmt=True).encode())] if config.date_header else []
    server_state.default_headers = date + config.encoded_headers
    protocol = HttpToolsProtocol(config=config, server_state=server_state, _loop=loop, **state)
    transport = _Counted()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol.data_received, transport


def connect(
    server: str, loop: asyncio.AbstractEventLoop
) -> tuple[Callable[[bytes], None], _Counted]:
    """One connection of ``server`` (``httpd``, ``asgi`` or ``uvicorn``): its read entry
    point and its transport."""
    if server == "uvicorn":
        return _uvicorn(loop)
    if server == "asgi":
        import bench_http

        return _statewire(_logged(bench_http.asgi_factory()))
    import httpd  # type: ignore[import-not-found]

    return _statewire(_logged(httpd.factory))


async def _run(
    server: str, request: bytes, count: int, batch: int = 1, profile: Any = None
) -> tuple[float, float]:
    """Microseconds and writes a request over ``count`` requests (at least one) on
    ``batch`` new connections, each loop callback handing one read to each of them in
    turn, as a socket server's poller does with the sockets it found ready together."""
    loop = asyncio.get_running_loop()
    connections = [connect(server, loop) for _ in range(batch)]
    feeds = [feed for feed, _ in connections]
    done: asyncio.Future[None] = loop.create_future()
    turns = max(1, -(-count // batch))  # (whole turns: every connection reads in each)
    left = turns + 20  # the first 20 turns warm: the handlers and decoders made
    marks: dict[str, float] = {}
    writes = 0

    def read() -> None:
        nonlocal left, writes
        if left == 0:
            marks["end"] = time.perf_counter()
            if profile is not None:
                profile.disable()
            done.set_result(None)
            return
        if left == turns:
            writes = sum(transport.writes for _, transport in connections)
            if profile is not None:
                profile.enable()
            marks["start"] = time.perf_counter()
        left -= 1
        for feed in feeds:
            feed(request)
        loop.call_soon(read)  # (the loop's turn a socket server takes for each batch)

    loop.call_soon(read)
    await done
    await asyncio.sleep(0)  # (a task still running ends)
    elapsed = marks["end"] - marks["start"]
    requests = turns * batch
    written = sum(transport.writes for _, transport in connections) - writes
    return elapsed * 1e6 / requests, written / requests


def measure(
    server: str = "httpd",
    request: bytes = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
    requests: int = 5000,
    rounds: int = 5,
    uvloop: bool = False,
    batch: int = 1,
) -> tuple[list[float], float, float]:
    """Microseconds a request in each round, Python calls a request, writes a request."""
    run: Callable[[Any], Any] = asyncio.run
    if uvloop:
        import uvloop as _uvloop

        run = _uvloop.run
    costs = [run(_run(server, request, requests, batch))[0] for _ in range(rounds)]
    profile = cProfile.Profile()
    _, writes = run(_run(server, request, requests, batch, profile))
    requests = max(1, -(-requests // batch)) * batch
    calls = pstats.Stats(profile).total_calls / requests  # type: ignore[attr-defined]
    return costs, calls, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fields", type=int, default=0, help="header fields after Host")
    parser.add_argument(
        "--post", type=int, metavar="BYTES", help="POST /echo of BYTES, in the head's read"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--asgi", action="store_true", help="the ASGI app through asgi()")
    which.add_argument("--uvicorn", action="store_true", help="the ASGI app through uvicorn")
    parser.add_argument("--uvloop", action="store_true", help="the loop on uvloop")
    parser.add_argument(
        "--batch", type=int, default=1, help="connections read in each loop turn (default 1)"
    )
    parser.add_argument("--access-log", metavar="FILE", help="log each request to FILE")
    parser.add_argument(
        "--metrics", action="store_true", help="count the responses (statewire.metrics)"
    )
    args = parser.parse_args()
    ACCESS_LOG[0] = args.access_log
    COUNTED[0] = args.metrics
    server = "asgi" if args.asgi else "uvicorn" if args.uvicorn else "httpd"
    fields = b"".join(b"X-Field-%d: a value\r\n" % n for n in range(args.fields))
    what = f"GET / with {1 + args.fields} header fields"
    request = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n" + fields + b"\r\n"
    if args.post is not None:
        what = f"POST /echo of {args.post} bytes with {2 + args.fields} header fields"
        head = b"POST /echo HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: %d\r\n"
        request = head % args.post + fields + b"\r\n" + b"x" * args.post
    if args.batch < 1:
        parser.error("--batch is at least 1")
    costs, calls, writes = measure(
        server, request, args.requests, args.rounds, args.uvloop, args.batch
    )
    loop = "uvloop" if args.uvloop else "asyncio"
    turn = "a loop turn a read" if args.batch == 1 else f"{args.batch} connections' reads a turn"
    print(
        f"in process, {server} on {loop}, {what}, one read a request, {turn}: "
        f"{statistics.median(costs):.1f} us a request [{min(costs):.1f}-{max(costs):.1f}], "
        f"{calls:.0f} Python calls (the loop's turn included), {writes:g} writes"
        + (", each request logged" if args.access_log else "")
        + (", each response counted" if args.metrics else "")
    )


if __name__ == "__main__":
    main()
