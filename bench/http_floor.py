"""The least the issue's handler API costs: ``bench_http.py``'s ``api floor`` row.

Issue 17 asks for a server whose handler "gets method, target, headers, a body reader
and a response writer that streams", and for it to reach 0.8x a hand-written protocol on
httptools that has no such API (``bench_http.HttptoolsServer``: llhttp's callbacks, a canned
response appended). :class:`ApiFloorServer` measures what that API alone costs on top of
the least a server can do (``bench_http.AsyncioServer``: the head cut at its blank line, no
validation): per request, the request line split in three, the field lines split (not
checked), a request object with a body reader, a response object, and an ``async``
handler, run to its end by iterating its coroutine once, answering with one ``send``
whose head is formatted from its status and fields (a plain method returning an awaitable
already done, as a send that finds the transport writable can). ``GET /`` and ``POST
/echo`` are routed as ``examples/httpd.py`` routes them; anything else is a ``404`` (no
``405``, no ``HEAD``: the loads send neither).

Everything a real server adds is left out, to its advantage: no field syntax, no limits,
no smuggling checks, no keep-alive or framing decisions, no deadlines, no streaming (the
body is read whole before the handler starts, and the echo is one write, not chunked).
So it bounds what a server whose per-request work is Python can reach with that API on
the same loop and transport (a server doing that work in C, the handler aside, is not
bounded by it). The ``api floor statewire`` row serves it on statewire's own transports and
reactor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

GREETING = b"Hello from statewire.\n"
TEXT = [(b"Content-Type", b"text/plain; charset=utf-8")]
OCTETS = [(b"Content-Type", b"application/octet-stream")]
STATUS_LINES = {200: b"HTTP/1.1 200 OK\r\n", 404: b"HTTP/1.1 404 Not Found\r\n"}


class _Ready(Awaitable[bytes]):
    """An awaitable that has its value already (the whole body): no suspension."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, bytes]:
        return self.value
        yield  # (a generator: never reached)


class _Done(Awaitable[None]):
    """An awaitable already complete (one, shared): what ``send`` returns."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


DONE = _Done()


class Body:
    """The body reader: the whole body, read at once."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> _Ready:
        return _Ready(self.data)


#: the body reader of every request without a body
EMPTY = Body(b"")


class Request:
    __slots__ = ("body", "headers", "method", "target", "version")

    def __init__(
        self, method: bytes, target: bytes, version: bytes, headers: list[bytes], body: Body
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body


class Response:
    """The response writer: one ``send`` of the whole response (no streaming)."""

    __slots__ = ("finished", "out")

    def __init__(self, out: list[bytes]) -> None:
        self.out = out
        self.finished = False

    def send(self, status: int, fields: list[tuple[bytes, bytes]], body: bytes) -> _Done:
        """The whole response, written now; an awaitable already done (a send that found
        the transport congested would return one to wait on)."""
        parts = [STATUS_LINES[status]]
        for name, value in fields:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"Content-Length: %d\r\n\r\n" % len(body), body)
        self.out.append(b"".join(parts))
        self.finished = True
        return DONE


async def handle(request: Request, response: Response) -> None:
    """``examples/httpd.py``'s two routes, as they are measured."""
    path = request.target.split(b"?", 1)[0]
    if path == b"/" and request.method == b"GET":
        await response.send(200, TEXT, GREETING)
    elif path == b"/echo" and request.method == b"POST":
        await response.send(200, OCTETS, await request.body.read())
    else:
        await response.send(404, TEXT, b"not found\n")


class ApiFloorServer(asyncio.Protocol):
    """``AsyncioServer``'s head cutting, plus the handler API and nothing else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.begin(transport.write)

    def begin(self, write: Callable[[bytes], object]) -> None:
        """The connection is made: what writes to it."""
        self.write = write
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        pos = 0
        while True:
            end = buffer.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            lines = buffer[pos:end].split(b"\r\n")
            method, target, version = lines[0].split(b" ", 2)
            body = EMPTY
            if method == b"POST":
                size = 0
                for line in lines:
                    if line[:15].lower() == b"content-length:":
                        size = int(line[15:])
                if len(buffer) < end + 4 + size:
                    break
                body = Body(buffer[end + 4 : end + 4 + size])
                pos = end + 4 + size
            else:
                pos = end + 4
            request = Request(method, target, version, lines, body)
            # driven as a task would drive it, with no StopIteration raised into Python
            for _ in handle(request, Response(out)).__await__():
                raise RuntimeError("the handler waited")  # (never: nothing in it waits)
        self.buffer = buffer[pos:]
        if out:
            self.write(b"".join(out))


def statewire_factory() -> Any:
    """The same server on statewire's transports and reactor (``statewire serve
    bench/http_floor.py:statewire_factory``): the ``api floor statewire`` row."""
    from statewire.protocol import Factory, Protocol

    class Floor(Protocol):
        def connectionMade(self) -> None:
            self.server = ApiFloorServer()
            self.server.begin(self.transport.write)

        def dataReceived(self, data: bytes) -> None:
            self.server.data_received(data)

    return Factory.forProtocol(Floor)
