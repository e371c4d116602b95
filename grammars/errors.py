"""Errors raised by the framing grammars.

Every error is a :class:`construct.ConstructError`, so code that already catches construct's
errors keeps working. Each one says what was wrong, and parse errors carry ``offset``: the
position in the parsed stream (as ``stream.tell()`` counts it) of the offending byte.
"""

from __future__ import annotations

from typing import Any

from construct import ConstructError, StreamError


def restored(cls: type[BaseException], args: tuple[Any, ...], fields: dict[str, Any]) -> Any:
    """An exception of ``cls`` with ``args`` and the attributes ``fields``, made without
    calling its ``__init__``: how the errors whose arguments are keyword-only unpickle (the
    default would call ``cls(*args)``, which they refuse)."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


class GrammarError(ConstructError):
    """Base of the errors raised by :mod:`grammars`.

    ``offset`` is the stream position of the offending byte when parsing, ``None`` when
    building. ``path`` is construct's path to the failing field.
    """

    def __init__(self, message: str, *, offset: int | None = None, path: str | None = None):
        self.message = message
        self.offset = offset
        where = "" if offset is None else f" (at offset {offset})"
        super().__init__(message + where, path=path)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by its attributes (see restored)
        return (restored, (type(self), self.args, self.__dict__))


class TooLongError(GrammarError):
    """A frame is longer than the grammar's ``max_length`` (parsing or building).

    ``limit`` is the ``max_length`` that was exceeded.
    """

    def __init__(
        self, message: str, *, limit: int, offset: int | None = None, path: str | None = None
    ):
        self.limit = limit
        super().__init__(message, offset=offset, path=path)


class MalformedError(GrammarError):
    """The bytes do not follow the grammar (a non-digit in a netstring length, ...)."""


class InvalidValueError(GrammarError):
    """A value cannot be built by the grammar (wrong type, contains the delimiter, ...)."""


class TruncatedError(GrammarError, StreamError):
    """The stream ended before the frame was complete.

    It is also a :class:`construct.StreamError`, construct's own signal for "not enough
    bytes", so the grammars behave like construct's types inside a ``Struct``. ``needed`` is
    the stream position up to which bytes must exist before parsing can progress.
    """

    def __init__(
        self, message: str, *, needed: int, offset: int | None = None, path: str | None = None
    ):
        self.needed = needed
        super().__init__(message, offset=offset, path=path)
