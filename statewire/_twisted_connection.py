"""One connection of a statewire protocol on Twisted's reactor (:mod:`statewire.twisted`
explains the whole): :class:`TwistedProtocol`, the protocol Twisted's transport talks to,
and :class:`TwistedTransport`, the statewire transport it hands the statewire protocol;
and the values crossing between the two (failures, addresses).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import address as taddress
from twisted.internet import error as terror
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    ILoggingContext,
    IProtocol,
    IPushProducer,
    ISSLTransport,
)
from twisted.python.failure import Failure as TwistedFailure
from zope.interface import implementer  # type: ignore[import-untyped]

from statewire.address import Address, IPv4Address, IPv6Address, UNIXAddress
from statewire.declarative import MachineProtocol
from statewire.error import (
    ConnectError,
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    Failure,
    TimeoutError,
)
from statewire.runtime.limits import CLOSE_TIMEOUT

__all__ = ["TwistedProtocol", "TwistedTransport", "address_from_twisted", "failure_from_twisted"]

log = logging.getLogger("statewire.twisted")


def _unsent(transport: Any) -> int | None:
    """The bytes Twisted's transport (or the one under its TLS or a wrapper) holds unsent,
    read from its file descriptor's buffer (``abstract.FileDescriptor``'s ``dataBuffer``,
    ``offset`` and ``_tempDataLen``: Twisted has no public call for it); ``None`` where
    it has none of these (a test double, another transport)."""
    for _ in range(4):
        buffer = getattr(transport, "dataBuffer", None)
        if isinstance(buffer, bytes) and isinstance(getattr(transport, "offset", None), int):
            return len(buffer) - int(transport.offset) + int(getattr(transport, "_tempDataLen", 0))
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


# -- values crossing the boundary ---------------------------------------------------------


def failure_from_twisted(reason: Any) -> Failure:
    """Statewire's :class:`~statewire.error.Failure` for a Twisted ``Failure`` (or
    exception): Twisted's ``ConnectionDone``, ``ConnectionAborted``, ``ConnectionLost``,
    ``ConnectionRefusedError``, ``TimeoutError`` and ``ConnectError`` become statewire's
    classes of the same names; anything else (a TLS error, an exception a callback raised)
    becomes ``ConnectionLost`` with its message. The original is the ``__cause__``."""
    value: Any = reason.value if isinstance(reason, TwistedFailure) else reason
    if isinstance(value, (ConnectionDone, ConnectionLost, ConnectError)):
        return Failure(value)  # statewire's already
    detail = value.args[0] if value.args and isinstance(value.args[0], str) else None
    details = () if detail is None else (detail,)
    exc: Exception
    if isinstance(value, terror.ConnectionDone):
        exc = ConnectionDone()
    elif isinstance(value, terror.ConnectionAborted):
        exc = ConnectionAborted()
    elif isinstance(value, terror.ConnectionLost):
        exc = ConnectionLost(*details)
    elif isinstance(value, terror.ConnectionRefusedError):
        exc = ConnectionRefusedError(*details)
    elif isinstance(value, terror.TimeoutError):
        exc = TimeoutError(*details)
    elif isinstance(value, terror.ConnectError):
        exc = ConnectError(str(value))
    else:
        exc = ConnectionLost(f"{type(value).__name__}: {value}")
    exc.__cause__ = value
    return Failure(exc)


def address_from_twisted(address: Any) -> Address:
    """Statewire's address for a Twisted ``IPv4Address``, ``IPv6Address`` or
    ``UNIXAddress`` (Twisted's IPv6 flow info and scope id are dropped; a UNIX name given
    as bytes is decoded with the file system's encoding). ``TypeError`` for any other."""
    if isinstance(address, (IPv4Address, IPv6Address, UNIXAddress)):
        return address
    if isinstance(address, taddress.IPv4Address):
        return IPv4Address("TCP", address.host, address.port)
    if isinstance(address, taddress.IPv6Address):
        return IPv6Address("TCP", address.host, address.port)
    if isinstance(address, taddress.UNIXAddress):
        name = address.name
        return UNIXAddress(os.fsdecode(name) if name is not None else None)
    raise TypeError(f"no statewire address for {address!r}")


# -- the transport the statewire protocol writes to ----------------------------------------


class TwistedTransport:
    """Statewire's transport methods over a Twisted transport (see the module docs).

    ``reactor`` is the Twisted reactor (or clock) the connection's timers use; ``twisted``
    is Twisted's transport itself, for what statewire does not cover.
    """

    def __init__(self, transport: Any, clock: Any = None) -> None:
        #: Twisted's transport
        self.twisted = transport
        self._clock = clock
        #: called once when the connection starts closing (a declared protocol then stops
        #: delivering the frames it holds)
        self.on_closing: Callable[[], object] | None = None
        #: seconds a closing connection may wait for the peer to take its unsent data
        #: before it is aborted; ``None`` waits for ever
        self.close_timeout: float | None = CLOSE_TIMEOUT
        #: seconds Twisted's buffer may stay full (its producer paused, never resumed)
        #: before the connection is aborted; ``None``: no limit. A declared protocol sets
        #: its own ``write_timeout`` here, as on statewire's transports (see the docs:
        #: measured from Twisted's pause, since it does not say what the peer took)
        self.write_timeout: float | None = None
        self._stall_timer: Any = None
        #: bytes written to Twisted's transport, and how many of them had left it (handed
        #: minus what it holds unsent) when the stall timer started (None: unknown)
        self._handed = 0
        self._stall_mark: int | None = None
        self._closing = False
        self._lost = False
        self._close_timer: Any = None
        self._read_paused = False
        self._congested = False
        self._reading = True
        self._producer: Any = None
        self._streaming = True
        self._pull_timer: Any = None
        self._registered = False
        self._eof = False
        #: Twisted's TLS handshake completed (see :meth:`TwistedProtocol.handshakeCompleted`)
        self._handshake_done = False

    # -- time ----------------------------------------------------------------------------

    @property
    def reactor(self) -> Any:
        """The Twisted reactor (or clock) serving this connection: ``callLater``,
        ``seconds``."""
        clock = self._clock
        if clock is None:
            clock = getattr(self.twisted, "reactor", None)
            if clock is None:
                from twisted.internet import reactor as clock  # the global one, installed now
            self._clock = clock
        return clock

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send ``data`` (bytes-like; ``str`` raises ``TypeError``); nothing after close."""
        if type(data) is not bytes:
            if isinstance(data, str) or not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"write() takes bytes, not {type(data).__name__}")
            data = bytes(data)
        if self._lost:
            return
        self.twisted.write(data)
        self._handed += len(data)
        if self._producer is not None and not self._streaming:
            self._schedule_pull()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """Send each item of ``data`` in turn."""
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            raise TypeError(
                f"writeSequence() takes an iterable of bytes, not {type(data).__name__}"
            )
        for item in data:
            self.write(item)

    # -- closing -------------------------------------------------------------------------

    @property
    def disconnecting(self) -> bool:
        """Whether the connection is closing (or closed)."""
        closing = self._closing or self._lost or self._eof
        return closing or bool(getattr(self.twisted, "disconnecting", 0))

    def loseConnection(self) -> None:
        """Close once what was written is sent (bounded by :attr:`close_timeout`)."""
        if self._closing or self._lost:
            return
        self._start_closing(notify=True)
        self.twisted.loseConnection()

    def abortConnection(self) -> None:
        """Close at once, dropping unsent data (``ConnectionAborted``)."""
        if self._lost:
            return
        if not self._closing:
            self._start_closing(notify=True, timed=False)
        self.twisted.abortConnection()

    def _start_closing(self, notify: bool, timed: bool = True) -> None:
        self._closing = True
        if self._registered:  # Twisted keeps a connection open while a producer is paused
            self._registered = False
            self.twisted.unregisterProducer()
        if notify:
            hook, self.on_closing = self.on_closing, None
            if hook is not None:
                hook()
        # a test double (Twisted's StringTransport) has no reactor, and no unsent data to
        # wait for: no timer then, unless a clock was given
        clock = self._timer_clock()
        if timed and clock is not None and self.close_timeout is not None and not self._lost:
            self._close_timer = clock.callLater(self.close_timeout, self._close_expired)

    def _timer_clock(self) -> Any:
        """The clock for the connection's timers, without installing Twisted's global
        reactor (a test double has none: then no timer, unless a clock was given)."""
        return self._clock if self._clock is not None else getattr(self.twisted, "reactor", None)

    def _watch_stall(self) -> None:
        """Twisted's buffer is full: abort if the peer takes none of it for
        ``write_timeout`` seconds (Twisted tells only when the buffer is empty again; what
        is still unsent is read from its transport's buffer where it has one)."""
        clock = self._timer_clock()
        timeout = self.write_timeout
        if self._stall_timer is not None or timeout is None or clock is None or self._lost:
            return
        if self._full():
            unsent = _unsent(self.twisted)
            self._stall_mark = None if unsent is None else self._handed - unsent
            self._stall_timer = clock.callLater(timeout, self._stall_expired)

    def _stall_expired(self) -> None:
        self._stall_timer = None
        if not self._full() or self._lost or self.write_timeout is None:
            return  # (drained, gone, or the limit lifted meanwhile)
        unsent = _unsent(self.twisted)
        if unsent == 0:
            return  # nothing waits (closing: Twisted no longer resumes us)
        mark = self._stall_mark
        if unsent is not None and mark is not None and self._handed - unsent > mark:
            self._watch_stall()  # some left since (the peer took some): count again
            return
        log.info("the peer took no byte in %s s; aborting", self.write_timeout)
        self.abortConnection()

    def _close_expired(self) -> None:
        self._close_timer = None
        if not self._lost:
            log.info("the peer did not take our data in %s s; aborting", self.close_timeout)
            self.twisted.abortConnection()

    def _end_of_stream(self) -> None:
        """The peer will send nothing more: close our side once what was written is sent
        (frames already buffered are still the protocol's to deliver)."""
        if self._closing or self._lost or self._eof:
            return
        self._eof = True
        if not self._congested:  # else the frames held for backpressure go first
            self._start_closing(notify=False)
            self.twisted.loseConnection()

    def _connection_lost(self) -> None:
        self._lost = True
        for name in ("_close_timer", "_pull_timer", "_stall_timer"):
            timer = getattr(self, name)
            setattr(self, name, None)
            if timer is not None and timer.active():
                timer.cancel()

    # -- TLS -----------------------------------------------------------------------------

    @property
    def TLS(self) -> bool:
        """Whether the connection is encrypted: Twisted's transport provides
        ``ISSLTransport`` (a ``listenSSL`` port, or after Twisted's own ``startTLS``).
        There is no ``startTLS`` here: a protocol offering STARTTLS does not offer it on
        Twisted's transports."""
        return bool(ISSLTransport.providedBy(self.twisted)) or bool(
            getattr(self.twisted, "TLS", False)
        )

    # -- addresses -----------------------------------------------------------------------

    def getPeer(self) -> Address:
        """The other side's address, as statewire shapes it."""
        return address_from_twisted(self.twisted.getPeer())

    def getHost(self) -> Address:
        """This side's address, as statewire shapes it."""
        return address_from_twisted(self.twisted.getHost())

    # -- the read side as a producer -----------------------------------------------------

    def _full(self) -> bool:
        """Whether Twisted's buffer is full: paused by Twisted, and not by its TLS
        holding what was written before its handshake completed (a server's greeting, a
        client's first command). That pause is no full buffer, and reading on is what
        completes the handshake (a pause would deadlock it). Asked each time, not at the
        start: Twisted's ``startTLS`` may come later."""
        return self._congested and (
            self._handshake_done or not ISSLTransport.providedBy(self.twisted)
        )

    def _handshake_completed(self) -> None:
        """Twisted's TLS handshake is done: a pause from now on is a full buffer."""
        if not self._handshake_done:
            self._handshake_done = True
            self._update_reading()
            # (from the next turn: Twisted's TLS moves what it held into its buffer first)
            clock = self._timer_clock()
            if clock is not None:
                clock.callLater(0, self._watch_stall)

    def _update_reading(self) -> None:
        if self._closing or self._lost or self._eof:
            return  # Twisted stopped reading when closing began (or the peer's stream ended)
        # Twisted's TLS transport pauses its producer while it holds what was written
        # before its handshake completed (a server's greeting, a client's first command):
        # that is no full buffer, and reading on is what completes the handshake (a pause
        # would deadlock it). Asked now, not at the start: Twisted's startTLS may come later
        reading = not (self._read_paused or self._full())
        if reading != self._reading:
            self._reading = reading
            if reading:
                self.twisted.resumeProducing()
            else:
                self.twisted.pauseProducing()

    def pauseProducing(self) -> None:
        """Stop reading from the peer."""
        self._read_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        """Read from the peer again (unless the peer is not reading what we write)."""
        self._read_paused = False
        self._update_reading()

    def stopProducing(self) -> None:
        """Stop for good: close the connection."""
        self.loseConnection()

    # -- the write side: a producer that fills this transport -----------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Let ``producer`` be paused (streaming) or pulled (not streaming) as Twisted's
        write buffer fills and drains."""
        if self._producer is not None:
            raise RuntimeError(f"producer {self._producer!r} is already registered")
        if self._lost:
            producer.stopProducing()
            return
        self._producer = producer
        self._streaming = streaming
        if not streaming:
            producer.resumeProducing()
        elif self._congested:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """Forget the registered producer."""
        self._producer = None

    def _schedule_pull(self) -> None:
        if self._pull_timer is None:
            self._pull_timer = self.reactor.callLater(0, self._pull)

    def _pull(self) -> None:
        self._pull_timer = None
        producer = self._producer
        if producer is not None and not (self._streaming or self._congested or self._lost):
            producer.resumeProducing()

    def _set_congested(self, congested: bool, protocol: Any) -> None:
        """Twisted paused (or resumed) us as its producer: its write buffer is full (or
        empty). Same order as statewire's transports."""
        if congested == self._congested:
            return
        self._congested = congested
        hook = getattr(protocol, "transportCongested", None)
        producer = self._producer
        if congested:
            self._watch_stall()
            self._update_reading()
            if hook is not None:
                hook(True)
            if producer is not None and self._streaming:
                producer.pauseProducing()
            return
        timer, self._stall_timer = self._stall_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if hook is not None:
            hook(False)  # may fill the buffer again: then it paused again
        if self._congested:
            return
        if self._eof:  # the peer is done sending, and what it asked for is written
            self._start_closing(notify=False)
            self.twisted.loseConnection()
            return
        self._update_reading()
        producer = self._producer
        if producer is not None:
            if self._streaming:
                producer.resumeProducing()
            else:
                self._pull()

    def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()


# -- the protocol Twisted talks to ----------------------------------------------------------


@implementer(IProtocol, IPushProducer, IHalfCloseableProtocol, IHandshakeListener, ILoggingContext)
class TwistedProtocol:
    """The Twisted protocol of one connection: forwards Twisted's events to the statewire
    ``protocol`` it wraps, which writes to a :class:`TwistedTransport`. Twisted's transport
    pauses and resumes it as a streaming producer (see the module docs)."""

    #: the adapted factory that built it (set by :meth:`AdaptedFactory.buildProtocol`)
    factory: Any = None

    def __init__(self, protocol: Any, clock: Any = None) -> None:
        #: the statewire protocol
        self.protocol = protocol
        self.clock = clock
        #: Twisted's transport (set by :meth:`makeConnection`)
        self.transport: Any = None
        #: the transport the statewire protocol writes to (set by :meth:`makeConnection`)
        self.facade: TwistedTransport | None = None
        self.connected = 0

    def logPrefix(self) -> str:
        """How Twisted's logs name this connection: the statewire protocol's class."""
        return type(self.protocol).__name__

    def makeConnection(self, transport: Any) -> None:
        """Twisted connected us: give the statewire protocol its transport (once its
        factory's startup ended: until then the connection is held, not read)."""
        self.connected = 1
        self.transport = transport
        if self.factory is not None and self.factory.hold(self):
            self._early: list[bytes] = []  # (what comes in spite of the pause: TLS's)
            transport.pauseProducing()
            return
        facade = self.facade = TwistedTransport(transport, self.clock)
        if isinstance(self.protocol, MachineProtocol):
            facade.close_timeout = self.protocol.close_timeout
        transport.registerProducer(self, True)
        facade._registered = True
        if self.factory is not None:
            self.factory.track(self)
        self.protocol.makeConnection(facade)
        self.connectionMade()

    def release(self) -> None:
        """The factory's startup ended: connect the statewire protocol, give it what came
        meanwhile, and read on."""
        transport = self.transport
        early, self._early = self._early, []
        transport.resumeProducing()  # (first: a pause the protocol makes now stands)
        self.makeConnection(transport)
        for data in early:
            if self.facade is None or self.facade._lost:
                break
            self.dataReceived(data)

    def connectionMade(self) -> None:
        """Nothing more: the statewire protocol's ``connectionMade`` already ran."""

    def handshakeCompleted(self) -> None:
        """Twisted's TLS handshake is done (``IHandshakeListener``): from now on a pause
        from Twisted's transport stops reading, as on any transport."""
        if self.facade is not None:
            self.facade._handshake_completed()

    def dataReceived(self, data: bytes) -> None:
        """Bytes from the peer, to the statewire protocol. Over TLS they also say that
        the handshake completed: a Twisted wrapper (``policies.ProtocolWrapper``:
        ``TimeoutFactory``, ``ThrottlingFactory``...) shows ``ISSLTransport`` but does
        not pass ``handshakeCompleted`` on."""
        facade = self.facade
        if facade is None:
            self._early.append(data)  # (held: its factory still starts)
            return
        if not facade._handshake_done and ISSLTransport.providedBy(self.transport):
            facade._handshake_completed()
        self.protocol.dataReceived(data)

    def connectionLost(self, reason: Any = None) -> None:
        """The connection is gone: the statewire protocol gets statewire's ``Failure``,
        then a producer it registered is stopped (statewire's order)."""
        self.connected = 0
        facade = self.facade
        if facade is None:  # (held, its factory still starting: the protocol never began)
            if self.factory is not None:
                self.factory.untrack(self)
            return
        facade._connection_lost()
        lost = failure_from_twisted(reason if reason is not None else terror.ConnectionDone())
        self.protocol.connected = 0
        try:
            self.protocol.connectionLost(lost)
        finally:
            if facade is not None:
                facade._stop_producer()
            if self.factory is not None:
                self.factory.untrack(self)

    # IHalfCloseableProtocol: the peer's end of stream goes to a protocol that takes it
    # (its ``readConnectionLost``: it closes when it is done); else it closes our side once
    # flushed
    def readConnectionLost(self) -> None:
        """The peer sent everything it will: the protocol's ``readConnectionLost`` if it
        has one, else close once what was written is sent."""
        hook = getattr(self.protocol, "readConnectionLost", None)
        if hook is not None:
            hook()
        elif self.facade is not None:
            self.facade._end_of_stream()

    def writeConnectionLost(self) -> None:
        """Our side's write half closed: nothing to do."""

    # IPushProducer: Twisted's write buffer filled or drained
    def pauseProducing(self) -> None:
        """Twisted's write buffer is full: stop reading, ``transportCongested(True)``."""
        if self.facade is not None:
            self.facade._set_congested(True, self.protocol)

    def resumeProducing(self) -> None:
        """Twisted's write buffer drained: ``transportCongested(False)``, read again."""
        if self.facade is not None:
            self.facade._set_congested(False, self.protocol)

    def stopProducing(self) -> None:
        """Twisted is losing the connection: the producer the statewire protocol
        registered is stopped after its ``connectionLost`` (see :meth:`connectionLost`)."""
