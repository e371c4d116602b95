"""The SMTP server attacked: the 2023 smuggling family at every cut of the stream, BDAT
sizes and bare newlines, STARTTLS injection in a later read, AUTH edge cases, header
injection into the Maildir example, limits exactly at and past them, and the session's end
while a handler's decision is still pending. Each test is a regression test for what an
attacker or a careless client tried; the in-memory ones run on a test clock, the socket
ones on loopback with bounded reads."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import listen, scenario
from test_smtp_clients import Application, Raw, _certificate, _tls_factory
from test_smtp_server import ENVELOPE, Recorder, Session

from grammars.smtp import REPLY_LIMIT, Reply, reply
from statewire.protocols.smtp import Envelope, MessageSink, SMTPConnection

DATA = ENVELOPE + b"DATA\r\n"


def _cuts(data: bytes) -> list[list[bytes]]:
    """``data`` whole, byte by byte, and cut in two at every offset."""
    return [
        [data],
        [data[i : i + 1] for i in range(len(data))],
        *([data[:i], data[i:]] for i in range(1, len(data))),
    ]


def _feed(session: Session, chunks: list[bytes]) -> list[str]:
    found: list[str] = []
    for chunk in chunks:
        found += session.codes(chunk)
    return found


# -- SMTP smuggling (2023): only CRLF . CRLF ends DATA, however the bytes come -----------------

SMUGGLED = b"MAIL FROM:<ceo@victim>\r\nRCPT TO:<x@y>\r\nDATA\r\nforged\r\n"


@pytest.mark.parametrize(
    "ending",
    [
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r.\r\n",
        b"\r\n\x00.\r\n",
        b"\r\n.\x00\r\n",
        b"\r\n .\r\n",
        b"\r\n.\r\r\n",
    ],
    ids=repr,
)
def test_no_false_end_of_data_whatever_the_cuts(ending: bytes) -> None:
    # the false end, commands behind it, then the real end: one message or none, and the
    # smuggled commands never run, for every way of cutting the stream
    stream = b"hello" + ending + SMUGGLED + b".\r\n"
    outcomes = set()
    for chunks in _cuts(stream):
        session = Session()
        session(DATA)
        codes = _feed(session, chunks)
        assert len(codes) == 1 and session.state == "identified"
        assert all(e.sender == b"a@b.test" for e, _ in session.handler.messages)
        outcomes.add((codes[0], len(session.handler.messages)))
    assert len(outcomes) == 1  # chunking never matters
    ((code, delivered),) = outcomes
    bare = b"\n" in ending.replace(b"\r\n", b"") or b"\r" in ending.replace(b"\r\n", b"")
    assert (code, delivered) == (("500 5.5.2", 0) if bare else ("250 2.0.0", 1))


@pytest.mark.parametrize("cut", range(1, 6))
def test_the_real_end_of_data_split_anywhere(cut: int) -> None:
    session = Session()
    session(DATA + b"..\r\n...\r\n.x\r\nlast")
    end = b"\r\n.\r\n"
    assert _feed(session, [end[:cut], end[cut:] + b"NOOP\r\n"]) == ["250 2.0.0", "250 2.0.0"]
    assert session.handler.messages[0][1] == b".\r\n..\r\nx\r\nlast\r\n"


def test_a_line_over_the_limit_never_hides_an_end_of_data() -> None:
    # the skipped line holds LF . CRLF: skipping must look for CRLF alone, so the "."
    # after the bare LF is not taken for the end and RSET is body text
    stream = b"A" * 1500 + b"\n.\r\nRSET\r\n.\r\n"
    for chunks in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
        session = Session()
        session(DATA)
        assert _feed(session, chunks) == ["500 5.5.6"]
        assert session.state == "identified" and session.handler.messages == []


@pytest.mark.parametrize("tail", [b"\r", b"\r\n", b"\r\n.", b"\r\n.\r"])
def test_a_text_line_exactly_at_1000_octets_split_at_its_crlf(tail: bytes) -> None:
    line = b"x" * 998 + b"\r\n"  # 1000 octets with the CRLF: allowed
    session = Session()
    session(DATA + line[:998] + tail)
    assert session(line[998 + len(tail) :] + b".\r\n"[max(0, len(tail) - 2) :]).startswith(
        b"250 2.0.0"
    )
    session = Session()
    session(DATA + b"x" + line[:998] + tail)  # 1001: refused, and the session goes on
    assert session.codes(line[998 + len(tail) :] + b".\r\n"[max(0, len(tail) - 2) :]) == [
        "500 5.5.6"
    ]


def test_a_command_exactly_at_512_octets_and_one_past() -> None:
    session = Session()
    session(b"EHLO c\r\n")
    at = b"NOOP " + b"x" * 505 + b"\r\n"
    assert len(at) == 512
    assert _feed(session, [at[:300], at[300:]]) == ["250 2.0.0"]
    past = b"NOOP " + b"x" * 506 + b"\r\n"
    for cut in (510, 511, 512):
        got = _feed(session, [past[:cut], past[cut:] + b"NOOP\r\n"])
        assert got == ["500 5.5.6", "250 2.0.0"]


# -- BDAT -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"BDAT 0 LAST\r\n", ["250 2.0.0"]),
        (b"BDAT 0005 LAST\r\nabcde", ["250 2.0.0"]),
        (b"BDAT 5 last\r\nabcde", ["250 2.0.0"]),
    ],
)
def test_bdat_sizes_that_are_numbers(command: bytes, expected: list[str]) -> None:
    session = Session()
    session(ENVELOPE)
    assert session.codes(command + b"NOOP\r\n") == [*expected, "250 2.0.0"]


@pytest.mark.parametrize(
    "size",
    [b"-5", b"+5", b" 5", b"5 ", b"0x5", b"5e3", "\uff15".encode(), "\u00b2".encode(), b"9" * 19],
    ids=repr,
)
def test_bdat_sizes_that_are_no_number_close_the_session(size: bytes) -> None:
    # without a size the chunk's end is unknown: its octets must never be read as commands
    session = Session()
    session(ENVELOPE)
    assert session.codes(b"BDAT " + size + b" LAST\r\nQUIT\r\n") == ["501 5.5.4"]
    assert session.transport.disconnecting and session.handler.messages == []


def test_bdat_last_then_data_and_data_then_bdat_are_new_transactions() -> None:
    session = Session()
    session(ENVELOPE)
    assert session.codes(b"BDAT 3 LAST\r\nabcDATA\r\n") == ["250 2.0.0", "503 5.5.1"]
    session = Session()
    session(ENVELOPE)
    assert session.codes(b"BDAT 3\r\nabcDATA\r\n") == ["250 2.0.0", "503 5.5.1"]
    assert session.state == "chunking"  # DATA cannot finish a BDAT message
    session = Session()
    session(DATA)
    assert session.codes(b"x\r\n.\r\nBDAT 3 LAST\r\nabc") == ["250 2.0.0", "503 5.5.1"]
    assert len(session.handler.messages) == 1


def test_commands_inside_a_bdat_chunk_are_octets() -> None:
    chunk = b"QUIT\r\nRSET\r\n"
    for chunks in _cuts(ENVELOPE + b"BDAT 12 LAST\r\n" + chunk + b"NOOP\r\n"):
        session = Session()
        assert _feed(session, chunks)[-2:] == ["250 2.0.0", "250 2.0.0"]
        assert session.handler.messages[0][1] == chunk


@pytest.mark.parametrize(
    "chunks",
    [
        [b"a\nb"],
        [b"a\rb"],
        [b"ab\r"],  # the message ends in a bare CR
        [b"a\r", b"b"],  # a CR ending one chunk, no LF opening the next
        [b"a", b"\nb"],  # an LF opening a chunk, no CR before it
        [b"a\n.\r\n"],  # the smuggler's LF . CRLF, sent by BDAT
    ],
    ids=repr,
)
def test_a_bare_newline_in_bdat_refuses_the_message(chunks: list[bytes]) -> None:
    # else BDAT would carry what DATA refuses, to a next hop that sends it on by DATA
    session = Session()
    session(ENVELOPE)
    script = b"".join(
        b"BDAT %d%s\r\n%s" % (len(c), b" LAST" if i == len(chunks) - 1 else b"", c)
        for i, c in enumerate(chunks)
    )
    assert session.codes(script)[-1] == "500 5.5.2"
    assert session.handler.messages == [] and session.handler.sinks[0].aborted


def test_crlf_cut_between_bdat_chunks_and_pieces_is_no_bare_newline() -> None:
    script = b"BDAT 5\r\nab\r\ncBDAT 3\r\n\r\n\rBDAT 1 LAST\r\n\n"
    for chunks in ([script], [script[i : i + 1] for i in range(len(script))]):
        session = Session()
        session.protocol.piece_size = 3
        session(ENVELOPE)
        assert _feed(session, chunks)[-1] == "250 2.0.0"
        assert session.handler.messages[0][1] == b"ab\r\nc\r\n\r\n"


def test_bare_newlines_in_bdat_may_be_kept() -> None:
    session = Session()
    session.protocol.refuse_bare_newlines = False
    session(ENVELOPE)
    assert session.codes(b"BDAT 5 LAST\r\na\n.\r\r") == ["250 2.0.0"]
    assert session.handler.messages[0][1] == b"a\n.\r\r"


def test_ten_thousand_pipelined_recipients() -> None:
    session = Session()
    session(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
    codes = session.codes(b"".join(b"RCPT TO:<r%d@y>\r\n" % i for i in range(10_000)))
    assert codes == ["250 2.1.5"] * 100 + ["452 4.5.3"] * 9_900
    assert len(session.protocol.envelope.recipients) == 100  # type: ignore[union-attr]


# -- EHLO, AUTH -------------------------------------------------------------------------------


def test_ehlo_with_a_name_at_the_command_limit_gets_replies_within_512_octets() -> None:
    session = Session()
    reply_lines = session(b"EHLO " + b"n" * 505 + b"\r\n").split(b"\r\n")
    assert reply_lines[0].startswith(b"250-mx.test")
    assert max(len(x) + 2 for x in reply_lines) <= REPLY_LIMIT
    assert session.state == "identified"


def _check(session: SMTPConnection, mechanism: str, identity: bytes, password: bytes) -> bool:
    return (identity, password) == (b"alice", b"secret")


def _plain(text: bytes) -> bytes:
    return base64.b64encode(text)


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        (b"AUTH PLAIN " + _plain(b"\0alice\0secret") + b"\r\n", ["235 2.7.0"]),
        (b"AUTH PLAIN " + _plain(b"alice\0alice\0secret") + b"\r\n", ["235 2.7.0"]),
        (b"AUTH PLAIN " + _plain(b"admin\0alice\0secret") + b"\r\n", ["535 5.7.8"]),
        (b"AUTH PLAIN " + _plain(b"\0alice\0secret\0x") + b"\r\n", ["535 5.7.8"]),
        (b"AUTH PLAIN =\r\n", ["535 5.7.8"]),
        (b"AUTH PLAIN not*base64\r\n", ["501 5.5.2"]),
        (b"AUTH PLAIN\r\n*\r\n", ["334", "501 5.7.0"]),
        (b"AUTH LOGIN\r\n*\r\n", ["334", "501 5.7.0"]),
        (b"AUTH LOGIN\r\n" + _plain(b"alice") + b"\r\n*\r\n", ["334", "334", "501 5.7.0"]),
        (b"AUTH LOGIN\r\n" + b"A" * 20_000 + b"\r\n", ["334", "500 5.5.6"]),
        (b"AUTH PLAIN " + b"A" * 600 + b"\r\n", ["500 5.5.6"]),
        (b"AUTH CRAM-MD5\r\n", ["504 5.5.4"]),
    ],
)
def test_auth_edge_cases_leave_the_session_sound(exchange: bytes, expected: list[str]) -> None:
    session = Session(check_credentials=_check, auth_over_plaintext=True)
    session(b"EHLO c\r\n")
    assert session.codes(exchange) == expected
    assert session.state == "identified"
    assert session.codes(b"NOOP\r\n") == ["250 2.0.0"]  # nothing of the exchange was a command


@pytest.mark.parametrize(
    "exchange",
    [
        b"AUTH PLAIN " + _plain(b"\0alice\r\nX-Authenticated: ceo\0pw") + b"\r\n",
        b"AUTH PLAIN " + _plain(b"\0alice\x7f\0pw") + b"\r\n",
        b"AUTH LOGIN " + _plain(b"alice\n") + b"\r\n" + _plain(b"pw") + b"\r\n",
    ],
)
def test_an_identity_with_control_characters_is_refused_unchecked(exchange: bytes) -> None:
    # the identity becomes Envelope.user, which handlers write into headers and logs
    asked: list[bytes] = []

    def anyone(session: SMTPConnection, mechanism: str, identity: bytes, pw: bytes) -> bool:
        asked.append(identity)
        return True

    session = Session(check_credentials=anyone, auth_over_plaintext=True)
    session(b"EHLO c\r\n")
    assert session.codes(exchange)[-1] == "535 5.7.8"
    assert asked == [] and session.protocol.user is None


def test_starttls_forgets_auth_and_a_second_starttls_is_refused() -> None:
    session = Session(check_credentials=_check, auth_over_plaintext=True, tls_context=object())
    session(b"EHLO c\r\nAUTH PLAIN " + _plain(b"\0alice\0secret") + b"\r\n")
    assert session.protocol.user == b"alice"
    assert session.codes(b"STARTTLS\r\nAUTH PLAIN =\r\n") == ["220 2.0.0"]
    assert session.protocol.user is None and session.state == "greeted"
    assert session.codes(b"EHLO c\r\nSTARTTLS\r\n") == ["250", "503 5.5.1"]


def test_password_guessing_is_cut_off_after_twenty_errors() -> None:
    session = Session(check_credentials=_check, auth_over_plaintext=True)
    session(b"EHLO c\r\n")
    guess = b"AUTH PLAIN " + _plain(b"\0alice\0guess") + b"\r\n"
    right = b"AUTH PLAIN " + _plain(b"\0alice\0secret") + b"\r\n"
    assert session.codes(guess * 19) == ["535 5.7.8"] * 19
    assert session.codes(guess + right) == ["535 5.7.8", "421 4.7.0"]
    assert session.transport.disconnecting and session.protocol.user is None


@pytest.mark.parametrize("junk", [b"FOO\r\n", b"RCPT TO:<a@b>\r\n", b"X" * 600 + b"\r\n"])
def test_junk_commands_are_cut_off_after_twenty_errors(junk: bytes) -> None:
    for chunks in ([b"EHLO c\r\n" + junk * 25], [b"EHLO c\r\n", *[junk] * 25]):
        session = Session()
        codes = _feed(session, chunks)
        assert len(codes) == 22 and codes[-1] == "421 4.7.0"  # EHLO, 20 errors, 421
        assert session.transport.disconnecting


def test_the_handlers_refusals_count_as_errors_and_the_limits_do_not() -> None:
    """As Postfix's error count (2026-12-03; before, only the client's mistakes counted):
    refused recipients count, so probing for addresses (a directory harvest) ends at
    ``max_errors`` with ``421 4.7.0``; ``452`` past the recipient limit does not count."""
    session = Session(max_recipients=1)
    session(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
    codes = session.codes(b"RCPT TO:<c@d>\r\n" * 30)
    assert codes == ["250 2.1.5"] + ["452 4.5.3"] * 29
    assert not session.transport.disconnecting
    session = Session()
    session(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
    codes = session.codes(b"RCPT TO:<bad@x>\r\n" * 30)
    assert codes == ["550 5.1.1"] * 20 + ["421 4.7.0"]
    assert session.transport.disconnecting


def test_an_accepted_message_starts_the_error_count_again() -> None:
    """A long session of messages, each with a few refused recipients (a list's relay),
    is not cut off: each message accepted forgives the errors before it (as Postfix)."""
    session = Session(max_errors=5)
    message = b"MAIL FROM:<a@b>\r\n" + b"RCPT TO:<bad@x>\r\n" * 4 + b"RCPT TO:<c@d>\r\n"
    message += b"DATA\r\nhi\r\n.\r\n"
    codes = session.codes(b"EHLO c\r\n" + message * 10)
    assert codes.count("250 2.0.0") == 10 and codes.count("550 5.1.1") == 40
    assert not session.transport.disconnecting
    # refused messages forgive nothing
    assert session.codes(b"MAIL FROM:<bad@b>\r\n" * 4) == ["550 5.7.1"] * 4
    assert session.codes(b"MAIL FROM:<bad@b>\r\n") == ["550 5.7.1", "421 4.7.0"]


@pytest.mark.parametrize("junk", [b"NOOP", b"RSET", b"VRFY x", b"HELP"])
def test_junk_commands_past_their_limit_count_as_errors(junk: bytes) -> None:
    """Postfix's ``smtpd_junk_command_limit``: past ``max_junk_commands`` (100) NOOP,
    RSET, VRFY and HELP commands since the last message accepted, each counts as an error,
    so a session cannot be held for ever by one every few minutes; a message accepted
    starts the count again."""
    session = Session(max_junk_commands=10, max_errors=3)
    session(b"EHLO c\r\n")
    codes = session.codes((junk + b"\r\n") * 10)
    assert len(codes) == 10 and "421 4.7.0" not in codes
    assert session.codes(ENVELOPE[len(b"EHLO c.test\r\n") :] + b"DATA\r\nhi\r\n.\r\n")[-1] == (
        "250 2.0.0"
    )
    codes = session.codes((junk + b"\r\n") * 13)
    assert len(codes) == 14 and codes[-1] == "421 4.7.0"  # the 11th, 12th, 13th count
    assert session.transport.disconnecting


# -- the Maildir example: envelope headers, file names ----------------------------------------


def test_the_maildir_headers_hold_nothing_the_client_can_break(tmp_path: Path) -> None:
    from examples.smtpd import MaildirHandler

    session = Session()
    session.factory.handler = MaildirHandler(tmp_path / "md")
    got = session.codes(
        b"EHLO c\r\nMAIL FROM:<a\rb@x>\r\nMAIL FROM:<a>b@x>\r\n"
        b"MAIL FROM:<../../etc/passwd@x> SIZE=10 BODY=8BITMIME\r\n"
        b"RCPT TO:<v@y\nX-Evil: 1>\r\nRCPT TO:<v@y>\r\nRCPT TO:<@relay:w/../../z@y>\r\n"
        b"DATA\r\nSubject: s\r\n\r\nbody\r\n.\r\n"
    )
    assert got == [
        *("250", "500 5.5.2", "501 5.5.4", "250 2.1.0"),  # a bare CR, a ">" inside
        *("500 5.5.2", "250 2.1.5", "250 2.1.5"),  # a bare LF
        *("354", "250 2.0.0"),
    ]
    (written,) = (tmp_path / "md" / "new").iterdir()
    assert written.parent == tmp_path / "md" / "new" and "/" not in written.name
    trace = (
        rb"Received: from c \(\[[0-9.]+\]\)\r\n\tby \S+ with ESMTP id [0-9A-F]+;\r\n\t[^\r\n]+\r\n"
    )
    assert re.fullmatch(
        rb"Return-Path: <\.\./\.\./etc/passwd@x>\r\n"
        + trace
        + rb"Delivered-To: v@y\r\nDelivered-To: w/\.\./\.\./z@y\r\nSubject: s\r\n\r\nbody\r\n",
        written.read_bytes(),
    ), written.read_bytes()
    assert list((tmp_path / "md" / "tmp").iterdir()) == []
    assert written.stat().st_mode & 0o777 == 0o600  # mail is private, whatever the umask
    assert (tmp_path / "md" / "new").stat().st_mode & 0o777 == 0o700


# -- the session ends while a decision is pending -------------------------------------------


class Slow(Recorder):
    """Decides on MAIL and RCPT when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[Reply | None]] = []

    def mail(self, session: SMTPConnection, sender: bytes, parameters: Any) -> Any:
        future: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    rcpt = mail


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize("end", ["shutdown", "timeout"])
def test_a_decision_that_comes_after_the_421_is_dropped(
    end: str, caplog: pytest.LogCaptureFixture
) -> None:
    # before: the late decision's 250 followed the 421, and its transition, in "closed",
    # raised NoTransition: an ERROR logged and the connection aborted, the 421 dropped
    async def body() -> bytes:
        session = Session()
        handler = session.factory.handler = Slow()
        session(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        session.transport.clear()
        if end == "shutdown":
            session.factory.stopFactory()
        else:
            session.clock.advance(301)
        handler.pending[0].set_result(None)
        await _settle()
        assert session.state == "closed" and not session.transport.aborted
        return session.transport.value()

    with caplog.at_level(logging.INFO):
        written = asyncio.run(body())
    assert written.startswith(b"421 ") and written.count(b"\r\n") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- a refused MAIL or DATA moves back before anything more is read --------------------------
# (MAIL and DATA move at once, to ``transaction`` and ``data``; a refusal moves back: the
# commands pipelined behind are read in the state the refusal left, never in the one the
# refused command moved to -- above all, no line after a refused DATA is message text)

REFUSED = {
    "MAIL refused by the handler": (
        b"MAIL FROM:<bad@b>\r\nRCPT TO:<c@d>\r\nNOOP\r\n",
        ["550 5.7.1", "503 5.5.1", "250 2.0.0"],
        "identified",
    ),
    "MAIL syntax": (
        b"MAIL FROM:a@b\r\nDATA\r\nNOOP\r\n",
        ["501 5.5.4", "503 5.5.1", "250 2.0.0"],
        "identified",
    ),
    "DATA without recipients": (
        b"MAIL FROM:<a@b>\r\nDATA\r\nRCPT TO:<c@d>\r\n.\r\n",
        ["250 2.1.0", "554 5.5.1", "250 2.1.5", "500 5.5.2"],
        "transaction",
    ),
    "DATA with an argument": (
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA now\r\nQUIT x\r\nRSET\r\n",
        ["250 2.1.0", "250 2.1.5", "501 5.5.4", "221 2.0.0"],
        "closed",
    ),
}


@pytest.mark.parametrize("whole", [True, False], ids=["one read", "byte by byte"])
@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_mail_or_data_moves_back_before_the_next_command(
    case: tuple[bytes, list[str], str], whole: bool
) -> None:
    wire, expected, state = case
    session = Session()
    session(b"EHLO c\r\n")
    session.transport.clear()
    for piece in [wire] if whole else [wire[i : i + 1] for i in range(len(wire))]:
        session.protocol.dataReceived(piece)
    assert Session.codes_of(session.transport.value()) == expected
    assert session.state == state and session.handler.messages == []


def test_a_mail_refused_later_moves_back_before_the_next_command() -> None:
    async def body() -> tuple[list[str], str, list[str], str]:
        session = Session()
        handler = session.factory.handler = Slow()
        session(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nNOOP\r\n")
        waiting = session.state  # moved with MAIL; nothing more read until the decision
        handler.pending[0].set_result(reply(550, "5.7.1 Sender refused"))
        await _settle()
        first = Session.codes_of(session.transport.value())
        session.transport.clear()
        session(b"MAIL FROM:<a@b>\r\n")
        handler.pending[1].set_result(None)
        await _settle()
        return first, waiting, Session.codes_of(session.transport.value()), session.state

    first, waiting, second, state = asyncio.run(body())
    assert waiting == "transaction"
    assert first == ["250", "550 5.7.1", "503 5.5.1", "250 2.0.0"]  # RCPT read in identified
    assert second == ["250 2.1.0"] and state == "transaction"


class SlowSink(MessageSink):
    """A sink whose writes complete when the test says so."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []
        self.aborted = self.closed = False

    def write(self, data: bytes) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class SlowSinks(Recorder):
    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        self.slow = SlowSink()
        return self.slow


@pytest.mark.parametrize("end", ["lost", "shutdown", "timeout"])
@pytest.mark.parametrize("command", [b"DATA\r\nbody\r\n.\r\n", b"BDAT 4 LAST\r\nbody"])
def test_a_sink_whose_last_write_is_pending_is_aborted_if_the_session_ends(
    end: str, command: bytes
) -> None:
    # before: the sink left the session before its last write completed, so the end of the
    # session neither closed nor aborted it (a Maildir file left in tmp/ for ever)
    async def body() -> SlowSink:
        session = Session()
        handler = session.factory.handler = SlowSinks()
        session(ENVELOPE + command)
        sink = handler.slow
        assert len(sink.pending) == 1 and not sink.aborted
        if end == "lost":
            session.protocol.connectionLost()
        elif end == "shutdown":
            session.factory.stopFactory()
        else:
            session.clock.advance(301)
        if not sink.pending[0].cancelled():
            sink.pending[0].set_result(None)
        await _settle()
        assert session.state == "closed"
        return sink

    sink = asyncio.run(body())
    assert sink.aborted and not sink.closed


class Failing(Recorder):
    """A handler whose MAIL decision raises."""

    def mail(self, session: SMTPConnection, sender: bytes, parameters: Any) -> Any:
        raise RuntimeError("the sender database is down")


@pytest.mark.parametrize("where", ["a decision raises", "a sink's write fails later"])
def test_a_failing_handler_gets_the_client_a_421_and_a_clean_close(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler's failure is the server's, not the client's: ``421 4.3.0`` and a close
    (RFC 5321 3.8: try again later), the message under way aborted; not a bare reset."""

    async def body() -> tuple[Session, SlowSink | None]:
        session = Session()
        if where == "a decision raises":
            session.factory.handler = Failing()
            written = session(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
            assert session.codes_of(written) == ["250", "421 4.3.0"]
            return session, None
        handler = session.factory.handler = SlowSinks()
        session(ENVELOPE + b"DATA\r\nbody\r\n.\r\nNOOP\r\n")
        session.transport.clear()
        handler.slow.pending[0].set_exception(OSError("disk full"))
        await _settle()
        assert session.codes_of(session.transport.value()) == ["421 4.3.0"]
        return session, handler.slow

    with caplog.at_level(logging.ERROR, logger="statewire.smtp"):
        session, sink = asyncio.run(body())
    assert session.transport.disconnecting and not session.transport.aborted
    assert session.handler.messages == []
    assert sink is None or (sink.aborted and not sink.closed)
    assert [record.levelno for record in caplog.records] == [logging.ERROR]


def test_starttls_held_behind_a_pending_decision_still_drops_what_follows() -> None:
    # STARTTLS and the injected command wait in the framer while MAIL is decided; once
    # STARTTLS runs, what came behind it is dropped, never executed after the handshake
    async def body() -> tuple[bytes, str, Any]:
        session = Session(tls_context=object())
        handler = session.factory.handler = Slow()
        session(b"EHLO c\r\n")
        session(b"MAIL FROM:<a@b>\r\nRSET\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
        handler.pending[0].set_result(reply(550, "5.7.1 no"))
        await _settle()
        return session.transport.value(), session.state, session.transport.tls

    written, state, tls = asyncio.run(body())
    assert written == (b"550 5.7.1 no\r\n250 2.0.0 Ok\r\n220 2.0.0 Ready to start TLS\r\n")
    assert state == "greeted" and tls is not None and tls["written"] == len(written)


def test_a_handler_that_never_decides_meets_the_idle_timeout() -> None:
    async def body() -> bytes:
        session = Session()
        session.factory.handler = Slow()
        session(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nNOOP\r\n")
        session.transport.clear()
        session.clock.advance(301)
        await _settle()
        return session.transport.value()

    assert asyncio.run(body()) == b"421 4.4.2 mx.test Error: timeout exceeded\r\n"


def test_a_command_trickled_a_byte_at_a_time_meets_the_deadline() -> None:
    """Slowloris: each byte would reset an idle timer; a command has 300 s from the last
    reply to arrive whole, however its bytes come."""
    session = Session()
    session(b"EHLO c\r\n")  # answered at t = 0
    session.transport.clear()
    for byte in b"NOOP":
        session.clock.advance(74)
        session(bytes([byte]))  # t = 74, 148, 222, 296
    session.clock.advance(3.9)
    assert session.transport.value() == b""
    session.clock.advance(0.2)  # t = 300.1
    assert session.transport.value() == b"421 4.4.2 mx.test Error: timeout exceeded\r\n"
    assert session.transport.disconnecting


def test_a_command_every_few_minutes_keeps_the_session() -> None:
    session = Session()
    for _ in range(5):
        session.clock.advance(299)
        assert session.codes(b"NOOP\r\n") == ["250 2.0.0"]
    assert not session.transport.disconnecting


def test_a_slow_decision_on_a_command_in_time_is_not_the_client_s_delay() -> None:
    """The deadline counts the client's time: a RCPT that came at t = 299 (a loop, no reply
    until its decision) is answered when the decision comes at t = 301; a decision that
    never comes meets the deadline 300 s after the command."""

    async def body() -> tuple[bytes, bytes]:
        session = Session()
        slow = session.factory.handler = Slow()
        session(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
        slow.pending[0].set_result(None)
        await _settle()
        session.transport.clear()
        session.clock.advance(299)
        session(b"RCPT TO:<c@d>\r\n")
        session.clock.advance(2)
        slow.pending[1].set_result(None)
        await _settle()
        answered = session.transport.value()
        session.transport.clear()
        session(b"RCPT TO:<e@f>\r\n")  # at t = 301, never decided
        session.clock.advance(299.9)
        await _settle()
        assert session.transport.value() == b""
        session.clock.advance(0.2)
        await _settle()
        return answered, session.transport.value()

    answered, late = asyncio.run(body())
    assert answered == b"250 2.1.5 Ok\r\n"
    assert late == b"421 4.4.2 mx.test Error: timeout exceeded\r\n"


def test_a_handler_that_raises_closes_only_its_session() -> None:
    class Raising(Recorder):
        def rcpt(self, session: SMTPConnection, recipient: bytes, parameters: Any) -> Any:
            raise RuntimeError("the handler's bug")

    broken, other = Session(), Session()
    broken.factory.handler = Raising()
    broken(ENVELOPE)
    assert broken.transport.disconnecting
    assert other.codes(ENVELOPE + b"DATA\r\nx\r\n.\r\n")[-1] == "250 2.0.0"


@pytest.mark.parametrize("state", ["data", "chunk"])
def test_rset_and_quit_inside_a_body_are_body(state: str) -> None:
    session = Session()
    inside = b"RSET\r\nQUIT\r\n"
    session(DATA if state == "data" else ENVELOPE + b"BDAT 100 LAST\r\n")
    session(inside)
    assert session.state == state and not session.transport.disconnecting


# -- over sockets -----------------------------------------------------------------------------


def test_plaintext_in_a_later_read_after_starttls_is_never_executed(tmp_path: Path) -> None:
    # the 220 read first, then plaintext commands instead of a ClientHello: TLS fails,
    # nothing runs (the CVE-2011-0411 class, in a read of its own)
    cert, key = _certificate(tmp_path)
    app = Application()

    def client(port: int) -> bytes:
        raw = Raw(port)
        raw.codes(b"EHLO c\r\n", 1)
        assert raw.codes(b"STARTTLS\r\n", 1) == [220]
        raw.send(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nforged\r\n.\r\n")
        got = b""
        for _ in range(100):
            chunk = raw.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        raw.close()
        return got

    async def body(reactor: Any) -> bytes:
        port = await listen(reactor, _tls_factory(app, cert, key))
        return await asyncio.to_thread(client, port)

    got = scenario(body, timeout=60)
    assert b"250" not in got and b"354" not in got  # at most a TLS alert
    assert app.messages == []


def test_a_client_that_never_reads_stops_being_read() -> None:
    # pipelined commands whose replies it never takes: the server stops reading (the
    # replies wait, bounded by the transport's high-water mark), and the connection lives
    app = Application()

    def client(port: int) -> list[int]:
        raw = Raw(port)
        raw.sock.settimeout(2)
        sent = 0
        batch = b"NOOP\r\n" * 10_000
        try:
            for _ in range(400):  # at most 24 MB offered
                raw.sock.sendall(batch)
                sent += len(batch)
        except TimeoutError:
            pass
        assert sent < 400 * len(batch)  # the server stopped reading: sending blocked
        raw.sock.settimeout(10)
        codes = [answer.code for answer in raw.read(5)]
        raw.close()
        return codes

    async def body(reactor: Any) -> list[int]:
        from statewire.protocols.smtp import SMTPFactory

        # (NOOPs without end: no junk limit here, or the 421 would end the test early)
        port = await listen(reactor, SMTPFactory(app, max_junk_commands=10**9))
        return await asyncio.to_thread(client, port)

    assert scenario(body, timeout=90) == [250] * 5


class BrokenSink(MessageSink):
    """A sink whose write fails and whose abort raises too."""

    def __init__(self) -> None:
        self.aborts = 0

    def write(self, data: bytes) -> Any:
        raise OSError("disk full")

    def abort(self) -> None:
        self.aborts += 1
        raise OSError("and cannot clean up")


class BrokenSinks(Recorder):
    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        self.broken = BrokenSink()
        return self.broken


def test_a_sink_whose_abort_raises_is_aborted_once() -> None:
    session = Session()
    handler = session.factory.handler = BrokenSinks()
    session.protocol.piece_size = 1  # (the first line is written at once)
    written = session(ENVELOPE + b"DATA\r\nbody\r\n")
    assert session.codes_of(written)[-1] == "421 4.3.0"
    session.protocol.connectionLost()
    assert handler.broken.aborts == 1 and session.state == "closed"


def test_recipients_that_are_no_mailbox_are_refused_and_never_reach_the_handler() -> None:
    """Relay-bypass shapes (``user@domain@domain``, a list, a route with a bad separator)
    are answered ``501`` before the handler's check: one that reads the domain after the
    last ``@`` and a relay that reads it otherwise would disagree on where mail goes."""
    session = Session()
    bad = [
        b"victim@evil.example@d.test",
        b"x@evil.example,y@d.test",
        b"@relay.example:@evil.example:v@d.test",
        b"a@",
        b"a",
    ]
    rcpts = b"".join(b"RCPT TO:<%s>\r\n" % address for address in bad)
    wire = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n" + rcpts + b"RCPT TO:<ok@d.test>\r\n"
    codes = session.codes(wire + b"DATA\r\nhi\r\n.\r\n")
    assert codes == ["250", "250 2.1.0"] + ["501 5.5.4"] * len(bad) + ["250 2.1.5"] + [
        "354",
        "250 2.0.0",
    ]
    [(envelope, _)] = session.handler.messages
    assert envelope.recipients == [b"ok@d.test"]
    # the postmaster of RFC 5321 4.1.1.3, with no domain, is a recipient
    assert session.codes(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<postmaster>\r\n") == [
        "250 2.1.0",
        "250 2.1.5",
    ]
