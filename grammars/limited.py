"""A bound on the bytes one frame of any construct grammar may span."""

from __future__ import annotations

from typing import IO, Any

from construct import Renamed, stream_tell

from grammars._base import human_size
from grammars.errors import TooLongError


class Limited(Renamed):
    """``subcon``, whose frames may span at most ``max_length`` bytes.

    It parses and builds exactly as ``subcon`` does, refusing a longer frame with
    :class:`~grammars.TooLongError`. It is a ``Renamed`` (with no new name), so code that
    looks through construct's renames, such as grammar-derived test strategies, sees
    ``subcon``. An incremental framer can use the bound to refuse a frame as soon as it
    needs more bytes than that, before they are buffered.
    """

    def __init__(self, subcon: Any, max_length: int) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        super().__init__(subcon)
        self.max_length = max_length

    def describe(self) -> str:
        """A short human description, e.g. ``CString ≤ 4 KiB`` (used by diagrams)."""
        inner = getattr(self.subcon, "describe", None)
        name = inner() if callable(inner) else type(self.subcon).__name__
        return f"{name} ≤ {human_size(self.max_length)}"

    def _too_long(self, offset: int | None, path: str) -> TooLongError:
        return TooLongError(
            f"frame longer than max_length {self.max_length} bytes",
            limit=self.max_length,
            offset=offset,
            path=path,
        )

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Any:
        start = stream_tell(stream, path)
        value = self.subcon._parsereport(stream, context, path)
        if stream_tell(stream, path) - start > self.max_length:
            raise self._too_long(start + self.max_length, path)
        return value

    def _build(self, obj: Any, stream: IO[bytes], context: Any, path: str) -> Any:
        start = stream_tell(stream, path)
        built = self.subcon._build(obj, stream, context, path)
        if stream_tell(stream, path) - start > self.max_length:
            raise self._too_long(None, path)
        return built


def limited(subcon: Any, max_length: int) -> Limited:
    """``subcon`` with frames of at most ``max_length`` bytes (a declared protocol's way
    to bound a framing that has no limit of its own, such as ``CString``).

    >>> from construct import CString
    >>> limited(CString("ascii"), 8).parse(b"hello\\x00")
    'hello'
    """
    return Limited(subcon, max_length)
