"""Helpers for the runtime tests: run a scenario on a fresh reactor, talk to it over sockets."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from statewire._reactor import Reactor

T = TypeVar("T")


HOST = "127.0.0.1"


def scenario(
    body: Callable[[Reactor], Awaitable[T]],
    timeout: float = 60,
    *,
    native: bool = False,
    uvloop: bool = False,
) -> T:
    """Run ``body(reactor)`` inside a fresh asyncio loop (a uvloop one if ``uvloop``), then
    shut the reactor down; ``native`` serves plain ports with the loop's own transports."""

    async def main() -> T:
        reactor = Reactor()
        reactor.native_transports = native
        try:
            return await asyncio.wait_for(body(reactor), timeout)
        finally:
            await reactor.shutdown()

    if not uvloop:
        return asyncio.run(main())
    import uvloop as uv

    loop = uv.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def in_mode(mode: str, monkeypatch: Any) -> Callable[[Callable[[Reactor], Awaitable[T]]], T]:
    """A scenario runner (60 s) whose ports serve the way ``mode`` names: ``epoll`` (the
    default poller), ``loop-readers`` (the loop's readers instead: ``monkeypatch`` swaps
    the poller), ``native`` (the loop's own transports), each on uvloop when it starts
    with ``uvloop-``."""
    if mode == "loop-readers":
        from statewire._transport import LoopPoller, Poller

        monkeypatch.setattr(Poller, "make", staticmethod(LoopPoller))

    def run(body: Callable[[Reactor], Awaitable[T]]) -> T:
        native, uvloop = mode.endswith("native"), mode.startswith("uvloop")
        return scenario(body, 60, native=native, uvloop=uvloop)

    return run


async def listen(reactor: Reactor, factory: Any, backlog: int = 50, host: str = HOST) -> int:
    """Listen on a free TCP port of ``host``; its number once it accepts."""
    port = reactor.listenTCP(0, factory, backlog=backlog, interface=host)
    await port.ready
    return port.getHost().port  # type: ignore[union-attr]


async def exchange(host: str, port: int, data: bytes, expect: int) -> bytes:
    """Connect, send ``data``, read ``expect`` bytes, close."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    got = await reader.readexactly(expect)
    writer.close()
    await writer.wait_closed()
    return got


async def read_all(host: str, port: int, send: bytes = b"") -> bytes:
    """Connect, optionally send, read until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    if send:
        writer.write(send)
    data = await reader.read()
    writer.close()
    return data


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def error_records() -> Iterator[list[logging.LogRecord]]:
    """Collect every ERROR (or worse) record logged while the block runs."""
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)


async def client_socket(port: int, send: bytes = b"", rcvbuf: int = 4096) -> socket.socket:
    """A non-blocking client connected to ``port`` on 127.0.0.1 with a receive buffer of
    ``rcvbuf`` bytes, after sending ``send``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (HOST, port))
    if send:
        await loop.sock_sendall(sock, send)
    return sock


def _certificate(
    subject: Any, issuer: Any, public_key: Any, signer: Any, *, authority: bool = False
) -> Any:
    """A certificate of ``subject`` (``x509.Name``) for ``public_key``, signed by
    ``signer`` in ``issuer``'s name, valid from 5 minutes ago for a day: for 127.0.0.1,
    or a certificate authority's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    # the key identifiers Python 3.13's strict checks (VERIFY_X509_STRICT) ask for
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
    )
    if authority:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    else:
        address = x509.IPAddress(ipaddress.ip_address(HOST))
        builder = builder.add_extension(x509.SubjectAlternativeName([address]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write_pair(cert: Any, key: Any, cert_path: Path, key_path: Path, passphrase: bytes) -> None:
    """Write ``cert`` and ``key`` in PEM (the key encrypted with ``passphrase`` if any)."""
    from cryptography.hazmat.primitives import serialization

    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption: Any = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )


def self_signed_certificate(directory: Path, passphrase: bytes = b"") -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, made here (no files shipped): the paths of
    its PEM certificate and key, written in ``directory`` (the key encrypted with
    ``passphrase`` when one is given)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    cert = _certificate(name, name, key.public_key(), key)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    _write_pair(cert, key, cert_path, key_path, passphrase)
    return str(cert_path), str(key_path)


def certificate_authority(directory: Path, name: str = "statewire test CA") -> Any:
    """A certificate authority made here: an object whose ``path`` is its certificate
    (PEM) and whose ``issue(subject, stem, passphrase=b"")`` writes a certificate it signs
    for ``subject`` (a ``cryptography`` ``x509.Name``, for 127.0.0.1 too) and its key,
    as ``stem``.pem and ``stem``.key, and returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, authority=True)

    class Authority:
        path = directory / f"{name.replace(' ', '-')}.pem"

        @staticmethod
        def issue(subject: Any, stem: str, passphrase: bytes = b"") -> tuple[str, str]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(subject, ca_name, key.public_key(), ca_key)
            cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
            _write_pair(cert, key, cert_path, key_path, passphrase)
            return str(cert_path), str(key_path)

    Authority.path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Authority
