"""A body that came whole with its head is read with it (``Engine.take_ahead``): the bytes
on the wire are those of the same requests read in pieces, where the body states read it,
at the edges of the fast path (64 KiB, ``max_body``, ``Expect``), for requests that
should have no body, behind handlers that wait, and when the client half-closes."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from http_helpers import serve_until_quiet

from statewire.machine import observe, unobserve
from statewire.protocols.http import HTTPFactory, Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import httpd

AHEAD = 64 << 10  # the largest body read with its head (BODY_HIGH_WATER)


class Moves:
    """An observer (``observe``): the state changes the machines make."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str, str]] = []

    def started(self, protocol: Any) -> Callable[[str, str, str, Any], None]:
        return self.moved

    def moved(self, source: str, input: str, target: str, frame: Any) -> None:
        if source != target:
            self.moves.append((source, input, target))

    def received(self, protocol: Any, size: int) -> None: ...
    def failed(self, protocol: Any, error: BaseException, local: bool) -> None: ...
    def stopped(self, protocol: Any) -> None: ...


async def waiting_echo(request: Request, response: Response) -> None:
    """Waits loop turns before reading the body (long enough for a body sent with the head
    to arrive whole), and one after: the handler is a task."""
    for _ in range(4):
        await asyncio.sleep(0)
    body = await request.body.read()
    await asyncio.sleep(0)
    await response.send(200, [], b"%d:" % len(body) + body[:8])


async def _serve(reads: list[bytes], factory: HTTPFactory, half_close: bool) -> tuple[bytes, bool]:
    return await serve_until_quiet(reads, factory, half_close=half_close)


def post(size: int, *fields: bytes, target: bytes = b"/echo", method: bytes = b"POST") -> bytes:
    head = method + b" " + target + b" HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n" % size
    body = (b"ab\r\n" * (size // 4 + 1))[:size]
    return head + b"".join(field + b"\r\n" for field in fields) + b"\r\n" + body


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

CASES = {
    "64 KiB, the largest read ahead": ([post(AHEAD), GET], {}, True),
    "64 KiB and 4, in length_body": ([post(AHEAD + 4), GET], {}, False),
    "over max_body": ([post(AHEAD), GET], {"max_body": AHEAD - 1}, True),  # (413 first)
    "at max_body": ([post(AHEAD), GET], {"max_body": AHEAD}, True),
    "HEAD with a body": ([post(8, method=b"HEAD", target=b"/"), GET], {}, True),
    "OPTIONS * with a body": ([post(8, method=b"OPTIONS", target=b"*"), GET], {}, True),
    "Expect: 100-continue": ([post(8, b"Expect: 100-continue"), GET], {}, False),
    # the body came before the handler asked for it: no 100, and what follows the body is
    # the next request (the connection used to close: the GET went unanswered)
    "Expect, waiting handler": (
        [post(8, b"Expect: 100-continue"), GET],
        {"handler": waiting_echo},
        False,
    ),
    "HTTP/1.0": ([post(8).replace(b"HTTP/1.1", b"HTTP/1.0"), GET], {}, True),
    "a request in a body": ([post(len(GET) + 2)[: -len(GET) - 2] + GET + b"\r\n", GET], {}, True),
    "chunked, tiny chunks and a long one": (
        [
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1\r\nx\r\n" * 50
            + b"%x\r\n" % (300 << 10)
            + b"y" * (300 << 10)
            + b"\r\n2;ext=1\r\nzz\r\n0\r\nX-T: 1\r\n\r\n",
            GET,
        ],
        {},
        True,
    ),
    "pipelined, waiting handler": ([post(12), post(4), GET], {"handler": waiting_echo}, True),
}


@pytest.mark.parametrize("half_close", [False, True], ids=["open", "half-closed"])
@pytest.mark.parametrize("case", list(CASES))
def test_read_with_its_head_or_in_pieces_alike(case: str, half_close: bool) -> None:
    requests, settings, ahead = CASES[case]  # ahead: no length_body (read whole)
    wire = b"".join(requests)
    handler = settings.get("handler", httpd.handle)
    options = {key: value for key, value in settings.items() if key != "handler"}
    outputs = []
    cuts = [[wire], [wire[:i] for i in [len(requests[0]) - 3]] + [wire[len(requests[0]) - 3 :]]]
    cuts.append([wire[i : i + 1000] for i in range(0, len(wire), 1000)])
    for reads in cuts:
        moves = Moves()
        observe(moves)
        try:
            factory = HTTPFactory(handler, date=False, half_close=True, **options)
            outputs.append(asyncio.run(_serve(reads, factory, half_close)))
        finally:
            unobserve(moves)
        if reads == [wire]:
            read_ahead = ("head", "length_body", "length_body") not in moves.moves
            assert read_ahead == ahead, moves.moves
    if "Expect" in case:  # a 100 Continue only when the body has not come yet: a matter of
        # the reads; what follows it is the same
        outputs = [(out.replace(b"HTTP/1.1 100 Continue\r\n\r\n", b""), c) for out, c in outputs]
    assert outputs[0] == outputs[1] == outputs[2]
    output, closed = outputs[0]
    # every request answered (the refused one, and an HTTP/1.0 one: alone, then closed);
    # the connection kept open, unless the client half-closed
    last = case in ("over max_body", "HTTP/1.0")
    answers = re.findall(rb"HTTP/1\.[01] [2-5]\d\d ", output)
    assert len(answers) == (1 if last else len(requests)), output[:300]
    assert closed == (last or half_close), case


def test_a_request_inside_a_body_is_body() -> None:
    """A body holding the bytes of a request is echoed, never answered (two responses for
    the two requests sent: the echo and the GET after it)."""
    smuggled = post(len(GET) + 2)[: -len(GET) - 2] + GET + b"\r\n"
    output, closed = asyncio.run(
        _serve([smuggled + GET], HTTPFactory(httpd.handle, date=False), False)
    )
    assert not closed
    assert output.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert output.count(b"Hello from statewire.") == 1
    assert GET in output  # the echoed body
