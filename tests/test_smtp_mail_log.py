"""The SMTP server's mail log (statewire/protocols/_smtp_log.py): one line a message whose
content began, with its answer, or why it was not delivered; the client's bytes escaped.
Sessions in memory on a test clock, then ``statewire serve examples/smtpd.py:factory
--access-log FILE`` with smtplib as the client."""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest
from process_helpers import running

from grammars.smtp import Reply, reply, stuff
from statewire.protocols._smtp_log import line
from statewire.protocols.smtp import (
    Envelope,
    MailLog,
    MessageEntry,
    MessageSink,
    SMTPConnection,
    SMTPFactory,
    SMTPHandler,
    SMTPServer,
)
from statewire.testing.memory import Clock, StringTransport

LINE = re.compile(
    r"(?P<host>\S+) helo=(?P<helo>\S+) from=<(?P<sender>[^>\s]*)> to=(?P<to>\S+) "
    r"size=(?P<size>\d+) tls=(?P<tls>yes|no) user=(?P<user>\S+) (?P<status>\d{3}|-) "
    r'"(?P<text>[^"]*)"'
)
ENVELOPE = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@f.test>\r\n"


class Kept(MailLog):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[MessageEntry] = []

    def write(self, entry: MessageEntry) -> None:
        self.entries.append(entry)


class Sink(MessageSink):
    def __init__(self, answer: Reply | None) -> None:
        self.answer = answer

    def close(self) -> Reply | None:
        return self.answer


class Handler(SMTPHandler):
    """Accepts everything; a message to ``refuse@...`` is refused at its end."""

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        if any(r.startswith(b"refuse@") for r in envelope.recipients):
            return Sink(reply(554, "5.7.1 Refused by policy"))
        return Sink(reply(250, "2.0.0 Ok: queued as T1"))


def session(**settings: Any) -> tuple[SMTPServer, StringTransport, Clock, Kept]:
    kept = Kept()
    factory = SMTPFactory(Handler(), hostname="mx.test", access_log=kept, **settings)
    protocol: SMTPServer = factory.buildProtocol(None)
    clock = protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock, kept


def test_a_message_by_data_is_logged_with_its_envelope_size_and_answer() -> None:
    protocol, _, _, kept = session()
    body = b"Subject: x\r\n\r\n.leading dot\r\nline\r\n"
    protocol.dataReceived(ENVELOPE + b"DATA\r\n" + stuff(body) + b".\r\n")
    (entry,) = kept.entries
    assert (entry.helo, entry.sender, tuple(entry.recipients)) == (
        b"c.test",
        b"a@b.test",
        (b"c@d.test", b"e@f.test"),
    )
    assert entry.size == len(body)
    assert (entry.status, entry.text, entry.delivered) == (250, b"2.0.0 Ok: queued as T1", True)
    assert (entry.tls, entry.user) == (False, None)
    assert entry.duration >= 0 and abs(entry.began - time.time()) < 30
    text = line(entry)
    assert LINE.fullmatch(text), text
    assert "to=<c@d.test>,<e@f.test> size=" in text
    assert text.endswith(' 250 "2.0.0 Ok: queued as T1"')


def test_bdat_chunks_refusals_and_sizes() -> None:
    protocol, _, _, kept = session(max_size=100)
    protocol.dataReceived(ENVELOPE + b"BDAT 5\r\nhelloBDAT 3 LAST\r\nabc")
    protocol.dataReceived(
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<refuse@x.test>\r\nDATA\r\nhi\r\n.\r\n"
    )
    protocol.dataReceived(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    protocol.dataReceived(b"x" * 98 + b"\r\n" + b"y" * 10 + b"\r\n.\r\n")
    assert [(e.status, e.size) for e in kept.entries] == [(250, 8), (554, 4), (552, 112)]
    assert not kept.entries[1].delivered and not kept.entries[2].delivered


@pytest.mark.parametrize(
    ("ending", "why"),
    [
        ("lost", b"not delivered: the connection was lost"),
        ("timeout", b"not delivered: the client's timeout"),
        ("rset", b"not delivered: RSET"),
        ("quit", b"not delivered: QUIT"),
    ],
)
def test_a_message_the_session_ended_is_logged_not_delivered(ending: str, why: bytes) -> None:
    protocol, transport, clock, kept = session()
    if ending in ("rset", "quit"):
        protocol.dataReceived(ENVELOPE + b"BDAT 4\r\nabcd")
        protocol.dataReceived(b"RSET\r\n" if ending == "rset" else b"QUIT\r\n")
    else:
        protocol.dataReceived(ENVELOPE + b"DATA\r\nsome text\r\n")
        if ending == "lost":
            transport.loseConnection()
            protocol.connectionLost()
        else:
            clock.advance(10_000)
    (entry,) = kept.entries
    assert (entry.status, entry.text, entry.delivered) == (0, why, False)
    assert entry.size in (4, 11)


class Failing(SMTPHandler):
    """A sink whose ``close()`` raises, or gives an answer that never comes."""

    def __init__(self, how: str) -> None:
        self.how = how

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        how = self.how

        class Deciding(MessageSink):
            def write(self, data: bytes) -> Any:
                if how == "writing":  # (the last piece is still being written)
                    return asyncio.get_event_loop().create_future()
                return None

            def close(self) -> Any:
                if how == "raises":
                    raise RuntimeError("the disk is gone")
                return asyncio.get_event_loop().create_future()  # (never decided)

        return Deciding()


@pytest.mark.parametrize(
    ("how", "ending", "why"),
    [
        ("raises", None, b"not answered: a failure of the server's or the handler's"),
        ("pending", "lost", b"not answered: the connection was lost"),
        # the deadline passed while the server waited for the handler: not the client's
        ("pending", "timeout", b"not answered: the handler's timeout"),
        ("writing", "timeout", b"not delivered: the handler's timeout"),
        ("pending", "stop", b"not answered: the server's shutdown"),
        ("writing", "lost", b"not delivered: the connection was lost"),
        ("writing", "stop", b"not delivered: the server's shutdown"),
    ],
)
def test_a_message_whose_answer_never_came_is_logged_not_answered(
    how: str, ending: str | None, why: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> list[MessageEntry]:
        protocol, transport, clock, kept = session()
        protocol.factory.handler = Failing(how)
        with caplog.at_level(logging.CRITICAL, "statewire.smtp"):
            protocol.dataReceived(ENVELOPE + b"DATA\r\nsome text\r\n.\r\n")
        if ending == "lost":
            transport.loseConnection()
            protocol.connectionLost()
        elif ending == "timeout":
            clock.advance(10_000)
        elif ending == "stop":
            protocol.stop_serving()
        await asyncio.sleep(0)
        return kept.entries

    (entry,) = asyncio.run(main())
    assert (entry.status, entry.text, entry.delivered) == (0, why, False)
    assert entry.size == 11


@pytest.mark.parametrize(
    "content",
    [
        b"DATA\r\n" + b"x" * 10 + b"\r\n" + b"y" * 10 + b"\r\n",  # a piece mid-body
        b"DATA\r\n" + b"x" * 8 + b"\r\n",  # the last piece before the end
        b"BDAT 20\r\n" + b"z" * 20,  # a chunk that is not the last
    ],
)
def test_a_write_pending_at_the_deadline_is_the_handlers_timeout(content: bytes) -> None:
    """The deadline passes while a sink's ``write`` of the content under way is pending
    (pieces of 8 octets): the handler's timeout, whichever piece it was."""

    async def main() -> list[MessageEntry]:
        protocol, _, clock, kept = session()
        protocol.factory.handler = Failing("writing")
        protocol.piece_size = 8
        protocol.dataReceived(ENVELOPE + content)
        assert protocol.waiting
        clock.advance(10_000)
        await asyncio.sleep(0)
        return kept.entries

    (entry,) = asyncio.run(main())
    assert (entry.status, entry.text) == (0, b"not delivered: the handler's timeout")


def test_a_client_idle_mid_body_is_the_clients_timeout() -> None:
    """The client stops in the middle of its content, every write done: its timeout."""

    async def main() -> list[MessageEntry]:
        protocol, _, clock, kept = session()
        protocol.dataReceived(ENVELOPE + b"DATA\r\nsome text\r\n")
        assert not protocol.waiting
        clock.advance(10_000)
        await asyncio.sleep(0)
        return kept.entries

    (entry,) = asyncio.run(main())
    assert (entry.status, entry.text) == (0, b"not delivered: the client's timeout")


def test_no_entry_without_content_and_none_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    protocol, _, _, kept = session()
    protocol.dataReceived(ENVELOPE + b"RSET\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n")
    assert kept.entries == []
    factory = SMTPFactory(Handler())
    assert factory.access_log is None
    with pytest.raises(TypeError, match="a MailLog"):
        SMTPFactory(Handler(), access_log="yes")  # type: ignore[arg-type]
    plain: SMTPServer = factory.buildProtocol(None)
    plain.clock = Clock()
    plain.makeConnection(StringTransport())
    with caplog.at_level(logging.INFO, logger="statewire.mail"):
        plain.dataReceived(ENVELOPE + b"DATA\r\nx\r\n.\r\n")
    assert not [r for r in caplog.records if r.name == "statewire.mail"]


def test_client_bytes_are_escaped_in_the_line(caplog: pytest.LogCaptureFixture) -> None:
    kept = Kept()
    factory = SMTPFactory(Handler(), access_log=True)
    protocol: SMTPServer = factory.buildProtocol(None)
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    with caplog.at_level(logging.INFO, logger="statewire.mail"):
        protocol.dataReceived(
            b'EHLO h\\"x\r\nMAIL FROM:<"a\\" b"@b.test>\r\nRCPT TO:<c@d.test>\r\n'
            b'RCPT TO:<"x>,<y"@d.test>\r\nDATA\r\nx\r\n.\r\n'
        )
    (record,) = [r for r in caplog.records if r.name == "statewire.mail"]
    text = record.getMessage()
    assert LINE.fullmatch(text), text
    assert "helo=h\\x5C\\x22x from=<\\x22a\\x5C\\x22\\x20b\\x22@b.test>" in text
    # one recipient whose quoted local part holds ">,<" stays one (2026-12-03)
    assert " to=<c@d.test>,<\\x22x\\x3E\\x2C\\x3Cy\\x22@d.test> " in text
    assert isinstance(record.message_entry, MessageEntry)  # type: ignore[attr-defined]
    assert kept.entries == []


def test_a_log_that_raises_loses_no_message(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MailLog):
        def write(self, entry: MessageEntry) -> None:
            raise OSError("disk full")

    factory = SMTPFactory(Handler(), access_log=Broken())
    protocol: SMTPServer = factory.buildProtocol(None)
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    with caplog.at_level(logging.ERROR):
        protocol.dataReceived(ENVELOPE + b"DATA\r\nx\r\n.\r\n")
    assert transport.value().endswith(b"250 2.0.0 Ok: queued as T1\r\n")
    assert "the mail log could not write" in caplog.text


def test_serve_access_log_with_smtplib(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    with running(
        "-m",
        "statewire",
        "serve",
        "examples/smtpd.py:factory",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        f"--access-log={path}",
        env={"SMTPD_MAILDIR": str(tmp_path / "maildir")},
    ) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=20) as client:
            client.sendmail("a@example.org", ["b@example.net"], b"Subject: hi\r\n\r\nhello\r\n")
        deadline = time.monotonic() + 10
        while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop()
    (text,) = path.read_text().splitlines()
    match = LINE.fullmatch(text)
    assert match is not None, text
    assert (match["host"], match["sender"], match["to"], match["status"]) == (
        "127.0.0.1",
        "a@example.org",
        "<b@example.net>",
        "250",
    )
    assert match["text"].startswith("2.0.0 Ok: queued as ")
