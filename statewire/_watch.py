"""``statewire serve --reload``: the Python files under some folders, watched by polling
their modification times (no dependency, as uvicorn's fallback ``StatReload``).

A scan walks each folder, leaving out hidden folders (``.git``, ``.venv``...),
``__pycache__``, ``node_modules`` and any folder holding a ``pyvenv.cfg`` (a virtual
environment), and notes each ``*.py`` file's ``st_mtime_ns``; folders it cannot read are
passed over, and symbolic links to folders are not followed (a link to a file is). It
notes :data:`MAX_FILES` files at most (the supervisor warns when a scan reaches them:
name smaller folders then). Two scans differ when a file
was added, removed or written: the supervisor then reloads its workers
(:meth:`statewire.workers.Supervisor.reload`), so new code is served without a dropped
connection, and code that does not import leaves the old workers serving.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

#: folders never looked into
SKIPPED = {"__pycache__", "node_modules", "site-packages"}
#: the most files a scan notes (a folder that holds more is not a project's source)
MAX_FILES = 20_000

Scan = dict[str, int]


def scan(folders: Iterable[str]) -> Scan:
    """Each ``*.py`` file under ``folders`` and its modification time (ns)."""
    found: Scan = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".")
                and d not in SKIPPED
                and not os.path.exists(os.path.join(root, d, "pyvenv.cfg"))
            ]
            for name in files:
                if not name.endswith(".py") or name.startswith("."):
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
