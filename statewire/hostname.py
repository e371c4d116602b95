"""``HostnameEndpoint``: connect to a host name, racing its addresses (Happy Eyeballs).

Twisted's endpoint, with its arguments. Theory of operation, after RFC 8305:

1. **Resolve** the name with the loop's ``getaddrinfo`` (a literal address resolves to
   itself, without a query).
2. **Order** the addresses (:func:`happy_eyeballs_order`): IPv6 first, then the families
   alternate, each family keeping the resolver's order (RFC 8305 section 4, "First
   Address Family Count" 1). A host whose IPv6 path is broken then costs one
   ``attemptDelay``, not one ``timeout``.
3. **Race**: start an attempt on the first address; start the next one when
   ``attemptDelay`` passes without a winner, or at once when an attempt fails (section 5).
   The first attempt to connect wins; the others are cancelled and their sockets closed,
   so a loser never reaches the factory (no protocol is built for it).
4. The whole, resolution included, is bounded by ``timeout``.

The attempts are plain non-blocking sockets (``loop.sock_connect``); the winner's socket is
handed to the loop (``create_connection(sock=...)``) and the factory's protocol is built on
it by the same :class:`~statewire._reactor.Connector` as ``reactor.connectTCP``'s. So
``connect(factory)`` returns what the other client endpoints return (an awaitable of the
connected protocol), a ``ClientFactory`` hears ``startedConnecting``,
``clientConnectionFailed`` and ``clientConnectionLost`` as with ``connectTCP``, and a
:class:`~statewire.reconnecting.ReconnectingClientFactory` reconnects through it (each
reconnection resolves and races again). A failure names the host, the port and each address
tried, with what happened to it:

* every address refused: :class:`~statewire.error.ConnectionRefusedError`;
* the name does not resolve, other errors, or ``timeout`` passed:
  :class:`~statewire.error.ConnectError` (the message says ``timed out``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from statewire._reactor import Connector, Reactor
from statewire.address import from_sockaddr
from statewire.error import TimeoutError as ConnectTimeout
from statewire.runtime.delayed_call import checked_delay

__all__ = ["HostnameEndpoint", "happy_eyeballs_order"]

#: one resolved address, as ``getaddrinfo`` gives it: (family, type, proto, canonname,
#: sockaddr)
AddressInfo = tuple[int, int, int, str, tuple[Any, ...]]

#: seconds the connector waits past ``timeout``: the endpoint's own deadline comes first
#: and says which addresses were tried; the connector's is only a backstop
_BACKSTOP = 1.0


def happy_eyeballs_order(addresses: Iterable[AddressInfo]) -> list[AddressInfo]:
    """``addresses`` without duplicates, IPv6 first, the families alternating, each
    family in the resolver's order (RFC 8305 section 4)."""
    seen: set[tuple[int, tuple[Any, ...]]] = set()
    families: dict[int, list[AddressInfo]] = {socket.AF_INET6: [], socket.AF_INET: []}
    for info in addresses:
        key = (info[0], info[4])
        if key in seen or info[0] not in families:
            continue
        seen.add(key)
        families[info[0]].append(info)
    ordered: list[AddressInfo] = []
    for pair in itertools.zip_longest(families[socket.AF_INET6], families[socket.AF_INET]):
        ordered.extend(info for info in pair if info is not None)
    return ordered


class HostnameEndpoint:
    """Connect to TCP ``port`` of ``host`` (a name or a literal address, ``str`` or
    ``bytes``), trying its IPv6 and IPv4 addresses as RFC 8305 describes (see the module
    documentation).

    ``timeout`` bounds the whole connection (resolution included), in seconds;
    ``attemptDelay`` is the wait before the next address is tried while the previous
    attempt has neither succeeded nor failed (Twisted's default, 0.3 s, when ``None``);
    ``bindAddress`` is a ``(host, port)`` to bind each attempt's socket to.
    """

    def __init__(
        self,
        reactor: Reactor,
        host: str | bytes,
        port: int,
        timeout: float = 30,
        bindAddress: tuple[str, int] | None = None,
        attemptDelay: float | None = None,
    ) -> None:
        checked_delay(timeout, "HostnameEndpoint's timeout")
        delay = 0.3 if attemptDelay is None else attemptDelay
        checked_delay(delay, "HostnameEndpoint's attemptDelay")
        self.reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout
        self.bindAddress = bindAddress
        self.attemptDelay = delay
        self._name = host.decode("ascii", "backslashreplace") if isinstance(host, bytes) else host

    def __repr__(self) -> str:
        return f"<HostnameEndpoint {self._name}:{self.port}>"

    def connect(self, factory: Any) -> asyncio.Future[Any]:
        """Start connecting; the result resolves to the connected protocol."""
        # the destination is the host as given, as connectTCP names it
        name, port = self._name, self.port
        destination = from_sockaddr(False, (name, port, 0, 0) if ":" in name else (name, port))
        timeout = self.timeout + _BACKSTOP
        connector = Connector(self.reactor, factory, self._open, destination, timeout)
        return connector.connected

    async def _open(self, make: Callable[[], asyncio.Protocol]) -> Any:
        """Resolve, race, and hand the winner's socket to the loop (the connector's
        ``open_connection``)."""
        loop = self.reactor.loop
        race = _Race(loop, self.bindAddress)
        try:
            return await asyncio.wait_for(self._connect(loop, race, make), self.timeout)
        except asyncio.TimeoutError:
            what = f"timed out after {self.timeout:g} s"
            raise ConnectTimeout(self._failure(what, race.outcomes())) from None
        except _AllFailed as failed:
            outcomes = race.outcomes()
            if all(isinstance(e, ConnectionRefusedError) for e in failed.errors):
                raise ConnectionRefusedError(self._failure("refused", outcomes)) from None
            raise OSError(self._failure("failed", outcomes)) from None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, race: _Race, make: Callable[[], asyncio.Protocol]
    ) -> Any:
        sock = await race.run(await self._resolve(loop), self.attemptDelay)
        try:
            return await loop.create_connection(make, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list[AddressInfo]:
        literal = _literal(self._name, self.port)
        if literal is not None:  # no thread for the resolver, as create_connection does
            return [literal]
        try:
            found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise OSError(
                f"connecting to {self._name} port {self.port}: cannot resolve "
                f"{self._name!r}: {error.strerror}"
            ) from None
        addresses = happy_eyeballs_order(found)
        if not addresses:
            raise OSError(
                f"connecting to {self._name} port {self.port}: {self._name!r} has no "
                "IPv4 or IPv6 address"
            )
        return addresses

    def _failure(self, what: str, outcomes: Sequence[str]) -> str:
        tried = f"tried {', '.join(outcomes)}" if outcomes else "while resolving the name"
        return f"connecting to {self._name} port {self.port} {what}; {tried}"


class _AllFailed(Exception):
    """Every address was tried and failed."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Race:
    """The connection attempts of one ``connect``: started in order, staggered, the first
    to connect wins; remembers what happened to each address."""

    def __init__(self, loop: asyncio.AbstractEventLoop, bind: tuple[str, int] | None) -> None:
        self._loop = loop
        self._bind = bind
        #: (printable address, task) in the order started
        self._started: list[tuple[str, asyncio.Task[socket.socket]]] = []
        self._not_started: list[str] = []

    async def run(self, addresses: list[AddressInfo], delay: float) -> socket.socket:
        """The connected socket of the first address to connect; ``_AllFailed`` when
        none does. Cancelled, it cancels its attempts and closes their sockets."""
        self._not_started = [_printable(info[4]) for info in addresses]
        pending: set[asyncio.Task[socket.socket]] = set()
        try:
            for info in addresses:
                self._not_started.pop(0)
                task = self._loop.create_task(self._attempt(info))
                self._started.append((_printable(info[4]), task))
                pending.add(task)
                # wait for the attempt delay, or less if an attempt settles first
                done, pending = await asyncio.wait(
                    pending, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                winner = self._winner(done)
                if winner is not None:
                    return winner
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                winner = self._winner(done)
                if winner is not None:
                    return winner
        finally:
            for task in pending:  # the attempts still under way lost (or were given up)
                task.cancel()
                task.add_done_callback(_close_loser)
        raise _AllFailed([task.exception() or ConnectionError() for _, task in self._started])

    async def _attempt(self, info: AddressInfo) -> socket.socket:
        family, kind, proto, _, sockaddr = info
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if self._bind is not None:
                sock.bind(self._bind)
            await self._loop.sock_connect(sock, sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    def _winner(self, done: set[asyncio.Task[socket.socket]]) -> socket.socket | None:
        """The socket of the first started attempt of ``done`` that connected; the others
        of ``done`` that connected too lost: closed."""
        winner: socket.socket | None = None
        for _, task in self._started:
            if task in done and task.exception() is None:
                if winner is None:
                    winner = task.result()
                else:
                    task.result().close()
        return winner

    def outcomes(self) -> list[str]:
        """Each address tried, with what happened to it, then those not tried."""
        said = [f"{where} ({_outcome(task)})" for where, task in self._started]
        said += [f"{where} (not tried)" for where in self._not_started]
        return said


def _close_loser(task: asyncio.Task[socket.socket]) -> None:
    """A losing attempt settled: close its socket if it connected after all."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def _outcome(task: asyncio.Task[socket.socket]) -> str:
    if not task.done() or task.cancelled():
        return "no answer"
    error = task.exception()
    if error is None:
        return "connected"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    return str(error.strerror or error) if isinstance(error, OSError) else str(error)


def _literal(host: str, port: int) -> AddressInfo | None:
    """The address ``host`` is, if it is a literal IPv4 or IPv6 address without a scope
    (what ``getaddrinfo`` would answer without a query), else ``None``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        return (socket.AF_INET6, *tcp, (host, port, 0, 0))
    return (socket.AF_INET, *tcp, (host, port))


def _printable(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
