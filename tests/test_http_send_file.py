"""``Response.send_file`` and the transport's ``sendFile`` beneath it: a file's bytes as a
response body, sent by the kernel on statewire's socket transport (plain TCP) and read
and written in pieces elsewhere (TLS, the loop's own transports), judged over real
sockets on 127.0.0.1: every byte in order, the head's length, keep-alive after it, a
slow reader, a reader that stops (the write deadline), a client that leaves, bad ranges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_helpers import (
    HOST,
    client_socket,
    error_records,
    in_mode,
    listen,
    scenario,
    self_signed_certificate,
)

from statewire._reactor import Reactor
from statewire.protocol import Factory, Protocol
from statewire.protocols._http_file import SMALL_FILE
from statewire.protocols.http import HTTPFactory, HTTPServer, Request, Response

MODES = ["epoll", "loop-readers", "native", "uvloop-epoll"]
SIZES = [0, 1, SMALL_FILE, SMALL_FILE + 1, 3 * 1024 * 1024 + 7]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for size in SIZES:
        (tmp_path / f"{size}.bin").write_bytes(os.urandom(size))
    return tmp_path


def _factory(folder: Path) -> HTTPFactory:
    """``GET /SIZE.bin`` the file; ``?from=A&count=B`` a range of it; ``?length=N`` with
    the handler's own ``Content-Length``."""

    async def handler(request: Request, response: Response) -> None:
        path, _, query = request.target.decode().partition("?")
        options = dict(part.split("=") for part in query.split("&") if part)
        fields = [(b"Content-Type", b"application/octet-stream")]
        if "length" in options:
            fields.append((b"Content-Length", options["length"].encode()))
        response.start(200, fields)
        count = int(options["count"]) if "count" in options else None
        await response.send_file(folder / path.lstrip("/"), int(options.get("from", 0)), count)

    return HTTPFactory(handler)


async def _response(
    reader: asyncio.StreamReader, head_only: bool = False
) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
    length = int(fields.get(b"content-length", b"0"))
    body = b"" if head_only else await reader.readexactly(length)
    return status, fields, body


async def _get(
    port: int, *targets: str, method: str = "GET"
) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Each target asked in turn on one kept-alive connection."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        answers = []
        for target in targets:
            writer.write(f"{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            answers.append(await _response(reader, head_only=method == "HEAD"))
        return answers
    finally:
        writer.close()


@pytest.mark.parametrize("mode", MODES)
def test_every_size_arrives_whole_and_the_connection_goes_on(
    files: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(files))
        targets = [f"/{size}.bin" for size in SIZES]
        answers = await _get(port, *targets, *targets)  # (twice: each on a kept connection)
        for (status, fields, got), target in zip(answers, targets * 2, strict=True):
            expected = (files / target[1:]).read_bytes()
            assert status == 200
            assert fields[b"content-length"] == str(len(expected)).encode()
            assert got == expected

    in_mode(mode, monkeypatch)(body)


def test_ranges_and_the_handlers_own_length(files: Path) -> None:
    whole = (files / f"{SIZES[-1]}.bin").read_bytes()

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(files))
        name = f"/{SIZES[-1]}.bin"
        cases = [
            (f"{name}?from=10&count=100", whole[10:110]),
            (f"{name}?from=70000&count=2000000", whole[70000:2070000]),
            (f"{name}?from={len(whole) - 5}", whole[-5:]),
            (f"{name}?from={len(whole)}", b""),
            (f"{name}?length={len(whole)}", whole),
        ]
        answers = await _get(port, *(target for target, _ in cases))
        assert [got for _, _, got in answers] == [expected for _, expected in cases]

    scenario(body)


@pytest.mark.parametrize(
    "query",
    ["from=-1", "from=99999999", "count=99999999", "from=5&count=-2", "length=12"],
)
def test_a_range_the_file_does_not_hold_is_a_500_before_any_byte(files: Path, query: str) -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(files))
        with error_records() as errors:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"GET /{SIZES[-1]}.bin?{query} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            status, fields, _ = await _response(reader)
            writer.close()
        assert status == 500
        assert fields[b"connection"] == b"close"
        assert any("ValueError" in str(record.exc_info) for record in errors)

    scenario(body)


def test_head_gets_the_length_and_no_body(files: Path) -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(files))
        name = f"/{SIZES[-1]}.bin"
        [(status, fields, _)] = await _get(port, name, method="HEAD")
        assert status == 200
        assert fields[b"content-length"] == str(SIZES[-1]).encode()
        # the connection goes on: no body bytes came after the head
        answers = await _get(port, name, "/1.bin")
        assert [len(got) for _, _, got in answers] == [SIZES[-1], 1]

    scenario(body)


def test_over_tls_the_file_is_read_and_written(files: Path, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    client_context.check_hostname = False

    async def body(reactor: Reactor) -> None:
        port = reactor.listenSSL(0, _factory(files), server_context, interface=HOST)
        await port.ready
        number = port.getHost().port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection(HOST, number, ssl=client_context)
        name = f"{SIZES[-1]}.bin"
        writer.write(f"GET /{name} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        status, _, got = await _response(reader)
        writer.close()
        assert status == 200 and got == (files / name).read_bytes()

    scenario(body)


def test_a_slow_reader_gets_every_byte(files: Path) -> None:
    name = f"{SIZES[-1]}.bin"

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(files))
        sock = await client_socket(port, f"GET /{name} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        loop = asyncio.get_running_loop()
        data = b""
        deadline = time.monotonic() + 30
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < SIZES[-1]:
            assert time.monotonic() < deadline
            chunk = await loop.sock_recv(sock, 65536)
            assert chunk
            data += chunk
            await asyncio.sleep(0.001 if len(data) < 200_000 else 0)  # (slow at first)
        sock.close()
        assert data.split(b"\r\n\r\n", 1)[1] == (files / name).read_bytes()

    scenario(body)


def test_a_reader_that_stops_is_aborted_by_the_write_deadline(files: Path) -> None:
    class Quick(HTTPServer):
        write_timeout = 0.5

    async def body(reactor: Reactor) -> None:
        factory = _factory(files)
        factory.protocol = Quick
        port = await listen(reactor, factory)
        sock = await client_socket(
            port, f"GET /{SIZES[-1]}.bin HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        )
        started = time.monotonic()
        while reactor.connections and time.monotonic() - started < 10:
            await asyncio.sleep(0.05)
        assert not reactor.connections  # aborted, the file not sent, nothing read
        assert time.monotonic() - started < 5
        sock.close()

    scenario(body)


def test_a_client_gone_mid_file_ends_the_sending(files: Path) -> None:
    ended: list[BaseException | None] = []

    async def handler(request: Request, response: Response) -> None:
        try:
            await response.send_file(files / f"{SIZES[-1]}.bin")
        except BaseException as error:
            ended.append(error)
            raise
        ended.append(None)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        sock = await client_socket(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert await asyncio.get_running_loop().sock_recv(sock, 1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # (a reset)
        deadline = time.monotonic() + 10
        while not ended and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert ended, "the handler never ended"
        assert not reactor.connections
        # the server serves on
        [(status, _, got)] = await _get(port, "/")
        assert status == 200 and len(got) == SIZES[-1]

    scenario(body)


class _FileThenWrite(Protocol):
    """Sends the file named by the first read with ``sendFile``, then writes ``after``
    at once (it must wait behind the file), then closes once the file is sent."""

    def dataReceived(self, data: bytes) -> None:
        path = data.decode().strip()
        self.file = open(path, "rb")  # noqa: SIM115 - closed when the sending ends
        size = os.fstat(self.file.fileno()).st_size
        sending = self.transport.sendFile(self.file.fileno(), 0, size + 100)
        self.transport.write(b"after")
        assert sending is not None
        sending.add_done_callback(self._sent)

    def _sent(self, sending: Any) -> None:
        self.file.close()
        self.transport.write(b"|%d" % sending.result())
        self.transport.loseConnection()


def test_the_transport_sends_the_file_then_what_was_written_meanwhile(files: Path) -> None:
    name = files / f"{SIZES[-1]}.bin"

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(_FileThenWrite))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(str(name).encode() + b"\n")
        got = await reader.read()
        writer.close()
        # a count past the file's end: the future says how many were sent
        assert got == name.read_bytes() + b"after|%d" % SIZES[-1]

    scenario(body)


def test_starlettes_file_responses_go_by_pathsend(files: Path) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from statewire.protocols.asgi import asgi

    name = f"{SIZES[-1]}.bin"

    async def one(request: Any) -> FileResponse:
        return FileResponse(files / name)

    starlette = Starlette(
        routes=[Route("/one", one), Mount("/static", StaticFiles(directory=files))]
    )
    kinds: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def noted(message: Any) -> None:
            kinds.append(message["type"])
            await send(message)

        await starlette(scope, receive, noted)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off"))
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
            whole = await client.get("/one")
            static = await client.get(f"/static/{name}")
            small = await client.get("/static/1.bin")
            ranged = await client.get("/one", headers={"Range": "bytes=5-14"})
        expected = (files / name).read_bytes()
        assert whole.content == expected and static.content == expected
        assert whole.headers["content-length"] == str(len(expected))
        assert small.content == (files / "1.bin").read_bytes()
        assert ranged.status_code == 206 and ranged.content == expected[5:15]
        # three whole files by the extension; the range by body messages (Starlette's)
        assert kinds.count("http.response.pathsend") == 3
        assert "http.response.body" in kinds

    scenario(body)


def test_over_a_unix_socket_the_kernel_sends_it(files: Path, tmp_path: Path) -> None:
    name = f"{SIZES[-1]}.bin"
    path = str(tmp_path / "http.sock")

    async def body(reactor: Reactor) -> None:
        port = reactor.listenUNIX(path, _factory(files))
        await port.ready
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(f"GET /{name} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        status, _, got = await _response(reader)
        writer.close()
        assert status == 200 and got == (files / name).read_bytes()
        sent = sum(connection.bytes_sent for connection in reactor.connections)
        assert sent > SIZES[-1]  # (the file's bytes counted as sent by the transport)

    scenario(body)


@settings(max_examples=25)
@given(st.data())
def test_any_range_of_any_file_arrives_exactly(tmp_path_factory: Any, data: st.DataObject) -> None:
    folder = tmp_path_factory.mktemp("ranges")
    size = data.draw(st.integers(0, 300_000), label="size")
    whole = os.urandom(size)
    (folder / "f.bin").write_bytes(whole)
    ranges = data.draw(
        st.lists(
            st.integers(0, size).flatmap(
                lambda at: st.tuples(st.just(at), st.integers(0, size - at))
            ),
            min_size=1,
            max_size=4,
        ),
        label="ranges",
    )

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(folder))
        targets = [f"/f.bin?from={at}&count={count}" for at, count in ranges]
        answers = await _get(port, *targets)
        assert [got for _, _, got in answers] == [whole[at : at + count] for at, count in ranges]

    scenario(body)


def test_a_cancelled_send_aborts_and_never_sends_another_files_bytes(files: Path) -> None:
    big = files / f"{SIZES[-1]}.bin"
    other = files / "other.bin"
    other.write_bytes(b"S" * (4 << 20))

    async def handler(request: Request, response: Response) -> None:
        try:
            await asyncio.wait_for(response.send_file(big), 0.2)
        except asyncio.TimeoutError:
            with open(other, "rb"):  # (a descriptor the freed one's number may go to)
                await asyncio.sleep(1)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        sock = await client_socket(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.5)  # (not reading: the file waits on the socket)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
                data += chunk
        sock.close()
        got = data.split(b"\r\n\r\n", 1)[1]
        assert len(got) < SIZES[-1]  # cut: the connection was aborted
        assert got == big.read_bytes()[: len(got)]  # and only the file's own bytes

    scenario(body)


@pytest.mark.parametrize("path", ["/sleep", "/middleware"])
def test_pathsend_after_the_head_left_is_a_chunk(files: Path, path: str) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import FileResponse
    from starlette.routing import Route

    from statewire.protocols.asgi import asgi

    name = files / f"{SIZES[-1]}.bin"

    class Noop(BaseHTTPMiddleware):
        async def dispatch(self, request: Any, call_next: Any) -> Any:
            return await call_next(request)

    async def one(request: Any) -> FileResponse:
        return FileResponse(name)

    starlette = Starlette(routes=[Route("/middleware", one)], middleware=[Middleware(Noop)])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/sleep":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.sleep(0.05)  # (the head leaves meanwhile, chunked)
            await send({"type": "http.response.pathsend", "path": str(name)})
            return
        await starlette(scope, receive, send)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off"))
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
            first = await client.get(path)
            second = await client.get(path)  # (the connection goes on)
        for answer in (first, second):
            assert answer.status_code == 200 and answer.content == name.read_bytes()

    scenario(body)


def test_a_file_starting_is_no_loss_of_progress_for_the_write_deadline(files: Path) -> None:
    big = files / f"{SIZES[-1]}.bin"
    seen: list[int] = []

    class Sender(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write_timeout = 30.0
            self.transport.write(b"x" * 100_000)
            seen.append(self.transport.peer_progress())
            self.file = open(big, "rb")  # noqa: SIM115 - closed with the connection
            assert self.transport.sendFile(self.file.fileno(), 0, SIZES[-1]) is not None
            seen.append(self.transport.peer_progress())

        def connectionLost(self, reason: Any = None) -> None:
            self.file.close()

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, Factory.forProtocol(Sender))
        sock = await client_socket(port, b"go")
        while len(seen) < 2:
            await asyncio.sleep(0.01)
        sock.close()

    scenario(body)
    assert seen[1] >= seen[0]


@pytest.mark.parametrize("kind", ["fifo", "write-only", "float offset"])
def test_files_that_cannot_be_sent_are_errors_not_hangs(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "f"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"y" * 300_000)

    async def handler(request: Request, response: Response) -> None:
        if kind == "write-only":
            with open(path, "r+b") as file, open(path, "wb") as writer:
                writer.write(b"y" * 300_000)
                writer.flush()
                await response.send_file(writer)
                file.read()
        elif kind == "float offset":
            await response.send_file(path, 1.5)  # type: ignore[arg-type]
        else:
            await response.send_file(path)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        with error_records() as errors:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            data = b"(reset)"
            with contextlib.suppress(ConnectionResetError):
                data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
        assert errors, "the failure was not logged"
        if kind != "write-only":
            assert data.startswith(b"HTTP/1.1 500 ")  # (before the head)
        else:  # the head left: cut, by an abort (a reset), never passed off as whole
            assert data == b"(reset)" or len(data.split(b"\r\n\r\n", 1)[1]) < 300_000

    scenario(body)


def test_head_of_an_empty_file_says_its_length(files: Path) -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, _factory(files))
        [(status, fields, _)] = await _get(port, "/0.bin", method="HEAD")
        assert status == 200 and fields[b"content-length"] == b"0"

    scenario(body)


@pytest.mark.parametrize("mode", ["epoll", "native"])
@pytest.mark.parametrize("failure", ["timeout", "unreadable"])
def test_a_handler_that_swallows_a_cut_file_still_has_the_connection_aborted(
    files: Path, tmp_path: Path, mode: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = files / f"{SIZES[-1]}.bin"
    unreadable = tmp_path / "w.bin"
    unreadable.write_bytes(b"w" * 300_000)

    async def handler(request: Request, response: Response) -> None:
        if request.target == b"/first":
            await response.send(200, [], b"f" * 3_000_000)  # (fills the socket first)
        elif request.target == b"/file":
            try:
                if failure == "timeout":
                    await asyncio.wait_for(response.send_file(big), 0.1)
                else:
                    with open(unreadable, "ab") as writer:  # (no reading from it)
                        await response.send_file(writer, 0, 300_000)
            except (asyncio.TimeoutError, OSError):
                pass  # swallowed: the server must still not pass the body off as whole
        else:
            await response.send(200, [], b"next")

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        requests = b"".join(
            b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target for target in (b"/first", b"/file")
        )
        sock = await client_socket(port, requests + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.5)  # (not reading meanwhile)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
                data += chunk
        sock.close()
        assert b"next" not in data  # no response after the cut one
        assert data.count(b"HTTP/1.1 200") <= 2

    in_mode(mode, monkeypatch)(body)


def test_an_empty_file_after_the_head_left_ends_its_chunked_body(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [(b"Content-Type", b"text/plain")])
        response.send_head()
        await response.send_file(empty)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        reader, writer = await asyncio.open_connection(HOST, port)
        for _ in range(2):  # (the connection goes on after it)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Transfer-Encoding: chunked" in head
            assert await reader.readexactly(5) == b"0\r\n\r\n"
        writer.close()

    scenario(body)


@pytest.mark.parametrize("mode", ["native", "epoll"])
def test_a_file_shrinking_under_a_swallowing_handler_never_ends_its_chunks(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shrinks.bin"
    path.write_bytes(b"z" * (8 << 20))

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [])
        response.send_head()  # (chunked: the file will be its one chunk)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.truncate, path, 1000)
        with contextlib.suppress(RuntimeError):
            await response.send_file(path)
        # (returning: the server ends the response, which must raise, so it aborts)

    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        sock = await client_socket(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.3)  # (not reading: the file waits on the socket meanwhile)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
                data += chunk
        sock.close()
        assert not data.endswith(b"\r\n0\r\n\r\n")  # never passed off as whole

    in_mode(mode, monkeypatch)(body)
