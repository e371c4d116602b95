"""Client-chosen bytes made safe for a log line (the HTTP access log, the SMTP mail log)."""

from __future__ import annotations

from typing import TypeVar

L = TypeVar("L")

#: the bytes written as they came (printable ASCII but ``"`` and ``\``)
_PLAIN = bytes(byte for byte in range(0x20, 0x7F) if byte not in b'"\\')
#: every other byte (as a latin-1 code point) to its ``\xHH``
_ESCAPES = {byte: f"\\x{byte:02X}" for byte in range(256) if byte not in _PLAIN}
#: what ends a value cut at its limit
CUT = "..."


def escaped(data: bytes, limit: int | None = None) -> str:
    """``data`` for a log line: printable ASCII as it is, but ``"``, ``\\`` and every other
    byte as ``\\xHH`` (as nginx writes them): no byte a client chose can end the line,
    close a quoted field or reach a terminal as an escape sequence. Past ``limit`` bytes,
    the rest is left out and :data:`CUT` ends the value (a client cannot have a log line
    grow without bound)."""
    cut = limit is not None and len(data) > limit
    if cut:
        data = data[:limit]
    if data.translate(None, _PLAIN):
        text = data.decode("latin-1").translate(_ESCAPES)
    else:
        text = data.decode("ascii")
    return text + CUT if cut else text


def chosen_log(value: object, kind: type[L]) -> L | None:
    """A factory's ``access_log=`` argument: ``None`` or ``False`` (no log), ``True`` (a
    ``kind()``, the default log) or a ``kind`` instance; anything else is refused here
    (``TypeError``) rather than at every request."""
    if value is None or value is False:
        return None
    if value is True:
        return kind()
    if isinstance(value, kind):
        return value
    raise TypeError(f"access_log is True, False, None or a {kind.__name__}, not {value!r}")


__all__ = ["CUT", "chosen_log", "escaped"]
