"""A server's TLS context from files and a few choices: :func:`ssl_context`, which ``ssl:``
descriptions (:mod:`statewire.endpoints`) and uvicorn's ``--ssl-*`` options on ``statewire
serve`` come to.

It starts from ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` (TLS 1.2 and 1.3,
OpenSSL's default ciphers and security level) and changes only what it is told to.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

#: how a server asks for client certificates: ``none`` (it does not), ``optional`` (a
#: client may send one, which must then be valid), ``required`` (the handshake fails
#: without a valid one)
VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
#: the TLS versions a server may be limited to
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _no_passphrase() -> str:
    raise ValueError(
        "the private key is protected by a passphrase, and none was given (a server "
        "never prompts for one)"
    )


def ssl_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    password: str | None = None,
    cafile: str | None = None,
    verify: str | None = None,
    ciphers: str | None = None,
    min_version: str | None = None,
    max_version: str | None = None,
) -> ssl.SSLContext:
    """A server-side TLS context from a certificate file and its private key (PEM; the key
    from the certificate's file when ``keyfile`` is ``None``).

    * ``password``: the key's passphrase. A key protected by one, none given, raises
      ``ValueError`` (never a prompt on the terminal: a server, or each of its workers,
      would wait for one); a wrong one, ``ssl.SSLError``.
    * ``cafile``: the certificates (PEM) of the authorities whose client certificates
      are accepted; ``verify``: one of :data:`VERIFY` (``required`` when ``cafile`` is
      given, else ``none``). Asking for client certificates without ``cafile`` raises
      ``ValueError``: no client's certificate could be valid.
    * ``ciphers``: an OpenSSL cipher list (``ssl.SSLContext.set_ciphers``; it chooses
      among TLS 1.2's ciphers, TLS 1.3's suites are OpenSSL's); one that selects none
      raises ``ValueError``.
    * ``min_version``, ``max_version``: ``"1.2"`` or ``"1.3"`` (else ``ValueError``).
    """
    if verify is None:
        verify = "required" if cafile is not None else "none"
    if verify not in VERIFY:
        raise ValueError(f"verify={verify!r} is not one of {', '.join(VERIFY)}")
    if verify != "none" and cafile is None:
        raise ValueError(
            f"client certificates {verify}, but no certificate authorities to check "
            "them against (give their file)"
        )
    versions = [_version(min_version, "min"), _version(max_version, "max")]
    if None not in versions and versions[0] > versions[1]:  # type: ignore[operator]
        raise ValueError(f"TLS {min_version} at least and {max_version} at most: no version")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    passphrase: str | Callable[[], str] = _no_passphrase if password is None else password
    context.load_cert_chain(certfile, keyfile, password=passphrase)
    if cafile is not None:
        context.load_verify_locations(cafile)
    context.verify_mode = VERIFY[verify]
    if ciphers is not None:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError:
            raise ValueError(f"the cipher list {ciphers!r} selects no cipher") from None
    if versions[0] is not None:
        context.minimum_version = versions[0]
    if versions[1] is not None:
        context.maximum_version = versions[1]
    return context


def _version(value: str | None, which: str) -> ssl.TLSVersion | None:
    if value is None:
        return None
    if value not in VERSIONS:
        raise ValueError(f"{which} TLS version {value!r} is not one of {', '.join(VERSIONS)}")
    return VERSIONS[value]
