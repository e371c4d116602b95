"""permessage-deflate (RFC 7692): its negotiation in a WebSocket handshake, and a session's
compression of the messages it sends and decompression of those it receives.

The negotiation (:func:`negotiate`) reads the client's ``Sec-WebSocket-Extensions``
offers in order and accepts the first ``permessage-deflate`` offer it can honour: one
whose parameters are known, each given once, with valid values (``server_max_window_bits``
9 to 15: zlib's raw deflate has no 8-bit window, so an offer asking for one is declined,
the next one tried). A field that does not parse is no offer at all (no extension, not a
refused handshake). The answer keeps each connection's memory small, as uvicorn's
(``websockets``) defaults do:

* the server's window is 4 KiB (``server_max_window_bits=12``, or less when the client
  asks for less) and its compressor's ``memLevel`` 5: about 32 KiB a connection while
  the session sends, made at the first message sent;
* the client's window is limited to 4 KiB too when its offer allows that
  (``client_max_window_bits``), so its messages are inflated with a 4 KiB window; else
  with the 32 KiB one it may use;
* the ``*_no_context_takeover`` parameters the client asked for are honoured (a new
  compressor for each message sent), and the client's own is answered back.

Every message the session sends is compressed (``RSV1``), but one of
:data:`SHRINK_CHECK` bytes or more that compression would not shrink (random or already
compressed data) goes as it is, the compressor's context kept as before it. A received
message is inflated when its first frame carries ``RSV1``, and one left uncompressed is
taken as it is. The inflation stops as soon as the message passes the session's limit (a
compressed bomb costs the limit, not its expansion: :class:`TooBig`). A client's deflate
stream may end inside a message (a final block): what follows it starts a new stream,
in the same message or the next. A compressed message with no byte at all is the empty
message.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

EXTENSION = "permessage-deflate"
#: the four bytes a sync flush ends with: cut from a compressed message, put back to
#: inflate one (RFC 7692 §7.2.1, §7.2.2)
TAIL = b"\x00\x00\xff\xff"
#: the server's window, and the client's where its offer lets the server choose
WINDOW_BITS = 12
#: the server compressor's memLevel (zlib's default is 8: 128 KiB a compressor)
MEM_LEVEL = 5
#: a message this long or longer is sent uncompressed when compression would not shrink it
#: (for shorter ones the difference is a few bytes, not worth a copy of the compressor)
SHRINK_CHECK = 4096

_OWS = r"[ \t]*"
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"{_OWS};{_OWS}({_TOKEN}){_OWS}(?:={_OWS}({_TOKEN}|{_QUOTED}))?")
_NAME = re.compile(rf"{_OWS}({_TOKEN})")
_COMMA = re.compile(rf"{_OWS}(?:,|\Z)")
_BITS = frozenset(str(bits) for bits in range(8, 16))


class Malformed(ValueError):
    """A ``Sec-WebSocket-Extensions`` value that does not parse (RFC 6455 §9.1)."""


def offers(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The extensions of one ``Sec-WebSocket-Extensions`` value, in order: each a name
    (lower-cased) and its parameters (names lower-cased; a quoted value unquoted;
    ``None`` for none). Empty list elements are skipped; anything else that is not
    ``token *( ";" token [ "=" ( token / quoted-string ) ] )`` raises :class:`Malformed`."""
    found: list[tuple[str, list[tuple[str, str | None]]]] = []
    pos, end = 0, len(value)
    while pos < end:
        comma = _COMMA.match(value, pos)
        if comma is not None and comma.end() > pos:  # (an empty element)
            pos = comma.end()
            continue
        name = _NAME.match(value, pos)
        if name is None:
            raise Malformed(f"no extension name at {pos} of {value!r}")
        params: list[tuple[str, str | None]] = []
        pos = name.end()
        while (param := _PARAM.match(value, pos)) is not None:
            raw = param.group(2)
            if raw is not None and raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params.append((param.group(1).lower(), raw))
            pos = param.end()
        comma = _COMMA.match(value, pos)
        if comma is None:
            raise Malformed(f"unexpected {value[pos : pos + 10]!r} in {value!r}")
        found.append((name.group(1).lower(), params))
        pos = comma.end()
    return found


@dataclass(frozen=True)
class Agreement:
    """What the handshake settled: each side's window (bits) and whether each side
    starts every message afresh."""

    server_bits: int = WINDOW_BITS
    client_bits: int = 15
    server_no_context: bool = False
    client_no_context: bool = False
    #: whether the client's offer had ``client_max_window_bits`` (then it is answered)
    client_bits_offered: bool = False

    def response(self) -> bytes:
        """The ``Sec-WebSocket-Extensions`` value answering the offer."""
        parts = [EXTENSION]
        if self.server_no_context:
            parts.append("server_no_context_takeover")
        if self.client_no_context:
            parts.append("client_no_context_takeover")
        parts.append(f"server_max_window_bits={self.server_bits}")
        if self.client_bits_offered:
            parts.append(f"client_max_window_bits={self.client_bits}")
        return "; ".join(parts).encode("ascii")


def _accept(params: list[tuple[str, str | None]]) -> Agreement | None:
    """The agreement for one ``permessage-deflate`` offer, or ``None`` to decline it."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            return None  # (RFC 7692 §7: a parameter given twice declines the offer)
        seen[name] = value
    server_bits, client_bits = WINDOW_BITS, 15
    client_offered = False
    for name, value in seen.items():
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
        elif name == "server_max_window_bits":
            if value not in _BITS or value == "8":
                return None  # (zlib's raw deflate cannot keep to an 8-bit window)
            server_bits = min(int(value), WINDOW_BITS)
        elif name == "client_max_window_bits":
            if value is not None and value not in _BITS:
                return None
            client_offered = True
            client_bits = WINDOW_BITS if value is None else min(int(value), WINDOW_BITS)
        else:
            return None
    return Agreement(
        server_bits,
        client_bits,
        "server_no_context_takeover" in seen,
        "client_no_context_takeover" in seen,
        client_offered,
    )


def negotiate(values: list[bytes]) -> Agreement | None:
    """The agreement for the first ``permessage-deflate`` offer it can honour among the
    ``Sec-WebSocket-Extensions`` ``values`` (each field's, in order), or ``None``: no such
    offer, or a value that does not parse."""
    for value in values:
        try:
            extensions = offers(value.decode("latin-1"))
        except Malformed:
            return None
        for name, params in extensions:
            if name == EXTENSION:
                agreement = _accept(params)
                if agreement is not None:
                    return agreement
    return None


class TooBig(ValueError):
    """A compressed message inflates past the session's limit."""


class Deflate:
    """One session's permessage-deflate: its compressor and decompressor, each made when
    first needed (a session that never sends keeps no compressor)."""

    __slots__ = ("_compressor", "_decompressor", "_fed", "agreement")

    def __init__(self, agreement: Agreement) -> None:
        self.agreement = agreement
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        #: whether a byte of the compressed message under way was inflated yet
        self._fed = False

    def compress(self, data: bytes) -> bytes | None:
        """A message's payload compressed (RFC 7692 §7.2.1): the deflate stream flushed
        to a byte boundary, its last four bytes (``00 00 ff ff``) cut; ``None`` for a
        message of :data:`SHRINK_CHECK` bytes or more that it would not shrink (to be
        sent as it is: the context is left as it was)."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                -1, zlib.DEFLATED, -self.agreement.server_bits, MEM_LEVEL
            )
            if not self.agreement.server_no_context:
                self._compressor = compressor
        before = None
        if len(data) >= SHRINK_CHECK and self._compressor is not None:
            before = compressor.copy()
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if len(out) - 4 >= len(data) >= SHRINK_CHECK:
            if before is not None:
                self._compressor = before
            return None
        return out[:-4] if out.endswith(TAIL) else out

    def inflate(self, data: bytes, final: bool, room: int) -> bytes:
        """The next fragment of a compressed message inflated (``final``: the message's
        last, its tail put back), at most ``room`` bytes: more raises :class:`TooBig`,
        data that does not inflate ``zlib.error``."""
        fed = self._fed or bool(data)
        self._fed = fed and not final
        if final:
            if not data and (not fed or self._decompressor is None):
                # no stream under way to end: the message had no byte at all (the empty
                # message), or its last stream ended with a final block
                return b""
            data += TAIL
        out = b""
        while data:
            decompressor = self._decompressor
            if decompressor is None:
                # (a window at least 9 bits: a client of zlib asked for 8 uses 9)
                bits = max(self.agreement.client_bits, 9)
                decompressor = self._decompressor = zlib.decompressobj(-bits)
            out += decompressor.decompress(data, room + 1 - len(out))
            if len(out) > room:
                raise TooBig(f"the message inflates past {room} bytes")
            if not decompressor.eof:
                break
            # the client ended its deflate stream (a final block): what follows starts a
            # new one (the tail put back after it, or what of it the block did not take,
            # is no data: as the websockets library reads it)
            self._decompressor = None
            data = decompressor.unused_data
            if final and TAIL.endswith(data):
                break
        if final and self.agreement.client_no_context:
            self._decompressor = None
        return out


__all__ = ["Agreement", "Deflate", "Malformed", "TooBig", "negotiate", "offers"]
