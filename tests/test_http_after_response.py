"""A handler at work after its response (an ASGI background task): the connection reads and
answers the next requests meanwhile, and what the handler raises then neither resets the
connection nor loses the requests behind it. And an ASGI application's concurrent
``receive()`` calls each get a message. Real sockets on loopback, httpx and Starlette as
their users have them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from http_helpers import responses
from runtime_helpers import error_records, listen, scenario
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from statewire._reactor import Reactor
from statewire.protocols.asgi import asgi
from statewire.protocols.http import HTTPFactory, Request, Response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _client(port: int) -> httpx.AsyncClient:
    # one connection: the second request goes on the first one's connection
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=20, limits=limits
    )


async def _raw(port: int, data: bytes, until: Callable[[bytes], bool]) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; read until ``until(got)`` (or the server
    closes); whether it closed or reset it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    closed = False
    try:
        while not until(got):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                closed = True
                break
            got += chunk
    except ConnectionResetError:
        closed = True
    writer.close()
    return got, closed


def test_a_starlette_background_task_does_not_hold_the_next_request() -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def later() -> None:
        await release.wait()
        finished.append("background")

    async def first(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("first", background=BackgroundTask(later))

    async def second(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("second")

    app = Starlette(routes=[Route("/first", first), Route("/second", second)])

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app))
        async with _client(port) as client:
            answer = await client.get("/first")
            assert answer.text == "first"
            # before: the connection waited for the background task (for ever here)
            answer = await asyncio.wait_for(client.get("/second"), 5)
            assert answer.text == "second" and finished == []
            release.set()
            for _ in range(50):
                if finished:
                    break
                await asyncio.sleep(0.01)
            assert finished == ["background"]
            assert (await client.get("/second")).text == "second"

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors


def test_a_background_task_that_raises_leaves_the_response_and_the_connection() -> None:
    async def fails() -> None:
        raise RuntimeError("the notification failed")

    async def order(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("order accepted", background=BackgroundTask(fails))

    async def ok(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/order", order), Route("/ok", ok)])

    async def main(reactor: Reactor) -> tuple[bytes, bool, str, str]:
        port = await listen(reactor, asgi(app))
        # pipelined: the request behind the failing one is answered too (before: a reset
        # lost both responses)
        wire = b"GET /order HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
        got, closed = await _raw(port, wire, lambda got: got.count(b"HTTP/1.1 200") == 2)
        async with _client(port) as client:
            first = (await client.get("/order")).text
            second = (await client.get("/ok")).text
        return got, closed, first, second

    with error_records() as errors:
        got, closed, first, second = scenario(main, timeout=60)
    assert [body for _, body in responses(got)] == [b"order accepted", b"ok"]
    assert not closed
    assert (first, second) == ("order accepted", "ok")
    assert errors and all("after its response was complete" in e.getMessage() for e in errors)
    assert all(e.exc_info and "notification failed" in str(e.exc_info[1]) for e in errors)


def test_a_handler_of_the_server_at_work_after_its_response_does_not_hold_the_next() -> None:
    release = asyncio.Event()
    done: list[bytes] = []

    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], request.target)
        if request.target == b"/slow":
            await release.wait()
        done.append(request.target)

    async def main(reactor: Reactor) -> tuple[bytes, list[bytes]]:
        port = await listen(reactor, HTTPFactory(handler))
        wire = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
        got, _ = await _raw(port, wire, lambda got: got.endswith(b"/fast"))
        seen = list(done)
        release.set()
        await asyncio.sleep(0.05)
        return got, seen

    got, seen = scenario(main, timeout=30)
    assert [body for _, body in responses(got)] == [b"/slow", b"/fast"]
    assert seen == [b"/fast"]  # answered while /slow's handler still waited


@pytest.mark.parametrize("answer", ["send", "stream"])
def test_a_connection_lets_at_most_max_background_handlers_run_on(answer: str) -> None:
    # a client pipelining requests whose handlers run on after their responses: past
    # max_background of them, the next is waited for before the next request is read,
    # until one of them ends (its slot goes to the one waited for) or it ends itself
    releases = {b"/%d" % n: asyncio.Event() for n in range(5)}
    running: list[bytes] = []

    async def handler(request: Request, response: Response) -> None:
        if answer == "send":
            await response.send(200, [], request.target)
        else:  # (its response ends after the request was read whole: a later release)
            response.start(200, [("Content-Length", str(len(request.target)))])
            await asyncio.sleep(0)
            await response.end(request.target)
        running.append(request.target)
        await releases[request.target].wait()
        running.remove(request.target)

    factory = HTTPFactory(handler)
    factory.max_background = 2
    targets = list(releases)

    async def answered(reader: asyncio.StreamReader, got: bytes, count: int) -> bytes:
        while len(responses(got)) < count:
            got += await asyncio.wait_for(reader.read(65536), 10)
        await asyncio.sleep(0.2)  # (time for more, if the bound let them through)
        got += await _available(reader)
        assert [body for _, body in responses(got)] == targets[:count]
        return got

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, factory)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % t for t in targets))
        got = await answered(reader, b"", 3)
        assert running == targets[:3]  # two released, the third waited for
        releases[b"/0"].set()  # a slot frees: the third takes it, the fourth is read
        got = await answered(reader, got, 4)
        assert running == targets[1:4]
        for event in releases.values():
            event.set()
        await answered(reader, got, 5)
        writer.close()

    scenario(main, timeout=30)


async def _available(reader: asyncio.StreamReader) -> bytes:
    """What ``reader`` has now (nothing, within 10 ms)."""
    try:
        return await asyncio.wait_for(reader.read(65536), 0.01)
    except asyncio.TimeoutError:
        return b""


def test_connection_close_still_closes_after_the_response_not_the_handler() -> None:
    release = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], b"bye")
        await release.wait()

    async def main(reactor: Reactor) -> tuple[bytes, bool, float]:
        port = await listen(reactor, HTTPFactory(handler))
        wire = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        start = time.monotonic()
        got, closed = await _raw(port, wire, lambda got: False)
        elapsed = time.monotonic() - start
        release.set()
        return got, closed, elapsed

    got, closed, elapsed = scenario(main, timeout=30)
    assert responses(got) == [(200, b"bye")] and closed
    assert elapsed < 5  # closed after the response, not when the handler ends


def test_concurrent_receive_calls_each_get_a_message() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # Starlette's pattern: a stream read while the disconnect is polled
        first, second = await asyncio.wait_for(asyncio.gather(receive(), receive()), 5)
        kinds = sorted(
            f"{m['type']}:{m.get('body', b'').decode()}:{m.get('more_body', '-')}"
            for m in (first, second)
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": " ".join(kinds).encode()})

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, asgi(app))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.1)  # both receive() calls wait now
        writer.write(b"5\r\nhello\r\n")
        await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        got = b""
        while not responses(got):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            got += chunk
        writer.close()
        return got

    with error_records() as errors:
        got = scenario(main, timeout=30)
    assert not errors
    # one took the bytes, the other woke with them and found the body's end (uvicorn
    # gives both a message too); before, the first receive() waited for ever
    assert responses(got) == [(200, b"http.request::False http.request:hello:True")]


def test_a_starlette_stream_read_while_the_disconnect_is_polled_does_not_hang() -> None:
    # (Starlette's is_disconnected() reads a message: polled while body bytes wait unread,
    # it takes them, under uvicorn as here; what is checked is that the stream's read,
    # waiting beside it, is woken: before, only the last of two waiting reads was)
    async def upload(request: StarletteRequest) -> PlainTextResponse:
        sizes = []

        async def poll() -> None:
            while not await request.is_disconnected():
                await asyncio.sleep(0.01)

        watcher = asyncio.ensure_future(poll())
        try:
            async for chunk in request.stream():
                sizes.append(len(chunk))
        finally:
            watcher.cancel()
        return PlainTextResponse(f"read {sum(sizes)}")

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])

    async def chunks() -> Any:
        for _ in range(4):
            yield b"abcd"
            await asyncio.sleep(0.05)

    async def main(reactor: Reactor) -> tuple[int, str]:
        port = await listen(reactor, asgi(app))
        async with _client(port) as client:
            answer = await asyncio.wait_for(client.post("/upload", content=chunks()), 10)
            return answer.status_code, answer.text

    with error_records() as errors:
        status, text = scenario(main, timeout=30)
    assert status == 200 and text.startswith("read ")
    assert not errors


def test_the_scope_says_spec_version_2_4() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main(reactor: Reactor) -> int:
        port = await listen(reactor, asgi(app, lifespan="off"))  # (http scopes only)
        async with _client(port) as client:
            return (await client.get("/")).status_code

    assert scenario(main, timeout=30) == 204
    # send() after the client is gone raises an OSError: version 2.4's rule
    assert seen[0]["asgi"] == {"version": "3.0", "spec_version": "2.4"}


# -- found by a review of the change above ---------------------------------------------------


def test_a_cancellation_of_its_own_after_the_response_does_not_reset_the_connection() -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], request.target)
        if request.target == b"/first":
            doomed = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.05, doomed.cancel)
            await doomed  # (cancelled elsewhere: a CancelledError of the handler's own)

    async def main(reactor: Reactor) -> tuple[bytes, bool]:
        port = await listen(reactor, HTTPFactory(handler))
        wire = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(wire)
        await asyncio.sleep(0.2)  # the handler's CancelledError came
        writer.write(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            while got.count(b"HTTP/1.1 200") < 2:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            return got, True
        writer.close()
        return got, False

    with error_records() as errors:
        got, reset = scenario(main, timeout=30)
    assert not reset and [b for _, b in responses(got)] == [b"/first", b"/second"]
    assert [e.getMessage() for e in errors] == [
        "HTTP handler raised after its response was complete"
    ]


async def _answered_then_gone(
    reactor: Reactor, factory: HTTPFactory, seen: list[str]
) -> list[str]:
    """A client gets ``GET /``'s ``ok`` and leaves; what ``seen`` holds once it is not
    empty (at most 2 s later), before the scenario's end cancels what is left."""
    port = await listen(reactor, factory)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"ok")
    writer.close()
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.02)
    return list(seen)


def test_a_lost_client_tells_a_handler_at_work_after_its_response() -> None:
    told: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], b"ok")
        gone = asyncio.get_running_loop().create_future()
        request.on_disconnect(lambda: gone.done() or gone.set_result(None))
        await asyncio.wait_for(gone, 5)
        told.append("told")

    async def main(reactor: Reactor) -> list[str]:
        factory = HTTPFactory(handler, cancel_on_disconnect=False)
        return await _answered_then_gone(reactor, factory, told)

    with error_records() as errors:
        scenario(main, timeout=30)
    assert told == ["told"] and not errors


def test_a_lost_client_cancels_a_server_handler_at_work_after_its_response() -> None:
    events: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], b"ok")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main(reactor: Reactor) -> list[str]:
        return await _answered_then_gone(reactor, HTTPFactory(handler), events)

    assert scenario(main, timeout=30) == ["cancelled"]


def test_reactor_run_ends_the_tasks_still_pending_when_it_stops() -> None:
    import socket
    import threading

    events: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [], b"ok")
        try:
            await asyncio.sleep(30)  # work after the response, its client still there
        finally:
            events.append("finally ran")

    reactor = Reactor()
    port = reactor.listenTCP(
        0, HTTPFactory(handler, cancel_on_disconnect=False), interface="127.0.0.1"
    )

    def client() -> None:
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(1000)
            reactor.loop.call_soon_threadsafe(reactor.stop)
            time.sleep(1)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        reactor.run(installSignalHandlers=False)
        pending = [task for task in asyncio.all_tasks(reactor.loop) if not task.done()]
    finally:
        thread.join(10)
        reactor.loop.close()
    assert events == ["finally ran"] and pending == []


def test_a_handler_reading_its_body_late_sends_no_100_into_the_next_exchange() -> None:
    from statewire.testing.memory import Clock, StringTransport

    async def main() -> bytes:
        gate = asyncio.Event()

        async def handler(request: Request, response: Response) -> None:
            if request.target == b"/a":
                await response.send(200, [], b"a")  # before reading its body
                await gate.wait()
                await request.body.read()  # read late: no 100 for anyone now
            else:
                await response.send(200, [], b"b:" + await request.body.read())

        protocol = HTTPFactory(handler, date=False, server=None).buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            b"helloPOST /b HTTP/1.0\r\nContent-Length: 4\r\n\r\nab"
        )
        for _ in range(30):
            await asyncio.sleep(0)
        gate.set()
        for _ in range(30):
            await asyncio.sleep(0)
        protocol.dataReceived(b"cd")
        for _ in range(30):
            await asyncio.sleep(0)
        protocol.connectionLost()
        return transport.value()

    wire = asyncio.run(main())
    assert b"100 Continue" not in wire  # (/b is HTTP/1.0: no 1xx ever, RFC 9110 §15.2)
    assert [body for _, body in responses(wire)] == [b"a", b"b:abcd"]


def test_readers_given_up_are_not_kept_while_the_client_is_silent() -> None:
    import anyio

    from statewire.testing.memory import Clock, StringTransport

    polls: list[int] = []

    async def handler(request: Request, response: Response) -> None:
        for _ in range(1000):
            with anyio.CancelScope() as scope:  # what Starlette's is_disconnected() does
                scope.cancel()
                await request.body.chunk()
        polls.append(1000)
        await response.send(200, [], b"ok")

    async def main() -> None:
        protocol = HTTPFactory(handler, date=False, eager=False).buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        for _ in range(5000):
            await asyncio.sleep(0)
            if polls:
                break
        body = protocol.exchange.request.body
        # each reader's future goes with it (before: 1000 kept until bytes came)
        assert body.behind is False and not getattr(body, "_waiting", None)
        protocol.connectionLost()
        for _ in range(20):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert polls == [1000]
