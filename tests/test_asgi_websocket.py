"""``asgi(app)`` serves the ``websocket`` scope: a Starlette application's WebSocket routes
and hand-written ASGI applications, over loopback, judged by the ``websockets`` client
library; the handshake's refusals, the denial response, every way a session ends, and the
bound on messages the application has not read."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from runtime_helpers import error_records, listen, scenario

from grammars.websocket import unmask
from statewire._reactor import Reactor
from statewire.protocols import _asgi_websocket
from statewire.protocols.asgi import asgi

websockets_client = pytest.importorskip("websockets.asyncio.client")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

connect = websockets_client.connect

starlette = pytest.importorskip("starlette")
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402

Client = Callable[[int], Awaitable[None]]


def serving(app: Any, client: Client, *, errors_expected: int = 0) -> None:
    """Serve ``app`` on a loopback port and run ``client(port)`` against it."""

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off"))
        await asyncio.wait_for(client(port), 30)

    with error_records() as errors:
        scenario(main, timeout=60)
    assert len(errors) == errors_expected, [e.getMessage() for e in errors]


# -- a Starlette application -------------------------------------------------------------

seen: dict[str, Any] = {}


async def chat(websocket: WebSocket) -> None:
    seen["scope"] = dict(websocket.scope)
    await websocket.accept(subprotocol="chat.v2", headers=[(b"x-server", b"statewire")])
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                seen["disconnect"] = message
                return
            if message.get("text") is not None:
                await websocket.send_text("echo: " + message["text"])
            else:
                await websocket.send_bytes(message["bytes"][::-1])
    finally:
        seen["returned"] = True


async def bye(websocket: WebSocket) -> None:
    await websocket.accept()
    name = await websocket.receive_text()
    await websocket.close(code=4000, reason=f"bye {name}")


async def refuse(websocket: WebSocket) -> None:
    await websocket.close(code=1008)


async def deny(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("who are you?", status_code=401))


async def counted(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect as gone:
        seen["code"] = gone.code


async def home(request: Any) -> PlainTextResponse:
    return PlainTextResponse("plain HTTP beside")


APP = Starlette(
    routes=[
        Route("/", home),
        WebSocketRoute("/chat", chat),
        WebSocketRoute("/bye", bye),
        WebSocketRoute("/refuse", refuse),
        WebSocketRoute("/deny", deny),
        WebSocketRoute("/counted", counted),
    ]
)


def test_a_starlette_websocket_route_with_a_real_client() -> None:
    seen.clear()

    async def client(port: int) -> None:
        uri = f"ws://127.0.0.1:{port}/chat?room=1"
        async with connect(uri, subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["x-server"] == "statewire"
            await ws.send("héllo")
            assert await ws.recv() == "echo: héllo"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x02\x01\x00"
            big = "x" * 200_000  # a 64-bit length, and a message of many reads
            await ws.send(big)
            assert await ws.recv() == "echo: " + big
            await ws.send(["frag", "ment", "ed"])  # one message in three frames
            assert await ws.recv() == "echo: fragmented"
            await ws.close(code=4001, reason="done here")
        for _ in range(100):
            if "returned" in seen:
                break
            await asyncio.sleep(0.02)

    serving(APP, client)
    scope = seen["scope"]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat" and scope["query_string"] == b"room=1"
    assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
    assert scope["http_version"] == "1.1" and "method" not in scope
    assert scope["asgi"]["version"] == "3.0"
    assert "websocket.http.response" in scope["extensions"]
    assert (b"sec-websocket-version", b"13") in scope["headers"]
    assert seen["disconnect"] == {
        "type": "websocket.disconnect",
        "code": 4001,
        "reason": "done here",
    }


def test_plain_http_beside_the_websocket_routes() -> None:
    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"plain HTTP beside")

    serving(APP, client)


def test_the_application_closes_with_its_code_and_reason() -> None:
    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/bye") as ws:
            await ws.send("ann")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "bye ann")

    serving(APP, client)


def test_a_close_before_the_accept_is_403() -> None:
    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/refuse"):
                pass
        assert refused.value.response.status_code == 403

    serving(APP, client)


def test_a_denial_response_is_the_applications_own() -> None:
    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/deny"):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b"who are you?"

    serving(APP, client)


def test_a_client_gone_without_a_close_frame_is_1006() -> None:
    seen.clear()

    async def client(port: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/counted")
        await ws.send("one")
        ws.transport.abort()  # (no close frame)
        for _ in range(200):
            if "code" in seen:
                return
            await asyncio.sleep(0.02)

    serving(APP, client)
    assert seen["code"] == 1006


def test_a_graceful_stop_closes_sessions_with_1001() -> None:
    seen.clear()
    got: dict[str, Any] = {}

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(APP, lifespan="off"))
        ws = await connect(f"ws://127.0.0.1:{port}/counted")
        await ws.send("one")
        stopping = asyncio.ensure_future(reactor.shutdown())
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 20)
        got["rcvd"] = closed.value.rcvd
        await asyncio.wait_for(stopping, 20)

    with error_records() as errors:
        scenario(main, timeout=60)
    assert not errors
    assert got["rcvd"] is not None and got["rcvd"].code == 1001
    assert seen["code"] == 1001


# -- hand-written applications ----------------------------------------------------------


def raw_app(
    behave: Callable[[Any, Any], Awaitable[None]],
) -> Callable[[Any, Any, Any], Awaitable[None]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await behave(receive, send)

    return app


def test_an_application_that_never_answers_the_handshake_gets_500() -> None:
    async def behave(receive: Any, send: Any) -> None:
        assert await receive() == {"type": "websocket.connect"}

    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert refused.value.response.status_code == 500

    serving(raw_app(behave), client, errors_expected=1)


@pytest.mark.parametrize(("raises", "code"), [(False, 1000), (True, 1011)])
def test_an_application_that_ends_with_its_session_open(raises: bool, code: int) -> None:
    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last words"})
        if raises:
            raise ValueError("the application broke")

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            assert await ws.recv() == "last words"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code

    serving(raw_app(behave), client, errors_expected=1 if raises else 0)


def test_send_after_the_session_ended() -> None:
    outcomes: list[str] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.close", "code": 3001})
            try:
                await send({"type": "websocket.send", "text": "after my close"})
            except RuntimeError:
                outcomes.append("RuntimeError after its own close")
            return
        assert message["code"] == 1000  # the client's close
        try:
            await send({"type": "websocket.send", "text": "after the client's close"})
        except ConnectionError:
            outcomes.append("ConnectionError after the client's")
        assert await receive() == message  # (and again, for ever)

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("close, please")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        async with connect(f"ws://127.0.0.1:{port}/"):
            pass  # (closes with 1000)
        for _ in range(100):
            if len(outcomes) == 2:
                return
            await asyncio.sleep(0.02)

    serving(raw_app(behave), client)
    assert sorted(outcomes) == [
        "ConnectionError after the client's",
        "RuntimeError after its own close",
    ]


def test_a_subprotocol_the_client_did_not_offer_is_refused() -> None:
    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "not-offered"})

    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["chat"]):
                pass
        assert refused.value.response.status_code == 500

    serving(raw_app(behave), client, errors_expected=1)


KEY = base64.b64encode(b"0123456789abcdef")


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
            b"no valid Sec-WebSocket-Key",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"not WebSocket version 13",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"no upgrade connection option",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Content-Length: 0\r\n\r\n",
            b"a WebSocket handshake is a GET",
        ),
    ],
)
def test_a_bad_handshake_is_400_without_the_application(head: bytes, why: bytes) -> None:
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        answer = await reader.readuntil(why)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer

    serving(app, client)
    assert called == []


def test_unread_messages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """An application that does not read: the session stops taking frames past the high
    water mark (the client's bytes wait in the kernel), and loses none."""
    monkeypatch.setattr(_asgi_websocket, "UNREAD_HIGH_WATER", 100_000)
    most = [0]
    put = _asgi_websocket.Channel._put

    def watched(self: Any, event: Any, size: int) -> None:
        put(self, event, size)
        most[0] = max(most[0], self.unread)

    monkeypatch.setattr(_asgi_websocket.Channel, "_put", watched)
    received: list[bytes] = []
    go = asyncio.Event()

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while len(received) < 60:
            message = await receive()
            received.append(message["bytes"])
        await send({"type": "websocket.send", "text": "all read"})

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            sending = asyncio.ensure_future(
                asyncio.gather(*[ws.send(bytes([n]) * 20_000) for n in range(60)])
            )
            await asyncio.sleep(0.5)
            go.set()
            assert await ws.recv() == "all read"
            await sending

    serving(raw_app(behave), client)
    assert received == [bytes([n]) * 20_000 for n in range(60)]
    assert most[0] <= 100_000 + 20_000


def test_frames_in_the_handshakes_read_reach_the_application() -> None:
    """A client that sends a frame in the same write as its handshake (before the 101):
    the frame is the session's, once the application accepted."""
    got: list[Any] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.05)  # (the accept after the frame arrived)
        await send({"type": "websocket.accept"})
        got.append(await receive())

    async def client(port: int) -> None:
        frame = bytes([0x81, 0x80 | 5]) + b"abcd" + unmask(b"abcd", b"early")
        head = (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head + frame)
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.02)
        sock.close()

    serving(raw_app(behave), client)
    assert got == [{"type": "websocket.receive", "text": "early"}]
