"""Hardening of the reactor (issue 15, items 5 and 8): user hooks that raise never hang or
kill the shutdown, and arguments that would corrupt the loop are refused where given.

Hangs are tested in a child process (``python -c``) that the test kills if it outlives its
bound, so a regression fails the test instead of hanging the run; everything else runs in
process on a fresh :class:`~statewire._reactor.Reactor`. Every socket is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import ssl
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from process_helpers import Server, running
from runtime_helpers import HOST, scenario, self_signed_certificate

from statewire._reactor import Reactor, ssl_context
from statewire.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from statewire.error import (
    CannotListenError,
    ConnectError,
    Failure,
    ReactorNotRunning,
    connectionDone,
)
from statewire.error import ConnectionRefusedError as Refused
from statewire.protocol import ClientFactory, Factory, Protocol
from statewire.testing.differential import free_port
from statewire.testing.memory import Clock
from statewire.wire import Echo

#: seconds a child process gets to exit once told to; the fixed code needs well under one
EXIT_BOUND = 15


class StartFails(Factory):
    """A factory whose ``startFactory`` raises."""

    protocol = Echo

    def startFactory(self) -> None:
        raise RuntimeError("boom in startFactory")


class StopFails(Factory):
    """A factory whose ``stopFactory`` raises."""

    protocol = Echo

    def stopFactory(self) -> None:
        raise RuntimeError("boom in stopFactory")


def _refused(port: int) -> bool:
    """Whether a connection to ``port`` is refused (nothing listens, nothing queues)."""
    with socket.socket() as client:
        client.settimeout(5)
        try:
            client.connect((HOST, port))
        except ConnectionRefusedError:
            return True
        return False


def _exit_output(server: Server, bound: float = EXIT_BOUND) -> str:
    """Wait at most ``bound`` seconds for the child to exit with 0; what it printed."""
    try:
        server.process.wait(bound)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)
        server.reader.join(10)
        raise AssertionError(
            f"still running {bound} s after being told to stop:\n{''.join(server.output)}"
        ) from None
    server.reader.join(10)
    out = "".join(server.output)
    assert server.process.returncode == 0, out
    return out


def _wait_for(server: Server, text: str, bound: float = EXIT_BOUND) -> None:
    """Wait until the child has printed a line containing ``text``."""
    deadline = time.monotonic() + bound
    while not any(text in line for line in server.output):
        assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(server.output)}"
        time.sleep(0.02)


def _child(body: str) -> str:
    """A child script: logging to stdout, the shared reactor, then ``body``."""
    head = """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from statewire import reactor
        from statewire.protocol import Factory, Protocol
        from statewire.wire import Echo
    """
    return textwrap.dedent(head) + textwrap.dedent(body)


# -- item 5: a factory hook that raises ----------------------------------------------------


STOP_FACTORY_RAISES = _child(
    """
    class StopFails(Factory):
        protocol = Echo
        def stopFactory(self):
            raise RuntimeError("boom in stopFactory")
    port = reactor.listenTCP(0, StopFails(), interface="127.0.0.1")
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    print("run() returned", flush=True)
    """
)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_raising_stop_factory_is_logged_and_run_returns(number: int) -> None:
    with running("-c", STOP_FACTORY_RAISES) as server:
        client = socket.create_connection((HOST, server.port), timeout=5)
        try:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
            server.process.send_signal(number)
            out = _exit_output(server)
        finally:
            client.close()
    assert "run() returned" in out
    assert "StopFails.stopFactory raised" in out
    assert "Traceback" in out and "RuntimeError: boom in stopFactory" in out


START_FACTORY_RAISES = _child(
    """
    class StartFails(Factory):
        protocol = Echo
        def startFactory(self):
            raise RuntimeError("boom in startFactory")
    bad = int(sys.argv[1])
    try:
        reactor.listenTCP(bad, StartFails(), interface="127.0.0.1")
    except RuntimeError as error:
        print("listenTCP raised:", error, flush=True)
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    print("run() returned", flush=True)
    """
)


def test_raising_start_factory_leaves_no_port_and_run_still_stops() -> None:
    bad = free_port()
    with running("-c", START_FACTORY_RAISES, str(bad)) as server:
        assert _refused(bad), "the port whose factory failed to start still listens"
        with socket.create_connection((HOST, server.port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
        server.process.send_signal(signal.SIGTERM)
        out = _exit_output(server)
    assert "listenTCP raised: boom in startFactory" in out
    assert "run() returned" in out
    assert "Traceback" not in out


def _unix_path(tmp_path: Path) -> str:
    return str(tmp_path / "s.sock")


@pytest.mark.parametrize("kind", ["tcp", "ssl", "unix", "tcp-endpoint", "unix-endpoint"])
def test_raising_start_factory_raises_from_listen_and_unbinds(kind: str, tmp_path: Path) -> None:
    path = _unix_path(tmp_path)
    port = free_port()

    async def body(reactor: Reactor) -> None:
        with pytest.raises(RuntimeError, match="boom in startFactory"):
            if kind == "tcp":
                reactor.listenTCP(port, StartFails(), interface=HOST)
            elif kind == "ssl":
                context = ssl_context(*self_signed_certificate(tmp_path))
                reactor.listenSSL(port, StartFails(), context, interface=HOST)
            elif kind == "unix":
                reactor.listenUNIX(path, StartFails())
            elif kind == "tcp-endpoint":
                TCP4ServerEndpoint(reactor, port, interface=HOST).listen(StartFails())
            else:
                UNIXServerEndpoint(reactor, path).listen(StartFails())
        await asyncio.sleep(0.05)  # a port left behind would start accepting now

    scenario(body, timeout=20)  # its shutdown must not trip over the half-made port
    if kind.startswith("unix"):
        assert not Path(path).exists(), "the socket file of the failed port is left"
    else:
        assert _refused(port), "the port whose factory failed to start still listens"


def test_raising_start_factory_is_retried_by_the_next_port() -> None:
    class StartsSecondTime(Factory):
        protocol = Echo
        attempts = 0

        def startFactory(self) -> None:
            self.attempts += 1
            if self.attempts == 1:
                raise RuntimeError("boom in startFactory")

    async def body(reactor: Reactor) -> bytes:
        factory = StartsSecondTime()
        with pytest.raises(RuntimeError):
            reactor.listenTCP(0, factory, interface=HOST)
        port = reactor.listenTCP(0, factory, interface=HOST)
        await port.ready
        reader, writer = await asyncio.open_connection(HOST, port.getHost().port)  # type: ignore[union-attr]
        writer.write(b"ping")
        got = await reader.readexactly(4)
        writer.close()
        assert factory.numPorts == 1
        return got

    assert scenario(body, timeout=20) == b"ping"


def test_stop_listening_with_raising_stop_factory_still_stops(caplog: Any) -> None:
    async def body(reactor: Reactor) -> tuple[int, BaseException | None]:
        port = reactor.listenTCP(0, StopFails(), interface=HOST)
        await port.ready
        number = int(port.getHost().port)  # type: ignore[union-attr]
        done = port.stopListening()  # must not raise: the port is stopped all the same
        assert done.done()
        return number, done.exception()

    with caplog.at_level(logging.ERROR, logger="statewire"):
        number, error = scenario(body, timeout=20)
    assert isinstance(error, RuntimeError) and "boom in stopFactory" in str(error)
    assert _refused(number)
    assert "StopFails.stopFactory raised" in caplog.text
    assert "Traceback" in caplog.text


def test_shutdown_goes_on_past_a_raising_stop_factory(caplog: Any) -> None:
    lost: list[str] = []

    class Noting(Protocol):
        def connectionLost(self, reason: Failure = connectionDone) -> None:
            lost.append(type(reason.value).__name__)

    async def body(reactor: Reactor) -> None:
        first = reactor.listenTCP(0, StopFails(), interface=HOST)
        second = reactor.listenTCP(0, Factory.forProtocol(Noting), interface=HOST)
        await asyncio.gather(first.ready, second.ready)
        _, writer = await asyncio.open_connection(HOST, second.getHost().port)  # type: ignore[union-attr]
        while not reactor.connections:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(reactor.shutdown(), 10)
        writer.close()

    with caplog.at_level(logging.ERROR, logger="statewire"):
        scenario(body, timeout=20)
    assert lost == ["ConnectionDone"]
    assert "boom in stopFactory" in caplog.text


CONNECTION_LOST_RAISES = _child(
    """
    class Fragile(Protocol):
        def connectionMade(self):
            print("connected", flush=True)
        def connectionLost(self, reason):
            raise RuntimeError("boom in connectionLost")
    class StopFails(Factory):
        protocol = Fragile
        def stopFactory(self):
            raise RuntimeError("boom in stopFactory")
    port = reactor.listenTCP(0, StopFails(), interface="127.0.0.1")
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    print("run() returned", flush=True)
    """
)


def test_raising_connection_lost_during_shutdown_is_logged_and_run_returns() -> None:
    with running("-c", CONNECTION_LOST_RAISES) as server:
        clients = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(3)]
        try:
            deadline = time.monotonic() + EXIT_BOUND
            while sum("connected" in line for line in server.output) < len(clients):
                assert time.monotonic() < deadline, "".join(server.output)
                time.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            out = _exit_output(server)
        finally:
            for client in clients:
                client.close()
    assert "run() returned" in out
    assert out.count("RuntimeError: boom in connectionLost") == 3
    assert "RuntimeError: boom in stopFactory" in out


class Recording(ClientFactory):
    """A client factory noting its hooks; ``raising`` names the hooks that raise."""

    protocol = Protocol

    def __init__(self, *raising: str) -> None:
        self.raising = raising
        self.seen: list[str] = []

    def _note(self, name: str) -> None:
        self.seen.append(name)
        if name in self.raising:
            raise RuntimeError(f"boom in {name}")

    def startedConnecting(self, connector: Any) -> None:
        self._note("startedConnecting")

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self._note("clientConnectionFailed")

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self._note("clientConnectionLost")

    def stopFactory(self) -> None:
        self._note("stopFactory")


def _loop_errors(reactor: Reactor) -> list[dict[str, Any]]:
    """Collect what the event loop's exception handler would report."""
    errors: list[dict[str, Any]] = []
    reactor.loop.set_exception_handler(lambda loop, context: errors.append(context))
    return errors


def test_client_factory_hooks_raising_on_a_failed_attempt(caplog: Any) -> None:
    hooks = ("startedConnecting", "clientConnectionFailed", "stopFactory")
    factory = Recording(*hooks)

    async def body(reactor: Reactor) -> list[dict[str, Any]]:
        errors = _loop_errors(reactor)
        connector = reactor.connectTCP(HOST, free_port(), factory, timeout=5)
        with pytest.raises(Refused):
            await connector.connected
        await asyncio.sleep(0.05)
        return errors

    with caplog.at_level(logging.ERROR, logger="statewire"):
        errors = scenario(body, timeout=20)
    assert errors == []
    assert factory.seen == list(hooks)
    for hook in hooks:
        assert f"Recording.{hook} raised" in caplog.text


def test_client_factory_hooks_raising_on_a_lost_connection(caplog: Any) -> None:
    factory = Recording("clientConnectionLost", "stopFactory")

    async def body(reactor: Reactor) -> list[dict[str, Any]]:
        errors = _loop_errors(reactor)
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface=HOST)
        await port.ready
        connector = reactor.connectTCP(HOST, port.getHost().port, factory, timeout=5)  # type: ignore[union-attr]
        protocol = await connector.connected
        protocol.transport.loseConnection()
        while "stopFactory" not in factory.seen:
            await asyncio.sleep(0.01)
        return errors

    with caplog.at_level(logging.ERROR, logger="statewire"):
        errors = scenario(body, timeout=20)
    assert errors == []
    assert factory.seen == ["startedConnecting", "clientConnectionLost", "stopFactory"]
    assert "Recording.stopFactory raised" in caplog.text


def test_client_build_protocol_raising_fails_the_attempt(caplog: Any) -> None:
    class BuildFails(Recording):
        def buildProtocol(self, addr: Any) -> Any:
            raise RuntimeError("boom in buildProtocol")

    factory = BuildFails()

    async def body(reactor: Reactor) -> None:
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface=HOST)
        await port.ready
        connector = reactor.connectTCP(HOST, port.getHost().port, factory, timeout=5)  # type: ignore[union-attr]
        with pytest.raises(ConnectError, match="no protocol"):
            await connector.connected
        assert connector.state == "disconnected"

    with caplog.at_level(logging.ERROR, logger="statewire"):
        scenario(body, timeout=20)
    assert factory.seen == ["startedConnecting", "clientConnectionFailed", "stopFactory"]
    assert "boom in buildProtocol" in caplog.text


def test_server_build_protocol_raising_refuses_only_that_connection(caplog: Any) -> None:
    class SometimesFails(Factory):
        protocol = Echo
        built = 0

        def buildProtocol(self, addr: Any) -> Any:
            self.built += 1
            if self.built == 1:
                raise RuntimeError("boom in buildProtocol")
            return super().buildProtocol(addr)

    async def body(reactor: Reactor) -> tuple[bytes, bytes]:
        port = reactor.listenTCP(0, SometimesFails(), interface=HOST)
        await port.ready
        number = port.getHost().port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection(HOST, number)
        refused = await reader.read()
        writer.close()
        reader, writer = await asyncio.open_connection(HOST, number)
        writer.write(b"ping")
        echoed = await reader.readexactly(4)
        writer.close()
        return refused, echoed

    with caplog.at_level(logging.ERROR, logger="statewire"):
        assert scenario(body, timeout=20) == (b"", b"ping")
    assert "boom in buildProtocol" in caplog.text


# -- item 8: unchecked arguments -------------------------------------------------------------


BAD_DELAYS = [math.nan, math.inf, -math.inf, -0.5]


@pytest.mark.parametrize("delay", BAD_DELAYS, ids=repr)
def test_call_later_refuses_bad_delays(delay: float) -> None:
    async def body(reactor: Reactor) -> None:
        with pytest.raises(ValueError, match=repr(delay)):
            reactor.callLater(delay, print)

    scenario(body, timeout=10)


def test_call_later_refuses_non_callables_and_non_numbers() -> None:
    async def body(reactor: Reactor) -> None:
        with pytest.raises(TypeError, match="callable"):
            reactor.callLater(1, "not a function")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="number"):
            reactor.callLater("1", print)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            reactor.callWhenRunning(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            reactor.callFromThread(42)  # type: ignore[arg-type]

    scenario(body, timeout=10)


@pytest.mark.parametrize("delay", [math.nan, math.inf, -math.inf], ids=repr)
def test_delayed_call_reset_refuses_bad_delays(delay: float) -> None:
    async def body(reactor: Reactor) -> None:
        call = reactor.callLater(10, print)
        with pytest.raises(ValueError, match=repr(delay)):
            call.reset(delay)
        assert call.active() and math.isfinite(call.getTime())
        call.cancel()

    scenario(body, timeout=10)


@pytest.mark.parametrize("delay", [math.nan, math.inf, -math.inf], ids=repr)
def test_delayed_call_delay_refuses_non_finite_values(delay: float) -> None:
    async def body(reactor: Reactor) -> None:
        call = reactor.callLater(10, print)
        with pytest.raises(ValueError, match=repr(delay)):
            call.delay(delay)
        assert call.active() and math.isfinite(call.getTime())
        call.cancel()

    scenario(body, timeout=10)


def test_delayed_call_delay_takes_a_negative_value_as_twisted() -> None:
    async def body(reactor: Reactor) -> list[str]:
        seen: list[str] = []
        call = reactor.callLater(10, seen.append, "sooner")
        call.delay(-9.95)
        await asyncio.sleep(0.3)
        return seen

    assert scenario(body, timeout=10) == ["sooner"]


def test_refused_nan_leaves_the_other_timers_in_order() -> None:
    async def body(reactor: Reactor) -> list[int]:
        seen: list[int] = []
        for index in range(5):
            reactor.callLater(0.01 * (5 - index), seen.append, 5 - index)
            with pytest.raises(ValueError):
                reactor.callLater(math.nan, seen.append, -1)
        await asyncio.sleep(0.2)
        return seen

    assert scenario(body, timeout=10) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("delay", BAD_DELAYS, ids=repr)
def test_testing_clock_refuses_bad_delays(delay: float) -> None:
    clock = Clock()
    with pytest.raises(ValueError, match=repr(delay)):
        clock.callLater(delay, print)
    with pytest.raises(TypeError, match="callable"):
        clock.callLater(1, "not a function")  # type: ignore[arg-type]
    assert clock.pending() == []


def test_stop_when_not_running_raises_and_keeps_the_next_run_whole() -> None:
    reactor = Reactor()
    assert issubclass(ReactorNotRunning, RuntimeError)
    with pytest.raises(ReactorNotRunning):
        reactor.stop()
    seen: list[str] = []
    reactor.callLater(0.05, seen.append, "timer")
    reactor.callLater(0.1, reactor.stop)
    guard = reactor.loop.call_later(10, reactor.loop.stop)  # bound, should stop() fail
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        guard.cancel()
        reactor.loop.close()
    assert seen == ["timer"], "run() returned before its timers ran"


def test_stop_while_stopping_raises() -> None:
    reactor = Reactor()
    outcomes: list[str] = []

    def stop_twice() -> None:
        reactor.stop()
        try:
            reactor.stop()
        except ReactorNotRunning:
            outcomes.append("second stop refused")

    reactor.callLater(0.01, stop_twice)
    guard = reactor.loop.call_later(10, reactor.loop.stop)
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        guard.cancel()
        reactor.loop.close()
    assert outcomes == ["second stop refused"]
    with pytest.raises(ReactorNotRunning):
        reactor.stop()


def test_stop_inside_asyncio_without_run_points_to_shutdown() -> None:
    async def body(reactor: Reactor) -> None:
        with pytest.raises(ReactorNotRunning, match="shutdown"):
            reactor.stop()

    scenario(body, timeout=10)


SLOW_READER = _child(
    """
    reactor.shutdown_timeout = 60  # only a second signal can make the stop quick
    class Flood(Protocol):
        def connectionMade(self):
            self.transport.write(b"x" * (64 * 1024 * 1024))
            print("flooding", flush=True)
    port = reactor.listenTCP(0, Factory.forProtocol(Flood), interface="127.0.0.1")
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    print("run() returned", flush=True)
    """
)


def test_second_signal_during_stop_aborts_without_a_traceback() -> None:
    with running("-c", SLOW_READER) as server:
        client = socket.create_connection((HOST, server.port), timeout=5)  # never reads
        try:
            _wait_for(server, "flooding")
            server.process.send_signal(signal.SIGINT)
            _wait_for(server, "stopped listening")  # the graceful stop waits for the flood
            server.process.send_signal(signal.SIGINT)
            out = _exit_output(server)
        finally:
            client.close()
    assert "run() returned" in out
    assert "SIGINT during shutdown: aborting the 1 connections still open" in out
    assert "Traceback" not in out


def test_reset_to_a_deadline_just_passed_runs_the_call_at_once() -> None:
    """As in Twisted: ``reset(deadline - now)`` with the deadline just gone is not an error."""

    async def body(reactor: Reactor) -> None:
        ran = asyncio.get_running_loop().create_future()
        call = reactor.callLater(10, ran.set_result, "ran")
        call.reset(-0.001)
        assert await asyncio.wait_for(ran, 2) == "ran"

    scenario(body, timeout=10)


def test_two_huge_delays_do_not_make_an_infinite_deadline() -> None:
    async def body(reactor: Reactor) -> None:
        call = reactor.callLater(10, print)
        call.delay(1e308)
        with pytest.raises(ValueError, match="finite"):
            call.delay(1e308)
        assert math.isfinite(call.getTime())
        call.cancel()

    scenario(body, timeout=10)


def test_testing_clock_refuses_bad_advances() -> None:
    clock = Clock()
    for bad in (math.nan, math.inf, -5.0):
        with pytest.raises(ValueError):
            clock.advance(bad)
    assert clock.seconds() == 0


def test_listen_unix_never_deletes_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("precious data")
    with pytest.raises(CannotListenError):
        Reactor().listenUNIX(str(precious), Factory.forProtocol(Protocol))
    assert precious.read_text() == "precious data"


def test_listen_unix_on_a_live_server_with_a_full_backlog_fails_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen(0)
    waiting = []
    try:
        for _ in range(4):  # fill its backlog: a blocking connect would now wait for ever
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(path)
            waiting.append(client)
        started = time.monotonic()
        with pytest.raises(CannotListenError):
            Reactor().listenUNIX(path, Factory.forProtocol(Protocol))
        assert time.monotonic() - started < 5
        assert os.path.exists(path)  # the live server's socket is left alone
    finally:
        for client in waiting:
            client.close()
        live.close()


def test_listen_unix_in_the_abstract_namespace() -> None:
    async def body(reactor: Reactor) -> None:
        name = f"\0statewire-test-{os.getpid()}"
        port = reactor.listenUNIX(name, Factory.forProtocol(Echo))
        await port.ready
        reader, writer = await asyncio.open_unix_connection(name)
        writer.write(b"abstract")
        assert await reader.readexactly(8) == b"abstract"
        writer.close()
        await port.stopListening()

    scenario(body, timeout=10)


def test_a_unix_mode_that_cannot_be_set_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "x.sock"
    with pytest.raises(CannotListenError):
        Reactor().listenUNIX(str(path), Factory.forProtocol(Protocol), mode=1 << 40)
    assert not path.exists()


class Noting(ClientFactory):
    """A client factory that writes down its hooks, in order."""

    protocol = Protocol

    def __init__(self) -> None:
        self.events: list[str] = []

    def startFactory(self) -> None:
        self.events.append("start")

    def stopFactory(self) -> None:
        self.events.append("stop")

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.events.append("failed")

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.events.append("lost")


def _silent_server() -> socket.socket:
    """A TCP server that accepts (in the kernel) and never says a word: a TLS handshake to
    it waits for ever."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(8)
    return server


def test_a_connector_connects_only_when_disconnected() -> None:
    async def body(reactor: Reactor) -> None:
        with _silent_server() as server:
            factory = Noting()
            client = ssl.create_default_context()
            connector = reactor.connectSSL(HOST, server.getsockname()[1], factory, client, 30)
            with pytest.raises(RuntimeError, match="can't connect in this state"):
                connector.connect()
            connector.stopConnecting()
            with pytest.raises(ConnectError):
                await connector.connected
        assert factory.events == ["start", "failed", "stop"]

    scenario(body, timeout=10)


def test_a_retry_later_starts_the_factory_again() -> None:
    async def body(reactor: Reactor) -> None:
        with socket.socket() as closed:
            closed.bind((HOST, 0))
            port = closed.getsockname()[1]  # bound, not listening: refused
            factory = Noting()
            done = asyncio.get_running_loop().create_future()

            def failed(connector: Any, reason: Failure) -> None:
                factory.events.append("failed")
                if factory.events.count("failed") < 3:
                    reactor.callLater(0.01, connector.connect)
                else:
                    reactor.callLater(0.05, done.set_result, None)

            factory.clientConnectionFailed = failed  # type: ignore[method-assign]
            reactor.connectTCP(HOST, port, factory)
            await done
        assert factory.events == ["start", "failed", "stop"] * 3

    scenario(body, timeout=10)


def test_shutdown_gives_up_attempts_in_progress() -> None:
    async def body(reactor: Reactor) -> None:
        with _silent_server() as server:
            factory = Noting()
            client = ssl.create_default_context()
            connector = reactor.connectSSL(HOST, server.getsockname()[1], factory, client, 30)
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await reactor.shutdown()
            assert time.monotonic() - started < 2
            assert connector.state == "disconnected"
            assert factory.events == ["start", "failed", "stop"]
            # once stopping, a reconnect fails at once instead of holding the shutdown
            assert reactor.stopping is False

    scenario(body, timeout=10)


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_the_reactor_clock_is_the_running_loops(uvloop: bool) -> None:
    """``seconds()`` is the loop's ``time()`` (what ``callLater`` counts with): read with
    ``time.monotonic`` on asyncio's loops, with the loop's own clock on uvloop's."""
    if uvloop:
        uv = pytest.importorskip("uvloop")
        loop = uv.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    reactor = Reactor()

    async def readings() -> tuple[float, float, float]:
        before = loop.time()
        await asyncio.sleep(0.02)
        ours = reactor.seconds()
        return before, ours, loop.time()

    try:
        before, ours, after = loop.run_until_complete(readings())
    finally:
        loop.close()
    assert before + 0.015 <= ours <= after + 0.002  # (uvloop's clock has ms steps)
