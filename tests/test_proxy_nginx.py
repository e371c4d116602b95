"""nginx's stream module as a judge of the PROXY protocol (v1, ``proxy_protocol on``).

nginx runs as a child process (``daemon off``) with a configuration written to the test's
temporary directory, in front of two ``statewire serve`` processes listening with
``proxy=v1:proxyTrusted=127.0.0.1/32``; everything on free ports of the loopback
interface. The protocol behind it answers each line with the address it sees: each client's
own address and port must reach it, over IPv4 and (where the machine has it) IPv6. Then one
backend is killed mid-run: nginx's stream upstream fails over passively (a refused
``connect()`` is retried on the next server, ``proxy_next_upstream on`` being the default,
and the server is set aside for ``fail_timeout``), so every new client is served by the
other one; the clients that were relayed to the killed backend are closed by nginx.

Debian: ``apt-get install nginx-light libnginx-mod-stream`` (the stream module is a dynamic
module there, loaded by ``load_module``)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from process_helpers import Server, running
from runtime_helpers import HOST
from test_proxy_server import ask, served

from statewire.testing.differential import free_port

NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).is_file()), None
)


def stream_module() -> tuple[str | None, str]:
    """How this nginx gets its stream module: ``(load_module line or None, "")`` when it
    has one, ``(None, why not)`` when it has none."""
    if NGINX is None:
        return None, "nginx is not installed (Debian: apt-get install nginx-light)"
    done = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=30)
    built = done.stderr + done.stdout
    if re.search(r"--with-stream(\s|$)", built):
        return "", ""  # built in
    if "--with-stream=dynamic" not in built:
        return None, "this nginx was built without the stream module"
    found = re.search(r"--modules-path=(\S+)", built)
    folders = [found[1]] if found else []
    folders += ["/usr/lib/nginx/modules", "/usr/lib64/nginx/modules"]
    for folder in folders:
        module = Path(folder) / "ngx_stream_module.so"
        if module.is_file():
            return f"load_module {module};", ""
    return None, "nginx's stream module is missing (Debian: apt-get install libnginx-mod-stream)"


LOAD_STREAM, MISSING = stream_module()
pytestmark = pytest.mark.skipif(LOAD_STREAM is None, reason=MISSING or "no nginx stream")

#: the protocol behind nginx: each line answered with the backend's name, the client's
#: address and port, the address it reached, and the PROXY version it came with
TARGET = """\
import os

from statewire.basic import LineReceiver
from statewire.protocol import Factory

NAME = os.environ["BACKEND_NAME"]


class Who(LineReceiver):
    def lineReceived(self, line):
        peer, host = self.transport.getPeer(), self.transport.getHost()
        version = self.transport.header.version
        self.sendLine(
            f"{NAME} {peer.host} {peer.port} {host.host} {host.port} v{version} "
            f"{line.decode()}".encode()
        )


factory = Factory.forProtocol(Who)
"""


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def stream_block(fronts: list[str], backends: list[int]) -> str:
    """A ``stream`` block: a server on each of ``fronts`` (``"127.0.0.1:PORT"``,
    ``"[::1]:PORT"``) relaying to ``backends`` (round robin) with a PROXY v1 header."""
    listens = "".join(f"        listen {front};\n" for front in fronts)
    servers = "".join(f"        server 127.0.0.1:{port};\n" for port in backends)
    return (
        "stream {\n"
        "    upstream statewire {\n"
        f"{servers}"
        "    }\n"
        "    server {\n"
        f"{listens}"
        "        proxy_pass statewire;\n"
        "        proxy_protocol on;\n"
        "        proxy_connect_timeout 2s;\n"
        "        proxy_timeout 60s;\n"
        "    }\n"
        "}\n"
    )


def nginx_config(folder: Path, stream: str) -> str:
    """nginx in the foreground, its files in ``folder``, serving the ``stream`` block."""
    return (
        f"{LOAD_STREAM}\n"
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} info;\n"
        "events {\n    worker_connections 256;\n}\n"
        f"{stream}"
    )


@contextmanager
def nginx(folder: Path, stream: str) -> Iterator[Path]:
    """Run nginx with the ``stream`` block until the block ends; its error log's path."""
    assert NGINX is not None
    config = folder / "nginx.conf"
    config.write_text(nginx_config(folder, stream))
    log = folder / "error.log"
    with (folder / "nginx.out").open("wb") as out:  # the child keeps its own copy
        process = subprocess.Popen(
            [NGINX, "-p", f"{folder}/", "-c", str(config), "-e", str(log)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_started(process, folder)
        yield log
    finally:
        process.terminate()  # nginx: fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_started(process: subprocess.Popen[bytes], folder: Path) -> None:
    """Until nginx's worker runs (its listening sockets are bound before it starts)."""
    for _ in range(200):  # bounded: 20 s
        if process.poll() is not None:
            out = (folder / "nginx.out").read_text()
            raise AssertionError(f"nginx exited {process.returncode}: {out}")
        log = folder / "error.log"
        if log.exists() and "start worker process " in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"nginx did not start: {(folder / 'nginx.out').read_text()}")


def front_port() -> int:
    """nginx's port, free now: taken once the backends listen (on ports the kernel gave
    them), so that neither of them can be given it before nginx binds it."""
    return free_port()


@contextmanager
def backends(folder: Path, *names: str) -> Iterator[list[Server]]:
    """``statewire serve`` of :data:`TARGET` once per name, behind the PROXY protocol v1."""
    target = folder / "who.py"
    target.write_text(TARGET)
    listen = "tcp:0:interface=127.0.0.1:proxy=v1:proxyTrusted=127.0.0.1/32"
    with (
        running("-m", "statewire", "serve", f"{target}:factory", "--listen", listen,
                env={"BACKEND_NAME": names[0]}) as first,
        running("-m", "statewire", "serve", f"{target}:factory", "--listen", listen,
                env={"BACKEND_NAME": names[1]}) as second,
    ):  # fmt: skip
        yield [first, second]


def ask6(port: int, line: str) -> tuple[tuple[str, int], list[str]]:
    """:func:`ask` over IPv6 (``::1``)."""
    with socket.create_connection(("::1", port), timeout=10) as sock:
        sock.sendall(line.encode() + b"\r\n")
        answer = b""
        while not answer.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        host, me = sock.getsockname()[:2]
        return (host, me), answer.decode().split()


def _relayed_to(front: int, backend: str) -> socket.socket:
    """A connection through nginx that was relayed to ``backend`` (round robin: bounded)."""
    for _ in range(6):
        sock = socket.create_connection((HOST, front), timeout=10)
        sock.sendall(b"who\r\n")
        if sock.recv(4096).startswith(backend.encode() + b" "):
            return sock
        sock.close()
    raise AssertionError(f"round robin never reached {backend}")


def test_nginx_balances_two_backends_that_see_each_clients_own_address(
    tmp_path: Path,
) -> None:
    with backends(tmp_path, "b1", "b2") as (b1, b2):
        front = front_port()
        fronts = [f"{HOST}:{front}"] + ([f"[::1]:{front}"] if has_ipv6() else [])
        with nginx(tmp_path, stream_block(fronts, [b1.port, b2.port])):
            seen = []
            for i in range(6):
                (host, port), words = served(front, f"hello{i}")
                name, peer, peer_port, dst, dst_port, version, echo = words
                assert (peer, int(peer_port)) == (host, port)  # this client, not nginx
                assert (dst, int(dst_port)) == (HOST, front)
                assert version == "v1" and echo == f"hello{i}"
                seen.append(name)
            assert sorted(seen) == ["b1"] * 3 + ["b2"] * 3  # round robin over both
            if len(fronts) == 2:  # a TCP6 line: the client's IPv6 address, to an IPv4 backend
                (host, port), words = ask6(front, "six")
                assert words[1:] == [host, str(port), "::1", str(front), "v1", "six"]
            for backend in (b1, b2):
                output = "".join(backend.output)
                assert "Traceback" not in output and "refused" not in output, output


def test_a_backend_killed_mid_run_nginx_sends_every_new_client_to_the_other(
    tmp_path: Path,
) -> None:
    with backends(tmp_path, "b1", "b2") as (b1, b2):
        front = front_port()
        with nginx(tmp_path, stream_block([f"{HOST}:{front}"], [b1.port, b2.port])) as log:
            on_b1, on_b2 = _relayed_to(front, "b1"), _relayed_to(front, "b2")
            try:
                b1.process.send_signal(signal.SIGKILL)
                b1.process.wait(10)
                # what was relayed to b1 is closed by nginx, not left hanging
                on_b1.settimeout(10)
                assert on_b1.recv(4096) == b""
                # no retry by the client: nginx's refused connect() goes to the next server
                for i in range(8):
                    (host, port), words = ask(front, f"after{i}")
                    assert words[:3] == ["b2", host, str(port)], words
                on_b2.sendall(b"still\r\n")
                assert on_b2.recv(4096).split()[-1] == b"still"
            finally:
                on_b1.close()
                on_b2.close()
            errors = log.read_text()
            assert (
                "connect() failed (111: Connection refused) while connecting to upstream" in errors
            )
            assert "upstream server temporarily disabled" in errors
            output = "".join(b2.output)
            assert "Traceback" not in output and "refused" not in output, output
