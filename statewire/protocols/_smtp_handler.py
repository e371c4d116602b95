"""What an application gives the SMTP server: decisions on each sender, recipient and
message, and a credential check. Every decision may be given now or later (an awaitable).

A decision is a :class:`~grammars.smtp.Reply` to refuse or to answer in your own words,
or ``None`` for the server's usual success reply. While one is pending the connection
reads no further command, so pipelined commands are answered in order.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grammars.smtp import Reply

if TYPE_CHECKING:
    from statewire.protocols.smtp import SMTPConnection

#: a handler's answer: a reply, or ``None`` for the usual success
Decision = Reply | None
#: a decision now, or an awaitable of one
Pending = Decision | Awaitable[Decision]
#: LMTP: a message's decision for each recipient, now or later
Answers = Sequence[Decision] | Awaitable[Sequence[Decision]]
#: the credential check: ``(session, mechanism, identity, password)`` -> accepted
CredentialCheck = Callable[["SMTPConnection", str, bytes, bytes], bool | Awaitable[bool]]


@dataclass
class Envelope:
    """A mail transaction's envelope: who sends, to whom, and how it was announced."""

    #: the reverse path without brackets; ``b""`` for the null path ``<>`` (bounces)
    sender: bytes
    #: MAIL FROM's parameters, keys upper-cased (``SIZE``, ``BODY``, ``SMTPUTF8``...)
    sender_parameters: dict[bytes, bytes | None]
    #: the accepted recipients, in order
    recipients: list[bytes] = field(default_factory=list)
    #: the name the client gave in EHLO or HELO
    helo: bytes = b""
    #: the identity the client authenticated as, if it did
    user: bytes | None = None
    #: whether the connection is encrypted (STARTTLS)
    tls: bool = False
    #: whether the client said EHLO (LHLO), not HELO
    extended: bool = False


class MessageSink:
    """Where one message's content goes, in pieces as it arrives (about
    ``SMTPServer.piece_size`` octets each: for ``DATA`` the whole CRLF lines that first
    reach it, dots unstuffed; for BDAT the octets as sent, at most that many).

    The base class throws the content away and accepts the message."""

    def write(self, data: bytes) -> Awaitable[None] | None:
        """Take the next piece; return an awaitable to read no more until it completes."""
        return None

    def close(self) -> Pending | Answers:
        """The whole message arrived: the final decision (``None``: ``250 2.0.0 Ok``).
        LMTP's server answers each recipient accepted: with this decision, or with each
        of a sequence of decisions, one a recipient in their order."""
        return None

    def abort(self) -> None:
        """The message will not be delivered (too large, refused, reset, connection
        lost): drop what was written."""


class SMTPHandler:
    """The application's side of the server. The base class accepts every sender and
    recipient and throws messages away; override what you need."""

    def mail(
        self, session: SMTPConnection, sender: bytes, parameters: dict[bytes, bytes | None]
    ) -> Pending:
        """``MAIL FROM``, after the server's own checks (syntax, size, authentication)."""
        return None

    def rcpt(
        self, session: SMTPConnection, recipient: bytes, parameters: dict[bytes, bytes | None]
    ) -> Pending:
        """``RCPT TO``, after the server's own checks (syntax, the recipient limit)."""
        return None

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        """The content of a message is about to arrive (``DATA`` accepted, or the first
        ``BDAT``): where it goes."""
        return MessageSink()


#: results that are never awaitables (checked first: the common case costs a lookup)
_PLAIN = frozenset({Reply, bool})


def then(first: Any, step: Callable[[Any], Any]) -> Awaitable[None] | None:
    """``step(value of first)``: now when ``first`` is a plain value, else once it is
    awaited. Returns what is still to wait for (``step``'s awaitable), or ``None``."""
    if first is None or type(first) in _PLAIN or not inspect.isawaitable(first):
        second = step(first)
        return second if inspect.isawaitable(second) else None
    awaited: Awaitable[Any] = first

    async def later() -> None:
        second = step(await awaited)
        if inspect.isawaitable(second):
            await second

    return later()


__all__ = [
    "Answers",
    "CredentialCheck",
    "Decision",
    "Envelope",
    "MessageSink",
    "Pending",
    "SMTPHandler",
    "then",
]
