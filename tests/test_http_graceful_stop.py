"""A graceful stop lets the HTTP response under way finish: the reactor's shutdown asks
each connection's protocol to ``closeGracefully``; an HTTP connection answers the request
in progress (``Connection: close``), reads no request after it, and closes; an idle one
closes at once; a handler slower than ``shutdown_timeout`` is cut by the abort."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from http_helpers import responses
from runtime_helpers import HOST, error_records, listen, scenario

from statewire._reactor import Reactor
from statewire.protocol import Factory, Protocol
from statewire.protocols.http import HTTPFactory, Request, Response


def slow_factory(started: asyncio.Event, delay: float = 0.3) -> HTTPFactory:
    async def handler(request: Request, response: Response) -> None:
        body = b""
        while not request.body.exhausted:
            body += await request.body.chunk()
        started.set()
        await asyncio.sleep(delay)
        await response.send(200, [], b"done:" + body)

    return HTTPFactory(handler, date=False)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 20)


async def _stop_timed(reactor: Reactor, factory: Factory) -> float:
    """Seconds the shutdown takes with one client connected to ``factory``'s port."""
    port = await listen(reactor, factory)
    _, writer = await asyncio.open_connection(HOST, port)
    for _ in range(200):
        if reactor.connections:
            break
        await asyncio.sleep(0.01)
    begun = time.monotonic()
    await reactor.shutdown()
    writer.close()
    return time.monotonic() - begun


def test_the_response_under_way_finishes_and_says_close() -> None:
    async def main(reactor: Reactor) -> tuple[bytes, float]:
        started = asyncio.Event()
        port = await listen(reactor, slow_factory(started))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(started.wait(), 20)
        stopping = asyncio.ensure_future(reactor.shutdown())
        got = await _read_all(reader)
        begun = time.monotonic()
        await stopping
        writer.close()
        return got, time.monotonic() - begun

    with error_records() as errors:
        got, _ = scenario(main, timeout=30)
    assert errors == []
    assert responses(got) == [(200, b"done:")]
    assert got.endswith(b"Connection: close\r\n\r\ndone:")


def test_a_body_still_coming_is_read_for_its_handler() -> None:
    async def main(reactor: Reactor) -> bytes:
        started = asyncio.Event()
        port = await listen(reactor, slow_factory(started, delay=0))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfirst")
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(reactor.shutdown())
        await asyncio.sleep(0.1)
        writer.write(b"-last")  # after the shutdown began
        got = await _read_all(reader)
        await stopping
        writer.close()
        return got

    got = scenario(main, timeout=30)
    assert got.endswith(b"Connection: close\r\n\r\ndone:first-last")


def test_an_idle_keep_alive_connection_closes_at_once() -> None:
    async def main(reactor: Reactor) -> tuple[bytes, float]:
        port = await listen(reactor, slow_factory(asyncio.Event(), delay=0))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"done:"), 20)
        begun = time.monotonic()
        await reactor.shutdown()
        rest = await _read_all(reader)
        writer.close()
        return first + rest, time.monotonic() - begun

    got, took = scenario(main, timeout=30)
    assert b"Connection: close" not in got  # (it was kept alive)
    assert took < 2  # not the shutdown_timeout's wait


def test_a_pipelined_request_after_the_one_under_way_is_not_served() -> None:
    served: list[bytes] = []

    async def handler(request: Request, response: Response) -> None:
        served.append(request.target)
        await asyncio.sleep(0.2)
        await response.send(200, [], request.target)

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(handler, date=False))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(200):
            if served:
                break
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(reactor.shutdown())
        got = await _read_all(reader)
        await stopping
        writer.close()
        return got

    got = scenario(main, timeout=30)
    assert served == [b"/a"]
    assert [status for status, _ in responses(got)] == [200]
    assert got.endswith(b"Connection: close\r\n\r\n/a")


def test_a_handler_slower_than_the_shutdown_timeout_is_cut_and_said_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(reactor: Reactor) -> tuple[bytes, float]:
        reactor.shutdown_timeout = 0.3
        started = asyncio.Event()
        port = await listen(reactor, slow_factory(started, delay=30))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(started.wait(), 20)
        begun = time.monotonic()
        await reactor.shutdown()
        took = time.monotonic() - begun
        try:
            got = await _read_all(reader)
        except ConnectionResetError:
            got = b"reset"
        writer.close()
        return got, took

    with caplog.at_level(logging.INFO, logger="statewire"):
        got, took = scenario(main, timeout=30)
    assert got in (b"", b"reset")
    assert took < 3
    assert "1 connections still open after 0.3 s; aborting" in caplog.text


def test_a_protocol_of_its_own_closes_at_once_by_default() -> None:
    closed: list[str] = []

    class Quiet(Protocol):
        def connectionLost(self, reason: object = None) -> None:
            closed.append("lost")

    assert scenario(lambda reactor: _stop_timed(reactor, Factory.forProtocol(Quiet))) < 2
    assert closed == ["lost"]


# -- found by a review of the change above -------------------------------------------------


def test_an_asgi_stream_that_never_ends_does_not_hold_the_stop_past_its_bounds() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from statewire.protocols.asgi import asgi

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        events.append("shutdown")

    async def stream(request: StarletteRequest) -> StreamingResponse:
        async def events_() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await asyncio.Event().wait()  # the next event never comes
            yield b"never"

        return StreamingResponse(events_(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/", stream)], lifespan=lifespan)

    async def main(reactor: Reactor) -> float:
        reactor.shutdown_timeout = 0.3
        factory = asgi(app)
        factory.calls_timeout = 0.3
        port = await listen(reactor, factory)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"data: first"), 20)
        begun = time.monotonic()
        await reactor.shutdown()
        writer.close()
        return time.monotonic() - begun

    assert scenario(main, timeout=30) < 3
    assert events == ["shutdown"]


def test_a_websocket_gets_going_away_at_the_stop() -> None:
    from test_http_websocket import HANDSHAKE, echo

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, echo.factory)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(HANDSHAKE)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)  # the 101
        await reactor.shutdown()
        got = await _read_all(reader)
        writer.close()
        return got

    got = scenario(main, timeout=30)
    assert got[:2] == bytes([0x88, 2 + len(b"server going away")])
    assert got[2:4] == (1001).to_bytes(2, "big")


def test_a_proxy_relay_passes_the_graceful_close_to_the_wrapped_protocol() -> None:
    from statewire.proxy import ProxyProtocolFactory
    from statewire.testing.memory import StringTransport

    asked: list[str] = []

    class Wrapped(Protocol):
        def closeGracefully(self) -> None:
            asked.append("wrapped")

    for before_header in (False, True):
        factory = ProxyProtocolFactory(Factory.forProtocol(Wrapped), timeout=None)
        relay = factory.buildProtocol(None)  # type: ignore[arg-type]
        transport = StringTransport()
        relay.makeConnection(transport)
        if before_header:
            relay.closeGracefully()  # remembered: passed on once the header is read
            assert asked == [] and not transport.disconnecting
        relay.dataReceived(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n")
        if not before_header:
            relay.closeGracefully()
        assert asked == ["wrapped"] and not transport.disconnecting
        asked.clear()


def test_a_close_gracefully_that_raises_is_logged_and_the_connection_closed() -> None:
    class Broken(Protocol):
        def closeGracefully(self) -> None:
            raise RuntimeError("no grace here")

    with error_records() as errors:
        assert scenario(lambda reactor: _stop_timed(reactor, Factory.forProtocol(Broken))) < 2
    assert [record.getMessage() for record in errors] == ["Broken.closeGracefully raised; closing"]


# -- a new connection, a request begun, a drain ----------------------------------------------


async def _connected(reactor: Reactor, port: int) -> tuple[asyncio.StreamReader, Any]:
    """A client connection the reactor has taken."""
    before = len(reactor.connections)
    reader, writer = await asyncio.open_connection(HOST, port)
    for _ in range(200):
        if len(reactor.connections) > before:
            break
        await asyncio.sleep(0.01)
    return reader, writer


def test_a_new_connection_has_its_first_request_answered_at_the_stop() -> None:
    async def main(reactor: Reactor) -> tuple[bytes, float]:
        port = await listen(reactor, slow_factory(asyncio.Event(), delay=0))
        reader, writer = await _connected(reactor, port)
        begun = time.monotonic()
        stopping = asyncio.ensure_future(reactor.shutdown())
        await asyncio.sleep(0.2)  # the request comes after the stop began
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = await _read_all(reader)
        await stopping
        writer.close()
        return got, time.monotonic() - begun

    with error_records() as errors:
        got, took = scenario(main, timeout=30)
    assert errors == []
    assert responses(got) == [(200, b"done:")]
    assert got.endswith(b"Connection: close\r\n\r\ndone:")
    assert took < 2  # (answered, not aborted at the shutdown_timeout)


def test_a_new_connection_silent_past_its_grace_closes_without_the_abort(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(reactor: Reactor) -> tuple[bytes, float, float]:
        factory = slow_factory(asyncio.Event(), delay=0)
        factory.first_request_grace = 0.5
        port = await listen(reactor, factory)
        older_reader, older_writer = await _connected(reactor, port)
        await asyncio.sleep(0.6)  # older than its grace at the stop
        newer_reader, newer_writer = await _connected(reactor, port)
        begun = time.monotonic()
        stopping = asyncio.ensure_future(reactor.shutdown())
        older_end = await _read_all(older_reader)
        older_took = time.monotonic() - begun
        newer_end = await _read_all(newer_reader)
        await stopping
        for writer in (older_writer, newer_writer):
            writer.close()
        return older_end + newer_end, older_took, time.monotonic() - begun

    with caplog.at_level(logging.INFO, logger="statewire"):
        got, older_took, took = scenario(main, timeout=30)
    assert got == b""
    assert older_took < 0.15  # open longer than its grace already: closed at once
    assert 0.3 <= took < 1.5  # the newer one at its grace's end, not at the 5 s abort
    assert "still open" not in caplog.text


def test_a_request_begun_before_the_stop_is_answered() -> None:
    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, slow_factory(asyncio.Event(), delay=0))
        reader, writer = await _connected(reactor, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HT")  # one, then part
        first = await asyncio.wait_for(reader.readuntil(b"done:"), 20)
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(reactor.shutdown())
        await asyncio.sleep(0.1)
        writer.write(b"TP/1.1\r\nHost: x\r\n\r\n")
        got = first + await _read_all(reader)
        await stopping
        writer.close()
        return got

    got = scenario(main, timeout=30)
    assert [status for status, _ in responses(got)] == [200, 200]
    assert got.count(b"Connection: close") == 1 and got.endswith(b"close\r\n\r\ndone:")


def test_a_drain_closes_idle_http_connections_and_finishes_the_rest() -> None:
    async def main(reactor: Reactor) -> tuple[bytes, bytes, bytes, float, bool]:
        started = asyncio.Event()
        http = await listen(reactor, slow_factory(started, delay=0.2))
        other = await listen(reactor, Factory.forProtocol(Protocol))
        idle_reader, idle_writer = await _connected(reactor, http)
        idle_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(idle_reader.readuntil(b"done:"), 20)  # now idle, kept alive
        _, plain_writer = await _connected(reactor, other)
        started.clear()
        busy_reader, busy_writer = await _connected(reactor, http)
        busy_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(started.wait(), 20)
        fresh_reader, fresh_writer = await _connected(reactor, http)
        begun = time.monotonic()
        draining = asyncio.ensure_future(reactor.drain(1.5))
        idle_end = await _read_all(idle_reader)
        idle_took = time.monotonic() - begun
        fresh_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # its first request
        busy = await _read_all(busy_reader)
        fresh = await _read_all(fresh_reader)
        await draining  # the plain connection holds it to its timeout
        plain_open = not plain_writer.is_closing() and len(reactor.connections) == 1
        for writer in (idle_writer, busy_writer, fresh_writer, plain_writer):
            writer.close()
        return idle_end, busy, fresh, idle_took, plain_open

    idle_end, busy, fresh, idle_took, plain_open = scenario(main, timeout=30)
    assert idle_end == b"" and idle_took < 0.15  # closed at once, not after the handler
    assert busy.endswith(b"Connection: close\r\n\r\ndone:")
    assert fresh.endswith(b"Connection: close\r\n\r\ndone:")
    assert plain_open  # (a protocol without a graceful close of its own: left open)


def test_a_drain_asks_a_relay_about_its_wrapped_protocol() -> None:
    from statewire.protocol import has_own_graceful_close
    from statewire.proxy import ProxyProtocolFactory
    from statewire.testing.memory import StringTransport

    class Graceful(Protocol):
        def closeGracefully(self) -> None:
            pass

    for wrapped, expected in ((Protocol, False), (Graceful, True)):
        factory = ProxyProtocolFactory(Factory.forProtocol(wrapped), timeout=None)
        relay = factory.buildProtocol(None)  # type: ignore[arg-type]
        relay.makeConnection(StringTransport())
        assert not has_own_graceful_close(relay)  # (its header still to come)
        relay.dataReceived(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n")
        assert has_own_graceful_close(relay) is expected
    assert not has_own_graceful_close(Protocol()) and has_own_graceful_close(Graceful())


# -- found by a review of the change above ---------------------------------------------------

PROXY_HEADER = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


@pytest.mark.parametrize("stop", ["shutdown", "drain"])
def test_an_upgrade_accepted_after_the_stop_began_is_asked_to_close_too(stop: str) -> None:
    from test_http_websocket import HANDSHAKE, echo

    async def main(reactor: Reactor) -> tuple[bytes, float]:
        port = await listen(reactor, echo.factory)
        reader, writer = await _connected(reactor, port)
        begun = time.monotonic()
        stopping = asyncio.ensure_future(
            reactor.shutdown() if stop == "shutdown" else reactor.drain(3.0)
        )
        await asyncio.sleep(0.1)
        writer.write(HANDSHAKE)  # a new connection's first request, in its grace
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        got = await _read_all(reader)
        await stopping
        writer.close()
        return head + got, time.monotonic() - begun

    got, took = scenario(main, timeout=30)
    assert got.startswith(b"HTTP/1.1 101 ")
    frame = got[got.index(b"\r\n\r\n") + 4 :]
    assert frame[:2] == bytes([0x88, 2 + len(b"server going away")])  # (1001, going away)
    assert took < 2  # not the shutdown's abort nor the drain's timeout


def test_a_drain_leaves_an_upgraded_protocol_without_a_graceful_close_of_its_own() -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.upgrade(_Echo(), [("Upgrade", "echo")])

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(handler, date=False))
        reader, writer = await _connected(reactor, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        draining = asyncio.ensure_future(reactor.drain(0.5))
        await asyncio.sleep(0.2)
        writer.write(b"ping")
        got = await asyncio.wait_for(reader.readexactly(4), 20)
        await draining
        writer.close()
        return got

    assert scenario(main, timeout=30) == b"ping"  # still served, as before the drain


@pytest.mark.parametrize("stop", ["shutdown", "drain"])
def test_behind_a_proxy_a_new_connection_has_its_first_request_answered(stop: str) -> None:
    from statewire.proxy import ProxyProtocolFactory

    async def main(reactor: Reactor) -> tuple[bytes, float]:
        http = slow_factory(asyncio.Event(), delay=0.1)
        port = await listen(reactor, ProxyProtocolFactory(http, timeout=None))
        reader, writer = await _connected(reactor, port)
        begun = time.monotonic()
        stopping = asyncio.ensure_future(
            reactor.shutdown() if stop == "shutdown" else reactor.drain(3.0)
        )
        await asyncio.sleep(0.1)
        writer.write(PROXY_HEADER + GET)  # the header comes after the stop began
        got = await _read_all(reader)
        await stopping
        writer.close()
        return got, time.monotonic() - begun

    got, took = scenario(main, timeout=30)
    assert responses(got) == [(200, b"done:")]
    assert got.endswith(b"Connection: close\r\n\r\ndone:")
    assert took < 2


def test_the_first_request_grace_is_armed_once_and_ends_with_the_request() -> None:
    from statewire.testing.memory import Clock, StringTransport

    def graces(clock: Clock) -> int:
        names = [getattr(call.func, "__name__", "") for call in clock.pending()]
        return names.count("_first_request_late")

    async def main() -> tuple[int, int, int, bytes]:
        protocol = slow_factory(asyncio.Event(), delay=0).buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.closeGracefully()
        protocol.closeGracefully()  # (a drain, then the shutdown)
        armed = graces(clock)
        protocol.dataReceived(GET)
        for _ in range(5):  # (the handler's turns)
            await asyncio.sleep(0)
        return armed, graces(clock), int(transport.disconnecting), transport.value()

    armed, left, closed, got = asyncio.run(main())
    assert (armed, left, closed) == (1, 0, 1)
    assert got.endswith(b"Connection: close\r\n\r\ndone:")
