"""``statewire serve --limit-max-requests N``: a process that took N requests makes way
for a fresh one (uvicorn's option). Alone, it stops gracefully and exits 0; as a worker,
its supervisor replaces it and no request meanwhile is refused. ``--limit-concurrency N``:
past N open connections, requests are answered ``503``. Served in processes of their own
and judged with ``http.client`` and raw sockets over 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import concurrent.futures
import http.client
import re
import signal
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from statewire.protocols.http import HTTPFactory
from tests.process_helpers import running, statewire_command
from tests.runtime_helpers import HOST

TARGET = """
import os
from statewire.protocols.http import HTTPFactory

async def handler(request, response):
    await response.send(200, [(b"Content-Type", b"text/plain")], b"%d" % os.getpid())

factory = HTTPFactory(handler)
"""

LISTEN = ("--listen", f"tcp:0:interface={HOST}")


@pytest.fixture
def target(tmp_path: Path) -> str:
    module = tmp_path / "pid_server.py"
    module.write_text(textwrap.dedent(TARGET))
    return f"{module}:factory"


def _pid(port: int) -> int:
    """One request on a connection of its own: the pid of the process that answered."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        answer = connection.getresponse()
        assert answer.status == 200
        return int(answer.read())
    finally:
        connection.close()


def test_a_process_alone_stops_after_its_last_request(target: str) -> None:
    with running("-m", "statewire", "serve", target, "--limit-max-requests=3", *LISTEN) as server:
        pids = {_pid(server.port) for _ in range(3)}
        out = server.wait()  # (it exits by itself: at most 20 s)
        code = server.process.returncode
    assert len(pids) == 1
    assert code == 0, out
    assert "the request limit reached: stopping" in out
    assert "Traceback" not in out


def test_a_worker_is_replaced_and_no_request_is_refused(target: str) -> None:
    command = ("-m", "statewire", "serve", target, "--workers=1", "--limit-max-requests=3")
    with running(*command, *LISTEN) as server:
        first = _pid(server.port)
        seen = [first]
        deadline = time.monotonic() + 30
        while seen[-1] == first and time.monotonic() < deadline:
            seen.append(_pid(server.port))  # (each answered: _pid asserts a 200)
            time.sleep(0.05)
        # the new worker takes its own three, then is replaced in turn
        second = seen[-1]
        while seen[-1] in (first, second) and time.monotonic() < deadline:
            seen.append(_pid(server.port))
            time.sleep(0.05)
        out = server.stop(signal.SIGTERM)
    assert len(set(seen)) == 3, seen
    assert seen.count(second) >= 3  # (the old one went on serving until replaced)
    assert re.search(rf"worker 0 \(pid {first}\) replaced: it drains", out), out
    assert re.search(rf"worker 0 \(pid {first}\) exited with code 0", out), out
    assert "died" not in out
    assert "Traceback" not in out


def test_a_worker_past_its_limit_before_it_is_ready_is_replaced_all_the_same(
    target: str,
) -> None:
    """Connections queued while the worker starts are answered as soon as it accepts,
    before the supervisor hears it is ready: its ask to be replaced comes early, and is
    kept until it can be acted on (not dropped, leaving the worker unlimited)."""
    command = ("-m", "statewire", "serve", target, "--workers=1", "--limit-max-requests=2")
    with running(*command, *LISTEN) as server:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            early = list(pool.map(lambda _: _pid(server.port), range(6)))
        seen = set(early)
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.add(_pid(server.port))
            time.sleep(0.05)
        out = server.stop(signal.SIGTERM)
    assert len(seen) >= 3, out  # two replacements at least
    assert "Traceback" not in out


def test_the_limit_takes_an_http_factory(tmp_path: Path) -> None:
    module = tmp_path / "echo.py"
    module.write_text("from statewire.protocol import Factory, Protocol\nfactory = Factory()\n")
    done = statewire_command("serve", f"{module}:factory", "--limit-max-requests=5", *LISTEN)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "statewire serve: --limit-max-requests: Factory is no HTTP factory (an HTTPFactory "
        "or asgi(app) counts its requests and connections)"
    )


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "many"])
def test_the_limit_is_a_positive_whole_number(target: str, value: str) -> None:
    done = statewire_command("serve", target, f"--limit-max-requests={value}", *LISTEN)
    assert done.returncode == 2
    assert f"argument --limit-max-requests: {value!r} is not a positive whole number" in (
        done.stderr
    )


def _status(port: int) -> int:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/")
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_past_the_concurrency_limit_requests_are_answered_503(target: str) -> None:
    command = ("-m", "statewire", "serve", target, "--limit-concurrency=2", *LISTEN)
    with running(*command) as server:
        idle = [socket.create_connection((HOST, server.port), timeout=10) for _ in range(2)]
        try:
            # two connections open, a third's request: refused, its connection closed
            deadline = time.monotonic() + 20
            refused = _status(server.port)
            while refused != 503 and time.monotonic() < deadline:
                refused = _status(server.port)  # (until the server has seen both)
                time.sleep(0.05)
            idle.pop().close()
            answered = _status(server.port)
            while answered != 200 and time.monotonic() < deadline:
                answered = _status(server.port)  # (until the server has seen the close)
                time.sleep(0.05)
        finally:
            for sock in idle:
                sock.close()
        out = server.stop(signal.SIGTERM)
    assert refused == 503
    assert answered == 200
    assert "HTTP 503: Service Unavailable: the server is at its concurrency limit" in out


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_limit_concurrency_is_a_positive_number(value: object) -> None:
    async def handler(request: Any, response: Any) -> None:
        pass

    with pytest.raises(ValueError, match=r"limit_concurrency=.*: a positive number"):
        HTTPFactory(handler, limit_concurrency=value)  # type: ignore[arg-type]
