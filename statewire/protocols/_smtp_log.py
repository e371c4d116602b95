"""The SMTP server's mail log: one line a message, as a mail server's log has it (Postfix
writes a line of the same facts: the client, ``from=``, ``to=``, ``size=``, the answer).

Off by default (``SMTPFactory(access_log=None)``). ``SMTPFactory(access_log=True)``,
``access_log=MailLog()`` or ``statewire serve --access-log`` turn it on; a subclass of
:class:`MailLog` overriding :meth:`MailLog.write` sends each :class:`MessageEntry`
elsewhere.

A message is logged once its content began (``DATA`` answered ``354``, or a first
``BDAT``):

* when its end came, with the answer the client got (the handler's decision, or the
  server's refusal: ``552`` past the size, ``550`` for a bare newline...)::

      127.0.0.1 helo=client.example from=<a@example.org> to=<b@example.net> size=1204
      tls=no user=- 250 "2.0.0 Ok: queued as 1733..."

  (one line, cut in two here);

* when the session ended first (the connection lost, the idle timeout, the server's
  shutdown, a ``RSET`` between ``BDAT`` chunks, a failure of the handler's): status
  ``-`` and why, the message not delivered; or, once its end came and the sink was
  asked for its decision, which never came (its ``close()`` raised, was still pending,
  or gave what is no answer), ``not answered`` and why.

Every byte the client chose (the ``EHLO`` name, the paths, the ``AUTH`` identity) and the
reply's text are written as :func:`statewire.protocols._log_text.escaped` makes them:
printable ASCII, anything else ``\\xHH``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from statewire.protocols._log_text import EntryLog, escaped
from statewire.protocols._smtp_handler import Envelope

#: the logger the default :meth:`MailLog.write` writes to, at INFO
LOGGER = "statewire.mail"


class MessageEntry(NamedTuple):
    """One message, as the mail log has it."""

    #: the client's (host, port), when the transport says
    client: tuple[str, int] | None
    helo: bytes
    #: the reverse path (``b""``: the null path ``<>``) and the accepted recipients
    sender: bytes
    recipients: Sequence[bytes]
    #: the content's octets as received (``DATA``: dots unstuffed)
    size: int
    tls: bool
    #: the identity ``AUTH`` accepted, if any
    user: bytes | None
    #: the reply's code and its last line's text (``0`` and why: no answer, the session
    #: ended first)
    status: int
    text: bytes
    #: when the content began (``time.time()``) and the seconds from then to this entry
    began: float
    duration: float

    @property
    def delivered(self) -> bool:
        """Whether the client was told the message was accepted (a ``2xx``)."""
        return 200 <= self.status < 300


#: what a quoted local part may hold that would end a field of the line: its spaces (the
#: fields are cut at them), its ``<``, ``>`` and ``,`` (the recipients are ``<a>,<b>``)
_FIELD_ENDS = str.maketrans({" ": "\\x20", "<": "\\x3C", ">": "\\x3E", ",": "\\x2C"})


def _word(data: bytes) -> str:
    """``data`` escaped, and what would end its field of the line (see _FIELD_ENDS): a
    client cannot make one recipient read as two."""
    return escaped(data).translate(_FIELD_ENDS)


def line(entry: MessageEntry) -> str:
    """``entry`` as one line of the mail log."""
    host = entry.client[0] if entry.client is not None else "-"
    recipients = ",".join(f"<{_word(path)}>" for path in entry.recipients) or "-"
    user = "-" if entry.user is None else _word(entry.user)
    status = str(entry.status) if entry.status else "-"
    return (
        f"{host} helo={_word(entry.helo) or '-'} from=<{_word(entry.sender)}> "
        f"to={recipients} size={entry.size} tls={'yes' if entry.tls else 'no'} user={user} "
        f'{status} "{escaped(entry.text)}"'
    )


class MailLog(EntryLog[MessageEntry]):
    """Writes a :class:`MessageEntry` a message: by default its :func:`line` to the
    ``statewire.mail`` logger at INFO, the entry itself in the record's ``message_entry``
    attribute. Override :meth:`write` to send entries elsewhere; it runs inside the
    session's read, so it should not block."""

    default_logger = LOGGER
    attribute = "message_entry"
    kind = "mail"

    def write(self, entry: MessageEntry) -> None:
        """Log ``entry``."""
        self.emit(line(entry), entry)


class MessageLog:
    """One message's entry to come: made when its content begins, written once."""

    __slots__ = ("_began", "_log", "_start")

    def __init__(self, mail_log: MailLog) -> None:
        self._log: MailLog | None = mail_log
        self._began = time.time()
        self._start = time.perf_counter()

    def done(
        self,
        client: tuple[str, int] | None,
        envelope: Envelope,
        size: int,
        status: int,
        text: bytes,
    ) -> None:
        """The message's answer (``status`` 0: none, ``text`` says why): write the entry."""
        mail_log, self._log = self._log, None
        if mail_log is None:
            return
        mail_log.written(
            MessageEntry(
                client,
                envelope.helo,
                envelope.sender,
                tuple(envelope.recipients),
                size,
                envelope.tls,
                envelope.user,
                status,
                text,
                self._began,
                time.perf_counter() - self._start,
            )
        )


__all__ = ["LOGGER", "MailLog", "MessageEntry", "MessageLog", "line"]
