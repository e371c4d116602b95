"""An LMTP delivery agent (RFC 2033): each message into the Maildir of each recipient,
each recipient told how its own delivery went.

A mail system's last hop: the MTA (Postfix's ``lmtp:unix:...``, Exim's ``lmtp``
transport) hands a message for several local users over once, and reads one reply for
each of them after the message. Here a user is a folder under ``LMTPD_MAILBOXES`` (default
``./mailboxes``): ``RCPT TO:<alice@anywhere>`` is accepted when ``alice/`` is there (a
Maildir, its ``tmp``, ``new`` and ``cur`` made at the first delivery), else refused
(``550 5.1.1``). The message is written as it arrives into each recipient's ``tmp/``,
under a ``Return-Path``, the ``Received`` trace (RFC 5321 4.4) and that recipient's
``Delivered-To``, and moved into ``new/``
once complete: ``250 2.0.0 <alice@anywhere> delivered``. A recipient whose Maildir cannot
take it gets ``451 4.2.0 <...> mailbox unavailable``, and the others their delivery.

Configured by the environment: ``LMTPD_MAILBOXES``, ``LMTPD_HOSTNAME`` (default
``localhost``), ``LMTPD_MAX_SIZE`` (octets; default 32 MiB).

A user's name is its folder's, as the address has it: case counts, ``alice+tag`` is not
``alice``, and a quoted local part is refused. Each copy is on disk (``fsync``) before its
``250``. Run it as the mailboxes' owner, not as root (it writes where their folders say),
and let only the MTA reach its socket (``mode=660``, the MTA's group):

statewire serve examples/lmtpd.py:factory --listen unix:/run/lmtpd.sock:mode=660
swaks --socket /run/lmtpd.sock --protocol LMTP --to alice@example.org,bob@example.org
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import time
from pathlib import Path
from typing import IO

from grammars.smtp import Reply, reply
from statewire.protocols.smtp import (
    Decision,
    Envelope,
    LMTPFactory,
    MessageSink,
    SMTPConnection,
    SMTPHandler,
)

_counter = itertools.count(1)
#: the host part of a Maildir file name: "/" and ":" written as the Maildir spec says
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
#: a user's name as a folder may have it (no path, no hidden folder)
_USER = re.compile(rb"[A-Za-z0-9_][A-Za-z0-9._+-]{0,63}")


def user_of(recipient: bytes) -> bytes | None:
    """The mailbox a recipient names (its local part), or ``None`` if it names none."""
    local = recipient.rpartition(b"@")[0] or recipient
    return local if _USER.fullmatch(local) else None


class Copy:
    """One recipient's copy on its way into its Maildir: ``tmp/NAME`` until complete."""

    def __init__(self, maildir: Path, recipient: bytes, head: bytes) -> None:
        self.recipient = recipient
        self.maildir = maildir
        self.name = f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}.{_HOST}"
        self.file: IO[bytes] | None = None
        try:
            for sub in ("tmp", "new", "cur"):
                (maildir / sub).mkdir(mode=0o700, exist_ok=True)
            # mail is private: readable by its owner only, whatever the umask (and a link
            # planted in the Maildir is not followed)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            self.file = os.fdopen(os.open(maildir / "tmp" / self.name, flags, 0o600), "wb")
            self.file.write(head + b"Delivered-To: %s\r\n" % recipient)
        except OSError:
            self.abort()  # (this recipient's reply says so; the others go on)

    def write(self, data: bytes) -> None:
        if self.file is not None:
            try:
                self.file.write(data)
            except OSError:
                self.abort()

    def deliver(self) -> Reply:
        if self.file is not None:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())  # (on disk before the MTA is told delivered)
                self.file.close()
                self.file = None
                (self.maildir / "tmp" / self.name).rename(self.maildir / "new" / self.name)
                return reply(250, b"2.0.0 <%s> delivered" % self.recipient)
            except OSError:
                self.abort()
        return reply(451, b"4.2.0 <%s> mailbox unavailable" % self.recipient)

    def abort(self) -> None:
        file, self.file = self.file, None
        with contextlib.suppress(OSError):  # (a full disk fails the close's flush again)
            if file is not None:
                file.close()
            (self.maildir / "tmp" / self.name).unlink(missing_ok=True)


class Delivery(MessageSink):
    """One message, a copy for each recipient, each under its own trace."""

    def __init__(
        self, mailboxes: Path, envelope: Envelope, session: SMTPConnection | None = None
    ) -> None:
        self.copies = []
        for r in envelope.recipients:
            head = b"Return-Path: <%s>\r\n" % envelope.sender
            if session is not None:
                head += session.trace(envelope, recipient=r)
            folder = mailboxes / (user_of(r) or b"").decode("ascii")
            self.copies.append(Copy(folder, r, head))

    def write(self, data: bytes) -> None:
        for copy in self.copies:
            copy.write(data)

    def close(self) -> list[Decision]:
        return [copy.deliver() for copy in self.copies]  # (one each, in their order)

    def abort(self) -> None:
        for copy in self.copies:
            copy.abort()


class MailboxHandler(SMTPHandler):
    """Accepts any sender, the recipients that have a mailbox; delivers to each."""

    def __init__(self, mailboxes: Path) -> None:
        self.mailboxes = mailboxes

    def rcpt(self, session: SMTPConnection, recipient: bytes, parameters: object) -> Decision:
        user = user_of(recipient)
        if user is None or not (self.mailboxes / user.decode("ascii")).is_dir():
            return reply(550, "5.1.1 No such mailbox")
        return None

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        return Delivery(self.mailboxes, envelope, session)


def make_factory() -> LMTPFactory:
    """The server the environment describes (see the module)."""
    env = os.environ
    return LMTPFactory(
        MailboxHandler(Path(env.get("LMTPD_MAILBOXES", "mailboxes"))),
        hostname=env.get("LMTPD_HOSTNAME", "localhost"),
        max_size=int(env.get("LMTPD_MAX_SIZE", 32 * 1024 * 1024)),
    )


factory = make_factory()
