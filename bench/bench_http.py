"""statewire's HTTP/1.1 server against h11, twisted.web and hand-written asyncio, one run.

Each server runs in its own process on a free loopback port and answers the same two
routes: ``GET /`` a 22-byte text, ``POST /echo`` the request body back.

* ``statewire``: ``examples/httpd.py:factory`` served by ``statewire serve`` (``--uvloop``
  adds a row on uvloop);
* ``h11``: an ``asyncio.Protocol`` driving an ``h11.Connection`` (written below);
* ``twisted``: ``twisted.web.server.Site`` with a leaf ``Resource``, access log off;
* ``httptools``: an ``asyncio.Protocol`` on llhttp's parser, as uvicorn uses it (only if
  ``httptools`` is installed: said so and skipped otherwise);
* ``asyncio``: a minimal hand-written ``asyncio.Protocol`` (head cut at the blank line,
  ``Content-Length`` read by hand, canned response): the loop's limit, not a real server;
* ``api floor``: that limit plus only the issue's handler API (``http_floor.py``: request
  and response objects, an ``async`` handler), on asyncio and (``api floor statewire``) on
  statewire's own transport; the ``floor`` lines divide their rates by httptools's;
* ASGI (only if ``uvicorn`` is installed: said so and skipped otherwise): the small ASGI
  application :func:`app` below (``GET /`` the same text with a ``Content-Length``,
  ``POST /echo`` each body message sent back as it arrives) served by
  ``statewire.protocols.asgi.asgi(app)`` (``asgi statewire``) and by ``uvicorn`` in its
  own process with ``--loop asyncio`` and each of its HTTP parsers installed (``--http
  httptools``, ``--http h11``); when ``uvloop`` is installed, both again on uvloop.

``--against TREE`` adds ``statewire@against``: the same example served from another
checkout of statewire (``git archive COMMIT | tar -x -C TREE``, with the C accelerator's
``.so`` files copied in or built there), imported from there, and a ratio of this
checkout's to it: a before/after comparison whose two sides share every round.

Four loads, ``--connections`` (50) keep-alive connections for ``--seconds`` each: ``GET /``
one request in flight per connection, ``GET /`` pipelined ``--depth`` (16) deep, a ``POST
/echo`` of ``--post-kib`` (1) KiB, the issue's, which the targets are for, and one of
``--big-post-kib`` (1024) KiB, a body streamed in pieces (``0``: not run; until
2026-12-02 the only ``POST`` load, then of 1 MiB by default). The load comes from ``wrk
-t1`` when it is installed (pipelining and the POST by a Lua script), else from a Python
client (one process, non-blocking sockets, ``selectors``, pre-built requests, responses
counted by ``HTTP/1.1 200``). Rounds alternate the servers; medians are printed with the server's
CPU microseconds per request and the ratios. Targets (issue 17): >= 3x twisted.web,
>= 2x h11, >= 0.8x httptools; ASGI: ``asgi(app)`` >= 1x uvicorn on the same event loop.
A last ``ceiling`` line divides httptools's server CPU a keep-alive ``GET`` by statewire's
cost of one in process with no socket, ``--connections`` reads a loop turn
(``bench_http_request.py --batch``, measured then): what statewire would reach against
httptools if its sockets cost nothing.

    python bench/bench_http.py [--seconds 3] [--rounds 3] [--uvloop] [--client python]
    python bench/bench_http.py --quick
    python bench/bench_http.py --quick --asgi-only
    python bench/bench_http.py --tiny-chunks 20000
    python bench/bench_http.py --against /tmp/before --rounds 2 --seconds 2 --big-post-kib 0
    python bench/bench_http.py --servers httptools,"api floor",statewire --big-post-kib 0

``--tiny-chunks N`` measures only, in process, a chunked body of N 1-byte chunks read in one
piece and one byte a read, and a ``Content-Length`` body of N bytes read one byte a read:
CPU time and the machine's transitions a body byte, against h11's parser fed the same
bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resp import HOST, cpu_seconds, free_port, served
from http_floor import ApiFloorServer

GREETING = b"Hello from statewire.\n"
TEXT = b"text/plain; charset=utf-8"
OCTETS = b"application/octet-stream"
#: seconds a wrk run or a blocking socket operation may take beyond the load itself
GRACE = 30.0


def canned(content_type: bytes, body: bytes) -> bytes:
    """A whole keep-alive response with ``body``."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
    return head % (content_type, len(body)) + body


# -- the peers (each run in its own process: ``bench_http.py serve NAME PORT``) -------------


class H11Server(asyncio.Protocol):
    """One connection served through h11's state machine."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import h11

        # (uvloop's TLS transport is no asyncio.Transport subclass)
        transport = cast(asyncio.Transport, transport)
        self.h11 = h11
        self.transport = transport
        self.connection = h11.Connection(h11.SERVER)
        self.method = b""
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        h11, connection = self.h11, self.connection
        connection.receive_data(data)
        out = []
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:
                if connection.our_state is not h11.DONE:
                    break
                connection.start_next_cycle()
            elif isinstance(event, h11.Request):
                self.method, self.body = event.method, []
            elif isinstance(event, h11.Data):
                self.body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                post = self.method == b"POST"
                body = b"".join(self.body) if post else GREETING
                fields = [
                    ("Content-Type", OCTETS if post else TEXT),
                    ("Content-Length", str(len(body))),
                ]
                out.append(connection.send(h11.Response(status_code=200, headers=fields)))
                out.append(connection.send(h11.Data(data=body)))
                out.append(connection.send(h11.EndOfMessage()))
            elif isinstance(event, h11.ConnectionClosed):
                break
        if out:
            self.transport.write(b"".join(chunk for chunk in out if chunk))
        if connection.our_state is h11.MUST_CLOSE:
            self.transport.close()


class HttptoolsServer(asyncio.Protocol):
    """One connection parsed by httptools (llhttp), callbacks as uvicorn has them."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        # (uvloop's TLS transport is no asyncio.Transport subclass)
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError
        self.body: list[bytes] = []
        self.out: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.close()
            return
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.get_method() == b"POST":
            self.out.append(canned(OCTETS, b"".join(self.body)))
        else:
            self.out.append(canned(TEXT, GREETING))


class AsyncioServer(asyncio.Protocol):
    """The least an HTTP/1.1 keep-alive server can do: no validation at all."""

    hello = canned(TEXT, GREETING)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TLS transport is no asyncio.Transport subclass)
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out = []
        pos = 0
        while True:
            end = buffer.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            if buffer.startswith(b"POST", pos):
                field = buffer.find(b"content-length:", pos, end)
                if field < 0:
                    field = buffer.find(b"Content-Length:", pos, end)
                stop = buffer.find(b"\r\n", field, end + 2)
                size = int(buffer[field + 15 : stop])
                if len(buffer) < end + 4 + size:
                    break
                out.append(canned(OCTETS, bytes(buffer[end + 4 : end + 4 + size])))
                pos = end + 4 + size
            else:
                out.append(self.hello)
                pos = end + 4
        del buffer[:pos]
        if out:
            self.transport.write(b"".join(out))


def serve_asyncio_protocol(kind: type[asyncio.Protocol], port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(kind, HOST, port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_twisted(port: int, tls: Any = None) -> None:
    """twisted.web on ``port``; over TLS with ``tls`` (a Twisted context factory)."""
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Root(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", TEXT)
            return GREETING

        def render_POST(self, request: Any) -> bytes:
            request.setHeader(b"content-type", OCTETS)
            body: bytes = request.content.read()
            return body

    site = Site(Root())
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    if tls is None:
        reactor.listenTCP(port, site, interface=HOST)  # type: ignore[attr-defined]
    else:
        reactor.listenSSL(port, site, tls, interface=HOST)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


# -- the ASGI application (served by uvicorn and by statewire's asgi()) ---------------------


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """``GET /`` the greeting (one body message: a ``Content-Length``), ``POST /echo``
    each body message sent back as it arrives (streamed: chunked)."""
    if scope["type"] != "http":
        raise RuntimeError(f"only the http scope is served, not {scope['type']!r}")
    if scope["method"] == "POST" and scope["path"] == "/echo":
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", OCTETS)]})
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            more = message.get("more_body", False)
            body = message.get("body", b"")
            await send({"type": "http.response.body", "body": body, "more_body": more})
        return
    fields = [(b"content-type", TEXT), (b"content-length", b"%d" % len(GREETING))]
    await send({"type": "http.response.start", "status": 200, "headers": fields})
    await send({"type": "http.response.body", "body": GREETING})


def asgi_factory() -> Any:
    """What ``statewire serve bench/bench_http.py:asgi_factory`` serves: :func:`app`
    through :func:`statewire.protocols.asgi.asgi`, its defaults untouched."""
    from statewire.protocols.asgi import asgi

    return asgi(app)


SERVE = {
    "api floor": lambda port: serve_asyncio_protocol(ApiFloorServer, port),
    "h11": lambda port: serve_asyncio_protocol(H11Server, port),
    "httptools": lambda port: serve_asyncio_protocol(HttptoolsServer, port),
    "asyncio": lambda port: serve_asyncio_protocol(AsyncioServer, port),
    "twisted": serve_twisted,
}


def command(name: str, port: int) -> list[str]:
    """The command line serving ``name`` on ``port``."""
    uvloop = name.endswith("uvloop")
    if name == "api floor statewire":
        serve = [
            sys.executable,
            "-m",
            "statewire",
            "serve",
            "bench/http_floor.py:statewire_factory",
        ]
        return [*serve, "--listen", f"tcp:{port}:interface={HOST}"]
    if name.startswith(("statewire", "asgi statewire")):
        target = "bench/bench_http.py:asgi_factory" if name.startswith("asgi") else None
        serve = [sys.executable, "-m", "statewire", "serve", target or "examples/httpd.py:factory"]
        return [*serve, "--listen", f"tcp:{port}:interface={HOST}", *(["--uvloop"] * uvloop)]
    if name.startswith("uvicorn"):
        # "uvicorn PARSER [uvloop]": the same app, uvicorn's HTTP parser, its event loop
        parser = name.split()[1]
        where = ["--app-dir", "bench", "bench_http:app", "--host", HOST, "--port", str(port)]
        quiet = ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
        how = ["--loop", "uvloop" if uvloop else "asyncio", "--http", parser]
        return [sys.executable, "-m", "uvicorn", *where, *how, *quiet]
    return [sys.executable, "bench/bench_http.py", "serve", name, str(port)]


def asgi_servers() -> list[str]:
    """The ASGI rows: statewire's ``asgi(app)`` and uvicorn with each HTTP parser it has
    here, on asyncio, and on uvloop too when it is installed."""
    if importlib.util.find_spec("uvicorn") is None:
        print("uvicorn is not installed: the ASGI comparison is skipped (pip install uvicorn)")
        return []
    parsers = [p for p in ("httptools", "h11") if importlib.util.find_spec(p) is not None]
    loops = [""]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append(" uvloop")
    else:
        print("uvloop is not installed: the ASGI rows on uvloop are skipped")
    return [
        name
        for loop in loops
        for name in (f"asgi statewire{loop}", *(f"uvicorn {p}{loop}" for p in parsers))
    ]


#: the other checkout ``--against`` names, served as ``statewire@against``
AGAINST = "statewire@against"


@contextmanager
def server(name: str, tree: str | None = None) -> Iterator[tuple[int, int]]:
    """Serve ``name`` in its own process (from checkout ``tree`` for
    ``statewire@against``): (port, pid)."""
    port = free_port()
    with served(command(name, port), port, tree if name == AGAINST else None) as found:
        yield found


# -- the loads -------------------------------------------------------------------------------


class Load:
    """One load: the request bytes, how deep each connection pipelines them."""

    def __init__(self, name: str, method: str, path: str, body: bytes, depth: int) -> None:
        self.name, self.method, self.path, self.body, self.depth = name, method, path, body, depth

    def request(self, port: int) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        if self.body:
            head += (
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(self.body)}\r\n"
            )
        return head.encode() + b"\r\n" + self.body

    def lua(self) -> str:
        """The wrk script of this load (``None`` lines are wrk's defaults)."""
        lines = []
        if self.body:
            lines += [
                f'wrk.method = "{self.method}"',
                f'wrk.body = string.rep("x", {len(self.body)})',
                'wrk.headers["Content-Type"] = "application/octet-stream"',
            ]
        if self.depth > 1:
            lines += [
                "init = function(args)",
                "  local r = {}",
                f'  for i = 1, {self.depth} do r[i] = wrk.format(nil, "{self.path}") end',
                "  req = table.concat(r)",
                "end",
                "request = function() return req end",
            ]
        return "\n".join(lines) + "\n"


def check(port: int, loads: list[Load]) -> None:
    """Each load's request once: a 200 carrying the whole body."""
    for load in loads:
        with socket.create_connection((HOST, port), timeout=GRACE) as sock:
            sock.sendall(load.request(port))
            data = b""
            # the echoed body is all "x" (chunked or not); the text comes whole
            while not (data.count(b"x") >= len(load.body) if load.body else GREETING in data):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise RuntimeError(f"{load.name}: closed after {data[:200]!r}")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{load.name}: unexpected {data[:200]!r}")


def run_wrk(
    port: int,
    load: Load,
    connections: int,
    seconds: float,
    folder: str,
    name: str,
    scheme: str = "http",
) -> float:
    """Requests per second wrk measured (errors and non-2xx responses refused)."""
    script = Path(folder) / f"{load.name.replace(' ', '_')}.lua"
    script.write_text(load.lua())
    url = f"{scheme}://{HOST}:{port}{load.path}"
    wrk = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script)]
    done = subprocess.run(
        [*wrk, url], capture_output=True, text=True, timeout=seconds + GRACE, check=True
    )
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in done.stdout:
            raise SystemExit(f"wrk on {name}, {load.name}: {bad}\n{done.stdout}")
    found = re.search(r"^Requests/sec:\s+([\d.]+)", done.stdout, re.M)
    if found is None:
        raise SystemExit(f"wrk printed no rate:\n{done.stdout}{done.stderr}")
    return float(found.group(1))


def run_python(port: int, load: Load, connections: int, seconds: float) -> float:
    """Requests per second from one selector loop: each connection sends ``depth``
    requests, waits for as many responses (counted by their status line), and again."""
    batch = load.request(port) * load.depth
    marker = b"HTTP/1.1 200"
    selector = selectors.DefaultSelector()
    owed: dict[socket.socket, int] = {}
    tails: dict[socket.socket, bytes] = {}
    outgoing: dict[socket.socket, memoryview] = {}
    for _ in range(connections):
        sock = socket.create_connection((HOST, port), timeout=GRACE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        owed[sock], tails[sock], outgoing[sock] = load.depth, b"", memoryview(batch)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while (now := time.perf_counter()) < deadline:
            for key, events in selector.select(timeout=deadline - now):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if events & selectors.EVENT_WRITE and outgoing[sock]:
                    sent = sock.send(outgoing[sock])
                    outgoing[sock] = outgoing[sock][sent:]
                    if not outgoing[sock]:
                        selector.modify(sock, selectors.EVENT_READ)
                if not events & selectors.EVENT_READ:
                    continue
                data = sock.recv(1 << 20)
                if not data:
                    raise RuntimeError("the server closed a connection")
                scanned = tails[sock] + data
                count = scanned.count(marker)
                # a status line cut by the read; the marker cannot overlap itself
                tails[sock] = scanned[-(len(marker) - 1) :]
                owed[sock] -= count
                done += count
                if owed[sock] <= 0 and not outgoing[sock]:
                    owed[sock] += load.depth
                    outgoing[sock] = memoryview(batch)
                    selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        elapsed = time.perf_counter() - start
    finally:
        for sock in owed:
            selector.unregister(sock)
            sock.close()
        selector.close()
    return done / elapsed


# -- the run ---------------------------------------------------------------------------------


def tiny_chunks(count: int) -> None:
    """In process: a body of ``count`` 1-byte chunks, read in one piece and one byte a read,
    and a ``Content-Length`` body of ``count`` bytes read one byte a read, by statewire's
    machine and by h11: CPU microseconds a chunk (a body byte), transitions a chunk."""
    import h11

    from statewire.machine import observe, unobserve
    from statewire.protocols.http import HTTPFactory, Request, Response
    from statewire.testing.memory import Clock, StringTransport

    head = b"POST / HTTP/1.1\r\nHost: x\r\n"
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * count + b"0\r\n\r\n"
    sized = head + b"Content-Length: %d\r\n\r\n" % count + b"x" * count

    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], b"%d" % len(await request.body.read()))

    class Counter:
        transitions = 0

        def started(self, protocol: Any) -> Any:
            def transition(*_: Any) -> None:
                Counter.transitions += 1

            return transition

        def received(self, protocol: Any, size: int) -> None: ...
        def failed(self, protocol: Any, error: BaseException, local: bool) -> None: ...
        def stopped(self, protocol: Any) -> None: ...

    async def ours(wire: bytes, step: int) -> float:
        factory = HTTPFactory(handler, max_body=count, date=False)
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        start = time.process_time()
        for i in range(0, len(wire), step):
            protocol.dataReceived(wire[i : i + step])
        for _ in range(10):
            await asyncio.sleep(0)
        spent = time.process_time() - start
        assert transport.value().endswith(b"\r\n\r\n%d" % count), transport.value()[-60:]
        return spent

    def theirs(wire: bytes, step: int) -> float:
        server = h11.Connection(h11.SERVER)
        size = 0
        start = time.process_time()
        for i in range(0, len(wire), step):
            server.receive_data(wire[i : i + step])
            while True:
                event = server.next_event()
                if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
                    break
                if isinstance(event, h11.Data):
                    size += len(event.data)
        spent = time.process_time() - start
        assert size == count
        return spent

    counter = Counter()
    print(f"a body of {count:,} bytes, in process; CPU microseconds, best of 3")
    for wire, step, how in (
        (chunked, len(chunked), "1-byte chunks, one read"),
        (chunked, 1, "1-byte chunks, 1 byte a read"),
        (sized, 1, "Content-Length, 1 byte a read"),
    ):
        Counter.transitions = 0
        observe(counter)
        try:
            asyncio.run(ours(wire, step))
        finally:
            unobserve(counter)
        mine = min(asyncio.run(ours(wire, step)) for _ in range(3)) * 1e6 / count
        peer = min(theirs(wire, step) for _ in range(3)) * 1e6 / count
        print(
            f"{how:>30}: statewire {mine:.1f} us a body byte"
            f" ({Counter.transitions / count:.2f} transitions), h11 {peer:.1f} us:"
            f" {peer / mine:.2f}x h11"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per load and server")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--depth", type=int, default=16, help="pipelined requests")
    parser.add_argument(
        "--post-kib", type=int, default=1, help="POST /echo body size (the issue's: 1 KiB)"
    )
    parser.add_argument(
        "--big-post-kib", type=int, default=1024, help="a second POST /echo load (0: none)"
    )
    parser.add_argument("--uvloop", action="store_true", help="add statewire on uvloop")
    parser.add_argument("--client", choices=("wrk", "python"), help="default: wrk if found")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s")
    parser.add_argument(
        "--asgi-only", action="store_true", help="only the ASGI rows: asgi(app) and uvicorn"
    )
    parser.add_argument(
        "--servers", metavar="NAMES", help="only these rows (comma-separated names)"
    )
    parser.add_argument(
        "--tiny-chunks", type=int, metavar="N", help="only: N-byte bodies fed tiny, in process"
    )
    parser.add_argument(
        "--against",
        metavar="TREE",
        help="add statewire from another checkout (git archive of a commit, with its C "
        "accelerator built or copied in): a before/after row in the same run",
    )
    args = parser.parse_args()
    if args.tiny_chunks:
        tiny_chunks(args.tiny_chunks)
        return
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    client = args.client or ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: wrk); or --client python")
    names = ["statewire", *(["statewire-uvloop"] if args.uvloop else []), "h11", "twisted"]
    if args.against:
        names.insert(1, AGAINST)
    if importlib.util.find_spec("httptools") is None:
        print("httptools is not installed: its peer is skipped (pip install httptools)")
    else:
        names.append("httptools")
    names += ["asyncio", "api floor", "api floor statewire"]
    if args.asgi_only:
        names = []
    names += asgi_servers()
    if args.servers:
        wanted = args.servers.split(",")
        names = [name for name in names if name in wanted]
    if not names:
        raise SystemExit("nothing to measure")
    loads = [
        Load("GET keep-alive", "GET", "/", b"", 1),
        Load(f"GET pipelined x{args.depth}", "GET", "/", b"", args.depth),
        Load(f"POST {args.post_kib} KiB", "POST", "/echo", b"x" * (args.post_kib << 10), 1),
    ]
    if args.big_post_kib:  # a body streamed in pieces (the echo's copies, the body states)
        kib = args.big_post_kib
        loads.append(Load(f"POST {kib} KiB", "POST", "/echo", b"x" * (kib << 10), 1))
    rates: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as running, tempfile.TemporaryDirectory() as folder:
        found = {name: running.enter_context(server(name, args.against)) for name in names}
        for port, _ in found.values():
            check(port, loads)
        # rounds alternate the servers: a busy spell of the machine hits each alike
        for _ in range(args.rounds):
            for load in loads:
                for name, (port, pid) in found.items():
                    cpu = cpu_seconds(pid)
                    if client == "wrk":
                        rate = run_wrk(port, load, args.connections, args.seconds, folder, name)
                        elapsed = max(1, round(args.seconds))
                    else:
                        start = time.perf_counter()
                        rate = run_python(port, load, args.connections, args.seconds)
                        elapsed = time.perf_counter() - start
                    cpu = cpu_seconds(pid) - cpu
                    rates.setdefault((name, load.name), []).append(rate)
                    costs.setdefault((name, load.name), []).append(cpu * 1e6 / (rate * elapsed))
    median_rate = {key: statistics.median(values) for key, values in rates.items()}
    median_cost = {key: statistics.median(values) for key, values in costs.items()}
    print(
        f"{client}, {args.connections} connections, {args.seconds:g} s a load, "
        f"median of {args.rounds} alternated rounds"
    )
    print("requests/s [min-max]; server CPU microseconds per request")
    width = max(len(name) for name in names) + 2
    print(f"{'server':<{width}}" + "".join(f"{load.name:>34}" for load in loads))
    for name in names:
        cells = ""
        for load in loads:
            spread = f"[{min(rates[name, load.name]):,.0f}-{max(rates[name, load.name]):,.0f}]"
            key = (name, load.name)
            cell = f"{median_rate[key]:,.0f} {spread} {median_cost[key]:.0f} us"
            cells += cell.rjust(34)
        print(f"{name:<{width}}{cells}")
    targets = {"twisted": ">= 3x", "h11": ">= 2x", "httptools": ">= 0.8x", "asyncio": "limit"}
    pairs = [
        (ours, peer, targets[peer])
        for ours in names
        if ours.startswith("statewire") and ours != AGAINST
        for peer in names
        if peer in targets
    ]
    # ASGI: asgi(app) against uvicorn on the same event loop (asyncio, or uvloop)
    pairs += [
        (ours, peer, ">= 1x")
        for ours in names
        if ours.startswith("asgi statewire")
        for peer in names
        if peer.startswith("uvicorn") and peer.endswith("uvloop") == ours.endswith("uvloop")
    ]
    if args.against and "statewire" in names and AGAINST in names:
        pairs.insert(0, ("statewire", AGAINST, "none (a before/after row)"))
    for ours, peer, target in pairs:
        ratios = "  ".join(
            f"{median_rate[ours, load.name] / median_rate[peer, load.name]:.2f}x"
            f" (CPU {median_cost[peer, load.name] / median_cost[ours, load.name]:.2f}x)"
            for load in loads
        )
        print(f"{ours} / {peer}: {ratios}  target {target}")
    floors = [name for name in names if name.startswith("api floor") and "httptools" in names]
    for floor in floors:
        ratios = "  ".join(
            f"{median_rate[floor, load.name] / median_rate['httptools', load.name]:.2f}x"
            for load in loads
        )
        print(f"floor: {floor} / httptools: {ratios}  (the handler API alone)")
    if "httptools" in names and "statewire" in names:
        ceiling(median_cost["httptools", loads[0].name], args.connections)


def ceiling(peer_cost: float, connections: int) -> None:
    """How far statewire's own work lets it go against httptools on keep-alive ``GET``: its
    cost in process with no socket (``bench_http_request.py``, the reads of ``connections``
    connections a loop turn, as its poller hands them in under this load), against the
    whole CPU the httptools server spent a request under load, the kernel's share included.
    Both servers are CPU-bound under this load, so a server's rate follows its CPU a
    request: the ratio of the two costs is what statewire would reach if its sockets cost
    nothing, a ceiling rather than a forecast."""
    from bench_http_request import measure

    costs, _, _ = measure("httpd", rounds=3, batch=connections)
    alone = statistics.median(costs)
    print(
        f"ceiling: statewire's keep-alive GET in process ({connections} reads a loop turn, "
        f"no socket) {alone:.1f} us; httptools's whole server under load {peer_cost:.1f} us "
        f"CPU a request: {peer_cost / alone:.2f}x httptools if statewire's sockets cost nothing"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        SERVE[sys.argv[2]](int(sys.argv[3]))
    else:
        main()
