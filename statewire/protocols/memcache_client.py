"""A pipelined memcached (text protocol) client whose connection is a declared machine.

Theory of operation
-------------------
memcached answers a connection's requests in order, so requests are sent as soon as they
are made and each reply belongs to the oldest request still waiting. A reply is one line,
except a retrieval's: a ``VALUE key flags bytes [cas]`` line and its data block per item
found, then ``END``. The block is what makes the client, like the server, a mixed
line/block protocol; its states::

    replies   a line (CRLF), routed by its first word:
              VALUE key flags size [cas]   -> value (the block of ``size`` comes next)
              END                          the oldest request (a retrieval) gets its items
              STORED, NOT_STORED, EXISTS, NOT_FOUND, DELETED, TOUCHED, OK, VERSION
                                           the oldest request gets the line
              ERROR, CLIENT_ERROR, SERVER_ERROR
                                           the oldest request fails with
                                           :class:`ErrorReply`; the connection goes on
              anything else (``incr``'s number)    the oldest request gets the line
    value     the block, ``fixed(size + 2)``: kept for the oldest request -> replies
    any state connection lost -> closed: every request waiting fails with
              :class:`statewire.error.ConnectionLost`; later ones fail at once

A reply the oldest request cannot take (``END`` for a ``set``, a block not ended by CRLF,
a reply with no request waiting) is the server's fault: the connection is closed and the
requests waiting fail. Request lines are :mod:`grammars.memcache`'s commands
(``bytes(Storage(...))``); a key memcached would not read back as one word (a space, a
control byte, over 250 bytes) is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from automat import TypeMachineBuilder
from construct import this

from grammars import fixed, line
from grammars.memcache import MAX_KEY, Arithmetic, Delete, Retrieval, Storage
from statewire.error import Failure
from statewire.machine import RemoteProtocolError, arguments, by_verb
from statewire.protocols._pipelined import PipelinedClient, PipelinedConnection

#: the longest reply line read (a VALUE line: a 250-byte key and three numbers)
MAX_LINE = 4096
#: the largest value read (memcached's own largest item, ``-I 1g``); a server announcing
#: more is refused from the VALUE line, before any of it is buffered
MAX_VALUE = 1 << 30
_CRLF = b"\r\n"


class ErrorReply(Exception):
    """memcached refused a request: ``ERROR``, ``CLIENT_ERROR ...`` or ``SERVER_ERROR
    ...`` (``line``; ``kind`` is its first word). Only that request fails."""

    def __init__(self, line: bytes) -> None:
        super().__init__(line.decode("utf-8", "replace"))
        self.line = line
        self.kind = line.split(b" ", 1)[0]


@dataclass(frozen=True)
class Item:
    """An item a retrieval found: its key, flags, value and CAS unique (``gets`` only)."""

    key: bytes
    flags: int
    value: bytes
    cas: int | None = None


class Replies(Protocol):
    """The machine's inputs: what a reply line or block is, and the connection's loss."""

    def value(self, key: bytes, flags: int, size: int, cas: int | None) -> None: ...
    def block(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def status(self, line: bytes) -> None: ...
    def error(self, line: bytes) -> None: ...
    def lost(self, reason: Failure) -> None: ...


@dataclass
class Announced:
    """The item whose data block comes next (the ``VALUE`` line's words)."""

    key: bytes
    flags: int
    size: int
    cas: int | None


class Waiting:
    """A request sent and not answered yet: its future, and for a retrieval the items
    found so far (``None`` for any other request)."""

    __slots__ = ("future", "items")

    def __init__(self, future: asyncio.Future[Any], retrieval: bool) -> None:
        self.future = future
        self.items: list[Item] | None = [] if retrieval else None


class MemcacheClientConnection(PipelinedConnection):
    """The machine's core: the requests waiting for their replies, oldest first (each a
    :class:`Waiting`)."""

    def request(self, wire: bytes, retrieval: bool = False) -> asyncio.Future[Any]:
        """Send one request (its bytes, CRLFs included); the future gets the reply line,
        or for a ``retrieval`` the list of :class:`Item` found."""
        return self.ask(wire, lambda future: Waiting(future, retrieval))

    @staticmethod
    def future_of(entry: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = entry.future
        return future

    def oldest(self, retrieval: bool) -> Waiting | None:
        """The request a reply answers, when it is of the kind the reply suits (a
        retrieval's items for ``VALUE`` and ``END``); else the server broke the protocol:
        ``None``, and the connection closes."""
        if self.waiting and (self.waiting[0].items is not None) is retrieval:
            waiting: Waiting = self.waiting[0]
            return waiting
        what = "a retrieval's reply" if retrieval else "a reply line"
        self.remoteError(RemoteProtocolError(f"{what} came with no request waiting for it"))
        return None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Resolve (or fail with ``error``) the oldest request: its reply is complete."""
        if not self.waiting:
            self.remoteError(RemoteProtocolError("a reply came with no request waiting"))
            return
        future = self.waiting.popleft().future
        if future.done():  # its caller stopped waiting
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


builder = TypeMachineBuilder(Replies, MemcacheClientConnection)
replies = builder.state("replies")
value = builder.state("value", arguments(Announced))
closed = builder.state("closed")


@replies.upon(Replies.value).to(value)
def expect_block(
    machine: Replies,
    core: MemcacheClientConnection,
    key: bytes,
    flags: int,
    size: int,
    cas: int | None,
) -> None:
    core.oldest(retrieval=True)  # checked now: the block is the server's fault otherwise


@value.upon(Replies.block).to(replies)
def keep(machine: Replies, core: MemcacheClientConnection, item: Announced, data: bytes) -> None:
    waiting = core.oldest(retrieval=True)
    if waiting is None:
        return
    if data[-2:] != _CRLF:
        core.remoteError(RemoteProtocolError(f"the value of {item.key!r} does not end in CRLF"))
        return
    assert waiting.items is not None
    waiting.items.append(Item(item.key, item.flags, data[:-2], item.cas))


@replies.upon(Replies.end).loop()
def found(machine: Replies, core: MemcacheClientConnection) -> None:
    waiting = core.oldest(retrieval=True)
    if waiting is not None:
        core.settle(waiting.items)


@replies.upon(Replies.status).loop()
def answer(machine: Replies, core: MemcacheClientConnection, line: bytes) -> None:
    if core.oldest(retrieval=False) is not None:
        core.settle(line)


@replies.upon(Replies.error).loop()
def refuse(machine: Replies, core: MemcacheClientConnection, line: bytes) -> None:
    core.settle(error=ErrorReply(line))


def fail_waiting(machine: Replies, core: MemcacheClientConnection, reason: Failure) -> None:
    core.end(reason)


@value.upon(Replies.lost).to(closed)
def fail_mid_value(
    machine: Replies, core: MemcacheClientConnection, item: Announced, reason: Failure
) -> None:
    core.end(reason)


replies.upon(Replies.lost).to(closed)(fail_waiting)


def _value_words(
    key: bytes, flags: bytes, size: bytes, cas: bytes | None = None
) -> tuple[bytes, int, int, int | None]:
    announced = int(size)
    if not 0 <= announced <= MAX_VALUE:
        raise ValueError(f"a value of {announced} bytes (at most {MAX_VALUE})")
    return key, int(flags), announced, None if cas is None else int(cas)


def _with_verb(verb: bytes) -> Any:
    def whole(*words: bytes) -> tuple[bytes]:
        return (b" ".join((verb, *words)),)

    return whole


_STATUS = (b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND", b"DELETED", b"TOUCHED", b"OK")
_ERRORS = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


class MemcacheClientProtocol(MemcacheClientConnection):
    """The client connection: reply lines in ``replies``, a value's block in ``value``."""

    machine = builder.build()
    framings = {replies: line(_CRLF, max_length=MAX_LINE), value: fixed(this.size + 2)}
    routes = {
        replies: by_verb(
            {
                b"VALUE": (Replies.value, _value_words),
                b"END": Replies.end,
                **{word: (Replies.status, _with_verb(word)) for word in (*_STATUS, b"VERSION")},
                **{word: (Replies.error, _with_verb(word)) for word in _ERRORS},
            },
            unknown=Replies.status,
        ),
        value: Replies.block,
    }
    lost = Replies.lost


def _key(key: bytes | str) -> bytes:
    word = key.encode() if isinstance(key, str) else bytes(key)
    if not word or len(word) > MAX_KEY or any(c <= 0x20 or c == 0x7F for c in word):
        raise ValueError(f"not a memcached key (1 to {MAX_KEY} bytes, no space or control)")
    return word


class MemcacheClient(PipelinedClient):
    """A memcached client on one pipelined connection (see the module).

    Every method returns once its reply came: a value, or :class:`ErrorReply` raised for
    that request only, or :class:`statewire.error.ConnectionLost` when the connection
    ended first.
    """

    protocol_class = MemcacheClientProtocol
    protocol: MemcacheClientProtocol

    async def get_items(self, *keys: bytes | str, cas: bool = False) -> list[Item]:
        """``get`` (``gets`` with ``cas``) of ``keys``: the items found, in reply order."""
        line = bytes(Retrieval(b"gets" if cas else b"get", tuple(_key(k) for k in keys)))
        items: list[Item] = await self.protocol.request(line + _CRLF, retrieval=True)
        return items

    async def get(self, key: bytes | str) -> bytes | None:
        """The value stored under ``key``, or ``None``."""
        items = await self.get_items(key)
        return items[0].value if items else None

    async def get_many(self, *keys: bytes | str) -> dict[bytes, bytes]:
        """The values stored under ``keys``, by key (keys with none are left out)."""
        return {item.key: item.value for item in await self.get_items(*keys)}

    async def set(
        self, key: bytes | str, value: bytes, *, flags: int = 0, exptime: int = 0
    ) -> bool:
        """Store ``value`` under ``key``: whether it was stored."""
        return await self._store(b"set", key, value, flags, exptime) == b"STORED"

    async def add(
        self, key: bytes | str, value: bytes, *, flags: int = 0, exptime: int = 0
    ) -> bool:
        """Store ``value`` under ``key`` unless the key holds a value: whether it was."""
        return await self._store(b"add", key, value, flags, exptime) == b"STORED"

    async def _store(
        self, name: bytes, key: bytes | str, value: bytes, flags: int, exptime: int
    ) -> bytes:
        line = bytes(Storage(name, _key(key), flags, exptime, len(value)))
        reply: bytes = await self.protocol.request(line + _CRLF + bytes(value) + _CRLF)
        return reply

    async def delete(self, key: bytes | str) -> bool:
        """Delete ``key``: whether it held a value."""
        reply: bytes = await self.protocol.request(bytes(Delete(_key(key))) + _CRLF)
        return reply == b"DELETED"

    async def incr(self, key: bytes | str, delta: int = 1) -> int | None:
        """Add ``delta`` to the number under ``key``: the new value, or ``None`` when the
        key holds nothing."""
        return await self._arithmetic(b"incr", key, delta)

    async def decr(self, key: bytes | str, delta: int = 1) -> int | None:
        """Subtract ``delta`` (down to 0) from the number under ``key``: as :meth:`incr`."""
        return await self._arithmetic(b"decr", key, delta)

    async def _arithmetic(self, name: bytes, key: bytes | str, delta: int) -> int | None:
        wire = bytes(Arithmetic(name, _key(key), delta)) + _CRLF
        reply: bytes = await self.protocol.request(wire)
        if reply == b"NOT_FOUND":
            return None
        if not reply.isdigit():
            raise ErrorReply(reply)
        return int(reply)

    async def version(self) -> bytes:
        """The server's version (``1.6.21``)."""
        reply: bytes = await self.protocol.request(b"version\r\n")
        return reply.removeprefix(b"VERSION ")


__all__ = [
    "ErrorReply",
    "Item",
    "MemcacheClient",
    "MemcacheClientConnection",
    "MemcacheClientProtocol",
    "Replies",
    "Waiting",
]
