"""The HTTP server's access log (statewire/protocols/_http_access.py): one Combined Log
Format entry an exchange, over real sockets on loopback, for answers, refusals, responses
cut short and upgrades; the escaping that keeps a client from forging entries; and
``statewire serve --access-log`` with curl as the client, in one process and in workers."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import EXAMPLES, Server, running, statewire_command
from runtime_helpers import listen, scenario
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from grammars.proxy import ProxyHeader, encode
from statewire._reactor import Reactor
from statewire.protocols._http_access import AccessEntry, AccessLog, clf_time, combined
from statewire.protocols._log_text import escaped
from statewire.protocols.asgi import asgi
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.proxy import ProxyProtocolFactory

HOST = "127.0.0.1"
CURL_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
#: a Combined Log Format line, its time and size left open
LINE = re.compile(
    r"(?P<host>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<sent>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"'
)


class Kept(AccessLog):
    """The entries, kept in order."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[AccessEntry] = []

    def write(self, entry: AccessEntry) -> None:
        self.entries.append(entry)

    async def count(self, number: int) -> list[AccessEntry]:
        """Wait (10 s at most) until ``number`` entries were written; all of them."""
        deadline = time.monotonic() + 10
        while len(self.entries) < number and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert len(self.entries) >= number, self.entries
        return self.entries


def entry(**fields: object) -> AccessEntry:
    base: dict[str, object] = {
        "client": ("127.0.0.1", 40000),
        "method": b"GET",
        "target": b"/",
        "version": (1, 1),
        "status": 200,
        "sent": 22,
        "received": 1796133000.0,
        "duration": 0.001,
        "referer": None,
        "user_agent": b"curl/7.88.1",
        "complete": True,
    }
    base.update(fields)
    return AccessEntry(**base)  # type: ignore[arg-type]


async def _talk(port: int, data: bytes, close_after: int | None = None) -> bytes:
    """Send ``data``; read until the server closes, or (``close_after``) that many bytes
    came, then close."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    got = b""
    try:
        while close_after is None or len(got) < close_after:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    writer.close()
    return got


Handler = Callable[[Request, Response], Awaitable[None]]


async def _hello(request: Request, response: Response) -> None:
    if request.target == b"/fail":
        raise RuntimeError("the handler failed")
    if request.target == b"/forever":
        await asyncio.Event().wait()
    if request.target == b"/part":
        response.start(200, [("Content-Length", "100")])
        await response.write(b"x" * 40)
        await asyncio.Event().wait()
    if request.target == b"/stream":
        response.start(200)
        await response.write(b"abc")
        await response.end(b"de")
        return
    await response.send(200, [("Content-Type", "text/plain")], b"hello\n")


def _served(kept: Kept, body: Callable[[int], Awaitable[None]], wrap: bool = False) -> None:
    async def main(reactor: Reactor) -> None:
        factory = HTTPFactory(_hello, access_log=kept)
        port = await listen(reactor, ProxyProtocolFactory(factory) if wrap else factory)
        await body(port)

    scenario(main)


# -- the line ---------------------------------------------------------------------------


def test_a_line_reads_as_the_combined_format() -> None:
    line = combined(entry(referer=b"http://a.example/x?y=1"))
    assert line == (
        '127.0.0.1 - - [01/Dec/2026:13:50:00 +0000] "GET / HTTP/1.1" 200 22 '
        '"http://a.example/x?y=1" "curl/7.88.1"'
    )


def test_no_body_and_no_fields_are_dashes_and_a_refused_line_is_one() -> None:
    line = combined(entry(sent=0, user_agent=None, client=None))
    assert line == '- - - [01/Dec/2026:13:50:00 +0000] "GET / HTTP/1.1" 200 - "-" "-"'
    refused = combined(entry(method=b"", target=b"", version=None, status=400, sent=53))
    assert '"-" 400 53' in refused


def test_the_time_is_utc_with_english_months_whatever_the_locale() -> None:
    assert clf_time(0) == "01/Jan/1970:00:00:00 +0000"
    assert clf_time(1796133000.9) == "01/Dec/2026:13:50:00 +0000"
    assert clf_time(951782400) == "29/Feb/2000:00:00:00 +0000"


def test_quotes_backslashes_controls_and_high_bytes_are_escaped() -> None:
    assert escaped(b"/a?b=c&d") == "/a?b=c&d"
    assert escaped(b'evil" 200 5 "x') == "evil\\x22 200 5 \\x22x"
    assert escaped(b"a\\b") == "a\\x5Cb"
    assert escaped(b"\x1b[31mred\r\n") == "\\x1B[31mred\\x0D\\x0A"
    assert escaped("é".encode()) == "\\xC3\\xA9"


def _unescape(text: str) -> bytes:
    return re.sub(
        rb"\\x([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("ascii")
    )


@given(st.binary(max_size=200))
def test_escaping_is_printable_ascii_without_quotes_and_loses_nothing(data: bytes) -> None:
    text = escaped(data)
    assert text.isascii() and text.isprintable()
    assert '"' not in text
    assert "\\" not in text.replace("\\x", "")
    assert _unescape(text) == data


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_no_client_bytes_make_a_second_line_or_a_forged_field(target: bytes, agent: bytes) -> None:
    line = combined(entry(target=target, user_agent=agent, referer=agent))
    assert "\n" not in line and "\r" not in line
    match = LINE.fullmatch(line)
    assert match is not None, line
    assert _unescape(match["agent"]) == agent
    # (no request line read holds a space in its target: cut at the first and last)
    assert _unescape(match["request"].split(" ", 1)[1].rsplit(" ", 1)[0]) == target


# -- over sockets -----------------------------------------------------------------------


def test_keep_alive_and_pipelined_exchanges_are_logged_in_order() -> None:
    kept = Kept()

    async def body(port: int) -> None:
        await _talk(
            port,
            b"GET /a?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\nReferer: http://r/\r\n\r\n"
            b"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /c HTTP/1.0\r\n\r\n",
        )
        entries = await kept.count(4)
        assert [(e.method, e.target, e.version, e.status, e.sent) for e in entries] == [
            (b"GET", b"/a?x=1", (1, 1), 200, 6),
            (b"HEAD", b"/b", (1, 1), 200, 0),
            (b"GET", b"/stream", (1, 1), 200, 5),
            (b"GET", b"/c", (1, 0), 200, 6),
        ]
        first = entries[0]
        assert first.user_agent == b"t/1" and first.referer == b"http://r/"
        assert first.client is not None and first.client[0] == HOST
        assert all(e.complete and e.duration >= 0 for e in entries)
        assert abs(first.received - time.time()) < 30

    _served(kept, body)


def test_refusals_are_logged_with_what_was_read_of_the_request() -> None:
    kept = Kept()

    async def body(port: int) -> None:
        await _talk(port, b"NOT HTTP AT ALL\r\n\r\n")
        await _talk(
            port,
            b"GET /big HTTP/1.1\r\nHost: x\r\nuser-AGENT: big/1\r\n"
            b"Content-Length: 999999999999\r\n\r\n",
        )
        await _talk(port, b"GET /x HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n")
        await _talk(port, b"GET /fail HTTP/1.1\r\nHost: x\r\nUser-Agent: u\r\n\r\n")
        entries = await kept.count(4)
        assert [(e.method, e.target, e.version, e.status) for e in entries] == [
            (b"", b"", None, 400),
            (b"GET", b"/big", (1, 1), 413),
            (b"GET", b"/x", (1, 1), 400),
            (b"GET", b"/fail", (1, 1), 500),
        ]
        assert all(e.sent > 0 and e.complete for e in entries)
        assert entries[3].user_agent == b"u"  # (a refusal of an exchange has its fields)
        assert entries[1].user_agent == b"big/1"  # (and one of a head read whole)
        assert combined(entries[0]).split('"')[1] == "-"

    _served(kept, body)


def test_responses_cut_short_say_so() -> None:
    kept = Kept()

    async def body(port: int) -> None:
        await _talk(port, b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n", close_after=0)
        got = await _talk(port, b"GET /part HTTP/1.1\r\nHost: x\r\n\r\n", close_after=1)
        assert got.startswith(b"HTTP/1.1 200")
        entries = await kept.count(2)
        assert [(e.target, e.status, e.complete) for e in entries] == [
            (b"/forever", 499, False),
            (b"/part", 200, False),
        ]
        assert entries[0].sent == 0
        assert entries[1].sent == 40

    _served(kept, body)


def test_behind_a_proxy_header_the_client_is_the_one_the_header_names() -> None:
    kept = Kept()
    header = ProxyHeader.tcp(("203.0.113.7", 51000), (HOST, 80), 1)

    async def body(port: int) -> None:
        await _talk(
            port, encode(header) + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        (logged,) = await kept.count(1)
        assert logged.client == ("203.0.113.7", 51000)
        assert combined(logged).startswith("203.0.113.7 - - [")

    _served(kept, body, wrap=True)


def test_an_injected_line_cannot_forge_an_entry(caplog: pytest.LogCaptureFixture) -> None:
    # a field value may hold obs-text and quotes; the request line and the fields reach the
    # log escaped, one record a request
    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(_hello, access_log=True))
        await _talk(
            port,
            b'GET /q?a="b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            b'User-Agent: x" 200 1 "-" "y\\ \xff\r\n\r\n',
        )
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    with caplog.at_level(logging.INFO, logger="statewire.access"):
        scenario(main)
    records = [r for r in caplog.records if r.name == "statewire.access"]
    assert len(records) == 1
    text = records[0].getMessage()
    match = LINE.fullmatch(text)
    assert match is not None, text
    assert match["agent"] == "x\\x22 200 1 \\x22-\\x22 \\x22y\\x5C \\xFF"
    assert match["status"] == "200"
    assert isinstance(records[0].access, AccessEntry)  # type: ignore[attr-defined]


def test_no_log_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    async def main(reactor: Reactor) -> None:
        factory = HTTPFactory(_hello)
        assert factory.access_log is None
        assert HTTPFactory(_hello, access_log=False).access_log is None
        port = await listen(reactor, factory)
        await _talk(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    with caplog.at_level(logging.INFO, logger="statewire.access"):
        scenario(main)
    assert not [r for r in caplog.records if r.name == "statewire.access"]


def test_a_websocket_upgrade_is_logged_as_its_101() -> None:
    spec = importlib.util.spec_from_file_location("websocket_echo", EXAMPLES / "websocket_echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    websocket_factory = module.factory
    kept = Kept()
    websocket_factory.access_log = kept

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, websocket_factory)
        await _talk(
            port,
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            close_after=12,
        )
        (logged,) = await kept.count(1)
        assert (logged.target, logged.status, logged.sent, logged.complete) == (
            b"/chat",
            101,
            0,
            True,
        )

    scenario(main)


def test_asgi_applications_are_logged_through_httpx() -> None:
    async def hello(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("hi " + request.path_params["name"], status_code=201)

    app = Starlette(routes=[Route("/hello/{name}", hello)])
    kept = Kept()

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, asgi(app, lifespan="off", access_log=kept))
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", trust_env=False) as client:
            answer = await client.get("/hello/you", headers={"User-Agent": "httpx-test"})
            assert answer.status_code == 201
            await client.get("/missing")
        entries = await kept.count(2)
        assert [(e.target, e.status, e.sent, e.user_agent) for e in entries] == [
            (b"/hello/you", 201, 6, b"httpx-test"),
            (b"/missing", 404, 9, entries[1].user_agent),
        ]

    scenario(main)


# -- statewire serve --access-log ---------------------------------------------------------


def _curl(*args: str) -> None:
    subprocess.run(
        ["curl", "--silent", "--noproxy", "*", "--max-time", "20", "-o", os.devnull, *args],
        timeout=30,
        check=True,
        env=CURL_ENV,
    )


def _logged_line(server: Server) -> None:
    """Wait (10 s at most) until ``server`` printed an access log line."""
    deadline = time.monotonic() + 10
    while not any("statewire.access" in line for line in server.output):
        assert time.monotonic() < deadline, server.output
        time.sleep(0.02)


def _serving(target: str) -> list[str]:
    """``python`` arguments serving ``target`` on a free loopback port."""
    return ["-m", "statewire", "serve", target, "--listen", "tcp:0:interface=127.0.0.1"]


def _lines(path: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.02)
    return lines


@pytest.mark.parametrize("workers", [None, "2"], ids=["one process", "two workers"])
def test_serve_writes_the_lines_alone_to_the_file(tmp_path: Path, workers: str | None) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl)")
    path = tmp_path / "access.log"
    command = [*_serving("examples/httpd.py:factory"), f"--access-log={path}"]
    with running(*command, *(["--workers", workers] if workers else [])) as server:
        url = f"http://{HOST}:{server.port}"
        _curl("-A", "curl-test", "-e", "http://from/", f"{url}/", f"{url}/nope")
        _curl("--data-binary", "hello", f"{url}/echo")
        lines = _lines(path, 3)
        output = server.stop()
    assert len(lines) == 3, (lines, output)
    assert "statewire.access" not in output  # (the file's alone)
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(m["host"], m["request"], m["status"], m["sent"]) for m in parsed if m] == [
        (HOST, "GET / HTTP/1.1", "200", "22"),
        (HOST, "GET /nope HTTP/1.1", "404", "10"),
        (HOST, "POST /echo HTTP/1.1", "200", "5"),
    ]
    first = parsed[0]
    assert first is not None and (first["referer"], first["agent"]) == (
        "http://from/",
        "curl-test",
    )


def test_serve_logs_to_stderr_with_a_dash_and_refuses_other_protocols() -> None:
    with running(*_serving("examples/httpd.py:factory"), "--access-log", "-") as server:
        _curl(f"http://{HOST}:{server.port}/")
        _logged_line(server)
        output = server.stop()
    assert re.search(
        r'statewire\.access INFO 127\.0\.0\.1 - - \[.*\] "GET / HTTP/1\.1" 200 22', output
    )
    done = statewire_command("serve", "examples/echo.py:factory", "--access-log", "-")
    assert done.returncode == 2
    assert "--access-log" in done.stderr and "keeps no access log" in done.stderr


def test_a_log_that_raises_fails_no_exchange(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Kept):
        def write(self, entry: AccessEntry) -> None:
            super().write(entry)
            raise OSError("disk full")

    kept = Broken()

    async def body(port: int) -> None:
        got = await _talk(
            port,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /fail HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"HTTP/1.1 500 " in got
        await _talk(port, b"NOT HTTP\r\n\r\n")
        assert [e.status for e in await kept.count(3)] == [200, 500, 400]

    with caplog.at_level(logging.ERROR, logger="statewire.protocols.http"):
        _served(kept, body)
    failures = [r for r in caplog.records if "access log could not write" in r.getMessage()]
    assert len(failures) == 3


def test_a_response_cut_by_the_clients_end_of_stream_is_logged_as_cut() -> None:
    # the client half-closes (by default: gone) while the handler waits: the connection
    # closes, the handler's later writes are dropped, and the entry says what had left
    kept = Kept()
    go_on = asyncio.Event()

    async def handler(request: Request, response: Response) -> None:
        response.start(200, [("Content-Length", "10")])
        await response.write(b"abcd")
        await go_on.wait()
        await response.end(b"efghij")

    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, HTTPFactory(handler, access_log=kept))
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b"abcd"):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, got
            got += chunk
        writer.write_eof()
        await asyncio.sleep(0.05)
        go_on.set()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert rest == b""
        (logged,) = await kept.count(1)
        assert (logged.status, logged.sent, logged.complete) == (200, 4, False)

    scenario(main)


def test_long_fields_are_cut_and_wrong_settings_refused_at_once() -> None:
    line = combined(entry(user_agent=b"\xff" * 70000, referer=b"r" * 5000))
    assert len(line) < 4096 * 4 + 4096 + 200
    assert '"' + "r" * 4096 + '..." "' + "\\xFF" * 4096 + '..."' in line
    for wrong in (0, 1, "yes", AccessLog):
        with pytest.raises(TypeError, match="access_log is True, False, None or a AccessLog"):
            HTTPFactory(_hello, access_log=wrong)  # type: ignore[arg-type]
    assert isinstance(HTTPFactory(_hello, access_log=True).access_log, AccessLog)


def test_serve_finds_the_http_factory_a_wrapper_holds(tmp_path: Path) -> None:
    target = tmp_path / "proxied.py"
    target.write_text(
        "from statewire.protocols.http import HTTPFactory\n"
        "from statewire.proxy import ProxyProtocolFactory\n"
        "async def handle(request, response):\n"
        "    await response.send(200, [], b'ok')\n"
        "factory = ProxyProtocolFactory(HTTPFactory(handle))\n"
    )
    with running(*_serving(f"{target}:factory"), "--access-log", "-") as server:
        header = encode(ProxyHeader.tcp(("203.0.113.9", 4000), (HOST, 80), 1))
        with socket.create_connection((HOST, server.port), timeout=10) as sock:
            sock.sendall(header + b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        _logged_line(server)
        output = server.stop()
    assert "203.0.113.9 - - [" in output and '"GET /p HTTP/1.1" 200 2' in output
