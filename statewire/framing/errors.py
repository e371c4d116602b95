"""Framing errors: typed, carrying the absolute stream offset of the offending byte."""

from __future__ import annotations

from typing import Any

from grammars import GrammarError, TooLongError
from statewire.error import RemoteProtocolError


class FramingError(RemoteProtocolError):
    """Base of the errors a :class:`~statewire.framing.Framer` reports.

    ``offset`` counts bytes from the start of the stream the framer was fed (across grammar
    switches), so it points at the offending byte in the peer's whole byte stream.
    ``grammar`` is the grammar that was framing the bytes. These are *remote* errors (a
    :class:`~statewire.error.RemoteProtocolError`): the peer sent bytes the grammar refuses.
    """

    def __init__(self, message: str, *, offset: int, grammar: Any = None) -> None:
        super().__init__(f"{message} (at stream offset {offset})")
        self.message = message
        self.offset = offset
        self.grammar = grammar

    @classmethod
    def from_grammar(cls, error: GrammarError, base: int, grammar: Any) -> FramingError:
        """The framing error for a grammar's parse error at stream offset ``base``."""
        offset = base + (error.offset or 0)
        if isinstance(error, TooLongError):
            return FrameTooLong(error.message, offset=offset, grammar=grammar, limit=error.limit)
        return MalformedFrame(error.message, offset=offset, grammar=grammar)


class FrameTooLong(FramingError):
    """A frame exceeds its limit (``limit``); found from the header or the first byte past it."""

    def __init__(self, message: str, *, offset: int, grammar: Any = None, limit: int) -> None:
        super().__init__(message, offset=offset, grammar=grammar)
        self.limit = limit


class MalformedFrame(FramingError):
    """The bytes do not follow the grammar (a bad netstring length, a missing ``,``, ...)."""


class TruncatedFrame(FramingError):
    """The stream ended (:meth:`~statewire.framing.Framer.eof`) inside a frame."""
