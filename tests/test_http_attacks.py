"""The HTTP server attacked, in memory: request smuggling (CL.TE, TE.CL, TE.TE
obfuscations, odd lengths and chunk sizes, trailers, injections), what follows a refusal
or a ``Connection: close``, slow clients against the deadlines, a handler's own mistakes
on the response side (header injection, writes after the end, a bad ``Content-Length``),
an ASGI application's, and hostile WebSocket frames. Each case is fed whole and, where
the framing matters, one byte at a time. Measurements (CPU per body byte, memory under a
non-reading client) are in the report of the review, never asserted here."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from http_helpers import application, responses, serve
from process_helpers import EXAMPLES
from runtime_helpers import error_records

from statewire.machine import Timeout
from statewire.protocols.asgi import asgi
from statewire.protocols.http import (
    KEEP_ALIVE_TIMEOUT,
    HTTPFactory,
    HTTPServer,
    Request,
    Response,
    keeping_alive,
)
from statewire.testing.memory import Clock, StringTransport

Handler = Callable[[Request, Response], Awaitable[None]]
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: x\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def split(wire: bytes) -> list[list[bytes]]:
    """``wire`` whole and one byte at a time."""
    return [[wire], [wire[i : i + 1] for i in range(len(wire))]]


@dataclass
class Spy:
    """The application of http_helpers, recording the targets it was called for."""

    targets: list[bytes]

    async def __call__(self, request: Request, response: Response) -> None:
        self.targets.append(request.target)
        await application(request, response)


def statuses(output: bytes) -> list[int]:
    return [status for status, _ in responses(output)]


# -- smuggling ----------------------------------------------------------------------------

REFUSED = {
    "CL.TE": (POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE.CL": (CHUNKED + b"Content-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    "TE chunked, identity": (POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    "TE space before colon": (POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    "TE xchunked": (POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "TE twice": (CHUNKED + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE then identity": (CHUNKED + b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400),
    "TE vertical tab": (POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    "TE quoted": (POST + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n', 400),
    "TE in HTTP/1.0": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "CL +5": (POST + b"Content-Length: +5\r\n\r\nhello", 400),
    "CL 0x5": (POST + b"Content-Length: 0x5\r\n\r\nhello", 400),
    "CL -5": (POST + b"Content-Length: -5\r\n\r\nhello", 400),
    "CL 19 digits": (POST + b"Content-Length: " + b"0" * 18 + b"5\r\n\r\nhello", 400),
    "CL 5 and 6": (POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    "CL 5, 6": (POST + b"Content-Length: 5, 6\r\n\r\nhello", 400),
    "CL empty": (POST + b"Content-Length:\r\n\r\nhello", 400),
    "CL over max_body": (POST + b"Content-Length: 999999999999999999\r\n\r\nhello", 413),
    "chunk 0x5": (CHUNKED + b"\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk -5": (CHUNKED + b"\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk 17 digits": (CHUNKED + b"\r\n" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk overflow": (CHUNKED + b"\r\n" + b"f" * 18 + b"\r\nhello\r\n0\r\n\r\n", 400),
    "chunk 2^64-1": (CHUNKED + b"\r\n" + b"f" * 16 + b"\r\nhello\r\n0\r\n\r\n", 413),
    "chunk ext CRLF in quotes": (CHUNKED + b'\r\n5;a="x\r\n"\r\nhello\r\n0\r\n\r\n', 400),
    "chunk line bare LF": (CHUNKED + b"\r\n5\nhello\r\n0\r\n\r\n", 400),
    "chunk data without CRLF": (CHUNKED + b"\r\n5\r\nhelloXX0\r\n\r\n", 400),
    "chunk data then bare LF": (CHUNKED + b"\r\n5\r\nhello\n0\r\n\r\n", 400),
    "chunk line over 4 KiB": (CHUNKED + b"\r\n5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    "trailer obs-fold": (CHUNKED + b"\r\n5\r\nhello\r\n0\r\nA: b\r\n c\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    "CR in a value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    "bare LF head": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "NUL in the target": (b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "space in the target": (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "two Hosts in HTTP/1.0": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "Expect other than 100-continue": (POST + b"Expect: x\r\nContent-Length: 0\r\n\r\n", 417),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_smuggling_vector_is_refused_and_what_follows_never_runs(name: str) -> None:
    wire, status = REFUSED[name]
    for chunks in split(wire + SMUGGLED):
        spy = Spy([])
        served = serve(chunks, spy)
        assert statuses(served.output)[-1] == status
        assert b"\r\nConnection: close\r\n" in served.output
        assert served.closed
        assert b"/smuggled" not in spy.targets


@pytest.mark.parametrize(
    "host",
    [b"a b", b"a/b", b"a@b", b"a, b", b"a,b", b"a:b", b"a:80:90", b"[::1", b"[::1]x", b"a\\b"],
)
def test_a_host_that_is_not_host_and_port_is_refused(host: bytes) -> None:
    # RFC 9112 §3.2: an invalid Host field value is 400; "a, b" or "a@b" are read as
    # different hosts by different parsers (cache poisoning, routing bypass)
    for version in (b"1.1", b"1.0"):
        spy = Spy([])
        wire = b"GET / HTTP/" + version + b"\r\nHost: " + host + b"\r\n\r\n" + SMUGGLED
        served = serve([wire], spy)
        assert statuses(served.output) == [400]
        assert served.closed
        assert spy.targets == []


@pytest.mark.parametrize("host", [b"", b"a", b"a:80", b"a:", b"[::1]:8080", b"1.2.3.4", b"a%41"])
def test_a_host_of_every_valid_form_is_accepted(host: bytes) -> None:
    served = serve([b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"])
    assert statuses(served.output) == [200]


HELLO = b"\r\n5\r\nhello\r\n0\r\n\r\n"
ACCEPTED = {
    "TE with a tab before it": POST + b"Transfer-Encoding:\tchunked\r\n" + HELLO,
    "TE in capitals": POST + b"Transfer-Encoding: CHUNKED\r\n" + HELLO,
    "CL 5, 5": POST + b"Content-Length: 5, 5\r\n\r\nhello",
    "CL 5 twice": POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "CL with spaces around": POST + b"Content-Length:  5 \r\n\r\nhello",
    "chunk size with leading zeros": CHUNKED + b"\r\n0005\r\nhello\r\n0\r\n\r\n",
    "quoted chunk extension": CHUNKED + b'\r\n5;a="x;y\\"z"\r\nhello\r\n0\r\n\r\n',
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_an_equivalent_spelling_of_a_framing_frames_the_same_body(name: str) -> None:
    for chunks in split(ACCEPTED[name] + SMUGGLED):
        spy = Spy([])
        served = serve(chunks, spy)
        assert [body.split(b" ")[2] for _, body in responses(served.output)] == [b"5", b"0"]
        assert spy.targets == [b"/", b"/smuggled"]
        assert not served.closed


def test_trailers_never_become_headers() -> None:
    # a Content-Length or Transfer-Encoding in the trailers frames nothing: the next
    # request starts right after the blank line, and the handler sees them as trailers
    wire = (
        CHUNKED + b"\r\n5\r\nhello\r\n0\r\nContent-Length: 50\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED
    )
    for chunks in split(wire):
        spy = Spy([])
        served = serve(chunks, spy)
        assert responses(served.output) == [
            (200, b"POST / 5 hello Content-Length=50;Transfer-Encoding=chunked;"),
            (200, b"GET /smuggled 0  "),
        ]


@pytest.mark.parametrize(
    "first",
    [
        b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /first HTTP/1.0\r\n\r\n",
        b"GET /first HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    ],
)
def test_a_request_after_the_last_one_of_a_connection_is_never_executed(first: bytes) -> None:
    for chunks in split(first + SMUGGLED):
        spy = Spy([])
        served = serve(chunks, spy)
        assert spy.targets == [b"/first"]
        assert statuses(served.output) == [200]
        assert served.closed


# -- slow clients -------------------------------------------------------------------------


@dataclass
class Driven:
    output: bytes
    closed: bool
    protocol: HTTPServer


def drive(steps: list[bytes | float], handler: Handler = application, **options: Any) -> Driven:
    """Feed bytes and advance a test clock by seconds, in order; the connection is not
    lost at the end (its state can be looked at). ``options``: the factory's."""

    async def main() -> Driven:
        clock = Clock()
        factory = HTTPFactory(handler, date=False, **options)
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        assert isinstance(protocol, HTTPServer)
        protocol.clock = clock
        transport = StringTransport()
        protocol.makeConnection(transport)
        for step in steps:
            if isinstance(step, bytes):
                if not transport.disconnecting:
                    protocol.dataReceived(step)
            else:
                clock.advance(step)
            for _ in range(20):
                await asyncio.sleep(0)
        driven = Driven(transport.value(), transport.disconnecting, protocol)
        protocol.connectionLost()
        for _ in range(20):
            await asyncio.sleep(0)
        return driven

    return asyncio.run(main())


def test_a_request_line_dribbled_a_byte_at_a_time_is_cut_off_by_its_deadline() -> None:
    # slowloris on the request line: a byte every 10 s used to postpone an idle timer for
    # ever (8 KiB of request line: 22 hours); the request line now has 15 s in all
    request = b"GET /" + b"a" * 20 + b" HTTP/1.1\r\n"
    steps: list[bytes | float] = []
    for byte in request:
        steps += [bytes([byte]), 1.0]
    assert not drive(steps[:28]).closed  # 14 s: still in time
    dribbled = drive(steps)
    assert dribbled.closed
    assert dribbled.output == b""


def test_the_request_line_deadline_restarts_for_each_request() -> None:
    steps: list[bytes | float] = [GET, 10.0, GET, 10.0, GET, 10.0]
    driven = drive(steps)
    assert statuses(driven.output) == [200, 200, 200]
    assert not driven.closed


def test_field_lines_arriving_in_time_do_not_extend_the_header_deadline() -> None:
    steps: list[bytes | float] = [b"GET / HTTP/1.1\r\n"]
    for i in range(20):
        steps += [b"X-%d: a\r\n" % i, 1.0]
    driven = drive(steps)
    assert statuses(driven.output) == [408]
    assert driven.closed


@pytest.mark.parametrize("seconds", [5, 65.5])
def test_keep_alive_timeout_sets_both_deadlines_of_a_head(seconds: float) -> None:
    """``HTTPFactory(keep_alive_timeout=...)`` (``statewire serve --asgi
    --timeout-keep-alive``): shorter or longer than the default 15 s, for the request line
    and for the field section alike."""
    before, after = seconds - 0.5, seconds + 0.5
    kept = drive([GET, before, GET, before], keep_alive_timeout=seconds)
    assert statuses(kept.output) == [200, 200]
    assert not kept.closed
    idle = drive([GET, after, GET], keep_alive_timeout=seconds)
    assert statuses(idle.output) == [200]
    assert idle.closed
    fields: list[bytes | float] = [b"GET / HTTP/1.1\r\n"]
    fields += [b"Host: a\r\n", before, b"\r\n"]
    assert statuses(drive(fields, keep_alive_timeout=seconds).output) == [200]
    fields[-1:] = [1.0]
    assert statuses(drive(fields, keep_alive_timeout=seconds).output) == [408]


def test_keep_alive_timeout_applies_to_the_protocol_the_factory_builds() -> None:
    """A protocol of one's own (set by ``forProtocol`` or after the factory is made) gets
    the deadline, its own input and idleness kept; one without a head deadline is refused."""

    others = {k: t for k, t in HTTPServer.timeouts.items() if k.name != "head"}

    class Mine(HTTPServer):
        timeouts = {**others, "head": Timeout(20.0, "idle", idle=True)}

    factory = HTTPFactory.forProtocol(Mine, application, keep_alive_timeout=60)
    built = type(factory.buildProtocol(None))  # type: ignore[arg-type]
    assert issubclass(built, Mine) and built.__name__ == "Mine"
    deadlines = [t for t in built.timeouts.values() if t.input_name == "idle"]
    assert deadlines == [Timeout(60.0, "idle", idle=True)]
    assert len(built.timeouts) == len(HTTPServer.timeouts)
    assert keeping_alive(Mine, 60) is built  # (made once)
    assert keeping_alive(HTTPServer, KEEP_ALIVE_TIMEOUT) is HTTPServer

    class Deadlineless(HTTPServer):
        timeouts = {}

    with pytest.raises(ValueError, match="Deadlineless has no deadline for its head"):
        keeping_alive(Deadlineless, 60)


def test_a_factorys_headers_go_with_every_response_refusals_included() -> None:
    """``HTTPFactory(headers=...)`` (``serve --asgi --header``): after ``Date`` and
    ``Server``, on answers and refusals alike; a ``Server`` among them is the server's."""
    headers = [("X-Frame-Options", "DENY"), (b"Server", b"mine")]
    answered = drive([GET, b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"], headers=headers)
    heads = re.findall(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n((?:[^\r]+\r\n)*)\r\n", answered.output)
    assert [status for status, _ in heads] == [b"200", b"400"]
    for _, fields in heads:
        assert fields.split(b"\r\n")[:2] == [b"Server: mine", b"X-Frame-Options: DENY"]
        assert fields.count(b"Server:") == 1


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("X-A", "1\r\nSet-Cookie: a=b")], "value of b'X-A' has surrounding whitespace or a"),
        ([("X-A", " 1")], "value of b'X-A' has surrounding whitespace"),
        ([("X A", "1")], "field name b'X A' is not a token"),
        ([("x-a", "\u20ac")], "is not Latin-1"),
        ([("content-length", "5")], "content-length is the server's own"),
        ([("Transfer-Encoding", "chunked")], "Transfer-Encoding is the server's own"),
        ([("Connection", "close")], "Connection is the server's own"),
        ([("Date", "today")], "Date is the server's own"),
    ],
)
def test_a_factorys_headers_cannot_inject_or_reframe(headers: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HTTPFactory(application, headers=headers)


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), True, "5"])
def test_keep_alive_timeout_refuses_what_is_no_seconds(seconds: Any) -> None:
    with pytest.raises(ValueError, match=r"keep_alive_timeout=.*: positive seconds"):
        HTTPFactory(application, keep_alive_timeout=seconds)


# -- the handler's mistakes ---------------------------------------------------------------


def test_writing_after_the_end_of_a_chunked_response_raises() -> None:
    # the bytes would follow the last chunk: read by the client (or a proxy) as the next
    # response, a response injected by whoever controls what the handler writes
    raised: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        response.start(200)
        await response.write(b"a")
        await response.end()
        try:
            await response.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
        except RuntimeError as error:
            raised.append(str(error))

    served = serve([GET + GET], handler)
    assert raised == ["the response is already finished"] * 2
    assert b"evil" not in served.output
    assert responses(served.output) == [(200, b"a"), (200, b"a")]


def test_a_write_to_a_finished_response_from_elsewhere_raises() -> None:
    kept: list[Response] = []
    raised: list[bool] = []

    async def handler(request: Request, response: Response) -> None:
        if not kept:
            kept.append(response)
            response.start(200)
            await response.write(b"one")  # chunked
            return  # the server ends it
        try:
            await kept[0].write(b"\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")
        except RuntimeError:
            raised.append(True)
        await response.send(200, [], b"two")

    served = serve([GET + GET], handler)
    assert raised == [True]
    assert responses(served.output) == [(200, b"one"), (200, b"two")]


@pytest.mark.parametrize(
    "fields",
    [
        [("Content-Length", "+3")],
        [("Content-Length", "-1")],
        [("Content-Length", "0x3")],
        [("Content-Length", "3, 3")],
        [("Content-Length", "3"), ("Content-Length", "30")],
    ],
)
def test_a_content_length_from_the_handler_must_be_one_number(
    fields: list[tuple[str, str]],
) -> None:
    # sent as given, "+3" or two differing lengths are read one way by the client and
    # another by a proxy in front (response splitting)
    async def handler(request: Request, response: Response) -> None:
        await response.send(200, fields, b"abc")

    with error_records() as errors:
        served = serve([GET + GET], handler)
    assert statuses(served.output) == [500]
    assert b"Content-Length: 3\r\n" not in served.output
    assert served.closed
    assert len(errors) == 1


def test_the_same_content_length_given_twice_is_sent_once() -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [("Content-Length", "3"), ("content-length", "3")], b"abc")

    served = serve([GET], handler)
    assert served.output.lower().count(b"content-length") == 1
    assert responses(served.output) == [(200, b"abc")]


@pytest.mark.parametrize(
    "field",
    [("X-A", "a\r\nSet-Cookie: evil=1"), ("X-A", "a\nb"), ("X-A\r\nSet-Cookie", "1")],
)
def test_a_header_injection_by_the_handler_is_refused_with_500(field: tuple[str, str]) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.send(200, [field], b"x")

    with error_records():
        served = serve([GET + GET], handler)
    assert statuses(served.output) == [500]
    assert b"evil" not in served.output and b"Set-Cookie" not in served.output


@pytest.mark.parametrize(("status", "wire"), [(200, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")])
def test_a_head_response_carries_no_body_whatever_the_handler_writes(
    status: int, wire: bytes
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.send(status, [], b"body!")

    served = serve([wire + GET], handler)
    assert served.output.count(b"body!") == 1  # the GET's only
    assert served.output.count(b"Content-Length: 5\r\n") == 2


def test_a_204_carries_no_body_whatever_the_handler_writes() -> None:
    async def handler(request: Request, response: Response) -> None:
        response.start(204, [("Content-Length", "5")])
        await response.write(b"body!")
        await response.end()

    served = serve([GET + GET], handler)
    assert served.output == b"HTTP/1.1 204 No Content\r\nServer: statewire\r\n\r\n" * 2


def test_a_handler_cancelled_before_its_task_first_ran_sees_the_cancellation() -> None:
    # the head, a chunk and a bad chunk size in one read: the handler waits for the body
    # (so it became a task), and the refusal cancels that task before it first ran. The
    # handler must see the CancelledError then and there (its finally blocks, its
    # async with exits), not a GeneratorExit from the garbage collector later.
    seen: list[str] = []

    async def handler(request: Request, response: Response) -> None:
        try:
            await request.body.read()
        except BaseException as error:
            seen.append(type(error).__name__)
            raise

    wire = CHUNKED + b"\r\n5\r\nhello\r\n0x5\r\n"
    with error_records() as errors:
        served = serve([wire], handler)
    assert statuses(served.output) == [400]
    assert seen == ["CancelledError"]
    assert errors == []


# -- ASGI ---------------------------------------------------------------------------------

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def serve_asgi(app: Callable[[Message, Receive, Send], Awaitable[None]], wire: bytes) -> Any:
    return serve([wire], asgi(app).handler)


def test_an_asgi_body_message_after_the_last_raises() -> None:
    raised: list[bool] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        try:
            await send({"type": "http.response.body", "body": b"INJECTED", "more_body": True})
        except RuntimeError:
            raised.append(True)

    served = serve_asgi(app, GET + GET)
    assert raised == [True, True]
    assert b"INJECTED" not in served.output
    assert responses(served.output) == [(200, b"a"), (200, b"a")]


def test_an_asgi_app_returning_in_the_middle_of_its_body_aborts_the_connection() -> None:
    # ending the chunked body for it would pass a truncated body off as complete
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    with error_records() as errors:
        served = serve_asgi(app, GET + GET)
    assert served.output.endswith(b"4\r\npart\r\n")  # no last chunk
    assert served.closed
    assert len(errors) == 1


def test_an_asgi_app_returning_after_the_start_only_gets_500() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    with error_records():
        served = serve_asgi(app, GET + GET)
    assert statuses(served.output) == [500]
    assert served.closed


# -- WebSocket ----------------------------------------------------------------------------


def load_echo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ws_echo", EXAMPLES / "websocket_echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo = load_echo()
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = b"abcd"
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    masked: bytes = echo.unmask(mask, payload)
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked


def after_handshake(output: bytes) -> bytes:
    return output.split(b"\r\n\r\n", 1)[1]


def test_empty_fragments_cost_nothing_while_a_message_is_under_way() -> None:
    # a list of fragments grew by one entry per empty continuation frame, for ever
    # (MAX_MESSAGE counts payload bytes only): memory without bound for 6 bytes a frame
    wire = HANDSHAKE + ws_frame(2, b"a", fin=False) + ws_frame(0, b"", fin=False) * 5000
    driven = drive([wire], echo.handle)
    message = driven.protocol.upgraded_to.message
    assert isinstance(message, bytearray) and message == b"a"
    done = serve([wire + ws_frame(0, b"b")], echo.handle)
    assert after_handshake(done.output) == bytes(echo.frame(2, b"ab"))


@pytest.mark.parametrize("code", [5000, 65535, 999, 1005, 2999])
def test_a_close_code_outside_the_registered_ranges_is_a_protocol_error(code: int) -> None:
    served = serve([HANDSHAKE + ws_frame(8, code.to_bytes(2, "big"))], echo.handle)
    assert after_handshake(served.output)[:4] == b"\x88\x14\x03\xea"  # 1002
    assert served.closed


@pytest.mark.parametrize(
    ("length", "answer"),
    [
        # RFC 6455 §5.2: the top bit of a 64-bit length MUST be 0: a protocol error
        (1 << 63, b"\x03\xeaa 64-bit length with its top bit set"),
        ((1 << 64) - 1, b"\x03\xeaa 64-bit length with its top bit set"),
        ((16 << 20) + 1, b"\x03\xf1frame too big"),
    ],
)
def test_a_frame_length_over_the_limit_is_refused_from_its_header(
    length: int, answer: bytes
) -> None:
    header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big") + b"abcd"
    served = serve([HANDSHAKE + header], echo.handle)
    assert after_handshake(served.output) == echo.frame(8, answer)
    assert served.closed
