"""Client-chosen bytes made safe for a log line (the HTTP access log, the SMTP mail log)."""

from __future__ import annotations

#: the bytes written as they came (printable ASCII but ``"`` and ``\``)
_PLAIN = bytes(byte for byte in range(0x20, 0x7F) if byte not in b'"\\')


def escaped(data: bytes) -> str:
    """``data`` for a log line: printable ASCII as it is, but ``"``, ``\\`` and every other
    byte as ``\\xHH`` (as nginx writes them): no byte a client chose can end the line,
    close a quoted field or reach a terminal as an escape sequence."""
    if not data.translate(None, _PLAIN):
        return data.decode("ascii")
    return "".join(chr(byte) if byte in _PLAIN else f"\\x{byte:02X}" for byte in data)


__all__ = ["escaped"]
