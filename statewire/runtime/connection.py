"""What both transports share: the connection a protocol writes to, and what owns it.

Theory of operation
-------------------
:class:`Connection` is Twisted's ``ITransport`` plus producer and consumer methods, for
both transports: :class:`~statewire.runtime.socket_transport.SocketTransport` (its own
socket) and :class:`~statewire.runtime.asyncio_transport.Transport` (an asyncio
transport). Each fills in the hooks of the section "what each transport does its own
way"; the underscore members of :class:`Connection` and of its base
:class:`~statewire.runtime.deadlines.Deadlines` are that contract, used by those two
subclasses only.

Every call into user code is guarded (``_call``): an exception there is logged with its
traceback and closes that connection only.

Writes are coalesced: ``write`` appends to a list, and the list goes to the socket as one
write when the protocol's callback returns (``dataReceived``, ``connectionMade``) or, for
writes made anywhere else (a timer), at the end of the current event-loop turn.

Flow control: when the unsent data -- what the socket has not taken plus what was written
during the current callback and is not yet flushed -- passes
:data:`~statewire.runtime.limits.HIGH_WATER` (a peer that does not read), the transport
stops reading, pauses the registered producer and calls the protocol's
``transportCongested(True)`` (a declared protocol then stops cutting frames after the
current one: pipelined requests wait, in order, in its buffer). The check is made in
``write`` itself, so a read that holds many requests stops producing replies as soon as
they fill the mark, not after the whole read was handled. All resume once the unsent data
is back under :data:`~statewire.runtime.limits.LOW_WATER` (``transportCongested(False)``).
So a peer that does not read costs at most the high-water mark plus one reply (plus one
read) of memory. A pull (non-streaming) producer is asked for more after each write it
makes, while the buffer is below the high-water mark. Reading is on exactly when the
protocol has not paused it (``pauseProducing``), the write side is not congested, and the
connection is not closing.

The deadlines of the write side (``close_timeout``, ``write_timeout``) are those of the
base class, :mod:`statewire.runtime.deadlines`.

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

Hand-over: a protocol that reads only the start of the stream (statewire.proxy reads a
PROXY header) passes the connection on with :meth:`Connection.handOver`: the new protocol
becomes the connection's own (every later read, congestion signal and the loss go straight
to it, nothing in between), gets the bytes read after that start first, and -- when a
:attr:`Connection.relay` is set -- ``getPeer()``/``getHost()`` report the addresses the
relay gives instead of the socket's.

An :class:`Owner` (the reactor's listening ports and client connectors) is told when its
connections open and close.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from statewire.address import Address, from_sockaddr
from statewire.error import ConnectionAborted, ConnectionDone, ConnectionLost, Failure
from statewire.runtime.deadlines import Deadlines
from statewire.runtime.limits import HIGH_WATER
from statewire.runtime.naming import name_of, peer_of

if TYPE_CHECKING:  # for types only: the reactor imports this module
    from statewire._reactor import Reactor

log = logging.getLogger("statewire")


class Owner:
    """What a connection belongs to: a listening port or a client connector."""

    reactor: Reactor

    def track(self, connection: Connection) -> None:
        """``connection`` is open: count it among the reactor's (a shutdown closes it)."""
        raise NotImplementedError

    def untrack(self, connection: Connection) -> None:
        """``connection`` is closed: the reactor no longer counts it."""
        raise NotImplementedError

    def connectionLost(self, reason: Failure) -> None:
        """A connection of this owner is gone (after the protocol's ``connectionLost``;
        as Twisted's connectors)."""

    def getDestination(self) -> Address | None:
        """Where a client connector's connections go; ``None`` for a port, whose
        connections were accepted (``startTLS`` takes the server side on those)."""
        return None


class Connection(Deadlines):
    """What both transports share: coalesced writes, producers, guarded user calls."""

    __slots__ = (
        "_closed",
        "_flush_scheduled",
        "_held",
        "_in_callback",
        "_loss",
        "_out",
        "_owner",
        "_producer",
        "_read_ended",
        "_read_paused",
        "_room",
        "_streaming",
        "_write_paused",
        "bytes_sent",
        "disconnecting",
        "on_closing",
        "protocol",
        "relay",
    )

    def __init__(self, owner: Owner) -> None:
        super().__init__()
        self._owner = owner
        self.protocol: Any = None
        #: who relayed this connection, as the protocol that read the start of the
        #: stream says (statewire.proxy, after a PROXY header); ``None`` for a direct
        #: one. Its ``peer`` and ``host`` (addresses; ``None``: the socket's own) are what
        #: ``getPeer()`` and ``getHost()`` report, its ``header`` is :attr:`header`
        self.relay: Any = None
        #: bytes read and not yet delivered: handed over (``handOver``) while the
        #: protocol paused reading, or held by the asyncio transport while paused
        self._held = b""
        #: the peer ended its stream and the protocol took the half-close
        self._read_ended = False
        self._out: list[bytes] | None = None  # made at the first write
        self._flush_scheduled = False
        self._in_callback = False
        self._closed = False
        self._loss: Failure | None = None  # the reason given at the loss, once delivered
        self._read_paused = False
        self._write_paused = False
        self._producer: Any = None
        self._streaming = True
        #: bytes that may still be written before the unsent data passes HIGH_WATER (kept
        #: exact by the socket transport, recounted when it runs out on the others)
        self._room = HIGH_WATER
        #: bytes handed to the socket (or the loop's transport) so far: what metrics
        #: count as sent (read when asked, nothing counted per write)
        self.bytes_sent = 0
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
                self.bytes_sent += len(data)
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

    def _unsent(self) -> int:
        return self._write_buffer_size()

    def _pull(self) -> None:
        """Ask a pull (non-streaming) producer for more while the buffer has room."""
        producer = self._producer
        if producer is not None and not (self._streaming or self._write_paused or self._closed):
            self._call(producer.resumeProducing)

    def _fail(self, exc: Exception) -> None:
        """The transport's own I/O path raised (out of memory, ...): abort this
        connection only, free its buffers, log it once."""
        self._out = None
        if self._closed:
            return
        try:
            log.error(
                "the transport of the connection from %s failed (%s); aborting it",
                peer_of(self),
                type(exc).__name__,
                exc_info=exc,
            )
            self._abort(ConnectionLost(f"transport failed: {type(exc).__name__}"), reset=True)
        except Exception:  # nothing more can be done for it; the loop must not see it
            log.exception("aborting the failed connection from %s raised", peer_of(self))
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
        self._owner.untrack(self)
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
        self._loss = reason  # a protocol handed the connection after this gets it too
        self._call(protocol.connectionLost, reason)
        if self._producer is not None:
            self._call(self._producer.stopProducing)
            self._producer = None
        self._owner.connectionLost(reason)

    @property
    def reactor(self) -> Reactor:
        """The reactor serving this connection (its timers run on the same loop)."""
        return self._owner.reactor

    # -- addresses -----------------------------------------------------------------------

    def getPeer(self) -> Address:
        """The other side's address: the :attr:`relay`'s ``peer`` when it gives one
        (the client behind a proxy), else the socket's peer."""
        relay = self.relay
        if relay is not None:
            peer: Address | None = relay.peer
            if peer is not None:
                return peer
        return from_sockaddr(self._unix(), self._sockaddr(True))

    def getHost(self) -> Address:
        """This side's address: the :attr:`relay`'s ``host`` when it gives one (the
        address the client connected to, at the proxy), else the socket's own."""
        relay = self.relay
        if relay is not None:
            host: Address | None = relay.host
            if host is not None:
                return host
        return from_sockaddr(self._unix(), self._sockaddr(False))

    @property
    def header(self) -> Any:
        """What the :attr:`relay` read at the start of the stream (statewire.proxy: the
        PROXY header, with its TLVs); ``None`` on a direct connection."""
        relay = self.relay
        return None if relay is None else relay.header

    @property
    def proxy(self) -> Address | None:
        """The socket's own peer -- the proxy the connection came through -- when a
        :attr:`relay` is set; ``None`` on a direct connection."""
        if self.relay is None:
            return None
        return from_sockaddr(self._unix(), self._sockaddr(True))

    # -- hand-over -----------------------------------------------------------------------

    def handOver(
        self, protocol: Any, data: bytes = b"", tls: ssl.SSLContext | None = None
    ) -> None:
        """Make ``protocol`` this connection's protocol from now on: connect it
        (``makeConnection``), then give it ``data`` -- bytes already read from the
        connection that are its own -- as its first read.

        With ``tls`` (a server-side context) the stream is TLS from here on, ``data``
        its first ciphertext: ``protocol`` is connected before the handshake, as on a
        ``listenSSL`` port (a PROXY header followed by TLS). Only statewire's socket
        transport does this (its ``hands_over_tls`` is true); the others raise
        ``NotImplementedError``.

        For a protocol that reads only the start of the stream and passes the connection
        on (statewire.proxy, after a PROXY header): every later read, congestion signal
        and the connection's loss go straight to ``protocol``. If it pauses reading in
        ``connectionMade``, ``data`` waits until it resumes (and comes before anything
        read after); if it closes the connection or switches to TLS there (``startTLS``),
        ``data`` is dropped, as any read held then (plaintext read before the switch never
        passes for protected data). Set :attr:`relay` first for ``protocol`` to see the
        relayed addresses from ``connectionMade`` on. An exception ``protocol`` raises
        closes this connection only, as from any callback. On a connection whose loss was
        already delivered (a hand-over from a timer that fired after it), ``protocol`` is
        connected, then gets ``connectionLost`` with the same reason at once; ``data`` is
        dropped: every protocol a connection is handed is told of its end, once.
        """
        if not self._in_callback:  # from a timer, say: guarded as any call into user code
            self._call(self.handOver, protocol, data, tls)
            return
        lost = self._loss
        if tls is not None and lost is None:
            self._hand_over_tls(protocol, data, tls)  # (raises before taking protocol on)
            return
        self.protocol = protocol
        if data and lost is None:  # held while it connects: pausing, closing or startTLS
            self._held += data  # there keep it back
        if not self._connect_handed(protocol):
            return
        if lost is not None:  # gone already: told at once, as any protocol is
            protocol.connected = 0
            protocol.connectionLost(lost)
            return
        held = self._held
        if held and not (self._read_paused or self._closed or self.disconnecting):
            self._held = b""
            protocol.dataReceived(held)

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
        self._held = b""  # read as plaintext and never delivered: it never will be
        self._start_tls(context, server_side, server_hostname)

    def _tls_in_use(self) -> str | None:
        """Why this connection cannot start TLS (it already did), or None."""
        raise NotImplementedError

    def _connect_handed(self, protocol: Any) -> bool:
        """Connect a protocol handed the connection; false when it raised (said as its
        ``makeConnection``'s, not as the caller's ``dataReceived``: the connection closes)."""
        try:
            protocol.makeConnection(self)
        except Exception:
            self._user_error(protocol.makeConnection)
            return False
        return True

    def _hand_over_tls(self, protocol: Any, data: bytes, context: ssl.SSLContext) -> None:
        """:meth:`handOver` with ``tls``: TLS from here on, ``data`` its first bytes;
        ``protocol`` becomes the connection's only once the TLS session is made (an
        error before leaves the connection as it was)."""
        raise NotImplementedError("TLS after a hand-over needs statewire's socket transport")

    def _start_tls(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> None:
        raise NotImplementedError

    def _ssl_object(self) -> ssl.SSLObject | None:
        """The connection's ``SSLObject`` once its TLS handshake completed, else None."""
        raise NotImplementedError

    @property
    def TLS(self) -> bool:
        """Whether the connection runs TLS: from ``startTLS`` on, and from the start on a
        ``listenSSL`` port, its handshake perhaps still under way (as Twisted's ``TLS``
        attribute says; :meth:`getPeerCertificate` waits for the handshake)."""
        return self._tls_in_use() is not None

    def getSSLObject(self) -> ssl.SSLObject | None:
        """The connection's ``ssl.SSLObject`` once its TLS handshake completed (its
        version, cipher, peer's certificate and chain), else ``None`` (asyncio's
        ``get_extra_info("ssl_object")``)."""
        return self._ssl_object()

    def getPeerCertificate(self, binary_form: bool = False) -> Any:
        """The peer's certificate once a TLS handshake completed, as
        ``ssl.SSLObject.getpeercert(binary_form)`` gives it (a dict, empty when it was
        not verified, or DER bytes); ``None`` without TLS or when the peer sent none."""
        ssl_object = self._ssl_object()
        return None if ssl_object is None else ssl_object.getpeercert(binary_form)

    # -- the read side as a producer -----------------------------------------------------

    def _update_reading(self) -> None:
        if not self._closed:
            self._set_reading(
                not (self._read_paused or self._write_paused or self.disconnecting)
                and not self._read_ended
            )

    def pauseProducing(self) -> None:
        """Stop reading from the peer."""
        self._read_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        """Read from the peer again (unless the peer is not reading what we write); bytes
        held while paused come first."""
        self._read_paused = False
        self._update_reading()
        if self._held:
            # on the next turn, not from inside the protocol's own call; before any read
            # (the loop runs what is scheduled before it polls the sockets again)
            self._loop.call_soon(self._release)

    def _release(self) -> None:
        if self._held and not self._read_paused and not self._closed:
            data, self._held = self._held, b""
            self._call(self.protocol.dataReceived, data)

    def stopProducing(self) -> None:
        """Stop for good: close the connection."""
        self.loseConnection()

    def loseConnection(self) -> None:
        """Stop reading; close once everything written has been sent, including what is
        written in the rest of the current callback (or event-loop turn), as Twisted."""
        self._held = b""  # a closing connection reads no more: held bytes were never read
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

    def _half_close(self) -> bool:
        """The peer ended its stream (EOF). A protocol with ``readConnectionLost`` (Twisted's
        ``IHalfCloseableProtocol``) is told, reading stops for good, and our side stays
        open until the protocol closes it (it may still write: answers to what it has
        read). ``False`` when the protocol has no such method: the caller closes as
        before, once what was written is sent."""
        hook = getattr(self.protocol, "readConnectionLost", None)
        if hook is None:
            return False
        self._read_ended = True
        self._update_reading()
        self._call(hook)
        return True

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
        name = name_of(method)
        log.exception("%s raised; closing the connection from %s", name, peer_of(self))
        if not self._closed:  # closed at once, unsent data dropped, but without a reset
            self._abort(ConnectionLost(f"{name} raised"), reset=False)

    def abortConnection(self) -> None:
        """Close at once with a reset, dropping unsent data (``ConnectionAborted``)."""
        self._abort(ConnectionAborted(), reset=True)


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
