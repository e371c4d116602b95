"""LMTP (RFC 2033): SMTP's session with ``LHLO`` and a reply for each recipient at a
message's end. In memory (every reply, BDAT, refusals, the application's mistakes,
chunking invariance), then ``examples/lmtpd.py`` judged by real clients: Python's
``smtplib.LMTP`` over a UNIX socket and ``swaks --protocol LMTP``."""

from __future__ import annotations

import logging
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grammars.smtp import replies, reply
from statewire.framing import decode
from statewire.protocols.smtp import (
    Decision,
    Envelope,
    LMTPFactory,
    LMTPServer,
    MessageSink,
    SMTPConnection,
    SMTPFactory,
    SMTPHandler,
)
from statewire.testing.memory import Clock, StringTransport
from statewire.testing.strategies import chunkings
from tests.process_helpers import EXAMPLES, spawned

# -- in memory -------------------------------------------------------------------------------


class Each(MessageSink):
    """Answers each recipient: ``452`` for those starting with ``full``."""

    def __init__(self, envelope: Envelope, answers: Any = None) -> None:
        self.envelope = envelope
        self.body = b""
        self.answers = answers

    def write(self, data: bytes) -> None:
        self.body += data

    def close(self) -> Sequence[Decision] | Decision:
        if self.answers is not None:
            return self.answers  # type: ignore[no-any-return]
        return [
            reply(452, b"4.2.2 <%s> over quota" % r) if r.startswith(b"full") else None
            for r in self.envelope.recipients
        ]


class Handler(SMTPHandler):
    def __init__(self, answers: Any = None) -> None:
        self.answers = answers
        self.sinks: list[Each] = []

    def rcpt(self, session: SMTPConnection, recipient: bytes, parameters: Any) -> Decision:
        return reply(550, "5.1.1 No such user") if recipient.startswith(b"bad") else None

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        sink = Each(envelope, self.answers)
        self.sinks.append(sink)
        return sink


def _session(factory_class: type[SMTPFactory] = LMTPFactory, **settings: Any) -> Any:
    factory = factory_class(
        Handler(settings.pop("answers", None)), hostname="lda.test", **settings
    )
    protocol = factory.buildProtocol(None)
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return factory, protocol, transport


def _replies(written: bytes) -> list[str]:
    return [f"{r.code} {r.lines[-1].decode()}" for r in decode(replies(), [written])]


def _talk(data: bytes, **settings: Any) -> tuple[list[str], Any]:
    factory, protocol, transport = _session(**settings)
    protocol.dataReceived(data)
    return _replies(transport.value()), factory


ENVELOPE = (
    b"LHLO mta.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\n"
    b"RCPT TO:<bad@x.test>\r\nRCPT TO:<full@x.test>\r\nRCPT TO:<b@x.test>\r\n"
)


def test_each_recipient_accepted_gets_its_reply_in_order() -> None:
    answered, factory = _talk(ENVELOPE + b"DATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n")
    assert answered[0] == "220 lda.test LMTP statewire"
    assert answered[-9:] == [
        "250 2.1.5 Ok",
        "550 5.1.1 No such user",
        "250 2.1.5 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok",
        "452 4.2.2 <full@x.test> over quota",
        "250 2.0.0 Ok",
        "221 2.0.0 Bye",
    ]
    (sink,) = factory.handler.sinks
    assert sink.body == b"Hi\r\n.dot\r\n"
    assert sink.envelope.recipients == [b"a@x.test", b"full@x.test", b"b@x.test"]


def test_bdat_last_answers_each_recipient_too() -> None:
    answered, factory = _talk(ENVELOPE + b"BDAT 4\r\nHi\r\nBDAT 3 LAST\r\nyo!")
    assert answered[-5:] == [
        "250 2.1.5 Ok",
        answered[-4],  # (the first chunk's)
        "250 2.0.0 Ok",
        "452 4.2.2 <full@x.test> over quota",
        "250 2.0.0 Ok",
    ]
    assert answered[-4].startswith("250 2.0.0") and "4 octets" in answered[-4]
    assert factory.handler.sinks[0].body == b"Hi\r\nyo!"


def test_one_reply_answers_every_recipient() -> None:
    refused = reply(554, "5.6.0 Not today")
    answered, _ = _talk(ENVELOPE + b"DATA\r\nHi\r\n.\r\n", answers=refused)
    assert answered[-3:] == ["554 5.6.0 Not today"] * 3
    answered, _ = _talk(ENVELOPE + b"DATA\r\nHi\r\n.\r\n", answers=[])
    assert answered[-1].startswith("421 4.3.0")  # (no reply for anyone: the app's error)


def test_a_refused_message_refuses_it_for_every_recipient() -> None:
    too_big = b"MAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
    answered, _ = _talk(
        b"LHLO m\r\n" + too_big + b"DATA\r\n" + b"x" * 200 + b"\r\n.\r\n", max_size=100
    )
    assert answered[-2:] == [answered[-1]] * 2 and answered[-1].startswith("552 5.3.4")
    bare = b"LHLO m\r\n" + too_big + b"DATA\r\nbare\nLF\r\n.\r\n"
    answered, _ = _talk(bare)
    assert answered[-2:] == [answered[-1]] * 2 and answered[-1].startswith("500 5.5.2")


def test_a_last_bdat_chunk_past_the_size_is_refused_to_every_recipient() -> None:
    answered, _ = _talk(ENVELOPE + b"BDAT 200 LAST\r\n" + b"x" * 200 + b"NOOP\r\n", max_size=100)
    assert answered[-4:] == [answered[-2]] * 3 + ["250 2.0.0 Ok"]
    assert answered[-2].startswith("552 5.3.4")
    # a chunk before the last: its one reply, and the transaction is over
    answered, _ = _talk(ENVELOPE + b"BDAT 200\r\n" + b"x" * 200 + b"NOOP\r\n", max_size=100)
    assert answered[-2].startswith("552 5.3.4") and answered[-3] == "250 2.1.5 Ok"


def test_data_without_recipients_is_503_in_lmtp() -> None:
    nobody = b"LHLO m\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<bad@x.test>\r\n"
    answered, _ = _talk(nobody + b"DATA\r\n")
    assert answered[-1] == "503 5.5.1 Error: no valid recipients"
    answered, _ = _talk(nobody + b"BDAT 2 LAST\r\nhi")
    assert answered[-1] == "503 5.5.1 Error: no valid recipients"


def test_a_message_refused_to_many_recipients_counts_one_error() -> None:
    many = b"".join(b"RCPT TO:<r%d@x.test>\r\n" % n for n in range(25))
    session = b"LHLO m\r\nMAIL FROM:<s@x.test>\r\n" + many + b"DATA\r\nbare\nLF\r\n.\r\n"
    answered, _ = _talk(session + b"NOOP\r\n", max_errors=3)
    assert answered[-26:-1] == [answered[-2]] * 25 and answered[-2].startswith("500 5.5.2")
    assert answered[-1] == "250 2.0.0 Ok"  # (not cut off: one error of three)
    refused = reply(451, "4.2.0 later")
    answered, _ = _talk(session.replace(b"bare\nLF", b"fine") + b"NOOP\r\n", answers=refused)
    assert answered[-26:] == ["451 4.2.0 later"] * 25 + ["250 2.0.0 Ok"]


def test_the_mail_log_takes_the_answer_as_the_client_gets_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def each(n: int) -> Any:
        return (None for _ in range(n))  # (a generator: read once)

    class Once(Handler):
        def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
            return Each(envelope, each(len(envelope.recipients)))

    factory, protocol, transport = _session(access_log=True)
    factory.handler = Once()
    with caplog.at_level(logging.INFO, "statewire.mail"):
        protocol.dataReceived(ENVELOPE + b"DATA\r\nHi\r\n.\r\n")
    assert _replies(transport.value())[-3:] == ["250 2.0.0 Ok"] * 3
    (entry,) = [r.getMessage() for r in caplog.records if r.name == "statewire.mail"]
    assert " 250 " in entry


def test_a_message_delivered_to_one_recipient_is_logged_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = [reply(452, "4.2.2 over quota"), None, None]
    with caplog.at_level(logging.INFO, "statewire.mail"):
        answered, _ = _talk(ENVELOPE + b"DATA\r\nHi\r\n.\r\n", answers=answers, access_log=True)
    assert answered[-3:] == ["452 4.2.2 over quota", "250 2.0.0 Ok", "250 2.0.0 Ok"]
    (entry,) = [r.getMessage() for r in caplog.records if r.name == "statewire.mail"]
    assert entry.endswith(' 250 "2.0.0 Ok"')  # (as the session counts it: accepted)


def test_a_wrong_answer_is_logged_as_unanswered_not_as_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    smtp = b"EHLO m\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\nHi\r\n.\r\n"
    with caplog.at_level(logging.INFO):
        answered, _ = _talk(smtp, factory_class=SMTPFactory, answers=[None], access_log=True)
    assert answered[-1].startswith("421 4.3.0")
    (entry,) = [r.getMessage() for r in caplog.records if r.name == "statewire.mail"]
    assert entry.endswith('- "not answered: the application\'s answer was wrong"')
    assert "250" not in entry


@pytest.mark.parametrize(
    "answers",
    [[None], [None, None, None, None], [None, "250 ok", None], (reply(250, "x"), None, 7)],
)
def test_a_sink_answering_the_wrong_recipients_is_the_applications_error(
    answers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "statewire.smtp"):
        answered, _ = _talk(ENVELOPE + b"DATA\r\nHi\r\n.\r\n", answers=answers)
    assert answered[-1].startswith("421 4.3.0")
    assert "a reply or None for each of the 3 recipients" in caplog.text


def test_smtp_keeps_one_reply_a_message() -> None:
    smtp = b"EHLO m\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
    answered, _ = _talk(smtp + b"DATA\r\nHi\r\n.\r\n", factory_class=SMTPFactory, answers=None)
    assert answered[-1].startswith("421 4.3.0")  # (a list from an SMTP sink: refused)
    answered, _ = _talk(
        smtp + b"DATA\r\nHi\r\n.\r\n", factory_class=SMTPFactory, answers=reply(250, "one")
    )
    assert answered[-2:] == ["354 End data with <CR><LF>.<CR><LF>", "250 one"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"EHLO mta.test", "500 5.5.1 Error: this is LMTP: LHLO, not EHLO or HELO"),
        (b"helo mta.test", "500 5.5.1 Error: this is LMTP: LHLO, not EHLO or HELO"),
        (b"EHLO\tmta.test", "500 5.5.1 Error: this is LMTP: LHLO, not EHLO or HELO"),
        (b"LHLO", "501 5.5.4 Syntax: LHLO hostname"),
        (b"LHLO b\xfc.test", "501 5.5.4 Syntax: LHLO hostname"),
        (b"BDAT 2", "503 5.5.1 Error: send LHLO first; closing"),
        (b"MAIL FROM:<a@b>", "503 5.5.1 Error: send LHLO first"),
        (b"HELP", "214 2.0.0 STARTTLS AUTH; see RFC 2033"),
    ],
)
def test_lhlo_is_the_greeting_and_ehlo_helo_are_refused(line: bytes, expected: str) -> None:
    answered, _ = _talk(line + b"\r\n")
    assert answered[1:] == [expected]


def test_lhlo_offers_what_rfc_2033_requires() -> None:
    _, protocol, transport = _session()
    protocol.dataReceived(b"LHLO mta.test\r\n")
    (_, hello) = decode(replies(), [transport.value()])
    assert hello.code == 250
    assert {b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME"} <= set(hello.lines[1:])
    assert protocol.machine_state == "identified" and isinstance(protocol, LMTPServer)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_replies_do_not_depend_on_how_the_session_is_cut(data: st.DataObject) -> None:
    session = ENVELOPE + b"DATA\r\nline\r\n.\r\nRSET\r\n" + ENVELOPE + b"BDAT 2 LAST\r\nok"
    whole, _ = _talk(session)
    _, protocol, transport = _session()
    for piece in data.draw(chunkings(session)):
        protocol.dataReceived(piece)
    assert _replies(transport.value()) == whole
    assert whole.count("452 4.2.2 <full@x.test> over quota") == 2


# -- examples/lmtpd.py and real clients ------------------------------------------------------


@pytest.fixture
def lmtpd(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``examples/lmtpd.py`` served on a UNIX socket; mailboxes alice, bob and carol
    (whose Maildir cannot take mail: its ``new`` is a file)."""
    boxes = tmp_path / "boxes"
    for user in ("alice", "bob", "carol"):
        (boxes / user).mkdir(parents=True)
    (boxes / "carol" / "new").write_text("not a folder")
    sock = tmp_path / "lmtp.sock"
    command = [
        sys.executable,
        "-m",
        "statewire",
        "serve",
        f"{EXAMPLES / 'lmtpd.py'}:factory",
        "--listen",
        f"unix:{sock}",
    ]
    env = {"LMTPD_MAILBOXES": str(boxes), "LMTPD_HOSTNAME": "lda.test", "PATH": "/usr/bin:/bin"}
    with spawned(command, env=env, stderr=subprocess.PIPE) as process:
        for _ in range(200):
            if sock.exists() or process.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert sock.exists(), process.stderr.read() if process.stderr else ""
        yield boxes, sock
        process.terminate()
        process.communicate(timeout=10)


def _delivered(boxes: Path, user: str) -> list[bytes]:
    return sorted(path.read_bytes() for path in (boxes / user / "new").glob("*"))


def test_smtplib_lmtp_delivers_and_reads_each_recipients_reply(
    lmtpd: tuple[Path, Path],
) -> None:
    boxes, sock = lmtpd
    client = smtplib.LMTP(str(sock), timeout=10)  # (a path: a UNIX socket)
    try:
        assert client.ehlo_resp is None
        code, _ = client.ehlo()  # (smtplib.LMTP says LHLO)
        assert code == 250 and client.has_extn("pipelining")
        client.sendmail("s@x.test", ["alice@x.test"], b"Subject: one\r\n\r\nfor alice\r\n")
        assert client.mail("s@x.test")[0] == 250
        codes = [client.rcpt(f"{user}@x.test")[0] for user in ("bob", "nobody", "carol", "alice")]
        assert codes == [250, 550, 250, 250]
        first = client.data(b"Subject: two\r\n\r\nfor three\r\n")
        rest = [client.getreply(), client.getreply()]  # (RFC 2033: one a recipient)
        assert [first[0], *(code for code, _ in rest)] == [250, 451, 250]
        assert [text for _, text in (first, *rest)] == [
            b"2.0.0 <bob@x.test> delivered",
            b"4.2.0 <carol@x.test> mailbox unavailable",
            b"2.0.0 <alice@x.test> delivered",
        ]
        assert client.noop()[0] == 250  # (in step: no reply left over)
    finally:
        client.quit()
    alice = _delivered(boxes, "alice")
    assert len(alice) == 2 and b"Delivered-To: alice@x.test\r\n" in alice[0]
    assert alice[0].startswith(b"Return-Path: <s@x.test>\r\n")
    assert b"for three\r\n" in b"".join(alice)
    assert len(_delivered(boxes, "bob")) == 1
    assert not list((boxes / "carol" / "tmp").glob("*"))  # (nothing left behind)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_lmtp_reads_a_reply_for_each_recipient(lmtpd: tuple[Path, Path]) -> None:
    boxes, sock = lmtpd
    command = ["swaks", "--socket", str(sock), "--protocol", "LMTP", "--from", "s@x.test"]
    done = subprocess.run(
        [*command, "--to", "alice@x.test,carol@x.test,bob@x.test", "--pipeline"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout
    assert "-> LHLO" in out
    after = out[out.index("\n -> .\n") :]
    assert (
        after.index("250 2.0.0 <alice@x.test> delivered")
        < after.index("451 4.2.0 <carol@x.test> mailbox unavailable")
        < after.index("250 2.0.0 <bob@x.test> delivered")
        < after.index("221 2.0.0 Bye")
    )
    assert len(_delivered(boxes, "alice")) == len(_delivered(boxes, "bob")) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_mailbox_fails_its_recipient_alone(tmp_path: Path) -> None:
    """A write that meets a full disk (``/dev/full``) drops that copy, and its abort (whose
    close flushes again, and fails again) raises nothing: the others are delivered."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lmtpd_example", EXAMPLES / "lmtpd.py")
    assert spec is not None and spec.loader is not None
    lmtpd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lmtpd)
    for user in ("alice", "tiny"):
        (tmp_path / user).mkdir()
    envelope = Envelope(b"s@x.test", {}, [b"alice@x.test", b"tiny@x.test"])
    delivery = lmtpd.Delivery(tmp_path, envelope)
    full = delivery.copies[1]
    full.file.close()
    full.file = open("/dev/full", "wb")  # noqa: SIM115 - closed by the copy
    delivery.write(b"x" * 100_000)  # (past the buffer: the write itself fails)
    answers = delivery.close()
    assert [a.code for a in answers] == [250, 451]
    assert len(list((tmp_path / "alice" / "new").iterdir())) == 1
    assert not list((tmp_path / "tiny" / "tmp").iterdir())
