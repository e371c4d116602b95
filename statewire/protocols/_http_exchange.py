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
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from grammars.http1 import (
    LAST_CHUNK,
    REASONS,
    Fields,
    field_line,
    list_tokens,
    status_line,
)
from statewire.protocols._http_access import CLOSED_BEFORE_RESPONSE, ExchangeLog
from statewire.protocols._http_file import (
    SMALL_FILE,
    Sink,
    body_size,
    opened,
    read_whole,
    stream,
)
from statewire.protocols._tls_info import TLSInfo

#: a field as a handler may give it: name and value as ``str`` (latin-1) or ``bytes``
FieldLike = tuple[bytes | str, bytes | str]
#: unread body bytes past which the connection stops reading the body (a slow handler);
#: the piece that passed it is already queued: at most this and a piece wait unread
BODY_HIGH_WATER = 64 << 10


def field_bytes(value: bytes | str) -> bytes:
    """A field's name or value as bytes: ``str`` (Latin-1) or a bytes-like object; anything
    else is a ``TypeError`` (``bytes(n)`` of an int would be n NUL bytes)."""
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a field name or value is bytes or str, not {type(value).__name__}")


def _body(data: bytes) -> bytes:
    """Body bytes a handler gave, as bytes: a bytes-like object; anything else is a
    ``TypeError`` (an int would otherwise become that many NUL bytes)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a response body is bytes-like, not {type(data).__name__}")


class Headers:
    """A field section: case-insensitive lookup over the fields in arrival order."""

    def __init__(self, fields: Fields) -> None:
        self.fields = fields
        #: lower-cased name -> values, made at the first lookup (most handlers make none)
        self._index: dict[bytes, list[bytes]] | None = None

    def _lookup(self) -> dict[bytes, list[bytes]]:
        index = self._index
        if index is None:
            index = self._index = {}
            for name, value in self.fields:
                index.setdefault(name.lower(), []).append(value)
        return index

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The field's value, several fields of the name joined with ``", "``."""
        values = self._lookup().get(name.lower())
        return default if values is None else b", ".join(values)

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of the field, in order (``[]`` when absent)."""
        return list(self._lookup().get(name.lower(), ()))

    def tokens(self, name: bytes) -> list[bytes]:
        """The comma-separated list elements of the field, lower-cased, empty ones kept."""
        return [
            token for value in self._lookup().get(name.lower(), ()) for token in list_tokens(value)
        ]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, bytes) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"Headers({self.fields!r})"


#: the (empty) trailers of a body that has none
_NO_FIELDS = Headers(())


class Body:
    """A request body, streamed: ``async for chunk in body`` or ``await body.read()``.

    Reading it the first time sends ``100 Continue`` when the client asked for it. The
    connection pauses reading while more than :data:`BODY_HIGH_WATER` bytes wait unread.
    """

    # (what every body starts with is the class's: a request makes one body)
    _buffered = 0
    _complete = False
    _abandoned = False
    _error: BaseException | None = None
    #: the readers waiting for bytes (two may: an ASGI application's concurrent
    #: ``receive()`` calls, Starlette's stream read while a disconnect is polled)
    _waiting: list[asyncio.Future[None]] | None = None
    _drained: asyncio.Future[None] | None = None
    #: the trailer fields of a chunked body, once it is complete
    trailers = _NO_FIELDS

    def __init__(self, on_first_read: Callable[[], None] | None = None) -> None:
        self._chunks: deque[bytes] = deque()
        self._on_first_read = on_first_read

    @property
    def complete(self) -> bool:
        """Whether the last byte of the body has arrived."""
        return self._complete

    @property
    def behind(self) -> bool:
        """Whether the handler leaves more unread than the connection buffers for it: the
        connection reads no more of the body until it catches up."""
        return self._drained is not None

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
        if trailers:
            self.trailers = Headers(trailers)
        self._complete = True
        if self._waiting is not None:
            self._wake()

    def fail(self, error: BaseException) -> None:
        """The body will never be complete (the connection was lost)."""
        self._error = error
        self._wake()
        self.abandon()

    def abandon(self) -> None:
        """Nobody will read what is left: drop it and stop holding the connection."""
        self._abandoned = True
        if self._buffered:
            self._chunks.clear()
            self._buffered = 0
        if self._drained is not None:
            self._release()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            for arrived in waiting:  # (each reader's own: one cancelled leaves the others)
                if not arrived.done():
                    arrived.set_result(None)

    def _release(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def call_on_first_read(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the handler first reads (the connection's ``100
        Continue``)."""
        self._on_first_read = callback

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
            arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiting is None:
                self._waiting = [arrived]
            else:
                self._waiting.append(arrived)
            try:
                await arrived
            except asyncio.CancelledError:
                # (a reader given up, as Starlette's is_disconnected() gives each up: its
                # future is not kept until bytes come)
                waiting = self._waiting
                if waiting is not None and arrived in waiting:
                    waiting.remove(arrived)
                raise
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
    #: its connection's TLS: version, cipher, the client's certificate (``None`` without
    #: TLS, or behind a transport that does not say, as Twisted's)
    tls: TLSInfo | None = None
    #: whether the client is gone: the connection was lost (by default a client's end of
    #: stream closes it; see ``HTTPServer.readConnectionLost``)
    disconnected: bool = field(default=False, init=False)
    _on_disconnect: list[Callable[[], object]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def path(self) -> bytes:
        """The target's path as sent (percent-escapes kept), its query cut off: ``/a/b``
        of ``/a/b?x=1``, and of ``http://host/a/b?x=1`` (the absolute form a proxy's
        client sends); ``*`` of ``OPTIONS *``, and a ``CONNECT``'s target as it is."""
        target = self.target
        absolute = _absolute_form(target)
        if absolute is not None:
            target = absolute[2]
            if target[:1] != b"/":
                target = b"/" + target
        return target.partition(b"?")[0]

    @property
    def host(self) -> bytes | None:
        """The host the request names: an absolute-form target's authority, whatever
        ``Host`` says (RFC 9112 §3.2.2), else the ``Host`` field (``None`` without one).
        Route virtual hosts by it, as :attr:`path` is the same target's path."""
        absolute = _absolute_form(self.target)
        if absolute is not None:
            return absolute[1]
        return self.headers.get(b"host")

    @property
    def query(self) -> bytes:
        """The target's query as sent, after its first ``?`` (``b""`` when there is
        none)."""
        return self.target.partition(b"?")[2]

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


def cut_absolute_form(target: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(scheme, authority, rest)`` of a target ``scheme://authority`` followed by
    nothing, a path or a query, none of them checked (``_http_head.split_absolute_form``
    checks them); ``None`` without ``://``."""
    scheme, slashes, after = target.partition(b"://")
    if not slashes:
        return None
    end = len(after)
    for mark in (b"/", b"?"):
        found = after.find(mark)
        if 0 <= found < end:
            end = found
    return scheme, after[:end], after[end:]


def _absolute_form(target: bytes) -> tuple[bytes, bytes, bytes] | None:
    """An absolute-form target's parts (:func:`cut_absolute_form`), or ``None`` for any
    other form (the server refused the malformed ones before)."""
    return None if target[:1] == b"/" else cut_absolute_form(target)


class Connection(Sink, Protocol):
    """What a response needs from its connection: what a file's sending needs
    (:class:`~statewire.protocols._http_file.Sink`: ``write``, ``writable``,
    ``congested``, ``closing``, ``send_file``), and the head's fields and the switch."""

    def server_fields(self) -> bytes: ...
    def upgrade(self, protocol: Any, detach: bool = False) -> None: ...


# what a field a handler gives means to the writer (see _field)
_PLAIN, _LENGTH, _CODING, _CONNECTION = 0, 1, 2, 3
_KINDS = {b"content-length": _LENGTH, b"transfer-encoding": _CODING, b"connection": _CONNECTION}
#: fields handlers gave, checked and built: (name, value) as given -> (line, kind, value)
_CHECKED: dict[tuple[Any, Any], tuple[bytes, int, bytes]] = {}
#: fields kept checked (a handler giving ever new values starts the cache afresh)
_CHECKED_MAX = 4096


def _field(name: bytes | str, value: bytes | str) -> tuple[bytes, int, bytes]:
    """A field a handler gave: its line (CRLF included), its kind, its value as bytes.
    A ``Transfer-Encoding`` is dropped (the writer frames the body itself) unchecked; a
    name that is not a token or a value with a CR, LF or other control byte is refused
    (:class:`~grammars.InvalidValueError`: the handler gets ``500``)."""
    key: tuple[Any, Any] | None = (name, value)
    try:
        known = _CHECKED.get((name, value))
    except (TypeError, ValueError):  # unhashable (bytearray, writable memoryview): no cache
        key, known = None, None
    if known is not None:
        return known
    name_b, value_b = field_bytes(name), field_bytes(value)
    kind = _KINDS.get(name_b.lower(), _PLAIN)
    if kind is _CODING:
        return b"", kind, value_b
    if kind is _LENGTH and not (value_b.isdigit() and value_b.isascii()):
        # the client and any proxy between must read the one length we frame with: no
        # sign, no list, no second value (RFC 9110 §8.6)
        raise ValueError(f"Content-Length {value_b!r} is not one number of bytes")
    known = (field_line(name_b, value_b), kind, value_b)
    if key is not None:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = known
    return known


class Response:
    """Writes one response: :meth:`start` then :meth:`write` and :meth:`end`, or
    :meth:`send` at once. Writes wait while the client is not reading.

    A response given whole (:meth:`send`, or :meth:`end` with nothing written before)
    leaves in one write: its head and its body joined."""

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

    # (what every response starts with is the class's: a request makes one response)
    status = 0
    #: the handler's fields, as lines; the index of its ``Content-Length`` among them
    #: and its value; whether it gave a ``Connection``
    _lines: Sequence[bytes] = ()
    _length_at = -1
    _length: bytes | None = None
    _connection_field = False
    _says_close = False
    _says_keep_alive = False
    _framing = ""  # "", "length", "chunked", "close", "none" once the head is out
    #: body bytes still owed (a length framing) and announced; those sent (the others)
    _left = 0
    _total = 0
    _sent = 0
    #: whether the handler called :meth:`start` (or :meth:`send`)
    started = False
    #: whether the head was written
    head_sent = False
    #: whether the response is complete
    finished = False
    #: why nothing more may be written: the client went away (see :meth:`gone`)
    _gone: str | None = None
    #: set by the connection when the client waits for ``100 Continue``: whether the
    #: body it announced will never come (no ``100`` sent, the body not all there), so
    #: that the connection closes after this response, which then says so
    body_withheld: Callable[[], bool] | None = None
    #: whether the head is to leave once the handler waits, if no body came by then (see
    #: :meth:`send_head`; the ASGI adapter's), and whether the handler's first step is
    #: running inside the read of its head (the connection looks then, at its end)
    head_due = False
    first_step = False
    #: set by the connection when the client waits for ``100 Continue``: called before a
    #: ``101`` (RFC 9110 7.8: a client that asked for both gets its ``100`` first, and its
    #: body is then read before the switch)
    before_switch: Callable[[], object] | None = None
    #: set by the connection while it waits for the handler: called once the response is
    #: complete (the next request need not wait for a handler still at work after it)
    on_finish: Callable[[], object] | None = None
    #: set by the connection when the server keeps an access log: told once, when the
    #: response is complete or cut short (see :mod:`statewire.protocols._http_access`)
    access: ExchangeLog | None = None

    @property
    def body_sent(self) -> int:
        """The body bytes written so far (its framing not counted)."""
        if self._framing == "length":
            return self._total - self._left
        return self._sent

    def logged(self, complete: bool) -> None:
        """Tell the access log, once, that the response is done: ``complete``, or cut
        short by the connection's end (then with its status, or ``499`` when its head
        never left). A response the connection's close cut before its end (see
        :meth:`cut`) is logged as it was then, however it ends."""
        access, self.access = self.access, None
        if access is None:
            return
        at_cut = self._at_cut
        if at_cut is not None:
            head_sent, sent = at_cut
            complete = False
        else:
            head_sent, sent = self.head_sent, self.body_sent
        status = self.status if head_sent else CLOSED_BEFORE_RESPONSE
        access.done(status, sent if head_sent else 0, complete)

    def answered_instead(self, status: int, sent: int) -> None:
        """The server answered this response's request itself (a refusal: ``status``,
        ``sent`` bytes of body): the access log, once, says so in its place."""
        access, self.access = self.access, None
        if access is not None:
            access.done(status, sent, True)

    #: whether the head had left, and the body bytes written, when the connection began
    #: to close with this response under way (its later writes dropped)
    _at_cut: tuple[bool, int] | None = None

    def cut(self) -> None:
        """The connection closes before this response's end: what it wrote so far is all
        that leaves (for the access log)."""
        if self.access is not None and self._at_cut is None:
            self._at_cut = (self.head_sent, self.body_sent)

    @property
    def cut_by_close(self) -> bool:
        """Whether the head left and the end did not, the body framed by the connection's
        close (HTTP/1.0, or no length): a close now would pass the part sent off as whole."""
        return self.head_sent and not self.finished and self._framing == "close"

    def gone(self, reason: str) -> None:
        """The connection's side: the client is gone, so every later write raises
        ``ConnectionError(reason)`` (the handler learns it instead of writing into the void)."""
        self._gone = reason

    def start(self, status: int, headers: Iterable[FieldLike] = ()) -> None:
        """Set the status and fields; they leave with the first bytes of the body. A field
        that could not be sent as given raises: a name that is not a token or a value with
        a CR, LF or other control byte (:class:`~grammars.InvalidValueError`), a
        ``Content-Length`` that is not one number (``ValueError``)."""
        if self.started:
            raise RuntimeError("the response was already started")
        if type(status) is not int:
            status = _status_number(status)
        if not 200 <= status <= 599:  # (RFC 9110 §15: a status is 100 to 599)
            raise ValueError(f"a final status is 200 to 599 (1xx are the server's), not {status}")
        lines: list[bytes] = []
        length = None
        length_at = -1
        connection = says_close = says_keep_alive = False
        keep_alive = self.keep_alive
        for name, value in headers:
            try:  # (a field given before, checked then: the common case, one lookup)
                known = _CHECKED.get((name, value))
            except (TypeError, ValueError):  # unhashable (a bytearray, a writable memoryview)
                known = None
            line, kind, value_b = known if known is not None else _field(name, value)
            if kind:
                if kind is _CODING:
                    continue
                if kind is _LENGTH:
                    if length is not None:
                        if value_b != length:
                            raise ValueError(
                                f"Content-Length {value_b!r} is not one number of bytes"
                            )
                        continue  # the same value twice is sent once
                    length = value_b
                    length_at = len(lines)
                else:
                    connection = True
                    tokens = list_tokens(value_b)
                    if b"close" in tokens:  # (the token, not a word holding it: x-closed)
                        says_close = True
                        keep_alive = False
                    if b"keep-alive" in tokens:
                        says_keep_alive = True
            lines.append(line)
        self.started = True
        self.status = status
        self._lines = lines
        if not keep_alive:
            self.keep_alive = False
        if length is not None:
            self._length = length
            self._length_at = length_at
        if connection:
            self._connection_field = True
            self._says_close = says_close
            self._says_keep_alive = says_keep_alive

    def send_head(self) -> None:
        """Send the head now, if it has not left (the body's framing then chosen as for
        :meth:`write`: the handler's ``Content-Length``, else chunked, or the close for
        HTTP/1.0): for a response whose first bytes of body may be long in coming (a
        stream of events), so that its client learns the status at once. Not while the
        client waits for ``100 Continue`` and its body is not there: the head would have
        to say ``Connection: close`` and the ``100`` would never come; it then leaves
        with the body, as it would have."""
        if not self.started or self.head_sent or self._gone is not None:
            return
        withheld = self.body_withheld
        if withheld is not None and withheld():
            return
        self._connection.write(self._head(None))

    async def write(self, data: bytes) -> None:
        """Send ``data`` as more of the body."""
        if self._gone is not None:
            raise ConnectionError(self._gone)
        if self.finished:
            # bytes after the end of a response would be read as the start of the next
            raise RuntimeError("the response is already finished")
        data = _body(data)
        connection = self._connection
        if not self.head_sent:
            head = self._head(None)
            try:
                body = self._framed(data) if data else b""
            except BaseException:
                connection.write(head)  # (the head leaves even when the body is wrong)
                raise
            connection.write(head + body)
        elif data:
            connection.write(self._framed(data))
        if connection.congested:
            await connection.writable()

    async def end(self, data: bytes = b"") -> None:
        """Send the last bytes of the body (all of it when nothing was written)."""
        self._end(data)
        if self._connection.congested:
            await self._connection.writable()

    async def send(
        self, status: int, headers: Iterable[FieldLike] = (), body: bytes = b""
    ) -> None:
        """The whole response at once (one write)."""
        self.start(status, headers)
        self._end(body)
        if self._connection.congested:
            await self._connection.writable()

    async def send_file(
        self, file: str | os.PathLike[str] | BinaryIO, offset: int = 0, count: int | None = None
    ) -> None:
        """The body from a file (a path, or an open binary file, left open), ``count``
        bytes from ``offset`` (default: to its end): the status and fields set by
        :meth:`start` before (else ``200``), no body byte written before (the head may
        have left: then the body is framed as it said, a chunk for a chunked one). A
        body not framed yet is framed by its length (the handler's ``Content-Length``
        must be that length, or the writer adds one). On statewire's socket transport
        over plain TCP or UNIX the kernel sends it (``sendfile``); elsewhere it is read
        and written in pieces (:mod:`statewire.protocols._http_file`). A range the file
        does not hold, a file that is not a regular one, or a ``Content-Length`` that is
        not the range's, is a ``ValueError`` (before the head, when it had not left); a
        file that shrinks while it is sent, or cannot be read, a ``RuntimeError`` or
        ``OSError`` (what was sent is cut short: the connection is aborted). A ``HEAD``
        request gets the head alone, with the length. The access log counts the file's
        bytes as written when they are handed to the connection, as any write's."""
        if self._gone is not None:
            raise ConnectionError(self._gone)
        if self.finished:
            raise RuntimeError("the response is already finished")
        if self.head_sent and self.body_sent:
            raise RuntimeError("send_file() sends the whole body: some was written before")
        connection = self._connection
        with opened(file) as fd:
            count = body_size(fd, offset, count)
            if not self.head_sent:
                if not self.started:
                    self.start(200)
                if self._length is not None and int(self._length) != count:
                    raise ValueError(
                        f"Content-Length {self._length.decode()} is not the {count} bytes to send"
                    )
                if count <= SMALL_FILE and not self._head_request:
                    self._end(read_whole(fd, offset, count))  # (one write, head and body)
                    if connection.congested:
                        await connection.writable()
                    return
                connection.write(self._head(count, known=True))
            elif self._framing == "length" and self._left != count:
                raise ValueError(f"Content-Length {self._total} is not the {count} bytes to send")
            if not await self._file_body(connection, fd, offset, count):
                return  # (the client is gone, or the server closes: cut short)
        self._done()
        if connection.congested:
            await connection.writable()

    async def _file_body(self, connection: Connection, fd: int, offset: int, count: int) -> bool:
        """The file's bytes as the head framed the body (none for ``HEAD``, 204, 304);
        false when the connection closed before all were sent."""
        framing = self._framing
        chunked = framing == "chunked"
        if framing not in ("length", "close", "chunked") or not count:
            if chunked:
                connection.write(LAST_CHUNK)  # (an empty file: the body ends here)
            return True
        if chunked:
            connection.write(b"%x\r\n" % count)
        # counted as written when handed over, as a write's (the access log's figure)
        if framing == "length":
            self._left -= count
        else:
            self._sent += count
        try:
            sent = await stream(connection, fd, offset, count)
        except BaseException:
            # cut where nobody can tell (cancelled, the file unreadable): the response can
            # no longer end well, whatever the handler does next (its end raises, so the
            # connection is aborted)
            if self._gone is None:
                self._gone = "the response's file was cut short"
            raise
        if sent < count:
            if framing == "length":
                self._left += count - sent
            else:
                self._sent -= count - sent
            if connection.closing:
                return False
            self._gone = "the response's file was cut short"  # (as above: its end raises)
            raise RuntimeError(f"the file ended {count - sent} bytes short of its length")
        if chunked:
            connection.write(b"\r\n" + LAST_CHUNK)
        return True

    def _end(self, data: bytes) -> None:
        if self._gone is not None:
            raise ConnectionError(self._gone)
        if self.finished:
            raise RuntimeError("the response is already finished")
        if not self.started:
            self.start(200)
        if type(data) is not bytes:
            data = _body(data)
        if not self.head_sent:
            head = self._head(len(data))
            if self._framing == "length" and len(data) == self._left:
                # the whole body, framed by the Content-Length the head gave it (its size,
                # or the handler's own, when that is the body's size)
                self._left = 0
                self._connection.write(head + data if data else head)
                self.finished = True  # (_done, inlined: the common response's path)
                if self.access is not None:
                    self.logged(True)
                if self.on_finish is not None:
                    self.on_finish()
                return
            wire = [head]
        else:
            wire = []
        try:
            if data:
                wire.append(self._framed(data))
            if self._framing == "chunked":
                wire.append(LAST_CHUNK)
            elif self._framing == "length" and self._left:
                raise RuntimeError(
                    f"response ended {self._left} bytes short of its Content-Length"
                )
        finally:
            if wire:  # (what was framed leaves even when the end was wrong)
                self._connection.write(wire[0] if len(wire) == 1 else b"".join(wire))
        self._done()

    def _done(self) -> None:
        """The response is complete: logged, and the connection told."""
        self.finished = True
        if self.access is not None:
            self.logged(True)
        if self.on_finish is not None:
            self.on_finish()

    async def upgrade(
        self, protocol: Any, headers: Iterable[FieldLike] = (), *, detach: bool = False
    ) -> None:
        """Answer ``101 Switching Protocols`` with ``headers`` (``Upgrade: ...`` among
        them); every byte the connection receives then goes to ``protocol`` (a
        Twisted-style protocol, connected to the same transport).

        By default the switch comes once the request is complete and the handler has
        returned. With ``detach``, it comes once the request is complete, the handler
        going on beside ``protocol`` (as an ASGI application's ``websocket`` call runs
        the whole session): it is no longer waited for, and a lost connection tells it as
        it tells a handler at work after its response (cancelled, or told, per
        ``cancel_on_disconnect``), ``protocol`` told first."""
        if self.started:
            raise RuntimeError("the response was already started")
        if self._version < (1, 1):
            # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client (which cannot switch protocols)
            raise RuntimeError("101 is never sent to an HTTP/1.0 client: answer it otherwise")
        fields = [(field_bytes(name), field_bytes(value)) for name, value in headers]
        if not any(name.lower() == b"connection" for name, _ in fields):
            fields.append((b"Connection", b"Upgrade"))
        lines = [field_line(name, value) for name, value in fields]
        connection = self._connection
        if self.before_switch is not None:
            self.before_switch()  # (a 100 first, if the client still waits for it)
        connection.write(b"".join([status_line(101), connection.server_fields(), *lines, b"\r\n"]))
        self.status = 101
        self.started = self.head_sent = self.finished = True
        self.keep_alive = True
        if self.access is not None:
            self.logged(True)
        connection.upgrade(protocol, detach)
        if detach and self.on_finish is not None:
            self.on_finish()  # (the framing waits for the handler: it need not now)
        await connection.writable()

    def _head(self, whole: int | None, known: bool = False) -> bytes:
        """The head, its framing chosen (``whole``: the body's size, when it is given at
        once; ``known``: that size is the ``GET``'s too, said to a ``HEAD`` even when 0, as
        a file's is): noted, and the bytes to write."""
        if not self.started:
            self.start(200)
        status = self.status
        lines = self._lines
        extra = b""
        keep_alive = self.keep_alive
        withheld = self.body_withheld
        if keep_alive and withheld is not None and withheld():
            # RFC 9110 §10.1.1: a final answer before a body the client holds back says
            # whether the connection closes; its framing is lost, so it does
            keep_alive = False
        if self._tunnel and 200 <= status < 300:
            # RFC 9110 §9.3.6: a 2xx to CONNECT has no Content-Length or Transfer-Encoding;
            # what follows it is the tunnel's, never another request (the connection
            # closes after the response unless the handler upgraded it to a protocol)
            framing = "close"
            keep_alive = False
            if self._length is not None:
                lines = [*lines[: self._length_at], *lines[self._length_at + 1 :]]
        elif status < 200 or status == 204 or status == 304:
            framing = "none"
            if self._length is not None:
                lines = [*lines[: self._length_at], *lines[self._length_at + 1 :]]
        elif self._length is not None:
            framing = "length"
            self._left = self._total = int(self._length)
        elif whole is not None and (whole or known or not self._head_request):
            framing = "length"
            self._left = self._total = whole
            extra = b"Content-Length: %d\r\n" % whole
        elif whole is not None:
            # RFC 9110 §8.6: a HEAD answered whole with no body and no length of the
            # handler's does not say the GET's length, which is not known: none
            framing = "head"
        elif self._version >= (1, 1):
            framing = "chunked"
            extra = b"Transfer-Encoding: chunked\r\n"
        else:
            framing = "close"
            keep_alive = False
        if self._head_request and framing != "none":
            framing = "head"
        if keep_alive:
            if self._version < (1, 1) and not self._says_keep_alive:
                extra += b"Connection: keep-alive\r\n"  # (unless the handler said it)
        else:
            self.keep_alive = False
            if framing == "close" and self._tunnel:
                pass  # a tunnel has no Connection field
            elif not self._connection_field:
                extra += b"Connection: close\r\n"
            elif not self._says_close:
                # the handler's Connection field would have the client send more on a
                # connection the server closes: the server's close replaces it
                lines = [line for line in lines if line[:11].lower() != b"connection:"]
                extra += b"Connection: close\r\n"
        self._framing = framing
        self.head_sent = True
        return b"".join(
            [status_line(status), self._connection.server_fields(), *lines, extra, b"\r\n"]
        )

    def _framed(self, data: bytes) -> bytes:
        """``data`` as the body's framing sends it (``b""``: not at all)."""
        framing = self._framing
        if framing == "length":
            if len(data) > self._left:
                raise RuntimeError("response body longer than its Content-Length")
            self._left -= len(data)
            return data
        if framing == "chunked":
            self._sent += len(data)
            return b"%x\r\n%s\r\n" % (len(data), data)
        if framing == "close":
            self._sent += len(data)
            return data
        return b""  # "none", "head": the body is not sent


def _status_number(status: object) -> int:
    """A status given as an ``int`` subclass (``HTTPStatus.OK``) as its ``int``; a bool,
    float, string or anything else raises ``TypeError``."""
    if isinstance(status, int) and not isinstance(status, bool):
        return int(status)
    raise TypeError(f"a status is an int, not {type(status).__name__} {status!r}")


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
