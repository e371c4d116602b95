"""``asgi(app)`` serves the ``websocket`` scope: a Starlette application's WebSocket routes
and hand-written ASGI applications, over loopback, judged by the ``websockets`` client
library; the handshake's refusals, the denial response, every way a session ends, and the
bound on messages the application has not read."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from runtime_helpers import error_records, listen, scenario

from grammars.websocket import PING, frame, unmask
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


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait (polling) until ``condition()`` holds, or ``seconds`` have passed."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


async def refused(uri: str, **options: Any) -> Any:
    """The response to a handshake the server did not answer with ``101``."""
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(uri, **options):
            pass
    return refusal.value.response


async def http_get(port: int, target: bytes, host: bytes = b"x") -> bytes:
    """A plain ``GET`` of ``target`` on its own connection: the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    return answer


def serving(app: Any, client: Client, *, errors_expected: int = 0, **options: Any) -> None:
    """Serve ``asgi(app, **options)`` on a loopback port and run ``client(port)`` against
    it."""

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off", **options))
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
        await until(lambda: "returned" in seen, 2)

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
        answer = await http_get(port, b"/")
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
        response = await refused(f"ws://127.0.0.1:{port}/refuse")
        assert response.status_code == 403

    serving(APP, client)


def test_a_denial_response_is_the_applications_own() -> None:
    async def client(port: int) -> None:
        response = await refused(f"ws://127.0.0.1:{port}/deny")
        assert response.status_code == 401
        assert response.body == b"who are you?"

    serving(APP, client)


def test_a_client_gone_without_a_close_frame_is_1006() -> None:
    seen.clear()

    async def client(port: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/counted")
        await ws.send("one")
        ws.transport.abort()  # (no close frame)
        await until(lambda: "code" in seen, 4)

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
        response = await refused(f"ws://127.0.0.1:{port}/")
        assert response.status_code == 500

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
        await until(lambda: len(outcomes) == 2, 2)

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
        response = await refused(f"ws://127.0.0.1:{port}/", subprotocols=["chat"])
        assert response.status_code == 500

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


def test_upgrade_without_the_connection_option_is_an_http_request() -> None:
    """RFC 9110 §7.8: without the ``upgrade`` connection option, ``Upgrade`` is not for
    this hop: the request is the application's ``http`` scope (as under uvicorn)."""
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: close\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"plain")

    serving(app, client)
    assert called == ["http"]


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
        await until(lambda: bool(got), 4)
        sock.close()

    serving(raw_app(behave), client)
    assert got == [{"type": "websocket.receive", "text": "early"}]


# -- what an adversarial review found (each failed before its fix) -------------------------


def handshake(extra: bytes = b"") -> bytes:
    return (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def test_an_application_streaming_from_its_accept_leaves_the_server_responsive() -> None:
    """Run inside the handshake's read, an application that sends in a loop without
    waiting for anything else used to pile its frames up unsent, the loop never turning
    (the 101 never left, no other client was served): it now waits, as a client's
    reading lets it, and the client can stop it."""
    stop = asyncio.Event()
    sends = [0]

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not stop.is_set() and sends[0] < 20_000:  # (bounded: 20 MB before the fix)
            await send({"type": "websocket.send", "bytes": b"%05d" % sends[0] + b"x" * 1000})
            sends[0] += 1
        await send({"type": "websocket.close"})

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            got = [await ws.recv() for _ in range(100)]
            stop.set()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(handshake())  # (another client, served meanwhile)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            writer.close()
            with pytest.raises(ConnectionClosed):
                while True:  # (the rest, then the application's close)
                    await ws.recv()
        assert [message[:5] for message in got] == [b"%05d" % n for n in range(100)]

    serving(raw_app(behave), client)
    assert sends[0] < 20_000


def test_a_client_gone_before_the_accept_is_a_disconnect() -> None:
    got: list[Any] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.3)  # (the client leaves meanwhile)
        await send({"type": "websocket.accept"})
        got.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except ConnectionError:
            got.append("ConnectionError")

    async def client(port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(handshake())
        sock.close()
        await until(lambda: len(got) == 2, 5)

    serving(raw_app(behave), client)
    assert got == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}, "ConnectionError"]


def test_a_handshake_whose_body_never_comes() -> None:
    """The switch waits for the request's end: the accept waits with it (its sends do not
    pile up), and the client's leaving ends it."""
    got: list[Any] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        got.append("accepted")
        got.append(await receive())

    async def client(port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(handshake(b"Content-Length: 5\r\n"))
        await asyncio.sleep(0.3)
        assert not got  # (the accept still waits for the body)
        sock.close()
        await until(lambda: len(got) == 2, 5)

    serving(raw_app(behave), client)
    assert got == ["accepted", {"type": "websocket.disconnect", "code": 1006, "reason": ""}]


def test_the_unread_bound_stops_reading_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client flooding an application that does not read: past the bound the server
    reads nothing more, so the client's sends block (before: the engine read on, into
    its buffer, without end)."""
    monkeypatch.setattr(_asgi_websocket, "UNREAD_HIGH_WATER", 100_000)
    sent = [0]
    done = asyncio.Event()

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await done.wait()

    async def client(port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.send(handshake())
        head = await asyncio.get_running_loop().sock_recv(sock, 4096)
        assert head.startswith(b"HTTP/1.1 101")
        chunk = bytes([0x82, 0x80 | 127]) + (65536).to_bytes(8, "big") + b"mask" + b"z" * 65536
        stalled_since = time.monotonic()
        while sent[0] < 300 << 20 and time.monotonic() - stalled_since < 1.0:
            try:
                sent[0] += sock.send(chunk)
                stalled_since = time.monotonic()
            except BlockingIOError:
                await asyncio.sleep(0.01)
        done.set()
        sock.close()

    serving(raw_app(behave), client)
    assert sent[0] < 64 << 20  # (the kernel's buffers on both sides, and the bound)


def test_refused_accept_fields_leave_the_handshake_to_answer() -> None:
    outcome: list[str] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nb: c")]})
        except Exception as error:  # (InvalidValueError: a construct error)
            outcome.append(f"refused: {type(error).__name__}")
        await send({"type": "websocket.close"})

    async def client(port: int) -> None:
        response = await refused(f"ws://127.0.0.1:{port}/")
        assert response.status_code == 403

    serving(raw_app(behave), client)
    assert outcome == ["refused: InvalidValueError"]


def test_a_client_that_answers_no_ping_is_closed() -> None:
    ends: list[Any] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        ends.append(message)

    async def client(port: int) -> None:
        # the websockets client answers pings: it stays past several intervals
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
            await asyncio.sleep(1.0)
            await ws.send("still here")
        # a raw one answers none: a ping, then the close
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake())
        await reader.readuntil(b"\r\n\r\n")
        ping = await asyncio.wait_for(reader.readexactly(21), 5)
        assert ping == frame(PING, b"statewire keepalive")
        close = await asyncio.wait_for(reader.readexactly(2), 5)
        assert close[0] == 0x88
        code = await reader.readexactly(close[1])
        assert int.from_bytes(code[:2], "big") == 1011
        writer.close()

    serving(raw_app(behave), client, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    assert ends[0]["code"] == 1000 and ends[1]["code"] == 1011


def test_a_send_after_the_client_left_ends_the_application_quietly() -> None:
    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the client's close
        while True:
            await send({"type": "websocket.send", "text": "talking to no one"})

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/"):
            pass
        await asyncio.sleep(0.2)

    serving(raw_app(behave), client)  # (no ERROR logged)


def test_a_paused_session_does_not_blame_its_client_for_an_unread_pong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the application lets messages pile up past the bound, the server reads
    nothing, the client's pongs included: that is no keepalive timeout (it was: 1011)."""
    monkeypatch.setattr(_asgi_websocket, "UNREAD_HIGH_WATER", 100_000)
    received: list[bytes] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(1.5)  # (several pings' timeouts, the session paused)
        while len(received) < 60:
            received.append((await receive())["bytes"])
        await send({"type": "websocket.send", "text": "all read"})

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None, ping_interval=None) as ws:
            sending = asyncio.ensure_future(
                asyncio.gather(*[ws.send(bytes([n]) * 20_000) for n in range(60)])
            )
            assert await ws.recv() == "all read"
            await sending

    serving(raw_app(behave), client, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    assert received == [bytes([n]) * 20_000 for n in range(60)]


def test_uvicorns_websocket_options() -> None:
    """``ws_max_size`` bounds a message (``1009``, compressed or not); with
    ``ws_ping_interval=None`` no ping comes; bad values are refused up front."""
    ends: list[Any] = []

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        ends.append(message["code"])

    async def client(port: int) -> None:
        for compression in ("deflate", None):
            async with connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
                await ws.send(b"k" * 1000)
                assert await ws.recv() == b"k" * 1000
                await ws.send(b"k" * 1001)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009
        # a raw client that answers no ping is not pinged, nor closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake())
        await reader.readuntil(b"\r\n\r\n")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.6)
        writer.close()

    serving(raw_app(behave), client, ws_max_size=1000, ws_ping_interval=None, ws_ping_timeout=0.1)
    assert ends[:2] == [1009, 1009]
    for name, value in [
        ("ws_max_size", 0),
        ("ws_max_size", None),
        ("ws_max_size", 1.5),
        ("ws_max_size", True),
        ("ws_ping_interval", 0),
        ("ws_ping_interval", float("nan")),
        ("ws_ping_interval", float("inf")),
        ("ws_ping_timeout", -1),
        ("ws_ping_timeout", float("nan")),
        ("ws_ping_timeout", "20"),
        ("ws_per_message_deflate", "no"),
    ]:
        with pytest.raises(ValueError, match=name):
            asgi(raw_app(behave), **{name: value})


def test_no_ping_timeout_pings_without_closing() -> None:
    """``ws_ping_timeout=None`` (as uvicorn takes it): pings go on, a client that answers
    none is not closed."""

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake())
        await reader.readuntil(b"\r\n\r\n")
        pings = await asyncio.wait_for(reader.readexactly(21 * 3), 5)  # (never answered)
        assert pings == frame(PING, b"statewire keepalive") * 3
        writer.close()

    serving(raw_app(behave), client, ws_ping_interval=0.1, ws_ping_timeout=None)


def test_root_path_is_put_back_before_the_path_as_uvicorn_does() -> None:
    seen_scopes: list[dict[str, Any]] = []

    async def where(websocket: WebSocket) -> None:
        seen_scopes.append(dict(websocket.scope))
        await websocket.accept()
        await websocket.send_text(str(websocket.url.path))
        await websocket.close()

    async def page(request: Any) -> PlainTextResponse:
        seen_scopes.append(dict(request.scope))
        return PlainTextResponse(str(request.url_for("page")))

    app = Starlette(routes=[WebSocketRoute("/ws", where), Route("/page", page, name="page")])

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert await ws.recv() == "/api/v1/ws"
        answer = await http_get(port, b"/page", b"example.com")
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(b"http://example.com/api/v1/page")

    serving(app, client, root_path="/api/v1")
    assert len(seen_scopes) == 2
    for scope in seen_scopes:
        assert scope["root_path"] == "/api/v1"
        assert scope["path"].startswith("/api/v1/")
        assert scope["raw_path"].startswith(b"/api/v1/")
    for bad in ("api/", "/api/", "/api\n", "/api?x", "/a b", "/a#b"):
        with pytest.raises(ValueError, match="root_path"):
            asgi(app, root_path=bad)
    # (raw_path is as a client sends it: a root path beyond ASCII percent-encoded)
    assert asgi(app, root_path="/café").raw_root_path == b"/caf%C3%A9"


@pytest.mark.parametrize("answers", [True, False])
def test_the_applications_close_waits_for_the_clients_close_frame(
    monkeypatch: pytest.MonkeyPatch, answers: bool
) -> None:
    """RFC 6455 §7.1.1: after the server's close frame the connection stays open for the
    client's answer, then the server closes it (well before a close_timeout of 30 s); a
    client that never answers is closed after close_timeout (0.3 s here)."""
    monkeypatch.setattr(_asgi_websocket.Channel, "close_timeout", 30.0 if answers else 0.3)

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake())
        await reader.readuntil(b"\r\n\r\n")
        close = await asyncio.wait_for(reader.readexactly(8), 5)
        assert close == frame(8, (4001).to_bytes(2, "big") + b"done")
        with pytest.raises(asyncio.TimeoutError):  # (no end of stream yet)
            await asyncio.wait_for(reader.read(1), 0.1)
        if answers:
            mask = b"abcd"
            writer.write(bytes([0x88, 0x82]) + mask + unmask(mask, (4001).to_bytes(2, "big")))
        assert await asyncio.wait_for(reader.read(1), 5) == b""  # (the server closed)
        writer.close()

    serving(raw_app(behave), client)


def test_a_close_while_paused_for_unread_messages_reads_on_to_the_clients_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The application closes while the session is paused past the unread bound: the
    server reads again (dropping the messages) so that the client's close frame, which
    its close waits for, is seen (well before a close_timeout of 30 s)."""
    monkeypatch.setattr(_asgi_websocket, "UNREAD_HIGH_WATER", 100_000)
    monkeypatch.setattr(_asgi_websocket.Channel, "close_timeout", 30.0)
    flooded = asyncio.Event()

    async def behave(receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await flooded.wait()
        await send({"type": "websocket.close", "code": 4000})

    async def client(port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.send(handshake())
        head = await loop.sock_recv(sock, 4096)
        assert head.startswith(b"HTTP/1.1 101")
        chunk = bytes([0x82, 0x80 | 127]) + (65536).to_bytes(8, "big") + b"mask" + b"z" * 65536
        left = b""
        stalled_since = time.monotonic()
        while time.monotonic() - stalled_since < 0.5:  # (until the server stops reading)
            try:
                left = left[sock.send(left) :] if left else chunk[sock.send(chunk) :]
                stalled_since = time.monotonic()
            except BlockingIOError:
                await asyncio.sleep(0.01)
        flooded.set()
        await asyncio.wait_for(loop.sock_sendall(sock, left), 10)  # (the frame's rest)
        close = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
        assert close == frame(8, (4000).to_bytes(2, "big"))
        mask = b"abcd"
        answer = bytes([0x88, 0x82]) + mask + unmask(mask, (4000).to_bytes(2, "big"))
        await asyncio.wait_for(loop.sock_sendall(sock, answer), 10)
        assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 10) == b""  # (closed)
        sock.close()

    serving(raw_app(behave), client)
