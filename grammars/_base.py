"""What every framing grammar shares: a construct base class, byte checks and stream I/O."""

from __future__ import annotations

from typing import Any

from construct import Construct, SizeofError

from grammars.errors import InvalidValueError


class Framing(Construct):
    """Base of the framing grammars (line, netstring, prefixed, fixed, raw).

    A framing is an ordinary construct object (``parse``, ``build``, composition with
    ``Struct`` and friends). statewire's incremental framer recognises these classes and
    runs a fast path for them instead of construct's interpreter.
    """

    def describe(self) -> str:
        """A short human description, e.g. ``line CRLF ≤ 16 KiB`` (used by diagrams)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError(f"{self.describe()} has no fixed size", path=path)


def as_bytes(obj: object, path: str | None) -> bytes:
    """Return ``obj`` as bytes, or refuse anything that is not bytes-like."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    hint = " (encode it first)" if isinstance(obj, str) else ""
    raise InvalidValueError(f"expected bytes, got {type(obj).__name__}{hint}", path=path)


def human_size(n: int) -> str:
    """``16384`` -> ``16 KiB``; sizes that are not whole KiB/MiB/GiB stay in bytes."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"
