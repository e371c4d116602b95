"""Handed sockets: ``reactor.adoptStreamPort``, ``fd:`` and ``systemd:`` descriptions, and
socket activation by the real ``systemd-socket-activate`` (systemd itself does not run the
machine: the tool binds the socket and execs ``statewire serve`` with ``LISTEN_FDS`` set,
as systemd does). Real sockets on 127.0.0.1 only; every process started is stopped."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from statewire._reactor import Reactor
from statewire.endpoints import AdoptedStreamServerEndpoint, handedDescriptor, serverFromString
from statewire.error import CannotListenError
from statewire.protocol import Factory, Protocol
from statewire.testing.differential import free_port
from tests.process_helpers import ROOT, recv_exactly
from tests.runtime_helpers import HOST, scenario, self_signed_certificate

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(
    ACTIVATE is None, reason="systemd-socket-activate is not installed (Debian: systemd)"
)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def listening_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(8)
    return sock


async def echo_once(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    reply = await reader.readexactly(len(data))
    writer.close()
    await writer.wait_closed()
    return reply


def test_adopt_stream_port_serves_a_socket_the_caller_still_owns() -> None:
    handed = listening_socket()
    port_number = handed.getsockname()[1]

    async def body(reactor: Reactor) -> bytes:
        port = reactor.adoptStreamPort(handed.fileno(), socket.AF_INET, Factory.forProtocol(Echo))
        await port.ready
        assert port.getHost().port == port_number  # type: ignore[union-attr]
        reply = await echo_once(port_number, b"adopted")
        await port.stopListening()
        return reply

    try:
        assert scenario(body, timeout=20) == b"adopted"
        # the port closed its duplicate; the caller's socket still listens
        assert handed.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        handed.close()


def test_an_adopted_unix_socket_keeps_its_file(tmp_path: Path) -> None:
    path = tmp_path / "handed.sock"
    handed = socket.socket(socket.AF_UNIX)
    handed.bind(str(path))
    handed.listen(8)

    async def body(reactor: Reactor) -> None:
        port = reactor.adoptStreamPort(handed.fileno(), socket.AF_UNIX, Factory.forProtocol(Echo))
        await port.ready
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"u")
        assert await reader.readexactly(1) == b"u"
        writer.close()
        await writer.wait_closed()
        await port.stopListening()

    try:
        scenario(body, timeout=20)
        assert path.exists()  # not ours to remove
    finally:
        handed.close()


def test_adopting_what_is_not_a_listening_socket_is_refused() -> None:
    reactor = Reactor()
    factory = Factory.forProtocol(Echo)
    unbound = socket.socket()
    handed = listening_socket()
    reading, writing = os.pipe()
    try:
        with pytest.raises(CannotListenError, match="is not listening"):
            reactor.adoptStreamPort(unbound.fileno(), socket.AF_INET, factory)
        with pytest.raises(CannotListenError, match="is AF_INET, not AF_INET6"):
            reactor.adoptStreamPort(handed.fileno(), socket.AF_INET6, factory)
        with pytest.raises(CannotListenError, match="unsupported address family"):
            reactor.adoptStreamPort(handed.fileno(), socket.AF_PACKET, factory)
        with pytest.raises(CannotListenError, match="file descriptor"):
            reactor.adoptStreamPort(reading, socket.AF_INET, factory)
        assert factory.numPorts == 0  # refused before the factory started
    finally:
        unbound.close()
        handed.close()
        os.close(reading)
        os.close(writing)


def test_fd_description_adopts_then_closes_the_descriptor() -> None:
    handed = listening_socket()
    port_number = handed.getsockname()[1]
    fileno = os.dup(handed.fileno())
    handed.close()

    async def body(reactor: Reactor) -> bytes:
        endpoint = serverFromString(reactor, f"fd:{fileno}")
        assert isinstance(endpoint, AdoptedStreamServerEndpoint)
        assert endpoint.addressFamily == socket.AF_INET  # read from the socket
        port = await endpoint.listen(Factory.forProtocol(Echo))
        with pytest.raises(OSError):
            os.fstat(fileno)  # closed: the port has its own duplicate
        with pytest.raises(RuntimeError, match="adopted already"):
            endpoint.listen(Factory.forProtocol(Echo))
        reply = await echo_once(port_number, b"fd")
        await port.stopListening()
        return reply

    assert scenario(body, timeout=20) == b"fd"


def test_fd_description_with_a_key_serves_tls(tmp_path: Path) -> None:
    """``fd:N:privateKey=K:certKey=C`` (what ``serve --workers`` hands its workers for an
    ``ssl:`` port): the adopted socket's connections are TLS. A ``certKey`` alone, or a
    key that does not load, is refused with the description."""
    cert, key = self_signed_certificate(tmp_path)
    handed = listening_socket()
    port_number = handed.getsockname()[1]
    fileno = os.dup(handed.fileno())
    handed.close()

    async def body(reactor: Reactor) -> bytes:
        for wrong, said in (
            (f"fd:{fileno}:certKey={cert}", "lacks privateKey"),
            (f"fd:{fileno}:privateKey={tmp_path}/none.pem", "privateKey"),
        ):
            with pytest.raises(ValueError, match=said):
                serverFromString(reactor, wrong)
        endpoint = serverFromString(reactor, f"fd:{fileno}:privateKey={key}:certKey={cert}")
        port = await endpoint.listen(Factory.forProtocol(Echo))
        client = ssl.create_default_context(cafile=cert)
        reader, writer = await asyncio.open_connection(HOST, port_number, ssl=client)
        writer.write(b"over tls")
        reply = await asyncio.wait_for(reader.readexactly(8), 10)
        writer.close()
        await port.stopListening()
        return reply

    assert scenario(body, timeout=20) == b"over tls"


@pytest.mark.parametrize(
    ("environment", "description", "found"),
    [
        ({"LISTEN_FDS": "1"}, "systemd:domain=INET:index=0", (3, socket.AF_INET)),
        ({"LISTEN_FDS": "2"}, "systemd:domain=INET6:index=1", (4, socket.AF_INET6)),
        ({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:admin"}, "systemd:UNIX:name=admin", (4, 1)),
        ({"LISTEN_FDS": "1"}, "systemd:domain=INET:index=1", "systemd handed 1 sockets"),
        ({"LISTEN_FDS": "1"}, "systemd:domain=INET", "needs one of index= or name="),
        ({"LISTEN_FDS": "1"}, "systemd:domain=INET:index=0:name=x", "needs one of index="),
        ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}, "systemd:INET:name=db", "no socket named"),
        ({"LISTEN_FDS": "1"}, "systemd:domain=IPX:index=0", "not INET, INET6 or UNIX"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "1"}, "systemd:INET:index=0", "another process"),
        ({}, "systemd:domain=INET:index=0", "systemd handed no sockets"),
        ({}, "fd:fileno=x", "is not a number"),
        ({}, "tcp:8007", "names no handed socket"),
    ],
)
def test_systemd_descriptions_read_listen_fds(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    description: str,
    found: tuple[int, int] | str,
) -> None:
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)
    if environment:
        monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if isinstance(found, tuple):
        assert handedDescriptor(description) == found
    else:
        with pytest.raises(ValueError, match=re.escape(found)):
            handedDescriptor(description)


class Output:
    """A process's merged output, read as it comes (a full pipe would block it)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, "".join(list(self.lines)))
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not seen in:\n{''.join(self.lines)}")

    def stop(self) -> str:
        """SIGTERM; it must exit with 0. Its whole output."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)
        self._reader.join(10)
        text = "".join(self.lines)
        assert self.process.returncode == 0, text
        return text


@contextmanager
def started(command: list[str], pass_fds: tuple[int, ...] = ()) -> Iterator[Output]:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=pass_fds,
    )
    try:
        yield Output(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def read_line(sock: socket.socket) -> bytes:
    """Read up to a newline (a short answer); what came if the peer closed first."""
    data = b""
    for _ in range(1000):
        chunk = sock.recv(100)
        data += chunk
        if not chunk or data.endswith(b"\n"):
            break
    return data


def echo(port: int, data: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(data)
        return recv_exactly(sock, len(data))


def test_serve_listens_on_a_handed_descriptor() -> None:
    handed = listening_socket()
    port = handed.getsockname()[1]
    command = [sys.executable, "-m", "statewire", "serve", "examples/echo.py:factory"]
    try:
        with started([*command, "--listen", f"fd:{handed.fileno()}"], (handed.fileno(),)) as out:
            handed.close()  # the server's copy is the only one now
            out.wait_for("Factory starting on")
            assert echo(port, b"handed") == b"handed"
            text = out.stop()
    finally:
        handed.close()
    assert f"starting on 127.0.0.1:{port}" in text


@needs_activate
def test_socket_activation_with_systemd_socket_activate() -> None:
    assert ACTIVATE is not None
    port = free_port()
    command = [ACTIVATE, "-l", f"{HOST}:{port}", sys.executable, "-m", "statewire", "serve"]
    command += ["examples/echo.py:factory", "--listen", "systemd:domain=INET:index=0"]
    with started(command) as out:
        out.wait_for(f"Listening on {HOST}:{port} as 3")
        # the first connection makes the tool exec statewire, which finds it in the backlog
        assert echo(port, b"activated") == b"activated"
        assert echo(port, b"again") == b"again"
        text = out.stop()
    assert f"Factory starting on {HOST}:{port}" in text
    assert "serving examples/echo.py:factory on systemd:domain=INET:index=0" in text


PID_TARGET = """
import os
from statewire.protocol import Factory, Protocol

class Pid(Protocol):
    def dataReceived(self, data):
        self.transport.write(b"%d\\n" % os.getpid())

factory = Factory.forProtocol(Pid)
"""


@needs_activate
def test_socket_activation_of_workers_by_name(tmp_path: Path) -> None:
    assert ACTIVATE is not None
    target = tmp_path / "pid.py"
    target.write_text(PID_TARGET)
    port = free_port()
    command = [ACTIVATE, "-l", f"{HOST}:{port}", "--fdname=web", sys.executable, "-m"]
    command += ["statewire", "serve", f"{target}:factory", "--workers", "2", "--listen"]
    command += ["systemd:domain=INET:name=web"]
    with started(command) as out:
        out.wait_for(f"Listening on {HOST}:{port} as 3")
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"?")
            sock.settimeout(20)  # the supervisor and its workers start first
            answer = int(read_line(sock))
        out.wait_for(r"serving \S+ in 2 workers")
        workers = {
            int(pid) for pid in re.findall(r"worker \d \(pid (\d+)\) ready", "".join(out.lines))
        }
        assert answer in workers and len(workers) == 2
        text = out.stop()
    assert "2 workers (shared) listening on 127.0.0.1" in text
    assert len(re.findall("exited with code 0", text)) == 2


DEPLOY = ROOT / "docs" / "deploy.md"
UNIT = re.compile(r"<!-- file: (?P<name>\S+) -->\n```ini\n(?P<text>.*?)```", re.S)
#: where docs/deploy.md's service says statewire is installed; this interpreter here
INSTALLED = "/opt/statewire/venv/bin/python"


def documented_units() -> dict[str, str]:
    units = {m["name"]: m["text"] for m in UNIT.finditer(DEPLOY.read_text())}
    assert set(units) == {"statewire-echo.socket", "statewire-echo.service"}
    return {name: text.replace(INSTALLED, sys.executable) for name, text in units.items()}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_documented_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for name, text in documented_units().items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in documented_units())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_activate
def test_the_documented_service_runs_under_socket_activation() -> None:
    assert ACTIVATE is not None
    units = documented_units()
    socket_unit, service = units["statewire-echo.socket"], units["statewire-echo.service"]
    name = re.search(r"^FileDescriptorName=(\S+)$", socket_unit, re.M)
    start = re.search(r"^ExecStart=(.+)$", service, re.M)
    assert name is not None and start is not None
    port = free_port()  # the unit's own port (8007) may be taken on this machine
    command = [ACTIVATE, "-l", f"{HOST}:{port}", f"--fdname={name[1]}", *start[1].split()]
    with started(command) as out:
        out.wait_for(f"Listening on {HOST}:{port} as 3")
        with socket.create_connection((HOST, port), timeout=20) as sock:
            sock.sendall(b"first")
            assert recv_exactly(sock, 5, timeout=20) == b"first"
        out.wait_for(r"serving \S+ in \d+ workers")
        out.process.send_signal(signal.SIGHUP)  # ExecReload=
        out.wait_for("reloaded: the")
        assert echo(port, b"after reload") == b"after reload"
        out.stop()


def test_a_descriptor_that_is_no_socket_is_refused_and_nothing_leaks() -> None:
    """``fd:N`` naming a pipe: a ``ValueError`` naming the descriptor, and the duplicate
    made to look at it is closed (before, one descriptor leaked per attempt)."""
    reading, writing = os.pipe()
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            with pytest.raises(
                ValueError, match=f"file descriptor {reading} .* not an open socket"
            ):
                handedDescriptor(f"fd:{reading}")
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(reading)
        os.close(writing)
