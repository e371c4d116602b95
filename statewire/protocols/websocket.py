"""A WebSocket connection's server side (RFC 6455), as a declared machine, and the HTTP
handshake that leads to it.

After an HTTP handler answers a handshake with ``response.upgrade(protocol, fields)``
(:func:`handshake_refusal` says whether to, :func:`accept_fields` what to answer), the
connection's bytes, those already received included, are framed by ``protocol``: a
:class:`WebSocket`, whose one framing is a client frame (:mod:`grammars.websocket`)::

    open        text/binary frame, FIN set       messageReceived(the message)
                text/binary frame, FIN clear     -> fragmented (a message begins)
                ping                             pong with the same payload
                close                            the close answered -> closed
    fragmented  continuation, FIN clear          the message grows
                continuation, FIN set            -> open, messageReceived(the message)
                ping / pong / close              as in open (control frames interleave)

A subclass overrides :meth:`WebSocket.messageReceived` (a text message is a ``str``, a
binary one ``bytes``) and :meth:`WebSocket.websocketClosed`, and sends with
:meth:`WebSocket.sendMessage` and :meth:`WebSocket.sendClose`.

Compression (permessage-deflate, RFC 7692): :func:`accept_fields` given the protocol
(``accept_fields(request, protocol=session)``) accepts the client's offer when
:attr:`WebSocket.compression` is on (the default), and the session then compresses every
message it sends and inflates each one the client sent compressed (see
:mod:`statewire.protocols._websocket_deflate` for the parameters chosen).

Refused, with a close frame and the connection closed: an unmasked client frame, RSV bits
(but ``RSV1`` on a message's first frame in a session that agreed on permessage-deflate),
an unknown opcode, a fragmented or long (> 125 bytes) control frame, a 64-bit length with
its top bit set (each as soon as the frame's header is there, before its payload), a
continuation with no message begun or a new message inside one (``1002``), a text message
or close reason that is not UTF-8, a compressed message that does not inflate (``1007``),
a frame or message over :attr:`WebSocket.max_message` (16 MiB, ``1009``; a compressed one
as soon as its inflated bytes pass it). A client that stops reading is dropped after
:attr:`WebSocket.write_timeout` (30 s) without taking a byte.

A close, either side's, ends the session (:meth:`WebSocket.websocketClosed` at once). The
server answers a client's close frame with the same code and closes the connection. A
close it sends itself (:meth:`~WebSocket.sendClose`) waits for the client's close frame,
as RFC 6455 §7.1.1 has it, up to :attr:`~WebSocket.close_timeout` (10 s, as the
``websockets`` library), then closes the connection: the server closes first, and the
client sees its close answered. Messages that come meanwhile are dropped, pings are not
answered. A close for a protocol error (``1002``, ``1007``, ``1009``, ``1011``) and the
stop's ``1001`` (:meth:`~WebSocket.closeGracefully`) do not wait: the connection closes
once the frame is sent.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterable
from typing import Any, Protocol

from automat import TypeMachineBuilder

from grammars.websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ClientFrames,
    Frame,
    client_frames,
    close_code_allowed,
    close_payload,
    frame,
)
from statewire.declarative import MachineProtocol
from statewire.error import Failure, connectionDone
from statewire.framing import FrameTooLong, FramingError
from statewire.machine import RemoteProtocolError, UnexpectedInput, by_key
from statewire.protocols._http_exchange import field_bytes
from statewire.protocols._websocket_deflate import Deflate, TooBig, negotiate

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: the largest message (and frame payload) :class:`WebSocket` takes
MAX_MESSAGE = 16 << 20
#: the close code a connection lost without a close frame reports (RFC 6455 §7.1.5)
ABNORMAL = 1006
#: the close code a close frame without one reports (RFC 6455 §7.1.5)
NO_STATUS = 1005


# -- the handshake (RFC 6455 §4.2) --------------------------------------------------------


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def wants_websocket(request: Any) -> bool:
    """Whether ``request`` asks for a WebSocket: ``websocket`` among its ``Upgrade``
    tokens and the ``upgrade`` connection option (RFC 9110 §7.8: without the option, the
    ``Upgrade`` field is not for this hop), a valid handshake or not."""
    headers = request.headers
    return b"websocket" in headers.tokens(b"upgrade") and b"upgrade" in headers.tokens(
        b"connection"
    )


def handshake_refusal(request: Any) -> str | None:
    """Why ``request`` (one that :func:`wants_websocket`) is not a valid handshake, to be
    answered ``400`` with ``Sec-WebSocket-Version: 13`` (the RFC's own example), or
    ``None``: a ``GET`` of HTTP/1.1 or later (RFC 6455 §4.1; and RFC 9110 §15.2 sends no
    ``101`` to HTTP/1.0), the ``upgrade`` connection option, version 13, a key of 16 bytes
    in base64."""
    headers = request.headers
    if request.method != b"GET":
        return "a WebSocket handshake is a GET"
    if request.version < (1, 1):
        return "a WebSocket handshake is HTTP/1.1"
    if b"upgrade" not in headers.tokens(b"connection"):
        return "no upgrade connection option"
    if headers.get(b"sec-websocket-version") != b"13":
        return "not WebSocket version 13"
    if not _valid_key(headers.get(b"sec-websocket-key") or b""):
        return "no valid Sec-WebSocket-Key"
    return None


def subprotocols(request: Any) -> list[str]:
    """The subprotocols the client offers (``Sec-WebSocket-Protocol``), in its order."""
    return [token.decode("latin-1") for token in request.headers.tokens(b"sec-websocket-protocol")]


def accept_fields(
    request: Any,
    subprotocol: str | None = None,
    extra: Iterable[tuple[Any, Any]] = (),
    protocol: WebSocketCore | None = None,
) -> list[tuple[Any, Any]]:
    """The ``101``'s fields for a valid handshake: ``Upgrade``, ``Connection``,
    ``Sec-WebSocket-Accept``, the ``subprotocol`` chosen (one the client offered, else
    :class:`ValueError`), ``Sec-WebSocket-Extensions`` when permessage-deflate is agreed
    on, then ``extra``.

    ``protocol`` is the session the connection will switch to: when its
    :attr:`~WebSocketCore.compression` is on and the client offers permessage-deflate in
    a form the server can honour, the offer is accepted and ``protocol`` set to compress
    (without ``protocol``, no extension is agreed on; nor when ``extra`` answers
    ``Sec-WebSocket-Extensions`` itself)."""
    key = request.headers.get(b"sec-websocket-key") or b""
    extra = list(extra)  # (read twice: an iterator would be spent by the first)
    fields: list[tuple[Any, Any]] = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol is not None:
        if subprotocol not in subprotocols(request):
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        fields.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
    own = any(field_bytes(name).lower() == b"sec-websocket-extensions" for name, _ in extra)
    if protocol is not None and protocol.compression and not own:
        agreement = negotiate(request.headers.get_all(b"sec-websocket-extensions"))
        if agreement is not None:
            protocol.deflate = Deflate(agreement)
            fields.append((b"Sec-WebSocket-Extensions", agreement.response()))
    fields.extend(extra)
    return fields


# -- the machine ---------------------------------------------------------------------------


class Frames(Protocol):
    """The machine's inputs: one per kind of frame, and the loss."""

    def message(self, opcode: int, data: bytes, compressed: bool) -> None: ...
    def begin(self, opcode: int, data: bytes, compressed: bool) -> None: ...
    def more(self, opcode: int, data: bytes) -> None: ...
    def last(self, opcode: int, data: bytes) -> None: ...
    def ping(self, opcode: int, data: bytes) -> None: ...
    def pong(self, opcode: int, data: bytes) -> None: ...
    def close(self, opcode: int, data: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class WebSocketCore(MachineProtocol):
    """The machine's core: the message being put together, sending and closing."""

    #: the largest message taken (its fragments together), and frame: past it, ``1009``
    #: (a frame from its header, in a subclass of :class:`WebSocket` that sets it)
    max_message = MAX_MESSAGE
    #: a client that stops reading while frames pile up is dropped after this long
    #: without taking a byte (the HTTP side's limit, which the upgrade would lift)
    write_timeout = 30.0
    #: the opcode of the fragmented message under way
    opcode = TEXT
    #: the fragmented message under way: one buffer, so a fragment costs its payload
    #: bytes only (a list of fragments would grow with empty ones for ever)
    message: bytearray
    #: seconds between the server's pings (``None``: it sends none); a client that does
    #: not answer one with a pong within :attr:`ping_timeout` seconds is closed (``1011``),
    #: as one gone without a word (a half-open connection) would otherwise stay for ever;
    #: while the server itself holds frames unread, the wait is extended
    ping_interval: float | None = None
    #: (``None``: no pong is waited for, the pings go on)
    ping_timeout: float | None = 20.0
    #: the session's close code, once it ended (either side's close, or the loss)
    close_code: int | None = None
    #: seconds a close the server sent waits for the client's close frame before the
    #: connection closes anyway
    close_timeout = 10.0
    #: the end of that wait, while it lasts
    _closing: Any = None
    #: whether :func:`accept_fields` (given this protocol) agrees on permessage-deflate
    #: when the client offers it
    compression = True
    #: the session's permessage-deflate, once agreed on (``None``: messages go as they are)
    deflate: Deflate | None = None
    #: whether the fragmented message under way is compressed
    compressed = False
    #: the next keepalive step (a ping to send, or a pong waited for)
    _keepalive: Any = None
    _pong_due = False
    #: what was sent before the connection switched to the protocol (a handler that
    #: upgraded with ``detach`` may send at once): written first once it does
    _unsent: list[bytes] | None = None

    # -- what a subclass overrides ------------------------------------------------------

    def messageReceived(self, message: str | bytes) -> None:
        """A whole message: ``str`` for a text message, ``bytes`` for a binary one."""

    def websocketClosed(self, code: int, reason: str) -> None:
        """The session ended, once: the client's close frame (its code, ``1005`` for
        none), the server's own (its code), or the connection lost first (``1006``)."""

    # -- sending ------------------------------------------------------------------------

    def sendMessage(self, message: str | bytes) -> None:
        """Send one message: text for a ``str``, binary for bytes. Nothing is sent once
        the session ended."""
        if self.close_code is not None:
            return
        if isinstance(message, str):
            opcode, data = TEXT, message.encode("utf-8")
        else:
            opcode, data = BINARY, bytes(message)
        deflate = self.deflate
        compressed = None if deflate is None else deflate.compress(data)
        if compressed is None:
            self._write(frame(opcode, data))
        else:
            self._write(frame(opcode, compressed, True, True))

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)
        elif self._unsent is None:
            self._unsent = [data]
        else:
            self._unsent.append(data)

    def connectionMade(self) -> None:
        """The connection is the protocol's: what was sent before goes first (and a close
        sent before closes it)."""
        super().connectionMade()
        unsent, self._unsent = self._unsent, None
        if unsent:
            self.transport.write(b"".join(unsent))
        if self.close_code is not None:
            self.close()
        elif self.ping_interval is not None:
            self._keepalive = self.callLater(self.ping_interval, self._ping)

    # -- keepalive ----------------------------------------------------------------------

    def _ping(self) -> None:
        self._keepalive = None
        if self.close_code is None:
            self._pong_due = True
            self.transport.write(frame(PING, b"statewire keepalive"))
            if self.ping_timeout is None:  # (no pong waited for: the next ping)
                assert self.ping_interval is not None
                self._keepalive = self.callLater(self.ping_interval, self._ping)
            else:
                self._keepalive = self.callLater(self.ping_timeout, self._no_pong)

    def _no_pong(self) -> None:
        self._keepalive = None
        timeout = self.ping_timeout
        if self.close_code is not None or not self._pong_due or timeout is None:
            return
        engine = self.machine_engine
        if engine is not None and engine.holds:
            # the server is not reading frames now (its own pause): the pong may be among
            # those waiting, so the client is given another timeout, not blamed
            self._keepalive = self.callLater(timeout, self._no_pong)
            return
        self.fail(1011, "keepalive ping timeout")

    def pongReceived(self, data: bytes) -> None:
        """A pong: the client is there (the next ping in :attr:`ping_interval`)."""
        if self._pong_due and self.close_code is None and self.ping_interval is not None:
            self._pong_due = False
            if self._keepalive is not None:
                self._keepalive.cancel()
            self._keepalive = self.callLater(self.ping_interval, self._ping)

    def sendClose(self, code: int = 1000, reason: str = "") -> None:
        """End the session: a close frame with ``code`` (one a close frame may carry),
        then the client's close frame is waited for (:attr:`close_timeout`) before the
        connection closes."""
        if not close_code_allowed(code):
            raise ValueError(f"close code {code} is not one a close frame carries")
        self._close_with(code, reason, wait=True)

    def closeGracefully(self) -> None:
        """The server is stopping: the close frame RFC 6455 §7.4.1 gives that (``1001``,
        going away), then the close once it is sent. The client's close frame is not
        waited for: a stop is bounded by its own deadlines (a drain's, a shutdown's, which
        would reset a connection still open past them), and the lingering close still
        takes in what the client sends after it."""
        self._close_with(1001, "server going away")

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code``: the peer broke the protocol (the connection closes once
        the frame is sent, nothing waited for)."""
        self._close_with(code, reason)

    def _close_with(self, code: int, reason: str, wait: bool = False) -> None:
        if self.close_code is None:
            self._write(frame(CLOSE, close_payload(code, reason)))
            self._ended(code, reason)
            if wait and self.transport is not None:
                self._closing = self.callLater(self.close_timeout, self._close_now)
                return
        if self.transport is not None:
            self._close_now()

    def _close_now(self) -> None:
        self._stop_waiting()
        self.close()

    def _stop_waiting(self) -> None:
        """End the wait for the client's close frame, if one is under way."""
        closing, self._closing = self._closing, None
        if closing is not None and closing.active():
            closing.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The connection is gone: the wait for the client's close frame ends too."""
        self._stop_waiting()
        super().connectionLost(reason)

    def abandoned(self) -> None:
        """The connection is gone, as told by something other than its transport (the
        HTTP side, when the client left before the switch): the session ends, ``1006``."""
        self._ended(ABNORMAL, "")

    def _ended(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            keepalive, self._keepalive = self._keepalive, None
            if keepalive is not None and keepalive.active():
                keepalive.cancel()
            self.websocketClosed(code, reason)

    # -- receiving ----------------------------------------------------------------------

    def deliver(self, opcode: int, data: bytes, compressed: bool = False) -> None:
        """A whole message (``compressed``: to inflate first), checked: to
        :meth:`messageReceived`; dropped once the session ended (the server's close
        waiting for the client's)."""
        if self.close_code is not None:
            return
        if compressed:
            inflated = self.inflated(data, True, self.max_message)
            if inflated is None:
                return
            data = inflated
        if opcode == TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(1007, "text message is not UTF-8")
                return
            self.messageReceived(text)
        else:
            self.messageReceived(data)

    def inflated(self, data: bytes, final: bool, room: int) -> bytes | None:
        """A compressed message's next fragment inflated (``final``: its last), at most
        ``room`` bytes; ``None`` when the session failed on it: ``RSV1`` with no
        permessage-deflate agreed on (``1002``), data that does not inflate (``1007``),
        past ``room`` (``1009``)."""
        deflate = self.deflate
        if deflate is None:
            self.fail(1002, "RSV1 without permessage-deflate")
            return None
        try:
            return deflate.inflate(data, final, room)
        except TooBig:
            self.fail(1009, "message too big")
        except zlib.error:
            self.fail(1007, "compressed message does not inflate")
        return None

    def grow(self, data: bytes, final: bool = False) -> bool:
        """Add a fragment to the message under way (inflated, when it is compressed);
        ``False`` if the session failed on it (too big, or not inflating), or ended
        before it."""
        if self.close_code is not None:
            return False
        if self.compressed:
            inflated = self.inflated(data, final, self.max_message - len(self.message))
            if inflated is None:
                return False
            data = inflated
        if len(self.message) + len(data) > self.max_message:
            self.fail(1009, "message too big")
            return False
        self.message += data
        return True

    def closed_by_client(self, data: bytes) -> None:
        """The client's close frame: checked (RFC 6455 §5.5.1, §7.4), answered with its
        code, the session ended."""
        if len(data) == 1:
            self.fail(1002, "close payload of one byte")
            return
        code, reason = NO_STATUS, ""
        if data:
            # (the reason first, as the websockets library checks: a frame breaking both
            # rules is 1007 in either)
            try:
                reason = data[2:].decode("utf-8")
            except UnicodeDecodeError:
                self.fail(1007, "close reason is not UTF-8")
                return
            code = int.from_bytes(data[:2], "big")
            if not close_code_allowed(code):
                self.fail(1002, "invalid close code")
                return
        if self.close_code is None:
            self.transport.write(frame(CLOSE, data[:2]))
        self._ended(code, reason)
        self._close_now()

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        """A refused frame: ``1009`` when too long, else ``1002`` (its header broke a rule
        of :func:`~grammars.websocket.read_header`, or it came out of sequence)."""
        if isinstance(error, FrameTooLong):
            self.fail(1009, "frame too big")
        elif isinstance(error, UnexpectedInput):
            self.fail(1002, f"{error.input} frame out of sequence")
        elif isinstance(error, FramingError):
            self.fail(1002, error.message)
        else:
            self.fail(1002, "malformed frame")


builder = TypeMachineBuilder(Frames, WebSocketCore)
open_ = builder.state("open")
fragmented = builder.state("fragmented")
closed = builder.state("closed")


@open_.upon(Frames.message).loop()
def deliver(
    machine: Frames, core: WebSocketCore, opcode: int, data: bytes, compressed: bool
) -> None:
    core.deliver(opcode, data, compressed)


@open_.upon(Frames.begin).to(fragmented)
def begin(
    machine: Frames, core: WebSocketCore, opcode: int, data: bytes, compressed: bool
) -> None:
    core.opcode, core.message, core.compressed = opcode, bytearray(), compressed
    core.grow(data)


@fragmented.upon(Frames.more).loop()
def grow(machine: Frames, core: WebSocketCore, opcode: int, data: bytes) -> None:
    core.grow(data)


@fragmented.upon(Frames.last).to(open_)
def finish(machine: Frames, core: WebSocketCore, opcode: int, data: bytes) -> None:
    if core.grow(data, True):
        core.deliver(core.opcode, bytes(core.message))
    core.message = bytearray()


def pong(machine: Frames, core: WebSocketCore, opcode: int, data: bytes) -> None:
    if core.close_code is None:
        core.transport.write(frame(PONG, data))


def pong_came(machine: Frames, core: WebSocketCore, opcode: int, data: bytes) -> None:
    core.pongReceived(data)


def close_back(machine: Frames, core: WebSocketCore, opcode: int, data: bytes) -> None:
    core.closed_by_client(data)


def gone(machine: Frames, core: WebSocketCore, reason: object) -> None:
    core._ended(ABNORMAL, "")


for _state in (open_, fragmented):
    _state.upon(Frames.ping).loop()(pong)
    _state.upon(Frames.pong).loop()(pong_came)
    _state.upon(Frames.close).to(closed)(close_back)
    _state.upon(Frames.lost).to(closed)(gone)
closed.upon(Frames.lost).loop()(gone)

_CONTROL = {CLOSE: "close", PING: "ping", PONG: "pong"}


def kind(parsed: Frame) -> str:
    """What a client frame is, for the route (its header passed the grammar's rules: a
    known opcode, a control frame whole)."""
    opcode = parsed.opcode
    if opcode >= CLOSE:
        return _CONTROL[opcode]
    if opcode == CONTINUATION:
        return "last" if parsed.fin else "more"
    return "message" if parsed.fin else "begin"


def payload_of(parsed: Frame) -> tuple[int, bytes]:
    """The route's converter: the frame's opcode and (unmasked) payload."""
    return parsed.opcode, parsed.payload


def message_of(parsed: Frame) -> tuple[int, bytes, bool]:
    """The route's converter for a message's first frame: its opcode, (unmasked) payload
    and whether the message is compressed (``RSV1``)."""
    return parsed.opcode, parsed.payload, parsed.rsv1


def frames_of(protocol: Any, data: object) -> ClientFrames:
    """A session's framing: client frames, ``RSV1`` allowed on a message's first frame once
    the session agreed on permessage-deflate (the handshake's answer comes before the
    switch, so the first frame read already knows)."""
    frames: ClientFrames = (
        protocol.frames if protocol.deflate is None else protocol.compressed_frames
    )
    return frames


_ROUTE = by_key(
    kind,
    {
        **{name: (getattr(Frames, name), message_of) for name in ("message", "begin")},
        **{
            name: (getattr(Frames, name), payload_of)
            for name in ("more", "last", "ping", "pong", "close")
        },
    },
)


class WebSocket(WebSocketCore):
    """A WebSocket session's server side: the machine above, client frames in every open
    state. Subclass it (see the module's docs)."""

    machine = builder.build()
    framings = {open_: frames_of, fragmented: frames_of}
    #: the client frames a session reads (:func:`frames_of`): without permessage-deflate,
    #: and with it
    frames = client_frames(MAX_MESSAGE)
    compressed_frames = client_frames(MAX_MESSAGE, deflate=True)
    routes = {open_: _ROUTE, fragmented: _ROUTE}
    lost = Frames.lost

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that sets :attr:`max_message` frames with that bound too: a frame
        announcing more is refused (``1009``) from its header."""
        if "max_message" in cls.__dict__:
            cls.frames = client_frames(cls.max_message)
            cls.compressed_frames = client_frames(cls.max_message, deflate=True)
        super().__init_subclass__(**kwargs)


__all__ = [
    "ABNORMAL",
    "MAX_MESSAGE",
    "NO_STATUS",
    "Frames",
    "WebSocket",
    "WebSocketCore",
    "accept_fields",
    "accept_key",
    "handshake_refusal",
    "subprotocols",
    "wants_websocket",
]
