"""A server's TLS choices beyond its certificate and key: client certificates (mutual TLS),
a key's passphrase, ciphers, versions; what a handler and an ASGI application learn of the
connection's TLS (``Request.tls``, ASGI's ``tls`` extension); and uvicorn's ``--ssl-*``
options on ``statewire serve``, judged by ``curl``.

Real sockets on 127.0.0.1; a certificate authority, its server and client certificates made
for the run; every wait is bounded."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from runtime_helpers import HOST, certificate_authority, error_records, scenario

from statewire._reactor import Reactor, ssl_context
from statewire.endpoints import descriptionContext, serverFromString
from statewire.protocols._tls_info import rfc4514
from statewire.protocols.asgi import asgi
from statewire.protocols.http import HTTPFactory, Request, Response, TLSInfo
from tests.process_helpers import EXAMPLES, running

#: what a TLS connection's failure may raise at the client (a refused certificate
#: arrives as an alert, at the handshake or, in TLS 1.3, at the first read)
REFUSED = (ssl.SSLError, ConnectionError, httpx.TransportError)


def _name(common: str, **more: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    oids = {"O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    attributes += [x509.NameAttribute(oids[key], value) for key, value in more.items()]
    return x509.Name(list(reversed(attributes)))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA, a server certificate (its key protected by ``secret``, and the same key
    plain), a client certificate it signs, and one from another CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca = certificate_authority(folder)
    other = certificate_authority(folder, "another CA")
    return {
        "ca": str(ca.path),
        "server": ca.issue(_name(HOST), "server"),
        "locked": ca.issue(_name(HOST), "server-locked", passphrase=b"secret"),
        "client": ca.issue(_name("client one", O="statewire, tests", C="NO"), "client"),
        "stranger": other.issue(_name("stranger"), "stranger"),
    }


def _client(pki: dict[str, Any], who: str | None = "client", **versions: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    if who is not None:
        context.load_cert_chain(*pki[who])
    for name, value in versions.items():
        setattr(context, name, value)
    return context


# -- the context ------------------------------------------------------------------------------


def test_client_certificates_are_asked_for_only_with_authorities(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    assert ssl_context(cert, key).verify_mode == ssl.CERT_NONE
    assert ssl_context(cert, key, cafile=pki["ca"]).verify_mode == ssl.CERT_REQUIRED
    optional = ssl_context(cert, key, cafile=pki["ca"], verify="optional")
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    unasked = ssl_context(cert, key, cafile=pki["ca"], verify="none")
    assert unasked.verify_mode == ssl.CERT_NONE
    with pytest.raises(ValueError, match="no certificate authorities"):
        ssl_context(cert, key, verify="required")
    with pytest.raises(ValueError, match="verify='always' is not one of none"):
        ssl_context(cert, key, cafile=pki["ca"], verify="always")


def test_a_locked_key_takes_its_passphrase_and_refuses_without_or_a_wrong_one(
    pki: dict[str, Any],
) -> None:
    cert, key = pki["locked"]
    assert ssl_context(cert, key, password="secret").verify_mode == ssl.CERT_NONE
    with pytest.raises(ValueError, match="none was given"):
        ssl_context(cert, key)
    with pytest.raises(ssl.SSLError):
        ssl_context(cert, key, password="wrong")


def test_a_wrong_passphrase_is_said_so(
    pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = pki["locked"]
    monkeypatch.setenv("TEST_KEY_PASSWORD", "wrong")
    description = f"ssl:0:privateKey={key}:certKey={cert}:passwordEnv=TEST_KEY_PASSWORD"
    with pytest.raises(ValueError, match=r"cannot load the key .* \(a wrong passphrase\?\)"):
        serverFromString(Reactor(), description)


def test_the_older_description_context_call_still_works(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    context = descriptionContext("ssl:0", cert, key)
    assert context.verify_mode == ssl.CERT_NONE
    assert descriptionContext("ssl:0", Path(cert), Path(key)).protocol
    assert descriptionContext("ssl:0", certfile=cert, keyfile=key).protocol
    assert descriptionContext("ssl:0", cert.encode(), key.encode()).protocol
    assert descriptionContext(f"ssl:0:privateKey={key}:certKey={cert}").protocol
    with pytest.raises(TypeError, match="keyfile goes with certfile"):
        descriptionContext(f"ssl:0:privateKey={key}:certKey={cert}", keyfile="/nonexistent")
    with pytest.raises(TypeError, match="values or certfile"):
        descriptionContext("ssl:0", {"privateKey": key}, certfile=cert)


def test_versions_and_ciphers_are_checked_and_set(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    context = ssl_context(cert, key, min_version="1.3")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    context = ssl_context(cert, key, max_version="1.2", ciphers="ECDHE+AESGCM")
    assert context.maximum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("GCM" in name and "ECDHE" in name for name in names)
    with pytest.raises(ValueError, match="selects no cipher"):
        ssl_context(cert, key, ciphers="NO-SUCH-CIPHER")
    with pytest.raises(ValueError, match="no version"):
        ssl_context(cert, key, min_version="1.3", max_version="1.2")
    with pytest.raises(ValueError, match=r"min TLS version '1\.1' is not one of 1\.2, 1\.3"):
        ssl_context(cert, key, min_version="1.1")


def test_descriptions_take_the_choices_and_name_themselves_in_mistakes(
    pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = pki["locked"]
    base = f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1"
    monkeypatch.delenv("TEST_KEY_PASSWORD", raising=False)
    with pytest.raises(ValueError, match=r"passwordEnv in .*: TEST_KEY_PASSWORD is not set"):
        serverFromString(Reactor(), base + ":passwordEnv=TEST_KEY_PASSWORD")
    with pytest.raises(ValueError, match=r"^'ssl:0:.*': the private key is protected"):
        serverFromString(Reactor(), base)
    monkeypatch.setenv("TEST_KEY_PASSWORD", "secret")
    serverFromString(Reactor(), base + ":passwordEnv=TEST_KEY_PASSWORD")
    locked = base + ":passwordEnv=TEST_KEY_PASSWORD"
    with pytest.raises(ValueError, match=r"caCerts file '/no/ca\.pem' in"):
        serverFromString(Reactor(), locked + ":caCerts=/no/ca.pem")
    with pytest.raises(ValueError, match="no certificate authorities"):
        serverFromString(Reactor(), locked + ":verify=optional")
    with pytest.raises(ValueError, match="selects no cipher"):
        serverFromString(Reactor(), locked + ":ciphers=NOPE")
    with pytest.raises(ValueError, match="unknown option 'caCerts'"):
        serverFromString(Reactor(), f"tcp:0:caCerts={pki['ca']}")  # (no TLS there)
    # a handed socket asking for client certificates without a key: refused, never plain
    with pytest.raises(ValueError, match="lacks privateKey"):
        serverFromString(Reactor(), f"fd:3:domain=INET:caCerts={pki['ca']}:verify=required")
    # a cipher list this (ECDSA) key cannot serve with: said with the description
    with pytest.raises(ValueError, match="cannot answer a client's hello"):
        serverFromString(Reactor(), locked + ":ciphers=ECDHE-RSA-AES128-GCM-SHA256:maxVersion=1.2")
    # a cipher list separated by commas, or by escaped colons
    serverFromString(Reactor(), locked + ":ciphers=ECDHE+AESGCM,CHACHA20")
    serverFromString(Reactor(), locked + r":ciphers=ECDHE+AESGCM\:CHACHA20")


# -- mutual TLS, served -----------------------------------------------------------------------


async def _who(request: Request, response: Response) -> None:
    tls = request.tls
    assert tls is not None
    text = f"{tls.version} {tls.peer_name} {len(tls.peer_chain)}"
    await response.send(200, [("Content-Type", "text/plain")], text.encode())


def _serve(description: str, factory: Any, client: Any, native: bool = False) -> Any:
    """Serve ``factory`` on ``description`` (port 0; on the loop's own transports with
    ``native``) and run ``client(port)`` (blocking, in a thread) against it; what it
    returns."""
    import asyncio

    async def main(reactor: Reactor) -> Any:
        reactor.native_transports = native
        port = await serverFromString(reactor, description).listen(factory)
        return await asyncio.to_thread(client, port.getHost().port)

    return scenario(main, timeout=60)


def _get(context: ssl.SSLContext, port: int) -> bytes:
    with (
        socket.create_connection((HOST, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return answer


def test_a_required_client_certificate_admits_the_authoritys_clients_alone(
    pki: dict[str, Any],
) -> None:
    cert, key = pki["server"]
    description = f"ssl:0:privateKey={key}:certKey={cert}:interface={HOST}:caCerts={pki['ca']}"

    def clients(port: int) -> list[Any]:
        seen: list[Any] = [_get(_client(pki), port).rpartition(b"\r\n\r\n")[2]]
        for who in (None, "stranger"):
            try:
                seen.append(_get(_client(pki, who), port))
            except REFUSED as error:
                seen.append(type(error))
        return seen

    with error_records() as errors:
        admitted, unnamed, stranger = _serve(description, HTTPFactory(_who), clients)
    assert admitted == b"TLSv1.3 CN=client one,O=statewire\\, tests,C=NO 1"
    for refused in (unnamed, stranger):  # (never an answer)
        assert isinstance(refused, type) and issubclass(refused, REFUSED)
    assert not errors  # (a refused client is the client's fault: not an error here)


@pytest.mark.parametrize("native", [False, True], ids=["socket transport", "loop's transport"])
def test_an_optional_client_certificate_is_told_when_sent(
    pki: dict[str, Any], native: bool
) -> None:
    cert, key = pki["server"]
    description = (
        f"ssl:0:privateKey={key}:certKey={cert}:interface={HOST}:caCerts={pki['ca']}"
        ":verify=optional:maxVersion=1.2"
    )
    infos: list[TLSInfo | None] = []

    async def handler(request: Request, response: Response) -> None:
        infos.append(request.tls)
        await response.send(204, [])

    def clients(port: int) -> None:
        _get(_client(pki), port)
        _get(_client(pki, None), port)

    _serve(description, HTTPFactory(handler), clients, native)
    named, unnamed = infos
    assert named is not None and unnamed is not None
    assert named.version == unnamed.version == "TLSv1.2"
    assert named.version_number == 0x0303
    assert named.peer_name == "CN=client one,O=statewire\\, tests,C=NO"
    assert named.peer_certificate is not None
    assert named.peer_certificate["subjectAltName"] == (("IP Address", HOST),)
    client_pem = Path(pki["client"][0]).read_text()
    assert named.peer_chain_pem[0].strip() == client_pem.strip()
    assert (unnamed.peer_chain, unnamed.peer_name, unnamed.peer_certificate) == ((), None, None)
    with pytest.raises(TypeError):  # (one connection's: no handler changes it for the next)
        named.peer_certificate["subject"] = ((("commonName", "admin"),),)  # type: ignore[index]
    # read-only, and still what a dict is to json, pickle and copies
    assert json.loads(json.dumps(named.peer_certificate))["subjectAltName"] == [
        ["IP Address", HOST]
    ]
    assert pickle.loads(pickle.dumps(named)) == named
    assert copy.deepcopy(named.peer_certificate) == dict(named.peer_certificate)
    assert dataclasses.asdict(named)["peer_certificate"] == dict(named.peer_certificate)
    for change in ("clear", "popitem", "__init__"):
        with pytest.raises(TypeError):
            getattr(named.peer_certificate, change)()


def test_plain_connections_have_no_tls_to_tell() -> None:
    seen: list[Any] = []

    async def handler(request: Request, response: Response) -> None:
        seen.append((request.secure, request.tls))
        await response.send(204, [])

    def client(port: int) -> None:
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass

    _serve(f"tcp:0:interface={HOST}", HTTPFactory(handler), client)
    assert seen == [(False, None)]


# -- ASGI's tls extension ---------------------------------------------------------------------

#: the IANA numbers of suites OpenSSL may pick here (RFC 8446 §B.4, RFC 5289)
_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
}


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_the_asgi_scope_carries_the_tls_extension(pki: dict[str, Any], version: str) -> None:
    cert, key = pki["server"]
    description = (
        f"ssl:0:privateKey={key}:certKey={cert}:interface={HOST}:caCerts={pki['ca']}"
        f":minVersion={version}:maxVersion={version}"
    )
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def client(port: int) -> list[Any]:
        with httpx.Client(verify=_client(pki), trust_env=False, timeout=10) as http:
            http.get(f"https://{HOST}:{port}/")
            http.get(f"https://{HOST}:{port}/")  # (the same connection, kept alive)
        with (
            socket.create_connection((HOST, port), timeout=10) as raw,
            _client(pki).wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            return [tls.cipher()[0]]

    (cipher,) = _serve(description, asgi(app, lifespan="off"), client)
    first, second = (scope["extensions"]["tls"] for scope in scopes)
    assert first == second and first is not second  # (each scope its own)
    assert first["tls_version"] == {"1.2": 0x0303, "1.3": 0x0304}[version]
    assert first["cipher_suite"] == _SUITES[cipher]
    assert first["client_cert_name"] == "CN=client one,O=statewire\\, tests,C=NO"
    chain = [pem.strip() for pem in first["client_cert_chain"]]
    assert chain[0] == Path(pki["client"][0]).read_text().strip()
    assert len(chain) == 1  # (what the client sent: its certificate alone)
    assert first["server_cert"] is None and first["client_cert_error"] is None
    assert scopes[0]["scheme"] == "https"


def test_a_websocket_scope_carries_it_too(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    description = f"ssl:0:privateKey={key}:certKey={cert}:interface={HOST}:caCerts={pki['ca']}"
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await receive()  # (websocket.connect)
        await send({"type": "websocket.close", "code": 1000})

    def client(port: int) -> bytes:
        handshake = (
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with (
            socket.create_connection((HOST, port), timeout=10) as raw,
            _client(pki).wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(handshake)
            return tls.recv(65536)

    answer = _serve(description, asgi(app, lifespan="off"), client)
    assert answer.startswith(b"HTTP/1.1 403")  # (closed before accepting: refused)
    (scope,) = scopes
    assert scope["type"] == "websocket" and scope["scheme"] == "wss"
    tls = scope["extensions"]["tls"]
    assert tls["client_cert_name"] == "CN=client one,O=statewire\\, tests,C=NO"
    assert "websocket.http.response" in scope["extensions"]


def test_a_plain_asgi_scope_has_no_tls_extension() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def client(port: int) -> None:
        with httpx.Client(trust_env=False, timeout=10) as http:
            http.get(f"http://{HOST}:{port}/")

    _serve(f"tcp:0:interface={HOST}", asgi(app, lifespan="off"), client)
    assert "tls" not in scopes[0]["extensions"]


# -- RFC 4514 names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["plain", 'a "quoted", +plus; <angle> \\back', "#hash first", " spaces round ", "a#b c"],
)
def test_names_are_written_as_cryptography_writes_them(value: str) -> None:
    """RFC 4514's escaping, against ``cryptography``'s ``rfc4514_string`` (a reference)."""
    name = _name(value, O=value, C="NO")
    subject = tuple(((_LONG[a.oid], a.value),) for a in name)  # (as getpeercert gives it)
    assert rfc4514(subject) == name.rfc4514_string()


_LONG = {
    NameOID.COMMON_NAME: "commonName",
    NameOID.ORGANIZATION_NAME: "organizationName",
    NameOID.COUNTRY_NAME: "countryName",
}


def test_a_name_with_several_values_in_one_part_joins_them_with_plus() -> None:
    subject = ((("countryName", "NO"),), (("commonName", "a"), ("userId", "u1")))
    assert rfc4514(subject) == "CN=a+UID=u1,C=NO"
    assert rfc4514(((("commonName", "nul\0"),),)) == "CN=nul\\00"
    assert rfc4514(((("someNewName", "x"),),)) == "someNewName=x"  # (no number known)
    # OpenSSL's long names that are no attribute type: by number, as cryptography writes
    msupn = ((("Microsoft User Principal Name", "u@x"),), (("unstructuredName", "box"),))
    assert rfc4514(msupn) == "1.2.840.113549.1.9.2=box,1.3.6.1.4.1.311.20.2.3=u@x"
    # a type OpenSSL has no name for comes as its number, and stays so
    assert rfc4514(((("1.3.6.1.4.1.99999.1.2", "role"),),)) == "1.3.6.1.4.1.99999.1.2=role"


def test_attributes_without_a_short_name_go_by_their_number() -> None:
    """As ``cryptography`` writes them (RFC 4514 2.3): an e-mail address, a serial."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.test"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "123"),
            x509.NameAttribute(NameOID.SURNAME, "S"),
            x509.NameAttribute(NameOID.COMMON_NAME, "c"),
        ]
    )
    long = {
        NameOID.EMAIL_ADDRESS: "emailAddress",
        NameOID.SERIAL_NUMBER: "serialNumber",
        NameOID.SURNAME: "surname",
        NameOID.COMMON_NAME: "commonName",
    }
    subject = tuple(((long[a.oid], a.value),) for a in name)
    assert rfc4514(subject) == name.rfc4514_string()


def test_a_value_that_is_not_text_is_written_in_hex_not_raised_on() -> None:
    """``getpeercert()`` gives ``bytes`` for an attribute whose type is not a string
    (x500UniqueIdentifier, a BIT STRING): a client certificate holding one is served."""
    subject = ((("x500UniqueIdentifier", b"\x02\xff"),), (("commonName", "odd"),))
    assert rfc4514(subject) == "CN=odd,2.5.4.45=#02ff"


# -- uvicorn's --ssl-* options, judged by curl ------------------------------------------------

TARGET = f"{EXAMPLES / 'httpd.py'}:factory"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _curl(port: int, pki: dict[str, Any], who: str | None) -> subprocess.CompletedProcess[str]:
    command = ["curl", "-sS", "--max-time", "10", "--cacert", pki["ca"]]
    if who is not None:
        command += ["--cert", pki[who][0], "--key", pki[who][1]]
    command.append(f"https://{HOST}:{port}/")
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("workers", [None, "2"])
def test_uvicorns_mutual_tls_command_line_serves_curl(
    pki: dict[str, Any], workers: str | None
) -> None:
    cert, key = pki["locked"]
    port = _free_port()
    flags = ["--host", HOST, "--port", str(port), "--ssl-certfile", cert, "--ssl-keyfile", key]
    flags += ["--ssl-keyfile-password", "secret", "--ssl-ca-certs", pki["ca"]]
    flags += ["--ssl-cert-reqs", "2", "--ssl-ciphers", "ECDHE+AESGCM,CHACHA20"]
    if workers is not None:
        flags += ["--workers", workers]
    with running("-m", "statewire", "serve", TARGET, *flags) as server:
        admitted = _curl(server.port, pki, "client")
        unnamed = _curl(server.port, pki, None)
        stranger = _curl(server.port, pki, "stranger")
        out = server.stop()
    assert admitted.returncode == 0, admitted.stderr
    assert admitted.stdout == "Hello from statewire.\n"
    assert unnamed.returncode != 0 and stranger.returncode != 0
    assert "secret" not in out  # (the passphrase is never said)
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ssl-ca-certs", "ca.pem"], "--ssl-ca-certs goes with --ssl-certfile"),
        (["--ssl-certfile", "c.pem", "--ssl-cert-reqs", "2"], "give the authorities"),
        (["--ssl-certfile", "c.pem", "--ssl-cert-reqs", "3"], "0 (none), 1 (optional)"),
        (["--ssl-certfile", "c.pem", "--ssl-version", "3"], "TLS 1.0 is not served"),
        (["--ssl-certfile", "c.pem", "--ssl-version", "16"], "a client's protocol"),
        (["--ssl-certfile", "c.pem", "--ssl-version", "9"], "17 or 2"),
        (["--ssl-certfile", "c.pem", "--ssl-ca-certs", "/no/ca.pem"], "no such file"),
        (["--ssl-certfile", "c.pem"], "protected by a passphrase, and none was given"),
        (["--ssl-certfile", "c.pem", "--ssl-keyfile-password", "x"], "cannot load the key"),
    ],
)
def test_uvicorns_tls_mistakes_exit_2(
    pki: dict[str, Any], tmp_path: Path, flags: list[str], message: str
) -> None:
    cert, key = pki["locked"]
    (tmp_path / "c.pem").write_bytes(Path(cert).read_bytes() + Path(key).read_bytes())
    (tmp_path / "ca.pem").write_bytes(Path(pki["ca"]).read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "statewire", "serve", TARGET, "--port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
