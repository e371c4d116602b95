"""The PROXY protocol on the server side: any protocol behind HAProxy, nginx or a cloud
load balancer sees its clients' own addresses.

Theory of operation
-------------------
:class:`ProxyProtocolFactory` wraps the factory of any protocol (declared or plain). Each
connection first gets a :class:`ProxyRelay` as its protocol, which reads one PROXY header
(:mod:`grammars.proxy`) and nothing more. Once the header is whole it asks the wrapped
factory for the real protocol -- ``buildProtocol`` gets the client's address -- and
passes the connection on to it: ``getPeer()`` and ``getHost()`` answer with the header's
addresses (``LOCAL`` and ``UNKNOWN`` headers, and families other than TCP over IPv4/IPv6
and UNIX streams, keep the real ones), ``transport.header`` is the header and
``transport.proxy`` the real peer. The bytes that came with the header in the same read,
and every read after, go to that protocol unchanged and in order (if it pauses reading
when connected, they wait until it resumes).

On statewire's transports the connection is handed over
(:meth:`statewire.runtime.connection.Connection.handOver`): the relay becomes the
transport's ``relay`` -- what the transport reports as its addresses and header -- and the
wrapped protocol the transport's own protocol, so nothing stands between them: its
``transport`` is the real one, and every later read, write, congestion signal and the
connection's loss go straight between them. On other transports (Twisted's, test
doubles) the wrapped protocol gets a :class:`ProxiedTransport` over the real one, and the
relay stays that transport's protocol, passing its events on.

Cost: a header is paid for once per connection, so the common ones -- a v1 ``TCP4`` line,
a v2 ``PROXY`` header of TCP over IPv4 or IPv6, with or without TLVs -- whole in the first
read are read by :func:`quick_scan`: in C when the accelerator is built
(``statewire._proxy_speedups``: a v1 line, a v2 header without TLVs; else one regular
expression, one ``struct`` call), TLVs by a walk over them (the CRC32C in C when
``google-crc32c`` is installed, the ``proxy`` extra). It makes only the client's
address; the :class:`~grammars.proxy.ProxyHeader` itself is made from the header's bytes
if ``transport.header`` (or ``getHost()``) is ever asked for (:func:`read_header`).
Everything else (a header cut across reads, ``LOCAL``, ``UNKNOWN``, UNIX, IPv6 in v1,
anything malformed) is read by :func:`grammars.proxy.scan`, which also words every
refusal: :func:`quick_scan` answers as ``scan`` does, or not at
all (tests/test_proxy_fast.py holds them to that). A connection costs one object besides
the wrapped protocol, the relay, and a handful of Python calls (``bench/bench_proxy.py``).

Trust: a PROXY header is a claim, believed because of who sends it. Enable this only on a
port that nothing but the proxy can reach, or name the proxies (``trusted=``): a connection
from anywhere else is closed at once (``required=True``) or served as a direct client,
its bytes never read as a header (``required=False``). Guessing whether a header is
present (the spec forbids it: any client could then claim any address) is not offered.

Refused, with the connection closed before the wrapped protocol exists and one INFO log
line: bytes that do not start a header, a malformed or oversize header (v1 over 107 bytes,
v2 over ``max_length``), a version this port does not take, a bad CRC32C, a header not
complete within ``timeout`` seconds, a connection from an untrusted source.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from grammars import proxy as grammar
from grammars.errors import GrammarError, MalformedError
from grammars.proxy import (
    PP2_TYPE_CRC32C,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE,
    UNIQUE_ID_MAX,
    V2_FIXED,
    Command,
    Family,
    ProxyHeader,
    Transport,
    parse_ssl,
    scan,
)
from statewire._tls import check_server_context
from statewire.address import Address, UNIXAddress, tcp4, tcp6
from statewire.declarative import default_clock
from statewire.error import Failure, connectionDone
from statewire.protocol import Factory, close_gracefully, has_own_graceful_close

__all__ = [
    "CRC32C_IN_C",
    "V1_IN_C",
    "Deadlines",
    "ProxiedTransport",
    "ProxyProtocolFactory",
    "ProxyRelay",
    "crc32c",
    "header_address",
    "quick_scan",
    "read_header",
    "scan_v1_tcp4",
    "scan_v2_plain",
    "trusted_networks",
]

log = logging.getLogger("statewire")

#: the default bound of a v2 header's length field: addresses and TLVs (HAProxy's SSL,
#: unique-id and authority TLVs take a few hundred bytes)
MAX_LENGTH = 2048
#: seconds a connection has to send its whole header (the spec: at least 3)
TIMEOUT = 5.0
#: the hosts whose trust a factory remembers (then it forgets them all and starts again)
VERDICTS = 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# read once: an enum member looked up on its class costs more than the rest of the test
_PROXY, _STREAM, _UNIX, _INET, _INET6 = (
    Command.PROXY,
    Transport.STREAM,
    Family.UNIX,
    Family.INET,
    Family.INET6,
)


# -- CRC32C ---------------------------------------------------------------------------------


def _c_crc32c() -> Callable[[bytes], int] | None:
    """google-crc32c's CRC32C, if it is installed and built in C (its own fallback is
    pure Python too, and slower than the grammar's table)."""
    try:
        module = importlib.import_module("google_crc32c")
    except ImportError:
        return None
    if getattr(module, "implementation", None) != "c":
        return None
    value: Callable[[bytes], int] = module.value
    return value


# the CRC32C of bytes, called per header
_crc32c: Callable[[bytes], int] = _c_crc32c() or grammar.crc32c
#: whether :func:`crc32c` runs in C (``pip install statewire[proxy]``: google-crc32c)
CRC32C_IN_C = _crc32c is not grammar.crc32c


def crc32c(data: bytes | bytearray) -> int:
    """The CRC32C of ``data``, as :func:`grammars.proxy.crc32c` computes it: in C when
    google-crc32c is installed (a v2 header's check then costs well under a microsecond,
    not some twenty), else by the grammar's pure-Python table."""
    return _crc32c(data if type(data) is bytes else bytes(data))


# -- the common headers, read fast ----------------------------------------------------------

_new = tuple.__new__  # a named tuple made without its Python-level __new__
# where a ProxyRelay's reading of the header is
_FIRST, _GATHERING, _PASSING, _DONE = range(4)
_new_reader = object.__new__
_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_ZERO_CRC = bytes(4)

_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# written out, not ``(?:OCTET\.){3}``: a counted repeat of a group is the slowest thing
# the regular expression engine does (a quarter of the line's reading)
_IPV4 = rb"%s\.%s\.%s\.%s" % (_OCTET, _OCTET, _OCTET, _OCTET)
_PORT = (
    rb"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
)
# a v1 TCP4 line as the spec's strict reading takes it: dotted quads without leading
# zeros (as inet_ntop writes them), ports 0-65535 without leading zeros, single spaces;
# the client's address and port captured (1, 2), the rest read when asked (read_header)
_V1_TCP4 = re.compile(rb"PROXY TCP4 (%s) %s (%s) %s\r\n" % (_IPV4, _IPV4, _PORT, _PORT))


def scan_v1_tcp4(data: bytes) -> tuple[str, int, int] | None:
    """A v1 ``TCP4`` PROXY line in the spec's strict form at the start of ``data`` (bytes:
    the C reading takes nothing else; :func:`quick_scan` takes any bytes-like object): the
    client's address, its port and the line's length; ``None`` for anything else
    (incomplete, malformed, another family), which :func:`~grammars.proxy.scan` decides.

    The pure-Python reading; connections use the C one (``statewire._proxy_speedups``)
    when it is built and ``STATEWIRE_PURE=1`` is not set: the same answers, a microsecond
    less a connection."""
    match = _V1_TCP4.match(data)
    if match is None:
        return None
    return match[1].decode(), int(match[2]), match.end()


_v1_tcp4: Callable[[bytes], tuple[str, int, int] | None] = scan_v1_tcp4
if os.environ.get("STATEWIRE_PURE") != "1":
    with contextlib.suppress(ImportError):  # not built: the expression
        from statewire._proxy_speedups import v1_tcp4 as _v1_tcp4
#: whether connections read v1 ``TCP4`` lines and plain v2 TCP headers in C
#: (``statewire._proxy_speedups``)
V1_IN_C = _v1_tcp4 is not scan_v1_tcp4


# the 16 fixed bytes of a v2 PROXY header of TCP without TLVs -> how to read its address
# block: the source address and port, the source address as text, the header's size,
# whether it is IPv6
_V2_PLAIN: dict[bytes, tuple[struct.Struct, Callable[[bytes], str], int, bool]] = {
    SIGNATURE + b"\x21\x11\x00\x0c": (
        struct.Struct("!16x4s4xH"),
        socket.inet_ntoa,  # inet_ntop's text, without the family argument
        V2_FIXED + 12,
        False,
    ),
    SIGNATURE + b"\x21\x21\x00\x24": (
        struct.Struct("!16x16s16xH"),
        partial(_ntop, _AF_INET6),
        V2_FIXED + 36,
        True,
    ),
}


def scan_v2_plain(data: bytes) -> tuple[str, int, int, bool] | None:
    """A v2 ``PROXY`` header of TCP over IPv4 or IPv6 without TLVs, whole at the start of
    ``data`` (bytes): the client's address (as ``inet_ntop`` writes it), its port, the
    header's length and whether it is IPv6; ``None`` for anything else.

    The pure-Python reading; connections use the C one when it is built (see
    :func:`scan_v1_tcp4`)."""
    plain = _V2_PLAIN.get(data[:16])
    if plain is None:
        return None
    block, text, size, v6 = plain
    if len(data) < size:
        return None
    source, port = block.unpack_from(data)
    return text(source), port, size, v6


_v2_plain: Callable[[bytes], tuple[str, int, int, bool] | None] = scan_v2_plain
if os.environ.get("STATEWIRE_PURE") != "1":
    with contextlib.suppress(ImportError):  # not built: struct and inet_ntop
        from statewire._proxy_speedups import v2_plain as _v2_plain


# v2's family/transport byte of TCP -> how to read its address block (whole, and the
# source address and port alone from the header's start), its address family, its
# family, its address class, its size
_V2_TCP: dict[
    int, tuple[struct.Struct, struct.Struct, int, Family, Callable[[str, int], Address], int]
] = {
    0x11: (struct.Struct("!4s4sHH"), struct.Struct("!16x4s4xH"), _AF_INET, _INET, tcp4, 12),
    0x21: (struct.Struct("!16s16sHH"), struct.Struct("!16x16s16xH"), _AF_INET6, _INET6, tcp6, 36),
}
_V2_PROXY = 0x21  # version 2, command PROXY
_U32 = struct.Struct("!I")


def quick_scan(
    data: bytes, max_length: int = grammar.V2_MAX_LENGTH
) -> tuple[int, Address, bytes, int] | None:
    """The common PROXY headers, whole at the start of ``data``, read fast: a v1 ``TCP4``
    line, or a v2 ``PROXY`` header of TCP over IPv4 or IPv6 (any TLVs, checked as
    :func:`~grammars.proxy.scan` checks them). Returns the header's version, the client's
    address, the header's bytes (:func:`read_header` makes the
    :class:`~grammars.proxy.ProxyHeader` of them, if it is ever asked for) and its length.

    ``None`` for anything else: incomplete, malformed, over ``max_length`` or simply less
    common; :func:`~grammars.proxy.scan` then decides, and says why it refuses. When this
    answers, ``scan`` gives the same header and length.
    """
    if type(data) is not bytes:
        data = bytes(data)  # any bytes-like object, read as bytes (the C reading takes bytes)
    plain = _v2_plain(data)
    if plain is not None:
        host, port, size, v6 = plain
        if size - V2_FIXED > max_length:
            return None
        return 2, (tcp6 if v6 else tcp4)(host, port), data[:size], size
    if data[:11] == b"PROXY TCP4 ":
        line = _v1_tcp4(data)
        if line is None:
            return None
        host, port, end = line
        return 1, tcp4(host, port), data[:end], end
    if data[:12] == SIGNATURE and len(data) > 16 and data[12] == _V2_PROXY:
        return _v2_tlvs(data, max_length)
    return None


def _v2_tlvs(data: bytes, max_length: int) -> tuple[int, Address, bytes, int] | None:
    """A v2 PROXY header of TCP with TLVs (HAProxy's ``proxy-v2-options``, a cloud load
    balancer's own TLVs), checked; ``None`` when it is anything else or a check fails."""
    tcp = _V2_TCP.get(data[13])
    if tcp is None:
        return None
    _, source_block, family, _, address, size = tcp
    length = (data[14] << 8) | data[15]
    total = V2_FIXED + length
    if length > max_length or length < size or len(data) < total:
        return None
    header = data[:total]
    at = V2_FIXED + size
    while at < total:  # each turn consumes at least a TLV's 3-byte head
        if at + 3 > total:
            return None
        tlv = header[at]
        end = at + 3 + ((header[at + 1] << 8) | header[at + 2])
        if end > total:
            return None
        if tlv == PP2_TYPE_CRC32C:
            if end - at != 7:
                return None
            sealed = header[: at + 3] + _ZERO_CRC + header[end:]
            if _crc32c(sealed) != _U32.unpack_from(header, at + 3)[0]:
                return None
        elif tlv == PP2_TYPE_UNIQUE_ID:
            if end - at - 3 > UNIQUE_ID_MAX:
                return None
        elif tlv == PP2_TYPE_SSL:
            try:
                parse_ssl(header[at + 3 : end])
            except MalformedError:
                return None
        at = end
    source, port = source_block.unpack_from(header)
    return 2, address(_ntop(family, source), port), header, total


def read_header(raw: bytes) -> ProxyHeader:
    """The :class:`~grammars.proxy.ProxyHeader` of ``raw``, a whole header that
    :func:`quick_scan` (or :func:`~grammars.proxy.scan`) read and checked already: made
    when asked, its CRC32C not checked again."""
    tcp = _V2_TCP.get(raw[13]) if raw[:12] == SIGNATURE else None
    if tcp is None:  # a v1 line, read by scan's own one-expression reading
        found = scan(raw)
        if found is None:
            raise ValueError(f"not a whole PROXY header: {raw!r}")
        return found[0]
    block, _, family, kind, _, size = tcp
    source, destination, source_port, destination_port = block.unpack_from(raw, V2_FIXED)
    tlvs = []
    at, total = V2_FIXED + size, len(raw)
    while at < total:  # checked already: every TLV ends inside the header
        end = at + 3 + ((raw[at + 1] << 8) | raw[at + 2])
        tlvs.append((raw[at], raw[at + 3 : end]))
        at = end
    return _new(
        ProxyHeader,
        (2, _PROXY, kind, _STREAM, _ntop(family, source), _ntop(family, destination),
         source_port, destination_port, tuple(tlvs)),
    )  # fmt: skip


def header_address(header: ProxyHeader, source: bool = True) -> Address | None:
    """The address a connection reports after ``header`` for its peer (``source``) or its
    host: the header's for a relayed TCP (IPv4, IPv6) or UNIX stream; ``None`` when the
    real one stays (``LOCAL``, ``UNKNOWN``, ``UNSPEC``, datagrams)."""
    _, command, family, transport, src, dst, sport, dport, _ = header
    if command is not _PROXY or transport is not _STREAM:
        return None
    address, port = (src, sport) if source else (dst, dport)
    if type(address) is str:
        return (tcp4 if family is _INET else tcp6)(address, port or 0)
    if type(address) is bytes and family is _UNIX:
        return UNIXAddress(os.fsdecode(address) or None)
    return None


def _describe(address: Any) -> str:
    if isinstance(address, UNIXAddress):
        return f"unix:{address.name or '?'}"
    host, port = getattr(address, "host", "?"), getattr(address, "port", "?")
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _forwarded(name: str) -> Any:
    """An attribute of the real transport, read and set through a proxied one."""

    def get(self: ProxiedTransport) -> Any:
        return getattr(self._transport, name)

    def set(self: ProxiedTransport, value: Any) -> None:
        setattr(self._transport, name, value)

    return property(get, set, doc=f"The real transport's ``{name}``.")


class ProxyRelay:
    """One connection behind a proxy: it reads the PROXY header, then tells what the
    header said for as long as the connection lasts.

    First it is the connection's protocol: it reads the header and nothing more
    (``dataReceived``), refusing what is not one. Once the header is whole it builds the
    wrapped protocol (``buildProtocol`` gets the client's address) and passes the
    connection on:

    * On statewire's transports (they have ``handOver``) it becomes the transport's
      ``relay`` and the wrapped protocol the transport's own
      (:meth:`statewire.runtime.connection.Connection.handOver`): the wrapped protocol's
      ``transport`` is the real one, nothing in between, and its ``getPeer()``,
      ``getHost()`` and ``header`` report this relay's :attr:`peer`, :attr:`host` and
      :attr:`header`; ``transport.proxy`` is the real peer.
    * On other transports (Twisted's, test doubles) the wrapped protocol gets a
      :class:`ProxiedTransport` over the real one, which reports the same, and this
      relay stays the real transport's protocol, passing its events on (a transport that
      delivers to its ``protocol`` attribute delivers to the wrapped protocol instead).

    ``wrapped`` is the wrapped protocol (``None`` until the header is read); ``proxy``
    the address of the proxy that sent the header (the real peer).
    """

    # (no __getattr__, here or on the runtime's transports: a class with one has every
    # attribute read through the slow, generic lookup)
    __slots__ = (
        "_buffer",
        "_factory",
        "_generation",
        "_header",
        "_state",
        "_stopping",
        "_transport",
        "_wrapper",
        "connected",
        "peer",
        "proxy",
        "wrapped",
    )

    _buffer: bytearray  # the header's first pieces, while _GATHERING

    def __init__(self, factory: ProxyProtocolFactory, proxy: Address | None = None) -> None:
        # (ProxyProtocolFactory.buildProtocol sets the same attributes without this call)
        self._factory = factory
        #: the real peer, the proxy that sends the header: the address ``buildProtocol``
        #: got (``None`` when made without it: the transport is asked where it is needed)
        self.proxy: Address | None = proxy
        #: the wrapped protocol, once the header is read
        self.wrapped: Any = None
        # where the header's reading is: _FIRST, _GATHERING (its first pieces in
        # _buffer), _PASSING (reads passed on, see _wrap) or _DONE
        self._state = _FIRST
        #: whether a graceful close was asked before the header was read
        self._stopping = False

    # -- the protocol that reads the header ------------------------------------------------

    def closeGracefully(self) -> None:
        """At a shutdown: the wrapped protocol's ``closeGracefully`` (it finishes what is
        under way); before the header is read, the same once it is (a new connection's
        first request is answered: the header's own deadline, and the shutdown's, bound
        the wait)."""
        if self.wrapped is None:
            self._stopping = self._state != _DONE
            return
        close_gracefully(self.wrapped, self._transport)

    def closesGracefully(self) -> bool:
        """Whether :meth:`closeGracefully` finishes what is under way: as the wrapped
        protocol does (no, before the header: a drain asks the wrapped protocol itself,
        once it is made)."""
        return self.wrapped is not None and has_own_graceful_close(self.wrapped)

    def makeConnection(self, transport: Any) -> None:
        """Attach the real transport and start the header's clock."""
        #: 1 while connected (as a protocol's)
        self.connected = 1
        self._transport = transport
        deadlines = self._factory.deadlines
        # the generation of header deadlines this connection is in, while it waits
        self._generation: set[ProxyRelay] | None = (
            None if deadlines is None else deadlines.add(self, transport)
        )

    def dataReceived(self, data: bytes) -> None:
        """Read the header; once connected (on a transport without hand-over), pass
        ``data`` on to the wrapped protocol."""
        state = self._state
        if state > _GATHERING:
            if state == _PASSING:  # a transport that still delivers here: see _wrap
                self._wrapper.deliver(data)
            return
        factory = self._factory
        found = None
        header: ProxyHeader | bytes  # bytes: read when asked (read_header)
        peer: Address | None
        if state == _FIRST and type(data) is bytes and data:
            # the first read, most often the whole header and more: the common headers
            found = quick_scan(data, factory.max_length)
        if found is not None and factory.accepts[found[0]]:
            _, peer, header, size = found
            rest = data[size:]
        else:  # anything else, and a header cut across reads: the grammar's reading
            seen: bytes | bytearray = data
            if state == _GATHERING:  # the header came in pieces (one header at most)
                seen = self._buffer
                seen += data
            try:
                found_header = scan(seen, factory.max_length)
            except GrammarError as error:
                self.refuse(str(error))
                return
            if found_header is None:
                if state == _FIRST:
                    self._buffer = bytearray(data)
                    self._state = _GATHERING
                return
            header, size = found_header
            if not factory.accepts[header.version]:
                self.refuse(
                    f"a PROXY v{header.version} header; this port takes "
                    f"{' or '.join(factory.versions)}"
                )
                return
            self._buffer = bytearray()  # (the pieces: not kept)
            peer = header_address(header)
            rest = bytes(seen[size:])
        # the header is read: build the wrapped protocol and pass the connection on
        generation = self._generation
        if generation is not None:  # (_untime, inline: one call less per connection)
            generation.discard(self)
            self._generation = None
        transport = self._transport
        if factory.tls is not None and not getattr(transport, "hands_over_tls", False):
            if not factory._warned_tls:
                factory._warned_tls = True
                log.warning(
                    "%s cannot start TLS after the PROXY header on this port: that needs "
                    "statewire's socket transport (not Reactor.native_transports, nor "
                    "Twisted's through statewire.twisted.adapt); every connection is closed",
                    type(factory.wrapped).__name__,
                )
            self.refuse("TLS after the header cannot start on this transport")
            return
        protocol = factory.wrapped.buildProtocol(peer or self.proxy or transport.getPeer())
        if protocol is None:
            self._state = _DONE
            transport.loseConnection()
            return
        self.wrapped = protocol
        #: the client's address as the header gave it (``None``: the real one stays)
        self.peer = peer
        self._header = header
        try:
            hand_over = transport.handOver
        except AttributeError:
            self._wrap(transport, protocol, rest)
        else:
            # statewire's transports: the wrapped protocol becomes the transport's own
            # (reads, congestion, the loss: straight to it), the addresses this relay's
            transport.relay = self
            if factory.tls is None:
                hand_over(protocol, rest)
            else:  # (the bytes after the header are the start of the TLS stream)
                hand_over(protocol, rest, factory.tls)
        if self._stopping:  # (asked to close gracefully while the header came)
            close_gracefully(protocol, transport)

    def timed_out(self) -> None:
        """The header's time is up: refuse the connection if it is still waiting for it."""
        if self.wrapped is None and self._state != _DONE:
            seen = len(self._buffer) if self._state == _GATHERING else 0
            self.refuse(
                f"no complete PROXY header within {self._factory.timeout} s ({seen} bytes read)"
            )

    def refuse(self, why: str) -> None:
        """Close the connection before the wrapped protocol saw anything; log ``why``."""
        if self._state == _DONE:
            return
        self._state = _DONE
        self._buffer = bytearray()
        self._untime()
        log.info(
            "PROXY header refused from %s: %s; closing",
            _describe(self.proxy or self._transport.getPeer()),
            why,
        )
        self._transport.loseConnection()

    def _untime(self) -> None:
        generation = self._generation
        if generation is not None:
            generation.discard(self)
            self._generation = None

    def _wrap(self, transport: Any, protocol: Any, rest: bytes) -> None:
        """On a transport without hand-over: connect ``protocol`` to a
        :class:`ProxiedTransport`, and give it ``rest``."""
        wrapper = self._wrapper = ProxiedTransport(self, transport)
        self._state = _PASSING
        if getattr(transport, "protocol", None) is self:
            # a transport that delivers to its ``protocol``: from now on, straight to the
            # wrapped one (reads, congestion, the loss), nothing in between
            transport.protocol = protocol
        protocol.makeConnection(wrapper)
        if rest and not getattr(transport, "disconnecting", False):
            wrapper.deliver(rest)

    def transportCongested(self, congested: bool) -> None:
        """Passed on to the wrapped protocol, if it listens (while the transport still
        delivers here)."""
        hook = getattr(self.wrapped, "transportCongested", None)
        if hook is not None:
            hook(congested)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Passed on to the wrapped protocol, if it was connected (while the transport
        still delivers here)."""
        self.connected = 0
        passing = self._state == _PASSING
        self._state = _DONE
        self._buffer = bytearray()
        self._untime()
        if passing:
            self._wrapper.drop()
            self.wrapped.connectionLost(reason)

    # -- what the header said -------------------------------------------------------------

    @property
    def header(self) -> ProxyHeader:
        """The PROXY header the connection started with."""
        header = self._header
        if isinstance(header, bytes):  # read and checked by quick_scan: made when asked
            header = self._header = read_header(header)
        return header

    @property
    def host(self) -> Address | None:
        """The address the client connected to, as the header gave it (made when asked:
        few protocols ask); ``None`` when the real one stays (``LOCAL``, ``UNKNOWN``)."""
        return header_address(self.header, False)

    def __repr__(self) -> str:
        if self.wrapped is None:
            return "<ProxyRelay reading a PROXY header>"
        return f"<ProxyRelay {_describe(self.peer or self.proxy)} via {_describe(self.proxy)}>"


class ProxiedTransport:
    """The wrapped protocol's transport on a transport without hand-over (Twisted's, test
    doubles): the real one, except that ``getPeer()``, ``getHost()``, ``header`` and
    ``proxy`` report what the PROXY header said (:attr:`relay`, a :class:`ProxyRelay`).

    Every other attribute is the real transport's to read; the ones protocols set on
    statewire's transports (``on_closing``, ``close_timeout``, ``write_timeout``) are set
    on it too, and setting any other raises ``AttributeError``. ``write`` is the real
    transport's own. The bytes read with the header wait here while the wrapped protocol
    pauses reading.
    """

    __slots__ = ("_paused", "_pending", "_transport", "relay", "write")

    def __init__(self, relay: ProxyRelay, transport: Any) -> None:
        #: what the header said
        self.relay = relay
        self._transport = transport
        #: the real transport's own: nothing in between on the path of every write
        self.write = transport.write
        # bytes read with the header, held while the wrapped protocol paused reading
        self._pending = b""
        self._paused = False

    @property
    def header(self) -> ProxyHeader:
        """The PROXY header the connection started with."""
        return self.relay.header

    @property
    def proxy(self) -> Address:
        """The real peer: the proxy that sent the header."""
        proxy: Address = self.relay.proxy or self._transport.getPeer()
        return proxy

    def getPeer(self) -> Address:
        """The client's address, as the PROXY header gave it."""
        peer: Address = self.relay.peer or self._transport.getPeer()
        return peer

    def getHost(self) -> Address:
        """The address the client connected to, as the PROXY header gave it."""
        host: Address = self.relay.host or self._transport.getHost()
        return host

    def deliver(self, data: bytes) -> None:
        """``data`` read for the wrapped protocol: given to it now, or once it resumes
        reading (after what waits already)."""
        if self._paused or self._pending:
            self._pending += data  # order: what came first is delivered first
        else:
            self.relay.wrapped.dataReceived(data)

    def drop(self) -> None:
        """The connection is gone: what waits will never be read."""
        self._pending = b""

    def pauseProducing(self) -> None:
        """Stop reading from the peer (bytes that came with the header wait too)."""
        self._paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Read from the peer again; the bytes that came with the header come first."""
        self._paused = False
        if self._pending:
            # on the next turn of the clock, not from inside the protocol's own call
            clock = self.relay._factory.clock_for(self._transport)
            clock.callLater(0, self._deliver_pending)
        else:
            self._transport.resumeProducing()

    def _deliver_pending(self) -> None:
        if self._paused or not self._pending:
            return
        if getattr(self._transport, "disconnecting", False):
            self._pending = b""
            return
        data, self._pending = self._pending, b""
        self.relay.wrapped.dataReceived(data)
        if not self._paused and not self._pending:
            self._transport.resumeProducing()

    def __getattr__(self, name: str) -> Any:
        if name[0] == "_":  # its own, not set yet (or a special name): not forwarded
            raise AttributeError(name)
        return getattr(self._transport, name)

    on_closing = _forwarded("on_closing")
    close_timeout = _forwarded("close_timeout")
    write_timeout = _forwarded("write_timeout")

    def __repr__(self) -> str:
        return f"<ProxiedTransport {_describe(self.getPeer())} via {_describe(self.proxy)}>"

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self._transport)})


class Deadlines:
    """The header deadlines of one factory's connections, on one timer for them all.

    Connections are put in generations of ``timeout / 2`` seconds; one timer, ticking
    every half timeout while connections wait, refuses the oldest generation's waiting
    ones and starts a new generation. So a header has at least ``timeout`` and at most
    1.5 x ``timeout`` seconds, and a connection costs a set's add and discard: no timer
    set and cancelled, not even a clock read. A connection leaves its generation as soon as
    its header is read or its connection ends, so nothing is held past its time.
    """

    #: generations kept: a connection is refused after 2 to 3 ticks
    GENERATIONS = 3

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._period = timeout / 2
        self._generations: deque[set[ProxyRelay]] = deque(set() for _ in range(self.GENERATIONS))
        self._clock: Any = None
        self._timer: Any = None

    def add(self, reader: ProxyRelay, transport: Any) -> set[ProxyRelay]:
        """Time ``reader``'s header from now; the generation it is in, to leave it when
        done. The timer runs on the factory's clock for the connection's ``transport``,
        looked up only when the timer must start (the first clock is kept: a factory
        serves one reactor)."""
        generation = self._generations[-1]
        generation.add(reader)
        if self._timer is None:
            if self._clock is None:
                self._clock = reader._factory.clock_for(transport)
            self._timer = self._clock.callLater(self._period, self._tick)
        return generation

    def _tick(self) -> None:
        self._timer = None
        generations = self._generations
        oldest = generations.popleft()
        generations.append(set())
        for reader in list(oldest):  # bounded: the connections of one generation
            reader.timed_out()
        if any(generations):
            self._timer = self._clock.callLater(self._period, self._tick)


def trusted_networks(entries: Iterable[str | Network]) -> tuple[bool, tuple[Network, ...]]:
    """Whether ``entries`` name ``"unix"`` (UNIX-socket peers), and the IP networks they
    name (CIDR text or network objects); a bad network raises ``ValueError`` naming it."""
    unix = False
    networks: list[Network] = []
    for entry in entries:
        if entry == "unix":
            unix = True
        elif isinstance(entry, str):
            networks.append(ipaddress.ip_network(entry, strict=False))
        else:
            networks.append(entry)
    return unix, tuple(networks)


class ProxyProtocolFactory(Factory):
    """Serve ``wrapped``'s protocol behind a proxy that sends a PROXY header.

    ``versions``: the header versions this port takes (``"v1"``, ``"v2"``). ``trusted``:
    the proxies' addresses (CIDR strings or networks; ``"unix"`` for UNIX-socket peers);
    ``None`` trusts every peer -- only for a port nothing but the proxy can reach.
    ``required``: a connection from outside ``trusted`` is closed (``True``) or served as
    a direct client with its real address (``False``, which needs ``trusted``). Trusted
    connections always need a header. ``timeout``: seconds to send the whole header
    (``None``: no limit). ``max_length``: the largest v2 length field taken. ``clock``: a
    ``callLater`` source (default: the connection's reactor). ``tls``: an ``ssl.SSLContext``
    (server side) for a stream that is TLS after its header, as a proxy passing TLS
    through sends it (HAProxy's ``send-proxy`` in ``mode tcp``): the wrapped protocol is
    connected before the handshake, as on a ``listenSSL`` port, and the bytes read with
    the header start the handshake; it needs statewire's socket transport (a port, not
    ``native_transports``) and ``required=True``.

    ``startFactory``/``stopFactory`` of ``wrapped`` run as if it served the port itself.
    """

    def __init__(
        self,
        wrapped: Any,
        versions: Iterable[str] = ("v1", "v2"),
        *,
        required: bool = True,
        trusted: Iterable[str | Network] | None = None,
        timeout: float | None = TIMEOUT,
        max_length: int = MAX_LENGTH,
        clock: Any = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.versions = tuple(versions)
        if not self.versions or not set(self.versions) <= {"v1", "v2"}:
            raise ValueError(f"versions are 'v1' and/or 'v2', got {self.versions!r}")
        if not required and trusted is None:
            raise ValueError(
                "required=False needs trusted=: without a list of proxies, any client "
                "could send a header and claim any address"
            )
        if tls is not None and not required:
            raise ValueError(
                "tls= needs required=True: a direct client's stream would be TLS from its "
                "first byte, which this factory does not serve"
            )
        if tls is not None:
            check_server_context(tls, "ProxyProtocolFactory(tls=)")
        #: the context of the TLS that follows the header, if any
        self.tls = tls
        self._warned_tls = False  # (a port that cannot start it: said once, at WARNING)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        if not 0 <= max_length <= 0xFFFF:
            raise ValueError(f"max_length must be 0 to 65535, got {max_length}")
        #: indexed by a header's version: whether this port takes it
        self.accepts = (False, "v1" in self.versions, "v2" in self.versions)
        self.required = required
        self.timeout = timeout
        #: the header deadlines of this factory's connections (``None``: no timeout)
        self.deadlines = None if timeout is None else Deadlines(timeout)
        self.max_length = max_length
        self.clock = clock
        self.noisy = getattr(wrapped, "noisy", True)
        self.trust_unix = False
        self.trusted: tuple[Network, ...] | None = None
        # is_trusted's answers by host (at most VERDICTS), and the networks they are for
        self._verdicts: tuple[tuple[Network, ...] | None, dict[str, bool]] = (None, {})
        if trusted is not None:
            self.trust_unix, self.trusted = trusted_networks(trusted)

    def startFactory(self) -> None:
        """Start the wrapped factory."""
        self.wrapped.doStart()

    def stopFactory(self) -> None:
        """Stop the wrapped factory."""
        self.wrapped.doStop()

    def clock_for(self, transport: Any) -> Any:
        """The clock of a connection's timers: :attr:`clock`, else its reactor, else the
        default clock of declared protocols (:func:`statewire.declarative.default_clock`:
        layer 4 never imports the reactor)."""
        clock = self.clock
        if clock is None:
            clock = getattr(transport, "reactor", None)
            if clock is None:
                clock = default_clock()
        return clock

    def is_trusted(self, address: Address | None) -> bool:
        """Whether a connection from ``address`` may send a PROXY header."""
        trusted = self.trusted
        if trusted is None:
            return True
        if isinstance(address, UNIXAddress):
            return self.trust_unix
        host = str(getattr(address, "host", ""))
        # the answer depends on the host alone, and the proxies are few: remembered, as
        # reading the address and matching the networks costs microseconds a connection
        verdicts = self._verdicts
        if verdicts[0] is not trusted:  # new networks: what was decided no longer holds
            verdicts = self._verdicts = (trusted, {})
        known = verdicts[1].get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                known = False
            else:
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped  # a dual-stack socket's IPv4 peer
                known = any(ip in network for network in trusted)
            if len(verdicts[1]) >= VERDICTS:  # bounded, whoever connects
                verdicts[1].clear()
            verdicts[1][host] = known
        return known

    def buildProtocol(self, addr: Address) -> Any:
        """A :class:`ProxyRelay` (reading the header) for a trusted peer; for
        another, nothing (the connection is closed) or, when not ``required``, the wrapped
        protocol itself."""
        if self.trusted is None or self.is_trusted(addr):
            # ProxyRelay(self, addr) without the call of its __init__ (one Python call
            # less per connection): the same attributes set, as a test holds them
            reader = _new_reader(ProxyRelay)
            reader._factory = self
            reader.proxy = addr
            reader.wrapped = None
            reader._state = _FIRST
            reader._stopping = False
            return reader
        if self.required:
            log.info("PROXY header refused from %s: not a trusted proxy; closing", _describe(addr))
            return None
        return self.wrapped.buildProtocol(addr)
