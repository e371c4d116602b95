"""The PROXY protocol on the server side: any protocol behind HAProxy, nginx or a cloud
load balancer sees its clients' own addresses.

Theory of operation
-------------------
:class:`ProxyProtocolFactory` wraps the factory of any protocol (declared or plain). Each
connection first gets a :class:`HeaderReader`, which reads one PROXY header
(:mod:`grammars.proxy`) and nothing more. Once the header is whole it asks the wrapped
factory for the real protocol -- ``buildProtocol`` gets the client's address -- and
connects it to a :class:`ProxiedTransport`: the real transport, except that ``getPeer()``
and ``getHost()`` answer with the header's addresses (``LOCAL`` and ``UNKNOWN`` headers,
and families other than TCP over IPv4/IPv6 and UNIX streams, keep the real ones). The
bytes that came with the header in the same read, and every read after, go to that
protocol unchanged and in order; the reader then only forwards.

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

import ipaddress
import logging
import os
from collections import deque
from collections.abc import Iterable
from typing import Any

from grammars.errors import GrammarError
from grammars.proxy import Command, Family, ProxyHeader, Transport, scan
from statewire.address import Address, IPv4Address, IPv6Address, UNIXAddress
from statewire.error import Failure, connectionDone
from statewire.protocol import Factory, Protocol

__all__ = [
    "Deadlines",
    "HeaderReader",
    "ProxiedTransport",
    "ProxyProtocolFactory",
    "header_address",
    "trusted_networks",
]

log = logging.getLogger("statewire")

#: the default bound of a v2 header's length field: addresses and TLVs (HAProxy's SSL,
#: unique-id and authority TLVs take a few hundred bytes)
MAX_LENGTH = 2048
#: seconds a connection has to send its whole header (the spec: at least 3)
TIMEOUT = 5.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# read once: an enum member looked up on its class costs more than the rest of the test
_PROXY, _STREAM, _UNIX, _INET = Command.PROXY, Transport.STREAM, Family.UNIX, Family.INET


def header_address(header: ProxyHeader, source: bool = True) -> Address | None:
    """The address a connection reports after ``header`` for its peer (``source``) or its
    host: the header's for a relayed TCP (IPv4, IPv6) or UNIX stream; ``None`` when the
    real one stays (``LOCAL``, ``UNKNOWN``, ``UNSPEC``, datagrams)."""
    _, command, family, transport, src, dst, sport, dport, _ = header
    if command is not _PROXY or transport is not _STREAM:
        return None
    address, port = (src, sport) if source else (dst, dport)
    if type(address) is str:
        return (IPv4Address if family is _INET else IPv6Address)("TCP", address, port or 0)
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


class ProxiedTransport:
    """The transport a wrapped protocol writes to: the real one, whose ``getPeer()`` and
    ``getHost()`` are the PROXY header's addresses.

    Every other attribute is the real transport's to read; the ones protocols set on
    statewire's transports (``on_closing``, ``close_timeout``, ``write_timeout``) are set
    on it too, and setting any other raises ``AttributeError``. ``header`` is the PROXY
    header (its TLVs: ``header.tlv(PP2_TYPE_UNIQUE_ID)``, ``header.ssl()``); ``proxy`` is
    the address of the proxy that sent it (the real peer).
    """

    __slots__ = ("_peer", "_reader", "_transport", "header", "write", "writeSequence")
    #: bound to the real transport's own methods on first use: no forwarding per write
    _bound = frozenset({"write", "writeSequence"})

    def __init__(
        self,
        transport: Any,
        peer: Address,
        header: ProxyHeader,
        reader: HeaderReader,
    ) -> None:
        self._transport = transport
        self._peer = peer
        self._reader = reader
        #: the PROXY header the connection started with
        self.header = header

    @property
    def proxy(self) -> Address:
        """The real peer: the proxy that sent the header."""
        peer: Address = self._transport.getPeer()
        return peer

    def getPeer(self) -> Address:
        """The client's address, as the PROXY header gave it."""
        peer: Address = self._peer
        return peer

    def getHost(self) -> Address:
        """The address the client connected to, as the PROXY header gave it (made when
        asked: few protocols do)."""
        host: Address = header_address(self.header, False) or self._transport.getHost()
        return host

    def pauseProducing(self) -> None:
        """Stop reading from the peer (bytes that came with the header wait too)."""
        self._reader.paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Read from the peer again; the bytes that came with the header come first."""
        self._reader.paused = False
        if self._reader.pending:
            self._reader.schedule_pending()  # it resumes the transport once delivered
        else:
            self._transport.resumeProducing()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._transport, name)
        if name in self._bound:
            object.__setattr__(self, name, value)
        return value

    on_closing = _forwarded("on_closing")
    close_timeout = _forwarded("close_timeout")
    write_timeout = _forwarded("write_timeout")

    def __repr__(self) -> str:
        return f"<ProxiedTransport {_describe(self._peer)} via {_describe(self.proxy)}>"

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self._transport)})


class HeaderReader(Protocol):
    """A connection's first protocol: reads the PROXY header, then connects the wrapped
    protocol and forwards every later event to it."""

    #: the wrapped protocol once connected
    wrapped: Any = None
    #: bytes read with the header, held while the wrapped protocol paused reading
    pending = b""
    #: whether the wrapped protocol paused reading
    paused = False
    # the header's first pieces, when it came in more than one read
    _buffer: bytearray | None = None
    # refused, or lost before the header was whole: nothing more to do
    _done = False
    # the generation of header deadlines this connection is in, while it waits
    _generation: set[HeaderReader] | None = None

    def __init__(self, factory: ProxyProtocolFactory) -> None:
        self.factory = factory

    # -- before the header ------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Start the header's clock."""
        deadlines = self.factory.deadlines
        if deadlines is not None:
            self._generation = deadlines.add(self, self.factory.clock_for(self.transport))

    def dataReceived(self, data: bytes) -> None:
        """Read the header; once connected, hand ``data`` to the wrapped protocol."""
        wrapped = self.wrapped
        if wrapped is not None:
            if self.pending:
                self.pending += data  # order: what came first is delivered first
            else:
                wrapped.dataReceived(data)
            return
        if self._done:
            return
        seen: bytes | bytearray = data
        buffer = self._buffer
        if buffer is not None:  # the header came in pieces: gather them (one header at most)
            buffer += data
            seen = buffer
        try:
            found = scan(seen, self.factory.max_length)
        except GrammarError as error:
            self.refuse(str(error))
            return
        if found is None:
            if buffer is None:
                self._buffer = bytearray(data)
            return
        header, size = found
        if not self.factory.accepts[header.version]:
            self.refuse(
                f"a PROXY v{header.version} header; this port takes "
                f"{' or '.join(self.factory.versions)}"
            )
            return
        self._buffer = None
        self._connect(header, bytes(seen[size:]))

    def timed_out(self) -> None:
        """The header's time is up: refuse the connection if it is still waiting for it."""
        if self.wrapped is None and not self._done:
            seen = len(self._buffer or b"")
            self.refuse(
                f"no complete PROXY header within {self.factory.timeout} s ({seen} bytes read)"
            )

    def refuse(self, why: str) -> None:
        """Close the connection before the wrapped protocol saw anything; log ``why``."""
        if self._done:
            return
        self._done = True
        self._buffer = None
        self._untime()
        log.info(
            "PROXY header refused from %s: %s; closing", _describe(self.transport.getPeer()), why
        )
        self.transport.loseConnection()

    def _untime(self) -> None:
        generation = self._generation
        if generation is not None:
            generation.discard(self)
            self._generation = None

    def _connect(self, header: ProxyHeader, rest: bytes) -> None:
        self._untime()
        transport = self.transport
        peer = header_address(header) or transport.getPeer()
        protocol = self.factory.wrapped.buildProtocol(peer)
        if protocol is None:
            self._done = True
            transport.loseConnection()
            return
        self.wrapped = protocol
        protocol.makeConnection(ProxiedTransport(transport, peer, header, self))
        if rest and not getattr(transport, "disconnecting", False):
            if self.paused:
                self.pending = rest
            else:
                protocol.dataReceived(rest)

    # -- bytes read with the header, held across a pause ----------------------------------

    def schedule_pending(self) -> None:
        """Deliver the held bytes on the next turn of the clock (not from inside the
        wrapped protocol's own ``resumeProducing`` call), then resume reading."""
        self.factory.clock_for(self.transport).callLater(0, self._deliver_pending)

    def _deliver_pending(self) -> None:
        if self.paused or self.wrapped is None or not self.pending:
            return
        if getattr(self.transport, "disconnecting", False):
            self.pending = b""
            return
        data, self.pending = self.pending, b""
        self.wrapped.dataReceived(data)
        if not self.paused and not self.pending:
            self.transport.resumeProducing()

    # -- forwarded ----------------------------------------------------------------------

    def transportCongested(self, congested: bool) -> None:
        """Forwarded to the wrapped protocol, if it listens."""
        hook = getattr(self.wrapped, "transportCongested", None)
        if hook is not None:
            hook(congested)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forwarded to the wrapped protocol, if it was connected."""
        self._done = True
        self._buffer = None
        self.pending = b""
        self._untime()
        wrapped = self.wrapped
        if wrapped is not None:
            wrapped.connectionLost(reason)


class Deadlines:
    """The header deadlines of one factory's connections, on one timer for them all.

    Connections are put in generations of ``timeout / 2`` seconds; one timer, ticking
    every half timeout while connections wait, refuses the oldest generation's waiting
    ones and starts a new generation. So a header has at least ``timeout`` and at most
    1.5 x ``timeout`` seconds, and a connection costs a set's add and discard: no timer
    set and cancelled, not even a clock read. A reader leaves its generation as soon as
    its header is read or its connection ends, so nothing is held past its time.
    """

    #: generations kept: a connection is refused after 2 to 3 ticks
    GENERATIONS = 3

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._period = timeout / 2
        self._generations: deque[set[HeaderReader]] = deque(set() for _ in range(self.GENERATIONS))
        self._clock: Any = None
        self._timer: Any = None

    def add(self, reader: HeaderReader, clock: Any) -> set[HeaderReader]:
        """Time ``reader``'s header from now on ``clock`` (the first clock given is kept:
        a factory serves one reactor); the generation it is in, to leave it when done."""
        generation = self._generations[-1]
        generation.add(reader)
        if self._timer is None:
            if self._clock is None:
                self._clock = clock
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
    ``callLater`` source (default: the connection's reactor).

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
        if trusted is not None:
            self.trust_unix, self.trusted = trusted_networks(trusted)

    def startFactory(self) -> None:
        """Start the wrapped factory."""
        self.wrapped.doStart()

    def stopFactory(self) -> None:
        """Stop the wrapped factory."""
        self.wrapped.doStop()

    def clock_for(self, transport: Any) -> Any:
        """The clock of a connection's timers: :attr:`clock`, else its reactor."""
        clock = self.clock
        if clock is None:
            clock = getattr(transport, "reactor", None)
            if clock is None:
                from statewire import reactor as clock
        return clock

    def is_trusted(self, address: Address | None) -> bool:
        """Whether a connection from ``address`` may send a PROXY header."""
        if self.trusted is None:
            return True
        if isinstance(address, UNIXAddress):
            return self.trust_unix
        try:
            ip = ipaddress.ip_address(str(getattr(address, "host", "")).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket's IPv4 peer
        return any(ip in network for network in self.trusted)

    def buildProtocol(self, addr: Address) -> Any:
        """A :class:`HeaderReader` for a trusted peer; for another, nothing (the connection
        is closed) or, when not ``required``, the wrapped protocol itself."""
        if self.is_trusted(addr):
            return HeaderReader(self)
        if self.required:
            log.info("PROXY header refused from %s: not a trusted proxy; closing", _describe(addr))
            return None
        return self.wrapped.buildProtocol(addr)
