"""``statewire serve --log-level LEVEL`` (uvicorn's option): what the server (and, under
``--workers``, the supervisor and each worker) logs, from that level up. Judged by the
output of a server run in its own process on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time

import pytest

from tests.process_helpers import EXAMPLES, spawned, statewire_command, terminated
from tests.runtime_helpers import HOST

TARGET = f"{EXAMPLES / 'httpd.py'}:factory"


def _served(*flags: str) -> str:
    """The output of a server that answered one request, then was stopped (the port is
    chosen here: a quiet server says nothing of where it listens)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    listen = ("--listen", f"tcp:{port}:interface={HOST}")
    command = [sys.executable, "-m", "statewire", "serve", TARGET, *flags, *listen]
    with spawned(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection(HOST, port, timeout=10)
                connection.request("GET", "/")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert connection.getresponse().status == 200
        connection.close()
        return terminated(process)


@pytest.mark.parametrize("workers", [(), ("--workers", "1")])
def test_warning_leaves_out_the_info_lines(workers: tuple[str, ...]) -> None:
    quiet = _served("--log-level=warning", *workers)
    told = _served("--log-level=info", *workers)
    assert " INFO " not in quiet
    assert " INFO " in told and "stopped" in told


def test_debug_logs_more_than_info() -> None:
    assert "DEBUG" in _served("--log-level=debug")


def test_an_unknown_level_is_a_usage_error() -> None:
    done = statewire_command("serve", TARGET, "--log-level=verbose")
    assert done.returncode == 2
    assert "argument --log-level: invalid choice: 'verbose'" in done.stderr
