"""The HTTP/1.1 server machine (statewire.protocols.http), in memory: framing of every body
kind, keep-alive, pipelining in order, the request-smuggling refusals one by one, limits,
deadlines on a test clock, and the invariance of it all under any chunking of the input.
Responses are read back by h11's client."""

from __future__ import annotations

import asyncio

import pytest
from http_helpers import TURNS, Served, application, responses, serve
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_helpers import error_records

from statewire.diagram import to_mermaid
from statewire.protocol import Protocol
from statewire.protocols.http import BODY_PIECE, HTTPFactory, HTTPServer, Request, Response
from statewire.testing.memory import Clock, StringTransport

GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
TE = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
POST = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\nT: 1\r\n\r\n"
)
HTTP10 = b"GET /d HTTP/1.0\r\n\r\n"
ANSWERS = [
    (200, b"GET /a 0  "),
    (200, b"POST /b 5 hello "),
    (200, b"POST /c 5 hello T=1;"),
]


def refused(served: Served, status: int) -> None:
    """The one response is ``status``, with ``Connection: close``, and the server closed."""
    assert [s for s, _ in responses(served.output)] == [status], served.output
    assert b"\r\nConnection: close\r\n" in served.output
    assert served.closed


def test_the_diagram_reads_like_http() -> None:
    text = to_mermaid(HTTPServer)
    for edge in (
        "s_head --> s_head : line / read_head_line",
        "s_head --> s_length_body : length_body",
        "s_length_body : fixed(size)",
        "s_chunk_data : fixed(size)",
        "s_head --> s_chunk_size : chunked_body",
        "s_chunk_size --> s_chunk_size : short (short_chunk)",
        "s_chunk_size --> s_chunk_whole : chunk_follows",
        "s_chunk_whole : fixed(size)",
        "s_chunk_whole --> s_chunk_size : whole_chunk",
        "s_chunk_size --> s_chunk_size : other (chunk_size)",
        "s_chunk_size --> s_chunk_data : chunk",
        "s_length_body --> s_body_piece : body",
        "s_body_piece --> s_length_body : next_piece",
        "s_body_piece --> s_responding : message_end",
        "s_chunk_data --> s_chunk_piece : chunk_data",
        "s_chunk_piece --> s_chunk_data : next_piece",
        "s_chunk_piece --> s_chunk_end : chunk_read",
        "s_chunk_end --> s_chunk_size : chunk_end",
        "s_chunk_size --> s_trailers : last (last_chunk)",
        "s_trailers --> s_responding : message_end",
        "s_responding --> s_head : responded",
    ):
        assert edge in text, edge


def test_pipelined_requests_of_every_body_kind_are_answered_in_order() -> None:
    served = serve([GET + POST + CHUNKED])
    assert responses(served.output) == ANSWERS
    assert not served.closed
    assert served.state == "head"


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_chunking_of_a_pipelined_stream_gives_the_same_responses(data: st.DataObject) -> None:
    wire = GET + POST + CHUNKED + b"\r\n" + GET + b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"
    cuts = sorted(data.draw(st.sets(st.integers(1, len(wire) - 1), max_size=30)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    served = serve(chunks)
    refusal = (400, b"400 whitespace between a field name and its colon\n")
    assert responses(served.output) == [*ANSWERS, ANSWERS[0], refusal]
    assert served.closed


def test_byte_by_byte_gives_the_same_responses() -> None:
    wire = GET + POST + CHUNKED
    served = serve([wire[i : i + 1] for i in range(len(wire))])
    assert responses(served.output) == ANSWERS


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=100), max_size=6))
def test_chunked_bodies_arrive_whole(chunks: list[bytes]) -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    joined = b"".join(chunks)
    expected = b"POST /u %d %s " % (len(joined), joined)
    assert responses(serve([head + body]).output) == [(200, expected)]


def test_http10_closes_unless_kept_alive() -> None:
    served = serve([HTTP10 + GET])
    assert responses(served.output) == [(200, b"GET /d 0  ")]
    assert b"Connection: close" in served.output and served.closed
    kept = serve([b"GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET])
    assert [s for s, _ in responses(kept.output)] == [200, 200]
    assert b"Connection: keep-alive" in kept.output and not kept.closed


def test_connection_close_ends_the_connection_after_the_response() -> None:
    served = serve([b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET])
    assert [s for s, _ in responses(served.output)] == [200]
    assert served.closed


def test_one_blank_line_before_a_request_is_ignored_two_are_refused() -> None:
    assert [s for s, _ in responses(serve([b"\r\n" + GET]).output)] == [200]
    refused(serve([b"\r\n\r\n" + GET]), 400)


# -- request smuggling and malformed heads: each one refused, the connection closed ----------

SMUGGLING = {
    "CL.TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE.CL": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 4\r\n\r\n0\r\n\r\n",
    "differing Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Content-Length: 2\r\n\r\nab",
    "differing Content-Length list": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 1, 2\r\n\r\nab",
    "signed Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na",
    "hex Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\na",
    "overflowing Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
    + b"9" * 40
    + b"\r\n\r\n",
    "TE not ending in chunked": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n",
    "TE chunked twice": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE with an empty coding": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: ,chunked\r\n\r\n",
    "TE xchunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "TE in HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    "whitespace before colon": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
    "bare LF in fields": b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    "bare LF ending the head": b"GET / HTTP/1.1\r\nHost: x\r\n\n",
    "bare LF request line": b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    "bare CR in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    "control in a name": b"GET / HTTP/1.1\r\nHost: x\r\nX\x01: a\r\n\r\n",
    "no Host": b"GET / HTTP/1.1\r\n\r\n",
    "two Hosts": b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "invalid chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
    "chunk size with a sign": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"-0\r\n",
    "overflowing chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1" * 17 + b"\r\n",
    "chunk size then space": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1 \r\na\r\n0\r\n\r\n",
    "missing CRLF after chunk": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\naXX0\r\n\r\n",
    "bare LF after chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n1\na\r\n0\r\n\r\n",
    "oversized chunk-size line": TE + b"1;" + b"a" * 5000 + b"\r\n",
    "obs-fold in trailers": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\nT: 1\r\n 2\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_vectors_are_refused_with_400_and_close(name: str) -> None:
    served = serve([SMUGGLING[name] + GET])
    refused(served, 400)
    # the same bytes dribbled in one at a time are refused the same way
    wire = SMUGGLING[name] + GET
    assert serve([wire[i : i + 1] for i in range(len(wire))]).output == served.output


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GET /" + b"a" * (8 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (64 << 10) + b"\r\n\r\n", 431),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: a\r\n" * 100 + b"\r\n",
            431,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(66))
            + b"\r\n",
            431,
        ),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 1\r\n\r\na", 417),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n", 413),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"400\r\n" + b"a" * 1024 + b"\r\n2\r\n",
            413,
        ),
    ],
)
def test_limits_answer_their_status_and_close(wire: bytes, status: int) -> None:
    refused(serve([wire + GET], max_body=1024), status)


def test_a_request_line_of_exactly_the_limit_is_fine() -> None:
    target = b"/" + b"a" * ((8 << 10) - len(b"GET  HTTP/1.1") - 1)
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == 8 << 10
    served = serve([line + b"\r\nHost: x\r\n\r\n"])
    assert [s for s, _ in responses(served.output)] == [200]


def test_identical_content_lengths_are_one() -> None:
    wire = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello"
    assert responses(serve([wire]).output) == [(200, b"POST /b 5 hello ")]


def test_413_is_said_before_any_body_byte() -> None:
    served = serve([b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"], max_body=1024)
    refused(served, 413)


# -- responses -------------------------------------------------------------------------------


async def streaming(request: Request, response: Response) -> None:
    if request.target == b"/empty":
        await response.send(204, [("Content-Length", "5")])
        return
    response.start(200, [("X-Kind", "stream")])
    await response.write(b"ab")
    await response.write(b"cd")
    await response.end(b"e")


def test_streamed_responses_are_chunked_in_11_and_close_delimited_in_10() -> None:
    served = serve([GET], streaming)
    assert b"Transfer-Encoding: chunked" in served.output
    assert served.output.endswith(b"2\r\nab\r\n2\r\ncd\r\n1\r\ne\r\n0\r\n\r\n")
    assert responses(served.output) == [(200, b"abcde")]
    old = serve([HTTP10], streaming)
    assert old.output.endswith(b"\r\n\r\nabcde") and old.closed
    assert b"Connection: close" in old.output


def test_head_and_204_have_no_body() -> None:
    served = serve([b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET])
    head, rest = served.output.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 10" in head  # the length a GET would have had
    assert rest.startswith(b"HTTP/1.1 200 OK")
    no_content = serve([b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n" + GET], streaming)
    assert no_content.output.startswith(b"HTTP/1.1 204 No Content\r\nServer: statewire\r\n\r\n")
    assert b"Content-Length" not in no_content.output.split(b"\r\n\r\n")[0]


def test_a_handler_that_raises_gets_a_500_and_the_connection_closes() -> None:
    async def broken(request: Request, response: Response) -> None:
        raise ValueError("oops")

    refused(serve([GET + GET], broken), 500)


def test_a_handler_raising_cancelled_before_it_waits_gets_a_500_and_runs_once() -> None:
    """A handler that awaits something cancelled before (a shared task) raises
    ``CancelledError`` in its first step, with no task of its own yet: nothing cancelled
    the exchange, so it is a failure as any other. (It once escaped from the read, left
    the head half read, and the next bytes ran the handler again as more of its fields.)"""
    calls: list[bytes] = []

    async def cancelled(request: Request, response: Response) -> None:
        calls.append(request.method)
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    refused(serve([GET + GET, b"X-Later: 1\r\n\r\n"], cancelled), 500)
    assert calls == [b"GET"]


def test_a_handler_raising_cancelled_after_it_waited_gets_a_500() -> None:
    """The same after its first wait, in its own task: nothing called the task's
    ``cancel()`` (``cancelling()`` is 0), so the handler failed: a 500 and a clean close
    (it was a reset with no response). Cancelled by the server, its task still ends
    cancelled (see test_http_attacks)."""

    async def cancelled(request: Request, response: Response) -> None:
        await asyncio.sleep(0)
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    refused(serve([GET + GET], cancelled), 500)


def test_expect_100_continue_is_answered_when_the_body_is_read() -> None:
    head = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    served = serve([head, b"hello"])
    assert served.output.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert responses(served.output) == [(200, b"POST /b 5 hello ")]


def test_expect_100_unanswered_means_no_body_comes_so_the_connection_closes() -> None:
    async def refuse(request: Request, response: Response) -> None:
        await response.send(403, body=b"no")

    head = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    served = serve([head], refuse)
    assert b"100 Continue" not in served.output
    assert [s for s, _ in responses(served.output)] == [403]
    assert served.closed
    # RFC 9110 §10.1.1: the answer says the connection closes
    assert b"\r\nConnection: close\r\n" in served.output.split(b"\r\n\r\n")[0] + b"\r\n"

    # the body sent anyway, whole, and read before the answer: the connection goes on
    async def refuse_later(request: Request, response: Response) -> None:
        await asyncio.sleep(0)
        await response.send(403, body=b"no")

    kept = serve([head + b"hello" + GET], refuse_later)
    assert [s for s, _ in responses(kept.output)] == [403, 403]
    assert b"Connection: close" not in kept.output
    assert not kept.closed

    # answered before the framing reached a body sent with its head (buffered behind it):
    # the body has come, so the connection goes on too, whether the handler waits after
    # its answer or not
    async def refuse_then_wait(request: Request, response: Response) -> None:
        await response.send(403, body=b"no")
        await asyncio.sleep(0)

    for handler in (refuse, refuse_then_wait):
        early = serve([head + b"hello" + GET], handler)
        assert [s for s, _ in responses(early.output)] == [403, 403], handler
        assert b"Connection: close" not in early.output
        assert not early.closed
    # half of it buffered: withheld still, so the answer says close and closes
    partial = serve([head + b"hel"], refuse_then_wait)
    assert [s for s, _ in responses(partial.output)] == [403]
    assert b"Connection: close" in partial.output and partial.closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            id="a body withheld for a 100",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", id="client close"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="HTTP/1.0"),
    ],
)
def test_a_handler_saying_keep_alive_on_a_closing_connection_is_corrected(
    request_bytes: bytes,
) -> None:
    """The server closes after this response whatever the handler's ``Connection`` field
    says: the field is replaced by ``Connection: close`` (a client told keep-alive would
    send its next request into a closing connection)."""

    async def keep(request: Request, response: Response) -> None:
        await response.send(200, [("Connection", "keep-alive"), ("X-A", "1")], b"ok")

    served = serve([request_bytes], keep)
    head = served.output.split(b"\r\n\r\n")[0]
    assert served.closed
    assert b"keep-alive" not in head.lower()
    assert head.count(b"Connection: close") == 1 and b"X-A: 1" in head


def test_a_handler_may_answer_before_the_body_which_is_then_skipped() -> None:
    async def early(request: Request, response: Response) -> None:
        await response.send(200, body=b"early")

    served = serve([POST[:-3], POST[-3:] + GET], early)
    assert responses(served.output) == [(200, b"early"), (200, b"early")]


def test_a_slow_body_reader_pauses_the_connection_but_gets_everything() -> None:
    got: list[int] = []

    async def slow(request: Request, response: Response) -> None:
        total = 0
        async for chunk in request.body:
            total += len(chunk)
            await asyncio.sleep(0)
        got.append(total)
        await response.send(200, body=b"%d" % total)

    chunk = b"%x\r\n%s\r\n" % (40000, b"a" * 40000)
    wire = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire += chunk * 5 + b"0\r\n\r\n"
    assert responses(serve([wire], slow).output) == [(200, b"200000")]


# -- deadlines -------------------------------------------------------------------------------


def test_a_stalled_field_section_gets_408() -> None:
    clock = Clock()
    stalled = serve([b"GET / HTTP/1.1\r\nHost: x\r\n"], clock=clock, advance=14.9)
    assert stalled.output == b"" and not stalled.closed
    clock = Clock()
    refused(serve([b"GET / HTTP/1.1\r\nHost: x\r\n"], clock=clock, advance=15.1), 408)


def test_each_deadline_of_a_head_counts_from_its_own_start() -> None:
    """The request line has 15 s from the previous answer, its fields 15 s from it: a
    request answered inside its read restarts the first, its request line the second."""

    async def main() -> None:
        protocol = HTTPFactory(application, date=False).buildProtocol(None)  # type: ignore[arg-type]
        clock = protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(GET)  # answered at t = 0
        clock.advance(14.9)
        protocol.dataReceived(b"GET /b HTTP/1.1\r\n")  # t = 14.9: the fields' 15 s
        clock.advance(14.9)  # t = 29.8
        assert not transport.disconnecting
        clock.advance(0.2)  # t = 30.0: the field section stalled
        assert [s for s, _ in responses(transport.value())] == [200, 408]
        assert transport.disconnecting
        protocol.connectionLost()

    asyncio.run(main())


def test_a_refusal_after_a_head_request_has_its_body() -> None:
    """A refusal before the next request line answers no HEAD: it has its body, whatever
    the request before it was."""
    served = serve([b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\n"])
    assert served.output.endswith(b"\r\n\r\n400 blank lines before the request line\n")
    assert served.closed


def test_a_body_stalling_after_its_response_gets_no_second_response() -> None:
    """The handler answered without reading the body; the body then stalls: the
    connection closes, with no 408 after the 200 (two responses to one request)."""

    async def hasty(request: Request, response: Response) -> None:
        await response.send(200, [], b"hi")

    clock = Clock()
    post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    served = serve([post], hasty, clock=clock, advance=31)
    assert responses(served.output) == [(200, b"hi")]
    assert served.closed


def test_an_idle_kept_alive_connection_is_closed_quietly() -> None:
    clock = Clock()
    served = serve([GET], clock=clock, advance=16)
    assert [s for s, _ in responses(served.output)] == [200]
    assert served.closed and served.state == "closed"


def test_a_stalled_body_gets_408() -> None:
    clock = Clock()
    served = serve([POST[:-2]], clock=clock, advance=31)
    assert b"408 Request Timeout" in served.output and served.closed


def _busy_then_reading(size: int, sent: int, busy: float, silent: float) -> bytes:
    """What the client reads: it sends the head and ``sent`` bytes of a ``size``-byte
    body, the handler is busy for ``busy`` seconds before reading it all (echoing its
    length), then the client stays silent for ``silent`` more seconds."""

    async def main() -> bytes:
        gate = asyncio.Event()

        async def slow(request: Request, response: Response) -> None:
            await gate.wait()  # slow storage, a lock: the handler is behind
            size = len(await request.body.read())
            await response.send(200, [(b"content-type", b"text/plain")], b"%d" % size)

        protocol = HTTPFactory(slow, date=False).buildProtocol(None)  # type: ignore[arg-type]
        clock = protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
        protocol.dataReceived(head + b"x" * sent)
        for _ in range(TURNS):
            await asyncio.sleep(0)
        clock.advance(busy)
        gate.set()
        for _ in range(TURNS):
            await asyncio.sleep(0)
        clock.advance(silent)
        for _ in range(TURNS):
            await asyncio.sleep(0)
        protocol.connectionLost()
        return transport.value()

    return asyncio.run(main())


@pytest.mark.parametrize("size", [3 * BODY_PIECE // 2, 4 * BODY_PIECE])
def test_a_handler_behind_on_a_sent_body_gets_no_408(size: int) -> None:
    """The client sent the whole body; the handler takes longer than the body deadline to
    read it (the rest buffered, or reading paused): the silence is the server's."""
    output = _busy_then_reading(size, size, busy=95, silent=0)
    assert responses(output) == [(200, b"%d" % size)]


def test_a_client_stalling_after_a_handler_behind_caught_up_gets_408() -> None:
    output = _busy_then_reading(4 * BODY_PIECE, 3 * BODY_PIECE, busy=95, silent=31)
    assert b"408 Request Timeout" in output


def _paced(head: bytes, pieces: list[bytes], every: float, rate: float = 500) -> bytes:
    """What the client reads: it sends ``head`` then one of ``pieces`` every ``every``
    seconds (a test clock), to a server whose bodies must come at ``rate`` bytes a second."""

    async def main() -> bytes:
        factory = HTTPFactory(application, date=False)
        factory.min_body_rate = rate
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        clock = protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(head)
        for piece in pieces:
            clock.advance(every)
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
            for _ in range(TURNS):
                await asyncio.sleep(0)
        protocol.connectionLost()
        return transport.value()

    return asyncio.run(main())


def test_a_body_trickled_below_the_minimum_rate_gets_408() -> None:
    # 100 bytes every 10 s: never silent for the idle deadline, but 10 bytes a second
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    output = _paced(head, [b"x" * 100] * 20, every=10)
    assert b"408 Request Timeout" in output and b"slower than 500 bytes a second" in output
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    output = _paced(chunked, [b"1\r\nx\r\n"] * 20, every=10)
    assert b"408 Request Timeout" in output


def test_a_body_at_the_minimum_rate_or_with_no_minimum_is_read() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 90000\r\n\r\n"
    output = _paced(head, [b"x" * 10000] * 9, every=10)  # 1,000 bytes a second for 90 s
    assert responses(output)[0][0] == 200
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1200\r\n\r\n"
    output = _paced(head, [b"x" * 100] * 12, every=10, rate=0)  # no minimum: 120 s
    assert responses(output)[0][0] == 200


@pytest.mark.parametrize("reading", [False, True])
def test_a_congested_period_is_excused_only_while_the_client_reads(reading: bool) -> None:
    # the client does not take the responses (the transport congested) while it trickles
    # its body: excused while it takes some of them, else counted
    async def main() -> bytes:
        factory = HTTPFactory(application, date=False)
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        clock = protocol.clock = Clock()
        transport = StringTransport()
        transport.bytes_sent = 0  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n")
        protocol.transportCongested(True)
        for _ in range(60):  # a byte every 5 s (a pace period), for 300 s
            if reading:
                transport.bytes_sent += 100  # type: ignore[attr-defined]
            clock.advance(5)
            if transport.disconnecting:
                break
            protocol.dataReceived(b"x")
        protocol.connectionLost()
        return transport.value()

    output = asyncio.run(main())
    assert (b"408 Request Timeout" in output) is not reading


def test_fields_may_be_any_bytes_like() -> None:
    """A handler's field names and values may be bytes, str, bytearray or memoryview (a
    writable one too: it cannot key the cache of checked fields, so it is checked each
    time), twice so that a cached entry is reused."""

    async def fields(request: Request, response: Response) -> None:
        given = [
            (b"X-A", memoryview(bytearray(b"one"))),
            (bytearray(b"X-B"), bytearray(b"two")),
            ("X-C", memoryview(b"three")),
        ]
        await response.send(200, given, body=b"ok")

    served = serve([GET + GET], fields)
    assert served.output.count(b"\r\nX-A: one\r\nX-B: two\r\nX-C: three\r\n") == 2
    assert [status for status, _ in responses(served.output)] == [200, 200]


def test_the_application_sees_headers_and_trailers() -> None:
    seen: list[object] = []

    async def look(request: Request, response: Response) -> None:
        await request.body.read()
        seen.append((request.headers.get(b"x-a"), request.headers.get_all(b"X-B")))
        seen.append(request.body.trailers.get(b"t"))
        await application(request, response)

    wire = b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\nx-b: 3\r\n"
    wire += b"Transfer-Encoding: chunked\r\n\r\n0\r\nT: z\r\n\r\n"
    serve([wire], look)
    assert seen == [(b"1", [b"2", b"3"]), b"z"]


# -- hostile input ---------------------------------------------------------------------------

_PIECES = [GET, POST, CHUNKED, b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"0\r\n", b"zz\r\n"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=40)), max_size=8),
    st.integers(1, 64),
)
def test_any_bytes_get_answers_never_a_crash(pieces: list[bytes], size: int) -> None:
    wire = b"".join(pieces)
    with error_records() as errors:
        served = serve([wire[i : i + size] for i in range(0, len(wire), size)])
    assert not errors  # a local error (our bug) is logged as an ERROR
    statuses = [s for s, _ in responses(served.output)]
    assert all(s in (200, 400, 408, 413, 414, 417, 431, 501, 505) for s in statuses)
    if statuses and statuses[-1] >= 400:
        assert served.closed


def test_handlers_that_wait_still_answer_pipelined_requests_in_order() -> None:
    async def slow_then_fast(request: Request, response: Response) -> None:
        for _ in range(int(request.target[1:])):
            await asyncio.sleep(0)
        await response.send(200, body=request.target)

    wire = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in (5, 0, 3, 0, 1))
    served = serve([wire], slow_then_fast)
    assert responses(served.output) == [(200, b"/%d" % n) for n in (5, 0, 3, 0, 1)]
    assert served.state == "head"


@pytest.mark.parametrize("chunked", [False, True])
def test_large_bodies_reach_the_handler_in_bounded_pieces(chunked: bool) -> None:
    pieces: list[int] = []

    async def sizes(request: Request, response: Response) -> None:
        async for piece in request.body:
            pieces.append(len(piece))
            await asyncio.sleep(0)  # a handler slower than the network
        await response.send(200, body=b"%d" % sum(pieces))

    size = 2 * BODY_PIECE + 44_000
    if chunked:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (size, b"b" * size)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        body = b"b" * size
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
    served = serve([head + body + GET], sizes, max_body=1 << 20)
    assert responses(served.output)[0] == (200, b"%d" % size)
    assert max(pieces) <= BODY_PIECE and len(pieces) >= 3


@pytest.mark.parametrize("cancel", [True, False])
def test_a_lost_client_cancels_the_handler_or_tells_it(cancel: bool) -> None:
    seen: list[str] = []

    async def streaming_forever(request: Request, response: Response) -> None:
        request.on_disconnect(lambda: seen.append("told"))
        response.start(200)
        try:
            for _ in range(10_000):  # bounded; the client is gone after a few turns
                await response.write(b"tick")
                await asyncio.sleep(0)
        except BaseException as error:
            seen.append(f"{type(error).__name__} disconnected={request.disconnected}")
            raise

    async def main() -> None:
        factory = HTTPFactory(streaming_forever, date=False, cancel_on_disconnect=cancel)
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        protocol.clock = Clock()
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(GET)
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.connectionLost()
        for _ in range(5):
            await asyncio.sleep(0)

    with error_records() as errors:
        asyncio.run(main())
    assert errors == []
    if cancel:
        assert seen == ["told", "CancelledError disconnected=True"]
    else:  # its next write says the client is gone
        assert seen == ["told", "ConnectionError disconnected=True"]


@pytest.mark.parametrize(
    ("request_bytes", "given", "closed", "expected"),
    [
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "x-closed",
            False,
            [b"Connection: x-closed"],
            id="a token holding close is not close",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "keep-alive, Close",
            True,
            [b"Connection: keep-alive, Close"],
            id="close among the tokens",
        ),
        pytest.param(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "Keep-Alive",
            False,
            [b"Connection: Keep-Alive"],
            id="HTTP/1.0 keep-alive given once",
        ),
        pytest.param(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "x-other",
            False,
            [b"Connection: x-other", b"Connection: keep-alive"],
            id="HTTP/1.0 keep-alive added to another token",
        ),
    ],
)
def test_a_handler_connection_field_is_read_by_its_tokens(
    request_bytes: bytes, given: str, closed: bool, expected: list[bytes]
) -> None:
    async def own(request: Request, response: Response) -> None:
        await response.send(200, [("Connection", given)], b"ok")

    served = serve([request_bytes], own)
    head = served.output.split(b"\r\n\r\n")[0]
    assert [line for line in head.split(b"\r\n") if line.lower().startswith(b"connection:")] == (
        expected
    )
    assert served.closed == closed


@pytest.mark.parametrize("end", ["body deadline", "client gone"])
def test_a_response_cut_short_is_aborted_not_closed(end: str) -> None:
    """A response whose head left and whose end did not, cut by the body's deadline or by
    the client's end of stream: a reset, never a close, which would end an HTTP/1.0 body
    (framed by the close) as if it were whole (RFC 9112 §8)."""

    async def streaming_early(request: Request, response: Response) -> None:
        response.start(200, [("Content-Type", "text/plain")])
        await response.write(b"BEGIN ")
        await request.body.read()
        await response.end(b"END")

    factory = HTTPFactory(streaming_early, date=False)
    data = b"POST /u HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc"
    transport = _cut_short(factory, data, end)
    assert transport.value().endswith(b"\r\n\r\nBEGIN ")
    assert transport.aborted


@pytest.mark.parametrize("mistake", ["body", "field value", "field name"])
def test_an_int_where_bytes_belong_is_a_handler_error_not_nul_bytes(mistake: str) -> None:
    """``bytes(16)`` would be sixteen NUL bytes: a body or a field given as an int is
    refused (``TypeError``: the handler's failure, a ``500``), never sent."""

    async def wrong(request: Request, response: Response) -> None:
        if mistake == "body":
            response.start(200)
            await response.write(16)  # type: ignore[arg-type]
        elif mistake == "field value":
            await response.send(200, [("X-Count", 10**6)], b"x")  # type: ignore[list-item]
        else:
            await response.send(200, [(7, b"v")], b"x")  # type: ignore[list-item]

    with error_records() as errors:
        served = serve([GET], wrong)
    refused(served, 500)
    assert b"\0" not in served.output
    # refused as what it is, before a byte is made of it (an int once became NUL bytes:
    # a 1 MB field value made a megabyte before its control bytes were refused)
    assert [type(record.exc_info[1]) for record in errors if record.exc_info] == [TypeError]


def test_upgrade_is_refused_to_an_http_1_0_client() -> None:
    """RFC 9110 §15.2: no ``101`` (no 1xx at all) to an HTTP/1.0 client; ``upgrade()``
    raises, and the handler that asked gets its ``500``."""

    async def upgrading(request: Request, response: Response) -> None:
        await response.upgrade(object(), [("Upgrade", "x")])

    served = serve([b"GET / HTTP/1.0\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"], upgrading)
    assert b" 101 " not in served.output
    assert [s for s, _ in responses(served.output)] == [500]


class _Tunnel(Protocol):
    """What the connection is switched to: keeps what it receives."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


@pytest.mark.parametrize("together", [False, True], ids=["body later", "body with head"])
def test_an_upgrade_asked_with_expect_100_continue_sends_100_before_101(together: bool) -> None:
    """RFC 9110 §7.8: a server that switches a request with ``Expect: 100-continue`` sends
    ``100`` before ``101``; the announced body is then read as the request's, and what
    follows it is the new protocol's (before 2026-12-03 no ``100`` came, and a body held
    back for it had the connection closed after the ``101``)."""
    tunnel = _Tunnel()

    async def upgrading(request: Request, response: Response) -> None:
        await response.upgrade(tunnel, [("Upgrade", "x")])

    head = (
        b"GET /u HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n"
        b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    reads = [head + b"helloTUNNEL"] if together else [head, b"helloTUNNEL"]
    served = serve(reads, upgrading)
    assert served.output.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 ")
    assert served.output.count(b"HTTP/1.1 101 ") == 1 and not served.closed
    assert tunnel.received == b"TUNNEL"


def test_a_chunked_response_cut_short_closes_gracefully_after_the_complete_ones() -> None:
    """A half-closed client: the complete response before it still leaves, and the cut
    chunked body closes gracefully (its missing last chunk says it is cut); only a body
    framed by the close is cut with a reset."""

    async def handler(request: Request, response: Response) -> None:
        if request.method == b"GET":
            await response.send(200, [("Content-Type", "text/plain")], b"complete")
            return
        response.start(200)
        await response.write(b"BEGIN ")
        await request.body.read()
        await response.end(b"END")

    factory = HTTPFactory(handler, date=False, half_close=True)
    data = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    )
    transport = _cut_short(factory, data, "client gone")
    assert b"\r\n\r\ncomplete" in transport.value()
    assert transport.value().endswith(b"6\r\nBEGIN \r\n")
    assert transport.disconnecting and not transport.aborted


def _cut_short(factory: HTTPFactory, data: bytes, end: str) -> StringTransport:
    """Feed ``data`` to one connection, then end it by the body's deadline or by the
    client's end of stream; the transport once the connection is lost."""

    async def main() -> StringTransport:
        protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
        clock = protocol.clock = Clock()
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        for _ in range(TURNS):
            await asyncio.sleep(0)
        if end == "body deadline":
            clock.advance(60)
        else:
            protocol.readConnectionLost()
        for _ in range(TURNS):
            await asyncio.sleep(0)
        protocol.connectionLost()
        return transport

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("target", "path", "query", "host"),
    [
        (b"/", b"/", b"", b"h"),
        (b"/a/b%20c?x=1&y=?", b"/a/b%20c", b"x=1&y=?", b"h"),
        (b"/?", b"/", b"", b"h"),
        (b"http://example.com", b"/", b"", b"example.com"),
        (b"http://example.com?q", b"/", b"q", b"example.com"),
        (b"https://example.com:8443/a?b", b"/a", b"b", b"example.com:8443"),
        (b"HTTP://[::1]:80/p?u=http://x/y", b"/p", b"u=http://x/y", b"[::1]:80"),
        (b"*", b"*", b"", b"h"),
        (b"example.com:443", b"example.com:443", b"", b"h"),
    ],
)
def test_a_requests_path_query_and_host(
    target: bytes, path: bytes, query: bytes, host: bytes
) -> None:
    """Request.path, .query and .host, from each target form a request may have (an
    absolute-form target's authority is the host, whatever Host says)."""
    from statewire.protocols.http import Headers

    request = Request(b"GET", target, (1, 1), Headers([(b"Host", b"h")]), body=None)  # type: ignore[arg-type]
    assert (request.path, request.query, request.host) == (path, query, host)
    bare = Request(b"GET", b"/", (1, 0), Headers([]), body=None)  # type: ignore[arg-type]
    assert bare.host is None
