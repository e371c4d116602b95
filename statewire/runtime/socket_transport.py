"""statewire's own transport for the TCP and UNIX connections its ports accept and its
``connectTCP``/``connectUNIX`` make (TLS from the first byte on ``listenSSL`` ports).

A :class:`SocketTransport` owns its socket. All such sockets of a loop share one
:class:`~statewire.runtime.pollers.Poller`: one small object per connection, no asyncio
transport, protocol, task or callback handle behind it. An idle connection costs about
what it costs in Twisted, a read goes straight from ``recv`` to ``dataReceived``, and
accepting costs no coroutine.

``startTLS`` (STARTTLS) puts a sans-IO :class:`~statewire._tls.TLSSession` between the
socket and the protocol (the section "TLS" below): what is read goes through it before
``dataReceived``, what is flushed goes through it before ``send``; buffers, poller, timers
and deadlines are the same (docs/tls.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any, ClassVar

from statewire._tls import TLSSession
from statewire.error import ConnectionAborted, ConnectionLost
from statewire.runtime.connection import Connection, Owner
from statewire.runtime.file_sending import FILE_ERRORS, FileSend
from statewire.runtime.kernel import reset_on_close
from statewire.runtime.limits import (
    CLOSING_HANDSHAKE_TIMEOUT,
    HIGH_WATER,
    LOW_WATER,
    TLS_HANDSHAKE_TIMEOUT,
)
from statewire.runtime.lingering import Lingering
from statewire.runtime.naming import peer_of
from statewire.runtime.pollers import READ, WRITE, Poller, Watched

log = logging.getLogger("statewire")

#: bytes asked of the socket per read, as Twisted asks (asyncio asks 256 KiB: a buffer that
#: large costs its own allocation on every read, about a tenth of a small SMTP message's
#: server time on the project's machine)
READ_SIZE = 64 * 1024
#: bytes asked after a read that brought ``READ_SIZE`` or more, until one brings less: a
#: large body arrives in a quarter of the reads
BIG_READ_SIZE = 256 * 1024


class SocketTransport(Connection, Watched):
    """A TCP or UNIX connection driven straight from asyncio's selector loop.

    After ``startTLS`` a :class:`~statewire._tls.TLSSession` sits between the socket and
    the protocol: what is read goes through it before ``dataReceived``, what is flushed
    goes through it before ``send``; buffers, poller, timers and deadlines are the same.
    """

    __slots__ = (
        "_file",
        "_handshake_timer",
        "_host",
        "_peer",
        "_peer_ended",
        "_pending",
        "_poller",
        "_read_size",
        "_reading",
        "_sock",
        "_tls",
    )

    #: seconds a TLS handshake may take before the connection is aborted (default
    #: :data:`~statewire.runtime.limits.TLS_HANDSHAKE_TIMEOUT`, 60 s); the protocol's own
    #: deadlines run during the handshake too (it is connected before it)
    tls_handshake_timeout: ClassVar[float] = TLS_HANDSHAKE_TIMEOUT
    #: ``handOver(protocol, data, tls)`` starts TLS on bytes already read (a PROXY
    #: header followed by TLS); the loop's transports cannot
    hands_over_tls: ClassVar[bool] = True

    def __init__(self, owner: Owner, poller: Poller, sock: socket.socket, peer: Any) -> None:
        super().__init__(owner)
        self._poller = poller
        self._sock = sock
        self._peer = peer
        self._host: Any = None  # the local address, noted when the socket closes
        self._pending: bytearray | None = None  # unsent bytes, while the socket is full
        self._reading = False  # whether the socket is watched for reads
        self._tls: TLSSession | None = None  # after startTLS (or from the start: listenSSL)
        self._handshake_timer: asyncio.TimerHandle | None = None  # while TLS handshakes
        self._read_size = READ_SIZE  # (BIG_READ_SIZE while reads come full)
        self._peer_ended = False  # whether the peer ended its stream (then no lingering)
        self._file: FileSend | None = None  # a file under way (sendFile)

    @classmethod
    def accepted(
        cls,
        owner: Owner,
        poller: Poller,
        sock: socket.socket,
        peer: Any,
        factory: Any,
        tls: ssl.SSLContext | None = None,
    ) -> SocketTransport | None:
        """Serve an accepted connection (or a client's, connected): build its protocol,
        connect it, start reading; the transport, or ``None`` when the factory refused.

        With ``tls`` (a ``listenSSL`` port) the connection is TLS from its first byte, the
        server side: the protocol is connected at once, as Twisted connects it, before
        the handshake; what it writes is held until the handshake completes (startTLS's
        rules, docs/tls.md)."""
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = cls(owner, poller, sock, peer)
        try:
            protocol = factory.buildProtocol(transport.getPeer())
        except Exception:
            log.exception("%r.buildProtocol raised; refusing the connection", factory)
            protocol = None
        if protocol is None:
            sock.close()
            return None
        transport.protocol = protocol
        if tls is not None:  # (after a refusal: a refused connection arms no deadline)
            transport._begin_tls(TLSSession(tls, True, None, from_start=True))
        owner.track(transport)
        transport._call(protocol.makeConnection, transport)
        try:
            transport._update_reading()
        except OSError as error:  # the poller could not take it (out of memory...)
            transport._close(error)
        return transport

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:  # type: ignore[override]
        return self._poller.loop

    # -- the socket ----------------------------------------------------------------------

    def _read_ready(self) -> None:
        try:
            data = self._sock.recv(self._read_size)
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
        self._read_size = BIG_READ_SIZE if len(data) >= READ_SIZE else READ_SIZE
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
            if self._poller.defer_flush(self):
                self._flush_scheduled = True  # (sent at the batch's end: see pollers)
            else:
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
        if self._file is not None:
            self._file_step()
            return
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

    # -- files ---------------------------------------------------------------------------

    def sendFile(self, fd: int, offset: int, count: int) -> asyncio.Future[int] | None:
        """Send ``count`` bytes of the open file ``fd`` from ``offset`` straight from the
        kernel (``os.sendfile``: no byte passes through Python), after everything written
        before; statewire's own (Twisted's transports have no such method).

        Returns a future of the bytes sent, done once all are, or fewer when the file
        ended first, when ``sendfile`` cannot serve this file (then none), or when the
        connection closed (it is done after the protocol's ``connectionLost``); an error
        reading the file is the future's exception. ``None`` when it cannot start now:
        over TLS, while the socket still holds bytes written before, while another file
        is under way, or once the connection is closing; the caller then writes the bytes
        itself. Cancelling the future aborts the connection (the peer could not tell where
        the file was cut).

        Bytes written meanwhile wait behind the file. The file's bytes count as handed
        over from the start, and its unsent bytes as unsent data, for the write deadlines
        (a peer that stops reading is aborted after ``write_timeout``, as for any write),
        not for flow control: the caller waits for the future, not for
        ``transportCongested``. The transport sends from a descriptor of its own: the
        caller may close its file at any time."""
        if self._tls is not None or self._closed or self.disconnecting or self._file is not None:
            return None
        if self._out:
            self._flush()  # what was written before goes first
            if self._closed:
                return None
        if self._pending is not None:
            return None
        try:
            sending = FileSend(fd, offset, count, self._loop.create_future())
        except OSError:  # (no descriptor to spare for its own: the caller writes the bytes)
            return None
        self._file = sending
        sending.future.add_done_callback(self._file_abandoned)
        self._pending = bytearray()  # (what is written meanwhile waits behind the file)
        limits = self._limits
        if limits is not None:
            limits.handed += count  # (as a write hands its bytes over: see _unsent)
        self._file_step()
        if self._file is sending:
            self._watch()  # the rest when the socket has room
        return sending.future

    def _file_abandoned(self, future: asyncio.Future[int]) -> None:
        """The caller cancelled the file's future: abort, the file cut where it was."""
        sending = self._file
        if future.cancelled() and sending is not None and sending.future is future:
            self._abort(ConnectionAborted("the file's sending was cancelled"), reset=True)

    def _file_step(self) -> None:
        """Send more of the file under way; finish it when it is done."""
        sending = self._file
        assert sending is not None
        before = sending.sent
        failed: OSError | None = None
        try:
            sending.step(self._sock.fileno())
        except OSError as exc:
            failed = exc
        except Exception as exc:  # MemoryError...
            self._fail(exc)
            return
        self.bytes_sent += sending.sent - before
        if failed is not None:
            if failed.errno in FILE_ERRORS:  # the caller is told; the connection stays as it is
                self._end_file(sending, failed)
            else:
                self._close(failed)
            return
        if sending.done:
            self._end_file(sending)
            return
        limits = self._limits
        if limits is not None and limits.write_timeout is not None and limits.stall_timer is None:
            self._watch_stall(limits)  # (the peer may stop taking the file)

    def _end_file(self, sending: FileSend, error: OSError | None = None) -> None:
        """The file is sent (or ends short, or could not be read): what was written
        meanwhile follows it."""
        self._file = None
        limits = self._limits
        if limits is not None:
            limits.handed -= sending.left  # (never sent: no longer counted as handed)
        held, self._pending = self._pending, None
        try:
            if held:
                self._put(bytes(held))
            if not self._closed:
                self._watch()
        except Exception as exc:
            self._fail(exc)
        sending.close(error)
        if self._closed:
            return
        try:
            if self.disconnecting and not self._out and self._pending is None:
                self._finish()
            elif self._write_paused and self._drained():
                self._resume_writing()
        except Exception as exc:
            self._fail(exc)

    def _unsent(self) -> int:
        sending = self._file
        unsent = self._write_buffer_size()
        return unsent if sending is None else unsent + sending.left

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
        tls = self._tls
        if tls is None:
            return None
        return "is TLS already" if tls.from_start else "already called it"

    def _start_tls(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> None:
        session = TLSSession(context, server_side, server_hostname)
        self._flush()  # what was written before the call goes first, in plaintext
        if self._closed:
            return
        self._begin_tls(session)
        self._update_reading()  # on, for the handshake, even if the protocol paused it
        self._tls_pump()  # a client says hello

    def _hand_over_tls(self, protocol: Any, data: bytes, context: ssl.SSLContext) -> None:
        if self._tls is not None:
            raise RuntimeError("a hand-over with TLS on a connection that is TLS already")
        session = TLSSession(context, True, None, from_start=True)
        self.protocol = protocol
        self._held = b""  # (plaintext read before: never delivered as protected data)
        self._begin_tls(session)
        if data:
            session.receive(data)
        if self._connect_handed(protocol) and not self._closed:
            self._update_reading()  # on, for the handshake
            self._tls_pump()

    def _begin_tls(self, session: TLSSession) -> None:
        """Put ``session`` between the socket and the protocol; its handshake has
        :attr:`tls_handshake_timeout` seconds to complete."""
        self._tls = session
        self._handshake_timer = self._loop.call_later(
            self.tls_handshake_timeout, self._handshake_expired, self.tls_handshake_timeout
        )

    def _hurry_handshake(self) -> None:
        """Closing during the handshake: it has :data:`CLOSING_HANDSHAKE_TIMEOUT` seconds
        more at most."""
        timer = self._handshake_timer
        if timer is None or timer.when() - self._loop.time() <= CLOSING_HANDSHAKE_TIMEOUT:
            return
        timer.cancel()
        self._handshake_timer = self._loop.call_later(
            CLOSING_HANDSHAKE_TIMEOUT, self._handshake_expired, CLOSING_HANDSHAKE_TIMEOUT
        )

    def _handshake_expired(self, seconds: float) -> None:
        """The handshake did not complete in time: abort (a peer that never sends its
        hello holds no socket for long, whatever the protocol's own deadlines)."""
        self._handshake_timer = None
        tls = self._tls
        if self._closed or tls is None or not tls.handshaking:
            return
        closing = " after its connection began to close" if self.disconnecting else ""
        log.info(
            "the TLS handshake with %s did not complete in %s s%s; aborting the connection",
            peer_of(self),
            seconds,
            closing,
        )
        try:
            self._abort(ConnectionAborted("TLS handshake timeout"), reset=True)
        except Exception as exc:
            self._fail(exc)

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
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
            self._update_reading()  # the protocol's pauses rule reading again
            if self._write_paused and self._drained():
                self._loop.call_soon(self._resume_if_drained)
        if data:
            # _call, without its flush: what the protocol wrote goes at the batch's end
            # (below), as after a plain read
            outer = self._in_callback
            self._in_callback = True
            try:
                self.protocol.dataReceived(data)
            except Exception:
                self._user_error(self.protocol.dataReceived)
            finally:
                self._in_callback = outer
            if self._closed:
                return
        if tls.eof and not self.disconnecting:
            self._end_of_stream()
        elif not self._in_callback and (self._out or self.disconnecting):
            if self._flush_scheduled:
                return  # (already waiting for the batch's end)
            if self._poller.defer_flush(self):
                self._flush_scheduled = True  # (sent at the batch's end, as in _read_ready)
            else:
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
        log.info("TLS with %s failed (%s); closing the connection", peer_of(self), error)
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
            if tls.buffered:
                # written for after the handshake: it completes first, within
                # CLOSING_HANDSHAKE_TIMEOUT (a silent peer, a port scanner, would hold a
                # shutdown to its abort otherwise)
                self._close_when_sent()
                self._hurry_handshake()
                return
            notify = tls.close()
            if notify:
                self._put(notify)
                if self._closed:
                    return
        if self._pending is None:
            # (the peer has not ended its stream: it may be sending still, and a close
            # with its bytes unread, or arriving, would be a reset)
            self._close(None, linger=not self._peer_ended)
        else:  # _write_ready closes once it is sent, or close_timeout aborts
            self._close_when_sent()

    def _abort(self, reason: ConnectionLost, reset: bool) -> None:
        if self._closed:
            return
        if self._flush_scheduled:
            # what it wrote while reading, held for the end of the poller's batch, would
            # have been sent before this abort: it goes first, as it did
            self._poller.flush_deferred(self)
        self._closing()
        if reset:
            reset_on_close(self._sock)
        self._close(reason)

    def _end_of_stream(self) -> None:
        """The peer sent everything it will: close our side too, once flushed (without
        ``on_closing``: frames already buffered are still the protocol's to deliver)."""
        self._peer_ended = True  # (nothing more comes: no lingering at the close)
        if self._tls is not None and self._tls.handshaking:
            self._tls_failed(ssl.SSLEOFError("the peer closed during the TLS handshake"))
            return
        if self._read_ended:
            return
        try:
            # (over TLS an end of stream ends the session: no half-close)
            if self._tls is None and self._half_close():
                return
        except Exception as exc:
            self._fail(exc)
            return
        self.disconnecting = True
        try:
            self._update_reading()
        except Exception as exc:
            self._fail(exc)
            return
        self._flush()  # what was written this turn goes too; then it closes once sent

    def _close(self, exc: BaseException | None, linger: bool = False) -> None:
        """Close the socket and tell the protocol. ``linger`` (bytes the peer sent are
        unread: a close would be a reset, losing the last replies for it): shut the
        sending side and hand the socket to a :class:`Lingering` instead."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timers()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
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
        if linger:
            try:
                sock.shutdown(socket.SHUT_WR)  # (a FIN after what was sent)
                Lingering(self._poller, sock)
            except Exception:  # (reset by now, the loop closed...): closed at once
                linger = False
        if not linger:
            sock.close()
        self._loop.call_soon(self._deliver_lost, exc)
        sending, self._file = self._file, None
        if sending is not None:  # (its caller wakes after connectionLost: scheduled first)
            self._loop.call_soon(sending.close)
