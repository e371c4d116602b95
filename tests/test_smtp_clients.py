"""The SMTP server judged by real clients over loopback sockets: Python's smtplib
(sendmail, send_message, login, starttls), swaks (pipelining, AUTH, TLS), and hand-written
clients for what no polite client sends: pipelined batches, the smuggling vectors,
plaintext injected behind STARTTLS, 50 MiB messages by DATA and BDAT; then the Maildir
example served by ``statewire serve``.

Every server runs in the test's own asyncio loop (``scenario``), every client in a thread
with socket timeouts; nothing waits on a clock."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from process_helpers import running
from runtime_helpers import HOST, listen, scenario

from grammars.smtp import Reply, replies, reply, stuff
from statewire.framing import Framer
from statewire.protocols.smtp import (
    Envelope,
    MessageSink,
    SMTPConnection,
    SMTPFactory,
    SMTPHandler,
)

T = TypeVar("T")


class Counted(MessageSink):
    """Keeps the message (or only counts it, for the large ones) and its largest piece."""

    def __init__(self, handler: Application, envelope: Envelope) -> None:
        self.handler = handler
        self.envelope = envelope
        self.chunks: list[bytes] = []
        self.size = 0
        self.largest = 0

    def write(self, data: bytes) -> Any:
        self.size += len(data)
        self.largest = max(self.largest, len(data))
        if self.handler.keep:
            self.chunks.append(data)
        if self.handler.slow:
            return asyncio.sleep(0)
        return None

    async def _close(self) -> Reply:
        await asyncio.sleep(0)
        return self._record()

    def _record(self) -> Reply:
        self.handler.messages.append((self.envelope, b"".join(self.chunks), self.size))
        self.handler.largest = max(self.handler.largest, self.largest)
        return reply(250, f"2.0.0 Ok: queued as M{len(self.handler.messages)}")

    def close(self) -> Any:
        return self._close() if self.handler.slow else self._record()


class Application(SMTPHandler):
    """Accepts all but ``bad`` recipients; ``slow``: every decision is an awaitable that
    completes later (out of order with what the client sends next)."""

    def __init__(self, *, slow: bool = False, keep: bool = True) -> None:
        self.slow = slow
        self.keep = keep
        self.messages: list[tuple[Envelope, bytes, int]] = []
        self.largest = 0

    def mail(self, session: SMTPConnection, sender: bytes, parameters: Any) -> Any:
        return self._later(None) if self.slow else None

    def rcpt(self, session: SMTPConnection, recipient: bytes, parameters: Any) -> Any:
        answer = reply(550, "5.1.1 No such user") if recipient.startswith(b"bad") else None
        return self._later(answer) if self.slow else answer

    async def _later(self, answer: Reply | None) -> Reply | None:
        for _ in range(3):
            await asyncio.sleep(0)
        return answer

    def message(self, session: SMTPConnection, envelope: Envelope) -> MessageSink:
        return Counted(self, envelope)


def serve(factory: SMTPFactory, client: Callable[[int], T]) -> T:
    """Serve ``factory`` on a loopback port and run ``client(port)`` in a thread."""

    async def body(reactor: Any) -> T:
        port = await listen(reactor, factory)
        return await asyncio.to_thread(client, port)

    return scenario(body, timeout=120)


def _check(session: SMTPConnection, mechanism: str, identity: bytes, password: bytes) -> bool:
    return (identity, password) == (b"alice", b"secret")


# -- smtplib ---------------------------------------------------------------------------------


def test_smtplib_sendmail_and_send_message() -> None:
    app = Application()

    def client(port: int) -> None:
        with smtplib.SMTP(HOST, port, timeout=10) as smtp:
            assert smtp.ehlo()[0] == 250
            assert smtp.has_extn("pipelining") and smtp.has_extn("chunking")
            assert smtp.has_extn("enhancedstatuscodes") and smtp.has_extn("size")
            refused = smtp.sendmail("a@b.test", ["c@d.test", "bad@d.test"], b".dot\r\nbody")
            assert refused == {"bad@d.test": (550, b"5.1.1 No such user")}
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "x@y.test", "z@w.test", "hi"
            message.set_content("line one\n.\nline three\n")
            smtp.send_message(message)
            assert smtp.noop() == (250, b"2.0.0 Ok")

    serve(SMTPFactory(app), client)
    (first, body, _), (second, text, _) = app.messages
    assert (first.sender, first.recipients, body) == (
        b"a@b.test",
        [b"c@d.test"],
        b".dot\r\nbody\r\n",
    )
    assert second.recipients == [b"z@w.test"]
    assert b"\r\nline one\r\n.\r\nline three\r\n" in text


def test_smtplib_login_and_the_refusals_it_sees() -> None:
    factory = SMTPFactory(
        Application(), check_credentials=_check, require_auth=True, auth_over_plaintext=True
    )

    def client(port: int) -> None:
        with smtplib.SMTP(HOST, port, timeout=10) as smtp:
            smtp.ehlo()
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail("a@b", ["c@d"], b"x")
            assert refused.value.smtp_code == 530
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("alice", "wrong")
            smtp.login("alice", "secret")
            smtp.sendmail("a@b", ["c@d"], b"x")
        with smtplib.SMTP(HOST, port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.user, smtp.password = "alice", "secret"
            assert smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)[0] == 235

    serve(factory, client)
    assert factory.handler.messages[0][0].user == b"alice"  # type: ignore[attr-defined]


# -- hand-written clients ---------------------------------------------------------------------


class Raw:
    """A blocking socket client reading whole replies (10 s timeouts, bounded reads)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.got: list[Reply] = []
        self.framer = Framer(replies(), self.got.append)
        assert self.read(1)[0].code == 220

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, count: int) -> list[Reply]:
        for _ in range(10_000):
            if len(self.got) >= count:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.framer.feed(chunk)
        found, self.got[:] = self.got[:count], self.got[count:]
        return found

    def codes(self, data: bytes, count: int) -> list[int]:
        self.send(data)
        return [answer.code for answer in self.read(count)]

    def close(self) -> None:
        self.sock.close()


ENVELOPE = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"


@pytest.mark.parametrize("slow", [False, True], ids=["now", "later"])
def test_pipelined_transactions_are_answered_in_order(slow: bool) -> None:
    app = Application(slow=slow)
    batch = b"".join(
        b"MAIL FROM:<s%d@x>\r\nRCPT TO:<bad@y>\r\nRCPT TO:<r%d@y>\r\nBDAT 5 LAST\r\nmsg%02d"
        % (i, i, i)
        for i in range(20)
    )

    def client(port: int) -> list[int]:
        raw = Raw(port)
        try:
            codes = raw.codes(b"EHLO c\r\n" + batch + b"QUIT\r\n", 82)
        finally:
            raw.close()
        return codes

    codes = serve(SMTPFactory(app), client)
    assert codes == [250, *[250, 550, 250, 250] * 20, 221]
    assert [body for _, body, _ in app.messages] == [b"msg%02d" % i for i in range(20)]
    assert [e.sender for e, _, _ in app.messages] == [b"s%d@x" % i for i in range(20)]


SMUGGLING = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
}


@pytest.mark.parametrize("ending", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggled_messages_never_get_through(ending: bytes) -> None:
    app = Application()
    smuggled = b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nforged\r\n"

    def client(port: int) -> list[int]:
        raw = Raw(port)
        try:
            codes = raw.codes(ENVELOPE + b"DATA\r\n", 4)
            raw.send(b"Subject: hello\r\n\r\nreal" + ending + smuggled)
            codes += raw.codes(b".\r\nQUIT\r\n", 2)
        finally:
            raw.close()
        return codes

    assert serve(SMTPFactory(app), client) == [250, 250, 250, 354, 500, 221]
    assert app.messages == []


def test_large_messages_stream_in_pieces_by_data_and_by_bdat() -> None:
    app = Application(keep=False)
    size = 50 * 1024 * 1024
    text_line = b"x" * 998 + b"\r\n"
    lines = size // len(text_line)

    def client(port: int) -> None:
        raw = Raw(port)
        try:
            assert raw.codes(ENVELOPE + b"DATA\r\n", 4) == [250, 250, 250, 354]
            block = text_line * 64
            for _ in range(lines // 64):
                raw.send(block)
            assert raw.codes(text_line * (lines % 64) + b".\r\n", 1) == [250]
            assert raw.codes(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT %d LAST\r\n" % size, 2)
            block = b"y" * 65536
            for _ in range(size // len(block)):
                raw.send(block)
            assert raw.codes(b"QUIT\r\n", 2) == [250, 221]
        finally:
            raw.close()

    serve(SMTPFactory(app, max_size=size), client)
    assert [count for _, _, count in app.messages] == [lines * len(text_line), size]
    assert app.largest <= SMTPConnection.piece_size + len(text_line)  # never held whole


def test_a_message_over_the_size_is_refused_but_read_through() -> None:
    app = Application()

    def client(port: int) -> list[int]:
        raw = Raw(port)
        try:
            codes = raw.codes(b"EHLO c\r\nMAIL FROM:<a@b> SIZE=2000\r\n", 2)
            codes += raw.codes(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 3)
            codes += raw.codes(stuff(b"z" * 500 + b"\r\n") * 1, 1)
            codes += raw.codes(b"RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 4)
            codes += raw.codes(stuff((b"z" * 500 + b"\r\n") * 3) + b"NOOP\r\n", 2)
        finally:
            raw.close()
        return codes

    codes = serve(SMTPFactory(app, max_size=1000), client)
    assert codes == [250, 552, 250, 250, 354, 250, 250, 250, 250, 354, 552, 250]
    assert len(app.messages) == 1


def test_stopping_the_server_tells_open_sessions_421() -> None:
    async def body(reactor: Any) -> bytes:
        port = reactor.listenTCP(0, SMTPFactory(Application()), interface=HOST)
        await port.ready
        reader, writer = await asyncio.open_connection(HOST, port.getHost().port)
        await reader.readline()
        writer.write(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
        await writer.drain()
        for _ in range(8):
            if (await reader.readline()).startswith(b"250 2.1.0"):
                break
        port.stopListening()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return rest

    assert scenario(body) == b"421 4.3.2 localhost Service shutting down\r\n"


# -- TLS -------------------------------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made now."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return _certificate(tmp_path)


def _tls_factory(app: Application, cert: Path, key: Path) -> SMTPFactory:
    if not hasattr(socket.socket, "send"):  # pragma: no cover (keeps mypy quiet below)
        raise AssertionError
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return SMTPFactory(app, tls_context=context, check_credentials=_check)


def test_smtplib_starttls_then_login(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    app = Application()

    def client(port: int) -> None:
        context = ssl.create_default_context(cafile=str(cert))
        with smtplib.SMTP(HOST, port, timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
            assert smtp.starttls(context=context)[0] == 220
            smtp.ehlo()
            assert not smtp.has_extn("starttls") and smtp.has_extn("auth")
            smtp.login("alice", "secret")
            smtp.sendmail("a@b", ["c@d"], b"secret stuff")

    serve(_tls_factory(app, cert, key), client)
    ((envelope, body, _),) = app.messages
    assert (envelope.tls, envelope.user, body) == (True, b"alice", b"secret stuff\r\n")


def test_the_maildir_example_traces_tls_and_auth(
    tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The Received trace of a message sent over STARTTLS, authenticated: ESMTPSA (RFC
    3848), and the TLS version and cipher as Postfix writes them."""
    cert, key = tls_files
    maildir = tmp_path / "Maildir"
    env = {
        "SMTPD_MAILDIR": str(maildir),
        "SMTPD_HOSTNAME": "mx.example",
        "SMTPD_TLS_CERT": str(cert),
        "SMTPD_TLS_KEY": str(key),
        "SMTPD_USERS": "alice:secret",
    }
    target, where = "examples/smtpd.py:factory", "tcp:0:interface=127.0.0.1"
    with running("-m", "statewire", "serve", target, "--listen", where, env=env) as server:
        with smtplib.SMTP(HOST, server.port, timeout=10) as smtp:
            smtp.starttls(context=ssl.create_default_context(cafile=str(cert)))
            smtp.login("alice", "secret")
            smtp.sendmail("a@b.test", ["c@d.test"], b"Subject: s\r\n\r\nx\r\n")
            cipher = smtp.sock.cipher()  # type: ignore[union-attr]
        server.stop()
    (written,) = (maildir / "new").iterdir()
    head = written.read_bytes().split(b"\r\n\t")
    name, version, _ = cipher
    assert head[1] == f"(using {version} with cipher {name})".encode()
    assert head[2].startswith(b"by mx.example with ESMTPSA id ")


def test_smtplib_over_implicit_tls_logs_in_with_no_starttls(tls_files: tuple[Path, Path]) -> None:
    """A port that is TLS from the first byte (RFC 8314, ``SMTP_SSL``): the session is
    encrypted from the start, so no STARTTLS is offered (RFC 3207 §4.2: 503 if sent), AUTH
    is allowed and the envelope says TLS."""
    cert, key = tls_files
    app = Application()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    factory = SMTPFactory(app, tls_context=server_context, check_credentials=_check)

    def client(port: int) -> None:
        context = ssl.create_default_context(cafile=str(cert))
        with smtplib.SMTP_SSL(HOST, port, timeout=10, context=context) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("starttls") and smtp.has_extn("auth")
            assert smtp.docmd("STARTTLS")[0] == 503
            smtp.login("alice", "secret")
            smtp.sendmail("a@b", ["c@d"], b"over tls")

    async def body(reactor: Any) -> None:
        port = reactor.listenSSL(0, factory, server_context, interface=HOST)
        await port.ready
        await asyncio.to_thread(client, port.getHost().port)

    scenario(body, timeout=120)
    ((envelope, message, _),) = app.messages
    assert (envelope.tls, envelope.user, message) == (True, b"alice", b"over tls\r\n")


def test_plaintext_pipelined_behind_starttls_is_never_executed(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    app = Application()

    def client(port: int) -> list[Reply]:
        raw = Raw(port)
        raw.codes(b"EHLO c\r\n", 1)
        injected = b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nforged\r\n.\r\n"
        assert raw.codes(b"STARTTLS\r\n" + injected, 1) == [220]
        context = ssl.create_default_context(cafile=str(cert))
        tls = context.wrap_socket(raw.sock, server_hostname="localhost")
        tls.sendall(b"MAIL FROM:<a@b>\r\nEHLO c\r\nQUIT\r\n")
        got: list[Reply] = []
        framer = Framer(replies(), got.append)
        for _ in range(1000):
            chunk = tls.recv(65536)
            if not chunk:
                break
            framer.feed(chunk)
        tls.close()
        return got

    got = serve(_tls_factory(app, cert, key), client)
    assert [answer.code for answer in got] == [503, 250, 221]  # nothing of the plaintext
    assert app.messages == []


# -- swaks -----------------------------------------------------------------------------------

swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


def _swaks(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", HOST, "--port", str(port), "--timeout", "10", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@swaks
def test_swaks_pipelining_and_auth(tmp_path: Path) -> None:
    app = Application()
    factory = SMTPFactory(app, check_credentials=_check, auth_over_plaintext=True)

    def client(port: int) -> list[subprocess.CompletedProcess[str]]:
        return [
            _swaks(port, "--to", "c@d.test,bad@d.test", "--from", "a@b.test", "--pipeline"),
            _swaks(port, "--to", "c@d.test", "--auth", "PLAIN", "--auth-user", "alice",
                   "--auth-password", "secret", "--pipeline"),
            _swaks(port, "--to", "c@d.test", "--auth", "LOGIN", "--auth-user", "alice",
                   "--auth-password", "secret"),
            _swaks(port, "--to", "c@d.test", "--auth", "PLAIN", "--auth-user", "alice",
                   "--auth-password", "nope"),
        ]  # fmt: skip

    first, plain, login, refused = serve(factory, client)
    assert first.returncode == 0, first.stdout
    assert "<** 550 5.1.1 No such user" in first.stdout
    assert (
        "<~  250 2.0.0 Ok: queued as" in first.stdout or "<-  250 2.0.0 Ok: queued" in first.stdout
    )
    assert plain.returncode == 0 and "235 2.7.0" in plain.stdout, plain.stdout
    assert login.returncode == 0 and "235 2.7.0" in login.stdout, login.stdout
    assert refused.returncode != 0 and "535 5.7.8" in refused.stdout
    assert [e.recipients for e, _, _ in app.messages] == [[b"c@d.test"]] * 3
    assert [e.user for e, _, _ in app.messages] == [None, b"alice", b"alice"]


@swaks
def test_swaks_starttls(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    app = Application()
    support = subprocess.run(["swaks", "--support"], capture_output=True, text=True, check=False)
    if "=== TLS supported" not in support.stdout + support.stderr:
        pytest.skip("swaks has no TLS support here (Net::SSLeay)")

    def client(port: int) -> subprocess.CompletedProcess[str]:
        return _swaks(port, "--to", "c@d", "--tls", "--auth", "LOGIN", "--auth-user", "alice",
                      "--auth-password", "secret", "--pipeline")  # fmt: skip

    done = serve(_tls_factory(app, cert, key), client)
    assert done.returncode == 0, done.stdout
    assert "220 2.0.0 Ready to start TLS" in done.stdout
    assert [(e.tls, e.user) for e, _, _ in app.messages] == [(True, b"alice")]


# -- the Maildir example ---------------------------------------------------------------------


def test_the_maildir_example_files_each_message_with_its_envelope(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    env = {"SMTPD_MAILDIR": str(maildir), "SMTPD_HOSTNAME": "mx.example"}
    target, where = "examples/smtpd.py:factory", "tcp:0:interface=127.0.0.1"
    with running("-m", "statewire", "serve", target, "--listen", where, env=env) as server:
        with smtplib.SMTP(HOST, server.port, timeout=10) as smtp:
            assert smtp.ehlo()[1].startswith(b"mx.example")
            smtp.sendmail("a@b.test", ["c@d.test", "e@f.test"], b"Subject: one\r\n\r\n.hi\r\n")
            code, text = smtp.docmd("NOOP")
            assert code == 250
            smtp.mail("<>")
            smtp.rcpt("c@d.test")
            code, text = smtp.data(b"Subject: two\r\n\r\nbounce\r\n")
        assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
        server.stop()
    files = sorted((maildir / "new").iterdir())
    assert len(files) == 2 and list((maildir / "tmp").iterdir()) == []
    contents = sorted(f.read_bytes() for f in files)
    # the trace (RFC 5321 4.4): the client's name and address, the queue id told to it,
    # the one recipient of a message of one; a date
    trace = (
        rb"Received: from (\S+) \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example with ESMTP "
        rb"id ([0-9A-F]{12})%s;\r\n\t[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} [0-9:]{8} "
        rb"[+-]\d{4}\r\n"
    )
    bounce = re.fullmatch(
        rb"Return-Path: <>\r\n"
        + trace % rb"\r\n\tfor <c@d\.test>"
        + rb"Delivered-To: c@d.test\r\nSubject: two\r\n\r\nbounce\r\n",
        contents[0],
    )
    assert bounce is not None and text.endswith(bounce.group(2))
    first = re.fullmatch(
        rb"Return-Path: <a@b.test>\r\n"
        + trace % b""
        + rb"Delivered-To: c@d.test\r\nDelivered-To: e@f.test\r\nSubject: one\r\n\r\n\.hi\r\n",
        contents[1],
    )
    assert first is not None and first.group(1) == smtp.local_hostname.encode()
