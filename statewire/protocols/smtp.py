"""An ESMTP server (RFC 5321) whose session is a declared machine.

Theory of operation
-------------------
The states are the session as RFC 5321 tells it::

    greeted         220 sent         EHLO/HELO -> identified
    identified      EHLO done        MAIL -> transaction (-> identified if refused)
                                     AUTH -> authenticating -> identified
                                     STARTTLS -> greeted, encrypted
    transaction     MAIL accepted    RCPT (loops, recipients collected)
                                     DATA -> data (-> transaction if refused)
                                     BDAT -> chunk
    data            354 sent         text lines; "." -> identified, the message decided
    chunk           BDAT n           n raw octets, in pieces; -> chunking, or the LAST
                                     -> identified, the message decided
    chunking        between chunks   BDAT -> chunk
    any             QUIT, idle timeout, connection lost -> closed

A command the state has no transition for is a sequence error (``503 5.5.1``), answered
by :meth:`SMTPServer.remoteError`; the state is unchanged. Where the next state depends
on a decision, the diagram shows both the command and the decision's internal input.
``MAIL`` and ``DATA``, accepted by far the most often, move at once (to ``transaction``,
to ``data``) and a refusal moves back (``sender_refused``, ``data_refused``): the
accepted command is one transition, with no second input to run. No frame is read while
a decision is pending (or before a refusal has moved back), so nothing is ever read in
the state a refused command moved to. A refusal that is the last error allowed
(:attr:`SMTPFactory.max_errors`: ``421 4.7.0``) closes the session at once, and a closing
connection runs no postponed input: the machine stays where the refused command moved,
reading nothing, until the loss takes it to ``closed``. The rarer decisions (a TLS context
configured, a SASL exchange needing another line) loop, and the decision's input moves
(``secured``, ``challenged``...).

Framing per state: command lines of at most 512 octets (``grammars.smtp.command_line``)
in the command states, the reads as they come in ``data`` (cut into text lines of at most
1000 octets by :meth:`SMTPConnection.take_text`, whole lines at a time), blocks of
at most :attr:`SMTPServer.piece_size` octets of the announced BDAT size in ``chunk``
(re-evaluated after each piece), SASL lines in ``authenticating``. Only CRLF ends a line,
so only CRLF.CRLF ends ``DATA``: bare LF or CR stays inside a line, and a message
holding one, by DATA or by BDAT, is refused (``500 5.5.2``) when
:attr:`SMTPServer.refuse_bare_newlines`.

The body goes to the handler's :class:`MessageSink` in pieces as it arrives, never held
whole; the size limit is checked from ``MAIL FROM``'s ``SIZE=`` before any body byte and
counted as the body comes. Handler decisions may be awaitables: the engine reads no
further command until one completes, so pipelined replies leave in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from automat import TypeMachineBuilder

from grammars import line, raw
from grammars.smtp import (
    ArgumentError,
    Reply,
    bare_newline,
    command_line,
    hello_name,
    parse_bdat,
    reply,
)
from statewire.framing import Policy
from statewire.machine import Timeout, by_key
from statewire.protocol import Factory
from statewire.protocols._log_text import chosen_log
from statewire.protocols._smtp_auth import Credentials, Exchange
from statewire.protocols._smtp_handler import (
    Answers,
    CredentialCheck,
    Decision,
    Envelope,
    MessageSink,
    Pending,
    SMTPHandler,
)
from statewire.protocols._smtp_log import MailLog, MessageEntry
from statewire.protocols._smtp_session import IDLE_SECONDS, OK, SENDER_OK, SMTPConnection
from statewire.protocols._smtp_trace import check_word

GO_AHEAD = reply(354, "End data with <CR><LF>.<CR><LF>")
#: octets of an AUTH exchange's line (RFC 4954 4)
AUTH_LINE_LIMIT = 12288


class Inputs(Protocol):
    """The machine's inputs: one per command, the body's frames, and internal events."""

    def ehlo(self, argument: bytes) -> None: ...
    def helo(self, argument: bytes) -> None: ...
    def bad_hello(self, line: bytes) -> None: ...
    def mail(self, argument: bytes) -> None: ...
    def rcpt(self, argument: bytes) -> None: ...
    def data(self, argument: bytes) -> None: ...
    def bdat(self, argument: bytes) -> None: ...
    def rset(self, argument: bytes) -> None: ...
    def noop(self, argument: bytes) -> None: ...
    def vrfy(self, argument: bytes) -> None: ...
    def help(self, argument: bytes) -> None: ...
    def quit(self, argument: bytes) -> None: ...
    def starttls(self, argument: bytes) -> None: ...
    def auth(self, argument: bytes) -> None: ...
    def unknown(self, line: bytes) -> None: ...
    def text(self, data: bytes) -> None: ...
    def end_of_data(self, line: bytes) -> None: ...
    def piece(self, data: bytes) -> None: ...
    def response(self, line: bytes) -> None: ...
    def sender_refused(self) -> None: ...
    def data_refused(self) -> None: ...
    def secured(self) -> None: ...
    def challenged(self) -> None: ...
    def auth_ended(self) -> None: ...
    def chunk_ended(self) -> None: ...
    def message_ended(self) -> None: ...
    def timed_out(self) -> None: ...
    def shutting_down(self) -> None: ...
    def lost(self, reason: object) -> None: ...


# -- the machine ---------------------------------------------------------------------------

builder = TypeMachineBuilder(Inputs, SMTPConnection)
greeted = builder.state("greeted")
identified = builder.state("identified")
transaction = builder.state("transaction")
data = builder.state("data")
chunk = builder.state("chunk")
chunking = builder.state("chunking")
authenticating = builder.state("authenticating")
closed = builder.state("closed")

_COMMANDS = (greeted, identified, transaction, chunking)
_READING = (*_COMMANDS, data, chunk, authenticating)


# greeted, identified, transaction: EHLO / HELO start over


def greet_ehlo(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    core.identify(argument, True)


def greet_helo(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    core.identify(argument, False)


greeted.upon(Inputs.ehlo).to(identified)(greet_ehlo)
greeted.upon(Inputs.helo).to(identified)(greet_helo)
identified.upon(Inputs.ehlo).loop()(greet_ehlo)
identified.upon(Inputs.helo).loop()(greet_helo)
transaction.upon(Inputs.ehlo).to(identified)(greet_ehlo)
transaction.upon(Inputs.helo).to(identified)(greet_helo)


def refuse_hello(machine: Inputs, core: SMTPConnection, line: bytes) -> None:
    """An EHLO or HELO with no name, or a bad one: ``501``, and the session stays in the
    state it was in (RFC 5321 4.1.4)."""
    verb = line.partition(b" ")[0].upper().decode("ascii")
    core.reply(reply(501, f"5.5.4 Syntax: {verb} hostname"))


for _state in (greeted, identified, transaction):
    _state.upon(Inputs.bad_hello).loop()(refuse_hello)


# identified: MAIL, AUTH, STARTTLS


@identified.upon(Inputs.mail).to(transaction)
def check_sender(machine: Inputs, core: SMTPConnection, argument: bytes) -> Any:
    decision = core.check_sender(argument)
    if decision is None:  # accepted now, with the usual reply: the common case made short
        core.reply(SENDER_OK)
        return None

    def answer(decision: Decision) -> None:
        if decision is None or decision.code < 300:
            core.reply(SENDER_OK if decision is None else decision)
        else:
            core.envelope = None
            core.reply(decision)
            machine.sender_refused()

    return core.then(decision, answer)


transaction.upon(Inputs.sender_refused).to(identified).returns(None)


@identified.upon(Inputs.auth).loop()
def begin_auth(machine: Inputs, core: SMTPConnection, argument: bytes) -> Any:
    if core.user is not None:
        core.reply(reply(503, "5.5.1 Error: already authenticated"))
        return None
    if core.factory.check_credentials is None:
        core.reply(reply(502, "5.5.1 Error: authentication not enabled"))
        return None
    if not core.auth_offered():
        core.reply(reply(538, "5.7.11 Encryption required for requested authentication mechanism"))
        return None
    exchange, step = Exchange.start(argument)
    if exchange is not None and isinstance(step, bytes):
        core.exchange = exchange
        core.reply(reply(334, step))
        machine.challenged()
        return None
    return _conclude_auth(core, step)


def _conclude_auth(core: SMTPConnection, step: object) -> Any:
    """An AUTH exchange's last step: credentials to check, or a refusal to send."""
    if isinstance(step, Reply):
        core.reply(step)
        return None
    assert isinstance(step, Credentials)
    check = core.factory.check_credentials
    assert check is not None

    def answer(accepted: bool) -> None:
        if accepted:
            core.user = step.identity
            core.reply(reply(235, "2.7.0 Authentication successful"))
        else:
            core.reply(reply(535, "5.7.8 Authentication credentials invalid"))

    return core.then(check(core, step.mechanism, step.identity, step.password), answer)


identified.upon(Inputs.challenged).to(authenticating).returns(None)


@authenticating.upon(Inputs.response).loop()
def continue_auth(machine: Inputs, core: SMTPConnection, line: bytes) -> Any:
    exchange = core.exchange
    assert exchange is not None
    step = exchange.respond(line)
    if isinstance(step, bytes):
        core.reply(reply(334, step))
        return None
    core.exchange = None
    machine.auth_ended()
    return _conclude_auth(core, step)


authenticating.upon(Inputs.auth_ended).to(identified).returns(None)


@identified.upon(Inputs.starttls).loop()
def start_tls(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    context = core.factory.tls_context
    if argument:
        core.reply(reply(501, "5.5.4 Syntax: STARTTLS"))
    elif core.tls:
        core.reply(reply(503, "5.5.1 Error: TLS already active"))
    elif context is None or not core.can_start_tls():
        core.reply(reply(502, "5.5.1 Error: command not implemented"))
    else:
        core.reply(reply(220, "2.0.0 Ready to start TLS"))
        # plaintext pipelined behind STARTTLS is never executed (CVE-2011-0411)
        core.discard_input()
        core.send_replies()  # the 220 in plaintext, before the handshake
        core.transport.startTLS(context)
        core.forget()
        core.tls, core.helo, core.extended, core.user = True, b"", False, None
        machine.secured()


identified.upon(Inputs.secured).to(greeted).returns(None)


# transaction: RCPT, DATA, BDAT


@transaction.upon(Inputs.rcpt).loop()
def check_recipient(machine: Inputs, core: SMTPConnection, argument: bytes) -> Any:
    decision = core.check_recipient(argument)
    if isinstance(decision, Reply):
        core.reply(decision)
        return None
    return decision


def _no_recipients(core: SMTPConnection) -> Reply:
    """DATA or BDAT with no recipient accepted: ``554`` (RFC 2920 3.1: with pipelining,
    the recipients were refused), LMTP's ``503`` (RFC 2033 4.2)."""
    return reply(503 if core.lmtp else 554, "5.5.1 Error: no valid recipients")


@transaction.upon(Inputs.data).to(data)
def start_data(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    assert core.envelope is not None
    if argument:
        core.reply(reply(501, "5.5.4 Syntax: DATA"))
        machine.data_refused()
    elif not core.envelope.recipients:
        core.reply(_no_recipients(core))
        machine.data_refused()
    else:
        core.open_message()
        core.pace_body()
        core.reply(GO_AHEAD)


data.upon(Inputs.data_refused).to(transaction).returns(None)


@data.upon(Inputs.text).loop()
def take_text(machine: Inputs, core: SMTPConnection, data: bytes) -> Any:
    # the line that is one dot ends the body: core.take_text calls end_of_data, which runs
    # once this output returns, and gives back the octets after the dot (read as commands)
    return core.take_text(machine, data)


@data.upon(Inputs.end_of_data).to(identified)
def end_data(machine: Inputs, core: SMTPConnection, line: bytes) -> Any:
    return core.finish()


def _bdat(core: SMTPConnection, argument: bytes) -> tuple[int, bool] | None:
    try:
        return parse_bdat(argument)
    except ArgumentError:
        # without a size the chunk's end is unknown: the session cannot go on
        core.reply(reply(501, "5.5.4 Syntax: BDAT size [LAST]; closing"))
        core.close()
        return None


def skip_chunk(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    """BDAT outside a transaction able to take it: read the chunk, then refuse it."""
    parsed = _bdat(core, argument)
    if parsed is not None:
        envelope = core.envelope
        refusal = (
            _no_recipients(core)
            if envelope is not None
            else reply(503, "5.5.1 Error: need MAIL command")
        )
        core.start_chunk(*parsed, skipping=refusal)


def read_chunk(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    parsed = _bdat(core, argument)
    if parsed is None:
        return
    envelope = core.envelope
    assert envelope is not None
    if not envelope.recipients:
        skip_chunk(machine, core, argument)
        return
    if core.sink is None and core.refusal is None:
        core.open_message()
    core.start_chunk(*parsed, skipping=None)


identified.upon(Inputs.bdat).to(chunk)(skip_chunk)
transaction.upon(Inputs.bdat).to(chunk)(read_chunk)
chunking.upon(Inputs.bdat).to(chunk)(read_chunk)


@chunk.upon(Inputs.piece).loop()
def take_piece(machine: Inputs, core: SMTPConnection, data: bytes) -> Any:
    return core.take_piece(machine, data)


chunk.upon(Inputs.chunk_ended).to(chunking).returns(None)
chunk.upon(Inputs.message_ended).to(identified).returns(None)


# anywhere a command is read: RSET, NOOP, VRFY, HELP, QUIT, the unknown


def reset(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    core.forget("RSET")
    core.reply(OK)
    core.junk_command()


greeted.upon(Inputs.rset).loop()(reset)
identified.upon(Inputs.rset).loop()(reset)
transaction.upon(Inputs.rset).to(identified)(reset)
chunking.upon(Inputs.rset).to(identified)(reset)


def noop(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    core.reply(OK)
    core.junk_command()


def verify(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    if not argument:
        core.reply(reply(501, "5.5.4 Syntax: VRFY address"))
    else:
        core.reply(
            reply(252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery")
        )
    core.junk_command()


_HELP = reply(
    214,
    "2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
    "2.0.0 STARTTLS AUTH; see RFC 5321",
)
_LMTP_HELP = reply(
    214,
    "2.0.0 Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
    "2.0.0 STARTTLS AUTH; see RFC 2033",
)


def help_(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    core.reply(_LMTP_HELP if core.lmtp else _HELP)
    core.junk_command()


def unknown(machine: Inputs, core: SMTPConnection, line: bytes) -> None:
    if not line or bare_newline(line) or not line[:1].isalpha():
        core.reply(reply(500, "5.5.2 Error: bad syntax"))
    elif core.lmtp and line.split(maxsplit=1)[0].upper() in (b"EHLO", b"HELO"):
        # RFC 2033 4.1: an LMTP server takes LHLO, never EHLO or HELO (a client that
        # speaks SMTP to it must not believe its mail delivered the SMTP way)
        core.reply(reply(500, "5.5.1 Error: this is LMTP: LHLO, not EHLO or HELO"))
    else:
        core.reply(reply(502, "5.5.2 Error: command not recognized"))


def say_bye(machine: Inputs, core: SMTPConnection, argument: bytes) -> None:
    core.ended = True
    core.forget("QUIT")
    core.reply(reply(221, "2.0.0 Bye"))
    core.close()


for _state in _COMMANDS:
    for _input, _output in (
        (Inputs.vrfy, verify),
        (Inputs.help, help_),
        (Inputs.unknown, unknown),
    ):
        _state.upon(_input).loop()(_output)
    _state.upon(Inputs.quit).to(closed)(say_bye)
for _state in (greeted, identified, transaction, chunking):
    _state.upon(Inputs.noop).loop()(noop)


def time_out(machine: Inputs, core: SMTPConnection) -> None:
    core.ended = True
    core.forget("the handler's timeout" if core.waiting else "the client's timeout")
    core.reply(reply(421, f"4.4.2 {core.factory.hostname} Error: timeout exceeded"))
    core.close()


def shut_down(machine: Inputs, core: SMTPConnection) -> None:
    core.ended = True
    core.forget("the server's shutdown")
    core.reply(reply(421, f"4.3.2 {core.factory.hostname} Service shutting down"))
    core.close()


def hang_up(machine: Inputs, core: SMTPConnection, reason: object) -> None:
    core.ended = True
    core.forget("the connection was lost")


for _state in _READING:
    _state.upon(Inputs.timed_out).to(closed)(time_out)
    _state.upon(Inputs.shutting_down).to(closed)(shut_down)
    _state.upon(Inputs.lost).to(closed)(hang_up)
closed.upon(Inputs.lost).loop()(hang_up)


# -- routes and framings -------------------------------------------------------------------


def _verb_of(hellos: tuple[bytes, ...]) -> Callable[[bytes], bytes]:
    """The route's key of a command line: its verb, upper-cased; ``_BAD_HELLO`` for one
    of ``hellos`` without a good name."""

    def verb_of(frame: bytes) -> bytes:
        if b"\n" in frame or b"\r" in frame:
            return b""  # a bare newline in a command: a syntax error (``unknown``)
        verb, _, argument = frame.partition(b" ")
        verb = verb.upper()
        if verb in hellos and hello_name(argument) is None:
            return _BAD_HELLO  # (refused in the state it came in: no transition)
        return verb

    return verb_of


_BAD_HELLO = b"EHLO/HELO?"


def _line(frame: bytes) -> tuple[bytes]:
    return (frame,)


def _argument(frame: bytes) -> tuple[bytes]:
    return (frame.partition(b" ")[2],)


_COMMANDS_TAKEN = {
    b"MAIL": Inputs.mail,
    b"RCPT": Inputs.rcpt,
    b"DATA": Inputs.data,
    b"BDAT": Inputs.bdat,
    b"RSET": Inputs.rset,
    b"NOOP": Inputs.noop,
    b"VRFY": Inputs.vrfy,
    b"HELP": Inputs.help,
    b"QUIT": Inputs.quit,
    b"STARTTLS": Inputs.starttls,
    b"AUTH": Inputs.auth,
}


def _command_route(hellos: dict[bytes, Any]) -> Any:
    """The command states' route: ``hellos`` (verb: input) and the other commands."""
    return by_key(
        _verb_of(tuple(hellos)),
        {verb: (target, _argument) for verb, target in {**hellos, **_COMMANDS_TAKEN}.items()}
        | {_BAD_HELLO: (Inputs.bad_hello, _line)},
        unknown=Inputs.unknown,
    )


_COMMAND_ROUTE = _command_route({b"EHLO": Inputs.ehlo, b"HELO": Inputs.helo})
#: LMTP's: LHLO is EHLO by another name (RFC 2033 4.1); EHLO and HELO are unknown there
_LMTP_ROUTE = _command_route({b"LHLO": Inputs.ehlo})


def bdat_piece(protocol: SMTPConnection, state_data: object) -> Any:
    """The next piece of a BDAT chunk: at most ``piece_size`` of the octets left."""
    return protocol.piece_framing()


class SMTPServer(SMTPConnection):
    """An ESMTP server connection: the machine above, its framings, routes, timeouts."""

    machine = builder.build()
    framings = {
        # one grammar for every command state: a decision's state change keeps the framing
        **dict.fromkeys(_COMMANDS, command_line()),
        data: raw(),  # the body as it comes: SMTPConnection.take_text cuts its lines
        chunk: bdat_piece,
        authenticating: line(b"\r\n", AUTH_LINE_LIMIT - 2),
    }
    routes = {
        **{state: _COMMAND_ROUTE for state in _COMMANDS},
        data: Inputs.text,  # every read, handed to take_text as it is (the cheapest path)
        chunk: Inputs.piece,
        authenticating: Inputs.response,
    }
    timeouts = {
        # awaiting a command (or an AUTH response): a deadline from the server's last
        # reply (SMTPConnection restarts it at each), so a command trickled a byte at a
        # time cannot hold the session (RFC 5321 4.5.3.2.7: 5 minutes for the next one)
        **dict.fromkeys((*_COMMANDS, authenticating), Timeout(IDLE_SECONDS, Inputs.timed_out)),
        # a body: the client's silence (a large message may take longer than 5 minutes)
        **dict.fromkeys((data, chunk), Timeout(IDLE_SECONDS, Inputs.timed_out, idle=True)),
    }
    lost = Inputs.lost
    #: a line over the limit is skipped and answered, and the session goes on
    policy = Policy.DISCARD
    close_on_error = False


class LMTPServer(SMTPServer):
    """An LMTP server connection (RFC 2033): SMTP's session, its machine and its diagram,
    with two differences. ``LHLO`` is EHLO by another name, and EHLO and HELO are
    refused (``500 5.5.1``). At a message's end, after DATA's final dot or BDAT's LAST
    chunk, each recipient accepted gets a reply, in their order: the message sink's
    decision for each, or each of the decisions it gives (see
    :meth:`MessageSink.close`); a refusal of the message (too large, a bare newline)
    answers every one. PIPELINING and ENHANCEDSTATUSCODES, which RFC 2033 requires, are
    offered as SMTP's are."""

    lmtp = True
    routes = {**SMTPServer.routes, **dict.fromkeys(_COMMANDS, _LMTP_ROUTE)}


class SMTPFactory(Factory):
    """Serves :class:`SMTPServer` sessions for ``handler``, with the server's settings."""

    protocol = SMTPServer
    #: octets a second a message's content (a DATA body, a BDAT chunk) must keep,
    #: reckoned as Postfix's ``smtpd_min_data_rate`` (whose figure this is: see
    #: :mod:`statewire.protocols._pace`, the budget :data:`IDLE_SECONDS`): slower, the
    #: idle timeout's ``421 4.4.2`` and the connection closes; ``0``: no minimum
    min_data_rate = 500

    def __init__(
        self,
        handler: SMTPHandler | None = None,
        *,
        hostname: str = "localhost",
        max_size: int = 32 * 1024 * 1024,
        max_recipients: int = 100,
        max_errors: int = 20,
        max_junk_commands: int = 100,
        tls_context: Any = None,
        check_credentials: CredentialCheck | None = None,
        require_auth: bool = False,
        auth_over_plaintext: bool = False,
        access_log: MailLog | bool | None = None,
    ) -> None:
        check_word(hostname, "hostname")  # (in every greeting, EHLO reply and trace)
        #: decides on senders, recipients and messages
        self.handler = handler if handler is not None else SMTPHandler()
        #: the name the server greets with
        self.hostname = hostname
        #: octets a message may have (``SIZE`` in EHLO; ``552 5.3.4`` past it)
        self.max_size = max_size
        #: recipients one transaction may have (``452 4.5.3`` past it)
        self.max_recipients = max_recipients
        #: error replies a session may get (the client's mistakes: syntax, sequence,
        #: unknown commands, failed AUTH; the handler's refusals; not ``452`` past the
        #: recipient limit nor ``552`` past the size), counted again from each message
        #: accepted, as Postfix's ``smtpd_hard_error_limit``; the last is followed by
        #: ``421 4.7.0`` and a close
        self.max_errors = max_errors
        #: NOOP, RSET, VRFY and HELP commands a session may send between two messages
        #: accepted before each counts as an error (Postfix's ``smtpd_junk_command_limit``)
        self.max_junk_commands = max_junk_commands
        #: an ``ssl.SSLContext`` (server side) to offer STARTTLS with, or ``None``
        self.tls_context = tls_context
        #: the credential check AUTH uses; ``None``: no AUTH
        self.check_credentials = check_credentials
        #: whether MAIL needs AUTH first (``530 5.7.0``)
        self.require_auth = require_auth
        #: whether AUTH is offered without TLS (passwords in clear text)
        self.auth_over_plaintext = auth_over_plaintext
        #: where each message is logged (``None``: nowhere; ``True`` given: a
        #: :class:`MailLog` to the ``statewire.mail`` logger): read as each message begins
        self.access_log: MailLog | None = chosen_log(access_log, MailLog)
        #: the open sessions (told ``421`` when the server stops)
        self.sessions: set[SMTPConnection] = set()

    def log_access(self) -> None:
        """Log each message to the ``statewire.mail`` logger, unless a log is kept
        already (what ``statewire serve --access-log`` asks)."""
        if self.access_log is None:
            self.access_log = MailLog()
        else:
            self.access_log = self.access_log.with_lines()  # (one that only counted)

    def stopFactory(self) -> None:
        """The last port stopped listening (the server stops): every open session is
        told ``421 4.3.2`` and closed."""
        for session in list(self.sessions):
            session.stop_serving()


class LMTPFactory(SMTPFactory):
    """Serves :class:`LMTPServer` sessions: an :class:`SMTPFactory` in every setting.
    LMTP is for a mail system's last hop, to the delivery agent: serve it on a UNIX
    socket or a port of its own (24), never on SMTP's 25 (RFC 2033 5)."""

    protocol = LMTPServer


__all__ = [
    "Answers",
    "CredentialCheck",
    "Decision",
    "Envelope",
    "Inputs",
    "LMTPFactory",
    "LMTPServer",
    "MailLog",
    "MessageEntry",
    "MessageSink",
    "Pending",
    "SMTPConnection",
    "SMTPFactory",
    "SMTPHandler",
    "SMTPServer",
]
