"""In-memory stand-ins for the runtime: a transport that records what is written, and a
clock that moves only when told. Protocols run on them exactly as on sockets (they have the
same methods), so tests need no network and no real time.

>>> from statewire.wire import Echo
>>> transport = StringTransport()
>>> protocol = Echo()
>>> protocol.makeConnection(transport)
>>> protocol.dataReceived(b"hi")
>>> transport.value()
b'hi'
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

from statewire.address import Address, IPv4Address


class StringTransport:
    """A transport that keeps written bytes in memory (like Twisted's ``StringTransport``).

    ``value()`` is everything written; ``clear()`` forgets it. ``disconnecting`` turns true
    on ``loseConnection``, ``aborted`` on ``abortConnection``; nothing is ever delivered to
    the protocol's ``connectionLost`` unless the test calls it. ``producerState`` is
    ``"producing"``, ``"paused"`` or ``"stopped"`` (the read side, as the protocol asked).
    ``startTLS`` is recorded in :attr:`tls`; no TLS is made (bytes stay as written).
    """

    def __init__(
        self,
        peer: Address | None = None,
        host: Address | None = None,
    ) -> None:
        self._written = bytearray()
        self.peer = peer or IPv4Address("TCP", "127.0.0.1", 50000)
        self.host = host or IPv4Address("TCP", "127.0.0.1", 8000)
        self.disconnecting = False
        self.aborted = False
        self.producer: Any = None
        self.streaming: bool | None = None
        self.producerState = "producing"
        #: called once when the protocol starts closing (statewire transports have it)
        self.on_closing: Callable[[], object] | None = None
        #: the ``startTLS`` call once made: its ``context``, ``server_side`` and
        #: ``server_hostname``, and ``written``: how many bytes of ``value()`` (since the
        #: last ``clear()``) were written before it
        self.tls: dict[str, Any] | None = None
        #: bytes written so far (``clear()`` does not reset it), as statewire's transports
        #: count what they hand to the socket
        self.bytes_sent = 0

    def write(self, data: bytes) -> None:
        """Record ``data``; a ``str`` is refused, as on the real transports."""
        if isinstance(data, str):
            raise TypeError("write() takes bytes, not str: encode the text first")
        if not self.aborted:
            self._written += data
            self.bytes_sent += len(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """Record each item of ``data``."""
        for item in data:
            self.write(item)

    def value(self) -> bytes:
        """Everything written so far (since the last :meth:`clear`)."""
        return bytes(self._written)

    def clear(self) -> None:
        """Forget what was written."""
        self._written.clear()

    def _closing(self) -> None:
        self.disconnecting = True
        hook, self.on_closing = self.on_closing, None
        if hook is not None:
            hook()

    def loseConnection(self) -> None:
        """Mark the transport as closing."""
        self._closing()

    def abortConnection(self) -> None:
        """Mark the transport as aborted (writes after this are dropped)."""
        self._closing()
        self.aborted = True

    def startTLS(
        self, context: Any, server_side: bool | None = None, server_hostname: str | None = None
    ) -> None:
        """Record the call; as on the real transports, a second one raises
        ``RuntimeError``, and so does one on a closing transport."""
        if self.tls is not None:
            raise RuntimeError("startTLS() on a connection that already called it")
        if self.disconnecting:
            raise RuntimeError("startTLS() on a connection that is closing")
        self.tls = {
            "context": context,
            "server_side": server_side,
            "server_hostname": server_hostname,
            "written": len(self._written),
        }

    def getPeer(self) -> Address:
        return self.peer

    def getHost(self) -> Address:
        return self.host

    def pauseProducing(self) -> None:
        self.producerState = "paused"

    def resumeProducing(self) -> None:
        self.producerState = "producing"

    def stopProducing(self) -> None:
        self.producerState = "stopped"

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("a producer is already registered")
        self.producer = producer
        self.streaming = streaming

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class _Call:
    """A call scheduled on a :class:`Clock`."""

    def __init__(self, clock: Clock, when: float, f: Callable[..., Any], args: Any) -> None:
        self.clock = clock
        self.time = when
        self.func = f
        self.args = args
        self.called = False
        self.cancelled = False

    def active(self) -> bool:
        return not (self.called or self.cancelled)

    def getTime(self) -> float:
        return self.time

    def cancel(self) -> None:
        if not self.active():
            raise RuntimeError("the call already ran or was cancelled")
        self.cancelled = True


class Clock:
    """A clock for timeouts in tests: ``callLater`` schedules, :meth:`advance` runs what
    falls due, in time order. An exception from a call propagates out of ``advance``."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> _Call:
        """Call ``f(*args)`` when the clock has advanced ``delay`` seconds.

        As the reactor's ``callLater``: a delay that is NaN, infinite or negative raises
        ``ValueError`` (NaN would disorder the queue), a non-callable ``f`` ``TypeError``.
        """
        _check_seconds(delay, "callLater()'s delay")
        if not callable(f):
            raise TypeError(f"the callback must be callable, not {f!r}")
        call = _Call(self, self.now + delay, f, args)
        heapq.heappush(self._queue, (call.time, next(self._order), call))
        return call

    def pending(self) -> list[_Call]:
        """The calls still to run, soonest first."""
        return [call for _, _, call in sorted(self._queue) if call.active()]

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (finite, >= 0: time never goes back), running
        every call that falls due."""
        _check_seconds(seconds, "advance()")
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, call = heapq.heappop(self._queue)
            if call.active():
                self.now = max(self.now, when)
                call.called = True
                call.func(*call.args)
        self.now = end


def _check_seconds(seconds: float, what: str) -> None:
    """Refuse ``seconds`` unless it is a finite number >= 0 (NaN would disorder the queue
    and stop time for good)."""
    try:
        valid = math.isfinite(seconds) and seconds >= 0
    except TypeError:
        raise TypeError(f"{what} must be a number, not {seconds!r}") from None
    if not valid:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {seconds!r}")


class Loopback:
    """A client and a server protocol joined in memory: what one writes, the other
    receives, when :meth:`pump` moves it (so a test decides when bytes travel).

    >>> from statewire.wire import Echo
    >>> from statewire.protocol import Protocol
    >>> class Client(Protocol):
    ...     def connectionMade(self): self.transport.write(b"ping")
    ...     def dataReceived(self, data): self.got = data
    >>> link = Loopback(Client(), Echo())
    >>> link.pump()
    >>> link.client.got
    b'ping'
    """

    def __init__(self, client: Any, server: Any, clock: Clock | None = None) -> None:
        self.client = client
        self.server = server
        self.clock = clock or Clock()
        client_address = IPv4Address("TCP", "127.0.0.1", 50000)
        server_address = IPv4Address("TCP", "127.0.0.1", 8000)
        self.client_transport = StringTransport(peer=server_address, host=client_address)
        self.server_transport = StringTransport(peer=client_address, host=server_address)
        for protocol in (client, server):
            if hasattr(protocol, "clock"):
                protocol.clock = self.clock
        server.makeConnection(self.server_transport)
        client.makeConnection(self.client_transport)

    def pump(self, rounds: int = 1000) -> None:
        """Deliver what each side wrote to the other, until neither writes more (at most
        ``rounds`` exchanges), then close the sides that asked to close."""
        for _ in range(rounds):
            to_server = self.client_transport.value()
            to_client = self.server_transport.value()
            if not (to_server or to_client):
                break
            self.client_transport.clear()
            self.server_transport.clear()
            if to_server and not self.server_transport.disconnecting:
                self.server.dataReceived(to_server)
            if to_client and not self.client_transport.disconnecting:
                self.client.dataReceived(to_client)
        else:
            raise RuntimeError(f"the two sides were still talking after {rounds} rounds")

    def advance(self, seconds: float) -> None:
        """Move the shared clock on, then pump."""
        self.clock.advance(seconds)
        self.pump()


class Conversation:
    """A protocol from ``factory`` connected in memory, on a test :class:`Clock` (its own
    unless one is given): call it with bytes, get back what the protocol wrote since.

    >>> from statewire.wire import Echo
    >>> from statewire.protocol import Factory
    >>> talk = Conversation(Factory.forProtocol(Echo))
    >>> talk(b"hello")
    b'hello'
    """

    def __init__(self, factory: Any, clock: Clock | None = None) -> None:
        self.factory = factory
        self.clock = clock if clock is not None else Clock()
        self.protocol = factory.buildProtocol(None)
        self.protocol.clock = self.clock
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def __call__(self, data: bytes) -> bytes:
        """Feed ``data``; return what was written in answer."""
        self.transport.clear()
        self.protocol.dataReceived(data)
        return self.transport.value()

    @property
    def state(self) -> str:
        """The name of the declared protocol's state now."""
        return str(self.protocol.machine_state)
