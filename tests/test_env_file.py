"""``statewire serve --env-file``'s reading of a ``.env`` file (``statewire/_env_file.py``):
each form a line may take, the refusals naming their line, and round trips of any value
through each quoting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statewire._env_file import EnvFileError, load, read


def test_the_forms_a_line_takes() -> None:
    text = r"""
# a comment line
export PLAIN = some value   # a comment
EMPTY=
HASH=a#b
SINGLE='kept ${PLAIN} \n as is'
DOUBLE="line\nnext \"quoted\" \$PLAIN ${PLAIN}"
DEFAULTED=${MISSING:-fallback}/${PLAIN}
FROM_ENV=${HOME}
DECLARED
"""
    assert read(text, {"HOME": "/home/me"}) == {
        "PLAIN": "some value",
        "EMPTY": "",
        "HASH": "a#b",
        "SINGLE": r"kept ${PLAIN} \n as is",
        "DOUBLE": 'line\nnext "quoted" $PLAIN some value',
        "DEFAULTED": "fallback/some value",
        "FROM_ENV": "/home/me",
    }


def test_the_environment_comes_before_earlier_lines_in_references() -> None:
    assert read("A=file\nB=${A}\n", {"A": "env"})["B"] == "env"


def test_as_python_dotenv_reads_them() -> None:
    # a variable set empty is set (its default is not taken); \' in double quotes is '
    text = 'A=${EMPTY:-d}\nB=${UNSET:-d}\nC="it\\\'s"\n'
    assert read(text, {"EMPTY": ""}) == {"A": "", "B": "d", "C": "it's"}


def test_a_bom_is_passed_over_and_other_encodings_are_named(tmp_path: Path) -> None:
    bom = tmp_path / "bom.env"
    bom.write_bytes(b"\xef\xbb\xbfSW_TEST_BOM=1\n")
    try:
        assert load(str(bom)) == ["SW_TEST_BOM"]
    finally:
        os.environ.pop("SW_TEST_BOM", None)
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"A=caf\xe9\n")
    with pytest.raises(EnvFileError, match=rf"^{latin}: not UTF-8 text"):
        load(str(latin))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nB='open\n", "line 2: a quote not closed on its line"),
        ('A="open\n', "line 1: a quote not closed on its line"),
        ("A='x' y\n", "line 1: 'y' after the closing quote"),
        ("1A=2\n", "line 1: not NAME=VALUE"),
        ("just words\n", "line 1: not NAME=VALUE"),
        ("A=a\0b\n", "line 1: a NUL byte"),
    ],
)
def test_a_wrong_line_is_named(text: str, message: str) -> None:
    with pytest.raises(EnvFileError) as raised:
        read(text, {})
    assert str(raised.value).startswith(message)


_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_VALUES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n\r"), max_size=30
)


@given(_NAMES, _VALUES.filter(lambda value: "'" not in value))
def test_any_single_quoted_value_reads_back(name: str, value: str) -> None:
    assert read(f"{name}='{value}'\n", {}) == {name: value}


@given(_NAMES, _VALUES)
def test_any_double_quoted_value_reads_back(name: str, value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    assert read(f'{name}="{escaped}"  # note\n', {}) == {name: value}


def test_load_keeps_what_the_environment_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".env"
    path.write_text("SW_TEST_KEPT=file\nSW_TEST_NEW=file\n")
    monkeypatch.setenv("SW_TEST_KEPT", "environment")
    monkeypatch.delenv("SW_TEST_NEW", raising=False)
    try:
        assert load(str(path)) == ["SW_TEST_NEW"]
        assert os.environ["SW_TEST_KEPT"] == "environment"
        assert os.environ["SW_TEST_NEW"] == "file"
    finally:
        os.environ.pop("SW_TEST_NEW", None)
    path.write_text("A=1\nB='\n")
    with pytest.raises(EnvFileError, match=rf"^{path}: line 2: "):
        load(str(path))
