"""The loop's own transports (``Reactor.native_transports``): a close set off by asyncio's
resume of writing (a pipelined ``Connection: close`` response written once a slow client
took a large one) closes once, with nothing in the loop's error log. Before 2026-12-04 the
close ran inside asyncio's write-ready callback, and Python 3.11's selector transport
then ran its ``connection_lost`` twice, the second time failing in the loop's logs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from runtime_helpers import client_socket, error_records, in_mode, listen

from statewire._reactor import Reactor
from statewire.protocols.http import HTTPFactory, Request, Response

BIG = b"b" * 4_000_000


async def handler(request: Request, response: Response) -> None:
    if request.target == b"/small":
        await response.send(200, [], b"hello")
        return
    with contextlib.suppress(asyncio.TimeoutError):
        # (the response is written at once; the handler stops waiting for the client to
        # take it, so the next request is answered inside the resume itself)
        await asyncio.wait_for(response.send(200, [], BIG), 0.1)


@pytest.mark.parametrize("mode", ["native", "uvloop-native"])
def test_a_close_after_a_resume_is_clean(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler))
        requests = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        requests += b"GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        with error_records() as errors:
            sock = await client_socket(port, requests)
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0.3)  # (not reading: the server's writes pause)
            data = b""
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
                data += chunk
            sock.close()
            await asyncio.sleep(0.1)  # (the loop's callbacks after the close)
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"hello")
        assert BIG in data
        assert not errors, [record.getMessage() for record in errors]

    in_mode(mode, monkeypatch)(body)
