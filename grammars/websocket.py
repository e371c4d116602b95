"""WebSocket frames (RFC 6455 §5): the grammar of a client's frames, and a server's built.

:data:`CLIENT_FRAME` refuses what RFC 6455 forbids in a client frame's header as soon as
the header is there, before any of its payload: an unmasked frame (§5.1), RSV bits with no
extension, an unknown opcode, a control frame fragmented or over 125 bytes (§5.5), a
64-bit length with its top bit set (§5.2). :func:`client_frames` bounds the whole frame,
so a frame announcing more than the limit is refused from its header too.

A server's frames are never masked (§5.1) and are built by :func:`frame` directly, not
through construct (a message sent costs a few bytes operations); :data:`FRAME` parses
them back, and any frame a test writes.

>>> frame(TEXT, b"hi")
b'\\x81\\x02hi'
>>> parsed = CLIENT_FRAME.parse(b"\\x81\\x82abcd" + unmask(b"abcd", b"hi"))
>>> parsed.header.opcode, unmask(parsed.mask, parsed.payload)
(1, b'hi')
"""

from __future__ import annotations

from typing import Any

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

from grammars.limited import Limited, limited

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


class Rule(Construct):
    """A frame that breaks ``test`` (given the frame's fields parsed so far) is refused
    where the rule stands, with ``reason``: from its header, before its payload."""

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


#: a client's frame, its header's rules checked before its payload is waited for
CLIENT_FRAME = Struct(
    "header" / _HEADER,
    Rule(lambda c: c.header.masked, "client frames must be masked"),
    Rule(lambda c: not c.header.rsv, "RSV bits without an extension"),
    Rule(lambda c: c.header.opcode in OPCODES, "unknown opcode"),
    Rule(
        lambda c: c.header.opcode < CLOSE or (c.header.fin and c.header.length7 <= 125),
        "control frames are short and not fragmented",
    ),
    "length" / _LENGTH,
    Rule(lambda c: c.length < 1 << 63, "a 64-bit length with its top bit set"),
    "mask" / Bytes(4),
    "payload" / Bytes(this.length),
)


def client_frames(max_payload: int) -> Limited:
    """:data:`CLIENT_FRAME` with payloads of at most ``max_payload`` bytes: a frame
    announcing more is refused from its header (a
    :class:`~grammars.TooLongError` once framed)."""
    return limited(CLIENT_FRAME, max_payload + MAX_HEADER)


def unmask(mask: bytes, payload: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, not a loop);
    masking and unmasking are the same."""
    n = len(payload)
    if not n:
        return bytes(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A server's frame (never masked), the shortest length form for ``payload``."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
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
    "CLIENT_FRAME",
    "CLOSE",
    "CONTINUATION",
    "FRAME",
    "MAX_HEADER",
    "OPCODES",
    "PING",
    "PONG",
    "TEXT",
    "Rule",
    "client_frames",
    "close_code_allowed",
    "close_payload",
    "frame",
    "unmask",
]
