"""``statewire serve MODULE:NAME`` run by the installed ``statewire`` command, whose
``sys.path`` holds its own folder, not the current one: the module is found in the current
folder all the same, or in ``--app-dir`` (uvicorn's option), as ``python -m statewire``
finds it. The command is stood in for by a launcher script in a folder of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LAUNCHER = "import sys\nfrom statewire.__main__ import main\nsys.exit(main())\n"
MODULE = "raise SystemExit('imported: ' + __name__)\n"


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "statewire_command.py"
    script.write_text(LAUNCHER)
    (tmp_path / "project").mkdir()
    # (importing it ends the command: that it was found is all that is asked)
    (tmp_path / "project" / "served_module.py").write_text(MODULE)
    return script


def _run(launcher: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(launcher), "serve", "served_module:factory", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_current_folder_is_searched(launcher: Path) -> None:
    done = _run(launcher, launcher.parent.parent / "project")
    assert "imported: served_module" in done.stderr


def test_app_dir_names_another(launcher: Path) -> None:
    done = _run(launcher, launcher.parent.parent, "--app-dir", "project")
    assert "imported: served_module" in done.stderr
    elsewhere = _run(launcher, launcher.parent.parent)
    assert "cannot import served_module" in elsewhere.stderr


def test_a_stray_file_does_not_stand_in_for_the_standard_library(launcher: Path) -> None:
    """The folder is searched after the standard library and the installed packages: a
    ``datetime.py`` or an ``http`` package beside the application is never imported in
    their place (the server imports both after it reads its options)."""
    project = launcher.parent.parent / "project"
    (project / "datetime.py").write_text("raise SystemExit('shadowed: datetime')\n")
    (project / "http").mkdir()
    (project / "http" / "__init__.py").write_text("raise SystemExit('shadowed: http')\n")
    # (the application imports them itself, as statewire's HTTP server does)
    (project / "served_module.py").write_text("import datetime, http.client\n" + MODULE)
    done = _run(launcher, project)
    assert "imported: served_module" in done.stderr
    assert "shadowed" not in done.stderr
