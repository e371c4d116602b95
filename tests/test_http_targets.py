"""Request-target forms against methods (RFC 9112 §3.2): origin-form for every method but
CONNECT, absolute-form (as to a proxy) for every method but CONNECT, authority-form for
CONNECT only, asterisk-form for OPTIONS only. Anything else is 400 with its reason, and
the connection closes. In memory, then over a loopback socket with curl as the client."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest
from http_helpers import responses, serve
from runtime_helpers import HOST, listen, scenario

from statewire._reactor import Reactor
from statewire.protocols.asgi import scope_of
from statewire.protocols.http import Body, Headers, HTTPFactory, Request, Response

ACCEPTED = [
    (b"GET", b"/"),
    (b"GET", b"/a/b?c=d"),
    (b"POST", b"//double"),
    (b"OPTIONS", b"*"),
    (b"OPTIONS", b"/a"),
    (b"GET", b"http://example.com/a?b"),
    (b"GET", b"http://example.com"),
    (b"GET", b"http://example.com?q"),
    (b"DELETE", b"https://[::1]:8443/x"),
    (b"PUT", b"ftp://h/f"),
]
CONNECTS = [b"example.com:443", b"[2001:db8::1]:80", b"10.0.0.1:8080"]
REFUSED = [
    (b"GET", b"*", "the asterisk-form target (*) is for OPTIONS only"),
    (b"POST", b"*", "the asterisk-form target (*) is for OPTIONS only"),
    (b"GET", b"example.com:443", "an authority-form target (host:port) is for CONNECT only"),
    (b"OPTIONS", b"example.com:443", "an authority-form target (host:port) is for CONNECT only"),
    (b"CONNECT", b"/", "the target of CONNECT is not host:port (authority-form)"),
    (b"CONNECT", b"*", "the target of CONNECT is not host:port (authority-form)"),
    (b"CONNECT", b"http://h:1/", "the target of CONNECT is not host:port (authority-form)"),
    (b"CONNECT", b"example.com", "the target of CONNECT is not host:port (authority-form)"),
    (b"CONNECT", b"example.com:", "the target of CONNECT is not host:port (authority-form)"),
    (b"CONNECT", b"a@example.com:1", "the target of CONNECT is not host:port (authority-form)"),
    (b"GET", b"a", "the request target is not /path (origin-form) or scheme://host/path"),
    (b"GET", b"http:///a", "the request target is not /path (origin-form) or scheme://host/path"),
    (
        b"GET",
        b"http://u@h/",
        "the request target is not /path (origin-form) or scheme://host/path",
    ),
    (b"GET", b"1x://h/", "the request target is not /path (origin-form) or scheme://host/path"),
    (b"GET", b"http:/h", "the request target is not /path (origin-form) or scheme://host/path"),
    (b"GET", b"/a#b", "a fragment (#) in the request target"),
    (b"OPTIONS", b"*#", "a fragment (#) in the request target"),
]


def request(method: bytes, target: bytes) -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, target)


@pytest.mark.parametrize(("method", "target"), ACCEPTED)
def test_each_form_its_methods_may_use_reaches_the_handler(method: bytes, target: bytes) -> None:
    served = serve([request(method, target) + request(b"GET", b"/next")])
    assert responses(served.output) == [
        (200, b"%s %s 0  " % (method, target)),
        (200, b"GET /next 0  "),
    ]
    assert not served.closed


@pytest.mark.parametrize("target", CONNECTS)
def test_connect_reaches_the_handler_and_its_2xx_opens_no_http_after_it(target: bytes) -> None:
    """A 2xx to CONNECT has no Content-Length or Transfer-Encoding (RFC 9110 §9.3.6) and
    what follows it is the tunnel's: never parsed as another request (without a protocol
    the handler upgraded the connection to, it closes after the response)."""
    served = serve([request(b"CONNECT", target) + request(b"GET", b"/next")])
    head, _, body = served.output.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    assert body == b"CONNECT %s 0  " % target  # the application's text, then the close
    assert served.closed and b"/next" not in body


@pytest.mark.parametrize(("method", "target", "reason"), REFUSED)
def test_a_form_the_method_may_not_use_is_400_and_closes(
    method: bytes, target: bytes, reason: str
) -> None:
    # pipelined after a good request (answered first) and before one never read
    wire = request(b"GET", b"/first") + request(method, target) + request(b"GET", b"/never")
    served = serve([wire])
    assert responses(served.output) == [
        (200, b"GET /first 0  "),
        (400, b"400 %s\n" % reason.encode()),
    ]
    assert served.output.endswith(b"\r\n\r\n400 %s\n" % reason.encode())
    assert b"\r\nConnection: close\r\n" in served.output
    assert served.closed


def test_the_refusal_comes_from_the_request_line_before_any_field_is_read() -> None:
    served = serve([b"GET * HTTP/1.1\r\n"])  # no field, no blank line: refused already
    assert [status for status, _ in responses(served.output)] == [400]
    assert served.closed


def _request(target: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> Request:
    return Request(b"GET", target, (1, 1), Headers(headers), Body())


def test_the_asgi_scope_of_an_absolute_form_target_takes_its_host_from_the_target() -> None:
    scope = scope_of(_request(b"http://real.example:8080?q=1", ((b"Host", b"other"),)))
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/", b"/", b"q=1")
    assert scope["headers"] == [(b"host", b"real.example:8080")]  # RFC 9112 §3.2.2
    scope = scope_of(_request(b"https://h/a%20b", ()))  # HTTP/1.0 style: no Host at all
    assert (scope["path"], scope["headers"]) == ("/a b", [(b"host", b"h")])
    scope = scope_of(_request(b"/p?x", ((b"Host", b"kept"),)))
    assert (scope["path"], scope["headers"]) == ("/p", [(b"host", b"kept")])


async def _echo_target(request: Request, response: Response) -> None:
    await response.send(200, [], b"%s %s" % (request.method, request.target))


async def _curl(*args: str) -> bytes:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = await asyncio.create_subprocess_exec(
        "curl",
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        "--include",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    out, _ = await process.communicate()
    return out


def test_curl_sending_each_form_gets_the_answer_its_method_allows() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl)")

    async def main(reactor: Reactor) -> list[bytes]:
        port = await listen(reactor, HTTPFactory(_echo_target))
        url = f"http://{HOST}:{port}/"
        return [
            await _curl("-X", "OPTIONS", "--request-target", "*", url),
            await _curl("--request-target", "*", url),
            await _curl("--request-target", "example.com:80", url),
            await _curl("--request-target", "http://example.com/p", url),
        ]

    options, get_star, get_authority, absolute = scenario(main, timeout=60)
    assert options.startswith(b"HTTP/1.1 200 OK\r\n") and options.endswith(b"\r\n\r\nOPTIONS *")
    assert get_star.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert get_star.endswith(b"400 the asterisk-form target (*) is for OPTIONS only\n")
    assert b"\r\nConnection: close\r\n" in get_star
    assert get_authority.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert absolute.endswith(b"\r\n\r\nGET http://example.com/p")
