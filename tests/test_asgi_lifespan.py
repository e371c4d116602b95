"""``asgi(app)`` serves the ASGI ``lifespan`` scope as uvicorn does: a real Starlette
application's startup is answered before its port accepts, its state reaches each request,
and its shutdown comes after the last connection closed; ``statewire serve`` runs it and
refuses to serve when it fails. Also the factory hooks and the reactor's shutdown triggers
beneath (``beforeServing``, ``afterServing``, ``addSystemEventTrigger``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from process_helpers import ROOT, running, statewire_command
from runtime_helpers import HOST, error_records, listen, scenario

from statewire._reactor import Reactor
from statewire.protocol import Factory, Protocol
from statewire.protocols.asgi import LifespanFailed, asgi

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) != 0


def starlette_app(events: list[str], reactor: Reactor | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(0.2)  # a startup that takes a while (a pool opened)
        events.append("startup")
        yield {"pool": "the pool"}
        open_then = -1 if reactor is None else len(reactor.connections)
        events.append(f"shutdown with {open_then} connections open")

    async def home(request: Request) -> PlainTextResponse:
        events.append("request")
        return PlainTextResponse(request.state.pool)

    return Starlette(routes=[Route("/", home)], lifespan=lifespan)


def test_a_starlette_lifespan_starts_before_accepting_and_ends_after_the_last_connection() -> None:
    events: list[str] = []

    async def main(reactor: Reactor) -> str:
        port = await listen(reactor, asgi(starlette_app(events, reactor)))
        assert events == ["startup"]  # answered before ready
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            text = (await client.get(f"http://{HOST}:{port}/")).text
            # the client's keep-alive connection is still open here: the shutdown that
            # follows closes it before the application's shutdown
            return text

    with error_records() as errors:
        assert scenario(main, timeout=30) == "the pool"
    assert errors == []
    assert events == ["startup", "request", "shutdown with 0 connections open"]


def test_each_request_gets_a_copy_of_the_lifespan_state() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            scope["state"]["counter"] = 0
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        state["counter"] += 1  # a request's own copy: the next one starts from 0 again
        seen.append(state["counter"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app))
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            for _ in range(3):
                assert (await client.get(f"http://{HOST}:{port}/")).status_code == 204

    scenario(main, timeout=30)
    assert seen == [1, 1, 1]


async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
    """An application that knows no lifespan (it refuses any other scope, as many do)."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope {scope['type']!r}")
    assert scope["state"] == {}  # (an empty state of its own, as uvicorn gives)
    scope["state"]["written"] = True
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"served"})


def test_auto_serves_an_application_without_lifespan_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, asgi(http_only))
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            return (await client.get(f"http://{HOST}:{port}/")).content

    with caplog.at_level(logging.INFO, logger="statewire.asgi"), error_records() as errors:
        assert scenario(main, timeout=30) == b"served"
    assert errors == []
    assert "ASGI 'lifespan' protocol appears unsupported" in caplog.text
    assert "unsupported scope 'lifespan'" in caplog.text


def test_lifespan_on_refuses_an_application_without_it() -> None:
    async def main(reactor: Reactor) -> None:
        port = reactor.listenTCP(0, asgi(http_only, lifespan="on"), interface=HOST)
        number = port.getHost().port  # type: ignore[union-attr]
        with pytest.raises(LifespanFailed, match="unsupported scope 'lifespan'"):
            await port.ready
        assert _refused(number)  # the port stopped: nobody accepts
        assert port not in reactor.ports

    with error_records() as errors:
        scenario(main, timeout=30)
    assert any("did not start serving" in record.getMessage() for record in errors)


def test_lifespan_off_gives_only_http_scopes() -> None:
    scopes: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope["type"])
        await http_only(scope, receive, send)

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off"))
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            assert (await client.get(f"http://{HOST}:{port}/")).content == b"served"

    scenario(main, timeout=30)
    assert scopes == ["http"]


def test_a_bad_lifespan_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="lifespan='yes'"):
        asgi(http_only, lifespan="yes")


def test_a_startup_failed_message_stops_the_port_and_a_request_served_anyway_gets_503() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            return
        raise AssertionError("never served")

    async def main(reactor: Reactor) -> bytes:
        factory = asgi(app)
        port = reactor.listenTCP(0, factory, interface=HOST)
        with pytest.raises(LifespanFailed, match="no database"):
            await port.ready
        # a connection made without the port (a protocol built by hand) is refused too
        from statewire.testing.memory import Clock, StringTransport

        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        out = [transport.value()]
        return b"".join(out)

    with error_records() as errors:
        answer = scenario(main, timeout=30)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert answer.endswith(b"the application did not start\n")
    assert any("startup failed: no database" in record.getMessage() for record in errors)


def test_shutdown_failed_and_a_raise_after_startup_are_logged_and_the_shutdown_goes_on() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.failed", "message": "pool stuck"})
            raise RuntimeError("and then it raised")
        await http_only(scope, receive, send)

    async def main(reactor: Reactor) -> None:
        await listen(reactor, asgi(app))

    with error_records() as errors:
        scenario(main, timeout=30)
    messages = [record.getMessage() for record in errors]
    assert any("shutdown failed: pool stuck" in message for message in messages)
    assert any("raised in its lifespan" in message for message in messages)


# -- statewire serve -----------------------------------------------------------------------

APP = """
    import asyncio, os, sys
    from contextlib import asynccontextmanager
    from pathlib import Path
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from statewire.protocols.asgi import asgi

    MARK = Path(os.environ["MARK"])

    @asynccontextmanager
    async def lifespan(app):
        if os.environ.get("FAIL"):
            raise RuntimeError("cannot reach the database")
        if os.environ.get("SLOW"):
            MARK.write_text("starting\\n")
            try:
                await asyncio.sleep(30)  # a startup stopped before its end
            finally:
                with MARK.open("a") as mark:
                    mark.write("startup cleaned up\\n")
        MARK.write_text("started\\n")
        yield {"who": "lifespan state"}
        if os.environ.get("HANG"):
            await asyncio.Event().wait()  # a shutdown that never ends
        with MARK.open("a") as mark:
            mark.write("stopped\\n")

    async def home(request):
        return PlainTextResponse(request.state.who + request.scope["root_path"])

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
    factory = asgi(app)
"""


def _serve(tmp_path: Path, *target: str, **env: str) -> Any:
    """``statewire serve`` of APP's ``factory``, or of ``target`` (its name and flags)."""
    module = tmp_path / "lifespan_app.py"
    module.write_text(textwrap.dedent(APP))
    mark = tmp_path / "mark"
    listen = f"tcp:0:interface={HOST}"
    name, *flags = target or ("factory",)
    command = ("-m", "statewire", "serve", f"{module}:{name}", *flags, "--listen", listen)
    return running(*command, env={"MARK": str(mark), **env}), mark


@pytest.mark.parametrize("target", [(), ("app", "--asgi"), ("app", "--asgi", "--root-path=/api")])
def test_statewire_serve_runs_the_startup_first_and_the_shutdown_at_sigterm(
    tmp_path: Path, target: tuple[str, ...]
) -> None:
    """The factory ``asgi(app)`` made, or the application itself with ``--asgi`` (as
    ``uvicorn MODULE:app`` takes it), and ``--root-path`` with it."""
    served, mark = _serve(tmp_path, *target)
    with served as server:
        assert mark.read_text() == "started\n"  # before the port was reported listening
        response = httpx.get(f"http://{HOST}:{server.port}/", timeout=20, trust_env=False)
        root = "/api" if "--root-path=/api" in target else ""
        assert response.text == "lifespan state" + root
        out = server.stop(signal.SIGTERM)
    assert mark.read_text() == "started\nstopped\n"
    assert "Traceback" not in out


def _serve_to_its_end(
    module: Path, port: int, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``statewire serve MODULE:factory`` on ``port`` of 127.0.0.1, run until it exits."""
    command = ["serve", f"{module}:factory", "--listen", f"tcp:{port}:interface={HOST}"]
    return statewire_command(*command, env=env)


def test_statewire_serve_exits_when_the_startup_fails(tmp_path: Path) -> None:
    module = tmp_path / "lifespan_app.py"
    module.write_text(textwrap.dedent(APP))
    mark = tmp_path / "mark"
    with socket.socket() as probe:  # a free port, to show it never accepts
        probe.bind((HOST, 0))
        number = probe.getsockname()[1]
    done = _serve_to_its_end(module, number, {"MARK": str(mark), "FAIL": "1"})
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "statewire serve: ASGIFactory did not start: LifespanFailed: the application's "
        "startup failed: RuntimeError: cannot reach the database"
    )
    assert "starting on" not in done.stderr  # it never listened
    assert not mark.exists()


def test_a_second_sigterm_stops_waiting_for_a_shutdown_that_hangs(tmp_path: Path) -> None:
    served, mark = _serve(tmp_path, HANG="1")
    with served as server:
        # served: the reactor runs, its signal handlers installed
        httpx.get(f"http://{HOST}:{server.port}/", timeout=20, trust_env=False)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None  # waiting for the application
        out = server.stop(signal.SIGTERM)
    assert "stopped waiting for the factories' afterServing" in out
    assert mark.read_text() == "started\n"


# -- the factory hooks and the reactor's shutdown triggers ---------------------------------


class Hooked(Factory):
    """A factory whose hooks wait, and say when they ran."""

    protocol = Protocol

    def __init__(self, events: list[str], reactor: Reactor) -> None:
        self.events = events
        self.reactor = reactor

    def beforeServing(self) -> Awaitable[None]:
        async def ready() -> None:
            await asyncio.sleep(0.05)
            self.events.append("ready")

        return ready()

    def afterServing(self) -> Awaitable[None]:
        async def done() -> None:
            await asyncio.sleep(0.05)
            self.events.append(f"after serving, {len(self.reactor.connections)} open")

        return done()


def test_the_shutdown_runs_its_phases_in_order_and_awaits_before_and_after() -> None:
    events: list[str] = []
    writer: Any = None

    async def main(reactor: Reactor) -> None:
        async def before() -> None:
            await asyncio.sleep(0.05)
            events.append(f"before, {len(reactor.connections)} open")

        async def after() -> None:
            await asyncio.sleep(0.05)
            events.append("after")
            writer.close()

        def during() -> None:
            events.append("during")

        def broken() -> None:
            raise RuntimeError("a trigger that raises")

        reactor.addSystemEventTrigger("after", "shutdown", after)
        reactor.addSystemEventTrigger("before", "shutdown", before)
        reactor.addSystemEventTrigger("before", "shutdown", broken)
        reactor.addSystemEventTrigger("during", "shutdown", during)
        gone = reactor.addSystemEventTrigger("during", "shutdown", events.append, "removed")
        reactor.removeSystemEventTrigger(gone)
        with pytest.raises(ValueError):
            reactor.removeSystemEventTrigger(gone)
        port = await listen(reactor, Hooked(events, reactor))
        assert events == ["ready"]
        nonlocal writer
        _, writer = await asyncio.open_connection(HOST, port)
        for _ in range(100):
            if reactor.connections:
                break
            await asyncio.sleep(0.01)

    with error_records() as errors:
        scenario(main, timeout=30)
    assert events == [
        "ready",
        "before, 1 open",
        "during",
        "after serving, 0 open",
        "after",
    ]
    assert [record.getMessage() for record in errors] == [
        f"before shutdown trigger {errors[0].args[1]!r} raised"
    ]


def test_a_trigger_must_name_the_shutdown_a_phase_and_something_callable() -> None:
    reactor = Reactor()
    with pytest.raises(ValueError, match="only 'shutdown'"):
        reactor.addSystemEventTrigger("before", "startup", print)
    with pytest.raises(ValueError, match="phase 'later'"):
        reactor.addSystemEventTrigger("later", "shutdown", print)
    with pytest.raises(TypeError, match="callable"):
        reactor.addSystemEventTrigger("after", "shutdown", "print")  # type: ignore[arg-type]


def test_before_serving_runs_to_its_end_when_no_loop_runs_and_its_failure_unbinds() -> None:
    class Failing(Factory):
        protocol = Protocol
        stopped = False

        def beforeServing(self) -> Awaitable[None]:
            async def fail() -> None:
                await asyncio.sleep(0)
                raise OSError("not today")

            return fail()

        def stopFactory(self) -> None:
            self.stopped = True

    reactor = Reactor()
    try:
        factory = Failing()
        with pytest.raises(OSError, match="not today"):
            reactor.listenTCP(0, factory, interface=HOST)
        assert factory.stopped and factory.numPorts == 0
        assert not reactor.ports
        events: list[str] = []
        port = reactor.listenTCP(0, Hooked(events, reactor), interface=HOST)
        assert events == ["ready"]  # run before listenTCP returned
        assert not _refused(port.getHost().port)  # type: ignore[union-attr]
    finally:
        reactor.loop.run_until_complete(reactor.shutdown())
        reactor.loop.close()
    assert events == ["ready", "after serving, 0 open"]


class Slow(Factory):
    """A factory whose port would accept only after 30 s."""

    protocol = Protocol

    def beforeServing(self) -> Awaitable[None]:
        return asyncio.sleep(30)


def test_a_port_stopped_while_before_serving_waits_never_accepts() -> None:
    async def main(reactor: Reactor) -> None:
        port = reactor.listenTCP(0, Slow(), interface=HOST)
        number = port.getHost().port  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        await port.stopListening()
        with pytest.raises(asyncio.CancelledError):
            await port.ready
        assert _refused(number)

    scenario(main, timeout=30)


def test_a_factory_served_again_after_a_shutdown_starts_its_application_again() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        events.append("startup")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        events.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    factory = asgi(app)
    reactor = Reactor()
    try:
        for _ in range(2):
            reactor.listenTCP(0, factory, interface=HOST)  # (no loop runs: at once)
            assert events[-1] == "startup"
            reactor.loop.run_until_complete(reactor.shutdown())
    finally:
        reactor.loop.close()
    assert events == ["startup", "shutdown", "startup", "shutdown"]


# -- found by a review of the change above -------------------------------------------------


def test_the_application_shutdown_waits_for_its_background_work() -> None:
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"pool": []}
        events.append("shutdown")

    async def later(pool: list[str]) -> None:
        await asyncio.sleep(0.3)
        pool.append("used")
        events.append("background work done")

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(later, request.state.pool))

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app))
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            assert (await client.get(f"http://{HOST}:{port}/")).text == "ok"

    scenario(main, timeout=30)
    assert events == ["background work done", "shutdown"]


def test_a_cancellation_of_its_own_at_startup_is_no_lifespan_under_auto() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise asyncio.CancelledError  # (its own: nothing cancelled its task)
        await http_only(scope, receive, send)

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, asgi(app))
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            return (await client.get(f"http://{HOST}:{port}/")).content

    assert scenario(main, timeout=30) == b"served"


def test_a_shutdown_answer_before_the_startup_one_is_refused() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        await http_only(scope, receive, send)

    async def main(reactor: Reactor) -> None:
        port = reactor.listenTCP(0, asgi(app, lifespan="on"), interface=HOST)
        with pytest.raises(LifespanFailed, match="before the startup was answered"):
            await port.ready

    scenario(main, timeout=30)


def test_one_shutdown_at_a_time_and_a_during_trigger_s_coroutine_runs() -> None:
    events: list[str] = []

    async def main(reactor: Reactor) -> None:
        async def during() -> None:
            events.append("during ran")

        async def before() -> None:
            await asyncio.sleep(0.05)
            events.append("before")

        reactor.addSystemEventTrigger("before", "shutdown", before)
        reactor.addSystemEventTrigger("during", "shutdown", during)
        await asyncio.gather(reactor.shutdown(), reactor.shutdown())
        events.append("both returned")
        await asyncio.sleep(0)

    scenario(main, timeout=30)  # (and its own shutdown: the triggers fire again)
    assert events[:3] == ["before", "during ran", "both returned"]
    assert events.count("before") == 2


def test_once_told_to_stop_waiting_a_shutdown_waits_for_no_later_phase() -> None:
    from statewire._triggers import SystemEvents

    events = SystemEvents()
    ended: list[str] = []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            ended.append(name)

    async def main() -> None:
        events.begin()
        first = asyncio.ensure_future(events.wait([slow("first")], "the first"))
        await asyncio.sleep(0.01)
        events.stop_waiting()  # a second signal
        await first
        await events.wait([slow("second")], "the second")  # cancelled before it ran
        await asyncio.sleep(0)
        events.begin()  # the next shutdown waits again
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(events.wait([slow("third")], "the third"), 0.05)

    asyncio.run(main())
    assert ended == ["first", "third"]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_slow_startup_under_serve_ends_it_cleanly(
    tmp_path: Path, number: int
) -> None:
    module = tmp_path / "lifespan_app.py"
    module.write_text(textwrap.dedent(APP))
    mark = tmp_path / "mark"
    command = ["serve", f"{module}:factory", "--listen", f"tcp:0:interface={HOST}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "statewire", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MARK": str(mark), "SLOW": "1"},
    )
    try:
        for _ in range(400):  # the startup began
            if mark.exists():
                break
            time.sleep(0.05)
        process.send_signal(number)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, out
    assert out.strip().splitlines()[-1] == "statewire serve: interrupted before serving"
    assert mark.read_text() == "starting\nstartup cleaned up\n"
    assert "Traceback" not in out and "destroyed" not in out


def test_a_port_stopped_in_the_turn_it_started_leaves_no_coroutine_unawaited() -> None:
    import gc
    import warnings

    async def main(reactor: Reactor) -> None:
        port = reactor.listenTCP(0, Slow(), interface=HOST)
        await port.stopListening()  # before the port's task took its first step
        await asyncio.sleep(0.01)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenario(main, timeout=30)
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


GAP_TARGET = """
import logging
import os
import signal

from statewire.protocol import Factory, Protocol


class SignalAtServing(logging.Handler):
    # the 'serving ...' line is logged after the ports listen and before reactor.run():
    # a signal sent there lands in the gap between the startup's handlers and the reactor's
    def emit(self, record):
        if record.getMessage().startswith("serving "):
            os.kill(os.getpid(), signal.{name})


logging.getLogger("statewire").addHandler(SignalAtServing())


class Stopped(Factory):
    protocol = Protocol

    def stopFactory(self):
        print("stopFactory", flush=True)


factory = Stopped()
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_after_the_ports_listen_and_before_run_stops_gracefully(
    tmp_path: Path, name: str
) -> None:
    module = tmp_path / "gap.py"
    module.write_text(GAP_TARGET.format(name=name))
    process = _serve_to_its_end(module, 0, {})
    out = process.stdout + process.stderr
    assert process.returncode == 0, out  # (not killed by the signal's default action)
    assert "stopFactory" in out and out.rstrip().endswith("stopped")
    assert "Traceback" not in out


def test_a_trigger_that_awaits_the_shutdown_does_not_wait_for_itself() -> None:
    events: list[str] = []

    async def main() -> None:
        reactor = Reactor()

        async def before() -> None:
            await reactor.shutdown()  # (from inside the shutdown: returns at once)
            events.append("before")

        async def from_a_task() -> None:
            await asyncio.ensure_future(reactor.shutdown())  # (a task it started: too)
            events.append("task")

        reactor.addSystemEventTrigger("before", "shutdown", before)
        reactor.addSystemEventTrigger("after", "shutdown", from_a_task)
        await asyncio.wait_for(reactor.shutdown(), 10)
        outside = asyncio.ensure_future(reactor.shutdown())  # (another one, from outside)
        await asyncio.wait_for(outside, 10)
        events.append("again")

    asyncio.run(main())
    assert events == ["before", "task", "before", "task", "again"]


def test_a_stop_asked_from_inside_a_shutdown_waits_for_its_end() -> None:
    # a protocol's connectionLost, run by the shutdown's own close, calls reactor.stop()
    # (Twisted's idiom): run() returns once that shutdown is done, its triggers included
    reactor = Reactor()
    events: list[str] = []

    class StopsTheReactor(Protocol):
        def connectionLost(self, reason: object = None) -> None:
            reactor.stop()
            events.append("lost")

    async def slow_after() -> None:
        await asyncio.sleep(0.2)
        events.append("after")

    reactor.addSystemEventTrigger("after", "shutdown", slow_after)
    port = reactor.listenTCP(0, Factory.forProtocol(StopsTheReactor), interface=HOST)
    client = socket.create_connection((HOST, port.getHost().port))  # type: ignore[union-attr]
    reactor.callLater(0.2, lambda: asyncio.ensure_future(reactor.shutdown()))
    reactor.callLater(30, reactor.loop.stop)  # (a bound, never reached)
    try:
        reactor.run()
    finally:
        client.close()
    assert events == ["lost", "after"]


def test_a_task_of_an_earlier_shutdown_waits_for_a_later_one() -> None:
    log: list[str] = []

    async def main() -> None:
        reactor = Reactor()
        later = asyncio.Event()

        async def waiter() -> None:
            await later.wait()
            await reactor.shutdown()  # (joins the later shutdown: waits for its end)
            log.append("joined")

        tasks: list[asyncio.Task[None]] = []
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: tasks or tasks.append(asyncio.ensure_future(waiter()))
        )
        await reactor.shutdown()  # the first, which started the waiter

        async def slow_after() -> None:
            await asyncio.sleep(0.2)
            log.append("after")

        reactor.addSystemEventTrigger("after", "shutdown", slow_after)
        second = asyncio.ensure_future(reactor.shutdown())
        await asyncio.sleep(0.05)
        later.set()
        await asyncio.wait_for(asyncio.gather(second, *tasks), 10)

    asyncio.run(main())
    assert log == ["after", "joined"]


def test_a_cancelled_wait_for_the_application_s_shutdown_cancels_its_lifespan_too() -> None:
    ended: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # the shutdown: never answered
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async def main() -> None:
        factory = asgi(app)
        started = factory.beforeServing()
        assert started is not None
        await started
        shutdown = factory.afterServing()
        assert shutdown is not None
        waiting = asyncio.ensure_future(shutdown)
        await asyncio.sleep(0.05)
        waiting.cancel()  # (a bound past: Twisted's adapter's after_serving_timeout)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(5):
            await asyncio.sleep(0)
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        assert pending == []

    asyncio.run(main())
    assert ended == ["cancelled"]
