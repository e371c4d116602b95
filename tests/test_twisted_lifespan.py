"""``statewire.twisted.adapt`` calls a statewire factory's ``beforeServing`` and
``afterServing``, so ``asgi(app)`` keeps its ASGI ``lifespan`` on Twisted's asyncio
reactor: connections that come during the startup are held (not read) until it is done,
the shutdown's connections close first, then the application's shutdown runs. Each server
runs in its own process (one Twisted reactor a process), on a free port of 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from process_helpers import ROOT, recv_exactly
from runtime_helpers import HOST

SERVER = """
import asyncio
import sys
from contextlib import asynccontextmanager

from twisted.internet import asyncioreactor

asyncioreactor.install(asyncio.new_event_loop())
from twisted.internet import reactor
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from statewire.protocols.asgi import asgi
from statewire.twisted import adapt

MODE = sys.argv[1]


def say(text):
    print(text, flush=True)


@asynccontextmanager
async def lifespan(app):
    say("startup begins")
    try:
        await asyncio.sleep(30 if MODE == "endless" else 0.5)  # (a pool opened)
        if MODE == "fails":
            raise RuntimeError("no database")
    except asyncio.CancelledError:
        say("startup cancelled")
        raise
    say("startup done")
    yield {"pool": "the pool"}
    await asyncio.sleep(0.1)
    say("shutdown done")


async def home(request):
    return PlainTextResponse(request.state.pool)


app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
port = reactor.listenTCP(0, adapt(asgi(app)), interface="127.0.0.1")
say(f"listening on 127.0.0.1:{port.getHost().port}")
reactor.run()
say("reactor stopped")
"""


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "twisted_asgi.py"
    script.write_text(textwrap.dedent(SERVER))
    process = subprocess.Popen(
        [sys.executable, str(script), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # (this tree's statewire)
    )
    assert process.stdout is not None
    for _ in range(100):
        line = process.stdout.readline()
        if line.startswith("listening on"):
            return process, int(line.rsplit(":", 1)[1])
        if not line:
            break
    process.kill()
    raise AssertionError(f"no listening line: {process.communicate()[0]}")


def _stop(process: subprocess.Popen[str]) -> str:
    """SIGINT, then what the server printed after its listening line (read through the
    same buffered file as that line: what it read ahead is not lost)."""
    process.send_signal(signal.SIGINT)
    return _output(process)


def _output(process: subprocess.Popen[str]) -> str:
    try:
        process.wait(30)  # (its output is a few lines: the pipe never fills)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.stdout is not None
    with process.stdout:
        return process.stdout.read()


def _get(port: int) -> bytes:
    """``GET /`` on a new connection (sent at once: during the startup, if it runs)."""
    with socket.create_connection((HOST, port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return recv_exactly(sock, 1 << 16, timeout=20)


def test_the_startup_comes_first_and_the_shutdown_after_the_last_connection(
    tmp_path: Path,
) -> None:
    process, port = _start(tmp_path, "slow")
    try:
        got = _get(port)  # sent during the startup: held, then answered
    finally:
        out = _stop(process)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"the pool"), got
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert lines[:2] == ["startup begins", "startup done"], out
    assert lines[-2:] == ["shutdown done", "reactor stopped"], out
    assert "Traceback" not in out and "Unhandled" not in out


def test_a_failed_startup_is_logged_and_requests_get_503(tmp_path: Path) -> None:
    process, port = _start(tmp_path, "fails")
    try:
        got = _get(port)
    finally:
        out = _stop(process)
    assert got.startswith(b"HTTP/1.1 503 "), got
    assert "ASGIFactory did not start: LifespanFailed: " in out and "no database" in out
    assert "shutdown done" not in out and "Unhandled" not in out


def test_a_shutdown_during_the_startup_cancels_it_and_closes_what_it_held(
    tmp_path: Path,
) -> None:
    process, port = _start(tmp_path, "endless")
    try:
        with socket.create_connection((HOST, port), timeout=20) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "startup begins"
            process.send_signal(signal.SIGINT)
            got = recv_exactly(sock, 1 << 16, timeout=20)  # closed, unanswered
    finally:
        out = _output(process)
    assert got == b""
    assert "startup cancelled" in out and "reactor stopped" in out, out
    assert "Unhandled" not in out and "Traceback" not in out, out


# -- in process, on a test clock: a Deferred startup waits on any reactor ---------------------


def test_a_deferred_startup_holds_the_connections_until_it_fires() -> None:
    from twisted.internet import address, defer, task
    from twisted.internet.testing import StringTransport

    from statewire.protocol import Factory
    from statewire.twisted import adapt
    from statewire.wire import Echo

    gate: defer.Deferred[None] = defer.Deferred()

    class Gated(Factory):
        protocol = Echo

        def beforeServing(self) -> Any:
            return gate

    adapted = adapt(Gated(), clock=task.Clock())
    adapted.doStart()
    shim = adapted.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 40000))
    assert shim is not None
    transport = StringTransport()
    shim.makeConnection(transport)
    assert transport.producerState == "paused" and shim.protocol.transport is None
    shim.dataReceived(b"early")  # (what comes in spite of the pause)
    assert transport.value() == b""
    gate.callback(None)
    assert transport.value() == b"early" and transport.producerState == "producing"
    shim.dataReceived(b" then")
    assert transport.value() == b"early then"


def test_a_startup_that_raises_is_logged_and_holds_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from twisted.internet import address, task
    from twisted.internet.testing import StringTransport

    from statewire.protocol import Factory
    from statewire.twisted import adapt
    from statewire.wire import Echo

    class Broken(Factory):
        protocol = Echo

        def beforeServing(self) -> Any:
            raise RuntimeError("no config")

    adapted = adapt(Broken(), clock=task.Clock())
    with caplog.at_level(logging.ERROR, logger="statewire"):
        adapted.doStart()
    assert "Broken did not start: RuntimeError: no config" in caplog.text
    shim = adapted.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 40000))
    assert shim is not None
    transport = StringTransport()
    shim.makeConnection(transport)
    shim.dataReceived(b"served")
    assert transport.value() == b"served"


# -- found by a review of the adapter's hooks -------------------------------------------------

PEER_ADDRESS = ("TCP", "127.0.0.1", 40000)


def _held_setup(factory: Any, **settings: Any) -> tuple[Any, Any]:
    """``factory`` adapted on a test clock, its port started: (adapted, the clock)."""
    from twisted.internet import task

    from statewire.twisted import adapt

    clock = task.Clock()
    adapted = adapt(factory, clock=clock)
    for name, value in settings.items():
        setattr(adapted, name, value)
    adapted.doStart()
    return adapted, clock


def _connect(adapted: Any) -> tuple[Any, Any]:
    from twisted.internet import address
    from twisted.internet.testing import StringTransport

    shim = adapted.buildProtocol(address.IPv4Address(*PEER_ADDRESS))
    if shim is None:
        return None, None
    transport = StringTransport()
    shim.makeConnection(transport)
    return shim, transport


def test_held_connections_are_bounded_and_one_failing_does_not_strand_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from twisted.internet import defer

    from statewire.protocol import Factory, Protocol

    gate: defer.Deferred[None] = defer.Deferred()
    made: list[int] = []

    class Picky(Protocol):
        def connectionMade(self) -> None:
            made.append(len(made))
            if len(made) == 1:
                raise RuntimeError("the first fails")
            self.transport.pauseProducing()  # (a pause of its own: it stands)

    class Gated(Factory):
        protocol = Picky

        def beforeServing(self) -> Any:
            return gate

    adapted, _ = _held_setup(Gated(), held_limit=2)
    (_, first_transport), (second, second_transport) = _connect(adapted), _connect(adapted)
    with caplog.at_level(logging.DEBUG, logger="statewire"):
        refused = [_connect(adapted) for _ in range(3)]  # (past held_limit: refused)
    # an aborting protocol, not None (Twisted's wrapping factories, TLS's, take a None),
    # and said once at WARNING
    assert all(transport.disconnecting for _, transport in refused)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()
    gate.callback(None)
    assert made == [0, 1]
    assert first_transport.disconnecting or first_transport.disconnected  # (aborted)
    assert second.facade is not None and second_transport.producerState == "paused"


def test_a_port_stopped_during_the_startup_cancels_it_and_closes_what_it_held() -> None:
    from twisted.internet import defer

    from statewire.protocol import Factory
    from statewire.wire import Echo

    cancelled: list[str] = []
    gate: defer.Deferred[None] = defer.Deferred(lambda _: cancelled.append("cancelled"))

    class Gated(Factory):
        protocol = Echo

        def beforeServing(self) -> Any:
            return gate

    adapted, _ = _held_setup(Gated())
    shim, transport = _connect(adapted)
    adapted.doStop()
    assert cancelled == ["cancelled"] and transport.disconnecting and shim.facade is None


def test_after_serving_is_owed_after_the_ports_stopped_and_its_wait_is_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from test_twisted_interop import _ShutdownReactor
    from twisted.internet import defer

    from statewire.protocol import Factory, Protocol
    from statewire.twisted import adapt

    reactor = _ShutdownReactor()
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    asked: list[str] = []

    class Slow(Factory):
        protocol = Protocol

        def afterServing(self) -> Any:
            asked.append("afterServing")
            return defer.Deferred()  # (never fires)

    adapted = adapt(Slow())
    adapted.after_serving_timeout = 2.0
    adapted.doStart()
    adapted.doStop()  # the port stopped before the reactor: its trigger stays, owed
    (trigger,) = reactor.triggers.values()
    fired: list[object] = []
    with caplog.at_level(logging.ERROR, logger="statewire"):
        trigger().addCallback(fired.append)
        reactor.clock.advance(0)  # (the turn after the last connection)
        assert asked == ["afterServing"] and not fired
        reactor.clock.advance(2.0)
    assert fired == [None]
    assert "Slow.afterServing did not end within 2.0 s; cancelled" in caplog.text


def test_a_client_factory_s_hooks_are_not_called() -> None:
    from statewire.protocol import ClientFactory, Protocol

    asked: list[str] = []

    class Client(ClientFactory):
        protocol = Protocol

        def beforeServing(self) -> Any:
            asked.append("before")
            return None

    adapted, _ = _held_setup(Client())
    shim, _ = _connect(adapted)
    assert asked == [] and shim.facade is not None
