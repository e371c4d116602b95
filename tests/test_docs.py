"""The snippets of README.md and docs/*.md run as written.

A ``python`` block made of ``>>>`` lines is run as a doctest; any other is run as a module
(functions named ``test_*`` in it are then called, as pytest would), after the blocks of
the same page above it, as a reader runs them one after the other. A block preceded by
``<!-- not run: why -->`` is skipped, and must say why (what runs it instead).
"""

from __future__ import annotations

import doctest
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^>]+) -->\n)?```python\n(?P<code>.*?)```", re.S)


def _blocks() -> list[tuple[str, str, str | None]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        before = ""  # the page's module blocks so far: what a block may build on
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            code = match["code"]
            runs_as_module = match["why"] is None and not code.lstrip().startswith(">>>")
            found.append(
                (f"{page.name}:{line}", before + code if runs_as_module else code, match["why"])
            )
            if runs_as_module:
                before += code
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
    module = types.ModuleType("snippet_" + re.sub(r"\W", "_", where))
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(code, where, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    for name, value in vars(module).items():
        if name.startswith("test_") and callable(value):
            value()
