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
        port = await listen(reactor, asgi(app))
        async with _client(port) as client:
            return (await client.get("/")).status_code

    assert scenario(main, timeout=30) == 204
    # send() after the client is gone raises an OSError: version 2.4's rule
    assert seen[0]["asgi"] == {"version": "3.0", "spec_version": "2.4"}
