"""The code of an earlier commit, for the review files' old-against-new comparisons.

A speedup is held to the behaviour of the code before it: the review files play the same
sessions under the tree of ``BASE_COMMIT`` (the last stop before the speedups they
review) and under this one, each in its own interpreter, and compare what comes out.
:func:`base_tree` extracts that commit from this clone's git history (``git archive``)
once, into the temporary directory, and answers its path; ``$STATEWIRE_BASE`` names
another tree instead. Without git or without that commit (a shallow clone) it answers
``None`` and the comparisons are skipped, saying why.

The old tree runs on its pure-Python decoders (its C accelerator is not built): the
comparisons are of behaviour, which the accelerator does not change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: the head of the stop before this file's first users (their "code before the changes")
BASE_COMMIT = "c77a38429c86b1e5dc92e58845263f47a978bb65"
ROOT = Path(__file__).resolve().parent.parent


def base_tree(commit: str = BASE_COMMIT, named_by: str = "STATEWIRE_BASE") -> Path | None:
    """The tree of ``commit`` (default :data:`BASE_COMMIT`), or the one the environment
    variable ``named_by`` names, or ``None``."""
    named = os.environ.get(named_by)
    if named:
        return Path(named)
    target = Path(tempfile.gettempdir()) / f"statewire-base-{commit[:12]}"
    if (target / "statewire" / "__init__.py").is_file():
        return target
    # extracted beside the target, then renamed: parallel test processes never see half
    work = Path(tempfile.mkdtemp(prefix=target.name + "-", dir=target.parent))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if archive.returncode != 0:
            return None
        subprocess.run(
            ["tar", "-x", "-C", str(work)], input=archive.stdout, check=True, timeout=60
        )
        with contextlib.suppress(OSError):  # another process got there first
            work.rename(target)
        return target if (target / "statewire" / "__init__.py").is_file() else None
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: the reason the comparisons give when they are skipped
NO_BASE = (
    f"no tree of commit {BASE_COMMIT[:12]} (git or the commit is missing here: a shallow "
    "clone?); $STATEWIRE_BASE may name one"
)


def play_under(
    tree: Path,
    args: list[str],
    payload: Any = None,
    *,
    cwd: Path | str | None = None,
    timeout: float = 120,
    pure: bool = False,
) -> Any:
    """Run ``python ARGS`` with ``tree`` first on its path (its ``statewire`` and
    ``grammars``; ``pure``: without the C accelerator), ``payload`` as JSON on its standard
    input, and answer the JSON it prints. A failing run fails the test, with its errors."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if pure:
        env["STATEWIRE_PURE"] = "1"
    done = subprocess.run(
        [sys.executable, *args],
        input=json.dumps(payload).encode(),
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return json.loads(done.stdout)
