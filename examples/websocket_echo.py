"""A WebSocket echo server (RFC 6455): an HTTP ``Upgrade`` to ``101``, then WebSocket frames.

    GET / with Upgrade: websocket    101 Switching Protocols, then every message is echoed
    GET / without                    426 Upgrade Required

The HTTP side is statewire's HTTP machine: the handler answers ``101`` with
``response.upgrade(protocol, headers)`` and the connection's remaining bytes, those already
received included, are framed from then on by :class:`WebSocketEcho`, a declared machine
whose one framing is a WebSocket frame (a construct grammar, below)::

    open        text/binary frame, FIN set       the message is echoed
                text/binary frame, FIN clear     -> fragmented (a message begins)
                ping                             pong with the same payload
                close                            the close is echoed -> closed
    fragmented  continuation, FIN clear          the message grows
                continuation, FIN set            -> open, the whole message echoed
                ping / pong / close              as in open (control frames interleave)

Refused, with a close frame and the connection closed: an unmasked client frame, RSV bits,
an unknown opcode, a fragmented or long (> 125 bytes) control frame, a 64-bit length with
its top bit set (each as soon as the frame's header is there, before its payload), a
continuation with no message begun or a new message inside one (``1002``), a text message
that is not UTF-8 (``1007``), a message over 16 MiB (``1009``). A client that stops reading
is dropped after 30 s without taking a byte (``write_timeout``).

python examples/websocket_echo.py --port 8080
statewire diagram examples/websocket_echo.py:WebSocketEcho
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Protocol

from automat import TypeMachineBuilder
from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Computed,
    Construct,
    Flag,
    If,
    Int16ub,
    Int64ub,
    Struct,
    Switch,
    ValidationError,
    this,
)

from grammars import limited
from statewire.declarative import MachineProtocol
from statewire.framing import FrameTooLong, FramingError
from statewire.machine import RemoteProtocolError, UnexpectedInput, by_key
from statewire.protocols.http import HTTPFactory, Request, Response

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: largest message (and frame payload) accepted
MAX_MESSAGE = 16 << 20
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10

_HEADER = BitStruct(
    "fin" / Flag,
    "rsv" / BitsInteger(3),
    "opcode" / BitsInteger(4),
    "masked" / Flag,
    "length7" / BitsInteger(7),
)
_LENGTH = Switch(
    this.header.length7, {126: Int16ub, 127: Int64ub}, default=Computed(this.header.length7)
)
#: one WebSocket frame (RFC 6455 §5.2), the 7-, 16- and 64-bit payload lengths
FRAME = Struct(
    "header" / _HEADER,
    "length" / _LENGTH,
    "mask" / If(this.header.masked, Bytes(4)),
    "payload" / Bytes(this.length),
)


class _Rule(Construct):  # type: ignore[misc]
    """A frame that breaks ``test`` (given the frame's fields parsed so far) is refused
    where the rule stands: from its header, before any of its payload arrives."""

    flagbuildnone = True

    def __init__(self, test: Any, reason: str) -> None:
        super().__init__()
        self.test = test
        self.reason = reason

    def _parse(self, stream: Any, context: Any, path: Any) -> None:
        if not self.test(context):
            raise ValidationError(self.reason, path=path)

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> None:
        return None

    def _sizeof(self, context: Any, path: Any) -> int:
        return 0


_KNOWN_OPCODES = {CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG}
#: a client's frame: what RFC 6455 forbids in a header is refused as soon as the header is
#: there (§5.1 masking, §5.2 RSV bits, opcodes and the length's top bit, §5.5 control
#: frames), not once up to 16 MiB of payload came
CLIENT_FRAME = Struct(
    "header" / _HEADER,
    _Rule(lambda c: c.header.masked, "client frames must be masked"),
    _Rule(lambda c: not c.header.rsv, "RSV bits without an extension"),
    _Rule(lambda c: c.header.opcode in _KNOWN_OPCODES, "unknown opcode"),
    _Rule(
        lambda c: c.header.opcode < CLOSE or (c.header.fin and c.header.length7 <= 125),
        "control frames are short and not fragmented",
    ),
    "length" / _LENGTH,
    _Rule(lambda c: c.length < 1 << 63, "a 64-bit length with its top bit set"),
    "mask" / Bytes(4),
    "payload" / Bytes(this.length),
)
#: a client's frames: refused from the header when their payload is over the limit
CLIENT_FRAMES = limited(CLIENT_FRAME, MAX_MESSAGE + 14)


def unmask(mask: bytes, payload: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, not a loop)."""
    n = len(payload)
    if not n:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A server frame (never masked)."""
    n = len(payload)
    length7 = n if n < 126 else 126 if n < 1 << 16 else 127
    header = {"fin": fin, "rsv": 0, "opcode": opcode, "masked": False, "length7": length7}
    built: bytes = FRAME.build({"header": header, "length": n, "mask": None, "payload": payload})
    return built


_CONTROL = {CLOSE: "close", PING: "ping", PONG: "pong"}


def kind(parsed: Any) -> str:
    """What a client frame is, for the route (its header passed :data:`CLIENT_FRAME`'s
    rules: a known opcode, a control frame whole)."""
    header = parsed.header
    opcode = header.opcode
    if opcode >= CLOSE:
        return _CONTROL[opcode]
    if opcode == CONTINUATION:
        return "last" if header.fin else "more"
    return "message" if header.fin else "begin"


def payload_of(parsed: Any) -> tuple[int, bytes]:
    """The route's converter: the frame's opcode and unmasked payload."""
    return parsed.header.opcode, unmask(parsed.mask, parsed.payload)


class Frames(Protocol):
    """The machine's inputs: one per kind of frame, and the loss."""

    def message(self, opcode: int, data: bytes) -> None: ...
    def begin(self, opcode: int, data: bytes) -> None: ...
    def more(self, opcode: int, data: bytes) -> None: ...
    def last(self, opcode: int, data: bytes) -> None: ...
    def ping(self, opcode: int, data: bytes) -> None: ...
    def pong(self, opcode: int, data: bytes) -> None: ...
    def close(self, opcode: int, data: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class WebSocketConnection(MachineProtocol):
    """The machine's core: the message being put together and how to answer."""

    opcode = TEXT
    #: the fragmented message under way: one buffer, so a fragment costs its payload
    #: bytes only (a list of fragments would grow with empty ones for ever)
    message: bytearray

    def send_message(self, opcode: int, data: bytes) -> None:
        """Echo one whole message (checked first)."""
        if opcode == TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(1007, "text message is not UTF-8")
                return
        self.transport.write(frame(opcode, data))

    def grow(self, data: bytes) -> bool:
        """Add a fragment to the message under way; ``False`` if it grew too big."""
        if len(self.message) + len(data) > MAX_MESSAGE:
            self.fail(1009, "message too big")
            return False
        self.message += data
        return True

    #: a client that stops reading while its echoes pile up is dropped after this long
    #: without taking a byte (the HTTP side's limit, which the upgrade would lift)
    write_timeout = 30.0

    def closeGracefully(self) -> None:
        """The server is stopping: the close frame RFC 6455 §7.4.1 gives that (1001, going
        away), then the close (the client's own close frame is not waited for)."""
        self.transport.write(frame(CLOSE, (1001).to_bytes(2, "big") + b"server going away"))
        self.close()

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code``: the peer broke the protocol."""
        self.transport.write(frame(CLOSE, code.to_bytes(2, "big") + reason.encode()))
        self.close()

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        """A refused frame: 1009 when too long, else 1002 (its header broke a rule of
        :data:`CLIENT_FRAME`, or it came out of sequence)."""
        if isinstance(error, FrameTooLong):
            self.fail(1009, "frame too big")
        elif isinstance(error, UnexpectedInput):
            self.fail(1002, f"{error.input} frame out of sequence")
        elif isinstance(error, FramingError):
            # (construct's message names the rule after its path: "... (parsing): rule")
            self.fail(1002, error.message.rpartition(": ")[2])
        else:
            self.fail(1002, "malformed frame")


builder = TypeMachineBuilder(Frames, WebSocketConnection)
open_ = builder.state("open")
fragmented = builder.state("fragmented")
closed = builder.state("closed")


@open_.upon(Frames.message).loop()
def echo(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    core.send_message(opcode, data)


@open_.upon(Frames.begin).to(fragmented)
def begin(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    core.opcode, core.message = opcode, bytearray()
    core.grow(data)


@fragmented.upon(Frames.more).loop()
def grow(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    core.grow(data)


@fragmented.upon(Frames.last).to(open_)
def finish(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    if core.grow(data):
        core.send_message(core.opcode, bytes(core.message))
    core.message = bytearray()


def pong(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    core.transport.write(frame(PONG, data))


def ignore(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    pass


def close_back(machine: Frames, core: WebSocketConnection, opcode: int, data: bytes) -> None:
    if len(data) == 1:
        core.fail(1002, "close payload of one byte")
        return
    if data:
        code = int.from_bytes(data[:2], "big")
        # RFC 6455 §7.4: 1000-1003, 1007-1011 and IANA's 1012-1014 (service restart, try
        # again later, bad gateway), 3000-4999 for libraries and applications
        if code < 1000 or code in (1004, 1005, 1006) or 1015 <= code < 3000 or code >= 5000:
            core.fail(1002, "invalid close code")
            return
        try:
            data[2:].decode("utf-8")
        except UnicodeDecodeError:
            core.fail(1007, "close reason is not UTF-8")
            return
    core.transport.write(frame(CLOSE, data[:2]))
    core.close()


def gone(machine: Frames, core: WebSocketConnection, reason: object) -> None:
    pass


for _state in (open_, fragmented):
    _state.upon(Frames.ping).loop()(pong)
    _state.upon(Frames.pong).loop()(ignore)
    _state.upon(Frames.close).to(closed)(close_back)
    _state.upon(Frames.lost).to(closed)(gone)
closed.upon(Frames.lost).loop()(gone)

_ROUTE = by_key(
    kind,
    {
        name: (getattr(Frames, name), payload_of)
        for name in ("message", "begin", "more", "last", "ping", "pong", "close")
    },
)


class WebSocketEcho(WebSocketConnection):
    """The echo: the machine above, WebSocket frames in every open state."""

    machine = builder.build()
    framings = {open_: CLIENT_FRAMES, fragmented: CLIENT_FRAMES}
    routes = {open_: _ROUTE, fragmented: _ROUTE}
    lost = Frames.lost


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


async def handle(request: Request, response: Response) -> None:
    """Upgrade a valid WebSocket handshake (RFC 6455 §4.2); anything else is refused."""
    headers = request.headers
    key = headers.get(b"sec-websocket-key") or b""
    if b"websocket" not in headers.tokens(b"upgrade"):
        # (RFC 9110 §7.8: a sender of Upgrade sends the "upgrade" connection option too)
        fields = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        await response.send(426, fields, b"a WebSocket endpoint\n")
    elif (
        request.method != b"GET"
        or request.version < (1, 1)  # (RFC 6455 §4.1; and no 101 to HTTP/1.0)
        or b"upgrade" not in headers.tokens(b"connection")
        or headers.get(b"sec-websocket-version") != b"13"
        or not _valid_key(key)
    ):
        await response.send(400, [("Sec-WebSocket-Version", "13")], b"bad handshake\n")
    else:
        await response.upgrade(
            WebSocketEcho(),
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(key)),
            ],
        )


factory = HTTPFactory(handle)


def main() -> None:
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
