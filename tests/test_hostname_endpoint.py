"""HostnameEndpoint (Happy Eyeballs, RFC 8305) over real sockets on 127.0.0.1 and ::1 only.

Here ``localhost`` resolves to 127.0.0.1 alone (see /etc/hosts), so the dual-stack cases
use names that the test's own loop resolves (:class:`NamedLoop`: a fixed table, and the
real resolver for ``localhost`` and literal addresses); every address is a loopback one.
An address that refuses is a socket bound without listening; one that never answers
listens with a full backlog (``listen(0)`` and one connection already waiting in it).
Every wait is bounded; tests assert outcomes, never timings.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from runtime_helpers import scenario

from statewire._reactor import Reactor
from statewire.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    clientFromString,
)
from statewire.error import ConnectError, ConnectionRefusedError, Failure, connectionDone
from statewire.error import TimeoutError as ConnectTimeout
from statewire.hostname import AddressInfo, happy_eyeballs_order
from statewire.protocol import ClientFactory, Factory, Protocol

T = TypeVar("T")

V4, V6 = "127.0.0.1", "::1"
#: upper bound of any wait in these tests, in seconds
PATIENCE = 5.0


class NamedLoop(asyncio.SelectorEventLoop):
    """A loop whose ``getaddrinfo`` answers the names of :attr:`names` itself (in the
    order given), passes ``localhost`` and literal addresses to the real resolver, never
    answers for ``stuck.test``, and fails for any other name (no query ever leaves the
    machine)."""

    names: dict[str, list[tuple[str, int]]] = {}  # set per test by named()

    async def getaddrinfo(  # type: ignore[override]
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddressInfo]:
        name = host.decode() if isinstance(host, bytes) else host
        if name == "stuck.test":  # a resolver that never answers
            await asyncio.sleep(PATIENCE * 2)
        if name in self.names:
            return [_info(address, number) for address, number in self.names[name]]
        if name in ("localhost", V4, V6):
            found = await super().getaddrinfo(
                host, port, family=family, type=type, proto=proto, flags=flags
            )
            return list(found)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _info(address: str, port: int) -> AddressInfo:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


Names = dict[str, list[tuple[str, int]]]


def named(body: Callable[[Reactor, Names], Awaitable[T]]) -> T:
    """Run ``body(reactor, names)`` on a :class:`NamedLoop` that resolves the names
    ``body`` puts in ``names`` (once it knows its ports), then shut the reactor down."""
    names: Names = {}

    class Loop(NamedLoop):
        pass

    Loop.names = names

    async def main() -> T:
        reactor = Reactor()
        try:
            return await asyncio.wait_for(body(reactor, names), 60)
        finally:
            await reactor.shutdown()

    loop = Loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _socket(address: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.socket(family, socket.SOCK_STREAM)


@contextmanager
def refusing(address: str) -> Iterator[int]:
    """A port of ``address`` that refuses connections (bound, not listening)."""
    with _socket(address) as sock:
        sock.bind((address, 0))
        yield sock.getsockname()[1]


@contextmanager
def silent(address: str) -> Iterator[socket.socket]:
    """A listening socket of ``address`` that answers no new connection: its backlog is
    full (the filler's connection waits in it, never accepted)."""
    with _socket(address) as sock, _socket(address) as filler:
        sock.bind((address, 0))
        sock.listen(0)
        filler.connect(sock.getsockname()[:2])
        yield sock


class Served(Protocol):
    """A server protocol that tells its factory when it is made and lost."""

    def connectionMade(self) -> None:
        self.factory.made.append(self)
        self.factory.changed.set()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.lost.append(self)
        self.factory.changed.set()


class Server(Factory):
    """Counts the connections it serves."""

    protocol = Served
    noisy = False

    def __init__(self) -> None:
        self.made: list[Served] = []
        self.lost: list[Served] = []
        self.changed = asyncio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait, at most :data:`PATIENCE` seconds, until ``condition()`` holds."""

        async def watch() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(watch(), PATIENCE)


async def serve(reactor: Reactor, address: str) -> tuple[Server, int]:
    """A :class:`Server` listening on a free port of ``address``, and that port."""
    server = Server()
    port = reactor.listenTCP(0, server, interface=address)
    await port.ready
    return server, port.getHost().port  # type: ignore[union-attr]


class Client(ClientFactory):
    """A client factory recording the hooks the connector calls."""

    protocol = Protocol
    noisy = False

    def __init__(self) -> None:
        self.hooks: list[str] = []
        self.reasons: list[Failure] = []

    def startedConnecting(self, connector: Any) -> None:
        self.hooks.append("started")

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.hooks.append("failed")
        self.reasons.append(reason)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.hooks.append("lost")


async def connect(endpoint: Any, factory: Any = None) -> Any:
    """``endpoint.connect`` with a bound on the wait."""
    return await asyncio.wait_for(endpoint.connect(factory or Client()), PATIENCE)


async def failure(endpoint: Any, factory: Any = None) -> BaseException:
    """The error ``endpoint.connect`` fails with."""
    with pytest.raises((ConnectError, ConnectionRefusedError)) as caught:
        await connect(endpoint, factory)
    return caught.value


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle() -> None:
    """Let what was just closed or cancelled finish (a few loop turns, bounded)."""
    for _ in range(10):
        await asyncio.sleep(0.01)


# -- ordering ----------------------------------------------------------------------------


def test_order_puts_ipv6_first_then_alternates_families() -> None:
    given = [
        _info("127.0.0.1", 1),
        _info("127.0.0.2", 1),
        _info("127.0.0.3", 1),
        _info("::1", 1),
        _info("127.0.0.1", 1),  # a duplicate: tried once
        _info("::2", 1),
    ]
    hosts = [info[4][0] for info in happy_eyeballs_order(given)]
    assert hosts == ["::1", "127.0.0.1", "::2", "127.0.0.2", "127.0.0.3"]
    assert happy_eyeballs_order([]) == []


# -- connecting --------------------------------------------------------------------------


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_localhost_with_the_real_resolver(uvloop: bool) -> None:
    async def body(reactor: Reactor) -> tuple[str, list[str]]:
        server, port = await serve(reactor, V4)
        client = Client()
        protocol = await connect(HostnameEndpoint(reactor, "localhost", port), client)
        peer = protocol.transport.getPeer().host
        protocol.transport.loseConnection()
        await server.until(lambda: bool(server.lost))
        return peer, client.hooks

    peer, hooks = scenario(body, uvloop=uvloop)
    assert peer == V4
    assert hooks == ["started", "lost"]


def test_literal_ipv6_address_and_bytes_host() -> None:
    async def body(reactor: Reactor) -> list[str]:
        server, port = await serve(reactor, V6)
        peers = []
        for host in (V6, V6.encode()):
            protocol = await connect(HostnameEndpoint(reactor, host, port))
            peers.append(protocol.transport.getPeer().host)
            protocol.transport.loseConnection()
        await server.until(lambda: len(server.lost) == 2)
        return peers

    assert scenario(body) == [V6, V6]


def test_falls_back_at_once_to_ipv4_when_ipv6_refuses() -> None:
    """Resolved IPv4 first, ::1 is still tried first; its refusal starts the next attempt
    without waiting for the attempt delay (60 s here, PATIENCE bounds the wait)."""

    async def body(reactor: Reactor, names: Names) -> tuple[str, list[str]]:
        server, port = await serve(reactor, V4)
        with refusing(V6) as refused:
            names["dual.test"] = [(V4, port), (V6, refused)]
            client = Client()
            endpoint = HostnameEndpoint(reactor, "dual.test", port, attemptDelay=60)
            protocol = await connect(endpoint, client)
        peer: str = protocol.transport.getPeer().host
        protocol.transport.loseConnection()
        await server.until(lambda: bool(server.lost))
        return peer, client.hooks

    peer, hooks = named(body)
    assert peer == V4
    assert hooks == ["started", "lost"]  # one connector: the refused address is no failure


def test_ipv6_wins_when_both_families_answer() -> None:
    async def body(reactor: Reactor, names: Names) -> tuple[str, int, int]:
        six, port6 = await serve(reactor, V6)
        four, port4 = await serve(reactor, V4)
        names["dual.test"] = [(V4, port4), (V6, port6)]
        protocol = await connect(HostnameEndpoint(reactor, "dual.test", 1, attemptDelay=1))
        peer: str = protocol.transport.getPeer().host
        await six.until(lambda: bool(six.made))
        protocol.transport.loseConnection()
        await six.until(lambda: bool(six.lost))
        return peer, len(six.made), len(four.made)

    assert named(body) == (V6, 1, 0)


def test_ipv4_wins_after_the_attempt_delay_when_ipv6_never_answers() -> None:
    """The unanswered ::1 attempt is cancelled and its socket closed: once the winning
    connection is closed, the process holds the descriptors it held before."""

    async def body(reactor: Reactor, names: Names) -> tuple[str, int, int]:
        server, port = await serve(reactor, V4)
        with silent(V6) as blackhole:
            names["dual.test"] = [(V6, blackhole.getsockname()[1]), (V4, port)]
            # a first connection, so that what the reactor opens once is open already
            warm = await connect(TCP4ClientEndpoint(reactor, V4, port))
            warm.transport.loseConnection()
            await server.until(lambda: len(server.lost) == 1)
            await settle()
            before = _open_descriptors()
            endpoint = HostnameEndpoint(reactor, "dual.test", port, attemptDelay=0.05)
            protocol = await connect(endpoint)
            peer: str = protocol.transport.getPeer().host
            protocol.transport.loseConnection()
            await server.until(lambda: len(server.lost) == 2)
            await settle()  # the cancelled attempt, the closed sockets
            return peer, before, _open_descriptors()

    peer, before, after = named(body)
    assert peer == V4
    assert after == before


def test_timeout_names_the_host_and_each_address() -> None:
    async def body(reactor: Reactor, names: Names) -> tuple[BaseException, list[str]]:
        with silent(V6) as six, silent(V4) as four:
            port6, port4 = six.getsockname()[1], four.getsockname()[1]
            names["dark.test"] = [(V4, port4), (V6, port6), (V6, port6)]
            client = Client()
            endpoint = HostnameEndpoint(reactor, "dark.test", 80, timeout=0.3, attemptDelay=0.05)
            error = await failure(endpoint, client)
            return error, client.hooks

    error, hooks = named(body)
    assert isinstance(error, ConnectTimeout)
    message = str(error)
    assert "dark.test" in message and "timed out after 0.3 s" in message
    assert "[::1]:" in message and "127.0.0.1:" in message and "no answer" in message
    assert hooks == ["started", "failed"]


def test_timeout_covers_addresses_not_tried_yet() -> None:
    async def body(reactor: Reactor, names: Names) -> BaseException:
        with silent(V6) as six:
            port6 = six.getsockname()[1]
            names["slow.test"] = [(V6, port6), (V4, 9)]
            endpoint = HostnameEndpoint(reactor, "slow.test", 80, timeout=0.1, attemptDelay=30)
            return await failure(endpoint)

    message = str(named(body))
    assert "timed out" in message and "127.0.0.1:9 (not tried)" in message


def test_timeout_while_resolving() -> None:
    async def body(reactor: Reactor, names: Names) -> BaseException:
        return await failure(HostnameEndpoint(reactor, "stuck.test", 80, timeout=0.1))

    error = named(body)
    assert type(error) is ConnectTimeout  # a ConnectError, typed as Twisted's TimeoutError
    assert str(error) == (
        "connecting to stuck.test port 80 timed out after 0.1 s; while resolving the name"
    )


def test_every_address_refusing_is_a_refusal_naming_them() -> None:
    async def body(reactor: Reactor, names: Names) -> tuple[BaseException, list[Failure]]:
        with refusing(V6) as port6, refusing(V4) as port4:
            names["shut.test"] = [(V6, port6), (V4, port4)]
            client = Client()
            error = await failure(HostnameEndpoint(reactor, "shut.test", 80), client)
            return error, client.reasons

    error, reasons = named(body)
    assert isinstance(error, ConnectionRefusedError)
    message = str(error)
    assert "shut.test" in message
    assert message.count("(refused)") == 2 and "[::1]:" in message and "127.0.0.1:" in message
    assert [reason.value for reason in reasons] == [error]


def test_a_name_that_does_not_resolve() -> None:
    async def body(reactor: Reactor, names: Names) -> BaseException:
        return await failure(HostnameEndpoint(reactor, "nowhere.invalid", 80))

    error = named(body)
    assert type(error) is ConnectError
    assert "cannot resolve 'nowhere.invalid'" in str(error)


def test_a_reactor_shutdown_gives_up_the_attempts() -> None:
    async def body(reactor: Reactor, names: Names) -> tuple[BaseException, int, int]:
        with silent(V6) as six, silent(V4) as four:
            names["dark.test"] = [(V6, six.getsockname()[1]), (V4, four.getsockname()[1])]
            before = _open_descriptors()
            attempt = HostnameEndpoint(reactor, "dark.test", 80, attemptDelay=0).connect(Client())
            await settle()
            assert _open_descriptors() == before + 2  # both attempts under way
            await reactor.shutdown()
            with pytest.raises(ConnectError) as caught:
                await asyncio.wait_for(attempt, PATIENCE)
            await settle()
            return caught.value, before, _open_descriptors()

    error, before, after = named(body)
    assert "cancelled" in str(error)
    assert after == before


def test_bind_address() -> None:
    async def body(reactor: Reactor) -> str:
        server, port = await serve(reactor, V4)
        endpoint = HostnameEndpoint(reactor, "localhost", port, bindAddress=(V4, 0))
        protocol = await connect(endpoint)
        local: str = protocol.transport.getHost().host
        protocol.transport.loseConnection()
        await server.until(lambda: bool(server.lost))
        return local

    assert scenario(body) == V4


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_refuses_bad_timeouts_and_delays(value: float) -> None:
    reactor = Reactor()
    with pytest.raises(ValueError, match="timeout"):
        HostnameEndpoint(reactor, "localhost", 80, timeout=value)
    with pytest.raises(ValueError, match="attemptDelay"):
        HostnameEndpoint(reactor, "localhost", 80, attemptDelay=value)


# -- descriptions ------------------------------------------------------------------------


def test_client_from_string_hostname() -> None:
    async def body(reactor: Reactor) -> tuple[Any, str]:
        server, port = await serve(reactor, V4)
        description = f"hostname:host=localhost:port={port}:timeout=5:attemptDelay=0.1"
        endpoint = clientFromString(reactor, description + ":bindAddress=127.0.0.1")
        protocol = await connect(endpoint)
        peer: str = protocol.transport.getPeer().host
        protocol.transport.loseConnection()
        await server.until(lambda: bool(server.lost))
        return endpoint, peer

    endpoint, peer = scenario(body)
    assert isinstance(endpoint, HostnameEndpoint) and peer == V4
    assert (endpoint.host, endpoint.timeout, endpoint.attemptDelay) == ("localhost", 5, 0.1)
    assert endpoint.bindAddress == (V4, 0)


def test_client_from_string_defaults_and_mistakes() -> None:
    reactor = Reactor()
    endpoint = clientFromString(reactor, r"hostname:\:\:1:8007")
    assert isinstance(endpoint, HostnameEndpoint)
    assert (endpoint.host, endpoint.port, endpoint.timeout) == ("::1", 8007, 30)
    assert endpoint.attemptDelay == 0.3 and endpoint.bindAddress is None
    tcp = clientFromString(reactor, "tcp:host=localhost:port=80")
    assert type(tcp) is TCP4ClientEndpoint  # tcp: keeps Twisted's meaning
    for bad, complaint in [
        ("hostname:host=localhost", "lacks port"),
        ("hostname:host=localhost:port=80:attemptDelay=soon", "attemptDelay"),
        ("hostname:host=localhost:port=80:timeout=nan", "timeout"),
        ("hostname:host=localhost:port=99999", "port"),
        ("hostname:host=localhost:port=80:proxy=v1", "unknown option"),
    ]:
        with pytest.raises(ValueError, match=complaint):
            clientFromString(reactor, bad)
