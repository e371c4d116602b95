"""What a pipelined client connection is, whatever its protocol: the requests sent and
waiting for their replies, oldest first; the end of the connection failing every one of
them (and any made later) with :class:`~statewire.error.ConnectionLost` saying why; and
the client object wrapping such a connection (``connect``, ``from_endpoint``, ``waiting``,
``close``). The RESP and memcached clients declare their replies' machines on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, ClassVar, TypeVar

from statewire.declarative import MachineProtocol
from statewire.error import ConnectionDone, ConnectionLost, Failure
from statewire.machine import RemoteProtocolError
from statewire.protocol import ClientFactory

#: a client class (what ``connect`` and ``from_endpoint`` make)
C = TypeVar("C", bound="PipelinedClient")


class PipelinedConnection(MachineProtocol):
    """The requests waiting for their replies, oldest first (``waiting``: each entry is
    the request's future, or what :meth:`ask` was told to wrap it in)."""

    #: why the connection ended (``None`` while it is open)
    failure: str | None = None
    #: how the server broke the protocol, if it did
    broken: RemoteProtocolError | None = None
    #: the protocol's name in the log line of a server breaking it
    speaks: ClassVar[str] = "the protocol"
    _loop: asyncio.AbstractEventLoop | None = None
    #: made by :meth:`ended`, resolved by :meth:`end`
    _ended: asyncio.Future[None] | None = None

    def connectionMade(self) -> None:
        """Start with no request waiting."""
        self.waiting: deque[Any] = deque()

    def ask(self, wire: bytes, entry: Any = None) -> asyncio.Future[Any]:
        """Send one request's bytes; the future it returns gets the reply. ``entry``, if
        given, is called with the future and what it returns waits in ``waiting`` (a
        request's own bookkeeping); else the future itself waits. After the connection
        ended, the future fails at once and nothing is sent."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.failure is not None:
            future.set_exception(ConnectionLost(f"{self.failure}; the request was not sent"))
            return future
        self.waiting.append(future if entry is None else entry(future))
        self.transport.write(wire)
        return future

    @staticmethod
    def future_of(entry: Any) -> asyncio.Future[Any]:
        """The future of an entry of ``waiting`` (the entry itself, unless wrapped)."""
        future: asyncio.Future[Any] = entry
        return future

    def ended(self) -> asyncio.Future[None]:
        """A future resolved once the connection has ended."""
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
            if self.failure is not None:
                self._ended.set_result(None)
        return self._ended

    def end(self, reason: Failure) -> None:
        """The connection is gone: fail every request still waiting, and any made later."""
        cause: BaseException = reason.value if self.broken is None else self.broken
        self.failure = why = (
            "the connection was closed" if isinstance(cause, ConnectionDone) else str(cause)
        )
        if self.waiting:
            failure = ConnectionLost(f"{why} before the reply came")
            failure.__cause__ = cause
            while self.waiting:
                future = self.future_of(self.waiting.popleft())
                if not future.done():
                    future.set_exception(failure)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def remoteError(self, error: RemoteProtocolError) -> None:
        """The server broke the protocol: log it and close; the requests waiting fail
        with a :class:`~statewire.error.ConnectionLost` that says so."""
        logging.getLogger(type(self).__module__).warning(
            "%s: the server broke %s: %s; closing", type(self).__name__, self.speaks, error
        )
        if self.broken is None:
            self.broken = error
        self.abort()


class PipelinedClient:
    """A client on one pipelined connection of :attr:`protocol_class`."""

    protocol_class: ClassVar[type[PipelinedConnection]]

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    @classmethod
    def _factory(cls) -> ClientFactory:
        factory = ClientFactory()
        factory.protocol = cls.protocol_class
        factory.noisy = False
        return factory

    @classmethod
    async def connect(
        cls: type[C], reactor: Any, host: str, port: int, *, timeout: float = 30.0
    ) -> C:
        """Connect to the server at ``host:port`` through ``reactor``
        (``statewire.reactor``); ``timeout`` bounds the connection attempt."""
        protocol = await reactor.connectTCP(host, port, cls._factory(), timeout).connected
        return cls(protocol)

    @classmethod
    async def from_endpoint(cls: type[C], endpoint: Any) -> C:
        """Connect through a client endpoint (``TCP4ClientEndpoint``, ``clientFromString``...)."""
        return cls(await endpoint.connect(cls._factory()))

    @property
    def waiting(self) -> int:
        """How many requests have been sent and wait for their replies."""
        return len(self.protocol.waiting)

    async def close(self) -> None:
        """Close the connection now; requests still waiting fail with
        :class:`~statewire.error.ConnectionLost`. Returns once it has closed."""
        protocol = self.protocol
        if protocol.failure is None:
            ended = protocol.ended()
            protocol.close()
            await ended
