"""What a request's handler may know of its connection's TLS: :class:`TLSInfo`, and the
ASGI ``tls`` extension made of it.

Read once a connection, from the transport's ``getSSLObject()`` (statewire's transports
have it; a transport without it, as Twisted's TLS behind ``statewire.twisted.adapt``, gives
none). The client's certificate is there only when the server asked for one
(``verify=optional`` or ``required``; ``serve --ssl-cert-reqs 1`` or ``2``) and the client
sent it: a certificate that fails verification fails the handshake, so a connection that
reaches a handler has a valid one or none.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

#: the TLS versions' numbers on the wire (what ASGI's ``tls_version`` gives)
_VERSION_NUMBERS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
#: RFC 4514's short names of the attributes ``ssl.SSLObject.getpeercert()`` names long
_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "userId": "UID",
}
#: OpenSSL's table of object names to numbers (``ssl._ASN1Object.fromname``: not a public
#: name of ``ssl``, so looked up with care; without it, names are written as given)
_FROM_NAME = getattr(getattr(ssl, "_ASN1Object", None), "fromname", None)
#: a dotted number (an OID)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)+")
#: an attribute's name RFC 4514 can write as it is (a ``descr``, RFC 4512 1.4)
_DESCRIPTOR = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
#: the ciphers' IANA numbers by OpenSSL name, filled from each context met
_CIPHER_NUMBERS: dict[str, int] = {}


@dataclass(frozen=True)
class TLSInfo:
    """A TLS connection as its handshake left it."""

    #: the version agreed (``"TLSv1.3"``)
    version: str | None
    #: the cipher agreed, by OpenSSL's name (``"TLS_AES_256_GCM_SHA384"``)
    cipher: str | None
    #: its IANA number (``0x1302``), when OpenSSL lists it
    cipher_suite: int | None
    #: the client's certificate chain, DER, its own certificate first: the chain it sent
    #: where Python gives it (3.13 and later), else the client's certificate alone; empty
    #: when the client sent none (or was not asked)
    peer_chain: tuple[bytes, ...] = ()
    #: the client's certificate as ``ssl.SSLObject.getpeercert()`` gives it (subject,
    #: issuer, ``subjectAltName``, validity...), read-only, when it sent a valid one
    peer_certificate: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def version_number(self) -> int | None:
        """The version as its number on the wire (``0x0304`` for TLS 1.3)."""
        return None if self.version is None else _VERSION_NUMBERS.get(self.version)

    @cached_property
    def peer_name(self) -> str | None:
        """The client certificate's subject as RFC 4514 writes a name
        (``CN=client,O=Example,C=NO``), or ``None``."""
        if not self.peer_certificate:
            return None
        return rfc4514(self.peer_certificate.get("subject", ()))

    @cached_property
    def peer_chain_pem(self) -> tuple[str, ...]:
        """:attr:`peer_chain` in PEM."""
        return tuple(ssl.DER_cert_to_PEM_cert(der) for der in self.peer_chain)

    def asgi(self) -> dict[str, Any]:
        """ASGI's ``tls`` extension (version 0.2) of the connection. ``server_cert`` is
        ``None``: Python's ``ssl`` does not give a server its own certificate back;
        ``client_cert_error`` is ``None``: a client certificate that fails verification
        fails the handshake."""
        return {
            "server_cert": None,
            "client_cert_chain": self.peer_chain_pem,
            "client_cert_name": self.peer_name,
            "client_cert_error": None,
            "tls_version": self.version_number,
            "cipher_suite": self.cipher_suite,
        }


class ReadOnlyDict(dict[str, Any]):
    """A ``dict`` that cannot be changed (``TypeError``), and still serialises as one
    (``json``, ``pickle``, ``copy``, ``dataclasses.asdict``)."""

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the peer's certificate is read-only (the connection's, shared)")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self:  # (made once: ``d.__init__(...)`` later would change it)
            self._read_only()
        super().__init__(*args, **kwargs)

    @classmethod
    def fromkeys(cls, keys: Any, value: Any = None) -> ReadOnlyDict:  # type: ignore[override]
        return cls(dict.fromkeys(keys, value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadOnlyDict, (dict(self),))


def ssl_object_of(transport: Any) -> ssl.SSLObject | None:
    """``transport``'s ``ssl.SSLObject`` once its handshake completed, else ``None`` (no
    TLS, or a transport that does not say)."""
    get = getattr(transport, "getSSLObject", None)
    ssl_object = None if get is None else get()
    return ssl_object if isinstance(ssl_object, ssl.SSLObject) else None


def tls_info(transport: Any) -> TLSInfo | None:
    """The TLS of ``transport``'s connection once its handshake completed, else
    ``None`` (no TLS, or a transport that does not say)."""
    ssl_object = ssl_object_of(transport)
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    name = None if cipher is None else cipher[0]
    leaf = ssl_object.getpeercert(binary_form=True)
    chain: tuple[bytes, ...] = ()
    if leaf:
        # what the client sent (Python 3.13 gives it whole), else its certificate alone
        sent = getattr(ssl_object, "get_unverified_chain", None)
        chain = tuple(bytes(c) for c in sent()) if sent is not None else (leaf,)
    fields = ssl_object.getpeercert()
    return TLSInfo(
        ssl_object.version(),
        name,
        _cipher_number(name, ssl_object.context),
        chain,
        ReadOnlyDict(fields) if fields else None,
    )


def _cipher_number(name: str | None, context: ssl.SSLContext) -> int | None:
    if name is None:
        return None
    if name not in _CIPHER_NUMBERS:
        for listed in context.get_ciphers():
            # OpenSSL's id: 0x0300 above the two bytes IANA gives the suite
            _CIPHER_NUMBERS[listed["name"]] = listed["id"] & 0xFFFF
    return _CIPHER_NUMBERS.get(name)


def rfc4514(subject: Any) -> str:
    """The name ``getpeercert()`` gives as a subject (relative names, each a tuple of
    ``(attribute, value)`` pairs, the most general first), written as RFC 4514 says: the
    most specific first; an attribute by its short name where RFC 4514 has one, else by
    its number (:func:`_attribute`); special characters escaped, as ``cryptography``
    writes a name. A value that is not text (``bytes``, from an attribute whose type is
    not a string) is written ``#`` and its octets in hex (not their BER encoding, which
    ``getpeercert()`` does not give)."""
    return ",".join(
        "+".join(f"{_attribute(key)}={_escaped(value)}" for key, value in rdn)
        for rdn in reversed(subject)
    )


@lru_cache(maxsize=256)
def _attribute(key: str) -> str:
    """An attribute as RFC 4514 writes it: its short name, else its number (as
    ``cryptography`` writes them), else, when OpenSSL does not know it, its name if that
    is a descriptor, else its name with what a descriptor cannot hold left out."""
    short = _SHORT_NAMES.get(key)
    if short is not None:
        return short
    if _NUMBER.fullmatch(key):
        return key  # (a type OpenSSL has no name for: ``getpeercert()`` gives its number)
    if _FROM_NAME is not None:
        try:
            return str(_FROM_NAME(key).oid)
        except (ValueError, TypeError):
            pass
    if _DESCRIPTOR.fullmatch(key):
        return key
    return re.sub(r"[^A-Za-z0-9-]", "", key) or "unknown"


def _escaped(value: str | bytes) -> str:
    """An attribute's value with RFC 4514 §2.4's characters escaped."""
    if not isinstance(value, str):
        return "#" + bytes(value).hex()
    out = []
    for index, char in enumerate(value):
        if char in '"+,;<>\\' or (char == "#" and index == 0):
            out.append("\\" + char)
        elif char == " " and (index == 0 or index == len(value) - 1):
            out.append("\\ ")
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)
