"""``statewire serve MODULE:app --asgi`` with uvicorn's ASGI options (``--factory``,
``--root-path``, ``--proxy-headers``, ``--forwarded-allow-ips``, ``--server-header``,
``--date-header``, ``--lifespan``, ``--ws-*``): a real Starlette application served in its
own process, in one process and under ``--workers``, judged by ``httpx`` and the
``websockets`` client over 127.0.0.1. The mistakes are in ``test_cli_mistakes.py``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from statewire._asgi_cli import add_arguments, as_flags
from statewire._asgi_cli import given as given_options
from tests.process_helpers import running
from tests.runtime_helpers import HOST
from tests.websocket_helpers import frames_of

websockets_client = pytest.importorskip("websockets.asyncio.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402

APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

async def home(request):
    return JSONResponse({
        "root_path": request.scope["root_path"],
        "path": request.scope["path"],
        "client": request.client.host,
        "scheme": request.url.scheme,
    })

async def size(request):
    return JSONResponse({"size": len(await request.body())})

async def echo(websocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)

def build():
    routes = [Route("/", home), Route("/size", size, methods=["POST"])]
    return Starlette(routes=[*routes, WebSocketRoute("/ws", echo)])

made = []

def make():
    made.append(1)
    assert len(made) == 1, "the factory is called once"
    return build()

app = build()
"""

LISTEN = ("--listen", f"tcp:0:interface={HOST}")
FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def _serve(tmp_path: Path, name: str, *flags: str) -> Any:
    module = tmp_path / "served_app.py"
    module.write_text(textwrap.dedent(APP))
    return running("-m", "statewire", "serve", f"{module}:{name}", "--asgi", *flags, *LISTEN)


def _get(port: int) -> httpx.Response:
    """``GET /`` with the fields a proxy writes."""
    return httpx.get(f"http://{HOST}:{port}/", headers=FORWARDED, timeout=20, trust_env=False)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """A response's head (up to its blank line), and what came after it in the reads."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _left_idle(port: int) -> bytes:
    """What a kept-alive connection reads after its response, waiting at most 10 s: ``b""``
    once the server closed it."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        fields, body = _read_head(sock)
        length = int(fields.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(4096)
        try:
            return sock.recv(4096)
        except TimeoutError:
            return b"(still open)"


def test_the_defaults_are_uvicorns(tmp_path: Path) -> None:
    """Without options: Server and Date fields, the proxy on this machine believed."""
    with _serve(tmp_path, "app") as server:
        response = _get(server.port)
        out = server.stop(signal.SIGTERM)
    assert response.headers["server"] == "statewire"
    assert "date" in response.headers
    assert response.json() == {
        "root_path": "",
        "path": "/",
        "client": "203.0.113.7",
        "scheme": "https",
    }
    assert "Traceback" not in out


@pytest.mark.parametrize("workers", [(), ("--workers", "1")])
def test_the_options_reach_the_application(tmp_path: Path, workers: tuple[str, ...]) -> None:
    """The options, in one process and passed on to a worker by the supervisor."""
    flags = (
        "--factory",
        "--root-path=/api",
        "--no-server-header",
        "--no-date-header",
        "--no-proxy-headers",
        "--lifespan=off",
        "--timeout-keep-alive=0.5",
        "--header=X-Frame-Options: DENY",
        "--header=Server:mine",
        *workers,
    )
    with _serve(tmp_path, "make", *flags) as server:
        response = _get(server.port)  # (the proxy took /api off)
        left = _left_idle(server.port)
        out = server.stop(signal.SIGTERM)
    assert left == b""  # closed by the server (the default 15 s: still open after 10)
    assert response.status_code == 200, response.text
    assert response.headers["server"] == "mine"  # (as uvicorn: it replaces the server's)
    assert response.headers["x-frame-options"] == "DENY"
    assert "date" not in response.headers
    assert response.json() == {
        "root_path": "/api",
        "path": "/api/",
        "client": HOST,  # (the fields not read)
        "scheme": "http",
    }
    assert "waiting for the ASGI application's shutdown" not in out  # (--lifespan=off)
    assert "Traceback" not in out


def test_forwarded_allow_ips_names_the_trusted_proxies(tmp_path: Path) -> None:
    """Trusting only another network: the fields of a client on 127.0.0.1 are not read."""
    with _serve(tmp_path, "app", "--forwarded-allow-ips=10.0.0.0/8,192.0.2.1") as server:
        untrusted = _get(server.port).json()
        server.stop(signal.SIGTERM)
    with _serve(tmp_path, "app", "--forwarded-allow-ips=10.0.0.0/8,127.0.0.1") as server:
        trusted = _get(server.port).json()
        server.stop(signal.SIGTERM)
    assert (untrusted["client"], untrusted["scheme"]) == (HOST, "http")
    assert (trusted["client"], trusted["scheme"]) == ("203.0.113.7", "https")


def test_max_body_bounds_the_request_bodies(tmp_path: Path) -> None:
    """``--max-body 2K``: 2048 bytes taken, one more refused before it is read."""
    with _serve(tmp_path, "app", "--max-body=2K") as server:
        url = f"http://{HOST}:{server.port}/size"
        sizes = [
            httpx.post(url, content=b"x" * n, timeout=20, trust_env=False) for n in (2048, 2049)
        ]
        server.stop(signal.SIGTERM)
    assert sizes[0].json() == {"size": 2048}
    assert sizes[1].status_code == 413


async def _websocket_session(port: int) -> tuple[str | None, str, int | None]:
    """The extensions agreed, a small message's echo, and the close code of a large one."""
    async with websockets_client.connect(f"ws://{HOST}:{port}/ws", open_timeout=20) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        await ws.send("small")
        echoed = await asyncio.wait_for(ws.recv(), 20)
        await ws.send("x" * 2000)
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except ConnectionClosed as closed:
            return extensions, str(echoed), closed.rcvd.code if closed.rcvd else None
    raise AssertionError("a message over --ws-max-size was echoed")


def test_the_websocket_options(tmp_path: Path) -> None:
    flags = ("--ws-max-size=1024", "--ws-per-message-deflate=false", "--ws-ping-interval=none")
    with _serve(tmp_path, "app", *flags) as server:
        extensions, echoed, code = asyncio.run(_websocket_session(server.port))
        server.stop(signal.SIGTERM)
    assert extensions is None  # (the client offered permessage-deflate)
    assert echoed == "small"
    assert code == 1009


def test_permessage_deflate_is_agreed_by_default(tmp_path: Path) -> None:
    async def agreed(port: int) -> str | None:
        async with websockets_client.connect(f"ws://{HOST}:{port}/ws", open_timeout=20) as ws:
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    with _serve(tmp_path, "app", "--ws-per-message-deflate=yes") as server:
        extensions = asyncio.run(agreed(server.port))
        server.stop(signal.SIGTERM)
    assert extensions is not None and extensions.startswith("permessage-deflate")


def _silent_client(port: int, wait: float) -> list[Any]:
    """A WebSocket client that answers nothing, pings included: the frames the server
    sends until it closes the connection, or until ``wait`` seconds pass with none."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head, data = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        sock.settimeout(wait)
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except TimeoutError:
            pass
    return frames_of(data)


def test_the_keepalive_pings_follow_their_options(tmp_path: Path) -> None:
    """``--ws-ping-interval`` and ``--ws-ping-timeout``: a client that never answers is
    pinged, then closed with ``1011``; with ``--ws-ping-interval=none`` it is left alone."""
    flags = ("--ws-ping-interval=0.2", "--ws-ping-timeout=0.3")
    with _serve(tmp_path, "app", *flags) as server:
        pinged = _silent_client(server.port, 10)
        server.stop(signal.SIGTERM)
    with _serve(tmp_path, "app", "--ws-ping-interval=none") as server:
        left = _silent_client(server.port, 1.0)
        server.stop(signal.SIGTERM)
    assert [f.header.opcode for f in pinged] == [9, 8]  # a ping, then the close
    assert pinged[-1].payload[:2] == (1011).to_bytes(2, "big")
    assert left == []


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    return parser


_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "factory": st.just(True),
        "root_path": st.sampled_from(["/api", "/a b", "", "/x=y"]),
        "lifespan": st.sampled_from(["auto", "on", "off"]),
        "proxy_headers": st.booleans(),
        "forwarded_allow_ips": st.sampled_from(["*", "10.0.0.0/8,::1", ""]),
        "server_header": st.booleans(),
        "date_header": st.booleans(),
        "header": st.lists(
            st.tuples(
                st.sampled_from(["X-A", "Server", "x_b"]),
                st.sampled_from(["1", "a: b", "max-age=1; x", ""]),
            ),
            min_size=1,
            max_size=3,
        ),
        "timeout_keep_alive": st.floats(0.001, 1e6),
        "max_body": st.integers(1, 2**40),
        "ws_max_size": st.integers(1, 2**40),
        "ws_ping_interval": st.none() | st.floats(0.001, 1e6),
        "ws_ping_timeout": st.none() | st.floats(0.001, 1e6),
        "ws_per_message_deflate": st.booleans(),
    },
)


@given(_OPTIONS)
def test_the_options_passed_on_to_the_workers_parse_back_as_given(
    options: dict[str, Any],
) -> None:
    """What the supervisor passes on (``as_flags``) is what the command line gave."""
    parsed = _parser().parse_args(as_flags(options))
    assert given_options(parsed) == options


def test_options_not_given_are_left_out() -> None:
    assert given_options(_parser().parse_args([])) == {}
