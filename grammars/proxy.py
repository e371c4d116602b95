"""The PROXY protocol (HAProxy's ``proxy-protocol.txt``): the header a proxy sends first on
a connection it relays, to tell the server whose connection it is.

Theory of operation
-------------------
One value, :class:`ProxyHeader`, and three grammars, all symmetric (what they build they
parse back to the same value):

* :func:`proxy_v1` -- the text line ``PROXY TCP4|TCP6|UNKNOWN src dst sport dport\\r\\n``,
  at most :data:`V1_MAX` (107) bytes with its CRLF. Read as the spec says, strictly:
  exactly one space between fields, IPv4 as four decimal numbers without leading zeros,
  IPv6 as ``inet_pton`` reads it (no zone), ports from 0 to 65535 without leading zeros,
  the addresses of the announced family, only CRLF to end the line (a bare CR or LF is
  refused). After ``UNKNOWN`` anything up to the CRLF is ignored.
* :func:`proxy_v2` -- the binary header: the 12-byte :data:`SIGNATURE`, version 2 and a
  command (``LOCAL`` or ``PROXY``), family and transport (only the combinations the spec
  lists), a length, then the address block of the family and TLVs as ``(type, value)``
  pairs. A length over ``max_length`` is refused from the fixed 16 bytes, before the rest
  is read; a CRC32C TLV is checked (and computed when building); the SSL TLV and
  ``UNIQUE_ID`` (at most 128 bytes) are checked for shape.
* :func:`proxy` -- either, told apart by their first bytes (:func:`detect`).

:func:`scan` is the incremental reader behind all three, for servers: the header at the
start of a buffer and its length, ``None`` while more bytes are needed, or a typed error as
soon as the bytes seen prove there is no valid header (:class:`NotProxyError` when they do
not start one at all). It looks at no byte past the header: what follows is the
application's. Its work per call is bounded by the header's limit.
"""

from __future__ import annotations

import enum
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from construct import stream_write

from grammars._base import Framing
from grammars.errors import InvalidValueError, MalformedError, TooLongError, TruncatedError

#: the first 12 bytes of a v2 header
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: the first bytes of a v1 header
V1_PREFIX = b"PROXY "
#: the longest v1 line the spec allows, CRLF included
V1_MAX = 107
#: the fixed part of a v2 header: signature, version/command, family/transport, length
V2_FIXED = 16
#: the largest v2 length field (the bytes after the fixed part)
V2_MAX_LENGTH = 0xFFFF
#: the spec's bound on a ``UNIQUE_ID`` TLV
UNIQUE_ID_MAX = 128
#: the size of each AF_UNIX address of a v2 header
UNIX_ADDRESS_SIZE = 108

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_TYPE_NETNS = 0x30


class Command(enum.IntEnum):
    """What a header says about the connection (the low nibble of v2's 13th byte)."""

    #: made by the proxy itself (a health check): the real endpoints are the addresses
    LOCAL = 0x0
    #: relayed for a client: the header's addresses are the original ones
    PROXY = 0x1


class Family(enum.IntEnum):
    """The original connection's address family (v2's 14th byte, high nibble)."""

    UNSPEC = 0x0
    INET = 0x1
    INET6 = 0x2
    UNIX = 0x3


class Transport(enum.IntEnum):
    """The original connection's transport (v2's 14th byte, low nibble)."""

    UNSPEC = 0x0
    STREAM = 0x1
    DGRAM = 0x2


class Detected(enum.Enum):
    """What the first bytes of a connection are, as :func:`detect` tells."""

    V1 = "v1"
    V2 = "v2"
    #: the bytes cannot start a PROXY header
    NOT_PROXY = "not a PROXY header"
    #: too few bytes to tell
    INCOMPLETE = "incomplete"


class NotProxyError(MalformedError):
    """The bytes do not start a PROXY header at all (neither ``PROXY`` nor the v2
    signature): a client talking directly, or a proxy not configured to send one."""


class ChecksumError(MalformedError):
    """A v2 header's CRC32C TLV does not match the header (the spec: treat as invalid)."""


#: an address of a header: an IP address as text, or an AF_UNIX path (bytes)
HeaderAddress = str | bytes

# family/transport byte -> family, transport and size of the address block: the
# combinations the spec lists, and no other
_FAMILIES = {
    0x00: (Family.UNSPEC, Transport.UNSPEC, 0),
    0x11: (Family.INET, Transport.STREAM, 12),
    0x12: (Family.INET, Transport.DGRAM, 12),
    0x21: (Family.INET6, Transport.STREAM, 36),
    0x22: (Family.INET6, Transport.DGRAM, 36),
    0x31: (Family.UNIX, Transport.STREAM, 216),
    0x32: (Family.UNIX, Transport.DGRAM, 216),
}
_COMMANDS = (Command.LOCAL, Command.PROXY)


class ProxyHeader(NamedTuple):
    """One PROXY header, v1 or v2.

    ``source``/``destination`` are the IP addresses as text for ``INET``/``INET6`` (in the
    form ``inet_ntop`` writes, as ``socket.getpeername`` gives them: ``10.0.0.1``,
    ``2001:db8::1``), the path bytes for ``UNIX`` (NUL padding stripped), ``None`` for
    ``UNSPEC`` (v1's ``UNKNOWN``); the ports are ``None`` unless the family is ``INET`` or
    ``INET6``. ``tlvs`` are v2's ``(type, value)`` pairs in wire order (v1 has none).
    (A named tuple: made once per connection, it must cost little.)
    """

    version: int
    command: Command = Command.PROXY
    family: Family = Family.UNSPEC
    transport: Transport = Transport.UNSPEC
    source: HeaderAddress | None = None
    destination: HeaderAddress | None = None
    source_port: int | None = None
    destination_port: int | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @classmethod
    def tcp(
        cls,
        source: tuple[str, int],
        destination: tuple[str, int],
        version: int = 2,
        tlvs: Iterable[tuple[int, bytes]] = (),
    ) -> ProxyHeader:
        """A header relaying a TCP connection from ``source`` to ``destination``, each a
        ``(host, port)`` pair; the family (IPv4 or IPv6) is the addresses'.

        >>> proxy().build(ProxyHeader.tcp(("192.168.0.1", 56324), ("192.168.0.11", 443), 1))
        b'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n'
        """
        family = Family.INET6 if ":" in source[0] else Family.INET
        return cls(
            version,
            Command.PROXY,
            family,
            Transport.STREAM,
            canonical(source[0], family),
            canonical(destination[0], family),
            source[1],
            destination[1],
            tuple(tlvs),
        )

    @classmethod
    def local(cls, tlvs: Iterable[tuple[int, bytes]] = ()) -> ProxyHeader:
        """A v2 ``LOCAL`` header: the proxy's own connection (a health check)."""
        return cls(2, Command.LOCAL, tlvs=tuple(tlvs))

    @classmethod
    def unknown(cls) -> ProxyHeader:
        """A v1 ``PROXY UNKNOWN`` line: the proxy cannot tell the original addresses."""
        return cls(1)

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or ``None``."""
        for t, value in self.tlvs:
            if t == kind:
                return value
        return None

    def ssl(self) -> SSLInfo | None:
        """The ``PP2_TYPE_SSL`` TLV, parsed; ``None`` when absent."""
        value = self.tlv(PP2_TYPE_SSL)
        return None if value is None else parse_ssl(value)


@dataclass(frozen=True)
class SSLInfo:
    """The ``PP2_TYPE_SSL`` TLV: ``client`` flags (``PP2_CLIENT_*``), ``verify`` (0 when a
    client certificate was presented and verified) and the sub-TLVs (version, CN, ...)."""

    client: int
    verify: int
    tlvs: tuple[tuple[int, bytes], ...]

    def get(self, kind: int) -> bytes | None:
        """The value of the first sub-TLV of type ``kind`` (``PP2_SUBTYPE_SSL_*``)."""
        for t, value in self.tlvs:
            if t == kind:
                return value
        return None


def parse_ssl(value: bytes) -> SSLInfo:
    """The SSL TLV's value, parsed; :class:`MalformedError` when it is not one."""
    if len(value) < 5:
        raise MalformedError("a PROXY v2 SSL TLV is shorter than its 5 fixed bytes")
    found = _tlvs(value, 5, len(value), "SSL sub-TLV")
    return SSLInfo(value[0], int.from_bytes(value[1:5], "big"), tuple(t for t, _ in found))


def canonical(address: str, family: Family) -> str:
    """``address`` (an IPv4 or IPv6 address of ``family``) as ``inet_ntop`` writes it;
    :class:`InvalidValueError` when it is not one."""
    af = socket.AF_INET if family is Family.INET else socket.AF_INET6
    try:
        return socket.inet_ntop(af, socket.inet_pton(af, address))
    except (OSError, ValueError, TypeError):
        raise InvalidValueError(f"{address!r} is not an {family.name} address") from None


# -- CRC32C (Castagnoli, RFC 4960 appendix B) ---------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes | bytearray) -> int:
    """The CRC32C of ``data``, as a v2 header's ``PP2_TYPE_CRC32C`` TLV carries it.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- detection ----------------------------------------------------------------------------


def detect(data: bytes | bytearray) -> Detected:
    """Whether ``data``, the first bytes of a connection, start a v1 or a v2 header.

    Decided on as few bytes as possible: ``NOT_PROXY`` on the first byte that fits
    neither, ``V1`` once ``PROXY`` is complete, ``V2`` once the 12-byte signature is.

    >>> [detect(b).name for b in (b"PROX", b"PROXY TCP4", b"GET / HTTP/1.1")]
    ['INCOMPLETE', 'V1', 'NOT_PROXY']
    """
    head = bytes(data[:12])
    if head[:5] == b"PROXY":
        return Detected.V1
    if head == SIGNATURE:
        return Detected.V2
    if not head or b"PROXY".startswith(head) or SIGNATURE.startswith(head):
        return Detected.INCOMPLETE
    return Detected.NOT_PROXY


# -- scanning -----------------------------------------------------------------------------


def scan(
    data: bytes | bytearray, max_length: int = V2_MAX_LENGTH
) -> tuple[ProxyHeader, int] | None:
    """The header at the start of ``data`` and its length in bytes, or ``None`` while
    more bytes are needed to tell.

    Raises :class:`NotProxyError` when ``data`` does not start a header,
    :class:`MalformedError` (or :class:`ChecksumError`) for a broken one,
    :class:`TooLongError` for a v1 line with no CRLF in :data:`V1_MAX` bytes or a v2
    length over ``max_length`` -- each as soon as the bytes seen prove it. The error's
    ``offset`` is the offending byte's index in ``data``.
    """
    head = bytes(data[:16])  # the same object when ``data`` is bytes
    if len(head) == 16 and head[:14] in _FAST_V2:  # TCP over IPv4 or IPv6, no TLVs
        parse, length, total = _FAST_V2[head[:14]]
        if head[14:] == length and len(data) >= total and total - V2_FIXED <= max_length:
            return parse(data), total
    match = _V1_TCP4_LINE.match(data)
    if match is not None:  # the v1 line of TCP over IPv4, read in one expression
        src, dst, sport, dport = match.groups()
        header = _new(ProxyHeader, (1, _PROXY, _INET, _STREAM, src.decode(), dst.decode(),
                                    int(sport), int(dport), ()))  # fmt: skip
        return header, match.end()
    kind = detect(data)
    if kind is Detected.V1:
        return _scan_v1(data)
    if kind is Detected.V2:
        return _scan_v2(data, max_length)
    if kind is Detected.INCOMPLETE:
        return None
    raise NotProxyError("the connection does not start with a PROXY header", offset=0)


_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = (
    rb"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
)
# written out, not ``(?:OCTET\.){3}``: a counted repeat of a group is the slowest thing the
# regular expression engine does
_IPV4 = rb"(%s\.%s\.%s\.%s)" % (_OCTET, _OCTET, _OCTET, _OCTET)
_IPV6 = rb"([0-9A-Fa-f:.]{2,45})"
# the fast path: what the strict reading accepts, as one regular expression per family
# (IPv6 then checked by inet_pton); anything else takes the slow path, which says why
_V1_TCP4 = re.compile(rb"PROXY TCP4 %s %s %s %s" % (_IPV4, _IPV4, _PORT, _PORT))
_V1_TCP4_LINE = re.compile(rb"PROXY TCP4 %s %s %s %s\r\n" % (_IPV4, _IPV4, _PORT, _PORT))
_V1_TCP6 = re.compile(rb"PROXY TCP6 %s %s %s %s" % (_IPV6, _IPV6, _PORT, _PORT))


def _scan_v1(data: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise TooLongError(
                f"PROXY v1 line without CRLF in its first {V1_MAX} bytes",
                limit=V1_MAX,
                offset=V1_MAX,
            )
        _check_v1_start(bytes(data))
        return None
    line = bytes(data[:end])
    return _fast_v1(line) or _parse_v1(line), end + 2


def _fast_v1(line: bytes) -> ProxyHeader | None:
    """The header of a well-formed TCP4 or TCP6 line; ``None`` for anything else."""
    match = _V1_TCP4.fullmatch(line)
    if match is not None:
        src, dst, sport, dport = match.groups()
        return ProxyHeader(
            1, Command.PROXY, Family.INET, Transport.STREAM,
            src.decode(), dst.decode(), int(sport), int(dport),
        )  # fmt: skip
    match = _V1_TCP6.fullmatch(line)
    if match is not None:
        src, dst, sport, dport = match.groups()
        ntop, pton, af = socket.inet_ntop, socket.inet_pton, socket.AF_INET6
        try:
            source = ntop(af, pton(af, src.decode()))
            destination = ntop(af, pton(af, dst.decode()))
        except OSError:
            return None
        return ProxyHeader(
            1, Command.PROXY, Family.INET6, Transport.STREAM,
            source, destination, int(sport), int(dport),
        )  # fmt: skip
    return None


_V1_PROTOCOLS = (b"TCP4", b"TCP6", b"UNKNOWN")
_V1_CHARS = {
    b"TCP4": frozenset(b"0123456789. "),
    b"TCP6": frozenset(b"0123456789abcdefABCDEF:. "),
}


def _check_v1_start(start: bytes) -> None:
    """Refuse the start of a v1 line (no CRLF yet) as soon as no valid line can begin so."""
    if not V1_PREFIX.startswith(start[:6]):
        raise MalformedError("PROXY v1: 'PROXY' must be followed by one space", offset=5)
    cr = start.find(b"\r")
    if (0 <= cr < len(start) - 1) or b"\n" in start:
        where = cr if 0 <= cr < len(start) - 1 else start.find(b"\n")
        raise MalformedError("PROXY v1: a bare CR or LF inside the line", offset=where)
    rest = start[6:]
    name, space, _ = rest.partition(b" ")
    name = name.rstrip(b"\r")
    if (space and name not in _V1_PROTOCOLS) or not any(p.startswith(name) for p in _V1_PROTOCOLS):
        raise MalformedError(f"PROXY v1: unknown protocol {name[:8]!r}", offset=6)
    chars = _V1_CHARS.get(name)
    if chars is None or not space:
        return
    fields = rest[len(name) + 1 :].rstrip(b"\r")
    for i, byte in enumerate(fields):
        if byte not in chars:
            offset = 6 + len(name) + 1 + i
            raise MalformedError(
                f"PROXY v1: byte {bytes([byte])!r} in a {name.decode()} line", offset=offset
            )
    if fields.count(b" ") > 3:
        raise MalformedError("PROXY v1: more than 5 fields", offset=6)


def _parse_v1(line: bytes) -> ProxyHeader:
    if not line.startswith(V1_PREFIX):
        raise MalformedError("PROXY v1: 'PROXY' must be followed by one space", offset=5)
    bad = next((i for i, b in enumerate(line) if b in b"\r\n"), -1)
    if bad >= 0:
        raise MalformedError("PROXY v1: a bare CR or LF inside the line", offset=bad)
    rest = line[6:]
    if rest == b"UNKNOWN" or rest.startswith(b"UNKNOWN "):
        return ProxyHeader(1)  # the spec: ignore anything after UNKNOWN
    fields = rest.split(b" ")
    if len(fields) != 5:
        raise MalformedError(
            f"PROXY v1: expected 5 fields separated by single spaces, got {len(fields)}",
            offset=6,
        )
    name, src, dst, sport, dport = fields
    if name == b"TCP4":
        family, address = Family.INET, _ipv4
    elif name == b"TCP6":
        family, address = Family.INET6, _ipv6
    else:
        raise MalformedError(f"PROXY v1: unknown protocol {name[:8]!r}", offset=6)
    return ProxyHeader(
        1,
        Command.PROXY,
        family,
        Transport.STREAM,
        address(src),
        address(dst),
        _port(sport),
        _port(dport),
    )


def _decimal(text: bytes, top: int, what: str) -> int:
    """A decimal number of the v1 line: ASCII digits, no leading zero, at most ``top``."""
    if (
        not 0 < len(text) <= len(str(top))
        or not all(48 <= b <= 57 for b in text)
        or (text[0] == 48 and len(text) > 1)
    ):
        raise MalformedError(f"PROXY v1: bad {what} {text[:16]!r}")
    value = int(text)
    if value > top:
        raise MalformedError(f"PROXY v1: {what} {value} over {top}")
    return value


def _port(text: bytes) -> int:
    return _decimal(text, 0xFFFF, "port")


def _ipv4(text: bytes) -> str:
    parts = text.split(b".")
    if len(parts) != 4:
        raise MalformedError(f"PROXY v1: bad IPv4 address {text[:16]!r}")
    for part in parts:
        _decimal(part, 255, "IPv4 address byte")
    return text.decode()


def _ipv6(text: bytes) -> str:
    if not text or len(text) > 45 or not all(b in _V1_CHARS[b"TCP6"] and b != 32 for b in text):
        raise MalformedError(f"PROXY v1: bad IPv6 address {text[:46]!r}")
    try:
        return canonical(text.decode("ascii"), Family.INET6)
    except InvalidValueError:
        raise MalformedError(f"PROXY v1: bad IPv6 address {text[:46]!r}") from None


_new = tuple.__new__  # a named tuple made without its Python-level __new__
_PROXY, _INET, _INET6, _STREAM = Command.PROXY, Family.INET, Family.INET6, Transport.STREAM
_INET_BLOCK = struct.Struct("!4s4sHH")
_INET6_BLOCK = struct.Struct("!16s16sHH")


def _fast_inet(data: bytes | bytearray) -> ProxyHeader:
    src, dst, sport, dport = _INET_BLOCK.unpack_from(data, V2_FIXED)
    ntop = socket.inet_ntop
    return _new(
        ProxyHeader,
        (2, _PROXY, _INET, _STREAM, ntop(socket.AF_INET, src), ntop(socket.AF_INET, dst),
         sport, dport, ()),
    )  # fmt: skip


def _fast_inet6(data: bytes | bytearray) -> ProxyHeader:
    src, dst, sport, dport = _INET6_BLOCK.unpack_from(data, V2_FIXED)
    ntop = socket.inet_ntop
    return _new(
        ProxyHeader,
        (2, _PROXY, _INET6, _STREAM, ntop(socket.AF_INET6, src), ntop(socket.AF_INET6, dst),
         sport, dport, ()),
    )  # fmt: skip


# the fixed part of the common v2 headers (PROXY, TCP over IPv4 or IPv6, no TLVs): its
# first 14 bytes -> how to read the addresses, and the expected length field
_FAST_V2 = {
    SIGNATURE + b"\x21\x11": (_fast_inet, b"\x00\x0c", V2_FIXED + 12),
    SIGNATURE + b"\x21\x21": (_fast_inet6, b"\x00\x24", V2_FIXED + 36),
}


def _scan_v2(data: bytes | bytearray, max_length: int) -> tuple[ProxyHeader, int] | None:
    n = len(data)
    if n > 12:
        version, command = data[12] >> 4, data[12] & 0x0F
        if version != 2:
            raise MalformedError(f"PROXY v2: version {version}, not 2", offset=12)
        if command > Command.PROXY:
            raise MalformedError(f"PROXY v2: unknown command {command:#x}", offset=12)
    if n > 13 and data[13] not in _FAMILIES:
        raise MalformedError(f"PROXY v2: unknown family/transport byte {data[13]:#04x}", offset=13)
    if n < V2_FIXED:
        return None
    length = int.from_bytes(data[14:16], "big")
    if length > max_length:
        raise TooLongError(
            f"PROXY v2 header of {V2_FIXED + length} bytes, over the limit of "
            f"{V2_FIXED + max_length}",
            limit=max_length,
            offset=14,
        )
    family, transport, size = _FAMILIES[data[13]]
    if length < size:
        raise MalformedError(
            f"PROXY v2: length {length} shorter than the {size}-byte address block", offset=14
        )
    total = V2_FIXED + length
    if n < total:
        return None
    header = bytes(data[:total])
    source: HeaderAddress | None = None
    destination: HeaderAddress | None = None
    sport = dport = None
    if size == 12:
        source = socket.inet_ntop(socket.AF_INET, header[16:20])
        destination = socket.inet_ntop(socket.AF_INET, header[20:24])
        sport = (header[24] << 8) | header[25]
        dport = (header[26] << 8) | header[27]
    elif size == 36:
        source = socket.inet_ntop(socket.AF_INET6, header[16:32])
        destination = socket.inet_ntop(socket.AF_INET6, header[32:48])
        sport = (header[48] << 8) | header[49]
        dport = (header[50] << 8) | header[51]
    elif size == 216:
        source = header[16:124].rstrip(b"\x00")
        destination = header[124:232].rstrip(b"\x00")
    command = _COMMANDS[header[12] & 0x0F]
    if total == V2_FIXED + size:  # no TLVs: the common case
        return (
            ProxyHeader(2, command, family, transport, source, destination, sport, dport),
            total,
        )
    found = _tlvs(header, V2_FIXED + size, total, "TLV")
    for (kind, value), at in found:
        if kind == PP2_TYPE_CRC32C:
            _check_crc(header, value, at)
        elif kind == PP2_TYPE_UNIQUE_ID and len(value) > UNIQUE_ID_MAX:
            raise MalformedError(
                f"PROXY v2: UNIQUE_ID of {len(value)} bytes, over {UNIQUE_ID_MAX}", offset=at
            )
        elif kind == PP2_TYPE_SSL:
            try:
                parse_ssl(value)
            except MalformedError as error:
                raise MalformedError(error.message, offset=at) from None
    return (
        ProxyHeader(
            2,
            command,
            family,
            transport,
            source,
            destination,
            sport,
            dport,
            tuple(t for t, _ in found),
        ),
        total,
    )


def _tlvs(data: bytes, start: int, end: int, what: str) -> list[tuple[tuple[int, bytes], int]]:
    """The TLVs of ``data[start:end]``, each with its offset; every byte must belong to one."""
    found = []
    i = start
    while i < end:  # each turn consumes at least the 3 bytes of a TLV's head
        if i + 3 > end:
            raise MalformedError(f"PROXY v2: a truncated {what} head", offset=i)
        size = int.from_bytes(data[i + 1 : i + 3], "big")
        if i + 3 + size > end:
            raise MalformedError(
                f"PROXY v2: a {what} of {size} bytes runs past the header's end", offset=i
            )
        found.append(((data[i], data[i + 3 : i + 3 + size]), i))
        i += 3 + size
    return found


def _check_crc(header: bytes, value: bytes, at: int) -> None:
    if len(value) != 4:
        raise MalformedError(f"PROXY v2: a CRC32C TLV of {len(value)} bytes, not 4", offset=at)
    zeroed = header[: at + 3] + b"\x00\x00\x00\x00" + header[at + 7 :]
    if crc32c(zeroed) != int.from_bytes(value, "big"):
        raise ChecksumError("PROXY v2: the CRC32C TLV does not match the header", offset=at)


# -- building -----------------------------------------------------------------------------


def encode(header: ProxyHeader, max_length: int = V2_MAX_LENGTH) -> bytes:
    """The bytes of ``header`` (v1 or v2, by ``header.version``), or
    :class:`InvalidValueError` when it cannot be sent as it is (:class:`TooLongError` when
    a v2 header's length would pass ``max_length``). A CRC32C TLV's value is computed here
    (give any 4 bytes)."""
    if header.version == 1:
        return _encode_v1(header)
    if header.version == 2:
        return _encode_v2(header, max_length)
    raise InvalidValueError(f"PROXY header version {header.version!r}: only 1 or 2")


def _check_ip(header: ProxyHeader) -> tuple[bytes, bytes, int, int]:
    """The packed addresses and the ports of an INET or INET6 header."""
    src, dst = header.source, header.destination
    if not isinstance(src, str) or not isinstance(dst, str):
        raise InvalidValueError(f"a {header.family.name} header needs two addresses as text")
    af = socket.AF_INET if header.family is Family.INET else socket.AF_INET6
    try:
        packed = socket.inet_pton(af, src), socket.inet_pton(af, dst)
    except (OSError, ValueError):
        raise InvalidValueError(
            f"{src!r} or {dst!r} is not an {header.family.name} address"
        ) from None
    ports = []
    for port in (header.source_port, header.destination_port):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
            raise InvalidValueError(f"a port is an int from 0 to 65535, not {port!r}")
        ports.append(port)
    return packed[0], packed[1], ports[0], ports[1]


def _check_no_address(header: ProxyHeader) -> None:
    if (header.source, header.destination, header.source_port, header.destination_port) != (
        None,
        None,
        None,
        None,
    ):
        raise InvalidValueError(f"a {header.family.name} header carries no addresses")


def _encode_v1(header: ProxyHeader) -> bytes:
    if header.command is not Command.PROXY or header.tlvs:
        raise InvalidValueError("a v1 header has no LOCAL command and no TLVs")
    if header.family is Family.UNSPEC:
        _check_no_address(header)
        if header.transport is not Transport.UNSPEC:
            raise InvalidValueError("a v1 UNKNOWN header has an UNSPEC transport")
        return b"PROXY UNKNOWN\r\n"
    if header.transport is not Transport.STREAM or header.family not in (
        Family.INET,
        Family.INET6,
    ):
        raise InvalidValueError("a v1 header relays TCP over IPv4 or IPv6 only")
    src, dst, sport, dport = _check_ip(header)
    af, name = (
        (socket.AF_INET, b"TCP4") if header.family is Family.INET else (socket.AF_INET6, b"TCP6")
    )
    source, destination = socket.inet_ntop(af, src).encode(), socket.inet_ntop(af, dst).encode()
    return b"PROXY %s %s %s %d %d\r\n" % (name, source, destination, sport, dport)


def _encode_v2(header: ProxyHeader, max_length: int) -> bytes:
    command, family, transport = header.command, header.family, header.transport
    if not isinstance(command, Command) or not isinstance(family, Family):
        raise InvalidValueError("a v2 header's command and family are enum members")
    fam = (family << 4) | transport
    if fam not in _FAMILIES:
        raise InvalidValueError(
            f"family {family.name} with transport {Transport(transport).name} is not in the spec"
        )
    if family is Family.INET or family is Family.INET6:
        src, dst, sport, dport = _check_ip(header)
        block = src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    elif family is Family.UNIX:
        block = b""
        for path in (header.source, header.destination):
            if not isinstance(path, bytes) or len(path) > UNIX_ADDRESS_SIZE:
                raise InvalidValueError("a UNIX header's addresses are bytes of at most 108")
            block += path.ljust(UNIX_ADDRESS_SIZE, b"\x00")
        if header.source_port is not None or header.destination_port is not None:
            raise InvalidValueError("a UNIX header has no ports")
    else:
        _check_no_address(header)
        block = b""
    parts = [block]
    crc_at = -1
    at = V2_FIXED + len(block)
    for kind, value in header.tlvs:
        if not isinstance(kind, int) or not 0 <= kind <= 0xFF or not isinstance(value, bytes):
            raise InvalidValueError(f"a TLV is (type 0..255, bytes), not {(kind, value)!r}")
        if len(value) > V2_MAX_LENGTH:
            raise InvalidValueError(f"a TLV value of {len(value)} bytes, over 65535")
        if kind == PP2_TYPE_CRC32C:
            if crc_at >= 0 or len(value) != 4:
                raise InvalidValueError("one CRC32C TLV at most, of 4 bytes")
            crc_at = at
            value = b"\x00\x00\x00\x00"
        elif kind == PP2_TYPE_UNIQUE_ID and len(value) > UNIQUE_ID_MAX:
            raise InvalidValueError(f"a UNIQUE_ID is at most {UNIQUE_ID_MAX} bytes")
        elif kind == PP2_TYPE_SSL:
            try:
                parse_ssl(value)
            except MalformedError as error:
                raise InvalidValueError(error.message) from None
        parts.append(bytes([kind]) + len(value).to_bytes(2, "big") + value)
        at += 3 + len(value)
    body = b"".join(parts)
    if len(body) > min(max_length, V2_MAX_LENGTH):
        raise TooLongError(
            f"a PROXY v2 header of {V2_FIXED + len(body)} bytes, over the limit",
            limit=min(max_length, V2_MAX_LENGTH),
        )
    wire = SIGNATURE + bytes([0x20 | command, fam]) + len(body).to_bytes(2, "big") + body
    if crc_at >= 0:
        checksum = crc32c(wire).to_bytes(4, "big")
        wire = wire[: crc_at + 3] + checksum + wire[crc_at + 7 :]
    return wire


def encode_ssl(info: SSLInfo) -> bytes:
    """The value of a ``PP2_TYPE_SSL`` TLV holding ``info``."""
    subs = b"".join(bytes([t]) + len(v).to_bytes(2, "big") + v for t, v in info.tlvs)
    return bytes([info.client]) + info.verify.to_bytes(4, "big") + subs


# -- the grammars -------------------------------------------------------------------------


class ProxyGrammar(Framing):
    """A PROXY header: v1, v2 or either (``versions``), parsed into a :class:`ProxyHeader`.

    ``max_length`` bounds a v2 header's length field (the bytes after its fixed 16).
    """

    def __init__(
        self, versions: tuple[int, ...] = (1, 2), max_length: int = V2_MAX_LENGTH
    ) -> None:
        super().__init__()
        if not versions or not set(versions) <= {1, 2}:
            raise ValueError(f"versions are 1 and/or 2, got {versions!r}")
        if not 0 <= max_length <= V2_MAX_LENGTH:
            raise ValueError(f"max_length must be 0 to {V2_MAX_LENGTH}, got {max_length}")
        self.versions = versions
        self.max_length = max_length

    def describe(self) -> str:
        names = " or ".join(f"v{v}" for v in self.versions)
        return f"PROXY header {names}"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> ProxyHeader:
        start = stream.tell()
        data = stream.read(max(V1_MAX, V2_FIXED + self.max_length))
        try:
            found = scan(data, self.max_length)
            if found is not None and found[0].version not in self.versions:
                raise MalformedError(
                    f"a PROXY v{found[0].version} header where only {self.describe()} is accepted",
                    offset=0,
                )
        except (MalformedError, TooLongError) as error:
            error.path = path
            if error.offset is not None:
                error.offset += start
            raise
        if found is None:
            raise TruncatedError(
                "stream ended inside a PROXY header",
                needed=start + len(data) + 1,
                offset=start + len(data),
                path=path,
            )
        header, size = found
        stream.seek(start + size)
        return header

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        if not isinstance(obj, ProxyHeader):
            raise InvalidValueError("a PROXY header is a ProxyHeader", path=path)
        if obj.version not in self.versions:
            raise InvalidValueError(f"a v{obj.version} header for {self.describe()}", path=path)
        wire = encode(obj, self.max_length)
        stream_write(stream, wire, len(wire), path)
        return obj


def proxy(max_length: int = V2_MAX_LENGTH) -> ProxyGrammar:
    """A PROXY header, v1 or v2 (told apart by its first bytes).

    >>> proxy().parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n").source_port
    56324
    >>> proxy().parse(proxy().build(ProxyHeader.local())).command
    <Command.LOCAL: 0>
    """
    return ProxyGrammar((1, 2), max_length)


def proxy_v1() -> ProxyGrammar:
    """A PROXY v1 line (``PROXY TCP4 ...\\r\\n``)."""
    return ProxyGrammar((1,))


def proxy_v2(max_length: int = V2_MAX_LENGTH) -> ProxyGrammar:
    """A PROXY v2 binary header whose length field is at most ``max_length``."""
    return ProxyGrammar((2,), max_length)
