"""A connection through an asyncio transport, and the asyncio protocol that drives it.

:class:`Transport` gives a protocol the same API as
:class:`~statewire.runtime.socket_transport.SocketTransport` over an asyncio transport,
which a :class:`Bridge` (an ``asyncio.Protocol``) wraps as the loop connects it: for
``connectSSL``, and for every connection with ``Reactor.native_transports`` (a loop
whose own transports are wanted, or one that does not support ``add_reader``).

``startTLS`` (STARTTLS) hands the asyncio transport to the loop's ``start_tls``
(asyncio's or uvloop's) and goes on with the TLS transport that comes out of the
handshake (the section "TLS" below; docs/tls.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any, cast

from statewire.error import ConnectionLost
from statewire.runtime.connection import Connection, Owner
from statewire.runtime.kernel import reset_on_close
from statewire.runtime.limits import HIGH_WATER, LOW_WATER
from statewire.runtime.naming import peer_of

log = logging.getLogger("statewire")


class Transport(Connection):
    """A connection through an asyncio transport (``connectSSL``, native transports).

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

    # -- what its Bridge tells it --------------------------------------------------------

    def _connected(self, protocol: Any) -> None:
        """``protocol`` was built for this connection: connect it."""
        self.protocol = protocol
        self._owner.track(self)
        self._call(protocol.makeConnection, self)

    def _loop_congested(self, paused: bool) -> None:
        """asyncio's own buffer went over its high-water mark (``paused``), or drained."""
        self._loop_paused = paused
        if paused:
            self._pause_writing()
        else:
            self._resume_writing()

    def _lost(self, exc: Exception | None) -> None:
        """asyncio closed the connection."""
        self._closed = True
        self._deliver_lost(self._aborted or exc)

    # -- reading -------------------------------------------------------------------------

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
            reset_on_close(sock)
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

    __slots__ = ("_turns", "factory", "owner", "transport")

    def __init__(self, owner: Owner, factory: Any) -> None:
        self.owner = owner
        self.factory = factory
        self.transport: Transport | None = None
        self._turns = 0  # (asyncio's pauses and resumes so far: see resume_writing)

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
        wrapped._connected(protocol)

    def data_received(self, data: bytes) -> None:
        wrapped = self.transport
        if wrapped is not None and wrapped.protocol is not None:
            wrapped._received(data)

    def eof_received(self) -> bool:
        wrapped = self.transport
        if wrapped is None:
            return False
        if (
            wrapped.protocol is not None
            and not wrapped._held
            and not wrapped.disconnecting
            and wrapped._ssl_object() is None  # (over TLS asyncio ends the session anyway)
            and wrapped._half_close()
        ):
            return True  # the protocol closes our side when it is done
        wrapped.disconnecting = True
        return False  # close our side too, as Twisted does

    def pause_writing(self) -> None:
        self._turns += 1
        if self.transport is not None:
            self.transport._loop_congested(True)

    def resume_writing(self) -> None:
        # taken up at the loop's next turn, not inside asyncio's write-ready callback that
        # calls this: what a resume sets off may close the transport, and a close there
        # has asyncio (3.11's selector transport) run its connection_lost twice, the
        # second time failing in the loop's logs; a pause since cancels it
        self._turns += 1
        if self.transport is not None:
            self.transport._loop.call_soon(self._resumed, self._turns)

    def _resumed(self, turn: int) -> None:
        if turn == self._turns and self.transport is not None:
            self.transport._loop_congested(False)

    def connection_lost(self, exc: Exception | None) -> None:
        wrapped = self.transport
        if wrapped is None or wrapped.protocol is None:
            return
        wrapped._lost(exc)


#: the TLS upgrades under way (the loop keeps only weak references to tasks)
_upgrades: set[asyncio.Task[None]] = set()


def _handshake_error(error: Exception, connection: Connection) -> BaseException:
    """What ``connectionLost`` is told of a TLS handshake that raised ``error``."""
    if not isinstance(error, OSError):  # a bug, ours or the loop's
        log.error("startTLS on the connection from %s failed", peer_of(connection), exc_info=error)
        return ConnectionLost(f"startTLS failed: {type(error).__name__}")
    if not isinstance(error, ssl.SSLError):
        if isinstance(error, ConnectionError) and not isinstance(error, ConnectionAbortedError):
            error = ssl.SSLEOFError("the peer closed during the TLS handshake")
        else:  # asyncio's handshake timeout, ...
            error = ssl.SSLError(f"the TLS handshake failed: {error}")
    log.info("TLS with %s failed (%s); closing the connection", peer_of(connection), error)
    return error
