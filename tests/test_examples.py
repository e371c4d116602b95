"""Every example, run as its own process and talked to over a real socket; SIGINT and
SIGTERM stop a served one gracefully (exit code 0, ``stopFactory`` ran)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from process_helpers import EXAMPLES, ROOT, recv_exactly, running


def talk(port: int, send: bytes = b"", expect: int | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if send:
            sock.sendall(send)
        if expect is not None:
            return recv_exactly(sock, expect)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def test_echo_example() -> None:
    with running("examples/echo.py", "--port", "0") as server:
        assert talk(server.port, b"hello", 5) == b"hello"
        server.stop()


def test_qotd_example() -> None:
    with running("examples/qotd.py", "--port", "0") as server:
        assert talk(server.port) == b"An apple a day keeps the doctor away\r\n"
        server.stop(signal.SIGTERM)


def test_qotd_factory_example_by_subclass() -> None:
    with running("examples/qotd_factory.py", "--port", "0") as server:
        assert talk(server.port) == b"configurable quote\r\n"
        server.stop()


def test_limited_echo_refuses_past_the_limit_and_frees_the_slot() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import limited_echo
    finally:
        sys.path.remove(str(EXAMPLES))
    assert limited_echo.factory.limit == 100
    code = "import limited_echo; limited_echo.factory.limit = 2; limited_echo.main()"
    with running("-c", code, "--port", "0", env={"PYTHONPATH": str(EXAMPLES)}) as server:
        port = server.port
        first = socket.create_connection(("127.0.0.1", port))
        second = socket.create_connection(("127.0.0.1", port))
        first.sendall(b"1")
        assert first.recv(1) == b"1"
        second.sendall(b"2")
        assert second.recv(1) == b"2"
        assert talk(port) == b"Too many connections, try later"
        first.close()
        time.sleep(0.2)
        assert talk(port, b"again", 5) == b"again"  # the slot was freed
        second.close()
        server.stop()


@pytest.mark.parametrize(
    "target",
    ["examples/qotd_factory.py:makeQOTDFactory", "examples/echo.py:Echo", "statewire.wire:QOTD"],
)
def test_serve_cli_accepts_factories_functions_and_protocol_classes(target: str) -> None:
    with running("-m", "statewire", "serve", target, "--listen", "tcp:0:interface=127.0.0.1") as (
        server
    ):
        reply = talk(server.port, b"x", 1) if "Echo" in target else talk(server.port)
        assert reply in (b"x", b"An apple a day keeps the doctor away\r\n")
        out = server.stop()
    assert "stopped" in out


def test_serve_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    with running(
        "-m",
        "statewire",
        "serve",
        "examples/echo.py:factory",
        "--uvloop",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ) as server:
        assert talk(server.port, b"uv", 2) == b"uv"
        out = server.stop()
    assert "(uvloop)" in out


def test_sigint_stops_gracefully_after_stop_factory(tmp_path: Path) -> None:
    """SIGINT while a client waits for its response: the response is delivered, the
    connection closes cleanly, stopFactory runs, and the exit code is 0."""
    server = tmp_path / "slow.py"
    server.write_text(
        textwrap.dedent(
            """
            from statewire import reactor
            from statewire.protocol import Factory, Protocol

            class Slow(Protocol):
                def dataReceived(self, data):
                    self.transport.write(b"accepted\\n")
                    self.transport.write(b"x" * 2_000_000)  # still being flushed at stop

            class Tracked(Factory):
                protocol = Slow
                def stopFactory(self):
                    print("stopFactory ran", flush=True)

            factory = Tracked()
            """
        )
    )
    with running(
        "-m", "statewire", "serve", f"{server}:factory", "--listen", "tcp:0:interface=127.0.0.1"
    ) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"go")
        assert sock.recv(9) == b"accepted\n"
        server.process.send_signal(signal.SIGINT)
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
        sock.close()
        out = server.wait()
    assert server.process.returncode == 0, out
    assert received == 2_000_000
    assert "stopFactory ran" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples/missing.py:factory", "no such file"),
        ("examples/echo.py:nothing", "has no attribute 'nothing'"),
        ("statewire.grammar_that_is_not:x", "cannot import"),
        ("statewire:__version__", "is a str, not a Factory"),
        ("time:time", "returned float, not a Factory"),
        ("noseparator", "MODULE:NAME"),
    ],
)
def test_serve_bad_target_is_a_one_line_error(target: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "statewire", "serve", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_port_in_use_exits_with_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "statewire",
                "serve",
                "statewire.wire:Echo",
                "--listen",
                f"tcp:{number}:interface=127.0.0.1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{number}" in done.stderr
