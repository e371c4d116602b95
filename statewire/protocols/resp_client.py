"""A pipelined Redis (RESP) client whose connection is a declared machine.

Theory of operation
-------------------
Redis answers the requests of a connection in the order they came, one reply each, so a
client may send a request before the replies to the earlier ones are back (pipelining) and
match each reply to the oldest request still waiting. The client keeps one future per
request sent, in order; every reply resolves the oldest.

A reply is read as Redis writes it, a line at a time, with one block framing for blobs:
the states are a line state and a bulk state, as memcached's are a command line and a data
block. A header line's type byte routes it::

    lines   ``+ - : _ # , (`` and the nulls ``$-1``, ``*-1``: a value   (value)
            ``$ ! =`` with a size: a blob, whose body comes next -> bulk (blob)
            ``* % ~ > |`` with a count: an aggregate of that many values   (aggregate)
    bulk    the body and its CRLF, ``fixed(size + 2)``: a value     -> lines (block)
    any     connection lost -> closed: every request still waiting fails with
            :class:`statewire.error.ConnectionLost`; later ones fail at once
    closed  reads nothing

The values of an aggregate are gathered on a stack as they complete (the depth is bounded
by :data:`grammars.resp.MAX_DEPTH`); a value that completes the outermost one is a reply:
an error (``-ERR ...``, ``!``) fails the oldest request with :class:`ErrorReply` and the
connection goes on, a push (RESP3 ``>``: pub/sub, client tracking) goes to
:attr:`RespConnection.on_push`, anything else resolves the oldest request. A reply reads
as :func:`grammars.resp` parses it (the tests hold the two equal under any chunking); the
sizes and counts the grammar refuses are refused here from the header, before the body.

A reply with no request waiting for it, or bytes that are not RESP, are the server's
fault (a remote error): the connection is closed, and the requests still waiting fail.

:class:`RespClient` is the application's face: ``await client.call(b"SET", b"k", b"v")``.
It writes each request at once; everything written while the loop runs one callback (a
``gather`` of many calls) leaves in one socket write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from automat import TypeMachineBuilder
from construct import this

from grammars import Resp, fixed, line, resp
from grammars.errors import MalformedError, TooLongError
from grammars.resp import (
    MAX_ARRAY,
    MAX_BULK,
    MAX_DEPTH,
    MAX_INLINE,
    NULL_ARRAY,
    Attributed,
    BlobError,
    Error,
    Map,
    Push,
    Set,
    Simple,
    Verbatim,
    parse_integer,
)
from statewire.error import Failure
from statewire.machine import RemoteProtocolError, arguments, by_key
from statewire.protocols._pipelined import PipelinedClient, PipelinedConnection

#: what a request's arguments may be: bytes as they are, text in UTF-8, numbers in decimal
Argument = bytes | bytearray | memoryview | str | int | float
_CRLF = b"\r\n"


class ErrorReply(Exception):
    """The server answered a request with an error (``-WRONGTYPE ...``); ``text`` is the
    reply's text, ``kind`` its first word (``ERR``, ``WRONGTYPE``, ``NOAUTH``...). Only the
    request it answers fails: the connection goes on."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("utf-8", "replace"))
        self.text = text
        self.kind = text.split(b" ", 1)[0]


class Replies(Protocol):
    """The machine's inputs: what a header line or a blob's body is, and the loss."""

    def value(self, value: Any) -> None: ...
    def blob(self, tag: bytes, size: int) -> None: ...
    def block(self, data: bytes) -> None: ...
    def aggregate(self, tag: bytes, count: int) -> None: ...
    def lost(self, reason: Failure) -> None: ...


@dataclass
class Blob:
    """The blob whose body comes next: its type byte (``$``, ``!``, ``=``) and size."""

    tag: bytes
    size: int


class _Aggregate:
    """An aggregate being read: its type byte, the values so far, how many are missing."""

    __slots__ = ("items", "left", "tag")

    def __init__(self, tag: bytes, left: int) -> None:
        self.tag = tag
        self.left = left
        self.items: list[Any] = []

    def value(self) -> Any:
        """The finished aggregate, as :func:`grammars.resp` reads it."""
        items, tag = self.items, self.tag
        if tag == b"*":
            return items
        if tag == b"~":
            return Set(tuple(items))
        if tag == b">":
            return Push(tuple(items))
        pairs = tuple(zip(items[::2], items[1::2], strict=False))
        if tag == b"%":
            return Map(pairs)
        return Attributed(Map(pairs), items[-1])  # the attributes' pairs, then the value


class RespConnection(PipelinedConnection):
    """The machine's core: the requests waiting for their replies, oldest first."""

    #: called with each RESP3 push (``Push``); ``None``: pushes are dropped
    on_push: Callable[[Push], object] | None = None
    speaks = "RESP"

    def connectionMade(self) -> None:
        """Start with no request waiting."""
        super().connectionMade()
        self.encoder: Resp = resp(2)  # a request is an array of bulk strings
        #: the aggregates being read, outermost first
        self.stack: list[_Aggregate] = []

    def request(self, args: list[bytes]) -> asyncio.Future[Any]:
        """Send one request (its words as bytes); the future gets its reply."""
        return self.ask(self.encoder.encode(args))

    def complete(self, value: Any) -> None:
        """A value was read: into the aggregate being read, or, alone, a reply."""
        stack = self.stack
        while stack:
            top = stack[-1]
            top.items.append(value)
            top.left -= 1
            if top.left:
                return
            stack.pop()
            value = top.value()
        kind = type(value)
        if kind is Push:
            if self.on_push is not None:
                self.on_push(value)
            return
        if not self.waiting:
            self.remoteError(RemoteProtocolError("a reply came with no request waiting for it"))
            return
        future = self.waiting.popleft()
        if future.done():  # its caller stopped waiting
            return
        if kind is Error or kind is BlobError:
            future.set_exception(ErrorReply(value.text))
        else:
            future.set_result(value)

    def begin(self, tag: bytes, count: int) -> None:
        """An aggregate of ``count`` values (pairs for maps and attributes) begins."""
        if count < 0:
            self.complete(NULL_ARRAY)
            return
        if len(self.stack) >= MAX_DEPTH:
            self.remoteError(RemoteProtocolError(f"a reply nested deeper than {MAX_DEPTH}"))
            return
        left = count * 2 if tag in b"%|" else count
        if tag == b"|":
            left += 1  # the value the attributes are about
        if left:
            self.stack.append(_Aggregate(tag, left))
        else:
            self.complete(_Aggregate(tag, 0).value())


builder = TypeMachineBuilder(Replies, RespConnection)
lines = builder.state("lines")
bulk = builder.state("bulk", arguments(Blob))
closed = builder.state("closed")


@lines.upon(Replies.value).loop()
def complete(machine: Replies, core: RespConnection, value: Any) -> None:
    core.complete(value)


@lines.upon(Replies.aggregate).loop()
def open_aggregate(machine: Replies, core: RespConnection, tag: bytes, count: int) -> None:
    core.begin(tag, count)


@lines.upon(Replies.blob).to(bulk)
def expect_body(machine: Replies, core: RespConnection, tag: bytes, size: int) -> None:
    pass  # the body comes next


@bulk.upon(Replies.block).to(lines)
def complete_blob(machine: Replies, core: RespConnection, blob: Blob, data: bytes) -> None:
    if data[-2:] != _CRLF:
        core.remoteError(RemoteProtocolError("a blob's body does not end in CRLF"))
        return
    body = data[:-2]
    if blob.tag == b"$":
        core.complete(body)
    elif blob.tag == b"!":
        core.complete(BlobError(body))
    elif body[3:4] == b":":
        core.complete(Verbatim(body[:3], body[4:]))
    else:
        core.remoteError(RemoteProtocolError("a verbatim string does not start with 'fmt:'"))


@lines.upon(Replies.lost).to(closed)
def fail_waiting(machine: Replies, core: RespConnection, reason: Failure) -> None:
    core.end(reason)


@bulk.upon(Replies.lost).to(closed)
def fail_mid_blob(machine: Replies, core: RespConnection, blob: Blob, reason: Failure) -> None:
    core.end(reason)


# -- routing: a header line by its type byte -------------------------------------------------

#: reads the header lines that are whole values (``+OK``, ``:1``, ``,3.5``, ``$-1``...)
_VALUES = resp()


def _kind(header: bytes) -> str:
    """What a header line starts: a value, a blob (its body next) or an aggregate."""
    tag = header[:1]
    if tag == b"$" or tag == b"!" or tag == b"=":
        return "value" if header == b"$-1" else "blob"
    if tag and tag in b"*%~>|":
        return "aggregate"
    return "value"


def _value(header: bytes) -> tuple[Any]:
    tag = header[:1]
    if tag == b"+":  # the common replies, without the grammar's general path
        return (Simple(header[1:]),)
    if tag == b":":
        number = parse_integer(header[1:])
        if number is not None:
            return (number,)
    wire = header + _CRLF
    found = _VALUES.scan(wire, 0, len(wire))
    if found is None or found[1] != len(wire):
        raise MalformedError(f"not a RESP value: {header[:40]!r}")
    return (found[0],)


def _size(header: bytes, limit: int) -> int:
    size = parse_integer(header[1:])
    if size is None or size < -1:
        raise MalformedError(f"bad RESP length in {header[:40]!r}")
    if size > limit:
        raise TooLongError(f"RESP length {size} over the limit {limit}", limit=limit)
    return size


def _blob(header: bytes) -> tuple[bytes, int]:
    size = _size(header, MAX_BULK)
    if size < 0:
        raise MalformedError(f"only a bulk string may be null, not {header[:40]!r}")
    return header[:1], size


def _aggregate(header: bytes) -> tuple[bytes, int]:
    size = _size(header, MAX_ARRAY)
    if size < 0 and header[:1] != b"*":
        raise MalformedError(f"only an array may be null, not {header[:40]!r}")
    return header[:1], size


class RespClientProtocol(RespConnection):
    """The client connection: header lines in ``lines``, a blob's body in ``bulk``."""

    machine = builder.build()
    framings = {lines: line(_CRLF, max_length=MAX_INLINE), bulk: fixed(this.size + 2)}
    routes = {
        lines: by_key(
            _kind,
            {
                "value": (Replies.value, _value),
                "blob": (Replies.blob, _blob),
                "aggregate": (Replies.aggregate, _aggregate),
            },
        ),
        bulk: Replies.block,
    }
    lost = Replies.lost


def _word(arg: Argument) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(arg)
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return repr(arg).encode()
    raise TypeError(f"a Redis argument is bytes, str, int or float, not {type(arg).__name__}")


class RespClient(PipelinedClient):
    """A Redis client on one pipelined connection (see the module).

    Make one with :meth:`connect` (or :meth:`from_endpoint`); every method returns an
    awaitable that resolves to the reply, or raises :class:`ErrorReply` (that request
    only) or :class:`statewire.error.ConnectionLost` (the connection ended first).
    """

    protocol_class = RespClientProtocol
    protocol: RespClientProtocol

    def call(self, *args: Argument) -> asyncio.Future[Any]:
        """Send the command ``args`` (``b"SET", b"k", b"v"``); the future resolves to the
        reply as :func:`grammars.resp` reads it: ``bytes``, ``int``, ``None``, ``list``,
        :class:`~grammars.resp.Simple` (``+OK``), RESP3's ``Map``, ``Set``, ``float``..."""
        if not args:
            raise ValueError("a Redis command needs at least its name")
        return self.protocol.request([a if type(a) is bytes else _word(a) for a in args])

    async def get(self, key: Argument) -> bytes | None:
        """``GET key``: the value, or ``None`` when there is none."""
        value: bytes | None = await self.call(b"GET", key)
        return value

    async def set(self, key: Argument, value: Argument, *options: Argument) -> bool:
        """``SET key value [options...]``: whether it was set (``NX``/``XX`` may say no)."""
        return isinstance(await self.call(b"SET", key, value, *options), Simple)

    async def delete(self, *keys: Argument) -> int:
        """``DEL key...``: how many of the keys existed."""
        count: int = await self.call(b"DEL", *keys)
        return count

    async def incr(self, key: Argument, by: int = 1) -> int:
        """``INCRBY key by``: the new value."""
        value: int = await self.call(b"INCRBY", key, by)
        return value


__all__ = [
    "ErrorReply",
    "Replies",
    "RespClient",
    "RespClientProtocol",
    "RespConnection",
]
