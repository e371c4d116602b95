"""ReconnectingClientFactory over real loopback sockets (127.0.0.1 and a UNIX socket).

A port that refuses is one bound without listening (``SO_REUSEADDR``, so that a server can
later listen on the same port); a server that "comes up" is a statewire port started
there. Delays are a few hundredths of a second, ``jitter`` 0 where values are compared:
every test is bounded in attempts and in time, and deterministic.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import HOST, scenario

from statewire._reactor import Reactor
from statewire.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from statewire.error import ConnectError, ConnectionRefusedError, Failure
from statewire.protocol import ClientFactory, Factory, Protocol
from statewire.reconnecting import ReconnectingClientFactory
from statewire.wire import Echo

#: upper bound of any wait in these tests, in seconds
PATIENCE = 5.0


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections until something listens on it."""
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        reserved.bind((HOST, 0))
        yield reserved.getsockname()[1]
    finally:
        reserved.close()


class Client(Protocol):
    """Tells its factory it connected, and resets the back-off (Twisted's advice)."""

    factory: Recording

    def connectionMade(self) -> None:
        self.factory.resetDelay()
        self.factory.connections.append(self)
        self.factory.changed.set()


class Recording(ReconnectingClientFactory):
    """Counts attempts, failures and losses, and records ``delay`` after each retry."""

    protocol = Client
    initialDelay = 0.01
    factor = 2.0
    maxDelay = 0.04
    jitter = 0.0
    noisy = False

    def __init__(self) -> None:
        self.started = 0
        self.failures: list[Failure] = []
        self.losses: list[Failure] = []
        self.delays: list[float] = []
        self.connections: list[Client] = []
        self.changed = asyncio.Event()

    def startedConnecting(self, connector: Any) -> None:
        super().startedConnecting(connector)
        self.started += 1

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.failures.append(reason)
        super().clientConnectionFailed(connector, reason)
        self.delays.append(self.delay)
        self.changed.set()

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.losses.append(reason)
        super().clientConnectionLost(connector, reason)
        self.changed.set()


async def until(factory: Recording, condition: Callable[[], bool]) -> None:
    """Wait, at most :data:`PATIENCE` seconds, until ``condition()`` holds."""

    async def watch() -> None:
        while not condition():
            factory.changed.clear()
            await factory.changed.wait()

    await asyncio.wait_for(watch(), PATIENCE)


def test_delays_grow_by_factor_capped_at_max_delay_until_max_retries() -> None:
    async def body(reactor: Reactor) -> Recording:
        factory = Recording()
        factory.maxRetries = 5
        with refusing_port() as port:
            reactor.connectTCP(HOST, port, factory)
            await until(factory, lambda: len(factory.failures) == 6)
            await asyncio.sleep(0.1)  # past the longest delay: no seventh attempt comes
        return factory

    factory = scenario(body)
    assert factory.started == 6  # the first attempt and five retries
    assert all(f.check(ConnectionRefusedError) for f in factory.failures)
    # delay after each retry: 0.01 grown by 2, capped at 0.04; the sixth failure abandons
    assert factory.delays == pytest.approx([0.02, 0.04, 0.04, 0.04, 0.04, 0.04])
    assert factory.retries == 6


def test_connects_once_the_server_comes_up_then_resets_the_delay() -> None:
    async def body(reactor: Reactor) -> Recording:
        factory = Recording()
        with refusing_port() as port:
            reactor.connectTCP(HOST, port, factory)
            await until(factory, lambda: len(factory.failures) >= 2)
            server = reactor.listenTCP(port, Factory.forProtocol(Echo), interface=HOST)
            await until(factory, lambda: bool(factory.connections))
            assert factory.retries == 0 and factory.delay == factory.initialDelay
            factory.stopTrying()
            factory.connections[0].transport.loseConnection()
            await until(factory, lambda: bool(factory.losses))
            server.stopListening()
        return factory

    factory = scenario(body)
    assert len(factory.connections) == 1
    assert len(factory.losses) == 1  # and no reconnection after stopTrying


def test_reconnects_after_the_connection_is_lost() -> None:
    class HangUpOnce(Protocol):
        """Closes the first connection soon after it is made; keeps the next ones.

        Not at once: the connector must have seen its connection made before it is lost
        (a known limit of the connector, in its handling of an immediate loss)."""

        accepted = 0

        def connectionMade(self) -> None:
            HangUpOnce.accepted += 1
            if HangUpOnce.accepted == 1:
                asyncio.get_running_loop().call_later(0.05, self.transport.loseConnection)

    async def body(reactor: Reactor) -> Recording:
        server = reactor.listenTCP(0, Factory.forProtocol(HangUpOnce), interface=HOST)
        await server.ready
        factory = Recording()
        reactor.connectTCP(HOST, server.getHost().port, factory)  # type: ignore[union-attr]
        await until(factory, lambda: len(factory.connections) == 2)
        factory.stopTrying()
        factory.connections[-1].transport.loseConnection()
        await until(factory, lambda: len(factory.losses) == 2)
        server.stopListening()
        return factory

    factory = scenario(body)
    assert HangUpOnce.accepted == 2
    assert factory.failures == [] and len(factory.losses) == 2
    assert factory.started == 2


def test_stop_trying_cancels_the_waiting_retry() -> None:
    class StopAfterTwo(Recording):
        def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
            super().clientConnectionFailed(connector, reason)
            if len(self.failures) == 2:
                self.stopTrying()

    async def body(reactor: Reactor) -> StopAfterTwo:
        factory = StopAfterTwo()
        with refusing_port() as port:
            reactor.connectTCP(HOST, port, factory)
            await until(factory, lambda: len(factory.failures) == 2)
            await asyncio.sleep(0.1)  # 5 times the delay then waiting: it never runs
        return factory

    factory = scenario(body)
    assert factory.started == 2 and len(factory.failures) == 2
    assert factory.continueTrying == 0


def test_stop_trying_gives_up_the_attempt_in_progress() -> None:
    async def body(reactor: Reactor) -> Recording:
        # a server whose backlog is full: a new connection attempt gets no answer
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        silent.bind((HOST, 0))
        silent.listen(0)
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.connect(silent.getsockname())
        try:
            factory = Recording()
            connector = reactor.connectTCP(HOST, silent.getsockname()[1], factory)
            await asyncio.sleep(0.05)
            assert connector.state == "connecting"
            factory.stopTrying()
            await until(factory, lambda: bool(factory.failures))
            await asyncio.sleep(0.1)
            return factory
        finally:
            filler.close()
            silent.close()

    factory = scenario(body)
    assert factory.started == 1
    assert factory.failures[0].check(ConnectError)


def test_retry_and_resume_after_reset_delay() -> None:
    async def body(reactor: Reactor) -> Recording:
        factory = Recording()
        factory.stopTrying()
        with refusing_port() as port:
            connector = reactor.connectTCP(HOST, port, factory)
            await until(factory, lambda: bool(factory.failures))
            assert factory.retries == 0  # stopped: the failure is final
            factory.resetDelay()  # trying again, from the start
            factory.retry(connector)
            await until(factory, lambda: len(factory.failures) == 3)
            factory.stopTrying()
        return factory

    factory = scenario(body)
    assert factory.started == 3


def test_works_through_a_client_endpoint() -> None:
    """The endpoint's awaitable reports the first attempt; the factory goes on."""

    async def body(reactor: Reactor) -> tuple[Recording, BaseException | None]:
        factory = Recording()
        with refusing_port() as port:
            first = TCP4ClientEndpoint(reactor, HOST, port).connect(factory)
            try:
                await first
                error = None
            except ConnectionRefusedError as refused:
                error = refused
            server = reactor.listenTCP(port, Factory.forProtocol(Echo), interface=HOST)
            await until(factory, lambda: bool(factory.connections))
            factory.stopTrying()
            factory.connections[0].transport.loseConnection()
            await until(factory, lambda: bool(factory.losses))
            server.stopListening()
        return factory, error

    factory, error = scenario(body)
    assert isinstance(error, ConnectionRefusedError)
    assert len(factory.connections) == 1 and len(factory.failures) >= 1


def test_works_through_a_hostname_endpoint() -> None:
    async def body(reactor: Reactor) -> Recording:
        factory = Recording()
        with refusing_port() as port:
            HostnameEndpoint(reactor, "127.0.0.1", port, timeout=PATIENCE).connect(factory)
            await until(factory, lambda: len(factory.failures) >= 2)
            server = reactor.listenTCP(port, Factory.forProtocol(Echo), interface=HOST)
            await until(factory, lambda: bool(factory.connections))
            factory.stopTrying()
            factory.connections[0].transport.loseConnection()
            await until(factory, lambda: bool(factory.losses))
            server.stopListening()
        return factory

    factory = scenario(body)
    assert len(factory.connections) == 1
    assert factory.failures[0].check(ConnectionRefusedError)


def test_works_with_connect_unix(tmp_path: Path) -> None:
    path = str(tmp_path / "later.sock")

    async def body(reactor: Reactor) -> Recording:
        factory = Recording()
        reactor.connectUNIX(path, factory)
        await until(factory, lambda: len(factory.failures) >= 2)  # no such socket yet
        server = reactor.listenUNIX(path, Factory.forProtocol(Echo))
        await until(factory, lambda: bool(factory.connections))
        factory.stopTrying()
        factory.connections[0].transport.loseConnection()
        await until(factory, lambda: bool(factory.losses))
        server.stopListening()
        return factory

    factory = scenario(body)
    assert len(factory.connections) == 1
    assert factory.failures[0].check(ConnectError)


class _Clock:
    """Records the delays asked of it; runs nothing (no sockets involved)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.delays.append(delay)
        return self

    def cancel(self) -> None:
        """A scheduled call's ``cancel``."""


class _Connector:
    """What ``retry`` needs of a connector, for the pure back-off arithmetic."""

    def connect(self) -> None:
        """Never called: the clock runs nothing."""

    def stopConnecting(self) -> None:
        """Nothing is connecting."""


def test_jittered_delays_stay_within_zero_and_max_delay() -> None:
    factory = ReconnectingClientFactory()
    factory.noisy = False
    factory.clock = clock = _Clock()
    factory.initialDelay, factory.maxDelay, factory.jitter = 0.5, 30.0, 2.0  # a wild jitter
    factory.resetDelay()
    for _ in range(200):
        factory.retry(_Connector())
    assert len(clock.delays) == 200
    assert all(0.0 <= delay <= 30.0 for delay in clock.delays)


def test_twisted_names_and_defaults() -> None:
    factory = ReconnectingClientFactory()
    assert isinstance(factory, ClientFactory)
    assert factory.maxDelay == 3600 and factory.initialDelay == 1.0
    assert factory.factor == pytest.approx(math.e)
    assert factory.jitter == pytest.approx(0.119626565582)
    assert factory.maxRetries is None and factory.retries == 0
    assert factory.continueTrying == 1 and factory.delay == 1.0
    with pytest.raises(ValueError, match="no connector to retry"):
        factory.retry()


def test_delay_starts_at_a_subclass_initial_delay() -> None:
    class Quick(ReconnectingClientFactory):
        initialDelay = 0.25
        jitter = 0.0
        noisy = False

    factory = Quick()
    factory.clock = clock = _Clock()
    assert factory.delay == 0.25
    factory.retry(_Connector())
    factory.retry(_Connector())
    assert clock.delays == pytest.approx([0.25, 0.25 * math.e])
