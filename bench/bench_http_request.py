"""One HTTP request a read, in process: what ``examples/httpd.py`` costs a request.

The request ``wrk`` sends (``GET /``, ``Host`` and ``--fields`` more header fields), one
read at a time, to one connection of the example's factory with a test clock and a
transport that keeps only the count of its writes; the event loop runs the handler once
a read, as a socket server's does. Prints the microseconds a request (the median of
``--rounds``), the Python calls a request (``cProfile``'s count, built-ins included, the
loop's own included) and the writes a request. Not a comparison: the socket runs of
``bench/bench_http.py`` are; this one tells where a change moved the server's own cost.

    python bench/bench_http_request.py [--requests 5000] [--rounds 5] [--fields 0] [--post BYTES]

``--post BYTES`` sends ``POST /echo`` with a body of BYTES instead (in the read of its head,
as wrk sends it: the echo, answered inside the read, needs no loop turn when the body
comes with its head; a body the server reads later would need more than the one turn a
request this gives, and the figure would not mean much).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


class _Counted:
    """A transport keeping only the count of writes."""

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


async def _run(request: bytes, count: int, profile: Any = None) -> tuple[float, float]:
    """Microseconds and writes a request over ``count`` requests on a new connection."""
    import httpd  # type: ignore[import-not-found]

    from statewire.testing.memory import Clock

    protocol = httpd.factory.buildProtocol(None)
    protocol.clock = Clock()
    transport = _Counted()
    protocol.makeConnection(transport)
    for _ in range(20):  # warm: the handlers and decoders made
        protocol.dataReceived(request)
        await asyncio.sleep(0)
    before = transport.writes
    if profile is not None:
        profile.enable()
    start = time.perf_counter()
    for _ in range(count):
        protocol.dataReceived(request)
        await asyncio.sleep(0)  # (the loop's turn a socket server takes for each read)
    elapsed = time.perf_counter() - start
    if profile is not None:
        profile.disable()
    return elapsed * 1e6 / count, (transport.writes - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fields", type=int, default=0, help="header fields after Host")
    parser.add_argument(
        "--post", type=int, metavar="BYTES", help="POST /echo of BYTES, in the head's read"
    )
    args = parser.parse_args()
    fields = b"".join(b"X-Field-%d: a value\r\n" % n for n in range(args.fields))
    what = f"GET / with {1 + args.fields} header fields"
    request = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n" + fields + b"\r\n"
    if args.post is not None:
        what = f"POST /echo of {args.post} bytes with {2 + args.fields} header fields"
        head = b"POST /echo HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: %d\r\n"
        request = head % args.post + fields + b"\r\n" + b"x" * args.post
    costs = [asyncio.run(_run(request, args.requests))[0] for _ in range(args.rounds)]
    profile = cProfile.Profile()
    _, writes = asyncio.run(_run(request, args.requests, profile))
    calls = pstats.Stats(profile).total_calls / args.requests  # type: ignore[attr-defined]
    print(
        f"in process, {what}, one read a request: "
        f"{statistics.median(costs):.1f} us a request [{min(costs):.1f}-{max(costs):.1f}], "
        f"{calls:.0f} Python calls (the loop's turn included), {writes:g} writes"
    )


if __name__ == "__main__":
    main()
