"""Length-prefixed frames: a length field of 1, 2, 4 or 8 bytes, then the bytes it counts.

Layout on the wire, with the options named as Netty's ``LengthFieldBasedFrameDecoder`` and
tokio's ``LengthDelimitedCodec`` name them::

    | header (length_offset bytes) | length field (width bytes) | body |

* ``body length = field + length_adjustment`` — and, when ``includes_header`` is true,
  minus the bytes of the header and the field (the field counts the whole frame).
* The parsed value is ``header + body``: everything but the length field, which the grammar
  derives when it builds. With ``length_offset=0`` (the common case) the value is the body.
* ``max_length`` bounds the body. A field announcing more is refused from the header alone,
  before any body byte is needed.

Examples::

    prefixed()                                  # u32 big-endian length, then the body
    prefixed(2, "little")                       # u16 little-endian length
    prefixed(4, includes_header=True)           # the length counts its own 4 bytes too
    prefixed(4, length_offset=2)                # 2-byte message type, then u32 length:
                                                #   value = type (2 bytes) + body
    prefixed(2, length_adjustment=2)            # the length omits a 2-byte trailer (CRC)
"""

from __future__ import annotations

from typing import IO, Any, Literal

from construct import stream_write

from grammars._base import Framing, as_bytes, human_size
from grammars.errors import InvalidValueError, MalformedError, TooLongError, TruncatedError

_WIDTHS = (1, 2, 4, 8)


class LengthPrefixed(Framing):
    """A frame announced by a fixed-width unsigned length field (see the module doc)."""

    def __init__(
        self,
        width: int = 4,
        byteorder: Literal["big", "little"] = "big",
        max_length: int = 1 << 20,
        *,
        length_offset: int = 0,
        length_adjustment: int = 0,
        includes_header: bool = False,
    ) -> None:
        super().__init__()
        if width not in _WIDTHS:
            raise ValueError(f"width must be one of {_WIDTHS}, got {width}")
        if byteorder not in ("big", "little"):
            raise ValueError(f"byteorder must be 'big' or 'little', got {byteorder!r}")
        if max_length < 0 or length_offset < 0:
            raise ValueError("max_length and length_offset must be >= 0")
        self.width = width
        self.byteorder: Literal["big", "little"] = byteorder
        self.max_length = max_length
        self.length_offset = length_offset
        self.length_adjustment = length_adjustment
        self.includes_header = includes_header
        #: bytes before the body: the header and the length field
        self.header_size = length_offset + width
        #: what to add to the field's value to get the body length
        self.adjust = length_adjustment - (self.header_size if includes_header else 0)

    def describe(self) -> str:
        kind = f"u{8 * self.width}{'be' if self.byteorder == 'big' else 'le'}"
        extras = []
        if self.length_offset:
            extras.append(f"offset {self.length_offset}")
        if self.adjust:
            extras.append(f"adjust {self.adjust:+d}")
        more = f" ({', '.join(extras)})" if extras else ""
        return f"prefixed {kind}{more} ≤ {human_size(self.max_length)}"

    def body_length(self, field: int, offset: int, path: str | None = None) -> int:
        """The body length a field value announces, checked against the limits.

        ``offset`` is the stream position of the length field, reported by the errors.
        """
        length = field + self.adjust
        if length > self.max_length:
            raise TooLongError(
                f"length field announces a body of {length} bytes, "
                f"more than max_length {self.max_length}",
                limit=self.max_length,
                offset=offset,
                path=path,
            )
        if length < 0:
            raise MalformedError(
                f"length field {field} gives a negative body length ({length})",
                offset=offset,
                path=path,
            )
        return length

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        start = stream.tell()
        head = stream.read(self.header_size)
        if len(head) < self.header_size:
            raise TruncatedError(
                "stream ended inside the length header",
                needed=start + self.header_size,
                offset=start + len(head),
                path=path,
            )
        field = int.from_bytes(head[self.length_offset :], self.byteorder)
        length = self.body_length(field, start + self.length_offset, path)
        body = stream.read(length)
        if len(body) < length:
            raise TruncatedError(
                f"stream ended inside a body of {length} bytes",
                needed=start + self.header_size + length,
                offset=start + self.header_size + len(body),
                path=path,
            )
        return head[: self.length_offset] + body

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        data = as_bytes(obj, path)
        if len(data) < self.length_offset:
            raise InvalidValueError(
                f"value of {len(data)} bytes is shorter than its {self.length_offset}-byte header",
                path=path,
            )
        body = len(data) - self.length_offset
        field = body - self.adjust
        largest = min(self.max_length, (1 << (8 * self.width)) - 1 + self.adjust)
        if body > largest:
            raise TooLongError(
                f"body of {body} bytes exceeds the largest this grammar frames ({largest})",
                limit=largest,
                path=path,
            )
        if field < 0:
            raise InvalidValueError(
                f"body of {body} bytes is too short for length adjustment {self.adjust}",
                path=path,
            )
        wire = (
            data[: self.length_offset]
            + field.to_bytes(self.width, self.byteorder)
            + data[self.length_offset :]
        )
        stream_write(stream, wire, len(wire), path)
        return obj


def prefixed(
    width: int = 4,
    byteorder: Literal["big", "little"] = "big",
    max_length: int = 1 << 20,
    *,
    length_offset: int = 0,
    length_adjustment: int = 0,
    includes_header: bool = False,
) -> LengthPrefixed:
    """A length-prefixed frame (see :mod:`grammars.prefixed` for the layout and options).

    >>> prefixed().parse(b"\\x00\\x00\\x00\\x02hi")
    b'hi'
    >>> prefixed(2, "little", includes_header=True).build(b"hi")
    b'\\x04\\x00hi'
    """
    return LengthPrefixed(
        width,
        byteorder,
        max_length,
        length_offset=length_offset,
        length_adjustment=length_adjustment,
        includes_header=includes_header,
    )
