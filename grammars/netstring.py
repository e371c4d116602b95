"""Netstrings: ``<decimal length>:<bytes>,`` as D. J. Bernstein's specification defines them.

The length is one or more ASCII digits with no sign, no spaces and no leading zero (``0:,``
is the empty netstring; ``01:x,`` is malformed).
"""

from __future__ import annotations

from typing import IO, Any

from construct import stream_seek, stream_write

from grammars._base import Framing, as_bytes, human_size
from grammars.errors import MalformedError, TooLongError, TruncatedError

_ZERO = 0x30


class Netstring(Framing):
    """A netstring whose body holds at most ``max_length`` bytes."""

    def __init__(self, max_length: int = 1 << 20) -> None:
        super().__init__()
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        self.max_length = max_length
        self.max_digits = len(str(max_length))

    def describe(self) -> str:
        return f"netstring ≤ {human_size(self.max_length)}"

    def scan_header(
        self,
        buf: bytes | bytearray,
        start: int,
        end: int,
        base: int = 0,
        path: str | None = None,
    ) -> tuple[int, int] | None:
        """Read the length header at ``buf[start:end]``.

        Returns ``(length, body_start)`` when the header is complete, ``None`` when more
        bytes are needed. Raises :class:`MalformedError` or :class:`TooLongError` as soon as
        the bytes seen prove the header wrong; the error's offset is ``base`` plus the
        index of the offending byte in ``buf``.
        """
        stop = min(end, start + self.max_digits + 1)
        colon = buf.find(b":", start, stop)
        head = bytes(buf[start : stop if colon < 0 else colon])
        count = next((i for i, b in enumerate(head) if not 0x30 <= b <= 0x39), len(head))
        digits = head[:count]
        # Conditions are checked in the order the bytes reveal them, so the error does not
        # depend on how the header was cut into reads.
        if count > 1 and digits[0] == _ZERO:
            raise MalformedError(
                "netstring length has a leading zero", offset=base + start, path=path
            )
        if count > self.max_digits or (digits and int(digits) > self.max_length):
            raise TooLongError(
                f"netstring announces {'' if colon >= 0 else 'at least '}{int(digits)} "
                f"bytes, more than max_length {self.max_length}",
                limit=self.max_length,
                offset=base + start,
                path=path,
            )
        if count < len(head):
            raise MalformedError(
                f"netstring length contains {head[count : count + 1]!r}, not a digit",
                offset=base + start + count,
                path=path,
            )
        if colon < 0:
            return None
        if not digits:
            raise MalformedError("netstring length is empty", offset=base + start, path=path)
        return int(digits), colon + 1

    def missing_comma(self, found: bytes, offset: int, path: str | None = None) -> MalformedError:
        """The error for a body not followed by ``,`` (``found`` is the byte seen instead)."""
        return MalformedError(
            f"expected b',' after netstring body, found {found!r}", offset=offset, path=path
        )

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        start = stream.tell()
        head = stream.read(self.max_digits + 1)
        header = self.scan_header(head, 0, len(head), base=start, path=path)
        if header is None:
            raise TruncatedError(
                "stream ended inside the netstring length",
                needed=start + len(head) + 1,
                offset=start + len(head),
                path=path,
            )
        length, body_start = header
        stream_seek(stream, start + body_start, 0, path)
        body = stream.read(length + 1)
        if len(body) < length + 1:
            raise TruncatedError(
                f"stream ended inside a netstring body of {length} bytes",
                needed=start + body_start + length + 1,
                offset=start + body_start + len(body),
                path=path,
            )
        if body[-1:] != b",":
            raise self.missing_comma(body[-1:], start + body_start + length, path)
        return body[:-1]

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        data = as_bytes(obj, path)
        if len(data) > self.max_length:
            raise TooLongError(
                f"netstring body of {len(data)} bytes exceeds max_length {self.max_length}",
                limit=self.max_length,
                path=path,
            )
        wire = b"%d:%s," % (len(data), data)
        stream_write(stream, wire, len(wire), path)
        return obj


def netstring(max_length: int = 1 << 20) -> Netstring:
    """A netstring of at most ``max_length`` body bytes (default 1 MiB).

    >>> netstring().parse(b"5:hello,")
    b'hello'
    >>> netstring().build(b"")
    b'0:,'
    """
    return Netstring(max_length)
