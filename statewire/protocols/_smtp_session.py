"""The core of an SMTP session: what the server machine's transitions use.

:mod:`statewire.protocols.smtp` declares the states and transitions; this module keeps the
session's facts (the EHLO name, TLS, the authenticated identity, the transaction and its
envelope) and does the work each transition asks for: the checks on MAIL and RCPT, the
body counted and handed to the sink in pieces, the BDAT chunk read piece by piece, and
the wording of refusals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from grammars import fixed
from grammars.smtp import REPLY_LIMIT, ArgumentError, Reply, parse_path, reply
from statewire.declarative import MachineProtocol
from statewire.error import Failure, connectionDone
from statewire.framing import FrameTooLong
from statewire.machine import RemoteProtocolError, UnexpectedInput
from statewire.protocols._smtp_auth import MECHANISMS, Exchange
from statewire.protocols._smtp_handler import (
    Decision,
    Envelope,
    MessageSink,
    Pending,
    SMTPHandler,
    then,
)

if TYPE_CHECKING:
    from statewire.protocols.smtp import Inputs, SMTPFactory

log = logging.getLogger("statewire.smtp")

OK = reply(250, "2.0.0 Ok")
TOO_LONG = reply(500, "5.5.6 Line too long")
TOO_BIG = reply(552, "5.3.4 Message size exceeds fixed limit")
BARE_NEWLINE = reply(500, "5.5.2 Bare CR or LF in the message refused (RFC 5321 2.3.8)")
NEED_AUTH = reply(530, "5.7.0 Authentication required")
SENDER_OK = reply(250, "2.1.0 Ok")
RECIPIENT_OK = reply(250, "2.1.5 Ok")
#: the replies that count against :attr:`SMTPFactory.max_errors`: the client's mistakes
#: (syntax, unknown or out-of-sequence commands, lines too long, failed or refused AUTH),
#: not the handler's refusals nor the limits of a well-formed transaction
CLIENT_ERRORS = frozenset({500, 501, 502, 503, 504, 530, 535, 538, 555})


class SMTPConnection(MachineProtocol):
    """The machine's core: one client's session, and what the transitions use."""

    factory: SMTPFactory
    #: octets of the body handed to the sink at once (and of a BDAT piece)
    piece_size = 64 * 1024
    #: refuse a message holding a bare CR or LF (else keep it as it came)
    refuse_bare_newlines = True

    #: the name EHLO/HELO gave; whether it was EHLO
    helo = b""
    extended = False
    #: whether the connection is encrypted; the identity AUTH accepted
    tls = False
    user: bytes | None = None
    #: the transaction under way
    envelope: Envelope | None = None
    sink: MessageSink | None = None
    #: octets of the message so far; why it will be refused, if it will
    received = 0
    refusal: Reply | None = None
    #: body octets not yet handed to the sink
    pending: bytearray
    #: BDAT: whether the message's last octet so far is a CR (its LF may open the next piece)
    carriage = False
    #: the BDAT chunk being read: octets left, LAST, the reply owed when it is skipped
    chunk_left = 0
    chunk_last = False
    skipping: Reply | None = None
    #: the AUTH exchange under way
    exchange: Exchange | None = None
    #: replies so far for the client's mistakes (see ``CLIENT_ERRORS``)
    errors = 0
    #: the session was closed for too many errors (no transition to ``closed`` was taken)
    cut_off = False

    def connectionMade(self) -> None:
        """Greet: ``220 <hostname> ESMTP``."""
        self.pending = bytearray()
        self.factory.sessions.add(self)
        self.reply(reply(220, f"{self.factory.hostname} ESMTP statewire"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The session is over (the ``lost`` input drops any message under way)."""
        self.factory.sessions.discard(self)
        super().connectionLost(reason)

    def stop_serving(self) -> None:
        """The server stops: ``421 4.3.2`` whatever the state, and the connection closes
        (RFC 5321 3.8); a message under way is not delivered."""
        if self.machine_state != "closed":
            self.inputs.shutting_down()

    @property
    def handler(self) -> SMTPHandler:
        """The application's handler (the factory's)."""
        return self.factory.handler

    def reply(self, answer: Reply) -> None:
        """Send one reply. The :attr:`SMTPFactory.max_errors`-th reply to a mistake of the
        client's is followed by ``421 4.7.0`` and the connection closes (as Postfix's
        ``smtpd_hard_error_limit``): no endless password guessing or junk on one
        connection."""
        if self.cut_off:
            return  # the 421 was the last reply
        self.transport.write(answer.wire)
        if answer.code in CLIENT_ERRORS:
            self.errors += 1
            if self.errors >= self.factory.max_errors:
                self.cut_off = True
                host = self.factory.hostname
                self.transport.write(reply(421, f"4.7.0 {host} Error: too many errors").wire)
                self.close()

    @property
    def over(self) -> bool:
        """Whether the session ended (QUIT, ``421``, the connection lost): a decision that
        completes now is too late to be answered or acted on."""
        return self.cut_off or self.machine_state == "closed"

    def then(self, first: Any, step: Callable[[Any], Any]) -> Awaitable[None] | None:
        """:func:`then` for a decision of this session: ``step`` is skipped if the session
        ended before the decision came (a ``421`` for a timeout or a shutdown was sent;
        no reply may follow it, no transition is left to take)."""

        def unless_over(value: Any) -> Any:
            return None if self.over else step(value)

        return then(first, unless_over)

    # -- the session ---------------------------------------------------------------------

    def identify(self, argument: bytes, extended: bool) -> None:
        """EHLO/HELO: forget any transaction, remember the name, answer."""
        name = argument.strip(b" ")
        if not name or b" " in name:
            self.reply(reply(501, f"5.5.4 Syntax: {'EHLO' if extended else 'HELO'} hostname"))
            return
        self.forget()
        self.helo, self.extended = name, extended
        host = self.factory.hostname
        if not extended:
            self.reply(reply(250, host))
            return
        first = host.encode("ascii") + b" greets " + name
        if len(first) + 6 > REPLY_LIMIT:  # a name near 512 octets: echoed, it would not fit
            first = host.encode("ascii")
        self.reply(reply(250, first, *self.extensions()))

    def extensions(self) -> list[str]:
        """The extensions EHLO lists for this connection now."""
        found = ["PIPELINING", f"SIZE {self.factory.max_size}", "8BITMIME", "SMTPUTF8"]
        found += ["ENHANCEDSTATUSCODES", "CHUNKING"]
        if self.factory.tls_context is not None and not self.tls and self.can_start_tls():
            found.append("STARTTLS")
        if self.auth_offered():
            found.append("AUTH " + " ".join(MECHANISMS))
        return found

    def can_start_tls(self) -> bool:
        """Whether the transport can switch to TLS (statewire's own transports can)."""
        return callable(getattr(self.transport, "startTLS", None))

    def auth_offered(self) -> bool:
        """Whether AUTH may be used now: a credential check is configured, and the
        connection is encrypted or the factory allows plaintext passwords."""
        factory = self.factory
        return factory.check_credentials is not None and (self.tls or factory.auth_over_plaintext)

    def forget(self) -> None:
        """End the transaction under way, its message (if any) not delivered."""
        if self.sink is not None:
            self.sink.abort()
        self.envelope = self.sink = self.refusal = self.skipping = None
        self.received = 0
        self.carriage = False
        self.pending = bytearray()

    # -- the transaction -----------------------------------------------------------------

    def check_sender(self, argument: bytes) -> Pending:
        """MAIL FROM: the server's checks, then the handler's; the decision to send."""
        if self.factory.require_auth and self.user is None:
            return NEED_AUTH
        try:
            sender, parameters = parse_path(argument, b"FROM")
        except ArgumentError as error:
            return _syntax(error, "MAIL FROM:<address>")
        size = parameters.get(b"SIZE")
        if size is not None and (not size.isdigit() or len(size) > 18):
            return reply(501, "5.5.4 Bad SIZE parameter")
        if size is not None and int(size) > self.factory.max_size:
            return TOO_BIG
        body = parameters.get(b"BODY", b"7BIT")
        if body is None or body.upper() not in (b"7BIT", b"8BITMIME"):
            return reply(501, "5.5.4 Bad BODY parameter")
        unknown = set(parameters) - {b"SIZE", b"BODY", b"SMTPUTF8", b"AUTH"}
        if unknown:
            return reply(555, "5.5.4 Unsupported option: " + min(unknown).decode("ascii"))
        if not sender.isascii() and b"SMTPUTF8" not in parameters:
            return reply(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
        self.envelope = Envelope(sender, parameters, helo=self.helo, user=self.user, tls=self.tls)
        return self.handler.mail(self, sender, parameters)

    def check_recipient(self, argument: bytes) -> Pending:
        """RCPT TO: the server's checks, then the handler's."""
        envelope = self.envelope
        assert envelope is not None
        try:
            recipient, parameters = parse_path(argument, b"TO")
        except ArgumentError as error:
            return _syntax(error, "RCPT TO:<address>")
        if not recipient:
            return reply(501, "5.1.3 Bad recipient address syntax")
        if parameters:
            return reply(555, "5.5.4 Unsupported option: " + min(parameters).decode("ascii"))
        if not recipient.isascii() and b"SMTPUTF8" not in envelope.sender_parameters:
            return reply(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
        if len(envelope.recipients) >= self.factory.max_recipients:
            return reply(452, "4.5.3 Error: too many recipients")
        decision = self.handler.rcpt(self, recipient, parameters)

        def record(answer: Decision) -> None:
            if answer is None or answer.code < 300:
                envelope.recipients.append(recipient)
            self.reply(RECIPIENT_OK if answer is None else answer)

        return self.then(decision, record)

    def open_message(self) -> None:
        """The body starts: ask the handler where it goes."""
        assert self.envelope is not None
        self.received = 0
        self.refusal = None
        self.pending = bytearray()
        self.carriage = False
        self.sink = self.handler.message(self, self.envelope)

    def take(self, data: bytes) -> Any:
        """Count ``data`` (body octets, unstuffed) and pass it on in pieces."""
        self.received += len(data)
        if self.refusal is not None:
            return None
        if self.received > self.factory.max_size:
            self.refuse(TOO_BIG)
            return None
        pending = self.pending
        pending += data
        if len(pending) < self.piece_size:
            return None
        return self.flush()

    def flush(self) -> Any:
        """Hand the pending body octets to the sink."""
        piece, self.pending = bytes(self.pending), bytearray()
        if not piece or self.sink is None or self.refusal is not None:
            return None
        return self.sink.write(piece)

    def refuse(self, answer: Reply) -> None:
        """The message will be refused with ``answer`` at its end; the sink drops it."""
        if self.refusal is None:
            self.refusal = answer
            self.pending = bytearray()
            if self.sink is not None:
                self.sink.abort()
                self.sink = None

    def finish(self) -> Any:
        """The message is complete: hand the rest on, get the decision, answer it; the
        transaction is over.

        The sink stays the session's until its ``close()`` is called, so a timeout, a
        shutdown or a lost connection while the last ``write()`` is pending aborts it."""
        written = self.flush()

        def decide(_: object) -> Any:
            refusal, sink = self.refusal, self.sink
            self.sink = None
            self.forget()
            if refusal is not None or sink is None:
                self.reply(refusal or TOO_BIG)
                return None
            return self.then(sink.close(), answer)

        def answer(decision: Decision) -> None:
            self.reply(OK if decision is None else decision)

        return self.then(written, decide)

    # -- DATA ----------------------------------------------------------------------------

    def take_line(self, text: bytes) -> Any:
        """One text line of DATA (not the end): unstuffed, checked, taken."""
        if text[:1] == b".":
            text = text[1:]
        if self.refuse_bare_newlines and (b"\n" in text or b"\r" in text):
            self.refuse(BARE_NEWLINE)
        return self.take(text + b"\r\n")

    # -- BDAT ----------------------------------------------------------------------------

    def start_chunk(self, size: int, last: bool, skipping: Reply | None) -> None:
        """A BDAT chunk of ``size`` octets follows; ``skipping``: read and drop it, then
        answer that."""
        self.chunk_left, self.chunk_last, self.skipping = size, last, skipping
        if skipping is None and self.received + size > self.factory.max_size:
            self.refuse(TOO_BIG)
            self.skipping = TOO_BIG

    def piece_framing(self) -> Any:
        """The framing of the next piece of the chunk."""
        return _block(min(self.chunk_left, self.piece_size))

    def take_piece(self, machine: Inputs, data: bytes) -> Any:
        """A piece of a BDAT chunk; at the chunk's end, the reply and the next state.
        Returns what to wait for."""
        self.chunk_left -= len(data)
        checked = self.skipping is None and self.refusal is None and self.refuse_bare_newlines
        if checked and self.bare_newline_in(data):
            self.refuse(BARE_NEWLINE)
        written = None if self.skipping is not None else self.take(data)
        if self.chunk_left:
            # the chunk's framing is computed from chunk_left: frame the next piece anew
            self.refresh_framing()
            return written
        skipped = self.skipping
        if skipped is not None:
            self.forget()
            self.reply(skipped)
            machine.message_ended()
            return written
        if not self.chunk_last:
            self.reply(reply(250, f"2.0.0 {self.received} octets received"))
            machine.chunk_ended()
            return written
        if self.carriage and self.refuse_bare_newlines:  # the message ends in a bare CR
            self.refuse(BARE_NEWLINE)
        machine.message_ended()
        return self.then(written, lambda _: self.finish())

    def bare_newline_in(self, data: bytes) -> bool:
        """Whether a BDAT piece holds a CR or LF that is not part of a CRLF, the CRLFs cut
        between two pieces (or two chunks) included. Counting, not rescanning per octet:
        each piece is looked at once."""
        if not data:
            return False
        crlf, cr, lf = data.count(b"\r\n"), data.count(b"\r"), data.count(b"\n")
        if self.carriage:
            if data[:1] != b"\n":
                return True  # the CR that ended the last piece was bare
            crlf, cr = crlf + 1, cr + 1  # that CR and this LF make a CRLF
        self.carriage = data[-1:] == b"\r"
        if self.carriage:
            cr -= 1  # its LF may come with the next piece
        return cr != crlf or lf != crlf

    # -- errors --------------------------------------------------------------------------

    def remoteError(self, error: RemoteProtocolError) -> None:
        """Answer as SMTP does; the session goes on (a framing error that leaves no way to
        read on closes it)."""
        state = self.machine_state
        if isinstance(error, FrameTooLong):
            if state == "data":
                self.refuse(TOO_LONG)
            else:
                self.reply(TOO_LONG)
                if state == "authenticating":
                    self.exchange = None
                    self.inputs.auth_ended()
            return
        if isinstance(error, UnexpectedInput):
            if error.input == "bdat" and state == "greeted":
                # its octets follow and cannot be told from commands: stop reading
                self.reply(reply(503, "5.5.1 Error: send EHLO first; closing"))
                self.close()
                return
            self.reply(_out_of_sequence(state, error.input))
            return
        log.info("SMTP: %s; closing", error)
        self.reply(reply(500, "5.5.2 Error: bad input; closing"))
        self.close()


def _syntax(error: ArgumentError, usage: str) -> Reply:
    if error.unsupported:
        return reply(555, f"5.5.4 {error}")
    return reply(501, f"5.5.4 Syntax: {usage} ({error})")


def _out_of_sequence(state: str, name: str) -> Reply:
    """The 503 for command ``name`` in ``state``."""
    if state == "greeted":
        return reply(503, "5.5.1 Error: send HELO/EHLO first")
    if name == "mail":
        return reply(503, "5.5.1 Error: nested MAIL command")
    if name in ("rcpt", "data", "bdat") and state == "identified":
        return reply(503, "5.5.1 Error: need MAIL command")
    if state == "chunking":
        return reply(503, "5.5.1 Error: only BDAT, RSET, NOOP or QUIT between chunks")
    return reply(503, "5.5.1 Error: bad sequence of commands")


@lru_cache(maxsize=32)
def _block(size: int) -> Any:
    return fixed(size)
