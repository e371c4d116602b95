"""An SMTP server that accepts mail for anyone and files each message into a Maildir.

Each message is written as it arrives (never held whole) into ``tmp/`` of the Maildir,
under a ``Return-Path``, the ``Received`` trace (RFC 5321 4.4: the client's name and
address, the protocol, the queue id) and one ``Delivered-To`` per recipient, then moved
into ``new/`` once complete; the client is told ``250 2.0.0 Ok: queued as <id>``.
A message refused (too large, a bare LF, the client gave up) leaves nothing behind.

Configured by the environment:

* ``SMTPD_MAILDIR`` (default ``./maildir``): where messages go;
* ``SMTPD_HOSTNAME`` (default ``localhost``): the name the server greets with;
* ``SMTPD_MAX_SIZE``: the largest message, in octets (default 32 MiB);
* ``SMTPD_TLS_CERT`` and ``SMTPD_TLS_KEY``: PEM files; STARTTLS is offered when set;
* ``SMTPD_USERS`` (``alice:secret,bob:pw``): AUTH PLAIN and LOGIN accept these (over TLS
  only, unless ``SMTPD_AUTH_PLAINTEXT=1``); ``SMTPD_REQUIRE_AUTH=1`` makes MAIL need it.

statewire serve examples/smtpd.py:factory --listen tcp:8025:interface=127.0.0.1
python examples/smtpd.py --port 8025
statewire diagram examples/smtpd.py:factory
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import ssl
import time
from pathlib import Path
from typing import IO

from grammars.smtp import reply
from statewire.protocols.smtp import (
    Decision,
    Envelope,
    MessageSink,
    SMTPConnection,
    SMTPFactory,
    SMTPHandler,
)

_counter = itertools.count(1)
#: the host part of a Maildir file name: "/" and ":" written as the Maildir spec says
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")


class MaildirMessage(MessageSink):
    """One message on its way into the Maildir: ``tmp/NAME`` until complete."""

    def __init__(self, maildir: Path, envelope: Envelope, trace: bytes, queue_id: str) -> None:
        self.queue_id = queue_id
        self.name = f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}.{_HOST}"
        self.maildir = maildir
        self.path = maildir / "tmp" / self.name
        # mail is private: readable by its owner only, whatever the umask
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.file: IO[bytes] | None = os.fdopen(descriptor, "wb")
        header = b"Return-Path: <%s>\r\n" % envelope.sender + trace
        for recipient in envelope.recipients:
            header += b"Delivered-To: %s\r\n" % recipient
        self.file.write(header)

    def write(self, data: bytes) -> None:
        assert self.file is not None
        self.file.write(data)

    def close(self) -> Decision:
        assert self.file is not None
        self.file.close()
        self.file = None
        self.path.rename(self.maildir / "new" / self.name)
        return reply(250, f"2.0.0 Ok: queued as {self.queue_id}")

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self.path.unlink(missing_ok=True)


class MaildirHandler(SMTPHandler):
    """Accepts every sender and recipient; files messages into ``maildir``."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        for sub in ("tmp", "new", "cur"):  # made at the first message, not on import
            (self.maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        queue_id = secrets.token_hex(6).upper()
        only = envelope.recipients[0] if len(envelope.recipients) == 1 else None
        trace = session.trace(envelope, id=queue_id, recipient=only)
        return MaildirMessage(self.maildir, envelope, trace, queue_id)


def _users(text: str) -> dict[bytes, bytes]:
    pairs = (item.partition(":") for item in text.split(",") if item)
    return {user.encode(): password.encode() for user, _, password in pairs}


def make_factory() -> SMTPFactory:
    """The server the environment describes (see the module)."""
    env = os.environ
    context = None
    if env.get("SMTPD_TLS_CERT"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(env["SMTPD_TLS_CERT"], env.get("SMTPD_TLS_KEY") or None)
    users = _users(env.get("SMTPD_USERS", ""))

    def check(session: SMTPConnection, mechanism: str, identity: bytes, password: bytes) -> bool:
        expected = users.get(identity)
        return expected is not None and secrets.compare_digest(expected, password)

    return SMTPFactory(
        MaildirHandler(Path(env.get("SMTPD_MAILDIR", "maildir"))),
        hostname=env.get("SMTPD_HOSTNAME", "localhost"),
        max_size=int(env.get("SMTPD_MAX_SIZE", 32 * 1024 * 1024)),
        tls_context=context,
        check_credentials=check if users else None,
        require_auth=env.get("SMTPD_REQUIRE_AUTH") == "1",
        auth_over_plaintext=env.get("SMTPD_AUTH_PLAINTEXT") == "1",
    )


factory = make_factory()


def main() -> None:
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
