"""The transports a protocol writes to.

Theory of operation
-------------------
Two transports give protocols the same API (Twisted's ``ITransport`` plus producer and
consumer methods):

* :class:`SocketTransport`, for plain TCP and UNIX connections accepted by statewire's
  own ports: it owns the socket. All such sockets of a loop share one :class:`Poller`: an
  epoll set that the loop watches as a single reader (where epoll is missing, each socket
  is registered with the loop's ``add_reader``/``add_writer``). One small object per
  connection, no asyncio transport, protocol, task or callback handle behind it: an idle
  connection costs about what it costs in Twisted, a read goes straight from ``recv`` to
  ``dataReceived``, and accepting costs no coroutine.
* :class:`Transport`, bridged onto an asyncio transport by a :class:`Bridge` (an
  ``asyncio.Protocol``): for TLS, for client connections, and for loops that do not
  support ``add_reader`` or have faster native transports of their own (uvloop).

Both guard every call into user code: an exception there is logged with its traceback and
closes that connection only.

Both switch to TLS in the middle of the stream (``startTLS``, for STARTTLS): the socket
transport puts a sans-IO :class:`~statewire._tls.TLSSession` between its socket and its
protocol, the asyncio one hands its transport to the loop's ``start_tls`` (docs/tls.md).

Writes are coalesced: ``write`` appends to a list, and the list goes to the socket as one
write when the protocol's callback returns (``dataReceived``, ``connectionMade``) or, for
writes made anywhere else (a timer), at the end of the current event-loop turn.

Flow control: when the unsent data -- what the socket has not taken plus what was written
during the current callback and is not yet flushed -- passes :data:`HIGH_WATER` (a peer
that does not read), the transport stops reading, pauses the registered producer and
calls the protocol's ``transportCongested(True)`` (a declared protocol then stops cutting
frames after the current one: pipelined requests wait, in order, in its buffer). The check
is made in ``write`` itself, so a read that holds many requests stops producing replies
as soon as they fill the mark, not after the whole read was handled. All resume once the
unsent data is back under :data:`LOW_WATER` (``transportCongested(False)``). So a peer
that does not read costs at most the high-water mark plus one reply (plus one read) of
memory. A pull (non-streaming) producer is asked for more after each write it makes,
while the buffer is below the high-water mark. Reading is on exactly when the protocol
has not paused it (``pauseProducing``), the write side is not congested, and the
connection is not closing.

Deadlines on the write side, so a peer that never reads cannot hold a connection and its
buffers for ever: a connection closing with unsent data is aborted after
:attr:`~_Connection.close_timeout` seconds (default :data:`CLOSE_TIMEOUT`, 30 s; ``None``
waits for ever), and, when :attr:`~_Connection.write_timeout` is set, a connection whose
unsent data has not moved at all for that many seconds is aborted (checked every
``write_timeout`` seconds: the abort comes between one and two periods after the peer
stopped taking bytes). Both are ``ConnectionAborted`` and logged at INFO (the peer's
fault). Timers run on the connection's own loop. Connections that keep the defaults carry
nothing for them (a :class:`_WriteLimits` is made when one is changed or armed): an idle
connection costs what it did.

Failures of the transport's own I/O path (a ``MemoryError`` joining the output, an error
no handler expected) never reach the event loop: the connection is aborted, its buffers
freed, and the failure logged once at ERROR; every other connection carries on.

Closing, as Twisted: ``loseConnection`` stops reading and closes once everything written
has been sent, including what is written in the rest of the current callback (or, outside
callbacks, the current event-loop turn); ``connectionLost`` then gets ``ConnectionDone``.
``abortConnection`` drops unsent data and closes at once with a TCP reset;
``connectionLost`` gets ``ConnectionAborted`` (a ``ConnectionLost``). The end of the peer's
stream (EOF) closes our side too, after what was written is sent. ``connectionLost`` is
always delivered from the event loop, never from inside the call that closed the
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import select
import socket
import ssl
import struct
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from statewire._tls import TLSSession
from statewire.address import Address, from_sockaddr
from statewire.error import ConnectionAborted, ConnectionDone, ConnectionLost, Failure

if TYPE_CHECKING:
    from statewire._reactor import Reactor

log = logging.getLogger("statewire")

#: unsent bytes above which reading and the producer pause
HIGH_WATER = 256 * 1024
#: unsent bytes under which they resume
LOW_WATER = 64 * 1024
#: bytes asked of the socket per read (as Twisted; asyncio asks 256 KiB)
READ_SIZE = 64 * 1024
#: default :attr:`_Connection.close_timeout`: seconds a closing connection may take to
#: hand its unsent data to a peer before it is aborted
CLOSE_TIMEOUT = 30.0


class Owner:
    """What a connection belongs to: a listening port or a client connector."""

    reactor: Reactor

    def _lost(self, reason: Failure) -> None:
        """A connection of this owner is gone (after ``connectionLost``)."""

    def getDestination(self) -> Address | None:
        """Where a client connector's connections go; ``None`` for a port, whose
        connections were accepted (``startTLS`` takes the server side on those)."""
        return None


#: poller interest bits
READ = 1
WRITE = 2


class Poller:
    """What tells the :class:`SocketTransport` objects of one loop that their sockets
    are ready: :class:`EpollPoller`, or :class:`LoopPoller` where epoll is missing."""

    loop: asyncio.AbstractEventLoop

    @staticmethod
    def make(loop: asyncio.AbstractEventLoop) -> Poller:
        """An epoll poller where the platform has epoll, else one on the loop's readers."""
        if hasattr(select, "epoll"):
            return EpollPoller(loop)
        return LoopPoller(loop)

    def update(self, fd: int, transport: SocketTransport, interest: int) -> None:
        """Watch ``fd`` for ``interest`` (``READ | WRITE``; 0: not at all)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching (the reactor shut down, or its loop changed)."""


class EpollPoller(Poller):
    """Every :class:`SocketTransport` of one loop, in one epoll set the loop watches.

    Level-triggered; a socket is in the set only while its transport reads or has bytes
    to send (so a paused, hung-up socket does not wake the loop). When the loop reports
    the set readable, one ``epoll.poll(0)`` returns the ready sockets and each transport
    is called directly.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._watched: dict[int, SocketTransport] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def update(self, fd: int, transport: SocketTransport, interest: int) -> None:
        mask = (select.EPOLLIN if interest & READ else 0) | (
            select.EPOLLOUT if interest & WRITE else 0
        )
        watched = self._watched
        if fd in watched:
            if mask:
                self._epoll.modify(fd, mask)
            else:
                del watched[fd]
                self._epoll.unregister(fd)
        elif mask:
            self._epoll.register(fd, mask)
            watched[fd] = transport

    def _ready(self) -> None:
        watched = self._watched
        for fd, events in self._epoll.poll(0):
            transport = watched.get(fd)
            if transport is None:
                continue
            if events & _READABLE and transport._reading:
                transport._read_ready()
            if events & _WRITABLE and transport._pending is not None:
                transport._write_ready()

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()


_READABLE = (
    getattr(select, "EPOLLIN", 1) | getattr(select, "EPOLLHUP", 0) | getattr(select, "EPOLLERR", 0)
)
_WRITABLE = (
    getattr(select, "EPOLLOUT", 4)
    | getattr(select, "EPOLLHUP", 0)
    | getattr(select, "EPOLLERR", 0)
)


class LoopPoller(Poller):
    """The fallback: each socket registered with the loop's ``add_reader``/``add_writer``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._interest: dict[int, int] = {}

    def update(self, fd: int, transport: SocketTransport, interest: int) -> None:
        before = self._interest.pop(fd, 0)
        if interest:
            self._interest[fd] = interest
        loop = self.loop
        if interest & READ and not before & READ:
            loop.add_reader(fd, transport._read_ready)
        elif before & READ and not interest & READ:
            loop.remove_reader(fd)
        if interest & WRITE and not before & WRITE:
            loop.add_writer(fd, transport._write_ready)
        elif before & WRITE and not interest & WRITE:
            loop.remove_writer(fd)


class _Connection:
    """What both transports share: coalesced writes, producers, guarded user calls."""

    __slots__ = (
        "_closed",
        "_flush_scheduled",
        "_in_callback",
        "_limits",
        "_out",
        "_owner",
        "_producer",
        "_read_paused",
        "_room",
        "_streaming",
        "_write_paused",
        "disconnecting",
        "on_closing",
        "protocol",
    )

    _loop: asyncio.AbstractEventLoop

    def __init__(self, owner: Owner) -> None:
        self._owner = owner
        self.protocol: Any = None
        self._out: list[bytes] | None = None  # made at the first write
        self._flush_scheduled = False
        self._in_callback = False
        self._closed = False
        self._read_paused = False
        self._write_paused = False
        self._producer: Any = None
        self._streaming = True
        #: bytes that may still be written before the unsent data passes HIGH_WATER (kept
        #: exact by the socket transport, recounted when it runs out on the others)
        self._room = HIGH_WATER
        #: the write deadlines and their timers; ``None`` while all are the defaults
        self._limits: _WriteLimits | None = None
        #: True once the connection is closing (``loseConnection``, ``abortConnection``,
        #: or the peer's end of stream)
        self.disconnecting = False
        #: called once when ``loseConnection`` or ``abortConnection`` is first called (a
        #: declarative protocol stops framing the bytes it already holds)
        self.on_closing: Callable[[], object] | None = None

    # -- what each transport does its own way ---------------------------------------------

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _set_reading(self, reading: bool) -> None:
        raise NotImplementedError

    def _write_buffer_size(self) -> int:
        """Bytes written to the transport and not yet taken by the kernel."""
        raise NotImplementedError

    def _sockaddr(self, peer: bool) -> Any:
        raise NotImplementedError

    def _unix(self) -> bool:
        raise NotImplementedError

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the peer; a no-op after the connection closed.

        ``data`` is a bytes-like object: ``bytes``, ``bytearray`` or ``memoryview`` (the
        last two are copied). Anything else raises ``TypeError`` naming its type.
        """
        if type(data) is not bytes:
            data = _as_bytes(data, "write")
        if self._closed:
            return
        out = self._out
        if out is None:
            out = self._out = []
        out.append(data)
        room = self._room - len(data)
        self._room = room
        if room < 0 and not self._write_paused:
            self._recount()
        if not self._in_callback and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """Queue each item of ``data`` (bytes-like objects, as :meth:`write`) in turn."""
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            raise TypeError(
                f"writeSequence() takes an iterable of bytes, not {type(data).__name__}"
            )
        for item in data:
            self.write(item)

    def _recount(self) -> None:
        """The write budget ran out: count it again (the peer may have taken bytes since
        it was last counted) and pause when the unsent data really is over the mark."""
        out = self._out
        queued = sum(map(len, out)) if out else 0
        self._room = HIGH_WATER - self._write_buffer_size() - queued
        if self._room < 0:
            self._pause_writing()

    def _flush(self) -> None:
        self._flush_scheduled = False
        try:
            out = self._out
            if self._closed:
                if out:
                    out.clear()
                return
            if out:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                limits = self._limits
                if limits is not None:
                    limits.handed += len(data)
                self._send(data)
                self._room = HIGH_WATER - self._write_buffer_size()
                if (
                    limits is not None
                    and limits.write_timeout is not None
                    and limits.stall_timer is None
                    and self._unsent()
                ):
                    self._watch_stall(limits)
                if self._write_paused and self._drained():
                    # paused from write() before anything was sent, and the peer took it
                    # all: resume, from the loop (not from inside this flush)
                    self._loop.call_soon(self._resume_if_drained)
                if self._producer is not None and not self._streaming:
                    self._loop.call_soon(self._pull)
            if self.disconnecting and not self._closed:
                self._finish()
        except Exception as exc:
            self._fail(exc)

    def _drained(self) -> bool:
        """Whether a pause no one will lift any more (the buffer never filled) may end."""
        raise NotImplementedError

    def _resume_if_drained(self) -> None:
        try:
            if self._write_paused and not self._closed and self._drained():
                self._resume_writing()
        except Exception as exc:
            self._fail(exc)

    def _finish(self) -> None:
        """Closing, and everything written has been handed over: close when sent."""
        raise NotImplementedError

    def _pull(self) -> None:
        """Ask a pull (non-streaming) producer for more while the buffer has room."""
        producer = self._producer
        if producer is not None and not (self._streaming or self._write_paused or self._closed):
            self._call(producer.resumeProducing)

    # -- deadlines on the write side -----------------------------------------------------

    def _taken(self, limits: _WriteLimits) -> int:
        """How far the peer has taken what we wrote: bytes handed over, less what waits in
        our buffer and what the kernel still holds for the peer (sent or not, never
        acknowledged; Linux tells it). It grows only when the peer reads: the kernel's
        send buffer filling up is no progress (a stalled peer's window closes, and the
        kernel takes nothing until half its buffer drains)."""
        return limits.handed - self._unsent() - _unacked(self._socket())

    def _unsent(self) -> int:
        """Bytes written and not yet taken by the kernel, wherever they wait (what the
        write deadlines watch; flow control counts :meth:`_write_buffer_size`)."""
        return self._write_buffer_size()

    def _socket(self) -> Any:
        """The connection's socket (anything with ``fileno``), or None."""
        raise NotImplementedError

    def _watch_stall(self, limits: _WriteLimits) -> None:
        seconds = limits.write_timeout
        if seconds is not None:
            taken = self._taken(limits)
            limits.stall_timer = self._loop.call_later(seconds, self._check_stall, taken)

    def _check_stall(self, taken_before: int) -> None:
        """``write_timeout`` seconds ago the peer had taken ``taken_before`` bytes: abort
        if it has taken none since (and data is waiting), else watch on."""
        limits = self._write_limits()
        limits.stall_timer = None
        try:
            unsent = self._unsent()
            if not unsent or limits.write_timeout is None:  # drained, or the limit lifted
                return
            if self._taken(limits) <= taken_before:
                log.info(
                    "the connection from %s took no byte of %d unsent in %s s; aborting it",
                    _peer(self),
                    unsent,
                    limits.write_timeout,
                )
                self._abort(ConnectionAborted("write timeout"), reset=True)
            else:
                self._watch_stall(limits)
        except Exception as exc:
            self._fail(exc)

    def _close_when_sent(self) -> None:
        """Closing with unsent data: abort if the peer stops taking it."""
        seconds = self.close_timeout
        if seconds is not None:
            limits = self._write_limits()
            if limits.close_timer is None:
                taken = self._taken(limits)
                limits.close_timer = self._loop.call_later(seconds, self._close_expired, taken)

    def _close_expired(self, taken_before: int) -> None:
        """``close_timeout`` seconds ago the peer had taken ``taken_before`` bytes: a peer
        still reading (a long download) gets another period; one that took nothing is
        aborted."""
        limits = self._write_limits()
        limits.close_timer = None
        try:
            seconds = self.close_timeout
            if seconds is None:  # lifted since
                return
            taken = self._taken(limits)
            if taken > taken_before:
                limits.close_timer = self._loop.call_later(seconds, self._close_expired, taken)
                return
            log.info(
                "the connection from %s took none of its last %d bytes in the %s s after "
                "closing; aborting it",
                _peer(self),
                self._unsent(),
                seconds,
            )
            self._abort(ConnectionAborted("close timeout"), reset=True)
        except Exception as exc:
            self._fail(exc)

    def _cancel_timers(self) -> None:
        limits = self._limits
        if limits is not None:
            for timer in (limits.close_timer, limits.stall_timer):
                if timer is not None:
                    timer.cancel()
            limits.close_timer = limits.stall_timer = None

    def _fail(self, exc: Exception) -> None:
        """The transport's own I/O path raised (out of memory, ...): abort this
        connection only, free its buffers, log it once."""
        self._out = None
        if self._closed:
            return
        try:
            log.error(
                "the transport of the connection from %s failed (%s); aborting it",
                _peer(self),
                type(exc).__name__,
                exc_info=exc,
            )
            self._abort(ConnectionLost(f"transport failed: {type(exc).__name__}"), reset=True)
        except Exception:  # nothing more can be done for it; the loop must not see it
            log.exception("aborting the failed connection from %s raised", _peer(self))
        finally:
            self._closed = True

    # -- closing -------------------------------------------------------------------------

    def _closing(self) -> None:
        self.disconnecting = True
        hook, self.on_closing = self.on_closing, None
        if hook is not None:
            hook()

    def _deliver_lost(self, exc: BaseException | None) -> None:
        """Tell the protocol, the producer and the owner that the connection is gone."""
        self._cancel_timers()
        self._out = None
        self._owner.reactor._connections.discard(self)
        protocol = self.protocol
        if protocol is None:
            return
        if exc is None:
            reason = Failure(ConnectionDone())
        elif isinstance(exc, (ConnectionLost, ssl.SSLError)):  # TLS failures as Twisted's
            reason = Failure(exc)
        else:
            reason = Failure(ConnectionLost(str(exc)))
        protocol.connected = 0
        self._call(protocol.connectionLost, reason)
        if self._producer is not None:
            self._call(self._producer.stopProducing)
            self._producer = None
        self._owner._lost(reason)

    @property
    def reactor(self) -> Reactor:
        """The reactor serving this connection (its timers run on the same loop)."""
        return self._owner.reactor

    def _write_limits(self) -> _WriteLimits:
        limits = self._limits
        if limits is None:
            limits = self._limits = _WriteLimits()
        return limits

    @property
    def close_timeout(self) -> float | None:
        """Seconds a closing connection with unsent data may take to hand it to the peer
        before it is aborted (default :data:`CLOSE_TIMEOUT`, 30 s; ``None``: wait for
        ever, as Twisted). Set it per connection, e.g. in ``connectionMade``."""
        limits = self._limits
        return CLOSE_TIMEOUT if limits is None else limits.close_timeout

    @close_timeout.setter
    def close_timeout(self, seconds: float | None) -> None:
        _check_timeout(seconds, "close_timeout")
        if seconds != self.close_timeout:
            self._write_limits().close_timeout = seconds

    @property
    def write_timeout(self) -> float | None:
        """Seconds unsent data may wait without the peer taking a byte of it before the
        connection is aborted (default ``None``: no limit). What the kernel takes counts,
        and it takes in steps of up to half its send buffer: use seconds, not fractions."""
        limits = self._limits
        return None if limits is None else limits.write_timeout

    @write_timeout.setter
    def write_timeout(self, seconds: float | None) -> None:
        _check_timeout(seconds, "write_timeout")
        if seconds != self.write_timeout:
            self._write_limits().write_timeout = seconds

    # -- addresses -----------------------------------------------------------------------

    def getPeer(self) -> Address:
        """The other side's address."""
        return from_sockaddr(self._unix(), self._sockaddr(True))

    def getHost(self) -> Address:
        """This side's address."""
        return from_sockaddr(self._unix(), self._sockaddr(False))

    # -- TLS -----------------------------------------------------------------------------

    def startTLS(
        self,
        context: ssl.SSLContext,
        server_side: bool | None = None,
        server_hostname: str | None = None,
    ) -> None:
        """Switch this connection to TLS with ``context``, from this point of the stream
        on (as Twisted's ``ITLSTransport.startTLS``; SMTP's STARTTLS, RFC 3207).

        ``server_side`` defaults to this side's role: the server side on an accepted
        connection, the client side on one made with ``connectTCP``/``connectUNIX``, which
        then names ``server_hostname`` (default: the host it connected to) to the server
        and, when ``context.check_hostname`` is set, checks the certificate against it.

        * Bytes written before the call go first, in plaintext, in order; bytes written
          after it are encrypted (held until the handshake completes).
        * Every byte read after the call is TLS. What the protocol was already given is
          its own business (a STARTTLS server drops what followed the command in its
          buffer before calling this); what was received but not yet given to it (held
          while it paused reading) is dropped, never delivered: plaintext a client sent
          behind its command cannot pass for protected data (CVE-2011-0411).
        * The handshake reads even while the protocol pauses reading (it gets no data
          until it resumes). A handshake that fails loses the connection, and
          ``connectionLost`` gets a ``Failure`` of the ``ssl.SSLError``
          (``ssl.SSLEOFError`` when the peer closed during it).
        * Flow control, ``loseConnection`` (our close_notify, then close),
          ``abortConnection``, ``close_timeout`` and ``write_timeout`` work on as before;
          unsent bytes count plaintext until encrypted, then ciphertext (docs/tls.md).

        Raises ``RuntimeError`` on a connection that already is TLS (``startTLS`` called
        before, ``listenSSL``, ``connectSSL``) or that is closing; ``TypeError`` when
        ``context`` is not an ``ssl.SSLContext``; ``ValueError`` for a client side that
        checks host names with no host name to check.
        """
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"startTLS() takes an ssl.SSLContext, not {type(context).__name__}")
        already = self._tls_in_use()
        if already:
            raise RuntimeError(f"startTLS() on a connection that {already}")
        if self._closed or self.disconnecting:
            raise RuntimeError("startTLS() on a connection that is closing")
        destination = self._owner.getDestination()
        if server_side is None:
            server_side = destination is None
        if not server_side and server_hostname is None:
            server_hostname = getattr(destination, "host", None)
            if server_hostname is None and context.check_hostname:
                raise ValueError("startTLS(): the context checks host names: give one")
        self._start_tls(context, server_side, server_hostname)

    def _tls_in_use(self) -> str | None:
        """Why this connection cannot start TLS (it already did), or None."""
        raise NotImplementedError

    def _start_tls(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> None:
        raise NotImplementedError

    def _ssl_object(self) -> ssl.SSLObject | None:
        """The connection's ``SSLObject`` once its TLS handshake completed, else None."""
        raise NotImplementedError

    def getPeerCertificate(self, binary_form: bool = False) -> Any:
        """The peer's certificate once a TLS handshake completed, as
        ``ssl.SSLObject.getpeercert(binary_form)`` gives it (a dict, empty when it was
        not verified, or DER bytes); ``None`` without TLS or when the peer sent none."""
        ssl_object = self._ssl_object()
        return None if ssl_object is None else ssl_object.getpeercert(binary_form)

    # -- the read side as a producer -----------------------------------------------------

    def _update_reading(self) -> None:
        if not self._closed:
            self._set_reading(not (self._read_paused or self._write_paused or self.disconnecting))

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

    def loseConnection(self) -> None:
        """Stop reading; close once everything written has been sent, including what is
        written in the rest of the current callback (or event-loop turn), as Twisted."""
        if self.disconnecting or self._closed:
            return
        self._closing()
        self._update_reading()
        if not self._in_callback and not self._flush_scheduled:
            self._flush_scheduled = True  # the end of this turn flushes and closes
            self._loop.call_soon(self._flush)

    # -- the write side: a producer that fills this transport -----------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Let ``producer`` be paused (streaming) or pulled (not streaming) by our buffer."""
        if self._producer is not None:
            raise RuntimeError(f"producer {self._producer!r} is already registered")
        if self._closed:
            producer.stopProducing()  # as Twisted: stopped at once, and not kept
            return
        self._producer = producer
        self._streaming = streaming
        if not streaming:
            producer.resumeProducing()
        elif self._write_paused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """Forget the registered producer."""
        self._producer = None

    def peer_progress(self) -> int:
        """A count that grows as the peer reads what we wrote (bytes it acknowledged,
        where the platform tells, else bytes the kernel took); counted from the first
        congestion or write deadline of the connection: compare two readings."""
        return self._taken(self._write_limits())

    def _pause_writing(self) -> None:
        if self._write_paused:
            return
        self._write_limits()  # count what is handed over from now (peer_progress)
        self._write_paused = True
        self._update_reading()
        hook = getattr(self.protocol, "transportCongested", None)
        if hook is not None:
            self._call(hook, True)
        if self._producer is not None and self._streaming:
            self._call(self._producer.pauseProducing)

    def _resume_writing(self) -> None:
        if not self._write_paused:
            return
        self._write_paused = False
        out = self._out
        self._room = HIGH_WATER - self._write_buffer_size() - (sum(map(len, out)) if out else 0)
        # the frames held back are answered before reading starts again: a read now could
        # bring the peer's end of stream (over TLS, asyncio then shuts the transport and
        # what those frames write is lost)
        hook = getattr(self.protocol, "transportCongested", None)
        if hook is not None:
            self._call(hook, False)  # may fill the buffer again: then it paused again
        if not self._write_paused:
            self._update_reading()
        if self._producer is not None and not self._write_paused:
            self._call(self._producer.resumeProducing)

    # -- user code -----------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any) -> None:
        """Call user code; an exception is logged and closes this connection only."""
        outer = self._in_callback
        self._in_callback = True
        try:
            method(*args)
        except Exception:
            self._user_error(method)
        finally:
            self._in_callback = outer
            if not outer and (self._out or self.disconnecting):
                self._flush()

    def _user_error(self, method: Callable[..., Any]) -> None:
        name = _name(method)
        log.exception("%s raised; closing the connection from %s", name, _peer(self))
        if not self._closed:  # closed at once, unsent data dropped, but without a reset
            self._abort(ConnectionLost(f"{name} raised"), reset=False)

    def abortConnection(self) -> None:
        """Close at once with a reset, dropping unsent data (``ConnectionAborted``)."""
        self._abort(ConnectionAborted(), reset=True)

    def _abort(self, reason: ConnectionLost, reset: bool) -> None:
        raise NotImplementedError


def _check_timeout(seconds: float | None, name: str) -> None:
    """``None``, or a finite number of seconds > 0 (NaN would disorder the loop's timers)."""
    if seconds is None:
        return
    try:
        valid = math.isfinite(seconds) and seconds > 0
    except TypeError:
        raise TypeError(f"{name} must be a number of seconds or None, not {seconds!r}") from None
    if not valid:
        raise ValueError(f"{name} must be a finite number of seconds > 0 or None, not {seconds!r}")


#: the ioctl that tells the bytes a socket's kernel holds for the peer, unacknowledged
_OUTQ: int | None = None
if sys.platform == "linux":
    import fcntl
    import termios

    _OUTQ = termios.TIOCOUTQ


def _unacked(sock: Any) -> int:
    """Bytes the kernel holds for the peer on ``sock`` (sent or not, unacknowledged); 0
    where the platform cannot tell or the socket is gone."""
    if sock is None or _OUTQ is None:
        return 0
    try:
        count: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0
    return count


class _WriteLimits:
    """A connection's write deadlines, once one differs from the default or is armed."""

    __slots__ = ("close_timeout", "close_timer", "handed", "stall_timer", "write_timeout")

    def __init__(self) -> None:
        self.close_timeout: float | None = CLOSE_TIMEOUT
        self.write_timeout: float | None = None
        #: bytes handed to the socket (or asyncio transport) since this was made: with
        #: what is still unsent, how much the peer took (progress, for write_timeout)
        self.handed = 0
        self.close_timer: asyncio.TimerHandle | None = None
        self.stall_timer: asyncio.TimerHandle | None = None


class SocketTransport(_Connection):
    """A TCP or UNIX connection driven straight from asyncio's selector loop.

    After ``startTLS`` a :class:`~statewire._tls.TLSSession` sits between the socket and
    the protocol: what is read goes through it before ``dataReceived``, what is flushed
    goes through it before ``send``; buffers, poller, timers and deadlines are the same.
    """

    __slots__ = ("_host", "_peer", "_pending", "_poller", "_reading", "_sock", "_tls")

    def __init__(self, owner: Owner, poller: Poller, sock: socket.socket, peer: Any) -> None:
        super().__init__(owner)
        self._poller = poller
        self._sock = sock
        self._peer = peer
        self._host: Any = None  # the local address, noted when the socket closes
        self._pending: bytearray | None = None  # unsent bytes, while the socket is full
        self._reading = False  # whether the socket is watched for reads
        self._tls: TLSSession | None = None  # after startTLS

    @classmethod
    def accepted(
        cls, owner: Owner, poller: Poller, sock: socket.socket, peer: Any, factory: Any
    ) -> None:
        """Serve an accepted connection: build its protocol, connect it, start reading."""
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reactor = owner.reactor
        transport = cls(owner, poller, sock, peer)
        try:
            protocol = factory.buildProtocol(transport.getPeer())
        except Exception:
            log.exception("%r.buildProtocol raised; refusing the connection", factory)
            protocol = None
        if protocol is None:
            sock.close()
            return
        transport.protocol = protocol
        reactor._connections.add(transport)
        transport._call(protocol.makeConnection, transport)
        try:
            transport._update_reading()
        except OSError as error:  # the poller could not take it (out of memory...)
            transport._close(error)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:  # type: ignore[override]
        return self._poller.loop

    # -- the socket ----------------------------------------------------------------------

    def _read_ready(self) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        except Exception as exc:  # MemoryError...
            self._fail(exc)
            return
        if not data:
            self._end_of_stream()
            return
        if self._tls is not None:
            self._tls.receive(data)
            try:
                self._tls_pump()
            except Exception as exc:  # MemoryError...
                self._fail(exc)
            return
        # _call, inlined: this runs once per read
        self._in_callback = True
        try:
            self.protocol.dataReceived(data)
        except Exception:
            self._user_error(self.protocol.dataReceived)
        finally:
            self._in_callback = False
        if self._out or self.disconnecting:
            self._flush()

    def _send(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            data = tls.encrypt(data)
            if not data:  # held until the handshake completes
                return
        self._put(data)

    def _put(self, data: bytes) -> None:
        """Send ``data`` as it is (ciphertext, over TLS), or queue what the socket refuses."""
        pending = self._pending
        if pending is None:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._close(exc)
                return
            if sent == len(data):
                return
            pending = self._pending = bytearray(memoryview(data)[sent:])
            self._watch()
        else:
            pending += data
        if len(pending) > HIGH_WATER and not self._write_paused:
            self._pause_writing()

    def _write_ready(self) -> None:
        pending = self._pending
        if pending is None:
            return
        try:
            try:
                sent = self._sock.send(pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close(exc)
                return
            del pending[:sent]
            self._room += sent
            if not pending:
                self._pending = None
                self._watch()
                # closing, and what was written is sent: close, over TLS after our
                # close_notify (a flush to come, when something was written since,
                # closes after it)
                if self.disconnecting and not self._out:
                    self._finish()
                    if self._closed:
                        return
            if self._write_paused and self._drained():
                self._resume_writing()
        except Exception as exc:
            self._fail(exc)

    def _drained(self) -> bool:
        return self._write_buffer_size() <= LOW_WATER

    def _set_reading(self, reading: bool) -> None:
        tls = self._tls
        if tls is not None:
            if tls.handshaking:
                reading = True  # the handshake goes on whether the protocol reads or not
            elif reading and tls.unread:  # kept while the protocol did not read: its turn
                self._loop.call_soon(self._tls_resume)
        if reading != self._reading:
            self._reading = reading
            self._watch()

    def _watch(self) -> None:
        interest = (READ if self._reading else 0) | (0 if self._pending is None else WRITE)
        self._poller.update(self._sock.fileno(), self, interest)

    def _write_buffer_size(self) -> int:
        unsent = 0 if self._pending is None else len(self._pending)
        tls = self._tls
        return unsent if tls is None else unsent + tls.buffered

    def _socket(self) -> Any:
        return self._sock

    def _unix(self) -> bool:
        return self._sock.family == socket.AF_UNIX

    def _sockaddr(self, peer: bool) -> Any:
        if peer:
            return self._peer
        if self._closed:
            return self._host
        return self._sock.getsockname()

    # -- TLS -----------------------------------------------------------------------------

    def _tls_in_use(self) -> str | None:
        return None if self._tls is None else "already called it"

    def _start_tls(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> None:
        session = TLSSession(context, server_side, server_hostname)
        self._flush()  # what was written before the call goes first, in plaintext
        if self._closed:
            return
        self._tls = session
        self._update_reading()  # on, for the handshake, even if the protocol paused it
        self._tls_pump()  # a client says hello

    def _ssl_object(self) -> ssl.SSLObject | None:
        return None if self._tls is None else self._tls.ssl_object

    def _tls_pump(self) -> None:
        """Run the TLS session on what it received: the handshake, then plaintext for
        the protocol (while it reads), then the peer's end of stream."""
        tls = self._tls
        assert tls is not None
        handshaking = tls.handshaking
        try:
            data = tls.read(not (self._read_paused or self._write_paused or self.disconnecting))
        except ssl.SSLError as error:
            self._tls_failed(error)
            return
        output = tls.take_output()
        if output:
            self._put(output)
            if self._closed:
                return
        if handshaking and not tls.handshaking:
            self._update_reading()  # the protocol's pauses rule reading again
            if self._write_paused and self._drained():
                self._loop.call_soon(self._resume_if_drained)
        if data:
            self._call(self.protocol.dataReceived, data)
        if tls.eof and not self.disconnecting:
            self._end_of_stream()
        elif not self._in_callback and (self._out or self.disconnecting):
            self._flush()

    def _tls_resume(self) -> None:
        """Reading resumed: deliver what TLS kept while it was off."""
        if self._reading and not self._closed and self._tls is not None:
            try:
                self._tls_pump()
            except Exception as exc:
                self._fail(exc)

    def _tls_failed(self, error: ssl.SSLError) -> None:
        """The peer broke TLS (or left during the handshake): send it our alert if there
        is one, then close; ``connectionLost`` gets the error."""
        log.info("TLS with %s failed (%s); closing the connection", _peer(self), error)
        tls = self._tls
        alert = b"" if tls is None else tls.take_output()
        if alert and self._pending is None:
            with contextlib.suppress(OSError):  # a courtesy: the socket closes either way
                self._sock.send(alert)
        self._close(error)

    # -- closing -------------------------------------------------------------------------

    def _finish(self) -> None:
        tls = self._tls
        if tls is not None:
            if tls.buffered:  # written for after the handshake: it must complete first
                self._close_when_sent()
                return
            notify = tls.close()
            if notify:
                self._put(notify)
                if self._closed:
                    return
        if self._pending is None:
            self._close(None)
        else:  # _write_ready closes once it is sent, or close_timeout aborts
            self._close_when_sent()

    def _abort(self, reason: ConnectionLost, reset: bool) -> None:
        if self._closed:
            return
        self._closing()
        if reset:
            _reset_on_close(self._sock)
        self._close(reason)

    def _end_of_stream(self) -> None:
        """The peer sent everything it will: close our side too, once flushed (without
        ``on_closing``: frames already buffered are still the protocol's to deliver)."""
        if self._tls is not None and self._tls.handshaking:
            self._tls_failed(ssl.SSLEOFError("the peer closed during the TLS handshake"))
            return
        self.disconnecting = True
        try:
            self._update_reading()
        except Exception as exc:
            self._fail(exc)
            return
        self._flush()  # what was written this turn goes too; then it closes once sent

    def _close(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timers()
        if self._reading or self._pending is not None:
            self._reading = False
            self._pending = None
            with contextlib.suppress(OSError):  # the socket is closed below all the same
                self._watch()
        sock = self._sock
        try:
            self._host = sock.getsockname()
        except OSError:
            self._host = "" if sock.family == socket.AF_UNIX else ("", 0)
        sock.close()
        self._loop.call_soon(self._deliver_lost, exc)


class Transport(_Connection):
    """A connection through an asyncio transport (TLS, clients, native transports).

    A loop may deliver a read after the protocol paused reading (uvloop starts reading
    only after ``connection_made`` returns, so a pause made there comes too late for
    it): such data is held, and delivered in order once reading resumes.

    ``startTLS`` hands the asyncio transport to the loop's ``start_tls`` (asyncio's or
    uvloop's), with the same :class:`Bridge` as the protocol above TLS; what is written
    during the handshake is held here, then written to the TLS transport that comes out
    of it, which the connection uses from then on.
    """

    __slots__ = (
        "_aborted",
        "_held",
        "_loop",
        "_loop_paused",
        "_reported",
        "_tls_held",
        "_transport",
        "_under",
    )

    _aborted: ConnectionLost | None

    def __init__(
        self, owner: Owner, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport
    ) -> None:
        super().__init__(owner)
        self._loop = loop
        self._held = b""
        self._aborted = None  # why we aborted, when we did
        self._loop_paused = False  # asyncio's own buffer is over its high-water mark
        self._reported = False  # connectionLost was delivered
        #: written since startTLS, while the handshake runs (None: not upgrading)
        self._tls_held: bytearray | None = None
        self._transport = transport
        #: the plain transport beneath TLS, after startTLS
        self._under: asyncio.Transport | None = None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, data: bytes) -> None:
        held = self._tls_held
        if held is not None:  # for after the TLS handshake
            held += data
            return
        self._transport.write(data)

    def _set_reading(self, reading: bool) -> None:
        if self._tls_held is not None:
            return  # start_tls reads for the handshake; the switch applies our wish
        # not guarded by is_reading(): uvloop's transports say False until they start
        # reading, after connection_made (both loops' calls do nothing when redundant)
        if reading:
            self._transport.resume_reading()
        else:
            self._transport.pause_reading()

    def _received(self, data: bytes) -> None:
        """A read from the asyncio transport: delivered, or held while reading is paused
        (or while older held data waits, or until the switch to TLS is made)."""
        if self._read_paused or self._held or self._tls_held is not None:
            self._held += data
            if self._read_paused:
                self._set_reading(False)
            return
        self._call(self.protocol.dataReceived, data)

    def resumeProducing(self) -> None:
        """Read from the peer again; data held while paused comes first."""
        super().resumeProducing()
        if self._held:
            self._loop.call_soon(self._release)

    def _release(self) -> None:
        if self._held and not self._read_paused and not self._closed and self._tls_held is None:
            data, self._held = self._held, b""
            self._call(self.protocol.dataReceived, data)

    def _write_buffer_size(self) -> int:
        size = self._transport.get_write_buffer_size()
        held = self._tls_held
        return size if held is None else size + len(held)

    def _unsent(self) -> int:
        # asyncio's TLS transport counts only what it holds: the ciphertext it handed to
        # the transport beneath waits there (all of a large write, at once)
        under = self._under
        size = self._write_buffer_size()
        return size if under is None else size + under.get_write_buffer_size()

    def _socket(self) -> Any:
        return self._transport.get_extra_info("socket")

    def _drained(self) -> bool:
        # asyncio says resume_writing only after it said pause_writing: when it did not,
        # nothing else would lift a pause made from write()
        return not self._loop_paused

    def _unix(self) -> bool:
        sock = self._transport.get_extra_info("socket")
        return sock is not None and sock.family == socket.AF_UNIX

    def _sockaddr(self, peer: bool) -> Any:
        return self._transport.get_extra_info("peername" if peer else "sockname")

    def loseConnection(self) -> None:
        self._held = b""  # a closing transport reads no more: held reads were never read
        super().loseConnection()

    def _finish(self) -> None:
        if self._tls_held:  # written for after the handshake: it must complete first
            self._close_when_sent()
            return
        self._closed = True  # nothing more is written; asyncio sends its buffer, then closes
        self._transport.close()
        if self._unsent():
            self._close_when_sent()

    def _abort(self, reason: ConnectionLost, reset: bool) -> None:
        self._held = b""
        if self._aborted is not None:
            return
        self._closing()
        if self._out:
            self._out.clear()
        if self._tls_held:
            self._tls_held.clear()
        self._aborted = reason
        sock = self._transport.get_extra_info("socket")
        if reset and sock is not None:
            _reset_on_close(sock)
        self._transport.abort()

    def _deliver_lost(self, exc: BaseException | None) -> None:
        # once: a connection lost around the end of a TLS handshake is reported both by
        # the handshake's end and by asyncio's TLS protocol
        if not self._reported:
            self._reported = True
            super()._deliver_lost(exc)

    # -- TLS -----------------------------------------------------------------------------

    def _tls_in_use(self) -> str | None:
        if self._tls_held is not None:
            return "already called it"
        if self._transport.get_extra_info("sslcontext") is not None:
            return "is TLS already"
        return None

    def _ssl_object(self) -> ssl.SSLObject | None:
        if self._tls_held is not None:
            return None
        ssl_object: ssl.SSLObject | None = self._transport.get_extra_info("ssl_object")
        return ssl_object

    def _start_tls(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> None:
        plain = self._transport
        bridge = cast(Bridge, plain.get_protocol())
        self._held = b""  # received as plaintext, never delivered: never will be
        plain.pause_reading()  # from here on, asyncio reads for TLS only
        self._flush()  # what was written before the call goes first, in plaintext
        self._tls_held = bytearray()
        task = self._loop.create_task(
            self._upgrade(plain, bridge, context, server_side, server_hostname)
        )
        _upgrades.add(task)
        task.add_done_callback(_upgrades.discard)

    async def _upgrade(
        self,
        plain: asyncio.Transport,
        bridge: Bridge,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        """Run the handshake on ``plain``, then write through the TLS transport."""
        try:
            tls = await self._loop.start_tls(
                plain, bridge, context, server_side=server_side, server_hostname=server_hostname
            )
        except asyncio.CancelledError:  # the loop is closing
            self._upgrade_failed(ConnectionLost("the TLS handshake was cancelled"))
            raise
        except Exception as error:
            aborted = self._aborted  # by us: then that is the reason
            self._upgrade_failed(aborted if aborted else _handshake_error(error, self))
            return
        if tls is None or tls.is_closing() or self._closed or self._aborted is not None:
            # closed during the handshake: by us, or (reported by the bridge) just after it
            self._loop.call_soon(self._upgrade_failed, None)
            return
        try:
            self._transport, self._under = tls, plain
            held, self._tls_held = self._tls_held, None
            self._loop_paused = False  # asyncio's pauses come from the TLS transport now
            tls.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
            if held:
                tls.write(bytes(held))
            self._update_reading()
            if self._held:
                self._loop.call_soon(self._release)
            if self._write_paused:
                self._loop.call_soon(self._resume_if_drained)
            if self.disconnecting:
                self._flush()  # closing: now with TLS's close_notify
        except Exception as exc:
            self._fail(exc)

    def _upgrade_failed(self, error: BaseException | None) -> None:
        """The connection ended before it could switch to TLS: report it."""
        if self._tls_held:
            self._tls_held.clear()
        self._closed = True
        self._deliver_lost(self._aborted or error)


class Bridge(asyncio.Protocol):
    """The asyncio protocol behind one :class:`Transport`: builds and drives the user's
    protocol."""

    __slots__ = ("factory", "owner", "transport")

    def __init__(self, owner: Owner, factory: Any) -> None:
        self.owner = owner
        self.factory = factory
        self.transport: Transport | None = None

    @property
    def protocol(self) -> Any:
        """The user's protocol (``None`` until connected, or when refused)."""
        return None if self.transport is None else self.transport.protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's classes; both have these methods.
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        wrapped = Transport(self.owner, self.owner.reactor.loop, transport)
        self.transport = wrapped
        try:
            protocol = self.factory.buildProtocol(wrapped.getPeer())
        except Exception:
            log.exception("%r.buildProtocol raised; refusing the connection", self.factory)
            protocol = None
        if protocol is None:
            transport.abort()
            return
        wrapped.protocol = protocol
        self.owner.reactor._connections.add(wrapped)
        wrapped._call(protocol.makeConnection, wrapped)

    def data_received(self, data: bytes) -> None:
        wrapped = self.transport
        if wrapped is not None and wrapped.protocol is not None:
            wrapped._received(data)

    def eof_received(self) -> bool:
        if self.transport is not None:
            self.transport.disconnecting = True
        return False  # close our side too, as Twisted does

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport._loop_paused = True
            self.transport._pause_writing()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport._loop_paused = False
            self.transport._resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        wrapped = self.transport
        if wrapped is None or wrapped.protocol is None:
            return
        wrapped._closed = True
        wrapped._deliver_lost(wrapped._aborted or exc)


#: the TLS upgrades under way (the loop keeps only weak references to tasks)
_upgrades: set[asyncio.Task[None]] = set()


def _handshake_error(error: Exception, connection: _Connection) -> BaseException:
    """What ``connectionLost`` is told of a TLS handshake that raised ``error``."""
    if not isinstance(error, OSError):  # a bug, ours or the loop's
        log.error("startTLS on the connection from %s failed", _peer(connection), exc_info=error)
        return ConnectionLost(f"startTLS failed: {type(error).__name__}")
    if not isinstance(error, ssl.SSLError):
        if isinstance(error, ConnectionError) and not isinstance(error, ConnectionAbortedError):
            error = ssl.SSLEOFError("the peer closed during the TLS handshake")
        else:  # asyncio's handshake timeout, ...
            error = ssl.SSLError(f"the TLS handshake failed: {error}")
    log.info("TLS with %s failed (%s); closing the connection", _peer(connection), error)
    return error


_LINGER_RESET = struct.pack("ii", 1, 0)


def _reset_on_close(sock: Any) -> None:
    """Make closing ``sock`` send a reset (TCP; as Twisted's ``abortConnection``)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def _as_bytes(data: Any, method: str) -> bytes:
    """``data`` as bytes if it is bytes-like, else a ``TypeError`` naming its type (an
    int would otherwise make ``bytes(n)``: n NUL bytes)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        raise TypeError(f"{method}() takes bytes, not str: encode the text first")
    raise TypeError(
        f"{method}() takes a bytes-like object (bytes, bytearray, memoryview), "
        f"not {type(data).__name__}"
    )


def _name(method: Callable[..., Any]) -> str:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def _peer(transport: _Connection) -> str:
    try:
        return str(transport.getPeer())
    except Exception:
        return "an unknown peer"
