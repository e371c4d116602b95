"""An HTTP/1.1 server (RFC 9110/9112) whose connection is a declared state machine.

Theory of operation
-------------------
Each state frames the bytes that arrive while it is current, and each frame is an input::

    head           line LF ≤ 64 KiB   every line of a head:     (a loop, one output)
                                      one blank line            ignored
                                      the request line          (414 past 8 KiB)
                                      a field line              (kept; 64 KiB, 100 fields)
                                      the blank line            -> no_body / length_body /
                                                                   chunk_size (the framing the
                                                                   fields announce), handler
                                                                   started; no state change
                                                                   when it answered a request
                                                                   without a body inside that
                                                                   frame: the next head is
                                                                   read here at once
    length_body    fixed(≤ 256 KiB)   a piece of the body       -> body_piece
    body_piece     nothing            (decides at once)         -> length_body for the next
                                                                   piece, or -> responding
    chunk_size     line LF ≤ 4 KiB    a chunk-size line         a short chunk: its data and
                                                                   CRLF read with the line
                                                                   (a loop), else ->
                                                                   chunk_whole; chunk_data
                                                                   for a long one, trailers
                                                                   for the last (routed by
                                                                   the size the line starts
                                                                   with)
    chunk_whole    fixed(size + 2)    a short chunk's data and  -> chunk_size
                                      its CRLF, one frame
    chunk_data     fixed(≤ 256 KiB)   a piece of a long chunk   -> chunk_piece
    chunk_piece    nothing            (decides at once)         -> chunk_data, or chunk_end
    chunk_end      fixed(2)           its CRLF                  -> chunk_size
    trailers       line LF ≤ 64 KiB   a trailer field / blank   -> responding at the blank
    responding     nothing            (reading is held)         -> head (keep-alive),
                                                                   upgraded (after a 101)
                                                                   or closed
    upgraded       raw                every byte                -> the protocol upgraded to
    any state      connection lost                              -> closed

Lines are cut at LF and :func:`grammars.http1.content_of` insists on the CR before it, so
a bare LF or a bare CR is refused at the line that holds it, whatever the reads were. A
field section that came whole in the read of its request line (up to 8 KiB, as nearly
every head does) is read by the request line's output (:meth:`HTTPConnection.read_fields_ahead`,
with :meth:`statewire.machine.Engine.peek_ahead` and ``take_ahead``): its lines are those
the framing would cut, checked alike, in one pass; a head costs one frame, not one a line
(after a head read so, the framer delivers the rest of the read a frame at a time, so the
pipelined heads behind it are read whole too; heads the framing had cut in one batch are
read as cut). A
chunk whose data and CRLF fit one piece (256 KiB) costs one transition when they came in
the read of its size line (taken with it: :meth:`statewire.machine.Engine.take_ahead`),
three when the reads cut them from it: a body sent as many tiny chunks costs one frame a
chunk.

The request target's form is checked against the method on the request line (RFC 9112
§3.2: authority-form for ``CONNECT`` only and only it, asterisk-form for ``OPTIONS``
only), before any field is read.

When the client ends its stream (a half-close), :meth:`HTTPConnection.readConnectionLost`
lets the framing finish what it holds: each complete request is still answered, in
order, and once nothing buffered can make another request, the connection closes; the
start of a request the stream cut short is dropped unanswered.

The handler (``async def handler(request, response)``) starts as soon as the head is read,
eagerly: it runs inside the output that read the blank line until it first waits, and
only then becomes a task (:mod:`statewire.protocols._http_task`). It may answer before
reading the body, or stream the body as it arrives (``async for chunk in request.body``).
When the frame that completes the request (the body, the last trailer line; for a request
without a body, the blank line, whose ``no_body`` output does it) arrives while the
handler still runs, its output returns the handler's task, and statewire frames nothing
more until it is done; so pipelined requests are read, and answered, one after the other,
in order, and a handler that never waits answers a whole pipelined read without a single
task or loop turn: a request without a body answered inside the read of its head changes
no state at all (the machine stays in ``head``; the head's deadline is started again,
:meth:`statewire.machine.Engine.restart_timeout`, as entering ``head`` would). While the
handler leaves more than 64 KiB of the body unread, reading pauses too. A body of
announced length up to 64 KiB that came whole in the read of its head (and whose client
does not wait for ``100 Continue``) is read by the blank line's output, before the handler
starts (:meth:`statewire.machine.Engine.take_ahead`): the request is then one without a
body to read, and a small ``POST`` answered at once changes no state either.

A piece state reads nothing: the output that leaves the reading state queues the input
that takes it on (to the next piece, or past the body) before another frame is cut, and
entering the reading state again computes the next piece's size (framings are evaluated
on entering a state).

Refusals (see ``docs/http.md``) are answered with a status and ``Connection: close`` and
close the connection, since the framing of what follows is no longer known: ``400`` for
malformed syntax and every request-smuggling vector (``Content-Length`` with
``Transfer-Encoding``, differing lengths, a ``Transfer-Encoding`` not ending in
``chunked``, obs-fold, whitespace before a colon, bare CR or LF, control bytes, bad chunk
sizes, a chunk not followed by CRLF) and for a target form its method may not use,
``413`` past ``max_body`` (from ``Content-Length`` or the chunk sizes, before the bytes
are read), ``414``, ``431``, ``417`` for an expectation other than ``100-continue``,
``501`` for transfer codings other than ``chunked``, ``505`` for versions other than 1.0
and 1.1, ``408`` when the field section or a body stalls. A request line not complete
:data:`KEEP_ALIVE_TIMEOUT` seconds after the connection or the previous exchange closes
the connection quietly, a field section not complete as long after its request line is
``408`` (deadlines: a client dribbling a head cannot hold the connection).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from automat import TypeMachineBuilder
from construct import this

from grammars import InvalidValueError, fixed, line, raw
from grammars.http1 import MAX_CHUNK_DIGITS, MAX_CHUNK_LINE, MAX_FIELD_BYTES, field_line
from statewire.machine import Timeout, by_key
from statewire.protocol import Factory, close_gracefully
from statewire.protocols._http_access import AccessEntry, AccessLog
from statewire.protocols._http_connection import BODY_IDLE_TIMEOUT, HTTPConnection, Inputs
from statewire.protocols._http_exchange import Body, Headers, Request, Response, field_bytes
from statewire.protocols._http_head import Refusal
from statewire.protocols._log_text import chosen_log
from statewire.protocols._tls_info import TLSInfo

P = ParamSpec("P")
R = TypeVar("R")

#: an application: called with each request and its response writer
Handler = Callable[[Request, Response], Awaitable[None]]

#: default largest request body (``413`` beyond)
MAX_BODY = 1 << 20
#: the largest piece of a body read at once (a body is streamed in such pieces): the
#: largest read the socket transport asks for, so a read of a large body is one piece
#: (64 KiB pieces cost a transition and a wake-up of the handler each: a 1 MiB upload
#: took a quarter more of the server's CPU)
BODY_PIECE = 256 << 10
#: seconds a connection has to send a whole request line, from its start or the end of
#: the previous exchange, and then the whole field section, from the request line:
#: deadlines, not idle timers (a head dribbled a byte every few seconds would otherwise
#: hold the connection for hours: slowloris)
KEEP_ALIVE_TIMEOUT = 15.0


def _refusing(
    output: Callable[Concatenate[Inputs, HTTPConnection, P], R],
) -> Callable[Concatenate[Inputs, HTTPConnection, P], R | None]:
    """An output whose :class:`Refusal` answers the client and closes the connection."""

    @functools.wraps(output)
    def refusing(
        machine: Inputs, core: HTTPConnection, /, *args: P.args, **kwargs: P.kwargs
    ) -> R | None:
        try:
            return output(machine, core, *args, **kwargs)
        except Refusal as refusal:
            core.refuse(refusal.status, refusal.detail)
            return None

    return refusing


@dataclass(frozen=True)
class Block:
    """A state reading a piece of a body or of a chunk's data, and the piece's size."""

    size: int

    @classmethod
    def next(cls, core: HTTPConnection) -> Block:
        """The next piece: what is left of the body or chunk, at most :data:`BODY_PIECE`."""
        return cls(min(core.block_left, BODY_PIECE))

    @classmethod
    def whole_chunk(cls, machine: Inputs, core: HTTPConnection, frame: bytes) -> Block:
        """The data of the short chunk whose size line is ``frame``, and its CRLF."""
        return cls(_size_of(frame) + 2)


# a state's data is made before the output of the transition entering it runs: a short
# chunk's block is sized from its size line (the output then refuses a line malformed
# after the size); _chunk_kind sends only lines starting with a size there
_HEX_PREFIX = re.compile(rb"[0-9A-Fa-f]{1,%d}" % MAX_CHUNK_DIGITS)


def _size_of(line: bytes) -> int:
    digits = _HEX_PREFIX.match(line)
    return 0 if digits is None else int(digits.group(), 16)


builder = TypeMachineBuilder(Inputs, HTTPConnection)
head = builder.state("head")
length_body = builder.state("length_body", lambda machine, core: Block.next(core))
body_piece = builder.state("body_piece")
chunk_size = builder.state("chunk_size")
chunk_whole = builder.state("chunk_whole", Block.whole_chunk)
chunk_data = builder.state("chunk_data", lambda machine, core: Block.next(core))
chunk_piece = builder.state("chunk_piece")
chunk_end = builder.state("chunk_end")
trailers = builder.state("trailers")
responding = builder.state("responding")
upgraded = builder.state("upgraded")
closed = builder.state("closed")


@head.upon(Inputs.line).loop()
def read_head_line(machine: Inputs, core: HTTPConnection, frame: bytes) -> None:
    # every line of a head, one output (a loop: the engine calls it with nothing around
    # it); a request without a body answered inside the blank line's frame leaves the
    # machine here, ready for the next one, with no state change at all
    try:
        if core.in_fields:
            if core.section.add(frame):
                core.start_exchange(machine)
        elif frame == b"\r":
            # RFC 9112 §2.2: a server should ignore a CRLF before the request line (some
            # clients send one after a body); more than one is no client's habit
            core.blank_lines += 1
            if core.blank_lines > 1:
                raise Refusal(400, "blank lines before the request line")
        else:
            core.read_request_line(frame)
            core.read_fields_ahead(machine)
    except Refusal as refusal:
        core.refuse(refusal.status, refusal.detail)


@head.upon(Inputs.no_body).to(responding)
def wait_for_handler(machine: Inputs, core: HTTPConnection) -> Awaitable[None] | None:
    return core.end_of_request(machine)


head.upon(Inputs.length_body).to(length_body).returns(None)
head.upon(Inputs.chunked_body).to(chunk_size).returns(None)


@length_body.upon(Inputs.body).to(body_piece)
def read_body(
    machine: Inputs, core: HTTPConnection, block: Block, data: bytes
) -> Awaitable[None] | None:
    waiting = core.feed_body(data)
    core.block_left -= len(data)
    if core.block_left:
        machine.next_piece()
        return waiting
    core.body.finish()
    machine.message_end()
    return core.end_of_request(machine)


# the piece states read nothing: the input their entry queues takes them on at once
body_piece.upon(Inputs.next_piece).to(length_body).returns(None)
body_piece.upon(Inputs.message_end).to(responding).returns(None)


@chunk_size.upon(Inputs.short_chunk).loop()
@_refusing
def read_short_chunk(
    machine: Inputs, core: HTTPConnection, frame: bytes
) -> Awaitable[None] | None:
    # the data and CRLF of a short chunk that came in the read of its size line are read
    # here (Engine.take_ahead): no state change a chunk; else chunk_whole reads them
    size = core.chunk_line(frame)
    data = core.take_ahead(size + 2)
    if data is None:
        machine.chunk_follows(frame)
        return None
    return core.feed_chunk(data)


chunk_size.upon(Inputs.chunk_follows).to(chunk_whole).returns(None)


@chunk_size.upon(Inputs.chunk_size).loop()
@_refusing
def read_chunk_size(machine: Inputs, core: HTTPConnection, frame: bytes) -> None:
    # a long chunk (read in pieces), or a line not starting with a size (refused)
    core.chunk_line(frame)
    machine.chunk()


chunk_size.upon(Inputs.chunk).to(chunk_data).returns(None)


@chunk_size.upon(Inputs.last_chunk).to(trailers)
@_refusing
def read_last_chunk(machine: Inputs, core: HTTPConnection, frame: bytes) -> None:
    core.chunk_line(frame)


@chunk_whole.upon(Inputs.whole_chunk).to(chunk_size)
@_refusing
def read_whole_chunk(
    machine: Inputs, core: HTTPConnection, block: Block, data: bytes
) -> Awaitable[None] | None:
    return core.feed_chunk(data)


@chunk_data.upon(Inputs.chunk_data).to(chunk_piece)
def read_chunk(
    machine: Inputs, core: HTTPConnection, block: Block, data: bytes
) -> Awaitable[None] | None:
    core.block_left -= len(data)
    if core.block_left:
        machine.next_piece()
    else:
        machine.chunk_read()
    return core.feed_body(data)


chunk_piece.upon(Inputs.next_piece).to(chunk_data).returns(None)
chunk_piece.upon(Inputs.chunk_read).to(chunk_end).returns(None)


@chunk_end.upon(Inputs.chunk_end).to(chunk_size)
@_refusing
def read_chunk_end(machine: Inputs, core: HTTPConnection, data: bytes) -> None:
    if data != b"\r\n":
        raise Refusal(400, "chunk data not followed by CRLF")


@trailers.upon(Inputs.trailer).loop()
@_refusing
def read_trailer(machine: Inputs, core: HTTPConnection, frame: bytes) -> Awaitable[None] | None:
    core.body_wire += len(frame) + 1  # (the pace counts the data and trailers, not size lines)
    if not core.section.add(frame):
        return None
    core.body.finish(tuple(core.section.fields))
    machine.message_end()
    return core.end_of_request(machine)


trailers.upon(Inputs.message_end).to(responding).returns(None)


@responding.upon(Inputs.responded).to(head)
def next_request(machine: Inputs, core: HTTPConnection) -> None:
    core.next_request()


@responding.upon(Inputs.upgraded).to(upgraded)
def switch_protocols(machine: Inputs, core: HTTPConnection) -> None:
    core.upgraded_to.makeConnection(core.transport)
    if core.stopping:  # (asked to close gracefully before its 101: its new protocol is)
        close_gracefully(core.upgraded_to, core.transport)


@upgraded.upon(Inputs.tunnel).loop()
def pass_on(machine: Inputs, core: HTTPConnection, data: bytes) -> None:
    core.upgraded_to.dataReceived(data)


@upgraded.upon(Inputs.lost).to(closed)
def pass_on_loss(machine: Inputs, core: HTTPConnection, reason: Any) -> None:
    core.closing = True
    core.upgraded_to.connectionLost(reason)


@responding.upon(Inputs.finished).to(closed)
def hang_up(machine: Inputs, core: HTTPConnection) -> None:
    core.close()


@head.upon(Inputs.idle).to(closed)
def close_idle(machine: Inputs, core: HTTPConnection) -> None:
    # past the request line's deadline the connection closes quietly (a kept-alive
    # connection left idle); past the field section's, the client is told
    if core.in_fields:
        core.refuse(408, "the request stalled")
    else:
        core.close()


def gone(machine: Inputs, core: HTTPConnection, reason: object) -> None:
    core.forget(reason)


def gone_reading(machine: Inputs, core: HTTPConnection, block: Block, reason: object) -> None:
    core.forget(reason)


# a body's deadline measures the client's silence: while the handler is the one behind
# (more of the body unread than is buffered for it, so nothing more is read), the silence
# is the server's, and the deadline loops (it looks again a period later); else 408,
# and the connection closes (the loss then ends in closed)
def body_stalled(machine: Inputs, core: HTTPConnection) -> None:
    if not core.body.behind:
        core.refuse(408, "the request stalled")


def body_stalled_reading(machine: Inputs, core: HTTPConnection, block: Block) -> None:
    body_stalled(machine, core)


for _state in (chunk_size, chunk_end, trailers):
    _state.upon(Inputs.stalled).loop()(body_stalled)
for _state in (
    head,
    body_piece,
    chunk_size,
    chunk_piece,
    chunk_end,
    trailers,
    responding,
    closed,
):
    _state.upon(Inputs.lost).to(closed)(gone)
for _reading in (length_body, chunk_whole, chunk_data):  # the states sizing their block
    _reading.upon(Inputs.stalled).loop()(body_stalled_reading)
    _reading.upon(Inputs.lost).to(closed)(gone_reading)


def _chunk_kind(frame: bytes) -> str:
    """Which input a chunk-size line is, from the size it starts with: the last chunk, a
    short one (its data and CRLF read as one frame: two transitions a chunk), or any
    other line (a long chunk, read in pieces, or a line not starting with a size, which
    is refused). Each output checks the whole line."""
    if _HEX_PREFIX.match(frame) is None:
        return "other"
    size = _size_of(frame)
    if not size:
        return "last"
    return "short" if size + 2 <= BODY_PIECE else "other"


_FIELD_LINE = line(b"\n", max_length=MAX_FIELD_BYTES)
_BODY_IDLE = Timeout(BODY_IDLE_TIMEOUT, Inputs.stalled, idle=True)


class HTTPServer(HTTPConnection):
    """An HTTP/1.1 server connection: the machine above, a framing per state."""

    machine = builder.build()
    framings = {
        head: _FIELD_LINE,
        length_body: fixed(this.size),
        chunk_size: line(b"\n", max_length=MAX_CHUNK_LINE + 1),
        chunk_whole: fixed(this.size),
        chunk_data: fixed(this.size),
        chunk_end: fixed(2),
        trailers: _FIELD_LINE,
        upgraded: raw(),
    }
    routes = {
        head: Inputs.line,
        length_body: Inputs.body,
        chunk_size: by_key(
            _chunk_kind,
            {
                "short": Inputs.short_chunk,
                "last": Inputs.last_chunk,
                "other": Inputs.chunk_size,
            },
        ),
        chunk_whole: Inputs.whole_chunk,
        chunk_data: Inputs.chunk_data,
        chunk_end: Inputs.chunk_end,
        trailers: Inputs.trailer,
        upgraded: Inputs.tunnel,
    }
    timeouts = {
        head: Timeout(KEEP_ALIVE_TIMEOUT, Inputs.idle),
        length_body: _BODY_IDLE,
        chunk_size: _BODY_IDLE,
        chunk_whole: _BODY_IDLE,
        chunk_data: _BODY_IDLE,
        chunk_end: _BODY_IDLE,
        trailers: _BODY_IDLE,
    }
    lost = Inputs.lost
    #: a peer that never reads our responses is dropped after this long
    write_timeout = 30.0


#: fields the server frames or writes itself: not among a factory's ``headers``
_OWN_FIELDS = {b"content-length", b"transfer-encoding", b"connection", b"date"}


def default_fields(
    headers: Iterable[tuple[bytes | str, bytes | str]],
) -> tuple[bytes, bytes | None]:
    """A factory's ``headers`` (uvicorn's ``--header``): the field lines every response
    gets, and the value of a ``Server`` among them (``None``: none), which replaces the
    server's own, as under uvicorn (an empty one leaves the ``Server`` field out). A
    field the handler gives too is sent twice, as uvicorn does. A name that is not a token
    or a value with a control byte is ``ValueError``, and so is ``Content-Length``,
    ``Transfer-Encoding``, ``Connection`` (the server's to frame with) or ``Date``
    (``date=False`` leaves the server's out)."""
    lines = []
    server = None
    for name, value in headers:
        try:
            name_b, value_b = field_bytes(name), field_bytes(value)
            line_b = field_line(name_b, value_b, "headers")
        except InvalidValueError as error:
            raise ValueError(f"headers: {error.message}") from None
        except UnicodeEncodeError:
            raise ValueError(f"headers: ({name!r}, {value!r}) is not Latin-1") from None
        folded = name_b.lower()
        if folded in _OWN_FIELDS:
            raise ValueError(f"headers: {name_b.decode('latin-1')} is the server's own")
        if folded == b"server":
            server = value_b
        else:
            lines.append(line_b)
    return b"".join(lines), server


def keeping_alive(protocol: type[HTTPServer], seconds: float) -> type[HTTPServer]:
    """``protocol`` with a head's deadline of ``seconds`` (for the request line, from the
    connection's start or the previous exchange's end, then for the field section, from
    the request line): ``protocol`` itself when it has that deadline already, else a
    subclass of the same name (its plan compiled as any declared protocol's), made once
    for each such pair while it is among the last :data:`_KEPT_ALIVE` made. The
    deadline's input is ``protocol``'s own; a protocol with no deadline for ``head``
    raises ``ValueError``, as do seconds that are not finite and positive."""
    if isinstance(seconds, bool) or not (isinstance(seconds, int | float) and 0 < seconds < 1e9):
        raise ValueError(f"keep_alive_timeout={seconds!r}: positive seconds (under a billion)")
    key = (protocol, float(seconds))
    made = _made.get(key)
    if made is None:
        made = _made[key] = _keeping_alive(protocol, float(seconds))
        if len(_made) > _KEPT_ALIVE:
            del _made[next(iter(_made))]  # (the oldest made)
    return made


#: the protocols with a deadline of their own kept made (a factory makes one per protocol)
_KEPT_ALIVE = 32
_made: dict[tuple[type[HTTPServer], float], type[HTTPServer]] = {}


def _keeping_alive(protocol: type[HTTPServer], seconds: float) -> type[HTTPServer]:
    timeouts = dict(protocol.timeouts)
    key = head if head in timeouts else "head" if "head" in timeouts else None
    if key is None:
        raise ValueError(f"{protocol.__name__} has no deadline for its head to set")
    if timeouts[key].seconds == seconds:
        return protocol
    timeouts[key] = dataclasses.replace(timeouts[key], seconds=seconds)
    made = type(protocol.__name__, (protocol,), {"timeouts": timeouts})
    made.__module__, made.__qualname__ = protocol.__module__, protocol.__qualname__
    return made


class HTTPFactory(Factory):
    """Serves :class:`HTTPServer` connections, each request answered by ``handler``."""

    protocol = HTTPServer
    #: seconds a new connection has, from its start, to begin its first request once the
    #: server is stopping (a shutdown, or a worker's drain: see
    #: :meth:`HTTPConnection.closeGracefully`); keep it below the reactor's
    #: ``shutdown_timeout`` (5 s), whose abort would cut it otherwise
    first_request_grace = 2.0
    #: handlers a connection lets run on after their complete responses (an ASGI
    #: application's background task): past them, the next such handler is waited for
    #: before the next request is read, as one that has not answered is. A client then
    #: cannot leave more than this many at work per connection by pipelining requests
    #: (uvicorn bounds them no more than its connections)
    max_background = 16
    #: bytes a second a request body must keep (reckoned as Postfix's
    #: ``smtpd_min_data_rate``: see :mod:`statewire.protocols._pace`, the budget
    #: :data:`BODY_IDLE_TIMEOUT`): slower, ``408`` and the connection closes; ``0``: no
    #: minimum
    min_body_rate = 500
    # (the settings ``__init__`` makes, at their defaults for a subclass that makes its own)
    extra_fields = b""
    keep_alive_timeout: float | None = None
    limit_concurrency: int | None = None
    open_connections = 0

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = MAX_BODY,
        server: bytes | None = b"statewire",
        date: bool = True,
        eager: bool = True,
        in_task: bool = False,
        cancel_on_disconnect: bool = True,
        half_close: bool = False,
        half_close_timeout: float = 30.0,
        access_log: AccessLog | bool | None = None,
        keep_alive_timeout: float | None = None,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
        limit_concurrency: int | None = None,
    ) -> None:
        self.handler = handler
        if limit_concurrency is not None and (
            isinstance(limit_concurrency, bool)
            or not isinstance(limit_concurrency, int)
            or limit_concurrency < 1
        ):
            raise ValueError(f"limit_concurrency={limit_concurrency!r}: a positive number")
        #: open connections past which a request is answered ``503`` and its connection
        #: closed, the handler not called (uvicorn's ``--limit-concurrency``, counting
        #: connections: each runs one handler at a time, and at most
        #: :attr:`max_background` more after their responses); ``None``: no limit
        self.limit_concurrency = limit_concurrency
        #: the connections of this factory open now (WebSocket ones included)
        self.open_connections = 0
        if keep_alive_timeout is not None:
            keeping_alive(HTTPServer, keep_alive_timeout)  # (checked now: ValueError)
        #: the deadline of a head on this factory's connections (:func:`keeping_alive`,
        #: applied to whatever :attr:`protocol` is when a connection comes); ``None``: the
        #: protocol's own (:data:`KEEP_ALIVE_TIMEOUT` for :class:`HTTPServer`)
        self.keep_alive_timeout = keep_alive_timeout
        #: largest request body accepted (``413`` beyond, said before reading it)
        self.max_body = max_body
        #: the field lines every response carries after ``Date`` and ``Server``
        #: (``headers``: see :func:`default_fields`); a ``Server`` among them is the
        #: :attr:`server` field's value
        self.extra_fields, named_server = default_fields(headers)
        #: the ``Server`` field of responses (``None``: none)
        self.server = server if named_server is None else named_server
        #: whether responses carry a ``Date`` field
        self.date = date
        #: whether a handler starts eagerly, inside the read of its request's head, and
        #: becomes a task only when it first waits (false: a task from the start, for
        #: code that needs ``asyncio.current_task()``, as anyio's task groups do)
        self.eager = eager
        #: whether an eager start runs inside the handler's own task, made first
        #: (``asyncio.current_task()`` is it: anyio works; a task a request, even for a
        #: handler that never waits): what ``asgi()`` does
        self.in_task = in_task
        #: whether a handler is cancelled when its client goes away (false: it is told,
        #: see :attr:`Request.cancel_on_disconnect`)
        self.cancel_on_disconnect = cancel_on_disconnect
        #: whether a client's end of stream is a half-close (every complete request it
        #: sent is answered, then the connection closes) rather than the client gone
        #: (the default, as nginx and uvicorn: see :meth:`HTTPServer.readConnectionLost`)
        self.half_close = half_close
        #: seconds a half-closed client's answers may take before they are abandoned
        self.half_close_timeout = half_close_timeout
        #: where each exchange is logged (``None``: nowhere; ``True`` given: an
        #: :class:`AccessLog` to the ``statewire.access`` logger): read at each request
        self.access_log: AccessLog | None = chosen_log(access_log, AccessLog)

    def buildProtocol(self, addr: Any) -> Any:
        """The protocol, with :attr:`keep_alive_timeout` when it is set."""
        seconds = self.keep_alive_timeout
        if seconds is None:
            return super().buildProtocol(addr)
        protocol = keeping_alive(self.protocol, seconds)()
        protocol.factory = self
        return protocol

    def log_access(self) -> None:
        """Log each exchange to the ``statewire.access`` logger, unless a log is kept
        already (what ``statewire serve --access-log`` asks)."""
        if self.access_log is None:
            self.access_log = AccessLog()
        else:
            self.access_log = self.access_log.with_lines()  # (one that only counted)


__all__ = [
    "AccessEntry",
    "AccessLog",
    "Body",
    "HTTPConnection",
    "HTTPFactory",
    "HTTPServer",
    "Handler",
    "Headers",
    "Inputs",
    "Refusal",
    "Request",
    "Response",
    "TLSInfo",
    "default_fields",
    "keeping_alive",
]
