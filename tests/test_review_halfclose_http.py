"""Adversarial review of c8434a7: the transports' half-close (``readConnectionLost``), the
HTTP server answering what a half-closed client sent, target forms, short chunks
(``chunk_whole``) and ASGI's ``http.disconnect``.

The first section holds failing tests, one a bug; the second pins behaviour that held
under attack. Real sockets on 127.0.0.1, real clients where there are some (curl, httpx,
h11, Twisted's reactor in a child process); every loop and wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from http_helpers import responses, serve
from runtime_helpers import HOST, error_records, listen, scenario

from statewire._reactor import Reactor, ssl_context
from statewire.protocol import Protocol
from statewire.protocols.asgi import asgi
from statewire.protocols.http import HTTPFactory, HTTPServer, Request, Response
from statewire.proxy import ProxyProtocolFactory

ROOT = Path(__file__).resolve().parent.parent
GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
#: seconds any single wait may take before the test gives up (never a timing assertion)
PATIENCE = 10.0


async def talk(port: int, data: bytes, *, rcvbuf: int = 0, before_reading: float = 0.0) -> bytes:
    """Connect, send ``data``, ``shutdown(SHUT_WR)``, (wait ``before_reading`` seconds,)
    then read until the server closes (a reset ends the read too)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, data)
        sock.shutdown(socket.SHUT_WR)
        if before_reading:
            await asyncio.sleep(before_reading)
        received = bytearray()
        for _ in range(100_000):  # bounded: the server closes once it answered
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), PATIENCE)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return bytes(received)
    finally:
        sock.close()


async def slow(request: Request, response: Response) -> None:
    """Answers its target after a few milliseconds: the requests behind wait."""
    await asyncio.sleep(0.02)
    await request.body.read()
    await response.send(200, [("Content-Type", "text/plain")], b"slow " + request.target)


class _Records(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def records(name: str, level: int) -> Iterator[list[logging.LogRecord]]:
    """Every record of logger ``name`` at ``level`` or above while the block runs."""
    handler = _Records(level)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


# == bugs ===================================================================================

# -- 1. half-close while the client does not read: requests dropped --------------------------

BIG = 1 << 20


async def big(request: Request, response: Response) -> None:
    """A 1 MiB answer: two of them fill the socket and the high-water mark."""
    await request.body.read()
    await response.send(200, [], request.target.ljust(BIG, b"."))


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "asyncio transport"])
def test_half_close_while_congested_still_answers_every_pipelined_request(native: bool) -> None:
    """8 pipelined GETs whose answers are 1 MiB each, then SHUT_WR; the client reads
    only after a while. Every complete request must be answered (the promise of
    readConnectionLost). Found: only the first two are. _close_when_answered takes
    ``_awaited`` and waits on it; transportCongested(False) calls it again, finds
    ``_awaited`` None and closes while the framing still holds requests /2../7."""

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(big, date=False, half_close=True))
        wire = b"".join(GET % n for n in range(8))
        return await talk(port, wire, rcvbuf=4096, before_reading=0.3)

    received = scenario(main, timeout=120, native=native)
    answered = [(status, body[:3]) for status, body in responses(received)]
    assert answered == [(200, b"/%d." % n) for n in range(8)]


# -- 2. a client that closed no longer stops its handler ---------------------------------------


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "asyncio transport"])
def test_a_handler_is_cancelled_when_its_client_closes_the_socket(native: bool) -> None:
    """A long poll (a handler waiting for an event that may never come, the default
    ``cancel_on_disconnect=True``); the client closes its socket. Before c8434a7 the EOF
    closed the connection and cancelled the handler. Now the EOF is taken as a
    half-close: ``request.disconnect()`` only sets a flag, the ``responding`` state has no
    deadline, so the handler and the connection (CLOSE_WAIT) live until the event comes,
    for ever if it never does: a client may pile up such connections at no cost to
    itself."""

    async def main(reactor: Reactor) -> str:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        stopped: asyncio.Future[str] = loop.create_future()
        never = asyncio.Event()

        async def long_poll(request: Request, response: Response) -> None:
            started.set_result(None)
            try:
                await never.wait()
            except BaseException as error:
                stopped.set_result(type(error).__name__)
                raise
            await response.send(200, [], b"event")

        port = await listen(reactor, HTTPFactory(long_poll, date=False))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, GET % 1)
        await asyncio.wait_for(started, PATIENCE)
        sock.close()  # the client is gone (a browser tab closed)
        try:
            return await asyncio.wait_for(asyncio.shield(stopped), 3)
        except asyncio.TimeoutError:
            return "still running 3 s after its client closed"

    assert scenario(main, timeout=60, native=native) == "CancelledError"


# -- 3. TLS: a half-close is a close ------------------------------------------------------------


class TLSClient:
    """A TLS client over a non-blocking socket (memory BIOs): it can send close_notify,
    or end its TCP stream, and go on reading."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def handshake(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(100):
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), PATIENCE)
                if not data:
                    raise ConnectionError("the server closed during the handshake") from None
                self.incoming.write(data)
            else:
                await self._flush()
                return

    async def send(self, data: bytes) -> None:
        self.tls.write(data)
        await self._flush()

    async def close_notify(self) -> None:
        # its close_notify is sent; the server's is not awaited
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        await self._flush()

    async def read_to_end(self) -> bytes:
        loop = asyncio.get_running_loop()
        received = b""
        for _ in range(10_000):
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), PATIENCE)
            except ConnectionResetError:
                return received
            if data:
                self.incoming.write(data)
            else:
                self.incoming.write_eof()
            try:
                while chunk := self.tls.read(65536):
                    received += chunk
                return received  # the server's close_notify
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return received  # a close without close_notify
            if not data:
                return received
        return received


@pytest.mark.parametrize("end", ["close_notify", "tcp fin"])
def test_a_tls_end_of_stream_ends_the_connection_even_with_half_close(
    certificate: tuple[str, str], end: str
) -> None:
    """Over listenSSL: two pipelined GETs, then the client ends its stream
    (close_notify, or a bare FIN) and reads. Over TLS an end of stream ends the session
    (statewire does no TLS half-close, on its socket transport as on asyncio's, whose
    SSLProtocol cannot keep the connection: a returned True "has no effect when using
    ssl"): the connection closes,
    the waiting handlers are cancelled, nothing is answered (decision; docs/http.md)."""

    async def main(reactor: Reactor) -> bytes:
        loop = asyncio.get_running_loop()
        port = reactor.listenSSL(
            0,
            HTTPFactory(slow, date=False, half_close=True),
            ssl_context(*certificate),
            interface=HOST,
        )
        await port.ready
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (HOST, port.getHost().port))  # type: ignore[union-attr]
            client = TLSClient(sock, ssl.create_default_context(cafile=certificate[0]))
            await client.handshake()
            await client.send(GET % 1 + GET % 2)
            if end == "close_notify":
                await client.close_notify()
            else:
                sock.shutdown(socket.SHUT_WR)
            return await client.read_to_end()
        finally:
            sock.close()

    received = scenario(main, timeout=60)
    assert responses(received) == []


def test_curl_over_tls_leaves_no_asyncio_warning(certificate: tuple[str, str]) -> None:
    """curl ends each TLS connection with close_notify. Every such end logs asyncio's
    WARNING "returning true from eof_received() has no effect when using ssl", from
    Bridge.eof_received returning True on an SSL transport: one warning per client
    connection on any statewire TLS HTTP server."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")

    async def h(request: Request, response: Response) -> None:
        await response.send(200, [], b"hi")

    async def main(reactor: Reactor) -> bytes:
        port = reactor.listenSSL(
            0, HTTPFactory(h, half_close=True), ssl_context(*certificate), interface=HOST
        )
        await port.ready
        url = f"https://127.0.0.1:{port.getHost().port}/"  # type: ignore[union-attr]
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--max-time", "10", "--cacert", certificate[0], url, url,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(curl.communicate(), 30)
        for _ in range(20):  # the server reads curl's close_notify
            await asyncio.sleep(0.01)
        return out

    with records("asyncio", logging.WARNING) as warnings:
        out = scenario(main, timeout=60)
    assert out == b"hihi"
    assert [record.getMessage() for record in warnings] == []


# -- 4. statewire.twisted: the half-close does not reach the HTTP protocol ----------------------

_TWISTED_SERVER = """
import asyncio
from twisted.internet import asyncioreactor
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)
from twisted.internet import reactor
from statewire.twisted import adapt
from statewire.protocols.http import HTTPFactory

async def slow(request, response):
    await asyncio.sleep(0.02)
    await response.send(200, [], b"slow " + request.target)

factory = adapt(HTTPFactory(slow, date=False, half_close=True))
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
print("port", port.getHost().port, flush=True)
reactor.callLater(60, reactor.stop)
reactor.run()
"""


def test_the_twisted_adapter_hands_the_half_close_to_the_http_server() -> None:
    """The same half-close as over statewire's reactor, with Twisted's asyncio reactor
    serving ``adapt(HTTPFactory(...))``: statewire's reactor answers both; through the
    adapter, TwistedProtocol.readConnectionLost does not forward to the wrapped
    protocol's readConnectionLost but loses the connection at once, so the waiting
    handlers' answers are lost (nothing comes back)."""
    pytest.importorskip("twisted")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", _TWISTED_SERVER],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    killer = threading.Timer(60, server.kill)  # bounded, whatever happens
    killer.start()
    try:
        line = server.stdout.readline() if server.stdout else ""
        assert line.startswith("port "), line
        port = int(line.split()[1])
        with socket.create_connection((HOST, port), timeout=PATIENCE) as sock:
            sock.sendall(GET % 1 + GET % 2)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            for _ in range(1000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    finally:
        killer.cancel()
        server.kill()
        server.wait(timeout=30)
    assert responses(received) == [(200, b"slow /1"), (200, b"slow /2")]


# -- 5. a handler's crash after a half-close is hidden --------------------------------------------


def test_a_handler_crash_after_a_half_close_is_answered_500_and_logged() -> None:
    """A handler with a bug (it raises ValueError) serving a client that sent its request
    and SHUT_WR (curl's ``--data @file`` through ``nc -N``, an HTTP/1.0 tool...). Without
    the half-close it is a 500 and an ERROR with the traceback. After it, _serve sees
    ``request.disconnected`` (set for every request of a half-closed client, whatever
    ``cancel_on_disconnect``) and takes the bug for the handler giving up: no 500, the
    connection just closes, the traceback is logged at INFO only."""

    async def buggy(request: Request, response: Response) -> None:
        await asyncio.sleep(0)
        raise ValueError("a bug in the handler")

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(buggy, date=False, half_close=True))
        return await talk(port, GET % 1)

    with error_records() as errors:
        received = scenario(main, timeout=60)
    assert received.startswith(b"HTTP/1.1 500 ")
    assert any("raised" in record.getMessage() for record in errors)


# -- 6. ASGI: a half-closed client is a gone client -------------------------------------


def test_a_starlette_stream_is_answered_whole_to_a_half_closed_client() -> None:
    """Starlette's StreamingResponse (ASGI spec 2.3: it listens for http.disconnect while
    streaming) for a client that sent its GET and SHUT_WR. The server promises every
    complete request of a half-closed client an answer, but receive() says
    http.disconnect at the half-close, the stream is cancelled and the client gets
    nothing at all (not even the head). (uvicorn closes on EOF too; the contradiction is
    with statewire's own promise, docs/http.md.)"""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def parts() -> Any:
        for n in range(5):
            await asyncio.sleep(0.005)
            yield b"part %d\n" % n

    async def stream(request: StarletteRequest) -> StreamingResponse:
        return StreamingResponse(parts(), media_type="text/plain")

    app = Starlette(routes=[Route("/s", stream)])

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, asgi(app, date=False, half_close=True, lifespan="off"))
        return await talk(port, b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")

    received = scenario(main, timeout=60)
    assert responses(received) == [(200, b"".join(b"part %d\n" % n for n in range(5)))]


# -- 7. an upgrade under way when the client ends its stream: a hang -------------------------


class _Echo(Protocol):
    """The protocol upgraded to: echoes, and says bye and closes at the end of the stream."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.write(b"bye")
        self.transport.loseConnection()


class _PlainEcho(Protocol):
    """The protocol upgraded to, without readConnectionLost (the server should close)."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


@pytest.mark.parametrize("inner", [_Echo, _PlainEcho], ids=["half-closeable", "plain"])
def test_the_end_of_stream_during_an_upgrade_reaches_the_upgraded_protocol(inner: Any) -> None:
    """An upgrade request, the first bytes for the new protocol, then SHUT_WR; the handler
    answers 101 after a wait. When the handler upgrades at once, the end of the stream
    reaches the new protocol (it says bye, or the server closes). When the EOF comes
    while the handler still runs (state ``responding``), readConnectionLost only notes
    ``client_done``; _close_when_answered returns early once the state is ``upgraded``,
    and nothing ever tells the upgraded protocol: reading is off for good, the
    connection hangs for ever."""

    async def upgrading(request: Request, response: Response) -> None:
        await asyncio.sleep(0.05)  # the end of the stream arrives meanwhile
        await response.upgrade(inner(), [("Upgrade", "echo")])

    async def main(reactor: Reactor) -> bytes:
        loop = asyncio.get_running_loop()
        port = await listen(reactor, HTTPFactory(upgrading, date=False, half_close=True))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (HOST, port))
            await loop.sock_sendall(
                sock,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello",
            )
            sock.shutdown(socket.SHUT_WR)
            received = b""
            for _ in range(100):
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 3)
                except asyncio.TimeoutError:
                    return received + b"<no end 3 s after the last byte>"
                if not chunk:
                    return received
                received += chunk
            return received
        finally:
            sock.close()

    received = scenario(main, timeout=60)
    after_head = received.split(b"\r\n\r\n", 1)[-1]
    assert received.startswith(b"HTTP/1.1 101 ")
    assert after_head == (b"hellobye" if inner is _Echo else b"hello")


# -- 8. CONNECT, now an accepted form: its 2xx is framed as a message ----------------------------


def test_a_2xx_answer_to_connect_has_no_content_length() -> None:
    """(Not new in c8434a7, but the commit makes authority-form CONNECT the one legal
    CONNECT.) RFC 9110 §9.3.6: a server MUST NOT send Content-Length or
    Transfer-Encoding in a 2xx response to CONNECT; the client (h11 here) takes the
    connection for a tunnel after the head. statewire adds ``Content-Length: 0`` and
    goes on parsing HTTP requests on what the client believes is a tunnel."""

    async def tunnel(request: Request, response: Response) -> None:
        await response.send(200, [], b"")

    served = serve([b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"], tunnel)
    head = served.output.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"content-length" not in head and b"transfer-encoding" not in head


# == pins ===================================================================================


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "asyncio transport"])
@pytest.mark.parametrize(
    "split", [False, True], ids=["header with requests", "header in two reads"]
)
def test_pin_the_proxy_wrapper_passes_the_half_close_to_http(native: bool, split: bool) -> None:
    """PROXY v1 header, two pipelined GETs, SHUT_WR: the wrapped HTTP protocol hears of the
    end (the transport delivers to it directly once the header is read) and answers both
    with the header's client address."""

    async def main(reactor: Reactor) -> bytes:
        port = await listen(
            reactor, ProxyProtocolFactory(HTTPFactory(slow, date=False, half_close=True))
        )
        header = b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 80\r\n"
        if not split:
            return await talk(port, header + GET % 1 + GET % 2)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (HOST, port))
            await loop.sock_sendall(sock, header[:9])
            await asyncio.sleep(0.02)
            await loop.sock_sendall(sock, header[9:] + GET % 1 + GET % 2)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            for _ in range(1000):
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), PATIENCE)
                if not chunk:
                    break
                received += chunk
            return received
        finally:
            sock.close()

    received = scenario(main, timeout=60, native=native)
    assert responses(received) == [(200, b"slow /1"), (200, b"slow /2")]


async def slow_reader(request: Request, response: Response) -> None:
    """Reads its body a piece at a time, slowly: the body backs up (reading pauses)."""
    size = 0
    async for piece in request.body:
        size += len(piece)
        await asyncio.sleep(0.002)
    await response.send(200, [], b"%s %d" % (request.target, size))


def _post(chunked: bool) -> bytes:
    body = b"x" * (900 << 10)
    if not chunked:
        head = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        return head + body
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return (
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "asyncio transport"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "short chunks"])
def test_pin_a_half_close_behind_bodies_the_handler_reads_slowly(
    native: bool, chunked: bool
) -> None:
    """Two 900 KiB uploads read slowly (the body's high-water mark holds the framing),
    each followed by a GET, then SHUT_WR: all four answered, in order."""

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(slow_reader, date=False, half_close=True))
        wire = _post(chunked) + GET % 1 + _post(chunked) + GET % 2
        return await talk(port, wire)

    received = scenario(main, timeout=60, native=native)
    assert responses(received) == [
        (200, b"/p 921600"),
        (200, b"/1 0"),
        (200, b"/p 921600"),
        (200, b"/2 0"),
    ]


@pytest.mark.parametrize(
    "partial",
    [b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ", b"GE", b"POST / HTTP/1.1\r\nHost: x\r\n"],
    ids=["slowloris head", "request line", "no blank line"],
)
def test_pin_a_half_closed_slowloris_is_closed_at_once_unanswered(partial: bytes) -> None:
    """An unfinished head then SHUT_WR: closed without an answer, well before any of the
    head deadlines (the client can no longer finish it)."""

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(slow, date=False, half_close=True))
        return await asyncio.wait_for(talk(port, partial), 5)

    assert scenario(main, timeout=60) == b""


def test_pin_a_half_closed_client_that_never_reads_is_dropped_by_the_write_timeout() -> None:
    """SHUT_WR after a request whose answer is endless, and never a read: the connection
    is not kept for ever, write_timeout (here 0.3 s) aborts it and the handler's write
    raises."""

    class Impatient(HTTPServer):
        write_timeout = 0.3

    async def main(reactor: Reactor) -> str:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[str] = loop.create_future()

        async def endless(request: Request, response: Response) -> None:
            response.start(200, [])
            try:
                for _ in range(100_000):
                    await response.write(b"x" * (1 << 16))
                outcome.set_result("wrote 6 GiB")
            except BaseException as error:
                outcome.set_result(type(error).__name__)
                raise

        factory = HTTPFactory(endless, date=False, half_close=True)
        factory.protocol = Impatient
        port = await listen(reactor, factory)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (HOST, port))
            await loop.sock_sendall(sock, GET % 1)
            sock.shutdown(socket.SHUT_WR)
            return await asyncio.wait_for(asyncio.shield(outcome), 20)
        finally:
            sock.close()

    assert scenario(main, timeout=60) in ("ConnectionError", "CancelledError")


# -- chunks: what chunk_whole takes and refuses, against h11 -----------------------------------

CHUNKED = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


async def echo_length(request: Request, response: Response) -> None:
    body = await request.body.read()
    await response.send(200, [], b"%d %s" % (len(body), body[:8]))


def h11_refuses(body: bytes) -> bool:
    server = h11.Connection(h11.SERVER)
    server.receive_data(CHUNKED + body)
    try:
        for _ in range(1000):
            event = server.next_event()
            if isinstance(event, h11.EndOfMessage) or event is h11.NEED_DATA:
                return False
    except h11.RemoteProtocolError:
        return True
    return False


@pytest.mark.parametrize("bytewise", [False, True], ids=["one read", "1-byte reads"])
@pytest.mark.parametrize(
    "body",
    [
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",  # data not followed by CRLF
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5_\r\nhello\r\n0\r\n\r\n",
        b"5\x00\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0x\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",  # a size smaller than the data: smuggled "lo\r\n..."
        b"FFFE\r\n" + b"a" * 65534 + b"XX0\r\n\r\n",  # the largest short chunk, no CRLF
        b"FFFF\r\n" + b"a" * 65535 + b"XX0\r\n\r\n",  # the smallest long one, no CRLF
    ],
)
def test_pin_chunk_forms_h11_refuses_are_refused(body: bytes, bytewise: bool) -> None:
    assert h11_refuses(body)
    wire = CHUNKED + body + NEXT
    chunks = (
        [wire[i : i + 1] for i in range(len(wire))] if bytewise and len(wire) < 500 else [wire]
    )
    served = serve(chunks, echo_length)
    assert [status for status, _ in responses(served.output)] == [400]
    assert served.closed


@pytest.mark.parametrize(
    ("body", "length"),
    [
        (b"5;a=b\r\nhello\r\n0\r\n\r\n", 5),
        (b'5;a="b;c"\r\nhello\r\n0;x=1\r\n\r\n', 5),
        (b"A\r\n0123456789\r\n0\r\nX-T: y\r\n\r\n", 10),
        (b"FFFE\r\n" + b"a" * 65534 + b"\r\n0\r\n\r\n", 65534),  # one frame
        (b"FFFF\r\n" + b"a" * 65535 + b"\r\n0\r\n\r\n", 65535),  # pieces
        (b"1\r\na\r\n" * 300 + b"0\r\n\r\n", 300),
    ],
)
def test_pin_good_chunks_are_read_whole_in_any_cut(body: bytes, length: int) -> None:
    wire = CHUNKED + body + NEXT
    for cut in (1, 7, 65535, len(wire)):
        chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)]
        if len(chunks) > 1500:
            continue
        served = serve(chunks, echo_length)
        got = responses(served.output)
        assert [status for status, _ in got] == [200, 200], cut
        assert got[0][1].split(b" ", 1)[0] == b"%d" % length


def test_pin_a_short_chunk_over_max_body_is_413_before_its_data() -> None:
    served = serve([CHUNKED + b"FF\r\n"], echo_length, max_body=100)
    assert [status for status, _ in responses(served.output)] == [413]
    assert served.closed


# -- target forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"CONNECT example.com:443", 200),
        (b"CONNECT [::1]:80", 200),
        (b"CONNECT http://example.com:443/", 400),
        (b"CONNECT example.com:", 400),  # CONNECT names no default port
        (b"CONNECT example.com", 400),
        (b"CONNECT :80", 400),
        (b"CONNECT [::1]", 400),
        (b"GET example.com:80", 400),
        (b"OPTIONS *", 200),
        (b"GET *", 400),
        (b"GET //evil.example/x", 200),  # origin-form: an empty first segment
        (b"GET http://[::1]:80/x", 200),
        (b"GET http://host:/x", 200),  # an empty port is allowed in a URI
        (b"GET http://user@host/", 400),
        (b"GET http://host#frag", 400),
        (b"GET http:/x", 400),
        (b"GET http:///x", 400),
        (b"GET http://x:80:80/", 400),
    ],
)
def test_pin_target_forms(line: bytes, status: int) -> None:
    served = serve([line + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"], echo_length)
    assert served.output.startswith(b"HTTP/1.1 %d " % status)  # (a 2xx CONNECT: a tunnel)


def test_pin_options_asterisk_with_a_body_is_read_and_the_next_request_served() -> None:
    wire = b"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + NEXT
    got = responses(serve([wire], echo_length).output)
    assert got == [(200, b"3 abc"), (200, b"0 ")]


# -- ASGI --------------------------------------------------------------------------------------


def test_pin_asgi_absolute_form_and_ipv6_authority_make_the_scope() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, asgi(app, date=False, half_close=True, lifespan="off"))
        return await talk(
            port,
            b"GET http://[::1]:8080?q=1 HTTP/1.1\r\nHost: evil\r\n\r\n"
            b"GET //a/%2e%2e/b HTTP/1.1\r\nHost: x\r\n\r\n",
        )

    received = scenario(main, timeout=60)
    assert [status for status, _ in responses(received)] == [204, 204]
    assert scopes[0]["path"] == "/" and scopes[0]["query_string"] == b"q=1"
    assert (b"host", b"[::1]:8080") in scopes[0]["headers"]
    assert (b"host", b"evil") not in scopes[0]["headers"]
    assert scopes[1]["raw_path"] == b"//a/%2e%2e/b" and scopes[1]["path"] == "//a/../b"


def test_pin_asgi_app_that_never_reads_the_body_and_the_connection_carries_on() -> None:
    """httpx posts 300 KiB to an app that answers without reading it, then GETs on the
    same connection; with ``lifespan="off"`` only ``http`` scopes are ever given."""
    types: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        types.append(scope["type"])
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["method"].encode()})

    async def main(reactor: Reactor) -> list[bytes]:
        port = await listen(reactor, asgi(app, half_close=True, lifespan="off"))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=PATIENCE
        ) as client:
            first = await client.post("/", content=b"x" * (300 << 10))
            second = await client.get("/")
        return [first.content, second.content]

    with error_records() as errors:
        assert scenario(main, timeout=60) == [b"POST", b"GET"]
    assert errors == []
    assert types == ["http", "http"]


def test_pin_asgi_after_the_loss_receive_keeps_saying_disconnect_and_send_raises() -> None:
    """The client goes mid-body: every later receive() is http.disconnect, send() raises
    an OSError, and the app raising then logs nothing at ERROR."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(4):
            seen.append((await receive())["type"])
        try:
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"late"})
        except OSError as error:
            seen.append(type(error).__name__)
        raise RuntimeError("an app failing after its client went")

    async def main(reactor: Reactor) -> None:
        loop = asyncio.get_running_loop()
        port = await listen(reactor, asgi(app, half_close=True, lifespan="off"))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(
            sock,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
        )  # a short chunk (one frame), and the rest never comes
        for _ in range(100):
            await asyncio.sleep(0.01)
            if seen:
                break
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: the server sees the loss
        for _ in range(300):
            await asyncio.sleep(0.01)
            if len(seen) == 5:
                break

    with error_records() as errors:
        scenario(main, timeout=60)
    assert seen == ["http.request", *["http.disconnect"] * 3, "ConnectionError"]
    assert errors == []
