"""With ``HTTPFactory(half_close=True)``, a client that half-closes (sends its pipelined
requests, then ``shutdown(SHUT_WR)``) gets every complete request answered, in order, and
then the connection closes; a request cut short by the end of its stream is dropped
unanswered (as nginx does). In memory, wherever the stream is cut, with handlers that
answer at once and handlers that wait; then over loopback sockets on both transports. By
default the end of the stream is the client gone: handlers are cancelled or told."""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

import pytest
from http_helpers import TURNS, application, responses, serve
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_helpers import HOST, error_records, listen, scenario

from statewire._reactor import Reactor
from statewire.protocol import Factory, Protocol
from statewire.protocols.asgi import asgi
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.testing.memory import Clock, StringTransport

GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
)
REQUESTS = [GET, POST, CHUNKED, GET]
ANSWERS = [
    (200, b"GET /a 0  "),
    (200, b"POST /b 5 hello "),
    (200, b"POST /c 5 hello "),
    (200, b"GET /a 0  "),
]


async def waiting(request: Request, response: Response) -> None:
    """The test application, after a few loop turns: its requests wait in the buffer."""
    for _ in range(3):
        await asyncio.sleep(0)
    await application(request, response)


def half_closed(wire: bytes, handler: Any) -> tuple[bytes, bool]:
    """Feed ``wire`` in one read, end the client's stream at once (while waiting handlers
    still run), then let everything settle: what was written, and whether it closed."""

    async def main() -> tuple[bytes, bool]:
        factory = HTTPFactory(handler, date=False, half_close=True)
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(wire)
        protocol.readConnectionLost()
        for _ in range(TURNS * len(REQUESTS)):
            await asyncio.sleep(0)
        closed = transport.disconnecting
        protocol.connectionLost()
        return transport.value(), closed

    return asyncio.run(main())


@pytest.mark.parametrize("handler", [application, waiting], ids=["at once", "waiting"])
def test_complete_requests_are_answered_in_order_then_the_connection_closes(handler: Any) -> None:
    output, closed = half_closed(b"".join(REQUESTS), handler)
    assert responses(output) == ANSWERS
    assert closed


@pytest.mark.parametrize("handler", [application, waiting], ids=["at once", "waiting"])
@pytest.mark.parametrize(
    "tail",
    [
        b"",
        b"GET /cut HTTP/1.1\r\nHo",  # a head cut short
        b"GET /cut HTTP/1.1\r\nHost: x\r\n",  # no blank line yet
        POST[:-2],  # a body cut short
        CHUNKED[:-5],  # a chunked body cut short
        CHUNKED[:-2],  # its trailers cut short
    ],
)
def test_a_request_cut_short_by_the_end_of_the_stream_is_dropped(
    handler: Any, tail: bytes
) -> None:
    output, closed = half_closed(GET + POST + tail, handler)
    assert responses(output) == ANSWERS[:2]  # no 400, no partial response
    assert output.count(b"HTTP/1.1 ") == 2
    assert closed


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, len(b"".join(REQUESTS))), wait=st.booleans())
def test_wherever_the_stream_ends_the_complete_requests_get_their_answers(
    cut: int, wait: bool
) -> None:
    wire = b"".join(REQUESTS)
    complete = 0
    end = 0
    for request in REQUESTS:
        end += len(request)
        if end <= cut:
            complete += 1
    output, closed = half_closed(wire[:cut], waiting if wait else application)
    assert responses(output) == ANSWERS[:complete]
    assert closed


def test_the_end_of_the_stream_after_the_last_answer_closes_at_once() -> None:
    served = serve([GET, GET], half_close=True)
    assert responses(served.output) == [ANSWERS[0]] * 2
    assert served.closed


def test_a_handler_reading_a_body_cut_short_is_stopped_and_nothing_is_answered() -> None:
    seen: list[str] = []

    async def reader(request: Request, response: Response) -> None:
        try:
            await request.body.read()
        except BaseException as error:
            seen.append(type(error).__name__)
            raise
        await response.send(200, [], b"never")

    with error_records() as errors:
        output, closed = half_closed(POST[:-2], reader)
    assert output == b"" and closed
    assert seen in (["CancelledError"], ["ConnectionError"])
    assert errors == []


def _long_poll_run(half_close: bool, advance: float) -> tuple[bytes, bool, list[Any]]:
    """A long poll that asked to be told of its client's going (not cancelled), its
    client's stream ended; the clock then moved on by ``advance``: what was written,
    whether the connection closed, what the handler heard."""
    heard: list[Any] = []

    async def long_poll(request: Request, response: Response) -> None:
        told = asyncio.get_running_loop().create_future()
        request.on_disconnect(lambda: told.set_result(request.disconnected))
        heard.append(await told)
        try:
            await response.send(200, [], b"told")
        except ConnectionError as error:
            heard.append(type(error).__name__)

    async def main() -> tuple[bytes, bool, list[Any]]:
        factory = HTTPFactory(
            long_poll, date=False, cancel_on_disconnect=False, half_close=half_close
        )
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        clock = protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(GET)
        for _ in range(TURNS):
            await asyncio.sleep(0)
        assert transport.value() == b""  # it waits for its client to go
        protocol.readConnectionLost()
        clock.advance(advance)
        closed = bool(transport.disconnecting)
        if closed:
            protocol.connectionLost()  # (what the transport does once it has closed)
        for _ in range(TURNS):
            await asyncio.sleep(0)
        output, seen = transport.value(), list(heard)
        protocol.connectionLost()  # the end of the test: nothing left running
        for _ in range(TURNS):
            await asyncio.sleep(0)
        return output, closed, seen

    with error_records() as errors:
        result = asyncio.run(main())
    assert errors == []
    return result


def test_by_default_the_end_of_the_stream_is_the_client_gone() -> None:
    output, closed, heard = _long_poll_run(half_close=False, advance=0)
    assert output == b"" and closed
    assert heard == [True, "ConnectionError"]  # told, and its answer goes nowhere


def test_a_half_close_tells_the_handler_nothing_until_its_deadline() -> None:
    output, closed, heard = _long_poll_run(half_close=True, advance=29)
    assert output == b"" and not closed and heard == []  # still answering when looked at
    output, closed, heard = _long_poll_run(half_close=True, advance=30)
    assert output == b"" and closed and heard == [True, "ConnectionError"]


# -- over sockets --------------------------------------------------------------------------


class _Probe(Protocol):
    """Tells its factory whether the transport reported the peer's end of stream as a
    half-close (``readConnectionLost``) rather than closing the connection."""

    def readConnectionLost(self) -> None:
        self.factory.told.set_result(True)  # type: ignore[attr-defined]
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.factory.told.done():  # type: ignore[attr-defined]
            self.factory.told.set_result(False)  # type: ignore[attr-defined]


@functools.cache
def runtime_half_closes() -> bool:
    """Whether statewire's transports hand a protocol the peer's end of stream."""

    async def main(reactor: Reactor) -> bool:
        factory = Factory()
        factory.protocol = _Probe
        factory.told = asyncio.get_running_loop().create_future()  # type: ignore[attr-defined]
        port = await listen(reactor, factory)
        loop = asyncio.get_running_loop()
        with socket.create_connection((HOST, port)) as sock:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
            told: bool = await asyncio.wait_for(factory.told, 10)  # type: ignore[attr-defined]
            await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
        return told

    return scenario(main, timeout=30)


async def slow(request: Request, response: Response) -> None:
    """Answers the target and body after 20 ms: the requests behind wait in the buffer."""
    await asyncio.sleep(0.02)
    body = await request.body.read()
    await response.send(200, [("Content-Type", "text/plain")], request.target + b" " + body)


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "asyncio transport"])
def test_a_real_half_close_gets_its_pipelined_requests_answered(native: bool) -> None:
    if not runtime_half_closes():
        pytest.skip("the runtime closes on the peer's end of stream (no half-close hook yet)")

    async def main(reactor: Reactor) -> bytes:
        port = await listen(reactor, HTTPFactory(slow, date=False, half_close=True))
        loop = asyncio.get_running_loop()
        with socket.create_connection((HOST, port)) as sock:
            sock.setblocking(False)
            await loop.sock_sendall(sock, b"".join(REQUESTS) + b"GET /cut HTTP/1.1\r\nHost")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            for _ in range(1000):  # bounded: the server closes after the fourth answer
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
                if not data:
                    break
                received += data
        return received

    with error_records() as errors:
        received = scenario(main, timeout=60, native=native)
    assert responses(received) == [
        (200, b"/a "),
        (200, b"/b hello"),
        (200, b"/c hello"),
        (200, b"/a "),
    ]
    assert errors == []


def test_asgi_applications_get_their_bodies_and_answer_after_the_end_of_the_stream() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["path"].encode() + body})
        assert (await receive())["type"] == "http.disconnect"

    async def main() -> tuple[bytes, bool]:
        protocol = asgi(echo, date=False, half_close=True).buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"".join(REQUESTS) + b"POST /cut HTTP/1.1\r\nHost: x\r\n")
        protocol.readConnectionLost()
        for _ in range(TURNS * len(REQUESTS)):
            await asyncio.sleep(0)
        closed = transport.disconnecting
        protocol.connectionLost()
        return transport.value(), closed

    with error_records() as errors:
        output, closed = asyncio.run(main())
    assert responses(output) == [(200, b"/a"), (200, b"/bhello"), (200, b"/chello"), (200, b"/a")]
    assert closed and errors == []
