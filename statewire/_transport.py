"""The transport a protocol writes to, bridged onto an asyncio transport.

Theory of operation
-------------------
asyncio calls a :class:`Bridge` (an ``asyncio.Protocol``); the bridge builds the user's
protocol from the factory, hands it a :class:`Transport`, and forwards each event, guarding
every call into user code: an exception there is logged with its traceback and closes that
connection only.

Writes are coalesced: ``write`` appends to a list, and the list goes to the socket as one
write when the protocol's callback returns (``dataReceived``, ``connectionMade``) or, for
writes made anywhere else (a timer), at the end of the current event-loop turn.

Flow control: when asyncio's write buffer passes its high-water mark (a peer that does not
read), the transport stops reading and pauses the registered producer; both resume at the
low-water mark. So a slow reader costs at most the high-water mark of memory. A pull
(non-streaming) producer is asked for more after each write it makes, while the buffer is
below the high-water mark.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from statewire.address import Address, from_sockaddr
from statewire.error import ConnectionDone, ConnectionLost, Failure

if TYPE_CHECKING:
    from statewire._reactor import Reactor

log = logging.getLogger("statewire")

#: asyncio write-buffer limits: above ``HIGH`` reading and the producer pause.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class Transport:
    """What ``protocol.transport`` is: write, close, addresses, flow control."""

    __slots__ = (
        "_bridge",
        "_closed",
        "_flush_scheduled",
        "_in_callback",
        "_out",
        "_producer",
        "_streaming",
        "_transport",
        "_unix",
        "_write_paused",
        "disconnecting",
        "on_closing",
    )

    def __init__(self, bridge: Bridge, transport: asyncio.Transport) -> None:
        self._bridge = bridge
        self._transport = transport
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._in_callback = False
        self._closed = False
        self._write_paused = False
        self._producer: Any = None
        self._streaming = True
        #: True once ``loseConnection`` was called
        self.disconnecting = False
        #: called once when ``loseConnection`` or ``abortConnection`` is first called (a
        #: declarative protocol stops framing the bytes it already holds)
        self.on_closing: Callable[[], object] | None = None
        sock = transport.get_extra_info("socket")
        self._unix = sock is not None and sock.family == socket.AF_UNIX
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` (bytes-like) for the peer; a no-op after the connection closed."""
        if isinstance(data, str):
            raise TypeError("write() takes bytes, not str: encode the text first")
        if self._closed:
            return
        self._out.append(data if type(data) is bytes else bytes(data))
        if not self._in_callback and not self._flush_scheduled:
            self._flush_scheduled = True
            self._bridge.loop.call_soon(self._flush)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """Queue each item of ``data`` in turn."""
        for item in data:
            self.write(item)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out or self._closed:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._transport.write(data)
        if self._producer is not None and not self._streaming:
            self._bridge.loop.call_soon(self._pull)

    def _pull(self) -> None:
        """Ask a pull (non-streaming) producer for more while the buffer has room."""
        producer = self._producer
        if producer is not None and not (self._streaming or self._write_paused or self._closed):
            self._bridge.call_user(producer.resumeProducing)

    # -- closing -------------------------------------------------------------------------

    def loseConnection(self) -> None:
        """Close once everything written so far has been sent."""
        if self.disconnecting or self._closed:
            return
        self._closing()
        self._flush()
        self._transport.close()

    def abortConnection(self) -> None:
        """Close at once, dropping unsent data."""
        self._closing()
        self._out.clear()
        self._transport.abort()

    def _closing(self) -> None:
        self.disconnecting = True
        hook, self.on_closing = self.on_closing, None
        if hook is not None:
            hook()

    @property
    def reactor(self) -> Reactor:
        """The reactor serving this connection (its timers run on the same loop)."""
        return self._bridge.reactor

    # -- addresses -----------------------------------------------------------------------

    def getPeer(self) -> Address:
        """The other side's address."""
        return from_sockaddr(self._unix, self._transport.get_extra_info("peername"))

    def getHost(self) -> Address:
        """This side's address."""
        return from_sockaddr(self._unix, self._transport.get_extra_info("sockname"))

    # -- the read side as a producer -----------------------------------------------------

    def pauseProducing(self) -> None:
        """Stop reading from the peer."""
        if not self._closed and self._transport.is_reading():
            self._transport.pause_reading()

    def resumeProducing(self) -> None:
        """Read from the peer again (unless the peer is not reading what we write)."""
        if not self._closed and not self._write_paused and not self._transport.is_reading():
            self._transport.resume_reading()

    def stopProducing(self) -> None:
        """Stop for good: close the connection."""
        self.loseConnection()

    # -- the write side: a producer that fills this transport -----------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Let ``producer`` be paused (streaming) or pulled (not streaming) by our buffer."""
        if self._producer is not None:
            raise RuntimeError(f"producer {self._producer!r} is already registered")
        self._producer = producer
        self._streaming = streaming
        if self._closed:
            producer.stopProducing()
        elif not streaming:
            producer.resumeProducing()
        elif self._write_paused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """Forget the registered producer."""
        self._producer = None

    def _pause_writing(self) -> None:
        self._write_paused = True
        if self._transport.is_reading():
            self._transport.pause_reading()
        if self._producer is not None and self._streaming:
            self._bridge.call_user(self._producer.pauseProducing)

    def _resume_writing(self) -> None:
        self._write_paused = False
        if not self._closed and not self._transport.is_reading():
            self._transport.resume_reading()
        if self._producer is not None:
            self._bridge.call_user(self._producer.resumeProducing)


class Bridge(asyncio.Protocol):
    """The asyncio protocol behind one connection: builds and drives the user's protocol."""

    __slots__ = ("_on_lost", "factory", "loop", "protocol", "reactor", "transport")

    def __init__(
        self,
        reactor: Reactor,
        factory: Any,
        on_lost: Callable[[Failure], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.loop = reactor.loop
        self.factory = factory
        self.protocol: Any = None
        self.transport: Transport | None = None
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's classes; both have these methods.
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        wrapped = Transport(self, transport)
        self.transport = wrapped
        try:
            protocol = self.factory.buildProtocol(wrapped.getPeer())
        except Exception:
            log.exception("%r.buildProtocol raised; refusing the connection", self.factory)
            protocol = None
        if protocol is None:
            transport.abort()
            return
        self.protocol = protocol
        self.reactor._connections.add(self)
        self.call_user(protocol.makeConnection, wrapped)

    def data_received(self, data: bytes) -> None:
        if self.protocol is not None:
            self.call_user(self.protocol.dataReceived, data)

    def eof_received(self) -> bool:
        return False  # close our side too, as Twisted does

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport._pause_writing()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport._resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        wrapped = self.transport
        if wrapped is None or self.protocol is None:
            return
        wrapped._closed = True
        wrapped._out.clear()
        self.reactor._connections.discard(self)
        reason = Failure(ConnectionDone() if exc is None else ConnectionLost(str(exc)))
        protocol = self.protocol
        protocol.connected = 0
        self.call_user(protocol.connectionLost, reason)
        if wrapped._producer is not None:
            self.call_user(wrapped._producer.stopProducing)
            wrapped._producer = None
        if self._on_lost is not None:
            self._on_lost(reason)

    def call_user(self, method: Callable[..., Any], *args: Any) -> None:
        """Call user code; an exception is logged and closes this connection only."""
        wrapped = self.transport
        assert wrapped is not None
        outer = wrapped._in_callback
        wrapped._in_callback = True
        try:
            method(*args)
        except Exception:
            log.exception(
                "%s raised; closing the connection from %s", _name(method), _peer(wrapped)
            )
            if not wrapped._closed:
                wrapped.abortConnection()
        finally:
            wrapped._in_callback = outer
            if not outer and wrapped._out:
                wrapped._flush()


def _name(method: Callable[..., Any]) -> str:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def _peer(transport: Transport) -> str:
    try:
        return str(transport.getPeer())
    except Exception:
        return "an unknown peer"
