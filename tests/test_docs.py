"""The snippets of README.md and docs/*.md run as written.

A ``python`` block made of ``>>>`` lines is run as a doctest; any other is run as a module
(functions named ``test_*`` in it are then called, as pytest would). A block preceded by
``<!-- not run: why -->`` is skipped, and must say why (what runs it instead).
"""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^>]+) -->\n)?```python\n(?P<code>.*?)```", re.S)


def _blocks() -> list[tuple[str, str, str | None]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            found.append((f"{page.name}:{line}", match["code"], match["why"]))
    return found


BLOCKS = _blocks()


def test_every_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme


@pytest.mark.parametrize(("where", "code", "why"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_snippet_runs(
    where: str, code: str, why: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if why is not None:
        assert why.strip(), f"{where}: say why the snippet is not run"
        pytest.skip(why)
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, {}, where, where, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test, out=sys.stdout.write)
        assert runner.failures == 0, capsys.readouterr().out
        return
    namespace: dict[str, object] = {"__name__": f"snippet_{where}"}
    exec(compile(code, where, "exec"), namespace)
    for name, value in namespace.items():
        if name.startswith("test_") and callable(value):
            value()
