"""WebSocket frames (RFC 6455 §5): the grammar of a client's frames, and a server's built.

:class:`ClientFrames` (:func:`client_frames`) refuses what RFC 6455 forbids in a client
frame's header as soon as the header is there, before any of its payload: an unmasked
frame (§5.1), RSV bits with no extension, an unknown opcode, a control frame fragmented or
over 125 bytes (§5.5), a 64-bit length with its top bit set (§5.2), a payload over the
limit. A frame parses to a :class:`Frame`, its payload unmasked. Lengths in a longer form
than needed are taken, as most servers take them. The frames of a session that agreed on
permessage-deflate (RFC 7692, ``client_frames(n, deflate=True)``) may carry ``RSV1`` on a
message's first frame (a text or binary frame: the message is compressed), never on a
continuation or a control frame; ``RSV2`` and ``RSV3`` are refused always.

A server's frames are never masked (§5.1) and are built by :func:`frame` directly, not
through construct (a message sent costs a few bytes operations); :data:`FRAME` parses
them back, and any frame a test writes.

>>> frame(TEXT, b"hi")
b'\\x81\\x02hi'
>>> client_frames(125).parse(b"\\x81\\x82abcd" + unmask(b"abcd", b"hi"))
Frame(fin=True, opcode=1, payload=b'hi', wire=8, rsv1=False)
"""

from __future__ import annotations

import os
from typing import IO, Any, NamedTuple

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Computed,
    Flag,
    If,
    Int16ub,
    Int64ub,
    Struct,
    Switch,
    stream_write,
    this,
)

from grammars._base import Framing, as_bytes, human_size
from grammars.errors import (
    GrammarError,
    InvalidValueError,
    MalformedError,
    TooLongError,
    TruncatedError,
)

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
#: the opcodes RFC 6455 defines (the others are reserved: refused)
OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})
#: a frame's header and mask at most: 2 bytes, an 8-byte length, a 4-byte mask
MAX_HEADER = 14

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
#: any WebSocket frame, masked or not: the 7-, 16- and 64-bit payload lengths
FRAME = Struct(
    "header" / _HEADER,
    "length" / _LENGTH,
    "mask" / If(this.header.masked, Bytes(4)),
    "payload" / Bytes(this.length),
)


class Frame(NamedTuple):
    """A client frame as parsed: its payload unmasked, and how many bytes it took."""

    fin: bool
    opcode: int
    payload: bytes
    #: the frame's size on the wire: header, mask and payload
    wire: int
    #: ``RSV1``: a compressed message's first frame (permessage-deflate)
    rsv1: bool = False


def read_header(data: bytes, pos: int, max_payload: int, deflate: bool = False) -> tuple[int, int]:
    """The frame header at ``data[pos]``: its size with the mask and the payload's length,
    or ``(bytes needed from pos, -1)`` while it is incomplete. Each rule is checked as
    soon as the bytes it reads are there (:class:`~grammars.MalformedError`, or
    :class:`~grammars.TooLongError` past ``max_payload``; ``offset`` from ``pos``).
    ``deflate``: ``RSV1`` is allowed on a text or binary frame."""
    if len(data) - pos < 2:
        return 2, -1
    first, second = data[pos], data[pos + 1]
    opcode = first & 0x0F
    length = second & 0x7F
    if not second & 0x80:
        raise MalformedError("client frames must be masked", offset=1)
    if first & 0x70:
        if not deflate or first & 0x30:
            raise MalformedError("RSV bits without an extension", offset=0)
        if opcode != TEXT and opcode != BINARY:
            raise MalformedError("RSV1 on a continuation or control frame", offset=0)
    if opcode not in OPCODES:
        raise MalformedError("unknown opcode", offset=0)
    if opcode >= CLOSE and (not first & 0x80 or length > 125):
        raise MalformedError("control frames are short and not fragmented", offset=0)
    head = 6
    if length == 126:
        head = 8
        if len(data) - pos < 4:
            return 4, -1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        head = 14
        if len(data) - pos < 10:
            return 10, -1
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        if length >= 1 << 63:
            raise MalformedError("a 64-bit length with its top bit set", offset=2)
    if length > max_payload:
        raise TooLongError(
            f"frame payload of {length} bytes over {max_payload}", limit=max_payload, offset=1
        )
    return head, length


class ClientFrames(Framing):
    """A client's frames (RFC 6455 §5.2), payloads of at most ``max_payload`` bytes: each
    parses to a :class:`Frame`, its payload unmasked. A header that breaks a rule (see
    the module) is refused as soon as it is there; statewire's framer cuts these frames
    on a fast path of its own. Built frames are masked with a random key (a client's).
    ``deflate``: a session's frames once it agreed on permessage-deflate (``RSV1``
    allowed on a message's first frame: see the module)."""

    def __init__(self, max_payload: int, deflate: bool = False) -> None:
        super().__init__()
        if max_payload < 0:
            raise ValueError("max_payload must be >= 0")
        self.max_payload = max_payload
        self.deflate = deflate

    def describe(self) -> str:
        extension = ", permessage-deflate" if self.deflate else ""
        return f"WebSocket client frame ≤ {human_size(self.max_payload)}{extension}"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Frame:
        start = stream.tell()
        data = b""
        while True:
            try:
                head, length = read_header(data, 0, self.max_payload, self.deflate)
            except GrammarError as error:
                error.offset = start + (error.offset or 0)
                error.path = path
                raise
            want = head if length < 0 else head + length
            if len(data) >= want and length >= 0:
                break
            more = stream.read(want - len(data))
            if not more:
                raise TruncatedError(
                    "stream ended inside a WebSocket frame",
                    needed=start + want,
                    offset=start + len(data),
                    path=path,
                )
            data += more
        mask = data[head - 4 : head]
        first = data[0]
        payload = unmask(mask, data[head:])
        return Frame(bool(first & 0x80), first & 0x0F, payload, head + length, bool(first & 0x40))

    def _build(self, obj: Any, stream: IO[bytes], context: Any, path: str) -> Any:
        fin, opcode, payload = obj[0], obj[1], as_bytes(obj[2], path)
        rsv1 = bool(obj[4]) if len(obj) > 4 else False
        if len(payload) > self.max_payload:
            raise InvalidValueError(
                f"payload of {len(payload)} bytes over {self.max_payload}", path=path
            )
        if rsv1 and not self.deflate:
            raise InvalidValueError("RSV1 without permessage-deflate", path=path)
        built = frame(opcode, payload, fin, rsv1)
        header = built[: len(built) - len(payload)]
        mask = os.urandom(4)
        wire = bytes((header[0], header[1] | 0x80)) + header[2:] + mask + unmask(mask, payload)
        stream_write(stream, wire, len(wire), path)
        return obj


def client_frames(max_payload: int, deflate: bool = False) -> ClientFrames:
    """A client's frames, payloads of at most ``max_payload`` bytes (see
    :class:`ClientFrames`; ``deflate``: of a session with permessage-deflate)."""
    return ClientFrames(max_payload, deflate)


def unmask(mask: bytes, payload: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, not a loop);
    masking and unmasking are the same."""
    n = len(payload)
    if not n:
        return bytes(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False) -> bytes:
    """A server's frame (never masked), the shortest length form for ``payload``
    (``rsv1``: a compressed message's first frame)."""
    n = len(payload)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes((first, n))
    elif n < 1 << 16:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + payload


def close_code_allowed(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 §7.4): 1000-1003, 1007-1011,
    IANA's 1012-1014 (service restart, try again later, bad gateway), and 3000-4999 for
    libraries and applications; never 1004-1006 or 1015, which are not sent."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: ``code`` and ``reason`` (UTF-8, cut to fit the 125 bytes
    of a control frame, never inside a character)."""
    data = reason.encode("utf-8")[:123]
    return code.to_bytes(2, "big") + data.decode("utf-8", "ignore").encode("utf-8")


__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "FRAME",
    "MAX_HEADER",
    "OPCODES",
    "PING",
    "PONG",
    "TEXT",
    "ClientFrames",
    "Frame",
    "client_frames",
    "close_code_allowed",
    "close_payload",
    "frame",
    "read_header",
    "unmask",
]
