"""``statewire serve --env-file PATH``: environment variables from a ``.env`` file, set
before the target is imported, as uvicorn's option of that name sets them.

The file's lines, as the usual ``.env`` files write them:

* ``NAME=VALUE`` (spaces around ``=`` allowed, an ``export`` before ``NAME`` ignored);
  ``NAME`` is letters, digits and ``_``, not starting with a digit;
* an unquoted value ends at the line's end or at a ``#`` after a space inside it (a
  comment), its outer spaces taken off; ``'single quotes'`` keep what they hold as it is
  (no reference replaced, unlike some python-dotenv versions); ``"double quotes"`` read
  ``\\n``, ``\\t``, ``\\r``, ``\\"``, ``\\'``, ``\\\\`` and ``\\$`` (a ``$`` kept as it is);
  anything after the closing quote must be a comment;
* ``${NAME}`` (or ``${NAME:-default}``) in an unquoted or double-quoted value is replaced
  by the variable's value: from the environment, else from an earlier line of the file,
  else ``default`` (else nothing); a variable set empty is set (its empty value is
  taken), as python-dotenv takes it;
* blank lines, ``#`` comment lines, and a ``NAME`` alone (declared, given no value) are
  passed over.

A variable the environment has already keeps its value: the file gives defaults, as
uvicorn's (python-dotenv's) loading does. Anything else is refused, naming the line
(a value over several lines among others): a file half read would start the application
with half its settings. Under ``--workers`` and ``--reload`` the supervisor reads it once
and the workers inherit the variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: a line: ``[export] NAME = rest`` (``rest`` the raw value, comment and all)
_ASSIGNMENT = re.compile(rf"\s*(?:export\s+)?({_NAME})\s*=\s*(.*?)\s*\Z", re.DOTALL)
_DECLARATION = re.compile(rf"\s*(?:export\s+)?{_NAME}\s*\Z")
#: ``${NAME}`` or ``${NAME:-default}``
_REFERENCE = re.compile(rf"\$\{{({_NAME})(?::-([^}}]*))?\}}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
#: an escaped ``$`` while references are replaced (no value holds a NUL: refused below)
_KEPT = "\0"


class EnvFileError(ValueError):
    """A line of the file is not one of the forms it may take."""


def read(text: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables ``text`` sets, in its order, references resolved against
    ``environ`` first."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):  # (only LF ends a line)
        line = line.removesuffix("\r")
        if "\0" in line:
            raise EnvFileError(f"line {number}: a NUL byte (no variable can hold one)")
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _DECLARATION.fullmatch(line):
            continue
        matched = _ASSIGNMENT.fullmatch(line)
        if matched is None:
            raise EnvFileError(f"line {number}: not NAME=VALUE")
        name, raw = matched.groups()
        try:
            found[name] = _value(raw, {**found, **environ})
        except EnvFileError as error:
            raise EnvFileError(f"line {number}: {error}") from None
    return found


def _value(raw: str, known: Mapping[str, str]) -> str:
    """One value, as the module says."""
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end < 0:
            raise EnvFileError("a quote not closed on its line")
        _after(raw[end + 1 :])
        return raw[1:end]
    if raw[:1] == '"':
        text, rest = _double_quoted(raw[1:])
        _after(rest)
        return _expanded(text, known)
    comment = re.search(r"\s#", raw)
    if comment is not None:
        raw = raw[: comment.start()].rstrip()
    return _expanded(raw, known)


def _double_quoted(raw: str) -> tuple[str, str]:
    """The text of a double-quoted value (escapes read; an escaped ``$`` as
    :data:`_KEPT`, for :func:`_expanded` to leave alone) and what follows its closing
    quote."""
    out: list[str] = []
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == '"':
            return "".join(out), raw[index + 1 :]
        if char == "\\" and index + 1 < len(raw):
            following = raw[index + 1]
            out.append(_KEPT if following == "$" else _ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        out.append(char)
        index += 1
    raise EnvFileError("a quote not closed on its line")


def _after(rest: str) -> None:
    """Only a comment may follow a closing quote."""
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise EnvFileError(f"{rest!r} after the closing quote")


def _expanded(text: str, known: Mapping[str, str]) -> str:
    """``${NAME}`` and ``${NAME:-default}`` replaced (an escaped ``$`` kept)."""

    def value(found: re.Match[str]) -> str:
        name, default = found.groups()
        value = known.get(name)
        return value if value is not None else default or ""

    return _REFERENCE.sub(value, text).replace(_KEPT, "$")


def load(path: str) -> list[str]:
    """Set the variables of the file at ``path`` that the environment does not have; the
    names set. ``OSError`` when it cannot be read, :class:`EnvFileError` (naming the
    file) when a line is wrong."""
    try:
        with open(path, encoding="utf-8-sig") as file:  # (a BOM at the start is passed over)
            text = file.read()
    except UnicodeDecodeError as error:
        raise EnvFileError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    try:
        found = read(text, os.environ)
    except EnvFileError as error:
        raise EnvFileError(f"{path}: {error}") from None
    fresh = [name for name in found if name not in os.environ]
    for name in fresh:
        os.environ[name] = found[name]
    return fresh
