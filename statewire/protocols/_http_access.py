"""The HTTP server's access log: one entry an exchange, written when its response is
complete (or the connection ended it), in the Combined Log Format that Apache, nginx and
twisted.web write, so that the tools reading theirs read statewire's.

Off by default (``HTTPFactory(access_log=None)``): a server that keeps no log pays one
test a request. ``HTTPFactory(access_log=AccessLog())``, ``access_log=True`` or
``statewire serve --access-log`` turn it on; a subclass of :class:`AccessLog` overriding
:meth:`AccessLog.write` sends each :class:`AccessEntry` elsewhere (JSON, a metrics system).

What is logged, and when:

* a response given whole, or ended, as it is complete: its status, the body bytes sent
  (``-`` for none, as the Combined format writes it), the request line, the ``Referer``
  and ``User-Agent`` fields;
* a ``101`` as it is sent (what follows it is the new protocol's, not logged here);
* a request the server refuses (``400``, ``413``, ``414``, ``431``, ``500`` for a handler
  that raised, ...) with the refusal's status: the request line as far as it was read
  (``-`` when it was refused itself: a line over its limit, or not HTTP);
* a response the connection's end cut short: its status and the body bytes sent when its
  head had left; ``499`` when nothing of it had (nginx's "client closed request", also
  when the server ended the connection: a shutdown's abort). The entry's ``complete`` is
  false either way.

The time is the head's arrival (as Apache's ``%t``), in UTC. Every byte a client chose
(the target, the two fields) is written as it came only when printable ASCII other than
``"`` and ``\\``; any other byte is written ``\\xHH``, as nginx does: a client cannot end
the line, forge a second entry or send terminal escapes to whoever reads the log.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from statewire.protocols._log_text import EntryLog, escaped

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

if TYPE_CHECKING:
    from statewire.protocols._http_exchange import Request

#: the logger the default :meth:`AccessLog.write` writes to, at INFO
LOGGER = "statewire.access"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: the status logged for a response of which nothing was sent when the connection ended
CLOSED_BEFORE_RESPONSE = 499
#: the bytes of a ``Referer`` or ``User-Agent`` written (the rest cut, ``...`` after it):
#: a client sending a 64 KiB field does not get a 256 KiB line (each byte escaped takes
#: four); the request line is bounded by its own limit (8 KiB)
FIELD_LIMIT = 4096


class AccessEntry(NamedTuple):
    """One exchange, as the access log has it."""

    #: the client's (host, port), when the transport says (behind a PROXY header: the
    #: client the header names)
    client: tuple[str, int] | None
    #: the request line's parts (``b""`` and ``None``: not read, the line was refused)
    method: bytes
    target: bytes
    version: tuple[int, int] | None
    status: int
    #: the body bytes sent (the response's framing not counted)
    sent: int
    #: the head's arrival (``time.time()``) and the seconds from it to this entry
    received: float
    duration: float
    referer: bytes | None
    user_agent: bytes | None
    #: whether the response was sent whole (false: the connection's end cut it short)
    complete: bool


#: the last second :func:`clf_time` wrote, and its text (a busy server logs many a second)
_last_time: list[tuple[int, str]] = [(-1, "")]


def clf_time(seconds: float) -> str:
    """``seconds`` (since the epoch) as the Combined format's ``%t`` has it, in UTC:
    ``03/Dec/2026:14:50:00 +0000`` (month names in English, whatever the locale)."""
    whole = int(seconds)
    last = _last_time[0]
    if last[0] == whole:
        return last[1]
    t = time.gmtime(whole)
    text = (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _last_time[0] = (whole, text)
    return text


def referer_and_agent(fields: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """The first ``Referer`` and ``User-Agent`` among ``fields`` (``None``: none)."""
    referer = agent = None
    for name, value in fields:
        if len(name) in (7, 10):  # (most fields are neither: no lower-casing for them)
            lowered = name.lower()
            if lowered == b"referer":
                if referer is None:
                    referer = value
            elif lowered == b"user-agent" and agent is None:
                agent = value
    return referer, agent


def combined(entry: AccessEntry) -> str:
    """``entry`` as one line of the Combined Log Format."""
    host = entry.client[0] if entry.client is not None else "-"
    if entry.version is None:
        request = "-"
    else:
        major, minor = entry.version
        request = f"{escaped(entry.method)} {escaped(entry.target)} HTTP/{major}.{minor}"
    sent = str(entry.sent) if entry.sent else "-"
    referer = "-" if entry.referer is None else escaped(entry.referer, FIELD_LIMIT)
    agent = "-" if entry.user_agent is None else escaped(entry.user_agent, FIELD_LIMIT)
    return (
        f'{host} - - [{clf_time(entry.received)}] "{request}" {entry.status} {sent} '
        f'"{referer}" "{agent}"'
    )


class AccessLog(EntryLog[AccessEntry]):
    """Writes an :class:`AccessEntry` an exchange: by default its :func:`combined` line to
    the ``statewire.access`` logger at INFO, the entry itself in the record's ``access``
    attribute (for a formatter of your own). Override :meth:`write` to send entries
    elsewhere; it runs inside the connection's read or the handler's write, so it should
    not block (a ``logging`` handler writing to a file or stderr is what servers do)."""

    default_logger = LOGGER
    attribute = "access"
    kind = "access"

    def write(self, entry: AccessEntry) -> None:
        """Log ``entry``."""
        self.emit(combined(entry), entry)

    def exchange(self, request: Request) -> ExchangeLog:
        """What a response calls, once, when it is done (see :class:`ExchangeLog`)."""
        return ExchangeLog(self, request)

    def refused(
        self,
        client: tuple[str, int] | None,
        line: tuple[bytes, bytes, tuple[int, int]] | None,
        fields: Sequence[tuple[bytes, bytes]],
        status: int,
        sent: int,
    ) -> None:
        """A refusal sent before any request was made of the head: ``line`` the request
        line read (``None``: none, or the line itself refused), ``fields`` those read. Its
        time is the refusal's (the head's arrival is not kept), its duration 0."""
        now = time.time()
        method, target, version = line if line is not None else (b"", b"", None)
        referer, agent = referer_and_agent(fields)
        entry = AccessEntry(
            client, method, target, version, status, sent, now, 0.0, referer, agent, True
        )
        self.written(entry)


class ExchangeLog:
    """One request's entry to come: made when its head is read, written once by
    :meth:`done` (later calls do nothing)."""

    __slots__ = ("_access", "_received", "_request", "_start")

    def __init__(self, access: AccessLog, request: Request) -> None:
        self._access: AccessLog | None = access
        self._request = request
        self._received = time.time()
        self._start = time.perf_counter()

    def done(self, status: int, sent: int, complete: bool) -> None:
        """The response is complete (or cut short: ``complete`` false): write the entry."""
        access, self._access = self._access, None
        if access is None:
            return
        request = self._request
        referer, agent = referer_and_agent(request.headers.fields)
        access.written(
            AccessEntry(
                request.client,
                request.method,
                request.target,
                request.version,
                status,
                sent,
                self._received,
                time.perf_counter() - self._start,
                referer,
                agent,
                complete,
            )
        )


__all__ = [
    "CLOSED_BEFORE_RESPONSE",
    "LOGGER",
    "AccessEntry",
    "AccessLog",
    "ExchangeLog",
    "clf_time",
    "combined",
]
