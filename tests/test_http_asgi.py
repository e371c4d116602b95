"""The ASGI adapter (statewire.protocols.asgi): a hand-written ASGI 3 application and a
small Starlette application (a streaming response, a request body), served by ``asgi(app)``
on a loopback port of a fresh reactor and exercised with httpx."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from http_helpers import responses, serve
from runtime_helpers import error_records, listen, scenario

from statewire._reactor import Reactor
from statewire.protocols.asgi import asgi

Scope = MutableMapping[str, Any]


async def raw_app(
    scope: Scope,
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Echoes the body in pieces, after a line describing the scope."""
    assert scope["type"] == "http"
    pieces = []
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        pieces.append(message["body"])
        if not message["more_body"]:
            break
    headers = dict(scope["headers"])
    method, path, query = scope["method"], scope["path"], scope["query_string"].decode()
    token = headers.get(b"x-test", b"-").decode()
    described = f"{method} {path} {query} {scope['http_version']} {token}\n"
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-app", b"raw")]})
    await send({"type": "http.response.body", "body": described.encode(), "more_body": True})
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def serving(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=20
        ) as client:
            await body(client)

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors


def test_a_hand_written_asgi_app() -> None:
    async def body(client: httpx.AsyncClient) -> None:
        async def pieces() -> AsyncIterator[bytes]:
            for i in range(20):
                yield b"<%d>" % i

        response = await client.post(
            "/a%20b", params={"q": "1"}, content=pieces(), headers={"X-Test": "yes"}
        )
        assert response.status_code == 201
        assert response.headers["x-app"] == "raw"
        assert response.headers["transfer-encoding"] == "chunked"
        first, rest = response.content.split(b"\n", 1)
        assert first == b"POST /a b q=1 1.1 yes"
        assert rest == b"".join(b"<%d>" % i for i in range(20))
        again = await client.get("/x")  # the same connection, kept alive
        assert again.content == b"GET /x  1.1 -\n"

    serving(raw_app, body)


def test_a_starlette_app_with_a_streaming_response_and_a_request_body() -> None:
    starlette = pytest.importorskip("starlette")
    assert starlette
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.query_params.get('name', 'world')}")

    async def upper(request: Request) -> StreamingResponse:
        data = await request.body()

        async def stream() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000].upper()

        return StreamingResponse(stream(), media_type="text/plain")

    app = Starlette(
        routes=[
            Route("/", hello),
            Route("/upper", upper, methods=["POST"]),
        ]
    )

    async def body(client: httpx.AsyncClient) -> None:
        assert (await client.get("/", params={"name": "asgi"})).text == "hello asgi"
        data = b"abc" * 5000
        response = await client.post("/upper", content=data)
        assert response.status_code == 200
        assert response.content == data.upper()
        assert (await client.get("/missing")).status_code == 404
        assert (await client.post("/")).status_code == 405

    serving(app, body)


# -- http.disconnect ----------------------------------------------------------------------


class Recorder:
    """What an application saw, and an event set when it is done."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.done = asyncio.Event()


def _disconnecting(app: Any, client: Callable[[int], Awaitable[None]]) -> None:
    """Serve ``app``, run ``client`` against it (it goes away mid-request)."""

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off"))
        await client(port)

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors


def test_a_client_gone_mid_body_is_an_http_disconnect_from_receive() -> None:
    record = Recorder()
    reached = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        try:
            for _ in range(100):  # bounded: the client sends 2 pieces and goes
                message = await receive()
                record.seen.append(message["type"])
                if message["type"] == "http.request":
                    reached.set()
                if message["type"] == "http.disconnect" or not message["more_body"]:
                    break
            try:
                await send({"type": "http.response.start", "status": 200})
                await send({"type": "http.response.body", "body": b"late"})
            except OSError as error:  # the spec: send on a closed connection
                record.seen.append(type(error).__name__)
        finally:
            record.done.set()

    async def client(port: int) -> None:
        stop = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"first piece"
            await stop.wait()  # never set: the upload stalls until it is cancelled
            yield b"never"

        async with httpx.AsyncClient(trust_env=False, timeout=20) as http:
            post = asyncio.ensure_future(http.post(f"http://127.0.0.1:{port}/", content=body()))
            await asyncio.wait_for(reached.wait(), 20)
            post.cancel()  # httpx drops the connection mid-body
            with pytest.raises(asyncio.CancelledError):
                await post
        await asyncio.wait_for(record.done.wait(), 20)

    _disconnecting(app, client)
    assert record.seen == ["http.request", "http.disconnect", "ConnectionError"]


def test_receive_after_the_body_waits_for_the_client_to_go() -> None:
    record = Recorder()
    waiting = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        try:
            first = await receive()
            record.seen.append(f"{first['type']} more={first['more_body']}")
            waiting.set()
            record.seen.append((await receive())["type"])  # a long poll: the client goes
            record.seen.append((await receive())["type"])  # and stays gone
        finally:
            record.done.set()

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(waiting.wait(), 20)
        await asyncio.sleep(0.05)  # the app is in receive(), not answering
        assert not record.done.is_set()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(record.done.wait(), 20)
        assert await reader.read() == b""

    _disconnecting(app, client)
    assert record.seen == ["http.request more=False", "http.disconnect", "http.disconnect"]


def test_after_the_response_receive_says_disconnect_at_once() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
        seen.append((await receive())["type"])  # the response is sent: no waiting

    async def body(client: httpx.AsyncClient) -> None:
        assert (await client.get("/")).content == b"ok"
        assert (await client.get("/")).content == b"ok"  # and the connection carries on

    serving(app, body)
    assert seen == ["http.disconnect", "http.disconnect"]


def test_a_starlette_stream_stops_when_its_client_goes() -> None:
    starlette = pytest.importorskip("starlette")
    assert starlette
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    record = Recorder()

    async def endless(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            try:
                for i in range(100_000):  # bounded; the client leaves after a few
                    yield b"%d\n" % i
                    await asyncio.sleep(0.01)
                record.seen.append("ran to the end")
            finally:
                record.seen.append("stream closed")
                record.done.set()

        return StreamingResponse(stream(), media_type="text/plain")

    app = Starlette(routes=[Route("/", endless)])

    async def client(port: int) -> None:
        async with (
            httpx.AsyncClient(trust_env=False, timeout=20) as http,
            http.stream("GET", f"http://127.0.0.1:{port}/") as response,
        ):
            lines = 0
            async for _ in response.aiter_lines():
                lines += 1
                if lines == 3:
                    break
        await asyncio.wait_for(record.done.wait(), 20)

    _disconnecting(app, client)
    assert record.seen == ["stream closed"]


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "loop's transport"])
def test_the_scope_says_https_over_tls_and_http_without(
    tmp_path_factory: pytest.TempPathFactory, native: bool
) -> None:
    from runtime_helpers import self_signed_certificate

    from statewire._reactor import ssl_context

    certificate, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    schemes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main(reactor: Reactor) -> None:
        reactor.native_transports = native
        secure = reactor.listenSSL(
            0, asgi(app), ssl_context(certificate, key), interface="127.0.0.1"
        )
        await secure.ready
        plain = await listen(reactor, asgi(app))
        https = f"https://127.0.0.1:{secure.getHost().port}/"  # type: ignore[union-attr]
        verify = ssl.create_default_context(cafile=certificate)
        async with httpx.AsyncClient(verify=verify, trust_env=False, timeout=20) as client:
            assert (await client.get(https)).status_code == 204
            assert (await client.get(f"http://127.0.0.1:{plain}/")).status_code == 204

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors
    assert schemes == ["https", "http"]


def test_a_body_that_is_not_bytes_is_refused_not_sent_as_nul_bytes() -> None:
    """``bytes(16)`` is sixteen NUL bytes: an ``http.response.body`` whose body is an int
    is the application's error (``TypeError``: a ``500``), not a body."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": 16})

    with error_records() as errors:
        served = serve([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], asgi(app).handler)
    assert [status for status, _ in responses(served.output)] == [500]
    assert b"\0" not in served.output
    assert [type(record.exc_info[1]) for record in errors if record.exc_info] == [TypeError]
