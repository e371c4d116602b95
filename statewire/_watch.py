"""``statewire serve --reload``: the files under some folders, watched by polling their
modification times (no dependency, as uvicorn's fallback ``StatReload``).

A scan walks each folder, leaving out hidden folders (``.git``, ``.venv``...),
``__pycache__``, ``node_modules`` and any folder holding a ``pyvenv.cfg`` (a virtual
environment), and notes the modification time (``st_mtime_ns``) of each file watched:

* the ``*.py`` files, and those an ``include`` pattern matches (``--reload-include``:
  ``*.html``, ``templates/*``, ``.env``); a hidden file (its name starting with ``.``)
  only when a pattern whose last part starts with ``.`` matches it (``.env``, ``.*``:
  ``*`` alone does not take hidden files);
* except those an ``exclude`` pattern matches (``--reload-exclude``), or one of
  :data:`EXCLUDED` (compiled Python, editors' backup and swap files); a folder an
  ``exclude`` pattern matches is not looked into.

A relative pattern is matched as :meth:`pathlib.PurePath.match` matches it against the path
below the watched folder: from the right, so ``*.html`` is any HTML file,
``templates/*.html`` one right under a ``templates`` folder; an absolute one (a folder to
leave out, ``/srv/app/data``) against the whole path. :func:`check_pattern` refuses a
pattern that can match nothing (empty, ``.``). Folders it cannot read are passed over, and
symbolic links to folders are not followed (a link to a file is). It notes
:data:`MAX_FILES` files at most (the supervisor warns when a scan reaches them: name
smaller folders then). Two scans differ when a file was added, removed or written: the
supervisor then reloads its workers (:meth:`statewire.workers.Supervisor.reload`), so new
code is served without a dropped connection, and code that does not import leaves the old
workers serving.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import PurePath

#: folders never looked into
SKIPPED = {"__pycache__", "node_modules", "site-packages"}
#: files never watched, whatever the patterns say
EXCLUDED = ("*.py[cod]", "*~", "~*", "*.sw[a-p]", "*.sw[q-z]")
#: the most files a scan notes (a folder that holds more is not a project's source)
MAX_FILES = 20_000

Scan = dict[str, int]


def check_pattern(pattern: str) -> str:
    """``pattern`` if it can be matched, else a ``ValueError`` saying why."""
    try:
        PurePath("x").match(pattern)
    except ValueError as error:
        raise ValueError(f"{pattern!r} is no pattern of a file or folder ({error})") from None
    return pattern


def _matches(root: str, below: PurePath, patterns: Sequence[str], hidden: bool = False) -> bool:
    """Whether a pattern matches the path ``below`` the watched folder ``root`` (``hidden``:
    only a pattern naming hidden files may)."""
    for pattern in patterns:
        if os.path.isabs(pattern):
            matched = PurePath(root, below).match(pattern)
        else:
            matched = below.match(pattern)
        if matched and not (hidden and not PurePath(pattern).name.startswith(".")):
            return True
    return False


def scan(folders: Iterable[str], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Scan:
    """Each file watched under ``folders`` (see the module) and its modification time (ns)."""
    found: Scan = {}
    excluded = (*EXCLUDED, *exclude)
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            below = PurePath(os.path.relpath(root, folder))
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".")
                and d not in SKIPPED
                and not _matches(folder, below / d, exclude)
                and not os.path.exists(os.path.join(root, d, "pyvenv.cfg"))
            ]
            for name in files:
                relative = below / name
                hidden = name.startswith(".")
                python = name.endswith(".py") and not hidden
                if not (python or _matches(folder, relative, include, hidden)) or _matches(
                    folder, relative, excluded
                ):
                    continue
                path = os.path.join(root, name)
                try:
                    found[path] = os.stat(path).st_mtime_ns
                except OSError:  # (gone between the listing and the stat)
                    continue
                if len(found) >= MAX_FILES:
                    return found
    return found


def changes(before: Scan, after: Scan) -> list[str]:
    """The files added, removed or written between two scans, sorted."""
    return sorted(
        {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    )
