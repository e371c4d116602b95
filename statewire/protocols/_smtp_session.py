"""The core of an SMTP session: what the server machine's transitions use.

:mod:`statewire.protocols.smtp` declares the states and transitions; this module keeps the
session's facts (the EHLO name, TLS, the authenticated identity, the transaction and its
envelope) and does the work each transition asks for: the checks on MAIL and RCPT, the
body counted and handed to the sink in pieces, the BDAT chunk read piece by piece, and
the wording of refusals.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, ClassVar

from grammars import fixed
from grammars.smtp import (
    BODY_END,
    END_OF_DATA,
    REPLY_LIMIT,
    TEXT_LIMIT,
    ArgumentError,
    Reply,
    is_utf8,
    parse_path,
    reply,
)
from statewire.declarative import MachineProtocol
from statewire.error import Failure, connectionDone
from statewire.framing import FrameTooLong
from statewire.machine import RemoteProtocolError, UnexpectedInput
from statewire.protocols._pace import Pace
from statewire.protocols._smtp_auth import MECHANISMS, Exchange
from statewire.protocols._smtp_handler import (
    Decision,
    Envelope,
    MessageSink,
    Pending,
    SMTPHandler,
    then,
)
from statewire.protocols._smtp_log import MessageLog
from statewire.protocols._smtp_trace import protocol_name, received
from statewire.protocols._tls_info import ssl_object_of

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
#: the replies of 400 and over that do not count against :attr:`SMTPFactory.max_errors`
#: (every other does, as Postfix's error count: the client's mistakes, the handler's
#: refusals): the closing ``421``, and the limits of a well-formed transaction (``452``
#: past the recipient limit, as Postfix counts none within its recipient overshoot limit;
#: ``552`` past the size)
UNCOUNTED = frozenset({421, 452, 552})
#: replies gathered from one read before they are written anyway (a client pipelining a
#: read full of commands and reading nothing meets the transport's high-water mark soon)
BATCH_LIMIT = 64
#: idle seconds before ``421`` (RFC 5321 4.5.3.2.7 asks at least five minutes); also the
#: budget of a message's pace (see :meth:`SMTPConnection.pace_body`)
IDLE_SECONDS = 300.0
#: decisions that are never awaitables (looked up first: the common case)
_PLAIN = frozenset({Reply, bool})


class SMTPConnection(MachineProtocol):
    """The machine's core: one client's session, and what the transitions use."""

    factory: SMTPFactory
    #: octets of the body handed to the sink at once (and of a BDAT piece)
    piece_size = 64 * 1024
    #: refuse a message holding a bare CR or LF (else keep it as it came)
    refuse_bare_newlines = True

    #: whether the session is LMTP's (RFC 2033): ``LHLO``, and a reply for each accepted
    #: recipient at a message's end
    lmtp: ClassVar[bool] = False
    #: the name EHLO/HELO gave; whether it was EHLO
    helo = b""
    extended = False
    #: whether the connection is encrypted; the identity AUTH accepted
    tls = False
    user: bytes | None = None
    #: the transaction under way
    envelope: Envelope | None = None
    sink: MessageSink | None = None
    #: the mail log's entry of the message under way (the factory keeping a log), and,
    #: once its content ended, what writes it as not answered if no answer comes
    message_log: MessageLog | None = None
    unanswered: Callable[[str], None] | None = None
    deciding = False
    #: the pace of a message's content (see :meth:`_check_pace`): its timer (running while
    #: content is read), the seconds between its looks, the content's octets read so far
    pace_timer: Any = None
    pace_period: ClassVar[float] = 10.0
    body_wire = 0
    #: messages whose content began (numbered), and the pace's budget and whose it is
    messages_begun = 0
    _budget: Pace | None = None
    _budget_of = 0
    #: octets of the message so far; why it will be refused, if it will
    received = 0
    refusal: Reply | None = None
    #: body octets not yet handed to the sink
    pending: bytearray
    #: DATA: the start of a text line whose CRLF has not come yet; whether a line too long
    #: is being skipped (then the tail is its last CR, if it ended a read)
    text_tail = b""
    text_skipping = False
    #: BDAT: whether the message's last octet so far is a CR (its LF may open the next piece)
    carriage = False
    #: the BDAT chunk being read: octets left, LAST, the reply owed when it is skipped
    chunk_left = 0
    chunk_last = False
    skipping: Reply | None = None
    #: the AUTH exchange under way
    exchange: Exchange | None = None
    #: error replies since the session began or its last message was accepted (see
    #: ``UNCOUNTED``); junk commands (NOOP, RSET, VRFY, HELP) in the same time
    errors = 0
    junk = 0
    #: the session was closed for too many errors (no transition to ``closed`` was taken)
    cut_off = False
    #: the machine is taking (or took) its transition to ``closed``
    ended = False
    #: the replies made while a read is handled, written together at its end
    batch: list[bytes] | None = None
    #: LMTP: the recipients the message under way answers (accepted before its content)
    answers_due = 0

    def connectionMade(self) -> None:
        """Greet: ``220 <hostname> ESMTP``."""
        self.pending = bytearray()
        self.factory.sessions.add(self)
        # a port that is TLS from the first byte (RFC 8314's submissions): encrypted as
        # after STARTTLS (no STARTTLS offered or taken, AUTH over it, the envelope says so)
        self.tls = bool(getattr(self.transport, "TLS", False))
        engine = self.machine_engine  # (made by makeConnection: the machine has timeouts)
        assert engine is not None
        #: the state's timeout starts again with each reply (once a read: the read's
        #: instant is the reply's): the client has the timeout's seconds from the last
        #: reply to send its next command whole
        self.restart_deadline = engine.restart_timeout
        kind = "LMTP" if self.lmtp else "ESMTP"
        self.reply(reply(220, f"{self.factory.hostname} {kind} statewire"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The session is over (the ``lost`` input drops any message under way)."""
        self.factory.sessions.discard(self)
        timer, self.pace_timer = self.pace_timer, None
        if timer is not None and timer.active():
            timer.cancel()
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

    def reply(self, answer: Reply, counted: bool = True) -> None:
        """Send one reply. The :attr:`SMTPFactory.max_errors`-th reply to a mistake of the
        client's is followed by ``421 4.7.0`` and the connection closes (as Postfix's
        ``smtpd_hard_error_limit``): no endless password guessing or junk on one
        connection (``counted`` false: the caller counts it)."""
        if self.cut_off:
            return  # the 421 was the last reply
        batch = self.batch
        if batch is None:
            self.transport.write(answer.wire)
            self.restart_deadline()
        else:
            if not batch:  # a read's first reply: the deadline counts from the read
                self.restart_deadline()
            batch.append(answer.wire)
            if len(batch) >= BATCH_LIMIT:
                self.send_replies()
        if counted and answer.code >= 400 and answer.code not in UNCOUNTED:
            self.count_error()

    def count_error(self) -> None:
        """One more error (after its reply): the :attr:`SMTPFactory.max_errors`-th is
        followed by ``421 4.7.0`` and the connection closes."""
        self.errors += 1
        if self.errors >= self.factory.max_errors:
            self.cut_off = True
            host = self.factory.hostname
            self.send_replies()
            self.transport.write(reply(421, f"4.7.0 {host} Error: too many errors").wire)
            self.close()

    def junk_command(self) -> None:
        """A NOOP, RSET, VRFY or HELP (after its reply): past
        :attr:`SMTPFactory.max_junk_commands` since the last message accepted, each counts
        as an error (Postfix's ``smtpd_junk_command_limit``), so a client cannot keep a
        session with them for ever."""
        self.junk += 1
        if self.junk > self.factory.max_junk_commands and not self.cut_off:
            self.count_error()

    def dataReceived(self, data: bytes) -> None:
        """Frame and answer a read; the replies it makes leave in one write (a pipelining
        client's group of commands gets its replies together, RFC 2920)."""
        if self.batch is not None:  # (a read handed in from inside one)
            super().dataReceived(data)
            return
        batch: list[bytes] = []
        self.batch = batch
        try:
            super().dataReceived(data)
        finally:
            self.batch = None
            if batch:
                self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def send_replies(self) -> None:
        """Write the replies the read being handled made so far (before anything else
        reaches the transport: a close, the TLS handshake)."""
        batch = self.batch
        if batch:
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
            batch.clear()

    def close(self) -> None:
        """Close once the replies made so far are sent; no more commands are read."""
        self.send_replies()
        super().close()

    def localError(self, error: Exception) -> None:
        """Our code or the handler's raised (a decision, a sink's ``write`` or ``close``,
        or an awaitable of theirs that failed): logged with its traceback, then the
        client is told ``421 4.3.0`` and the connection closes (RFC 5321 3.8: a transient
        failure, to be tried again later), where a reset told it nothing; the message
        under way, if any, is aborted, never delivered. A session already over (a 421
        sent, the machine closed) is aborted as before."""
        over = self.cut_off or self.ended or self.transport is None
        over = over or self.transport.disconnecting
        log.error(
            "%s: %s raised; %s",
            type(self).__name__,
            type(error).__name__,
            "aborting the connection" if over else "answering 421 and closing",
            exc_info=error,
        )
        if over:
            self.abort()
            return
        self.cut_off = True  # (the 421 is the last reply)
        try:
            self.forget("a failure of the server's or the handler's")  # (the sink's abort too)
        except Exception:
            log.exception("SMTP: aborting the message after a failure raised too")
        self.send_replies()
        host = self.factory.hostname
        self.transport.write(reply(421, f"4.3.0 {host} Error: local error; closing").wire)
        self.close()

    def abort(self) -> None:
        """Close at once, dropping the replies not sent yet."""
        if self.batch:
            self.batch.clear()
        super().abort()

    @property
    def over(self) -> bool:
        """Whether the session ended (QUIT, ``421``, the connection lost): a decision that
        completes now is too late to be answered or acted on."""
        return self.cut_off or self.ended

    def then(self, first: Any, step: Callable[[Any], Any]) -> Awaitable[None] | None:
        """:func:`then` for a decision of this session: ``step`` is skipped if the session
        ended before the decision came (a ``421`` for a timeout or a shutdown was sent;
        no reply may follow it, no transition is left to take)."""
        if first is None or type(first) in _PLAIN:  # a decision now: the common case
            if self.cut_off or self.ended:
                return None
            second = step(first)
            if second is None or type(second) in _PLAIN:
                return None
            return second if inspect.isawaitable(second) else None

        def unless_over(value: Any) -> Any:
            return None if self.over else step(value)

        # the client's part is whole (its command, or the lines of a body): from now the
        # deadline bounds the decision, not the client (a command in a state it loops in
        # makes no reply, and no state change, until the decision comes)
        self.restart_deadline()
        return then(first, unless_over)

    @property
    def waiting(self) -> bool:
        """Whether the session waits for the handler: a decision, a credential check or a
        sink's ``write`` (the engine holds the client's next frames for it), so that a
        timeout now is the handler's, not the client's."""
        engine = self.machine_engine
        return engine is not None and "waiting" in engine.holds

    # -- the session ---------------------------------------------------------------------

    def identify(self, argument: bytes, extended: bool) -> None:
        """EHLO/HELO: forget any transaction, remember the name, answer."""
        name = argument.strip(b" ")  # (checked by the route: a bad one went to bad_hello)
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

    def pace_body(self) -> None:
        """Content follows (a DATA body, a BDAT chunk): the pace's timer, if it is not
        running (see :meth:`_check_pace`)."""
        if self.pace_timer is None and self.factory.min_data_rate:
            self.pace_timer = self.callLater(self.pace_period, self._check_pace)

    def _check_pace(self) -> None:
        """Every :attr:`pace_period` seconds while content is read: the message must keep
        :attr:`SMTPFactory.min_data_rate` octets a second, as Postfix's
        ``smtpd_min_data_rate`` asks (:class:`~statewire.protocols._pace.Pace`, its budget
        the idle timeout, begun at the first look at the message: a message read within
        a period costs no look at all). Spent, the idle timeout's ``421``. The budget is
        the message's: its BDAT chunks share it (the commands between them have their own
        deadline, and the timer stops there: the next chunk starts it). A period in which
        the server was the slow one (its reading held, the sink's work under way, the
        client taking replies it was slow to take) does not count."""
        self.pace_timer = None
        rate = self.factory.min_data_rate
        if self.over or not rate or self.machine_state not in ("data", "chunk"):
            return
        engine = self.machine_engine
        assert engine is not None  # (content is being read)
        budget = self._budget
        if budget is None or self._budget_of != self.messages_begun:
            came = self.body_wire + len(engine.buffered)
            self._budget, self._budget_of = Pace(rate, IDLE_SECONDS, came), self.messages_begun
        elif not budget.looked(engine, self.transport, self.body_wire, self.pace_period):
            log.info("SMTP: the message came slower than %g octets a second", rate)
            try:
                self.inputs.timed_out()
            except Exception as error:  # (a sink's abort that raised, as a timeout's)
                self.localError(error)
            return
        self.pace_timer = self.callLater(self.pace_period, self._check_pace)

    def forget(self, why: str = "the transaction ended", keep_answer: bool = False) -> None:
        """End the transaction under way, its message (if any) not delivered (the mail
        log says so, and ``why``); a message whose answer was awaited is logged as not
        answered, unless ``keep_answer`` (the message's end: its answer is coming)."""
        if self.message_log is not None:
            self.log_message(0, f"not delivered: {why}".encode())
        if not keep_answer and self.unanswered is not None:
            unanswered, self.unanswered = self.unanswered, None
            state = "not answered" if self.deciding else "not delivered"
            self.deciding = False
            unanswered(f"{state}: {why}")
        sink = self.sink
        self.envelope = self.sink = self.refusal = self.skipping = None
        self.received = 0
        self.carriage = self.text_skipping = False
        self.text_tail = b""
        self.pending = bytearray()
        if sink is not None:  # (detached first: an abort that raises is not made twice)
            sink.abort()

    # -- the transaction -----------------------------------------------------------------

    def check_sender(self, argument: bytes) -> Pending:
        """MAIL FROM: the server's checks, then the handler's; the decision to send."""
        if self.factory.require_auth and self.user is None:
            return NEED_AUTH
        try:
            sender, parameters = parse_path(argument, b"FROM")
        except ArgumentError as error:
            return _syntax(error, "MAIL FROM:<address>")
        if parameters:
            refusal = self.check_sender_parameters(parameters)
            if refusal is not None:
                return refusal
        if not sender.isascii():
            refusal = _international(sender, b"SMTPUTF8" in parameters, "5.1.7 Bad sender")
            if refusal is not None:
                return refusal
        self.envelope = Envelope(
            sender,
            parameters,
            helo=self.helo,
            user=self.user,
            tls=self.tls,
            extended=self.extended,
        )
        return self.factory.handler.mail(self, sender, parameters)

    def check_sender_parameters(self, parameters: dict[bytes, bytes | None]) -> Reply | None:
        """MAIL FROM's parameters: the refusal, if one is refused."""
        size = parameters.get(b"SIZE")
        if size is not None and not size.isdigit():
            return reply(501, "5.5.4 Bad SIZE parameter")
        if size is not None and int(size) > self.factory.max_size:
            return TOO_BIG  # (however many digits: RFC 1870 allows 20)
        if parameters.get(b"SMTPUTF8") is not None:
            return reply(501, "5.5.4 SMTPUTF8 takes no value")  # (RFC 6531 3.4)
        body = parameters.get(b"BODY", b"7BIT")
        if body is None or body.upper() not in (b"7BIT", b"8BITMIME"):
            return reply(501, "5.5.4 Bad BODY parameter")
        unknown = set(parameters) - {b"SIZE", b"BODY", b"SMTPUTF8", b"AUTH"}
        if unknown:
            return _unsupported(min(unknown))
        # AUTH='s mailbox: xtext, ASCII (RFC 4954 5); UTF-8 under SMTPUTF8 (RFC 6531 3.4)
        auth = parameters.get(b"AUTH")
        if (
            auth is not None
            and not auth.isascii()
            and (b"SMTPUTF8" not in parameters or not is_utf8(auth))
        ):
            return reply(501, "5.5.4 Bad AUTH parameter")
        return None

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
            return _unsupported(min(parameters))
        if not recipient.isascii():
            smtputf8 = b"SMTPUTF8" in envelope.sender_parameters
            refusal = _international(recipient, smtputf8, "5.1.3 Bad recipient")
            if refusal is not None:
                return refusal
        if len(envelope.recipients) >= self.factory.max_recipients:
            return reply(452, "4.5.3 Error: too many recipients")
        decision = self.factory.handler.rcpt(self, recipient, parameters)
        if decision is None:  # accepted now, with the usual reply: the common case made short
            envelope.recipients.append(recipient)
            self.reply(RECIPIENT_OK)
            return None

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
        self.carriage = self.text_skipping = False
        self.text_tail = b""
        self.messages_begun += 1
        self.answers_due = len(self.envelope.recipients)
        mail_log = self.factory.access_log
        if mail_log is not None:
            self.message_log = MessageLog(mail_log)
        self.sink = self.factory.handler.message(self, self.envelope)

    def log_message(self, status: int, text: bytes) -> None:
        """Write the mail log's entry of the message under way (``status`` 0: not
        answered, ``text`` says why)."""
        entry, self.message_log = self.message_log, None
        envelope = self.envelope
        if entry is not None and envelope is not None:
            entry.done(self.client(), envelope, self.received, status, text)

    def logged_reply(self) -> Callable[[Reply], None]:
        """The message under way has ended: what answers it, and writes its mail log
        entry with the answer (its envelope and size kept: the transaction ends before
        the handler's decision comes)."""
        entry, self.message_log = self.message_log, None
        envelope, size, client = self.envelope, self.received, self.client()
        assert entry is not None and envelope is not None

        def unanswered(why: str) -> None:
            entry.done(client, envelope, size, 0, why.encode())  # (written once at most)

        # until the answer comes, a session that ends (or a failure) writes the entry:
        # not delivered while the last piece is written, not answered once the sink's
        # close() was asked (``deciding``)
        self.unanswered, self.deciding = unanswered, False

        def respond(answer: Reply | Sequence[Decision]) -> None:
            if self.unanswered is unanswered:
                self.unanswered, self.deciding = None, False
            try:
                answered = self.message_answer(answer)
            except Exception:
                unanswered("not answered: the application's answer was wrong")
                raise
            # (LMTP: delivered if it was to one recipient, as the session counts it)
            first = (
                answered
                if isinstance(answered, Reply)
                else next((each for each in answered if each.code < 300), answered[0])
            )
            entry.done(client, envelope, size, first.code, first.lines[-1])
            if type(answered) is list:  # (validated: sent as they are)
                self.send_answers(answered)
            else:
                self.answer_message(answered)

        return respond

    def answer_message(self, answer: Reply | Sequence[Decision]) -> None:
        """Answer a message. Accepted, the error and junk counts start again (as
        Postfix's do), so a long session of good messages is not cut off by their few
        refused recipients; refused, the reply counts as any error. LMTP: one reply for
        each recipient accepted (:meth:`message_answer`); the message is accepted if one
        recipient's is, and refused to all counts as one error, however many they are."""
        if type(answer) is not Reply or self.lmtp:  # (SMTP's one reply: taken as it is)
            answered = self.message_answer(answer)
            if type(answered) is list:
                self.send_answers(answered)
                return
            assert isinstance(answered, Reply)
            answer = answered
        if answer.code < 300:
            self.errors = self.junk = 0
        self.reply(answer)

    def send_answers(self, answered: list[Reply]) -> None:
        """Send LMTP's replies to a message, as :meth:`message_answer` made them (see
        :meth:`answer_message`)."""
        accepted = any(each.code < 300 for each in answered)
        if accepted:
            self.errors = self.junk = 0
        for each in answered:
            self.reply(each, counted=False)
        counted = any(e.code >= 400 and e.code not in UNCOUNTED for e in answered)
        if not accepted and counted and not self.cut_off:
            self.count_error()

    def message_answer(self, answer: Reply | Sequence[Decision]) -> Reply | list[Reply]:
        """The replies that answer a message: ``answer`` itself (SMTP), or LMTP's, one
        for each recipient accepted, in their order (RFC 2033 4.2): ``answer`` for each,
        or the sink's sequence of decisions, one for each (``None``: the usual ``250``).
        Anything else is the application's error (``TypeError``, ``ValueError``: the
        session answers ``421`` and closes, as for any handler that raised)."""
        if not self.lmtp:
            if not isinstance(answer, Reply):
                raise TypeError(
                    f"a message's answer is one reply (a sequence is LMTP's): {answer!r}"
                )
            return answer
        count = max(1, self.answers_due)
        if isinstance(answer, Reply):
            return [answer] * count
        answers = list(answer)
        if len(answers) != count or not all(a is None or isinstance(a, Reply) for a in answers):
            raise ValueError(
                f"the message sink's close() gave {answers!r}: a reply or None for each "
                f"of the {count} recipients (or one reply for all)"
            )
        return [OK if each is None else each for each in answers]

    def trace(
        self, envelope: Envelope, *, id: str | None = None, recipient: bytes | None = None
    ) -> bytes:
        """The ``Received:`` header field a server accepting ``envelope``'s message puts
        at its top (RFC 5321 4.4; :func:`~statewire.protocols._smtp_trace.received`):
        from the client's name and address, by the server's hostname, with the protocol
        as RFC 3848 names it, under ``id``, for ``recipient`` (give it for one)."""
        utf8 = b"SMTPUTF8" in envelope.sender_parameters
        protocol = protocol_name(self.lmtp, envelope.extended, envelope.tls, envelope.user, utf8)
        used = None
        ssl_object = ssl_object_of(self.transport) if envelope.tls else None
        if ssl_object is not None:
            version, cipher = ssl_object.version(), ssl_object.cipher()
            if version is not None and cipher is not None:
                used = (version, cipher[0])
        return received(
            self.factory.hostname,
            envelope.helo,
            self.client(),
            protocol,
            id=id,
            recipient=recipient,
            tls=used,
        )

    def client(self) -> tuple[str, int] | None:
        """The client's (host, port), when the transport says."""
        peer = getattr(self.transport, "getPeer", None)
        address = peer() if peer is not None else None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        return (str(host), int(port)) if host is not None and port is not None else None

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
        respond = self.answer_message if self.message_log is None else self.logged_reply()
        if written is None and self.refusal is None and self.sink is not None:
            # written now, decided now: the common case made short (as ``decide`` does)
            sink, self.sink = self.sink, None
            self.forget(keep_answer=True)
            self.deciding = True
            decision = sink.close()
            if decision is None:
                respond(OK)
                return None
            if type(decision) is Reply:
                respond(decision)
                return None
            return self.then(
                decision, lambda decision: respond(OK if decision is None else decision)
            )

        def decide(_: object) -> Any:
            refusal, sink = self.refusal, self.sink
            self.sink = None
            self.forget(keep_answer=True)
            if refusal is not None or sink is None:
                respond(refusal or TOO_BIG)
                return None
            self.deciding = True
            return self.then(sink.close(), answer)

        def answer(decision: Decision) -> None:
            respond(OK if decision is None else decision)

        return self.then(written, decide)

    # -- DATA ----------------------------------------------------------------------------

    def take_text(self, machine: Inputs, data: bytes) -> Any:
        """Octets of the DATA body as a read brought them. The whole lines are checked,
        unstuffed and taken together (:meth:`take_lines`); the start of a line waits for
        its CRLF; the line that is one dot ends the body, and the octets after it are given
        back (:meth:`unread`) to be framed as commands. Returns what to wait for.

        Only CRLF ends a line, so only CRLF.CRLF ends the body: the search is for the
        line ``.`` after a CRLF (or first), never for LF or CR alone."""
        self.body_wire += len(data)
        tail = self.text_tail
        if tail:
            data = tail + data
            self.text_tail = b""
        if self.text_skipping:  # the rest of a line too long, through its CRLF
            found = data.find(b"\r\n")
            if found < 0:
                self.text_tail = b"\r" if data[-1:] == b"\r" else b""
                return None
            self.text_skipping = False
            data = data[found + 2 :]
        end = 0 if data[:3] == BODY_END[2:] else data.find(BODY_END) + 2
        if end > 1:  # the line "." at ``end``: the lines before it are the last ones
            lines = data[:end]
            written = self.take_lines(lines) if lines else None
            if written is not None:  # the sink takes its time: the end is read after it
                self.unread(data[end:])
                return written
            machine.end_of_data(END_OF_DATA)  # (runs once this output returns)
            self.unread(data[end + 3 :])  # (framed after that, as commands)
            return None
        if end == 0:
            machine.end_of_data(END_OF_DATA)
            self.unread(data[3:])
            return None
        cut = data.rfind(b"\r\n") + 2
        if cut > 1:
            written = self.take_lines(data[:cut])
            if written is not None:
                self.unread(data[cut:])
                return written
            tail = data[cut:]
        else:
            tail = data
        if len(tail) - (tail[-1:] == b"\r") > TEXT_LIMIT - 2:
            # a line too long: refused at the end of the message, skipped (not held)
            self.refuse(TOO_LONG)
            self.text_skipping = True
            tail = b"\r" if tail[-1:] == b"\r" else b""
        self.text_tail = tail
        return None

    def take_lines(self, lines: bytes) -> Any:
        """Whole text lines of DATA (each ending CRLF, none the end), taken at once when
        none is too long, none holds a bare CR or LF (refused) and the size limit is not
        reached: unstuffed with one ``replace``, counted, and handed on in pieces;
        otherwise line by line (:meth:`take_lines_one_by_one`), with the same result."""
        if self.refusal is not None:
            return None  # the message is refused already: nothing more to look at
        crlf = lines.count(b"\r\n")
        if (
            self.refuse_bare_newlines
            and (lines.count(b"\n") != crlf or lines.count(b"\r") != crlf)
        ) or (
            # (no line can be too long when all of them together are not)
            len(lines) - 2 * crlf > TEXT_LIMIT - 2
            and max(map(len, lines.split(b"\r\n"))) > TEXT_LIMIT - 2
        ):
            return self.take_lines_one_by_one(lines)
        body = lines[1:] if lines[:1] == b"." else lines
        if b"\r\n." in body:
            body = body.replace(b"\r\n.", b"\r\n")
        received = self.received + len(body)
        if received > self.factory.max_size:
            return self.take_lines_one_by_one(lines)
        self.received = received
        pending = self.pending
        pending += body
        if len(pending) < self.piece_size:
            return None
        return self.write_pieces()

    def take_lines_one_by_one(self, lines: bytes) -> Any:
        """:meth:`take_lines` one line at a time: each refusal in its place (the first
        one is the answer), a line too long skipped, a sink that takes its time waited
        for before the lines after it (taken once it is done)."""
        texts = lines.split(b"\r\n")
        del texts[-1]  # (after the last CRLF: nothing)
        limit = TEXT_LIMIT - 2
        position = 0
        for text in texts:
            position += len(text) + 2
            if len(text) > limit:
                self.refuse(TOO_LONG)
                continue
            if text[:1] == b".":
                text = text[1:]
            if self.refuse_bare_newlines and (b"\n" in text or b"\r" in text):
                self.refuse(BARE_NEWLINE)
            written = self.take(text + b"\r\n")
            if written is not None:
                rest = lines[position:]
                if not rest:
                    return written
                # the lines after it once the sink took its time (each line looked at once)
                return self.then(written, partial(self._lines_after, rest))
        return None

    def _lines_after(self, lines: bytes, _: object) -> Any:
        return self.take_lines_one_by_one(lines)

    def write_pieces(self) -> Any:
        """Hand the sink the pending body in pieces, each the whole lines that first
        reach :attr:`piece_size` octets (as one line at a time would); a piece whose
        ``write`` is awaited holds back the next ones. Returns what to wait for."""
        size = self.piece_size
        while len(self.pending) >= size:
            pending, sink = self.pending, self.sink
            if sink is None:  # (no sink to write to: nothing is kept, as ``flush`` does)
                pending.clear()
                return None
            cut = pending.find(b"\r\n", max(size - 2, 0)) + 2
            piece = bytes(pending[:cut])
            del pending[:cut]
            written = sink.write(piece)
            if written is not None and inspect.isawaitable(written):
                if len(self.pending) < size:
                    return written
                return self.then(written, lambda _: self.write_pieces())
        return None

    def unread(self, data: bytes) -> None:
        """Give back octets a raw read brought past what the current state takes: they
        are framed next, before anything received later, by the framing of the state the
        machine is in then (:meth:`statewire.machine.Engine.unread`)."""
        if data:
            engine = self.machine_engine
            assert engine is not None
            engine.unread(data)

    # -- BDAT ----------------------------------------------------------------------------

    def start_chunk(self, size: int, last: bool, skipping: Reply | None) -> None:
        """A BDAT chunk of ``size`` octets follows; ``skipping``: read and drop it, then
        answer that."""
        self.chunk_left, self.chunk_last, self.skipping = size, last, skipping
        if size:
            self.pace_body()
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
        self.body_wire += len(data)
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
            if self.message_log is not None:
                self.log_message(skipped.code, skipped.lines[-1])
            self.forget()
            if self.lmtp and self.chunk_last and skipped is TOO_BIG:
                # the message's last chunk, refused: LMTP answers each recipient (a chunk
                # before the last gets its own one reply, and ends the transaction)
                self.answer_message(skipped)
            else:
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
        if isinstance(error, FrameTooLong):  # (a text line too long is take_text's)
            self.reply(TOO_LONG)
            if state == "authenticating":
                self.exchange = None
                self.inputs.auth_ended()
            return
        if isinstance(error, UnexpectedInput):
            if error.input == "bdat" and state == "greeted":
                # its octets follow and cannot be told from commands: stop reading
                first = "LHLO" if self.lmtp else "EHLO"
                self.reply(reply(503, f"5.5.1 Error: send {first} first; closing"))
                self.close()
                return
            self.reply(_out_of_sequence(state, error.input, self.lmtp))
            return
        log.info("SMTP: %s; closing", error)
        self.reply(reply(500, "5.5.2 Error: bad input; closing"))
        self.close()


def _international(address: bytes, smtputf8: bool, bad: str) -> Reply | None:
    """The refusal of a non-ASCII ``address``: ``553 5.6.7`` without SMTPUTF8, ``553`` and
    ``bad`` when it is not UTF-8; ``None`` when it is taken."""
    if not smtputf8:
        return reply(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
    return None if is_utf8(address) else reply(553, f"{bad} address syntax: not UTF-8")


def _unsupported(key: bytes) -> Reply:
    """The ``555`` for parameter ``key``, cut short when long: a reply line stays within
    RFC 5321's 512 octets (4.5.3.1.5) whatever the client sent."""
    shown = key if len(key) <= 64 else key[:64] + b"..."
    return reply(555, b"5.5.4 Unsupported option: " + shown)


def _syntax(error: ArgumentError, usage: str) -> Reply:
    if error.unsupported:
        return reply(555, f"5.5.4 {error}")
    return reply(501, f"5.5.4 Syntax: {usage} ({error})")


def _out_of_sequence(state: str, name: str, lmtp: bool = False) -> Reply:
    """The 503 for command ``name`` in ``state`` (of an LMTP session: ``lmtp``)."""
    if state == "greeted":
        first = "LHLO" if lmtp else "HELO/EHLO"
        return reply(503, f"5.5.1 Error: send {first} first")
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
