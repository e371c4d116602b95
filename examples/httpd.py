"""A small HTTP/1.1 server on statewire's declared HTTP machine.

    GET /           a short text
    POST /echo      the request body, streamed back as it arrives (chunked, or close-
                    delimited for HTTP/1.0)
    GET /bytes/N    N bytes (at most 16 MiB), written in 64 KiB pieces
    anything else   404 (405 for a known path with another method)

Keep-alive, pipelining, chunked uploads, ``Expect: 100-continue`` and the refusals of
``docs/http.md`` come from :mod:`statewire.protocols.http`; this file is only the handler.

python examples/httpd.py --port 8080
statewire serve examples/httpd.py:factory --listen tcp:8080:interface=127.0.0.1
statewire diagram examples/httpd.py:factory
curl -v http://127.0.0.1:8080/
"""

from __future__ import annotations

from statewire.protocols.http import HTTPFactory, Request, Response

GREETING = b"Hello from statewire.\n"
#: largest /bytes/N answered
MAX_BYTES = 16 << 20
PIECE = 64 << 10
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


async def handle(request: Request, response: Response) -> None:
    """Route by path and method."""
    path = request.path
    reading = request.method in (b"GET", b"HEAD")
    if path == b"/":
        if not reading:
            await response.send(405, [("Allow", "GET, HEAD")], b"method not allowed\n")
        else:
            await response.send(200, _TEXT, GREETING)
    elif path == b"/echo":
        if request.method != b"POST":
            await response.send(405, [("Allow", "POST")], b"method not allowed\n")
            return
        response.start(200, [("Content-Type", "application/octet-stream")])
        async for chunk in request.body:
            await response.write(chunk)
        await response.end()
    elif path.startswith(b"/bytes/") and reading:
        count = path[len(b"/bytes/") :]
        if not count.isdigit() or int(count) > MAX_BYTES:
            await response.send(400, _TEXT, b"N is a number of bytes up to 16 MiB\n")
            return
        size = int(count)
        response.start(
            200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        block = b"x" * PIECE
        while size > 0:
            await response.write(block[: min(size, PIECE)])
            size -= PIECE
        await response.end()
    else:
        await response.send(404, _TEXT, b"not found\n")


factory = HTTPFactory(handle)


def main() -> None:
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
