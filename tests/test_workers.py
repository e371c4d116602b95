"""``statewire serve --workers N``: a supervisor and N worker processes, judged over real
sockets on 127.0.0.1. The served protocol answers each request with the process id of the
worker that took it and the ``VERSION`` of the target file it imported, so the tests see
which worker answered and what code it runs. Every wait is bounded in time and count, and
every process started is stopped (the supervisor's workers stop when their link to it
closes, even when it is killed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from statewire._reactor import Reactor
from statewire.error import CannotListenError
from statewire.protocol import Factory, Protocol
from statewire.runtime import listening
from statewire.workers import worker_count
from tests.process_helpers import ROOT, Server, recv_exactly, running
from tests.runtime_helpers import HOST, scenario, self_signed_certificate

TARGET = """
import os
import sys
from statewire.protocol import Factory, Protocol

VERSION = b"{version}"

class Answer(Protocol):
    def dataReceived(self, data):
        if data.startswith(b"slow"):
            self.transport.write(b"accepted\\n")
            self.transport.write(b"x" * 2_000_000)  # still being flushed at the stop
        else:
            self.transport.write(b"%d %s\\n" % (os.getpid(), VERSION))

class Tracked(Factory):
    protocol = Answer
    # one write a line: unbuffered, print() writes the text and the newline apart, and
    # another process's line may land between them
    def startFactory(self):
        sys.stdout.write(f"startFactory in {{os.getpid()}}\\n")
        sys.stdout.flush()
    def stopFactory(self):
        sys.stdout.write(f"stopFactory in {{os.getpid()}}\\n")
        sys.stdout.flush()

factory = Tracked()
"""

#: two workers on a free port of 127.0.0.1
TWO = ("--workers", "2", "--listen", "tcp:0:interface=127.0.0.1")
READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready")


def write_target(path: Path, version: str) -> None:
    path.write_text(textwrap.dedent(TARGET.format(version=version)))


class Supervised:
    """A running supervisor: its port, and what its log says of the workers."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.port = server.port

    def text(self) -> str:
        return "".join(list(self.server.output))

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20) -> list[str]:
        """Wait until ``pattern`` matched ``count`` times in the log; the matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.text())
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not seen {count} times in:\n{self.text()}")

    def ready_pids(self) -> dict[int, int]:
        """The latest ready worker of each slot."""
        return {int(slot): int(pid) for slot, pid in READY.findall(self.text())}

    def all_pids(self) -> set[int]:
        return {int(pid) for _, pid in READY.findall(self.text())}


def read_line(sock: socket.socket) -> bytes:
    """Read up to a newline (the answers are short lines); closed before it: an error."""
    data = b""
    for _ in range(1000):
        if data.endswith(b"\n"):
            return data
        chunk = sock.recv(100)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    raise AssertionError(f"no newline in {data[:100]!r}...")


def ask(port: int, timeout: float = 10) -> tuple[int, str]:
    """One request on its own connection: the answering worker's pid and VERSION."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(b"?\n")
        data = read_line(sock)
    pid, version = data.split()
    return int(pid), version.decode()


def answering(port: int, expected: set[int], tries: int = 200) -> set[int]:
    """Ask until every pid in ``expected`` has answered (at most ``tries`` requests)."""
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(ask(port)[0])
        if expected <= seen:
            break
    return seen


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pids: set[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@contextmanager
def supervised(
    target: Path, *options: str, listen: str = "tcp:0:interface=127.0.0.1"
) -> Iterator[Supervised]:
    """``statewire serve TARGET --workers 2`` on a free port of 127.0.0.1, its workers
    ready; stopped (and its workers with it) when the block ends."""
    command = ["-m", "statewire", "serve", f"{target}:factory", "--workers", "2"]
    with running(*command, "--listen", listen, *options) as server:
        supervisor = Supervised(server)
        try:
            supervisor.wait_for(r"serving \S+ in \d+ workers")
            yield supervisor
        finally:
            workers_seen = supervisor.all_pids()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                try:
                    server.process.wait(20)
                except subprocess.TimeoutExpired:
                    server.process.kill()
            if not wait_gone(workers_seen):
                for pid in workers_seen:
                    if not gone(pid):
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "answer.py"
    write_target(path, "one")
    return path


def test_two_workers_both_answer_and_each_runs_its_factory(target: Path) -> None:
    with supervised(target) as supervisor:
        pids = set(supervisor.ready_pids().values())
        assert len(pids) == 2
        assert supervisor.server.process.pid not in pids
        assert answering(supervisor.port, pids) == pids  # SO_REUSEPORT spreads them
        out = supervisor.server.stop(signal.SIGTERM)
    assert ("SO_REUSEPORT" in out) == listening.REUSE_PORT
    started = {int(p) for p in re.findall(r"startFactory in (\d+)", out)}
    stopped = {int(p) for p in re.findall(r"stopFactory in (\d+)", out)}
    assert started == stopped == pids


def test_a_killed_worker_is_restarted_and_serving_goes_on(target: Path) -> None:
    with supervised(target) as supervisor:
        before = supervisor.ready_pids()
        os.kill(before[0], signal.SIGKILL)
        # the dead worker's socket stays open: its connections wait for the new worker
        answers = [ask(supervisor.port)[0] for _ in range(20)]
        supervisor.wait_for(r"worker 0 \(pid \d+\) died \(signal SIGKILL\); restarting")
        supervisor.wait_for(READY.pattern, count=3)
        after = supervisor.ready_pids()
        assert after[1] == before[1] and after[0] != before[0]
        assert set(answers) <= {before[1], after[0]}
        assert answering(supervisor.port, set(after.values())) == set(after.values())
        supervisor.server.stop(signal.SIGTERM)


def test_sigterm_stops_every_worker_gracefully_and_exits_0(target: Path) -> None:
    with supervised(target) as supervisor:
        idle = socket.create_connection((HOST, supervisor.port), timeout=10)
        idle.sendall(b"?\n")
        read_line(idle)  # accepted and served: now idle
        busy = socket.create_connection((HOST, supervisor.port), timeout=10)
        busy.sendall(b"slow")
        assert recv_exactly(busy, 9) == b"accepted\n"
        supervisor.server.process.send_signal(signal.SIGTERM)
        received = 0
        for _ in range(10_000):  # bounded: 2 MB in reads of up to 64 KiB
            chunk = busy.recv(65536)  # a reset would raise here
            if not chunk:
                break
            received += len(chunk)
        assert idle.recv(100) == b""  # closed cleanly, not reset
        busy.close()
        idle.close()
        out = supervisor.server.wait()
    assert supervisor.server.process.returncode == 0, out
    assert received == 2_000_000
    assert len(re.findall(r"exited with code 0", out)) == 2
    assert len(re.findall(r"stopFactory in \d+", out)) == 2


def test_the_workers_stop_when_the_supervisor_is_killed(target: Path) -> None:
    with supervised(target) as supervisor:
        pids = set(supervisor.ready_pids().values())
        supervisor.server.process.kill()
        supervisor.server.process.wait(10)
        assert wait_gone(pids)
        supervisor.wait_for("the supervisor is gone: stopping", count=2)


class Load:
    """Clients that each make requests one connection at a time, counted, until stopped
    (at most ``most`` requests each)."""

    def __init__(self, port: int, clients: int = 2, most: int = 3000) -> None:
        self.port = port
        self.most = most
        self.answers: list[tuple[float, int, str]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        for _ in range(self.most):
            if self.stopping.is_set():
                return
            try:
                pid, version = ask(self.port, timeout=10)
            except OSError as error:
                self.errors.append(repr(error))
            else:
                self.answers.append((time.monotonic(), pid, version))
            time.sleep(0.002)  # a load, not a benchmark: the machine is shared

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


def test_reload_under_load_loses_no_request_and_runs_the_new_code(
    target: Path,
) -> None:
    with supervised(target, "--drain-timeout", "5") as supervisor:
        first = set(supervisor.ready_pids().values())
        load = Load(supervisor.port)
        try:
            for reload, version in enumerate(["second", "third-version"], start=1):
                time.sleep(0.3)
                write_target(target, version)
                supervisor.server.process.send_signal(signal.SIGHUP)
                supervisor.wait_for(r"reloaded: the 2 old workers drain", count=reload)
                supervisor.wait_for(r"exited with code 0", count=2 * reload)
            last_reload = time.monotonic()
            time.sleep(0.3)
        finally:
            load.stop()
        current = set(supervisor.ready_pids().values())
        supervisor.server.stop(signal.SIGTERM)
    assert load.errors == []
    versions = {version for _, _, version in load.answers}
    assert versions == {"one", "second", "third-version"}
    latest = {(pid, version) for at, pid, version in load.answers if at > last_reload}
    assert latest and {version for _, version in latest} == {"third-version"}
    assert {pid for pid, _ in latest} <= current
    assert not current & first


HTTP_TARGET = """
import os
from statewire.protocols.http import HTTPFactory

async def answer(request, response):
    await response.send(200, [], b"%d {version}" % os.getpid())

factory = HTTPFactory(answer, date=False)
"""


def test_a_reload_closes_kept_alive_http_connections_without_waiting_for_the_drain(
    tmp_path: Path,
) -> None:
    target = tmp_path / "web.py"
    target.write_text(HTTP_TARGET.format(version="one"))
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with supervised(target, "--drain-timeout", "30") as supervisor:
        kept = socket.create_connection((HOST, supervisor.port), timeout=10)
        with kept:
            kept.sendall(request)
            first = kept.recv(1000)
            assert first.startswith(b"HTTP/1.1 200") and first.endswith(b" one")
            target.write_text(HTTP_TARGET.format(version="two"))
            begun = time.monotonic()
            supervisor.server.process.send_signal(signal.SIGHUP)
            supervisor.wait_for(r"reloaded: the 2 old workers drain")
            assert kept.recv(1000) == b""  # closed by the old worker, which then exits
            supervisor.wait_for(r"exited with code 0", count=2)
        took = time.monotonic() - begun
        with socket.create_connection((HOST, supervisor.port), timeout=10) as fresh:
            fresh.sendall(request)
            assert fresh.recv(1000).endswith(b" two")
        supervisor.server.stop(signal.SIGTERM)
    assert took < 15  # not the 30 s drain timeout


def test_the_supervisor_serves_every_workers_metrics_labelled_by_pid(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    target = tmp_path / "web.py"
    target.write_text(HTTP_TARGET.format(version="one"))
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        metrics_port = probe.getsockname()[1]
    metrics_at = f"tcp:{metrics_port}:interface={HOST}"
    with supervised(target, "--metrics", metrics_at) as supervisor:
        pids = set(supervisor.ready_pids().values())
        answered: set[int] = set()
        for _ in range(40):  # (new connections: SO_REUSEPORT spreads them)
            with socket.create_connection((HOST, supervisor.port), timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(1000):
                    answer += chunk
            answered.add(int(answer.rsplit(b"\r\n\r\n", 1)[1].split()[0]))
        url = f"http://{HOST}:{metrics_port}/metrics"
        deadline = time.monotonic() + 10
        while True:  # (each worker counts a connection as it closes: a moment later)
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            started = families["statewire_connections"].samples
            total = sum(s.value for s in started if s.name.endswith("_total"))
            if total >= 40 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # (scrapes at once)
            begun = time.monotonic()
            texts = list(pool.map(lambda _: _scrape(url), range(4)))
            took = time.monotonic() - begun
        supervisor.server.stop(signal.SIGTERM)
    assert took < 5  # (no worker left out for its metrics_timeout)
    for each in texts:
        again = {f.name: f for f in text_string_to_metric_families(each)}
        assert {int(s.labels["pid"]) for s in again["statewire_transitions"].samples} == pids
    assert answered == pids
    by_pid = {
        int(s.labels["pid"]): s.value
        for s in started
        if s.name.endswith("_total") and s.labels["protocol"] == "HTTPServer"
    }
    assert set(by_pid) == pids and sum(by_pid.values()) == 40
    edges = families["statewire_transitions"].samples
    assert {int(s.labels["pid"]) for s in edges} == pids
    # each worker's HTTP responses, by status (every one a 200)
    responses = families["statewire_http_responses"].samples
    ok = {int(s.labels["pid"]): s.value for s in responses if s.name.endswith("_total")}
    assert {s.labels["status"] for s in responses} == {"200"}
    assert set(ok) == pids and sum(ok.values()) == 40


SLOW_TARGET = """
import asyncio, os
from statewire.protocols.http import HTTPFactory

async def answer(request, response):
    if request.target == b"/slow":
        await asyncio.sleep(4)
    await response.send(200, [], b"%d" % os.getpid())

factory = HTTPFactory(answer, date=False)
"""


def test_workers_draining_after_a_reload_still_give_their_metrics(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    target = tmp_path / "slow.py"
    target.write_text(SLOW_TARGET)
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        metrics_port = probe.getsockname()[1]
    url = f"http://{HOST}:{metrics_port}/metrics"
    with supervised(target, "--metrics", f"tcp:{metrics_port}:interface={HOST}") as supervisor:
        old = set(supervisor.ready_pids().values())
        slow = socket.create_connection((HOST, supervisor.port), timeout=20)
        with slow:
            slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # (the request is read: its worker's drain waits for it)
            supervisor.server.process.send_signal(signal.SIGHUP)
            supervisor.wait_for(r"reloaded: the 2 old workers drain")
            begun = time.monotonic()
            text = _scrape(url)
            took = time.monotonic() - begun
            holding = int(slow.recv(1000).rsplit(b"\r\n\r\n", 1)[1])
        supervisor.server.stop(signal.SIGTERM)
    assert holding in old and took < 5
    families = {f.name: f for f in text_string_to_metric_families(text)}
    pids = {int(s.labels["pid"]) for s in families["statewire_connections_open"].samples}
    assert holding in pids  # (the draining worker, its connection still open, answered)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def test_a_reload_that_cannot_start_keeps_the_old_workers(target: Path) -> None:
    with supervised(target) as supervisor:
        pids = set(supervisor.ready_pids().values())
        target.write_text("raise RuntimeError('broken on purpose')\n")
        supervisor.server.process.send_signal(signal.SIGHUP)
        supervisor.wait_for("reload abandoned: the old workers go on serving")
        assert answering(supervisor.port, pids) == pids
        out = supervisor.server.stop(signal.SIGTERM)
    assert "broken on purpose" in out


def test_workers_share_one_unix_socket(target: Path, tmp_path: Path) -> None:
    path = tmp_path / "answer.sock"
    # the TCP port first: the helper reads the port from the first "listening on" line
    with running(
        "-m", "statewire", "serve", f"{target}:factory", *TWO, "--listen", f"unix:{path}"
    ) as server:
        supervisor = Supervised(server)
        supervisor.wait_for(r"serving \S+ in 2 workers")
        assert "(shared) listening on " + str(path) in supervisor.text()
        pids = set(supervisor.ready_pids().values())
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"?\n")
            assert int(sock.recv(100).split()[0]) in pids
        server.stop(signal.SIGTERM)
    assert not path.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "0"], "at least 1"),
        (["--workers", "many"], "a number or auto"),
        (
            ["--workers", "2", "--listen", "ssl:0:privateKey=missing.pem"],
            "privateKey file '{cwd}/missing.pem' in 'ssl:0:privateKey=missing.pem' does not exist",
        ),
        (["--workers", "2", "--metrics", "nonsense:1"], "statewire serve: --metrics: "),
    ],
)
def test_usage_mistakes_exit_2(target: Path, arguments: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "statewire", "serve", f"{target}:factory", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert message.format(cwd=ROOT) in done.stderr


def test_a_target_the_workers_cannot_load_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "statewire", "serve", f"{tmp_path}/missing.py:factory", *TWO],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "no such file" in done.stderr
    assert "restarting" not in done.stderr


def test_a_port_in_use_exits_1(target: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "statewire",
                "serve",
                f"{target}:factory",
                *TWO[:2],
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, done.stderr
    assert "Couldn't listen" in done.stderr


def test_worker_count() -> None:
    assert worker_count("auto") == (os.cpu_count() or 1)
    assert worker_count("3") == 3


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def test_listen_tcp_reuse_port_shares_a_port() -> None:
    async def body(reactor: Reactor) -> list[bytes]:
        first = reactor.listenTCP(0, Factory.forProtocol(Echo), interface=HOST, reusePort=True)
        await first.ready
        port = first.getHost().port  # type: ignore[union-attr]
        second = reactor.listenTCP(port, Factory.forProtocol(Echo), interface=HOST, reusePort=True)
        await second.ready
        with pytest.raises(CannotListenError):  # a socket without SO_REUSEPORT may not join
            reactor.listenTCP(port, Factory.forProtocol(Echo), interface=HOST)
        replies = []
        for word in (b"a", b"b", b"c"):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(word)
            replies.append(await reader.readexactly(1))
            writer.close()
            await writer.wait_closed()
        return replies

    assert scenario(body, timeout=20) == [b"a", b"b", b"c"]


def test_listen_tcp_reuse_port_refused_where_the_platform_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listening, "REUSE_PORT", False)
    with pytest.raises(CannotListenError, match="SO_REUSEPORT is not available"):
        listening.bound_tcp(0, HOST, 5, reuse_port=True)


PEER_TARGET = """
import os
from statewire.protocol import Factory, Protocol

class Peer(Protocol):
    def connectionMade(self):
        peer = self.transport.getPeer()
        self.transport.write(b"%s:%d %d\\n" % (peer.host.encode(), peer.port, os.getpid()))

factory = Factory.forProtocol(Peer)
"""


def test_every_worker_reads_the_proxy_header(tmp_path: Path) -> None:
    target = tmp_path / "peer.py"
    target.write_text(PEER_TARGET)
    listen = "tcp:0:interface=127.0.0.1:proxy=v1:proxyTrusted=127.0.0.0/8"
    with supervised(target, listen=listen) as supervisor:
        pids = set(supervisor.ready_pids().values())
        seen: set[int] = set()
        for number in range(200):  # until both workers have answered
            with socket.create_connection((HOST, supervisor.port), timeout=10) as sock:
                sock.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.1 %d 443\r\n" % (1000 + number))
                where, pid = read_line(sock).split()
            assert where == b"192.0.2.7:%d" % (1000 + number)
            seen.add(int(pid))
            if seen == pids:
                break
        assert seen == pids
        supervisor.server.stop(signal.SIGTERM)


def test_every_worker_serves_tls_on_an_ssl_port(target: Path, tmp_path: Path) -> None:
    """``--listen ssl:...`` with workers: the supervisor binds the TCP sockets and hands
    each worker its socket with the key and certificate; every worker answers over TLS
    (and only over TLS: a plaintext request gets no answer)."""
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(cafile=cert)
    listen = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    with supervised(target, listen=listen) as supervisor:
        pids = set(supervisor.ready_pids().values())
        seen: set[int] = set()
        for _ in range(200):  # until both workers have answered
            with (
                socket.create_connection((HOST, supervisor.port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=HOST) as sock,
            ):
                sock.sendall(b"?\n")
                pid, version = read_line(sock).split()
            assert version == b"one"
            seen.add(int(pid))
            if seen == pids:
                break
        assert seen == pids
        with socket.create_connection((HOST, supervisor.port), timeout=10) as plain:
            plain.sendall(b"?\n" * 8)  # (more than a TLS record header: refused at once)
            refused = plain.recv(100)  # a TLS alert, or the end of the stream
            assert not refused or refused.startswith(b"\x15")
        supervisor.server.stop(signal.SIGTERM)


def test_workers_keep_the_key_of_a_handed_socket(target: Path, tmp_path: Path) -> None:
    """``fd:N:privateKey=K:certKey=C`` with workers: each worker serves the handed socket
    over TLS (before a review caught it, the key was dropped and the workers answered in
    plaintext)."""
    cert, key = self_signed_certificate(tmp_path)
    handed = socket.socket()
    handed.bind((HOST, 0))
    handed.listen(16)
    port = handed.getsockname()[1]
    listen = f"fd:{handed.fileno()}:privateKey={key}:certKey={cert}"
    command = [sys.executable, "-m", "statewire", "serve", f"{target}:factory"]
    process = subprocess.Popen(
        [*command, "--workers", "2", "--listen", listen],
        cwd=ROOT,
        pass_fds=(handed.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    handed.close()
    try:
        context = ssl.create_default_context(cafile=cert)
        for _ in range(100):  # bounded: until the workers accept (10 s)
            try:
                with (
                    socket.create_connection((HOST, port), timeout=10) as raw,
                    context.wrap_socket(raw, server_hostname=HOST) as tls,
                ):
                    tls.sendall(b"?\n")
                    answer = read_line(tls)
                break
            except (ConnectionError, ssl.SSLError):
                time.sleep(0.1)
        assert answer.split()[1] == b"one"
        with socket.create_connection((HOST, port), timeout=10) as plain:
            plain.sendall(b"?\n" * 8)
            refused = plain.recv(100)
            assert not refused or refused.startswith(b"\x15")  # never an answer
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)


def test_the_python_api_runs_a_target_in_workers(target: Path) -> None:
    code = (
        "import logging, sys\n"
        "from statewire.workers import serve\n"
        "logging.basicConfig(level=logging.INFO)\n"
        f"sys.exit(serve({str(target) + ':factory'!r}, ['tcp:0:interface=127.0.0.1'], 2))\n"
    )
    with running("-c", code) as server:
        supervisor = Supervised(server)
        supervisor.wait_for(r"serving \S+ in 2 workers")
        pids = set(supervisor.ready_pids().values())
        assert answering(server.port, pids) == pids
        server.stop(signal.SIGTERM)


SLOW_START = """
import asyncio

from statewire.protocol import Factory, Protocol


class Slow(Factory):
    protocol = Protocol

    async def beforeServing(self):  # (an application's slow startup)
        print("starting", flush=True)
        await asyncio.sleep(30)  # (stopped long before)


factory = Slow()
"""


def test_workers_stopped_while_they_start_are_no_error(tmp_path: Path) -> None:
    target = tmp_path / "slow.py"
    target.write_text(SLOW_START)
    command = ["-m", "statewire", "serve", f"{target}:factory", "--workers", "2"]
    with running(*command, "--listen", "tcp:0:interface=127.0.0.1") as server:
        supervisor = Supervised(server)
        supervisor.wait_for("starting", count=2)
        out = server.stop(signal.SIGTERM)
    assert re.findall(r"INFO worker \d \(pid \d+\) stopped while starting", out), out
    assert "ERROR" not in out and "did not start" not in out


def test_merged_expositions_keep_each_family_together_and_the_diagram_sums_them() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from statewire.metrics import Metrics, merged, transitions_in

    one, two = Metrics(), Metrics()
    one.transitions["P", "a", "go", "b"] = 3
    two.transitions["P", "a", "go", "b"] = 4
    two.transitions["P", "b", "back", "a"] = 1
    one.connections["P"] = 2
    text = merged([(11, one.exposition()), (22, two.exposition())])
    assert text.count("# TYPE statewire_transitions_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}  # (a valid text)
    samples = families["statewire_transitions"].samples
    assert sorted((s.labels["pid"], s.labels["from"], s.value) for s in samples) == [
        ("11", "a", 3),
        ("22", "a", 4),
        ("22", "b", 1),
    ]
    assert transitions_in(text, "P") == {("a", "go", "b"): 7, ("b", "back", "a"): 1}
    assert merged([]) == ""
