"""The rest of uvicorn's command line on ``statewire serve`` (``statewire/_uvicorn_cli.py``,
``--interface``, ``--access-log``/``--no-access-log``, ``--version``): each option done as
statewire does it, or refused with its reason in one line (exit status 2). Servers run in
processes of their own on 127.0.0.1, judged with ``http.client``."""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from statewire import _uvicorn_cli
from statewire.endpoints import serverParts
from tests.process_helpers import Server, running, spawned, statewire_command, terminated
from tests.runtime_helpers import HOST

APP = """
import asyncio
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    body = os.environ.get("GREETING", "-").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def legacy_function(scope):  # an ASGI 2 application, as a function
    return Legacy(scope)


class Legacy:  # an ASGI 2 application
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})
"""


@pytest.fixture
def app(tmp_path: Path) -> str:
    source = tmp_path / "app.py"
    source.write_text(APP)
    return str(source)


def _serve(target: str, *flags: str, env: dict[str, str] | None = None) -> Server:
    return running("-m", "statewire", "serve", target, "--asgi", "--port", "0", *flags, env=env)


def _get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _log_config(folder: Path, line: str | None = None, disable: bool = False) -> Path:
    """A ``dictConfig`` file: one stderr handler on the root at INFO, its lines formatted
    as ``line`` says (``None``: logging's default), existing loggers kept unless
    ``disable``."""
    handler: dict[str, str] = {"class": "logging.StreamHandler"}
    config: dict[str, object] = {"version": 1, "handlers": {"h": handler}}
    if line is not None:
        config["formatters"] = {"f": {"format": line}}
        handler["formatter"] = "f"
    if not disable:
        config["disable_existing_loggers"] = False
    config["root"] = {"handlers": ["h"], "level": "INFO"}
    path = folder / "log.json"
    path.write_text(json.dumps(config))
    return path


# -- refused, with the reason ---------------------------------------------------------------


@pytest.mark.parametrize("dest", sorted(set(_uvicorn_cli.REFUSED) - {"loop"}))
def test_each_refused_option_says_why_in_one_line(app: str, dest: str) -> None:
    option = "--" + dest.replace("_", "-")
    value = () if dest in ("http2", "reset_contextvars") else ("1",)
    done = statewire_command("serve", f"{app}:app", "--asgi", option, *value)
    assert done.returncode == 2
    assert done.stderr == f"statewire serve: {option}: {_uvicorn_cli.REFUSED[dest]}\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--loop", "asyncio", "--uvloop"), "--loop asyncio and --uvloop: one loop"),
        (("--limit-max-requests-jitter", "3"), "goes with --limit-max-requests"),
        (("--reload-include", "*.html"), "--reload-include goes with --reload"),
        (("--reload-exclude", "x"), "--reload-exclude goes with --reload"),
        (("--reload-delay", "1"), "--reload-delay goes with --reload"),
        (("--env-file", "/no/such/file"), "--env-file: No such file or directory"),
        (("--log-config", "/no/such/file"), "--log-config: No such file or directory"),
        (("--backlog", "9", "--listen", "tcp:0"), "put backlog=N in its description"),
        (("--backlog", "9", "--fd", "3"), "the socket of --fd listens already"),
        (("--backlog", "0"), "'0' is not a whole number from 1 to 2147483647"),
        (("--backlog", "99999999999"), "is not a whole number from 1 to 2147483647"),
        (("--reload", "--reload-exclude", "."), "'.' is no pattern of a file or folder"),
        (("--reload", "--reload-include", ""), "'' is no pattern of a file or folder"),
        (("--loop", "zuvloop"), "--loop zuvloop: statewire runs on asyncio or uvloop"),
        (("--interface", "wsgi"), "statewire serves ASGI applications"),
        (("--loop", "trio"), "invalid choice: 'trio'"),
    ],
)
def test_mistakes_are_one_line_usage_errors(
    app: str, flags: tuple[str, ...], message: str
) -> None:
    done = statewire_command("serve", f"{app}:app", "--asgi", *flags)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.splitlines()[-1]


def test_a_bad_env_file_line_is_named(app: str, tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("A=1\nB='open\n")
    done = statewire_command(
        "serve", f"{app}:app", "--asgi", "--env-file", str(tmp_path / "bad.env")
    )
    assert done.returncode == 2
    assert done.stderr.endswith("line 2: a quote not closed on its line\n")


def test_a_log_config_that_does_not_apply_is_a_usage_error(app: str, tmp_path: Path) -> None:
    config = tmp_path / "log.json"
    config.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    done = statewire_command("serve", f"{app}:app", "--asgi", "--log-config", str(config))
    assert done.returncode == 2
    assert done.stderr.startswith(f"statewire serve: --log-config {config}: ")
    assert len(done.stderr.splitlines()) == 1


def test_version() -> None:
    done = statewire_command("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"statewire \S+ with \S+ \S+ on \S+\n", done.stdout)


# -- done as statewire does it --------------------------------------------------------------


def test_loop_uvloop_serves_on_uvloop(app: str) -> None:
    pytest.importorskip("uvloop")
    for loop in ("uvloop", "auto"):
        with _serve(f"{app}:app", "--loop", loop) as server:
            assert _get(server.port) == (200, b"-")
            out = server.stop()
        assert re.search(r"serving \S+ on \S+ \(uvloop\)", out), out


def test_implementation_choices_are_taken_and_said_not_to_apply(app: str) -> None:
    flags = ("--http", "httptools", "--ws", "wsproto", "--h11-max-incomplete-event-size", "99")
    with _serve(f"{app}:app", *flags, "--use-colors") as server:
        assert _get(server.port) == (200, b"-")
        out = server.stop()
    assert "statewire's own HTTP/1.1 server serves (--http httptools does not apply)" in out
    assert "WebSocket implementation serves (--ws wsproto does not apply)" in out
    assert "64 KiB and 100 fields; --h11-max-incomplete-event-size 99 does not apply)" in out


def test_env_file_sets_what_the_environment_lacks(app: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# settings\nexport GREETING="hi ${WHO:-there}"  # greeting\n')
    with _serve(f"{app}:app", "--env-file", str(env_file), env={"WHO": "you"}) as server:
        assert _get(server.port) == (200, b"hi you")
        server.stop()
    # a variable the environment has keeps its value
    with _serve(f"{app}:app", "--env-file", str(env_file), env={"GREETING": "mine"}) as server:
        assert _get(server.port) == (200, b"mine")
        server.stop()


@pytest.mark.parametrize("kind", ["json", "yaml", "ini"])
def test_log_config_formats_the_lines(app: str, tmp_path: Path, kind: str) -> None:
    if kind == "yaml":
        pytest.importorskip("yaml")
    dictionary = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"f": {"format": "CONFIGURED %(name)s: %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f"}},
        "root": {"handlers": ["h"], "level": "INFO"},
    }
    config = tmp_path / f"log.{kind}"
    if kind == "ini":
        config.write_text(
            "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
            "[logger_root]\nlevel=INFO\nhandlers=h\n"
            "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
            "[formatter_f]\nformat=CONFIGURED %(name)s: %(message)s\n"
        )
    else:
        config.write_text(json.dumps(dictionary))  # (JSON is YAML too)
    with _serve(f"{app}:app", "--log-config", str(config), "--access-log") as server:
        assert _get(server.port) == (200, b"-")
        out = server.stop()
    assert "CONFIGURED statewire.serve: serving" in out
    assert re.search(r'CONFIGURED statewire.access: 127.0.0.1 .* "GET / HTTP/1.1" 200 1', out)


def test_log_level_beside_log_config_sets_statewires_level(app: str, tmp_path: Path) -> None:
    config = _log_config(tmp_path)
    outputs = []
    for level in ("warning", "info"):
        port = _free_port()
        flags = ("--log-config", str(config), "--log-level", level, "--port", str(port))
        command = [sys.executable, "-m", "statewire", "serve", f"{app}:app", "--asgi", *flags]
        with spawned(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
            assert _get_when_up(port, process) == (200, b"-")
            outputs.append(terminated(process))
    quiet, told = outputs
    assert "serving" not in quiet and "stopped" not in quiet
    assert "serving" in told and "stopped" in told


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _get_when_up(port: int, process: subprocess.Popen[str]) -> tuple[int, bytes]:
    """GET / once the server accepts (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return _get(port)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)


def test_bare_access_log_logs_and_no_access_log_does_not(app: str) -> None:
    with _serve(f"{app}:app", "--access-log") as server:
        _get(server.port, "/where")
        logged = server.stop()
    # before the target too, as uvicorn's flag: the target is not taken for a file
    command = ("-m", "statewire", "serve", "--access-log", f"{app}:app", "--asgi")
    with running(*command, "--port", "0") as server:
        _get(server.port, "/before")
        before = server.stop()
    assert '"GET /before HTTP/1.1" 200' in before
    with _serve(f"{app}:app", "--access-log", "--no-access-log") as server:
        _get(server.port, "/where")
        quiet = server.stop()
    assert '"GET /where HTTP/1.1" 200' in logged
    assert "GET /where" not in quiet


def test_backlog_is_the_listening_sockets(app: str) -> None:
    with _serve(f"{app}:app", "--backlog", "77") as server:
        out = server.stop()
    assert re.search(r"serving \S+ on tcp:port=0:interface=127\.0\.0\.1:backlog=77 ", out), out
    with _serve(f"{app}:app") as server:
        out = server.stop()
    assert f":backlog={_uvicorn_cli.BACKLOG} " in out


def test_with_backlog_leaves_listen_descriptions_alone() -> None:
    described = ["tcp:8000:interface=127.0.0.1", "unix:/tmp/s"]
    assert _uvicorn_cli.with_backlog(described, None, False, given=True) == described
    assert _uvicorn_cli.with_backlog(described, None, uvicorn_spelled=False) == described
    made = _uvicorn_cli.with_backlog(described, 5, uvicorn_spelled=True)
    assert [serverParts(d)[1]["backlog"] for d in made] == ["5", "5"]
    # serve's own default place takes --backlog too
    made = _uvicorn_cli.with_backlog(described[:1], 6, uvicorn_spelled=False)
    assert serverParts(made[0])[1]["backlog"] == "6"
    assert _uvicorn_cli.with_backlog(["fd:3"], None, uvicorn_spelled=True) == ["fd:3"]
    with pytest.raises(ValueError, match="with --listen, put backlog=N"):
        _uvicorn_cli.with_backlog(described, 5, False, given=True)


def _slow_answer(port: int, result: list[object]) -> None:
    try:
        result.append(_get(port, "/slow", timeout=20))
    except (OSError, http.client.HTTPException) as error:
        result.append(error)


@pytest.mark.parametrize(("timeout", "answered"), [("10", True), ("0.2", False)])
def test_graceful_shutdown_waits_as_long_as_told(app: str, timeout: str, answered: bool) -> None:
    with _serve(f"{app}:app", "--timeout-graceful-shutdown", timeout) as server:
        result: list[object] = []
        client = threading.Thread(target=_slow_answer, args=(server.port, result))
        client.start()
        time.sleep(0.5)  # (the request under way: its application sleeps 1.5 s)
        server.process.send_signal(signal.SIGTERM)
        server.wait()
        client.join(20)
    assert server.process.returncode == 0
    if answered:
        assert result == [(200, b"-")]
    else:
        assert len(result) == 1 and isinstance(result[0], (OSError, http.client.HTTPException))


def test_request_limit_jitter_stays_in_its_range() -> None:
    args = argparse.Namespace(limit_max_requests=10, limit_max_requests_jitter=3)
    seen = {_uvicorn_cli.request_limit(args) for _ in range(400)}
    assert seen == {10, 11, 12, 13}
    assert _uvicorn_cli.request_limit(argparse.Namespace(limit_max_requests=10)) == 10
    assert _uvicorn_cli.request_limit(argparse.Namespace(limit_max_requests=None)) is None


def test_jittered_limit_stops_a_lone_server_within_its_range(app: str) -> None:
    with _serve(
        f"{app}:app", "--limit-max-requests", "2", "--limit-max-requests-jitter", "2"
    ) as server:
        served = 0
        while served < 10:
            try:
                _get(server.port)
            except (ConnectionRefusedError, ConnectionResetError):
                break
            served += 1
        out = server.wait()
    assert 2 <= served <= 4, out
    assert "the request limit reached: stopping" in out


def test_loop_auto_falls_back_when_uvloop_does_not_import(app: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "uvloop"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libuv is missing')\n")
    env = {"PYTHONPATH": str(broken.parent)}
    with _serve(f"{app}:app", "--loop", "auto", env=env) as server:
        assert _get(server.port) == (200, b"-")
        out = server.stop()
    assert re.search(r"serving \S+ on \S+ \(asyncio\)", out), out
    done = statewire_command("serve", f"{app}:app", "--asgi", "--loop", "uvloop", env=env)
    assert done.returncode == 2
    assert "--loop uvloop: uvloop does not import" in done.stderr


def test_a_log_config_that_disables_existing_loggers_keeps_statewires(
    app: str, tmp_path: Path
) -> None:
    config = _log_config(tmp_path, "CONFIGURED %(name)s: %(message)s", disable=True)
    with _serve(f"{app}:app", "--log-config", str(config)) as server:
        out = server.stop()
    assert "CONFIGURED statewire: ASGIFactory starting on" in out  # (made before the file)
    assert "CONFIGURED statewire.serve: serving" in out


def test_a_log_config_error_says_its_cause(app: str, tmp_path: Path) -> None:
    config = tmp_path / "log.json"
    handler = {"class": "logging.FileHandler", "filename": str(tmp_path / "no" / "such.log")}
    config.write_text(json.dumps({"version": 1, "handlers": {"h": handler}}))
    done = statewire_command("serve", f"{app}:app", "--asgi", "--log-config", str(config))
    assert done.returncode == 2
    assert "Unable to configure handler 'h'" in done.stderr
    assert "No such file or directory" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_graceful_shutdown_may_be_zero(app: str) -> None:
    with _serve(f"{app}:app", "--timeout-graceful-shutdown", "0") as server:
        assert _get(server.port) == (200, b"-")
        server.stop()


def test_interface_asgi2_serves_an_asgi2_application(app: str) -> None:
    with _serve(f"{app}:Legacy", "--interface", "asgi2") as server:
        assert _get(server.port) == (200, b"asgi2")
        server.stop()
    done = statewire_command("serve", f"{app}:Legacy", "--asgi")
    assert done.returncode == 2
    assert "(or serve an ASGI 2 application with --interface asgi2)" in done.stderr
    done = statewire_command("serve", f"{app}:legacy_function", "--asgi")
    assert done.returncode == 2
    assert "(an ASGI 2 application? serve it with --interface asgi2)" in done.stderr
    with _serve(f"{app}:legacy_function", "--interface", "asgi2") as server:
        assert _get(server.port) == (200, b"asgi2")
        server.stop()


def test_the_options_reach_the_workers(app: str, tmp_path: Path) -> None:
    config = _log_config(tmp_path, "CONFIGURED %(process)d %(name)s: %(message)s")
    env_file = tmp_path / "w.env"
    env_file.write_text("GREETING=from-file\n")
    port = _free_port()
    flags = ("--workers", "2", "--log-config", str(config), "--env-file", str(env_file))
    with running(
        "-m", "statewire", "serve", f"{app}:app", "--asgi", "--port", str(port), *flags
    ) as server:
        assert server.port == port
        deadline = time.monotonic() + 20
        while " in 2 workers" not in "".join(server.output) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _get(port) == (200, b"from-file")
        out = server.stop(signal.SIGTERM)
    pids = set(re.findall(r"CONFIGURED (\d+) statewire\.serve: serving", out))
    assert len(pids) == 2, out
