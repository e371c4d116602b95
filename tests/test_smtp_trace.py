"""The ``Received:`` trace field a server accepting a message writes (RFC 5321 4.4), with
RFC 3848's protocol names: what it says, and that no client's name can change how it
reads (Hypothesis, with Python's own header parser as the judge)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grammars.smtp import hello_name
from statewire.protocols._smtp_trace import protocol_name, received
from statewire.protocols.smtp import (
    Envelope,
    LMTPFactory,
    MessageSink,
    SMTPConnection,
    SMTPFactory,
    SMTPHandler,
)
from statewire.testing.memory import Clock, StringTransport

WHEN = datetime(2026, 12, 4, 15, 0, 5, tzinfo=timezone(timedelta(hours=1)))


def test_a_trace_says_from_whom_by_whom_how_which_id_for_whom_and_when() -> None:
    field = received(
        "mx.example",
        b"client.example",
        ("192.0.2.7", 50000),
        "ESMTPS",
        id="4F2A",
        recipient=b"bob@example.org",
        when=WHEN,
    )
    assert field == (
        b"Received: from client.example ([192.0.2.7])\r\n"
        b"\tby mx.example with ESMTPS id 4F2A\r\n"
        b"\tfor <bob@example.org>;\r\n"
        b"\tFri, 04 Dec 2026 15:00:05 +0100\r\n"
    )
    ipv6 = received("mx", b"[IPv6:2001:db8::1]", ("2001:db8::1", 1), "ESMTP", when=WHEN)
    assert ipv6.startswith(
        b"Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n\tby mx with ESMTP;\r\n"
    )
    unknown = received("mx", b"c.test", None, "SMTP", when=WHEN)
    assert unknown.startswith(b"Received: from c.test\r\n\tby mx with SMTP;\r\n")


def test_a_name_that_is_not_a_domain_goes_in_the_comment_escaped() -> None:
    field = received("mx", b"caf\xc3\xa9(x);y\\", ("10.0.0.1", 25), "ESMTP", when=WHEN)
    assert field.startswith(
        b"Received: from unknown (helo=caf\\xc3\\xa9\\(x\\);y\\\\ [10.0.0.1])\r\n"
    )


@pytest.mark.parametrize(
    ("lmtp", "extended", "tls", "user", "utf8", "name"),
    [
        (False, False, False, None, False, "SMTP"),
        (False, False, True, b"u", False, "SMTP"),
        (False, False, False, None, True, "UTF8SMTP"),
        (False, False, True, b"u", True, "UTF8SMTP"),
        (False, True, False, None, False, "ESMTP"),
        (False, True, True, None, False, "ESMTPS"),
        (False, True, False, b"u", False, "ESMTPA"),
        (False, True, True, b"u", False, "ESMTPSA"),
        (False, True, True, b"u", True, "UTF8SMTPSA"),
        (True, True, False, None, False, "LMTP"),
        (True, True, True, b"u", False, "LMTPSA"),
        (True, True, False, None, True, "UTF8LMTP"),
    ],
)
def test_protocol_names_are_rfc_3848s(
    lmtp: bool, extended: bool, tls: bool, user: bytes | None, utf8: bool, name: str
) -> None:
    assert protocol_name(lmtp, extended, tls, user, utf8) == name


#: what EHLO takes as a name (``hello_name``: no space, no control octet)
names = st.binary(min_size=1, max_size=40).filter(lambda b: hello_name(b) == b)


@given(names)
def test_no_client_name_changes_how_the_field_reads(helo: bytes) -> None:
    field = received("mx.example", helo, ("127.0.0.1", 1), "ESMTP", id="ID1", when=WHEN)
    assert field.isascii() and field.count(b"\r\n") == 3  # (folded, never a new field)
    message = email.message_from_bytes(field + b"\r\nbody\r\n", policy=email.policy.default)
    assert list(message.keys()) == ["Received"]
    value = " ".join(str(message["Received"]).split())
    stamp = re.fullmatch(r"from (\S+)(?: \((.*)\))? by mx\.example with ESMTP id ID1; (.+)", value)
    assert stamp is not None and stamp.group(3) == "Fri, 04 Dec 2026 15:00:05 +0100"
    comment = stamp.group(2)
    assert comment is not None and comment.endswith("[127.0.0.1]")
    if stamp.group(1) == "unknown":  # the name in the comment: no unescaped parenthesis
        assert re.search(r"(?<!\\)[()]", comment) is None


@pytest.mark.parametrize(
    ("factory", "hello", "expected"),
    [
        (SMTPFactory, b"EHLO", b"ESMTP"),
        (SMTPFactory, b"HELO", b"SMTP"),
        (LMTPFactory, b"LHLO", b"LMTP"),
    ],
)
def test_a_session_traces_its_envelope(
    factory: type[SMTPFactory], hello: bytes, expected: bytes
) -> None:
    traced: list[bytes] = []

    class Tracing(SMTPHandler):
        def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
            traced.append(session.trace(envelope, id="Q1", recipient=envelope.recipients[0]))
            return MessageSink()

    server = factory(Tracing(), hostname="mx.test")
    protocol = server.buildProtocol(None)
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(
        hello + b" c.test\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
    )
    (field,) = traced
    utf8 = b"UTF8LMTP" if expected == b"LMTP" else b"UTF8SMTP"  # (MAIL said SMTPUTF8)
    assert field.startswith(
        b"Received: from c.test ([127.0.0.1])\r\n\tby mx.test with %s id Q1\r\n"
        b"\tfor <c@d.test>;\r\n" % utf8
    )


def test_a_long_odd_name_is_cut_short_and_every_line_stays_within_998_octets() -> None:
    field = received("mx", b"(" * 500, ("10.0.0.1", 1), "ESMTP", id="I", when=WHEN)
    first = field.split(b"\r\n")[0]
    assert first == b"Received: from unknown (helo=" + b"\\(" * 64 + b"... [10.0.0.1])"
    worst = received("mx", b"\xe9" * 500, ("10.0.0.1", 1), "ESMTP", when=WHEN)
    assert max(len(line) for line in worst.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    "bad", ["A1\r\nBcc: victim@x", "a b", "x;y", "(c)", "\u00e9", 'mx"', "<a@b>", "a,b", "m" * 256]
)
def test_an_id_or_a_server_name_that_would_break_the_field_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        received("mx", b"c.test", None, "ESMTP", id=bad)
    with pytest.raises(ValueError, match="printable ASCII"):
        received(bad, b"c.test", None, "ESMTP")
    with pytest.raises(ValueError, match="hostname="):
        SMTPFactory(hostname=bad)


def test_the_protocol_is_the_transactions_even_when_traced_later() -> None:
    kept: list[tuple[SMTPConnection, Envelope]] = []

    class Keeping(SMTPHandler):
        def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
            kept.append((session, envelope))
            return MessageSink()

    protocol = SMTPFactory(Keeping(), hostname="mx.test").buildProtocol(None)
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\r\n.\r\n"
    )
    protocol.dataReceived(b"HELO other.test\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\n")
    protocol.dataReceived(b"RCPT TO:<c@d.test>\r\nDATA\r\nx\r\n.\r\n")
    (session, first), (_, second) = kept
    assert b" with ESMTP;" in session.trace(first)  # (EHLO's, though HELO came since)
    assert b"from c.test " in session.trace(first)
    assert b" with UTF8SMTP;" in session.trace(second)  # (SMTPUTF8 after HELO: 8-bit)
