"""What the HTTP access log and the SMTP mail log share: client-chosen bytes made safe for
a log line, the base of the two logs (a line an entry to a logger) and the check of a
factory's ``access_log=``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Self  # (typing's from Python 3.11)

E = TypeVar("E")
log = logging.getLogger("statewire.protocols")

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


class EntryLog(Generic[E]):
    """A log writing one line an entry (:meth:`write`) to ``logger`` at INFO, the entry in
    the record's attribute :attr:`attribute`; :meth:`written` is what the server calls."""

    #: the logger used when none is given, the record's attribute holding the entry, and
    #: what the log is called in its errors
    default_logger = "statewire"
    attribute = "entry"
    kind = "entry"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(self.default_logger)

    def emit(self, text: str, entry: E) -> None:
        """Log ``text``, with ``entry`` in the record."""
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            # the record made here, not by ``logger.info``: the caller's frame (which
            # ``info`` looks up, walking the stack) is always this one
            record = logger.makeRecord(
                logger.name,
                logging.INFO,
                __file__,
                0,
                text,
                (),
                None,
                extra={self.attribute: entry},
            )
            logger.handle(record)

    def write(self, entry: E) -> None:
        """Log ``entry`` (the subclass's line)."""
        raise NotImplementedError

    def with_lines(self) -> Self:
        """This log, made to write its lines: what ``log_access()`` (``statewire serve
        --access-log``) asks of a log a factory keeps already. Itself; a log that only
        counts (``statewire.metrics``) puts the default log behind it."""
        return self

    def written(self, entry: E) -> None:
        """:meth:`write` ``entry``; what it raises is logged at ERROR, not raised: a log's
        failure fails no exchange or message."""
        try:
            self.write(entry)
        except Exception:
            log.exception("the %s log could not write an entry", self.kind)


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


__all__ = ["CUT", "EntryLog", "chosen_log", "escaped"]
