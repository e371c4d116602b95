"""What an HTTP handler holds: the request (its headers, its streamed body) and the writer
of its response. The connection's machine (:mod:`statewire.protocols.http`) feeds the body
and says how the response may be framed; these objects know nothing of states.

The writer picks the response framing: ``Content-Length`` when the whole body is given at
once (``end(data)`` with nothing written before) or when the handler sets the field itself;
otherwise ``Transfer-Encoding: chunked`` for HTTP/1.1, and for HTTP/1.0 a body delimited by
closing the connection. ``HEAD`` requests, ``1xx``, ``204`` and ``304`` responses carry no
body whatever the handler writes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from grammars.http1 import (
    CRLF,
    LAST_CHUNK,
    REASONS,
    Fields,
    ResponseHead,
    build_response_head,
    chunk_header,
)

#: a field as a handler may give it: name and value as ``str`` (latin-1) or ``bytes``
FieldLike = tuple[bytes | str, bytes | str]
#: unread body bytes past which the connection stops reading the body (a slow handler)
BODY_HIGH_WATER = 64 << 10


def _bytes(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


class Headers:
    """A field section: case-insensitive lookup over the fields in arrival order."""

    def __init__(self, fields: Fields) -> None:
        self.fields = fields
        self._index: dict[bytes, list[bytes]] = {}
        for name, value in fields:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The field's value, several fields of the name joined with ``", "``."""
        values = self._index.get(name.lower())
        return default if values is None else b", ".join(values)

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of the field, in order (``[]`` when absent)."""
        return list(self._index.get(name.lower(), ()))

    def tokens(self, name: bytes) -> list[bytes]:
        """The comma-separated list elements of the field, lower-cased, empty ones kept."""
        return [
            part.strip(b" \t").lower()
            for value in self._index.get(name.lower(), ())
            for part in value.split(b",")
        ]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, bytes) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"Headers({self.fields!r})"


class Body:
    """A request body, streamed: ``async for chunk in body`` or ``await body.read()``.

    Reading it the first time sends ``100 Continue`` when the client asked for it. The
    connection pauses reading while more than :data:`BODY_HIGH_WATER` bytes wait unread.
    """

    def __init__(self, on_first_read: Callable[[], None] | None = None) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._abandoned = False
        self._error: BaseException | None = None
        self._arrived: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._on_first_read = on_first_read
        #: the trailer fields of a chunked body, once it is complete
        self.trailers = Headers(())

    @property
    def complete(self) -> bool:
        """Whether the last byte of the body has arrived."""
        return self._complete

    @property
    def exhausted(self) -> bool:
        """Whether the body is complete and every byte of it was read."""
        return self._complete and not self._chunks

    # -- the connection's side --

    def feed(self, data: bytes) -> asyncio.Future[None] | None:
        """Body bytes arrived; a future to wait on when too many wait unread."""
        if self._abandoned or not data:
            return None
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()
        if self._buffered > BODY_HIGH_WATER:
            self._drained = asyncio.get_running_loop().create_future()
            return self._drained
        return None

    def finish(self, trailers: Fields = ()) -> None:
        """The body is complete."""
        self.trailers = Headers(trailers)
        self._complete = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The body will never be complete (the connection was lost)."""
        self._error = error
        self._wake()
        self.abandon()

    def abandon(self) -> None:
        """Nobody will read what is left: drop it and stop holding the connection."""
        self._abandoned = True
        self._chunks.clear()
        self._buffered = 0
        self._release()

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, None
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    def _release(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- the handler's side --

    async def chunk(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end."""
        if self._on_first_read is not None:
            first, self._on_first_read = self._on_first_read, None
            first()
        while not self._chunks:
            if self._error is not None:
                raise ConnectionError("the connection was lost before the body's end")
            if self._complete:
                return b""
            self._arrived = asyncio.get_running_loop().create_future()
            await self._arrived
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered <= BODY_HIGH_WATER // 2:
            self._release()
        return data

    async def read(self) -> bytes:
        """The whole body (its size is bounded by the server's ``max_body``)."""
        return b"".join([chunk async for chunk in self])

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            data = await self.chunk()
            if not data:
                return
            yield data


@dataclass
class Request:
    """One request as its handler sees it: the start line, the headers and the body."""

    method: bytes
    target: bytes
    version: tuple[int, int]
    headers: Headers
    body: Body
    #: the client's and the server's (host, port), when the transport says
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    #: whether the handler is cancelled when the connection is lost (the default); set it
    #: false to be told instead: reading the body raises ``ConnectionError``, so does
    #: writing the response, and :meth:`on_disconnect` callbacks run
    cancel_on_disconnect: bool = True
    #: whether the request came over TLS (ASGI's ``https`` scheme)
    secure: bool = False
    #: whether the client is gone: the connection was lost (by default a client's end of
    #: stream closes it; see ``HTTPServer.readConnectionLost``)
    disconnected: bool = field(default=False, init=False)
    _on_disconnect: list[Callable[[], object]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def on_disconnect(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the client is gone, see :attr:`disconnected` (now, if
        it already is)."""
        if self.disconnected:
            callback()
        elif self._on_disconnect is None:
            self._on_disconnect = [callback]
        else:
            self._on_disconnect.append(callback)

    def disconnect(self) -> None:
        """The connection's side: the client is gone; run the callbacks, once."""
        if self.disconnected:
            return
        self.disconnected = True
        callbacks, self._on_disconnect = self._on_disconnect or [], None
        for callback in callbacks:
            callback()


class Connection(Protocol):
    """What a response needs from its connection."""

    def write(self, data: bytes) -> None: ...
    async def writable(self) -> None: ...
    def response_fields(self) -> list[tuple[bytes, bytes]]: ...
    def upgrade(self, protocol: Any) -> None: ...


class Response:
    """Writes one response: :meth:`start` then :meth:`write` and :meth:`end`, or
    :meth:`send` at once. Writes wait while the client is not reading."""

    def __init__(
        self,
        connection: Connection,
        version: tuple[int, int],
        head: bool,
        keep_alive: bool,
        tunnel: bool = False,
    ) -> None:
        self._connection = connection
        self._version = version
        self._head_request = head
        #: the request is a ``CONNECT``: a 2xx answer opens a tunnel, with no body framing
        self._tunnel = tunnel
        #: whether the connection may carry another request after this response
        self.keep_alive = keep_alive
        self.status = 0
        self._fields: list[tuple[bytes, bytes]] = []
        self._framing = ""  # "", "length", "chunked", "close", "none" once the head is out
        self._left = 0
        #: whether the handler called :meth:`start` (or :meth:`send`)
        self.started = False
        #: whether the head was written
        self.head_sent = False
        #: whether the response is complete
        self.finished = False
        #: why nothing more may be written: the client went away (see :meth:`gone`)
        self._gone: str | None = None

    def gone(self, reason: str) -> None:
        """The connection's side: the client is gone, so every later write raises
        ``ConnectionError(reason)`` (the handler learns it instead of writing into the void)."""
        self._gone = reason

    def start(self, status: int, headers: Iterable[FieldLike] = ()) -> None:
        """Set the status and fields; they leave with the first bytes of the body."""
        if self.started:
            raise RuntimeError("the response was already started")
        if not 200 <= status <= 999:
            raise ValueError("a final status is 200 to 999 (1xx are the server's)")
        fields = []
        length = None
        for name, value in headers:
            name_b, value_b = _bytes(name), _bytes(value)
            lower = name_b.lower()
            if lower == b"transfer-encoding":
                continue  # the writer frames the body itself
            if lower == b"content-length":
                # the client and any proxy between must read the one length we frame
                # with: no sign, no list, no second value (RFC 9110 §8.6)
                if not (value_b.isdigit() and value_b.isascii()) or length not in (None, value_b):
                    raise ValueError(f"Content-Length {value_b!r} is not one number of bytes")
                if length is not None:
                    continue
                length = value_b
            fields.append((name_b, value_b))
        self.started = True
        self.status = status
        for name_b, value_b in fields:
            if name_b.lower() == b"connection" and b"close" in value_b.lower():
                self.keep_alive = False
            self._fields.append((name_b, value_b))

    async def write(self, data: bytes) -> None:
        """Send ``data`` as more of the body."""
        if self._gone is not None:
            raise ConnectionError(self._gone)
        if self.finished:
            # bytes after the end of a response would be read as the start of the next
            raise RuntimeError("the response is already finished")
        if not self.head_sent:
            self._send_head(None)
        self._body(bytes(data))
        await self._connection.writable()

    async def end(self, data: bytes = b"") -> None:
        """Send the last bytes of the body (all of it when nothing was written)."""
        if self._gone is not None:
            raise ConnectionError(self._gone)
        if self.finished:
            raise RuntimeError("the response is already finished")
        if not self.started:
            self.start(200)
        if not self.head_sent:
            self._send_head(len(data))
        self._body(bytes(data))
        if self._framing == "chunked":
            self._connection.write(LAST_CHUNK)
        elif self._framing == "length" and self._left:
            raise RuntimeError(f"response ended {self._left} bytes short of its Content-Length")
        self.finished = True
        await self._connection.writable()

    async def send(
        self, status: int, headers: Iterable[FieldLike] = (), body: bytes = b""
    ) -> None:
        """The whole response at once."""
        self.start(status, headers)
        await self.end(body)

    async def upgrade(self, protocol: Any, headers: Iterable[FieldLike] = ()) -> None:
        """Answer ``101 Switching Protocols`` with ``headers`` (``Upgrade: ...`` among
        them); once the request is complete, every byte the connection receives goes to
        ``protocol`` (a Twisted-style protocol, connected to the same transport)."""
        if self.started:
            raise RuntimeError("the response was already started")
        fields = [(_bytes(name), _bytes(value)) for name, value in headers]
        if not any(name.lower() == b"connection" for name, _ in fields):
            fields.append((b"Connection", b"Upgrade"))
        head = ResponseHead(101, tuple(self._connection.response_fields() + fields))
        self._connection.write(build_response_head(head))
        self.status = 101
        self.started = self.head_sent = self.finished = True
        self.keep_alive = True
        self._connection.upgrade(protocol)
        await self._connection.writable()

    def _send_head(self, whole: int | None) -> None:
        if not self.started:
            self.start(200)
        status = self.status
        fields = self._fields
        declared = [v for n, v in fields if n.lower() == b"content-length"]
        if self._tunnel and 200 <= status < 300:
            # RFC 9110 §9.3.6: a 2xx to CONNECT has no Content-Length or Transfer-Encoding;
            # what follows it is the tunnel's, never another request (the connection
            # closes after the response unless the handler upgraded it to a protocol)
            self._framing = "close"
            self.keep_alive = False
            framing_fields = (b"content-length", b"transfer-encoding")
            fields = [(n, v) for n, v in fields if n.lower() not in framing_fields]
        elif status < 200 or status in (204, 304):
            self._framing = "none"
            fields = [(n, v) for n, v in fields if n.lower() != b"content-length"]
        elif declared:
            self._framing = "length"
            self._left = int(declared[0])
        elif whole is not None:
            self._framing = "length"
            self._left = whole
            fields = [*fields, (b"Content-Length", b"%d" % whole)]
        elif self._version >= (1, 1):
            self._framing = "chunked"
            fields = [*fields, (b"Transfer-Encoding", b"chunked")]
        else:
            self._framing = "close"
            self.keep_alive = False
        if self._head_request and self._framing != "none":
            self._framing = "head"
        if self.keep_alive:
            if self._version < (1, 1):
                fields = [*fields, (b"Connection", b"keep-alive")]
        elif self._framing == "close" and self._tunnel:
            pass  # a tunnel: no Connection field either
        elif not any(n.lower() == b"connection" for n, _ in fields):
            fields = [*fields, (b"Connection", b"close")]
        fields = self._connection.response_fields() + fields
        head = ResponseHead(status, tuple(fields))
        self._connection.write(build_response_head(head))
        self.head_sent = True

    def _body(self, data: bytes) -> None:
        if not data:
            return
        framing = self._framing
        if framing == "chunked":
            self._connection.write(chunk_header(len(data)) + data + CRLF)
        elif framing == "length":
            if len(data) > self._left:
                raise RuntimeError("response body longer than its Content-Length")
            self._left -= len(data)
            self._connection.write(data)
        elif framing == "close":
            self._connection.write(data)
        # "none", "head": the body is not sent


def reason(status: int) -> bytes:
    """The usual reason phrase of ``status``."""
    return REASONS.get(status, b"")


__all__ = [
    "BODY_HIGH_WATER",
    "Body",
    "Connection",
    "FieldLike",
    "Headers",
    "Request",
    "Response",
    "reason",
]
