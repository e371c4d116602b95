"""``statewire serve``'s uvicorn spellings of ``--listen`` (``--host``, ``--port``,
``--uds``, ``--fd``, ``--ssl-keyfile``, ``--ssl-certfile``): the descriptions they stand
for, their mistakes, and a server started with them (TLS under ``--workers`` included),
judged over 127.0.0.1 and a UNIX socket."""

from __future__ import annotations

import argparse
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statewire._listen_cli import add_arguments, descriptions
from statewire.endpoints import serverParts
from tests.process_helpers import (
    EXAMPLES,
    recv_exactly,
    running,
    spawned,
    statewire_command,
    terminated,
)
from tests.runtime_helpers import HOST, self_signed_certificate

TARGET = f"{EXAMPLES / 'httpd.py'}:factory"
GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def _described(*argv: str, listen: list[str] | None = None) -> list[str] | None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return descriptions(parser.parse_args(argv), listen)


@pytest.fixture(autouse=True)
def _in_a_folder_with_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit cases' certificate and key files (named, not read) exist here."""
    for name in ("c.pem", "k.pem", "both.pem"):
        (tmp_path / name).write_text("")
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("argv", "kind", "values"),
    [
        (("--host", "0.0.0.0", "--port", "9000"), "tcp", {"port": "9000", "interface": "0.0.0.0"}),
        (("--port", "9000"), "tcp", {"port": "9000", "interface": "127.0.0.1"}),
        (("--host", "::1"), "tcp6", {"port": "8000", "interface": "::1"}),
        (("--uds", "/run/a:b.sock"), "unix", {"address": "/run/a:b.sock"}),
        (("--fd", "3"), "fd", {"fileno": "3"}),
        (
            ("--fd", "3", "--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"),
            "fd",
            {"fileno": "3", "privateKey": "k.pem", "certKey": "c.pem"},
        ),
        (
            ("--port", "8443", "--ssl-certfile", "both.pem"),
            "ssl",
            {
                "port": "8443",
                "interface": "127.0.0.1",
                "privateKey": "both.pem",
                "certKey": "both.pem",
            },
        ),
    ],
)
def test_each_spelling_stands_for_a_description(
    argv: tuple[str, ...], kind: str, values: dict[str, str]
) -> None:
    described = _described(*argv)
    assert described is not None and len(described) == 1
    assert serverParts(described[0]) == (kind, values)


def test_none_given_leaves_listen_alone() -> None:
    assert _described() is None
    assert _described(listen=["tcp:1"]) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--port", "9000", "--listen"), "--port stand for --listen: give one or the other"),
        (("--ssl-keyfile", "k.pem"), "--ssl-keyfile goes with --ssl-certfile"),
        (("--uds", "/a", "--fd", "3"), "one place to listen"),
        (("--uds", "/a", "--port", "1"), "one place to listen"),
        (("--uds", "/a", "--ssl-certfile", "c.pem"), "--uds serves no TLS here"),
        (("--port", "70000"), "--port 70000 is not in 0 to 65535"),
        (("--port", "8443", "--ssl-certfile", "/no/cert.pem"), "--ssl-certfile: no such file"),
    ],
)
def test_mistakes_are_one_line_exit_2(argv: tuple[str, ...], message: str) -> None:
    argv = tuple("--listen=tcp:0" if a == "--listen" else a for a in argv)
    done = statewire_command("serve", TARGET, *argv, cwd=Path.cwd())  # (the files' folder)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("statewire serve: ")
    assert message in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def test_tls_from_uvicorns_options_under_workers(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    port = _free_port()
    flags = ("--host", HOST, "--port", str(port), "--ssl-certfile", cert, "--ssl-keyfile", key)
    with running("-m", "statewire", "serve", TARGET, *flags, "--workers", "1") as server:
        context = ssl.create_default_context(cafile=cert)
        with (
            socket.create_connection((HOST, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(GET)
            answer = recv_exactly(tls, 12)
        out = server.stop(signal.SIGTERM)
    assert server.port == port
    assert answer == b"HTTP/1.1 200"
    assert "Traceback" not in out


def test_a_unix_socket_from_uds(tmp_path: Path) -> None:
    path = tmp_path / "http.sock"
    command = [sys.executable, "-m", "statewire", "serve", TARGET, "--uds", str(path)]
    with spawned(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        deadline = time.monotonic() + 20
        while not path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(GET)
            answer = recv_exactly(sock, 12)
        terminated(process)
    assert answer == b"HTTP/1.1 200"
