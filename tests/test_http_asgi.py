"""The ASGI adapter (statewire.protocols.asgi): a hand-written ASGI 3 application and a
small Starlette application (a streaming response, a request body), served by ``asgi(app)``
on a loopback port of a fresh reactor and exercised with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
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
