"""The core of an HTTP/1.1 server connection: what the transitions of the machine in
:mod:`statewire.protocols.http` do to the connection. It reads a request's head and body
(through :mod:`statewire.protocols._http_head`), runs the handler (eagerly, see
:mod:`statewire.protocols._http_task`), gives the response writer its connection (writes
held while the client does not read), and refuses what must be refused."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from grammars.http1 import MAX_FIELD_BYTES, MAX_REQUEST_LINE, field_line, status_line
from statewire.declarative import MachineProtocol
from statewire.error import Failure, connectionDone
from statewire.framing import FrameTooLong, FramingError
from statewire.machine import RemoteProtocolError
from statewire.protocol import close_gracefully, has_own_graceful_close
from statewire.protocols._http_exchange import BODY_HIGH_WATER, Body, Request, Response
from statewire.protocols._http_head import FieldSection, Refusal, head_rules
from statewire.protocols._http_head import chunk_size as chunk_size_of
from statewire.protocols._http_head import request_line as request_line_of
from statewire.protocols._http_task import Waited, start_in_task
from statewire.protocols._http_task import start as start_eagerly
from statewire.protocols._pace import Pace
from statewire.protocols._tls_info import TLSInfo, tls_info

if TYPE_CHECKING:
    from statewire.protocols.http import HTTPFactory

log = logging.getLogger("statewire.protocols.http")
#: seconds a body may stay silent (the body states' idle timeout); also the budget of its
#: pace (see :meth:`HTTPConnection._pace_body`)
BODY_IDLE_TIMEOUT = 30.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: the largest field section read at once with its request line (a larger one, or one
#: not all in the read, is read a line at a time)
SECTION_AHEAD = 8 << 10
#: the field lines the server adds (``Date``, ``Server``, the factory's ``headers``), with
#: the second and settings they were made for: shared by every connection (a new
#: connection makes no date)
_server_fields: list[tuple[int, bool, bytes | None, bytes, bytes]] = [(0, False, None, b"", b"")]


class Inputs(Protocol):
    """The machine's inputs: frames of each state, the body framing the head announced,
    the end of the exchange, the deadlines and the loss."""

    def line(self, frame: bytes) -> None: ...
    def no_body(self) -> Awaitable[None] | None: ...
    def length_body(self) -> None: ...
    def chunked_body(self) -> None: ...
    def body(self, data: bytes) -> Awaitable[None] | None: ...
    def chunk_size(self, frame: bytes) -> None: ...
    def short_chunk(self, frame: bytes) -> Awaitable[None] | None: ...
    def chunk_follows(self, frame: bytes) -> None: ...
    def chunk(self) -> None: ...
    def last_chunk(self, frame: bytes) -> None: ...
    def whole_chunk(self, data: bytes) -> Awaitable[None] | None: ...
    def chunk_data(self, data: bytes) -> Awaitable[None] | None: ...
    def chunk_end(self, data: bytes) -> None: ...
    def trailer(self, frame: bytes) -> Awaitable[None] | None: ...
    def message_end(self) -> None: ...
    def next_piece(self) -> None: ...
    def chunk_read(self) -> None: ...
    def responded(self) -> None: ...
    def finished(self) -> None: ...
    def idle(self) -> None: ...
    def stalled(self) -> None: ...
    def upgraded(self) -> None: ...
    def tunnel(self, data: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class _Exchange:
    """One request and its response, with the task running the handler."""

    __slots__ = (
        "complete",
        "continued",
        "expects_continue",
        "length",
        "released",
        "request",
        "response",
        "task",
    )

    def __init__(self, request: Request, response: Response, expects_continue: bool) -> None:
        self.request = request
        self.response = response
        self.expects_continue = expects_continue
        self.continued = False
        #: the handler still running (``None``: not started, or done without waiting)
        self.task: asyncio.Task[None] | None = None
        #: whether the request was read to its end
        self.complete = False
        #: the body's announced length (``None``: chunked)
        self.length: int | None = 0
        #: whether the exchange ended with its response, its handler still at work
        self.released = False


class HTTPConnection(MachineProtocol):
    """The machine's core: one client's connection and what the transitions use."""

    factory: HTTPFactory
    #: handlers run as coroutines, whose waits need an asyncio loop: on Twisted's
    #: reactor, :func:`statewire.twisted.adapt` refuses the connection where none runs
    requires_asyncio: ClassVar[bool] = True
    exchange: _Exchange | None = None
    #: the request being read: start line, fields, how many bytes they took
    method = b""
    target = b""
    version = (1, 1)
    #: the field section being read (headers, then trailers)
    section: FieldSection
    #: whether the request line was read and the head's field lines are being read
    in_fields = False
    blank_lines = 0
    #: body bytes announced so far (Content-Length, or the chunk sizes), and those of the
    #: body or chunk being read still to come
    body_size = 0
    block_left = 0
    closing = False
    #: whether the connection was lost
    gone = False
    #: the protocol the connection switches to after a ``101`` (see ``Response.upgrade``)
    upgraded_to: Any = None
    #: whether the handler that upgraded goes on beside the protocol (``detach``)
    upgrade_detached = False
    _congested: asyncio.Future[None] | None = None
    #: whether response writers wait (:meth:`writable`) before writing more
    congested = False
    #: the machine the last head was read by (what a handler's task ends the exchange of)
    _machine: Inputs | None = None
    #: the exchanges released while their handlers still run (see :meth:`_release`), and
    #: the one waiting for one of them to end (see :attr:`HTTPFactory.max_background`)
    _released: set[_Exchange] | None = None
    _slot_wanted: tuple[_Exchange, Waited] | None = None
    #: the client's and the server's address and whether over TLS, once looked up
    _addresses: (
        tuple[tuple[str, int] | None, tuple[str, int] | None, bool, TLSInfo | None] | None
    ) = None
    #: whether the client shut down its sending side (see :meth:`readConnectionLost`)
    client_done = False
    #: the deadline of a half-closed connection's answers (see :meth:`readConnectionLost`)
    _draining: Any = None
    #: when the connection was made (its clock's seconds), and whether it was asked to
    #: close gracefully (the server is stopping: see :meth:`closeGracefully`; any request
    #: it starts after that is its last)
    opened_at = 0.0
    #: whether the connection counts among its factory's ``open_connections``
    counted = False
    stopping = False
    _grace: Any = None
    #: the pace of the body being read (see :meth:`_pace_body`): its timer, the seconds
    #: between its checks, the body's bytes read so far (its framing included) and at the
    #: last check
    _pace: Any = None
    pace_period: ClassVar[float] = 5.0
    body_wire = 0
    #: the framer's ``peek_ahead`` and ``take_ahead``, once bound (see
    #: :meth:`read_fields_ahead`)
    _peek: Callable[[int], bytes | None] | None = None
    _take: Callable[[int], bytes | None]
    #: the running loop, once :meth:`_loop` found it
    _event_loop: asyncio.AbstractEventLoop | None = None

    def connectionMade(self) -> None:
        """Ready for the first request."""
        self.section = FieldSection()
        engine = self.machine_engine  # (made by makeConnection: the machine has timeouts)
        assert engine is not None
        #: the head state's deadline starts again (at a request line whose fields come
        #: later, and at the end of each exchange answered inside its head's read): bound
        #: once, used once a request
        self.restart_deadline = engine.restart_timeout
        self.opened_at = self.seconds()
        self.factory.open_connections += 1
        self.counted = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The connection no longer counts among its factory's open ones; then the
        machine is told (its ``lost`` input)."""
        if self.counted:
            self.counted = False
            self.factory.open_connections -= 1
        super().connectionLost(reason)

    # -- the request ---------------------------------------------------------------------

    def read_request_line(self, frame: bytes) -> None:
        """The request line (cut at its LF): its parts, then the field lines (which
        :meth:`read_fields_ahead`, called next, reads or times)."""
        try:
            if len(frame) > MAX_REQUEST_LINE + 1:  # (its CR)
                raise Refusal(414, f"request line over {MAX_REQUEST_LINE} bytes")
            self.method, self.target, self.version = request_line_of(frame)
        except Refusal:
            self.method = b""  # (a line refused here is no HEAD's: its refusal has a body)
            raise
        self.in_fields = True
        section = self.section  # (emptied: the last head's fields were copied)
        section.fields = []
        section.size = 0

    def read_fields_ahead(self, machine: Inputs) -> None:
        """Right after the request line: when its whole field section (at most
        :data:`SECTION_AHEAD` bytes) came in the same read, as it usually does, read it
        here and start the exchange, with no frame a line. The lines are the frames the
        head state's framing would cut (at each LF), checked by the same
        :meth:`FieldSection.add` in the same order, so a head is refused, or read, alike
        whichever way it came; any other head is read a line at a time, its fields given
        :data:`~statewire.protocols.http.KEEP_ALIVE_TIMEOUT` from its request line (a head
        read whole here is timed by what follows it: its exchange's state, or the next
        head; one refused here has the time to send its refusal)."""
        peek = self._peek
        if peek is None:
            # the framer's own (its engine's adds a call a request): made by now, since a
            # frame is being delivered, and kept for the connection's life
            engine = self.machine_engine
            assert engine is not None
            framer = engine.framer()
            peek = self._peek = framer.peek_ahead
            self._take = framer.take_ahead
        ahead = peek(SECTION_AHEAD)
        try:
            size = self.section.read_ahead(ahead) if ahead else None
            if size is None:
                self.restart_deadline()  # the fields come line by line
                return
            self._take(size)
            self.start_exchange(machine)
        except Refusal:
            self.restart_deadline()
            raise

    def next_request(self) -> None:
        """The exchange is over: the next request's head is read."""
        self.exchange = None
        self.blank_lines = 0

    def start_exchange(self, machine: Inputs) -> None:
        """The head is complete: check it, start the handler, choose the body's state (a
        request without a body: ``no_body``, whose output waits for the handler, or at
        once the next request when the handler answered already)."""
        factory = self.factory
        limit = factory.limit_concurrency
        if limit is not None and factory.open_connections > limit:
            raise Refusal(503, "Service Unavailable: the server is at its concurrency limit")
        version = self.version
        headers, length, keep_alive, waits = head_rules(
            version, tuple(self.section.fields), factory.max_body
        )
        body = Body()
        addresses = self._addresses
        if addresses is None:
            addresses = self.addresses()
        method = self.method
        request = Request(
            method,
            self.target,
            version,
            headers,
            body,
            addresses[0],
            addresses[1],
            factory.cancel_on_disconnect,
            addresses[2],
            addresses[3],
        )
        if self.stopping:
            keep_alive = False  # (the server is stopping: the last request)
            grace, self._grace = self._grace, None
            _cancel(grace)  # (the first request came)
        response = Response(self, version, method == b"HEAD", keep_alive, method == b"CONNECT")
        access = factory.access_log
        if access is not None:
            response.access = access.exchange(request)
        exchange = self.exchange = _Exchange(request, response, waits)
        if waits:
            body.call_on_first_read(functools.partial(self._continue, exchange))
            exchange.length = length
            if length:
                self.block_left = length  # (what body_withheld counts, before length_body)
            response.body_withheld = functools.partial(self._body_withheld, exchange)
            response.before_switch = functools.partial(self._continue, exchange)
        self._machine = machine
        self.body_size = 0
        if length and length <= BODY_HIGH_WATER and not waits:
            # a body that came whole with its head (a small POST) is read here, before the
            # handler starts: no state change to read it, none after it when the handler
            # answers at once (the length_body state reads any other body)
            data = self._take(length)  # (the framer's, bound at the request line)
            if data is not None:
                body.feed(data)
                length = 0
        if length == 0:
            body.finish()
        if factory.eager:
            start = start_in_task if factory.in_task else start_eagerly
            response.first_step = True
            exchange.task = start(self._serve(exchange), self._loop)
            response.first_step = False
            if response.head_due and exchange.task is not None and not response.head_sent:
                response.send_head()  # (the handler waits, its head asked to leave then)
        else:
            exchange.task = self._loop().create_task(self._serve(exchange))
        self.in_fields = False
        if length == 0:
            if exchange.task is None and not self.closing and self.upgraded_to is None:
                # answered already, inside this frame, and kept alive: the next request
                # at once, with no transition (the head state's deadline starts again,
                # as it does when a transition enters it)
                exchange.complete = True
                self.next_request()
                self.restart_deadline()
            else:
                machine.no_body()
        elif length is None:
            self._pace_body(exchange)
            machine.chunked_body()
        else:
            self.block_left = self.body_size = length
            self._pace_body(exchange)
            machine.length_body()

    def _pace_body(self, exchange: _Exchange) -> None:
        """A body follows its head: it must keep :attr:`HTTPFactory.min_body_rate` bytes a
        second (:class:`~statewire.protocols._pace.Pace`, its budget the body's idle
        timeout), looked at every :attr:`pace_period` seconds (:meth:`_check_pace`)."""
        rate = self.factory.min_body_rate
        if rate:
            self.body_wire = 0
            pace = Pace(rate, BODY_IDLE_TIMEOUT)
            self._pace = self.callLater(self.pace_period, self._check_pace, exchange, pace)

    def _check_pace(self, exchange: _Exchange, pace: Pace) -> None:
        """A period of the body of ``exchange`` ended: ``408`` once its budget is spent
        (its data and trailers counted, and what is buffered of a piece not whole yet). A
        period in which the server was the slow one does not count (see
        :meth:`~statewire.protocols._pace.Pace.looked`)."""
        self._pace = None
        if self.exchange is not exchange or self.closing or exchange.request.body.complete:
            return
        if not pace.looked(
            self.machine_engine,
            self.transport,
            self.body_wire,
            self.pace_period,
            behind=exchange.request.body.behind,
            congested=self.congested,
        ):
            self.refuse(408, f"the request body came slower than {pace.rate:g} bytes a second")
            return
        self._pace = self.callLater(self.pace_period, self._check_pace, exchange, pace)

    def _stop_pacing(self) -> None:
        pace, self._pace = self._pace, None
        _cancel(pace)

    def addresses(
        self,
    ) -> tuple[tuple[str, int] | None, tuple[str, int] | None, bool, TLSInfo | None]:
        """The client's and the server's (host, port), whether the connection is over
        TLS, and its TLS once the handshake completed: looked up once."""
        addresses = self._addresses
        if addresses is None:
            transport = self.transport
            secure = bool(getattr(transport, "TLS", False))
            addresses = self._addresses = (
                _address(transport.getPeer()),
                _address(transport.getHost()),
                secure,
                tls_info(transport) if secure else None,
            )
        return addresses

    def end_of_request(self, machine: Inputs) -> Awaitable[None] | None:
        """The request was read whole: once its handler is done, or its response is
        complete, the next request. A handler still at work after its complete response
        (an ASGI application's background task, say) goes on beside the next requests,
        as under uvicorn: the connection waits for a handler only while it owes its
        response (see :class:`Waited`), or while :attr:`HTTPFactory.max_background`
        handlers already run on after theirs."""
        exchange = self.exchange
        assert exchange is not None
        exchange.complete = True
        if self._pace is not None:
            self._stop_pacing()
        task = exchange.task
        if task is not None and not task.done():
            response = exchange.response
            if not response.finished or self._upgrade_waits():
                waited = Waited(task, exchange.request.cancel_on_disconnect)
                response.on_finish = functools.partial(self._response_finished, exchange, waited)
                return waited  # _serve ends the exchange, or _response_finished does
            if self.upgraded_to is None and self._background_full():
                # waited for until a handler at work after its response ends (the slot it
                # frees is this one's: _slot_freed), or this one does (_serve ends it)
                waited = Waited(task, exchange.request.cancel_on_disconnect)
                self._slot_wanted = (exchange, waited)
                return waited
            self._release(exchange)
        self._end_exchange(machine)
        return None

    def _release(self, exchange: _Exchange) -> None:
        """``exchange``'s response is complete and its request read: it ends, its handler
        left to finish on its own (closing after the response if it said so). It is kept
        until its task ends: a lost connection stops it, or tells it, as any handler."""
        exchange.released = True
        task = exchange.task
        if task is not None and not task.done():
            released = self._released
            if released is None:
                released = self._released = set()
            released.add(exchange)
            task.add_done_callback(lambda _: self._slot_freed(released, exchange))
        if not exchange.response.keep_alive or self._body_withheld(exchange):
            self.close()

    def _slot_freed(self, released: set[_Exchange], exchange: _Exchange) -> None:
        """The handler of ``exchange``, at work after its response, ended: the exchange
        waiting for its slot, if any, is released in its place."""
        released.discard(exchange)
        wanted, self._slot_wanted = self._slot_wanted, None
        if wanted is not None:
            self._response_finished(*wanted)

    def _background_full(self) -> bool:
        """Whether as many handlers as the factory lets run on after their responses do
        already (the next one is waited for, as one that has not answered)."""
        released = self._released
        return released is not None and len(released) >= self.factory.max_background

    def _response_finished(self, exchange: _Exchange, waited: Waited) -> None:
        """The response of the exchange the framing waits for (``waited``) is complete,
        its handler still running: the next request is read (a turn later, as a task's
        end is seen)."""
        if self.exchange is not exchange or self.gone:
            return
        if exchange.released or self._upgrade_waits() or waited.done():
            return
        if self.upgraded_to is None and self._background_full():
            self._slot_wanted = (exchange, waited)  # (until a slot frees, or it ends)
            return
        self._release(exchange)
        self._end_exchange()
        waited.release()

    def feed_body(self, data: bytes) -> asyncio.Future[None] | None:
        """Body bytes for the handler; a future to wait on while it leaves too many
        unread."""
        self.body_wire += len(data)
        return self.body.feed(data)

    def feed_chunk(self, data: bytes) -> asyncio.Future[None] | None:
        """A short chunk's data and the CRLF after it (refused without): the data for the
        handler, as :meth:`feed_body`."""
        if data[-2:] != b"\r\n":
            raise Refusal(400, "chunk data not followed by CRLF")
        self.body_wire += len(data) - 2
        return self.body.feed(data[:-2])

    def _end_exchange(self, machine: Inputs | None = None) -> None:
        if machine is None:  # (a handler's task ending: the machine its head was read by)
            machine = self._machine or self.inputs
        if self.closing:
            machine.finished()
        elif self.upgraded_to is not None:
            machine.upgraded()
        else:
            machine.responded()

    def chunk_line(self, frame: bytes) -> int:
        """A chunk-size line: the size of the next chunk (``0``: the last one, the
        trailers follow)."""
        size = chunk_size_of(frame)
        self.body_size += size
        if self.body_size > self.factory.max_body:
            raise Refusal(413, "chunked body over the limit")
        if size:
            self.block_left = size
        else:
            self.section = FieldSection()  # the trailers
        return size

    @property
    def body(self) -> Body:
        """The body of the request being read."""
        assert self.exchange is not None
        return self.exchange.request.body

    # -- the handler ---------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        """The loop the handlers' tasks run on: the running loop, kept for the
        connection's life once found (a connection lives in one loop; asking each request
        costs a ``getpid`` system call on CPython 3.11), else its transport's reactor's."""
        loop = self._event_loop
        if loop is None:
            try:
                loop = self._event_loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = self.transport.reactor.loop
        return loop

    async def _serve(self, exchange: _Exchange) -> None:
        """Run the handler; finish or replace its response when it does not."""
        response = exchange.response
        try:
            await self.factory.handler(exchange.request, response)
            if not response.started:
                raise RuntimeError("the handler returned without a response")
            if not response.finished:
                await response.end()
        except Exception as error:
            if not response.finished:
                self._handler_failed(exchange, error)
                return
            # the response left whole: the failure is the handler's own work after it
            # (an ASGI background task), not the exchange's; the connection goes on
            log.error("HTTP handler raised after its response was complete", exc_info=error)
        except asyncio.CancelledError as error:
            if exchange.task is not None and _cancel_asked(exchange.task):
                raise  # its task was cancelled (the client gone, a shutdown)
            # raised by the handler itself (it awaited something cancelled elsewhere):
            # nothing cancelled this exchange, so it is the handler's failure as any
            # other, answered so (not an exception out of the read, nor a reset)
            if not response.finished:
                self._handler_failed(exchange, error)
                return
            log.error("HTTP handler raised after its response was complete", exc_info=error)
        finally:
            exchange.request.body.abandon()
        if self.gone or exchange.released:
            # a handler told of the loss instead of cancelled, or one that went on after
            # its response, the connection on to the next request: nothing follows
            return
        if not response.keep_alive or self._body_withheld(exchange):
            # a client told to wait for 100 may never send the body: its framing is lost
            # (unless the body came anyway, whole: then what follows it is the next request;
            # a response whose head left while it was withheld said Connection: close)
            self.close()
        if exchange.complete and exchange.task is not None:
            self._end_exchange()  # the framing waits for this task: move on before it ends

    def _handler_failed(self, exchange: _Exchange, error: BaseException) -> None:
        """The handler raised ``error``: answer ``500``, or abort a response under way."""
        if self.closing:
            return
        response = exchange.response
        if exchange.request.disconnected:
            # told that the client ended its stream, the handler gave up on it
            log.info("HTTP handler stopped after its client's end of stream: %r", error)
            if response.head_sent:
                self.abort()
            else:
                self.close()
            return
        log.error("HTTP handler raised; answering 500", exc_info=error)
        if response.head_sent:
            self.abort()  # the response's framing is broken: nothing else is safe
        else:
            self.refuse(500, "the server failed")

    def _body_withheld(self, exchange: _Exchange) -> bool:
        """Whether the body the client of ``exchange`` announced, waiting for a ``100
        Continue`` not sent, will not come: not all of it was read, nor is it buffered
        behind what was (sent anyway, with its head: the handler answered before the
        framing reached it). Then what follows cannot be framed: the connection closes
        after the response, which says so. A chunked body's end cannot be told in the
        buffer: withheld unless read."""
        if not exchange.expects_continue or exchange.continued or exchange.request.body.complete:
            return False
        engine = self.machine_engine
        if exchange.length is None or self.exchange is not exchange or engine is None:
            return True
        return len(engine.buffered) < self.block_left

    def _continue(self, exchange: _Exchange) -> None:
        """``exchange``'s handler reads its body first: ``100 Continue``, if that exchange
        is still the one being read (not one released, its handler reading late)."""
        if (
            self.exchange is exchange
            and not exchange.response.head_sent
            and not exchange.request.body.complete
            and not self.closing
        ):
            exchange.continued = True
            self.transport.write(_CONTINUE)

    # -- the response's connection -------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes of a response."""
        if not self.closing:
            self.transport.write(data)

    def send_file(self, fd: int, offset: int, count: int) -> asyncio.Future[int] | None:
        """Bytes of a response's file sent by the kernel: the transport's ``sendFile``
        (statewire's socket transport, plain TCP or UNIX), or ``None`` when it has none,
        cannot now, or the connection closes (the bytes are then written)."""
        send = getattr(self.transport, "sendFile", None)
        if send is None or self.closing:
            return None
        sending: asyncio.Future[int] | None = send(fd, offset, count)
        return sending

    async def writable(self) -> None:
        """Return when the client has taken enough of what was written."""
        while self._congested is not None and not self.closing:
            await asyncio.shield(self._congested)

    def transportCongested(self, congested: bool) -> None:
        """Hold response writers while the client does not read."""
        super().transportCongested(congested)
        inner = getattr(self.upgraded_to, "transportCongested", None)
        if inner is not None and self.machine_state == "upgraded":
            inner(congested)
        if congested:
            if self._congested is None:
                self._congested = self._loop().create_future()
                self.congested = True
        else:
            self._release_writers()

    # -- the client's end of stream ------------------------------------------------------

    def readConnectionLost(self) -> None:
        """The client ended its stream: a close, or a half-close (``shutdown(SHUT_WR)``);
        the two look the same until a write fails.

        By default (:attr:`HTTPFactory.half_close` false) the client is gone, as nginx
        and uvicorn take it: the connection closes once what was written is sent, a
        handler still running is cancelled (or told, when it asked to be: ASGI's
        ``http.disconnect``), requests pipelined behind it are dropped.

        With ``half_close``, every complete request the client sent is answered, in
        order (its handlers are not told of anything), then the connection closes; a
        request the end cut short is dropped unanswered (its client can no longer send
        the rest). :attr:`HTTPFactory.half_close_timeout` bounds it: answers not done by
        then are abandoned as for a client gone. After a ``101``, the upgraded protocol
        is told (its ``readConnectionLost``) or the connection closes."""
        if self.client_done or self.closing:
            return
        self.client_done = True
        if not self.factory.half_close:
            self.close()
            return
        self._draining = self.callLater(self.factory.half_close_timeout, self._drain_expired)
        engine = self.machine_engine
        assert engine is not None
        engine.end(self._answered)

    def _answered(self) -> None:
        """Every complete request of a half-closed client was answered."""
        self._stop_draining()
        if self.closing:
            return
        if self.machine_state == "upgraded":
            inner = getattr(self.upgraded_to, "readConnectionLost", None)
            if inner is not None:
                inner()
                return
        self.close()

    def _drain_expired(self) -> None:
        self._draining = None
        log.info("HTTP: a half-closed client's answers took too long; closing")
        self.abort()

    def _stop_draining(self) -> None:
        draining, self._draining = self._draining, None
        _cancel(draining)

    def _release_writers(self) -> None:
        waiting, self._congested = self._congested, None
        self.congested = False
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def upgrade(self, protocol: Any, detach: bool = False) -> None:
        """After this request, hand the connection to ``protocol`` (``101`` was sent): once
        its handler returns, or, with ``detach``, at once (the handler going on)."""
        self.upgraded_to = protocol
        self.upgrade_detached = detach

    def _upgrade_waits(self) -> bool:
        """Whether the connection upgraded and its switch waits for the handler's end."""
        return self.upgraded_to is not None and not self.upgrade_detached

    def server_fields(self) -> bytes:
        """The field lines the server adds to every response (``Date``, ``Server``, the
        factory's ``headers``), made again once a second."""
        factory = self.factory
        date, server, extra = factory.date, factory.server, factory.extra_fields
        now = int(time.time()) if date else 0  # wall time: the reactor's clock is monotonic
        made = _server_fields[0]
        if made[0] == now and made[1] is date and made[2] is server and made[3] is extra:
            return made[4]
        lines = b""
        if date:
            lines += field_line(b"Date", formatdate(now, usegmt=True).encode())
        if server:
            lines += field_line(b"Server", server)
        lines += extra
        _server_fields[0] = (now, date, server, extra, lines)
        return lines

    # -- refusals and the end ------------------------------------------------------------

    def refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` (when no response is under way) and close."""
        exchange = self.exchange
        if exchange is not None:
            task = exchange.task
            if task is not None and not task.done():
                request = exchange.request
                if request.cancel_on_disconnect:
                    if task is not _current_task():
                        task.cancel()
                    request.body.fail(ConnectionError(detail))
                else:
                    # told, not cancelled (as when the client goes): its reads and
                    # writes raise ConnectionError, its on_disconnect callbacks run
                    exchange.response.gone(f"the request was refused: {detail}")
                    request.body.fail(ConnectionError(detail))
                    request.disconnect()
            if exchange.response.head_sent:
                # the request was answered already (its body refused or stalled after
                # the response): a second response would answer nothing; close
                log.info("HTTP %d after the response: %s; closing", status, detail)
                self.close()
                return
        if self.closing:
            return
        log.info("HTTP %d: %s; closing", status, detail)
        text = f"{status} {detail}\n".encode("utf-8", "replace")
        head = b"".join(
            [
                status_line(status),
                self.server_fields(),
                b"Content-Type: text/plain; charset=utf-8\r\n",
                b"Content-Length: %d\r\n" % len(text),
                b"Connection: close\r\n\r\n",
            ]
        )
        # a response to HEAD has no content (RFC 9110 §9.3.2), only its length; before
        # a request line is read, ``method`` is the last request's: the refusal is no
        # HEAD's
        answers_head = self.method == b"HEAD" and (self.in_fields or exchange is not None)
        self.transport.write(head if answers_head else head + text)
        self._log_refusal(status, 0 if answers_head else len(text))
        self.close()

    def _log_refusal(self, status: int, sent: int) -> None:
        """Tell the access log, if the server keeps one, of a refusal sent."""
        exchange = self.exchange
        if exchange is not None:  # (the refusal answers its request)
            exchange.response.answered_instead(status, sent)
            return
        access = self.factory.access_log
        if access is not None:
            line = (self.method, self.target, self.version) if self.in_fields else None
            fields = self.section.fields if self.in_fields else ()
            access.refused(self.addresses()[0], line, fields, status, sent)

    def closeGracefully(self) -> None:
        """The server is stopping (a shutdown, or a worker's drain): the response under
        way, if any, is the last one (it says ``Connection: close`` if its head has not
        left; its request body is still read for its handler), then the connection
        closes. Between requests:

        * a connection whose next request has begun (some of its head came) answers it
          the same way;
        * a new one that has not begun its first request has until
          :attr:`HTTPFactory.first_request_grace` seconds (2) from its start to begin it,
          and that request is answered the same way; past them it closes (a client of a
          fresh connection has no answer to retry on; Go's server waits likewise);
        * a kept-alive one, idle, closes now, as does one whose response is complete and
          its handler done (its client may retry on a new connection, as HTTP/1.1
          clients do when a kept-alive connection closes).

        After a ``101``, the upgraded protocol is asked (its own ``closeGracefully``), also
        when the upgrade comes after this call. A handler slower than the shutdown's
        ``shutdown_timeout`` is cut by its abort."""
        upgraded, exchange = self.upgraded_to, self.exchange
        if self.closing or self.stopping:
            return
        self.stopping = True
        if upgraded is not None:
            if getattr(upgraded, "transport", None) is not None:
                close_gracefully(upgraded, self.transport)  # (a WebSocket's close frame)
            # (else its 101 under way: the new protocol is asked once connected)
        elif exchange is not None:
            if exchange.response.finished and (exchange.task is None or exchange.task.done()):
                self.close()  # (what is left of its body is not read: the answer is whole)
            else:
                exchange.response.keep_alive = False  # closed once it is complete
        elif not self._request_begun():  # (a request begun is answered, as the last)
            self._close_between_requests()

    def _close_between_requests(self) -> None:
        """Stopping, no request begun: a kept-alive connection closes now; a new one has
        what is left of its first request's grace."""
        left = self.opened_at + self.factory.first_request_grace - self.seconds()
        if self.method or left <= 0:  # (a request was read before: kept alive, idle)
            self.close()
        else:
            self._grace = self.callLater(left, self._first_request_late)

    def closesGracefully(self) -> bool:
        """Whether :meth:`closeGracefully` finishes what is under way (what a drain asks
        of: :func:`statewire.protocol.has_own_graceful_close`): yes, unless the
        connection was upgraded to a protocol that closes at once."""
        upgraded = self.upgraded_to
        return upgraded is None or has_own_graceful_close(upgraded)

    def _request_begun(self) -> bool:
        """Between requests: whether some of the next request's head came."""
        if self.in_fields:
            return True
        engine = self.machine_engine
        return engine is not None and bool(engine.buffered)

    def _first_request_late(self) -> None:
        """A stopping server's new connection did not begin its first request in time."""
        self._grace = None
        if not self.closing and self.exchange is None and not self._request_begun():
            self.close()

    def close(self) -> None:
        """Close once what was written is sent; no more requests are read. With a
        response cut short whose body is framed by the close (HTTP/1.0, or no length),
        abort instead: a reset tells the client so, where a close would end that body as
        if it were whole (RFC 9112 §8). A body framed by its length or by chunks shows
        its own end missing: that close stays graceful, so the complete responses queued
        before it still leave (a half-closed client's pipelined ones)."""
        exchange = self.exchange
        if exchange is not None and exchange.response.cut_by_close and self.upgraded_to is None:
            self.abort()
            return
        self._cut_short()
        self.closing = True
        self._release_writers()
        super().close()

    def abort(self) -> None:
        """Close at once."""
        self._cut_short()
        self.closing = True
        self._release_writers()
        super().abort()

    def _cut_short(self) -> None:
        """The connection closes: a response under way will write nothing more (its later
        writes are dropped), as the access log will say."""
        exchange = self.exchange
        if exchange is not None and not self.closing and not exchange.response.finished:
            exchange.response.cut()

    def forget(self, reason: object) -> None:
        """The connection is gone: fail the body the handler may be reading and its
        later writes, and stop it (cancel it, unless it asked to be told instead)."""
        self.closing = self.gone = True
        self._release_writers()
        self._stop_draining()
        self._stop_pacing()
        grace, self._grace = self._grace, None
        _cancel(grace)
        exchanges = [] if self.exchange is None else [self.exchange]
        if exchanges and not exchanges[0].response.finished:
            exchanges[0].response.logged(False)  # (cut short: for the access log)
        if self._released:  # (handlers at work after their response: stopped, or told)
            exchanges += self._released
            self._released = None
        for exchange in exchanges:
            task = exchange.task
            if task is None or task.done():
                continue
            request = exchange.request
            exchange.response.gone("the client went away")
            if request.cancel_on_disconnect:
                task.cancel()
            request.body.fail(ConnectionError("connection lost"))
            request.disconnect()

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        """A line over its limit is ``414`` or ``431``; anything else the peer got wrong
        is ``400``. Either way the connection closes."""
        state = self.machine_state
        if isinstance(error, FrameTooLong) and state == "head" and not self.in_fields:
            self.refuse(414, f"request line over {MAX_REQUEST_LINE} bytes")
        elif isinstance(error, FrameTooLong) and state in ("head", "trailers"):
            self.refuse(431, f"field section over {MAX_FIELD_BYTES} bytes")
        elif isinstance(error, FramingError):
            self.refuse(400, error.message)
        else:
            self.refuse(400, str(error))


def _cancel(call: Any) -> None:
    """Cancel a delayed call, if there is one and it has not run."""
    if call is not None and call.active():
        call.cancel()


def _address(address: Any) -> tuple[str, int] | None:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return (str(host), int(port)) if host is not None and port is not None else None


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _cancel_asked(task: asyncio.Task[Any]) -> bool:
    """Whether something asked ``task`` to stop (its ``cancel()``: the client gone, a
    shutdown, a deadline), rather than its coroutine raising ``CancelledError`` on its own
    (an awaited future cancelled elsewhere). Python 3.10 cannot tell: taken as asked."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


__all__ = ["HTTPConnection", "Inputs"]
