"""Every mistake on the command line is one line on stderr and a non-zero exit, never a
traceback; and a half-started ``serve`` stops what it started before it says so."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from process_helpers import statewire_command

from statewire._reactor import Reactor
from statewire.endpoints import clientFromString, serverFromString

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return statewire_command(*args, cwd=cwd)


def _one_line(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    lines = [line for line in done.stderr.splitlines() if prefix in line]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("tcp:99999", "port '99999' in 'tcp:99999' is not in 0 to 65535"),
        ("tcp:-1", "is not in 0 to 65535"),
        ("ssl:8443:privateKey=/no/such/key.pem", "privateKey file '/no/such/key.pem'"),
        ("unix:/tmp/x.sock:mode=999", "not an octal number"),
    ],
)
def test_serve_bad_listen_descriptions(description: str, message: str) -> None:
    done = _cli("serve", "statewire.wire:Echo", "--listen", description)
    assert done.returncode == 2
    assert message in _one_line(done, "statewire serve:")


def test_client_descriptions_are_checked_too() -> None:
    with pytest.raises(ValueError, match="not in 0 to 65535"):
        clientFromString(Reactor(), "tcp:host=127.0.0.1:port=70000")
    with pytest.raises(ValueError, match="timeout in"):
        clientFromString(Reactor(), "tcp:host=127.0.0.1:port=7:timeout=soon")


def test_ssl_with_a_missing_certificate_names_it(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    with pytest.raises(ValueError, match=r"certKey file '/no/cert\.pem'"):
        serverFromString(Reactor(), f"ssl:8443:privateKey={key}:certKey=/no/cert.pem")
    with pytest.raises(ValueError, match="cannot load the key or certificate"):
        serverFromString(Reactor(), f"ssl:8443:privateKey={key}")


def test_a_second_port_in_use_stops_the_first_and_its_factory(tmp_path: Path) -> None:
    script = tmp_path / "counted.py"
    script.write_text(
        "from statewire.protocol import Factory\n"
        "from statewire.wire import Echo\n"
        "class Counted(Factory):\n"
        "    protocol = Echo\n"
        "    def startFactory(self):\n"
        "        print('startFactory ran', flush=True)\n"
        "    def stopFactory(self):\n"
        "        print('stopFactory ran', flush=True)\n"
        "factory = Counted()\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = _cli(
            "serve",
            f"{script}:factory",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--listen",
            f"tcp:{busy}:interface=127.0.0.1",
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{busy}" in _one_line(done, "statewire serve:")
    assert done.stdout.splitlines() == ["startFactory ran", "stopFactory ran"]
    assert "was never awaited" not in done.stderr
    assert "Task was destroyed" not in done.stderr


def test_a_factory_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(
        "from statewire.protocol import Factory\n"
        "from statewire.wire import Echo\n"
        "class Broken(Factory):\n"
        "    protocol = Echo\n"
        "    def startFactory(self):\n"
        "        raise RuntimeError('no database')\n"
        "factory = Broken()\n"
    )
    done = _cli("serve", f"{script}:factory", "--listen", "tcp:0:interface=127.0.0.1")
    assert done.returncode == 1
    line = _one_line(done, "statewire serve:")
    assert "Broken did not start: RuntimeError: no database" in line


def test_a_factory_class_is_a_target_for_serve_and_diagram(tmp_path: Path) -> None:
    done = _cli("diagram", "examples/upload.py:UploadFactory", "--format", "mermaid")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stateDiagram-v2")
    from statewire.protocol import Factory
    from statewire.target import factory_from

    made = factory_from("examples/upload.py:UploadFactory")
    assert isinstance(made, Factory) and type(made).__name__ == "UploadFactory"


def test_diagram_output_into_a_missing_folder() -> None:
    done = _cli("diagram", "statewire.basic:LineReceiver", "-o", "/nonexistent/dir/x.svg")
    assert done.returncode == 1
    assert "cannot write /nonexistent/dir/x.svg" in _one_line(done, "statewire diagram:")


def test_check_on_a_missing_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "missing.dot"
    done = _cli("diagram", "statewire.basic:LineReceiver", "--check", str(missing))
    assert done.returncode == 1
    line = _one_line(done, "statewire diagram:")
    assert "does not exist" in line and "differs" not in line


def test_demo_into_a_closed_pipe() -> None:
    # like `statewire demo | head -0`: the reader is gone before the first write
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "statewire", "demo"],
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.returncode == 0
    assert done.stderr == ""


def test_serve_listens_on_this_machine_only_by_default() -> None:
    from statewire.__main__ import DEFAULT_LISTEN

    endpoint = serverFromString(Reactor(), DEFAULT_LISTEN)
    assert endpoint.interface == "127.0.0.1"


TARGETS = """
from statewire.protocol import Factory
from statewire.wire import Echo

def raises_runtime():
    raise RuntimeError("no database")

class NeedsArguments(Factory):
    protocol = Echo
    def __init__(self, path):
        self.path = path

class Buggy(Factory):
    protocol = Echo
    def __init__(self):
        len(5)

async def asgi_app(scope, receive, send):
    pass

def asgi2_app(scope):
    pass

factory = Factory.forProtocol(Echo)
settings = {"debug": True}

class _BadSignature:
    __signature__ = 42
    def __call__(self):
        pass

bad_signature = _BadSignature()

class HostedFactory(Factory):
    protocol = Echo
    def __init__(self, handler, host, port):
        pass

async def any_arguments(*args):
    pass

class AppClass:
    def __init__(self, scope, receive, send):
        pass

def make_settings():
    return settings
"""


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("raises_runtime", 1, "calling {t} raised RuntimeError: no database"),
        ("NeedsArguments", 2, "{t} cannot be called with no arguments"),
        ("Buggy", 1, "making {t} raised TypeError"),
        (
            "asgi_app",
            2,
            "no arguments: missing a required argument: 'scope' (an ASGI "
            "application? serve it with --asgi)",
        ),
        ("asgi2_app --asgi", 2, "{t} cannot be called as (scope, receive, send)"),
        ("factory --asgi", 2, "{t} is a statewire factory or protocol: serve it without --asgi"),
        ("Buggy --asgi", 2, "{t} is a statewire factory or protocol: serve it without --asgi"),
        ("settings --asgi", 2, "{t} is a dict, not an ASGI application"),
        ("bad_signature", 2, "{t} returned NoneType, not a Factory"),  # (no traceback)
        ("HostedFactory", 2, "no arguments: missing a required argument: 'handler'"),
        (
            "any_arguments",
            2,
            "{t} returned a coroutine, not a Factory (an ASGI application? serve it with --asgi)",
        ),
        (
            "asgi_app --root-path=/api",
            2,
            "--root-path is an ASGI application's: serve it with --asgi",
        ),
        ("asgi_app --asgi --root-path=api", 2, "root_path='api': a path from '/'"),
        ("AppClass --asgi", 2, "{t} is a class, not an ASGI 3 application: name an instance"),
        ("asgi_app --lifespan=on", 2, "--lifespan is an ASGI application's: serve it with --asgi"),
        (
            "asgi_app --no-server-header",
            2,
            "statewire serve: --no-server-header is an ASGI application's: serve it with --asgi",
        ),
        (
            "make_settings --asgi",
            2,
            "{t} cannot be called as (scope, receive, send): not an ASGI 3 application (a "
            "function making one? serve it with --factory)",
        ),
        ("asgi_app --asgi --factory", 2, "no arguments: missing a required argument: 'scope'"),
        (
            "any_arguments --asgi --factory",
            2,
            "{t} returned a coroutine: --factory takes a plain function returning the "
            "application (an async function, or an ASGI application, is not one)",
        ),
        (
            "make_settings --asgi --factory",
            2,
            "what {t} returned is a dict, not an ASGI application",
        ),
        ("settings --asgi --factory", 2, "{t} is a dict, not a function (--factory)"),
        ("Buggy --asgi --factory", 1, "calling {t} raised TypeError"),
        (
            "asgi_app --asgi --forwarded-allow-ips=10.0.0.0/8,proxy",
            2,
            "forwarded_allow_ips: 'proxy' is no address nor network (nor *)",
        ),
        (
            "asgi_app --asgi --ws-ping-timeout=0",
            2,
            "argument --ws-ping-timeout: '0': seconds are finite and positive, or none",
        ),
        ("asgi_app --asgi --ws-max-size=1kb", 2, "argument --ws-max-size: '1kb' is not a number"),
        ("asgi_app --asgi --max-body=0M", 2, "argument --max-body: '0M': a size is positive"),
        ("asgi_app --asgi --header=X-A", 2, "argument --header: 'X-A' is not NAME:VALUE"),
        ("asgi_app --asgi --header=Connection:close", 2, "headers: Connection is the server's"),
        ("asgi_app --asgi --header=X(A):1", 2, "headers: field name b'X(A)' is not a token"),
        (
            "asgi_app --asgi --timeout-keep-alive=-5",
            2,
            "argument --timeout-keep-alive: '-5': seconds are finite and positive",
        ),
        (
            "asgi_app --asgi --ws-per-message-deflate=maybe",
            2,
            "'maybe' is not a boolean (true or false)",
        ),
        ("asgi_app --asgi --lifespan=sometimes", 2, "argument --lifespan: invalid choice"),
    ],
)
def test_a_target_whose_code_fails_is_one_line(
    tmp_path: Path, name: str, code: int, message: str
) -> None:
    script = tmp_path / "targets.py"
    script.write_text(TARGETS)
    name, *flags = name.split()
    target = f"{script}:{name}"
    done = _cli("serve", target, *flags, "--listen", "tcp:0:interface=127.0.0.1")
    assert done.returncode == code
    line = _one_line(done, "statewire serve:")
    assert message.format(t=target) in line
    if "--asgi" not in message:
        assert "--asgi" not in line  # (the ASGI hint only where it fits)


def test_a_module_that_raises_on_import_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "broken_import.py"
    script.write_text("raise RuntimeError('half written')\n")
    for command in ("serve", "diagram"):
        done = _cli(command, f"{script}:factory")
        assert done.returncode == 1
        assert "raised RuntimeError: half written" in _one_line(done, f"statewire {command}:")


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("tcp:0:interface=127.0.0.1:backlog=99999999999", "backlog '99999999999'"),
        ("unix:/tmp/statewire-x.sock:mode=-1", "not in 0 to 777"),
        ("unix:/tmp/statewire-x.sock:mode=9", "not an octal number"),
        ("unix:/tmp/statewire-x.sock:mode=7777", "not in 0 to 777"),
    ],
)
def test_backlog_and_mode_out_of_range(description: str, message: str) -> None:
    done = _cli("serve", "statewire.wire:Echo", "--listen", description)
    assert done.returncode == 2
    assert message in _one_line(done, "statewire serve:")


def test_demo_into_a_full_disk_and_without_stdout() -> None:
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "statewire", "demo"],
            cwd=ROOT,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "cannot write" in _one_line(done, "statewire demo:")
    closed = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m statewire demo >&-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert closed.returncode == 1
    assert "no standard output" in _one_line(closed, "statewire demo:")


def test_check_on_a_folder(tmp_path: Path) -> None:
    done = _cli("diagram", "statewire.basic:LineReceiver", "--check", str(tmp_path))
    assert done.returncode == 1
    assert "is not a regular file" in _one_line(done, "statewire diagram:")
