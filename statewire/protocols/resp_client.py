"""A pipelined Redis (RESP) client whose connection is a declared machine.

Theory of operation
-------------------
Redis answers the requests of a connection in the order they came, one reply each, so a
client may send a request before the replies to the earlier ones are back (pipelining) and
match each reply to the oldest request still waiting. The client keeps one future per
request sent, in order; every reply resolves the oldest.

A reply is one RESP value, however deep: a line (``+OK``, ``:1``, ``-ERR ...``), a blob
(``$5`` and its body), or an aggregate of values (``*2``, RESP3's ``%``, ``~``, ``>``,
``|``). The machine has one state that reads replies, and the closed one::

    replies  framing resp(): a whole reply is one frame -> answer it         (reply)
    any      connection lost -> closed: every request still waiting fails with
             :class:`statewire.error.ConnectionLost`; later ones fail at once
    closed   reads nothing

The framing layer reads replies with :class:`grammars.resp.ReplyReader`, which reads what
:func:`grammars.resp` parses (the tests hold the two equal under any chunking) and keeps
the part of a reply that has come so far, so a reply cut anywhere across reads (a byte at
a time, a bulk value split in two) costs time linear in its size; the sizes, counts and
depths the grammar refuses are refused from the header, before the body. A reply is one
state change, however nested: a ``GET`` answered by ``$5`` and its body is one frame.

A reply that is an error (``-ERR ...``, ``!``) fails the oldest request with
:class:`ErrorReply` and the connection goes on; a push (RESP3 ``>``: pub/sub, client
tracking) goes to :attr:`RespConnection.on_push`; anything else resolves the oldest
request. Bytes that are not RESP (a bad type byte, a length over the limit or below -1,
nesting deeper than :data:`grammars.resp.MAX_DEPTH`), or a reply with no request waiting
for it, are the server's fault (a remote error): the replies before them are delivered,
the connection is closed, and the requests still waiting fail saying why.

:class:`RespClient` is the application's face: ``await client.call(b"SET", b"k", b"v")``.
It writes each request at once; everything written while the loop runs one callback (a
``gather`` of many calls) leaves in one socket write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from automat import TypeMachineBuilder

from grammars.resp import BlobError, Error, Push, Simple, resp
from statewire.error import Failure
from statewire.machine import RemoteProtocolError
from statewire.protocols._pipelined import PipelinedClient, PipelinedConnection

#: what a request's arguments may be: bytes as they are, text in UTF-8, numbers in decimal
Argument = bytes | bytearray | memoryview | str | int | float


class ErrorReply(Exception):
    """The server answered a request with an error (``-WRONGTYPE ...``); ``text`` is the
    reply's text, ``kind`` its first word (``ERR``, ``WRONGTYPE``, ``NOAUTH``...). Only the
    request it answers fails: the connection goes on."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("utf-8", "replace"))
        self.text = text
        self.kind = text.split(b" ", 1)[0]


class Replies(Protocol):
    """The machine's inputs: a reply, and the loss."""

    def reply(self, value: Any) -> None: ...
    def lost(self, reason: Failure) -> None: ...


#: a request of two words (``GET k``), in one format
_TWO = b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"


def _command(args: list[bytes]) -> bytes:
    """A request's bytes: an array of bulk strings, as :func:`grammars.request` reads it."""
    parts = [b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args]
    return b"*%d\r\n%b" % (len(args), b"".join(parts))


class RespConnection(PipelinedConnection):
    """The machine's core: the requests waiting for their replies, oldest first."""

    #: called with each RESP3 push (``Push``); ``None``: pushes are dropped
    on_push: Callable[[Push], object] | None = None
    speaks = "RESP"

    def request(self, args: list[bytes]) -> asyncio.Future[Any]:
        """Send one request (its words as bytes); the future gets its reply."""
        return self.ask(_command(args))

    def answer(self, value: Any) -> None:
        """Resolve the oldest request with the reply ``value`` (a push goes to on_push)."""
        kind = type(value)
        if kind is Push:
            if self.on_push is not None:
                self.on_push(value)
            return
        if not self.waiting:
            self.remoteError(RemoteProtocolError("a reply came with no request waiting"))
            return
        future = self.waiting.popleft()
        if future.done():  # its caller stopped waiting
            return
        if kind is Error or kind is BlobError:
            future.set_exception(ErrorReply(value.text))
        else:
            future.set_result(value)


builder = TypeMachineBuilder(Replies, RespConnection)
replies = builder.state("replies")
closed = builder.state("closed")


@replies.upon(Replies.reply).loop()
def answer(machine: Replies, core: RespConnection, value: Any) -> None:
    core.answer(value)


@replies.upon(Replies.lost).to(closed)
def fail_waiting(machine: Replies, core: RespConnection, reason: Failure) -> None:
    core.end(reason)


class RespClientProtocol(RespConnection):
    """The client connection: a reply per frame in ``replies``."""

    machine = builder.build()
    framings = {replies: resp()}
    routes = {replies: Replies.reply}
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
        if len(args) == 2:  # GET k, DEL k...: no list made
            name, key = args
            if type(name) is bytes and type(key) is bytes:
                return self.protocol.ask(_TWO % (len(name), name, len(key), key))
        elif not args:
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
