"""Delimited lines: the bytes before a delimiter of one or more bytes."""

from __future__ import annotations

from typing import IO, Any

from construct import stream_seek, stream_write

from grammars._base import Framing, as_bytes, human_size
from grammars.errors import InvalidValueError, TooLongError, TruncatedError

_NAMES = {b"\r\n": "CRLF", b"\n": "LF", b"\r": "CR", b"\x00": "NUL"}


class Line(Framing):
    """A line: the bytes before ``delimiter``; the delimiter is not part of the value.

    ``max_length`` bounds the value, not counting the delimiter: a line of exactly
    ``max_length`` bytes is accepted however its bytes and its delimiter are split across
    reads. Longer lines are refused as soon as no delimiter can end them within the limit.
    """

    def __init__(self, delimiter: bytes = b"\r\n", max_length: int = 16384) -> None:
        super().__init__()
        if not isinstance(delimiter, bytes) or not delimiter:
            raise ValueError(f"delimiter must be non-empty bytes, got {delimiter!r}")
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        self.delimiter = delimiter
        self.max_length = max_length

    def describe(self) -> str:
        name = _NAMES.get(self.delimiter, repr(self.delimiter))
        return f"line {name} ≤ {human_size(self.max_length)}"

    def exceeds(self, partial: bytes | bytearray) -> bool:
        """Whether ``partial`` (a line start holding no whole delimiter) is already too long.

        True when the line cannot end within ``max_length``: no delimiter could start at any
        position up to the limit, even one whose first bytes are the end of ``partial``.
        """
        n = len(partial)
        if n <= self.max_length:
            return False
        first = max(n - len(self.delimiter) + 1, 0)
        return not any(
            self.delimiter.startswith(partial[p:]) for p in range(first, self.max_length + 1)
        )

    def too_long(self, offset: int, path: str | None = None) -> TooLongError:
        """The error for a line starting at ``offset`` that exceeds the limit."""
        return TooLongError(
            f"line longer than {self.max_length} bytes without delimiter {self.delimiter!r}",
            limit=self.max_length,
            offset=offset + self.max_length,
            path=path,
        )

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        start = stream.tell()
        window = stream.read(self.max_length + len(self.delimiter))
        end = window.find(self.delimiter)
        if end < 0:
            if self.exceeds(window):
                raise self.too_long(start, path)
            raise TruncatedError(
                f"stream ended before delimiter {self.delimiter!r}",
                needed=start + len(window) + 1,
                offset=start + len(window),
                path=path,
            )
        stream_seek(stream, start + end + len(self.delimiter), 0, path)
        return window[:end]

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        data = as_bytes(obj, path)
        if len(data) > self.max_length:
            raise TooLongError(
                f"line of {len(data)} bytes exceeds max_length {self.max_length}",
                limit=self.max_length,
                path=path,
            )
        wire = data + self.delimiter
        if wire.find(self.delimiter) != len(data):
            raise InvalidValueError(
                f"line contains its delimiter {self.delimiter!r}; it would not parse back",
                path=path,
            )
        stream_write(stream, wire, len(wire), path)
        return obj


def line(delimiter: bytes = b"\r\n", max_length: int = 16384) -> Line:
    """A line ending with ``delimiter``, of at most ``max_length`` bytes before it.

    >>> line().parse(b"HELO example.org\\r\\n")
    b'HELO example.org'
    >>> line(b"\\n").build(b"ok")
    b'ok\\n'
    """
    return Line(delimiter, max_length)
