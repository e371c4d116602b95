"""``statewire serve --reload``: a development server that serves new code as soon as a
Python file changes, by reloading its one worker (the zero-downtime reload of
``--workers``), and keeps the old code serving while the new one does not import. Run as
a process of its own on 127.0.0.1 and judged with ``http.client``; every wait is bounded.
The watcher's scans (``statewire/_watch.py``) are checked on their own below."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from statewire._watch import changes, scan
from tests.process_helpers import running, statewire_command
from tests.runtime_helpers import HOST

APP = """
from statewire.protocols.http import HTTPFactory

async def handler(request, response):
    await response.send(200, [(b"Content-Type", b"text/plain")], b"{version}")

factory = HTTPFactory(handler)
"""

LISTEN = ("--listen", f"tcp:0:interface={HOST}")


def _write(path: Path, text: str) -> None:
    """Write ``text``, its modification time a second later than before (a change seen
    whatever the file system's timestamp resolution)."""
    before = path.stat().st_mtime if path.exists() else time.time()
    path.write_text(text)
    os.utime(path, (before + 1, before + 1))


def _get(port: int) -> str:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _until(port: int, expected: str, timeout: float = 30) -> str:
    """GET until the answer is ``expected`` (each answered: a refusal raises), at most
    ``timeout`` seconds; the last answer."""
    deadline = time.monotonic() + timeout
    answer = _get(port)
    while answer != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = _get(port)
    return answer


def test_a_change_is_served_and_code_that_does_not_import_is_not(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    _write(source, APP.format(version="one"))
    command = ("-m", "statewire", "serve", f"{source}:factory", "--reload")
    with running(*command, "--reload-dir", str(tmp_path), *LISTEN) as server:
        first = _get(server.port)
        _write(source, APP.format(version="two"))
        second = _until(server.port, "two")
        _write(source, APP.format(version="three") + "\nbroken(\n")
        deadline = time.monotonic() + 30
        while "reload abandoned" not in "".join(server.output):
            assert time.monotonic() < deadline, "".join(server.output)
            time.sleep(0.1)
        kept = _get(server.port)  # the old code serves on
        _write(source, APP.format(version="four"))
        fourth = _until(server.port, "four")
        time.sleep(2)  # (a watcher that saw changes where there are none would reload)
        out = server.stop(signal.SIGTERM)
    assert (first, second, kept, fourth) == ("one", "two", "two", "four")
    assert "app.py changed: reloading" in out
    assert out.count("changed: reloading") <= 6  # three edits (each at most twice: _write)
    assert "SyntaxError" in out


SLOW = "import time\ntime.sleep(1.5)  # (an application slow to import)\n"


def test_a_fix_saved_while_a_broken_version_is_loading_is_served(tmp_path: Path) -> None:
    """The reload of the broken version is abandoned after the fix was saved: the
    fix's change, seen during it, is tried then (not dropped)."""
    source = tmp_path / "app.py"
    _write(source, APP.format(version="one"))
    command = ("-m", "statewire", "serve", f"{source}:factory", "--reload")
    with running(*command, "--reload-dir", str(tmp_path), *LISTEN) as server:
        first = _get(server.port)
        _write(source, SLOW + APP.format(version="two") + "\nundefined_name\n")
        deadline = time.monotonic() + 30
        while "reloading: starting" not in "".join(server.output):
            assert time.monotonic() < deadline, "".join(server.output)
            time.sleep(0.05)
        time.sleep(0.7)  # (the broken version still importing)
        _write(source, APP.format(version="three"))
        third = _until(server.port, "three")
        out = server.stop(signal.SIGTERM)
    assert (first, third) == ("one", "three")
    assert "NameError" in out


def test_a_worker_restarted_during_a_reload_drains_at_its_end(tmp_path: Path) -> None:
    """The serving worker dies while the new code loads: its restart serves meanwhile,
    and is drained when the reload switches over, not left serving the old code."""
    source = tmp_path / "app.py"
    _write(source, APP.format(version="one"))
    command = ("-m", "statewire", "serve", f"{source}:factory", "--reload")
    with running(*command, "--reload-dir", str(tmp_path), *LISTEN) as server:
        assert _get(server.port) == "one"
        first = int(_seen(server, r"worker 0 \(pid (\d+)\) ready"))
        _write(source, SLOW + APP.format(version="two"))
        _seen(server, "(reloading: starting)")
        loading = _seen(server, rf"worker 0 \(pid (?!{first}\))(\d+)\) started")
        os.kill(first, signal.SIGKILL)
        restarted = _seen(server, rf"worker 0 \(pid (?!(?:{first}|{loading})\))(\d+)\) started")
        _seen(server, "(reloaded:)")
        _seen(server, rf"worker 0 \(pid ({restarted})\) exited with code 0")  # drained
        answers = {_get(server.port) for _ in range(20)}
        out = server.stop(signal.SIGTERM)
    assert answers == {"two"}, out


def test_code_broken_at_the_start_is_served_once_fixed(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    _write(source, APP.format(version="one") + "\nbroken(\n")
    port = _free_port()
    listen = ("--listen", f"tcp:{port}:interface={HOST}")
    command = ("-m", "statewire", "serve", f"{source}:factory", "--reload")
    with running(*command, "--reload-dir", str(tmp_path), *listen) as server:
        deadline = time.monotonic() + 30
        while "a change to the code tries again" not in "".join(server.output):
            assert time.monotonic() < deadline, "".join(server.output)
            time.sleep(0.05)
        _write(source, APP.format(version="two"))
        served = _until(port, "two")
        out = server.stop(signal.SIGTERM)
    assert served == "two"
    assert "SyntaxError" in out


def _seen(server: Any, pattern: str, timeout: float = 30) -> str:
    """Wait until ``pattern`` is in the server's output; its first group."""
    deadline = time.monotonic() + timeout
    while (found := re.search(pattern, "".join(server.output))) is None:
        assert time.monotonic() < deadline, "".join(server.output)
        time.sleep(0.05)
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--reload", "--workers=2"), "--reload serves one worker, reloaded at each change"),
        (("--reload-dir=.",), "--reload-dir goes with --reload"),
        (
            ("--reload", "--reload-dir=/no/such/folder"),
            "--reload-dir: /no/such/folder is not a folder",
        ),
    ],
)
def test_reload_mistakes_exit_2(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    source = tmp_path / "app.py"
    _write(source, APP.format(version="one"))
    done = statewire_command("serve", f"{source}:factory", *flags, *LISTEN)
    assert done.returncode == 2
    assert f"statewire serve: {message}" in done.stderr


def test_a_scan_sees_python_files_added_written_and_removed(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    kept, written, removed = (tmp_path / "pkg" / n for n in ("a.py", "b.py", "c.py"))
    for path in (kept, written, removed):
        _write(path, "x = 1\n")
    (tmp_path / "notes.txt").write_text("not Python")
    before = scan([str(tmp_path)])
    assert sorted(before) == sorted(str(p) for p in (kept, written, removed))
    _write(written, "x = 2\n")
    removed.unlink()
    added = tmp_path / "d.py"
    _write(added, "")
    assert changes(before, scan([str(tmp_path)])) == sorted(
        str(p) for p in (written, removed, added)
    )


def test_a_scan_leaves_out_hidden_folders_caches_and_virtual_environments(
    tmp_path: Path,
) -> None:
    for folder in (".git", "__pycache__", "node_modules", "venv", "src"):
        (tmp_path / folder).mkdir()
        _write(tmp_path / folder / "m.py", "")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    _write(tmp_path / ".hidden.py", "")
    assert list(scan([str(tmp_path)])) == [str(tmp_path / "src" / "m.py")]


def test_a_scan_takes_the_included_files_and_leaves_out_the_excluded(tmp_path: Path) -> None:
    for relative in (
        "app.py",
        "templates/page.html",
        "templates/old/page.html",
        "static/site.css",
        ".env",
        "app.pyc",
        "page.html~",
        "build/gen.py",
        "build/out.html",
    ):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, "")
    found = scan([str(tmp_path)], include=["*.html", ".env"], exclude=["build", "old"])
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == [
        ".env",
        "app.py",
        "templates/page.html",
    ]
    # an absolute pattern matches the whole path; * takes no hidden file
    found = scan([str(tmp_path)], include=["*"], exclude=[str(tmp_path / "templates")])
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == [
        "app.py",
        "build/gen.py",
        "build/out.html",
        "static/site.css",
    ]
    # a pattern with a folder in it matches the path's end
    found = scan([str(tmp_path)], include=["templates/*.html"])
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == [
        "app.py",
        "build/gen.py",
        "templates/page.html",
    ]


#: an application whose answer is read from a text file when it is imported
TEXT_APP = """
from pathlib import Path
from statewire.protocols.http import HTTPFactory

VERSION = (Path(__file__).parent / "version.txt").read_bytes()

async def handler(request, response):
    await response.send(200, [(b"Content-Type", b"text/plain")], VERSION)

factory = HTTPFactory(handler)
"""


def test_a_change_to_an_included_file_reloads(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    _write(tmp_path / "version.txt", "one")
    _write(source, TEXT_APP)
    command = ("-m", "statewire", "serve", f"{source}:factory", "--reload")
    flags = ("--reload-dir", str(tmp_path), "--reload-include", "*.txt", "--reload-delay", "0.1")
    with running(*command, *flags, *LISTEN) as server:
        assert _get(server.port) == "one"
        _write(tmp_path / "version.txt", "two")
        assert _until(server.port, "two") == "two"
        out = server.stop()
    assert "watching the Python files and *.txt under" in out
    assert "version.txt changed: reloading" in out
