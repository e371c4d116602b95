"""examples/httpd.py over real loopback sockets, judged by real clients: curl (keep-alive,
chunked upload, HTTP/1.0, Expect: 100-continue), httpx, http.client reading the responses
to requests pipelined on one raw socket, and wrk and h2load (pipelining HTTP/1.1) under
load (smoke tests: every response a 2xx, no socket error; nothing timed)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from process_helpers import running
from runtime_helpers import self_signed_certificate

HOST = "127.0.0.1"
GREETING = b"Hello from statewire.\n"
#: curl must not go through a proxy the environment may name
CURL_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


class _Shared:
    """A socket's reader shared by successive responses: ``http.client`` closes the reader
    at the end of each response, this one stays open."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running("examples/httpd.py", "--port", "0") as server:
        yield server.port
        server.stop()
        assert server.process.stdout is not None
        server.process.stdout.close()  # the helper leaves the pipe to the garbage collector


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl)")
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "20", *args],
        capture_output=True,
        timeout=30,
        check=True,
        env=CURL_ENV,
    )


def test_curl_reuses_one_connection_for_several_requests(port: int) -> None:
    url = f"http://{HOST}:{port}"
    done = curl("--verbose", f"{url}/", f"{url}/bytes/7", f"{url}/")
    assert done.stdout == GREETING + b"x" * 7 + GREETING
    assert b"Re-using existing connection" in done.stderr or b"Reusing existing" in done.stderr


def test_curl_chunked_upload_is_echoed(port: int, tmp_path: object) -> None:
    data = os.urandom(300_000)
    path = f"{tmp_path}/upload"
    with open(path, "wb") as upload:
        upload.write(data)
    done = curl(
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{path}",
        f"http://{HOST}:{port}/echo",
    )
    assert done.stdout == data


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """``examples/httpd.py`` on a TLS port (``statewire serve --listen ssl:...``), a
    certificate made for the run: its port and the certificate's path."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("https"))
    listen = f"ssl:0:interface={HOST}:privateKey={key}:certKey={cert}"
    with running("-m", "statewire", "serve", "examples/httpd.py:factory", "--listen", listen) as s:
        yield s.port, cert
        s.stop()
        assert s.process.stdout is not None
        s.process.stdout.close()


def test_curl_over_https_reuses_one_connection_and_echoes_a_chunked_upload(
    https: tuple[int, str], tmp_path: object
) -> None:
    """curl, verifying the certificate: three requests on one TLS connection, then a
    300 KB chunked upload echoed whole."""
    port, cert = https
    url = f"https://{HOST}:{port}"
    done = curl("--verbose", "--cacert", cert, f"{url}/", f"{url}/bytes/7", f"{url}/")
    assert done.stdout == GREETING + b"x" * 7 + GREETING
    assert b"Re-using existing connection" in done.stderr or b"Reusing existing" in done.stderr
    assert b"SSL connection using TLS" in done.stderr
    data = os.urandom(300_000)
    path = f"{tmp_path}/upload"
    with open(path, "wb") as upload:
        upload.write(data)
    chunked = ("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{path}")
    assert curl("--cacert", cert, *chunked, f"{url}/echo").stdout == data


def test_curl_http10_gets_a_close_delimited_echo(port: int) -> None:
    done = curl("--http1.0", "--include", "--data-binary", "abc", f"http://{HOST}:{port}/echo")
    head, body = done.stdout.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in head and body == b"abc"


def test_curl_expect_100_continue(port: int, tmp_path: object) -> None:
    data = os.urandom(100_000)
    path = f"{tmp_path}/upload"
    with open(path, "wb") as upload:
        upload.write(data)
    done = curl(
        "--verbose",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{path}",
        f"http://{HOST}:{port}/echo",
    )
    assert b"HTTP/1.1 100 Continue" in done.stderr
    assert done.stdout == data


def test_httpx_get_post_and_a_large_streamed_response(port: int) -> None:
    with httpx.Client(base_url=f"http://{HOST}:{port}", trust_env=False, timeout=20) as client:
        assert client.get("/").content == GREETING
        assert client.get("/nowhere").status_code == 404
        assert client.put("/").status_code == 405
        big = client.get("/bytes/3000000")
        assert big.headers["content-length"] == "3000000" and big.content == b"x" * 3_000_000

        def pieces() -> Iterator[bytes]:
            for i in range(50):
                yield b"%05d" % i

        echoed = client.post("/echo", content=pieces())
        assert echoed.content == b"".join(b"%05d" % i for i in range(50))
        assert client.head("/").content == b""


def test_pipelined_requests_on_a_raw_socket_are_answered_in_order(port: int) -> None:
    requests = [
        b"GET /bytes/3 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
    with socket.create_connection((HOST, port), timeout=20) as sock:
        sock.sendall(b"".join(requests))
        bodies = []
        with sock.makefile("rb") as stream:
            for _ in requests:
                response = http.client.HTTPResponse(sock)
                response.fp = _Shared(stream)  # one buffered reader for all the responses
                response.begin()
                bodies.append((response.status, response.read()))
            assert stream.read() == b""  # Connection: close closed it after the last
    assert bodies == [(200, b"xxx"), (200, b"hello"), (200, b"abc"), (200, GREETING)]


def test_a_smuggling_attempt_over_a_socket_is_refused_and_closed(port: int) -> None:
    attack = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=20) as sock:
        sock.sendall(attack)
        received = b""
        for _ in range(100):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert received.count(b"HTTP/1.1") == 1


def test_a_slow_reader_gets_a_large_response_whole(port: int) -> None:
    size = 8_000_000
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)
        sock.connect((HOST, port))
        sock.sendall(
            b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n" % size
        )
        received = bytearray()
        expected = size + len(GREETING)
        for _ in range(1_000_000):
            chunk = sock.recv(4096)  # small reads: the server's writes wait on us
            if not chunk:
                break
            received += chunk
            if received.endswith(GREETING) and len(received) > expected:
                break
    head, rest = bytes(received).split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d" % size in head
    assert rest[:size] == b"x" * size
    assert rest[size:].startswith(b"HTTP/1.1 200 OK") and rest.endswith(GREETING)


def test_wrk_under_load_gets_only_200s_and_no_socket_errors(port: int) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package wrk)")
    done = subprocess.run(
        ["wrk", "-t1", "-c16", "-d1s", "--timeout", "10s", f"http://{HOST}:{port}/"],
        capture_output=True,
        timeout=60,
        check=True,
        env=CURL_ENV,
    )
    report = done.stdout.decode()
    assert "Non-2xx" not in report and "Socket errors" not in report, report
    count = re.search(r"(\d+) requests in", report)
    assert count is not None and int(count.group(1)) > 0, report


def test_h2load_pipelined_http1_requests_all_succeed(port: int) -> None:
    """h2load in HTTP/1.1 mode, 4 requests in flight on each of 8 connections (pipelined):
    every response a 2xx, none failed or errored (a smoke test; nothing timed)."""
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (Debian package nghttp2-client)")
    done = subprocess.run(
        ["h2load", "--h1", "-n", "800", "-c", "8", "-m", "4", f"http://{HOST}:{port}/"],
        capture_output=True,
        timeout=60,
        check=True,
        env=CURL_ENV,
    )
    report = done.stdout.decode()
    assert "800 total, 800 started, 800 done, 800 succeeded, 0 failed, 0 errored" in report, report
    assert "status codes: 800 2xx" in report, report
