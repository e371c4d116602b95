"""HTTP responses counted for :mod:`statewire.metrics`: by status, and their durations in a
histogram (:mod:`statewire._histogram`); and SMTP messages, by the reply that answered
them. :meth:`statewire.metrics.Metrics.count_responses` turns it on for a factory,
importing this module then (it imports both servers).

The counting rides on the HTTP server's access log (:mod:`statewire.protocols._http_access`):
:class:`CountingLog` is an :class:`~statewire.protocols.http.AccessLog` that counts each
entry, then hands it to the log the factory kept before, if any (``--access-log``). So
what is counted is what the access log writes, once an exchange: a response complete or
cut short (``499`` when nothing of it had left), a ``101``, and the server's refusals
(``400``, ``408``, ``413``, ``431``, ``500`` for a handler that raised...). The duration
is the access log's: from the head's arrival to the response's end (0 for a refusal made
before any request: its head was never whole). A server counting no responses pays
nothing for it; one counting and keeping no log makes no entry (:class:`_Timed`).

SMTP's counting rides on its mail log (:mod:`statewire.protocols._smtp_log`) alike:
:class:`CountingMailLog` counts each message the mail log writes, by its reply's code
(``0`` when the session ended before the message was answered).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from statewire.protocols._http_access import ExchangeLog
from statewire.protocols._log_text import EntryLog
from statewire.protocols.http import AccessEntry, AccessLog, Request
from statewire.protocols.smtp import MailLog, MessageEntry

if TYPE_CHECKING:
    from typing_extensions import Self  # (typing's from Python 3.11)

#: an entry a log writes
E = TypeVar("E")


class Responded(Protocol):
    """What the counting log tells (:class:`statewire.metrics.Metrics` is one)."""

    def responded(self, protocol: str, status: int, seconds: float) -> None: ...

    def mailed(self, protocol: str, status: int) -> None: ...


class Counting(EntryLog[E]):
    """A log that counts each entry (:meth:`count`), then writes it to ``then``, the log
    kept before (``None``: none, nothing written)."""

    #: the log put behind it when it is asked for lines (:meth:`with_lines`)
    lines: ClassVar[type[EntryLog[Any]]]

    def __init__(self, metrics: Responded, protocol: str, then: EntryLog[E] | None) -> None:
        super().__init__(then.logger if then is not None else None)
        self.metrics = metrics
        self.protocol = protocol
        self.then = then

    def count(self, entry: E) -> None:
        """Tell :attr:`metrics` of ``entry``."""
        raise NotImplementedError

    def write(self, entry: E) -> None:
        """Count ``entry``; then the kept log writes it (its failure logged there, as a
        log's failure is: the counting stands)."""
        self.count(entry)
        if self.then is not None:
            self.then.written(entry)

    def with_lines(self) -> Self:
        """Counting, and writing the lines: the default log behind, if none was."""
        if self.then is None:
            self.then = self.lines()
        return self


class CountingLog(Counting[AccessEntry], AccessLog):
    """An access log that counts each exchange (``metrics.responded``)."""

    kind = "access (counting)"
    lines = AccessLog

    def exchange(self, request: Request) -> ExchangeLog:
        """With a log kept, the entry it writes (counted as it is written); with none, only
        the exchange's time and status, counted (no entry made: :class:`_Timed`)."""
        if self.then is not None:
            return ExchangeLog(self, request)
        return _Timed(self.metrics, self.protocol)

    def count(self, entry: AccessEntry) -> None:
        self.metrics.responded(self.protocol, entry.status, entry.duration)


class _Timed(ExchangeLog):
    """One exchange counted, with no log to write: its start, then its status and
    duration told once (what :class:`ExchangeLog` does, without the entry)."""

    __slots__ = ("_counting", "_protocol")

    def __init__(self, metrics: Responded, protocol: str) -> None:  # (not ExchangeLog's)
        self._counting: Responded | None = metrics
        self._protocol = protocol
        self._start = time.perf_counter()

    def done(self, status: int, sent: int, complete: bool) -> None:
        """The response is done: counted, once."""
        counting, self._counting = self._counting, None
        if counting is not None:
            counting.responded(self._protocol, status, time.perf_counter() - self._start)


class CountingMailLog(Counting[MessageEntry], MailLog):
    """A mail log that counts each message (``metrics.mailed``)."""

    kind = "mail (counting)"
    lines = MailLog

    def count(self, entry: MessageEntry) -> None:
        self.metrics.mailed(self.protocol, entry.status)


__all__ = ["Counting", "CountingLog", "CountingMailLog", "Responded"]
