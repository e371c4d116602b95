"""The SASL exchanges of SMTP ``AUTH`` (RFC 4954): PLAIN (RFC 4616) and LOGIN.

An :class:`Exchange` is sans-IO: it is given the command's argument, then each line the
client sends, and says what comes next: a challenge to send (``334 ...``), the
credentials to check, or a refusal.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from grammars.smtp import Reply, reply

#: the mechanisms offered, in the order EHLO lists them
MECHANISMS = ("PLAIN", "LOGIN")

UNKNOWN_MECHANISM = reply(504, "5.5.4 Unrecognized authentication type")
BAD_BASE64 = reply(501, "5.5.2 Cannot decode response")
ABORTED = reply(501, "5.7.0 Authentication aborted")
INVALID = reply(535, "5.7.8 Authentication credentials invalid")


@dataclass(frozen=True)
class Credentials:
    """What the client claims: its identity and password (and PLAIN's authorization
    identity, which must be empty or the same identity)."""

    mechanism: str
    identity: bytes
    password: bytes


#: what an exchange asks for next: a challenge (its text), credentials, or a refusal
Step = bytes | Credentials | Reply


def _decode(text: bytes) -> bytes | None:
    if text == b"=":  # RFC 4954: an empty initial response
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class Exchange:
    """One ``AUTH`` exchange, from the command to the credentials."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self._identity: bytes | None = None

    @classmethod
    def start(cls, argument: bytes) -> tuple[Exchange | None, Step]:
        """``AUTH``'s argument -> the exchange (``None`` when refused) and its first step."""
        words = argument.split(b" ")
        if not 1 <= len(words) <= 2 or not words[0]:
            return None, reply(501, "5.5.4 Syntax: AUTH mechanism [initial-response]")
        mechanism = words[0].upper().decode("ascii", "replace")
        if mechanism not in MECHANISMS:
            return None, UNKNOWN_MECHANISM
        exchange = cls(mechanism)
        if len(words) == 1:
            return exchange, exchange._first_challenge()
        return exchange, exchange.respond(words[1])

    def _first_challenge(self) -> bytes:
        return b"" if self.mechanism == "PLAIN" else base64.b64encode(b"Username:")

    def respond(self, line: bytes) -> Step:
        """The client's next line -> the next step."""
        if line == b"*":
            return ABORTED
        decoded = _decode(line)
        if decoded is None:
            return BAD_BASE64
        if self.mechanism == "PLAIN":
            parts = decoded.split(b"\x00")
            if len(parts) != 3 or not parts[1] or parts[0] not in (b"", parts[1]):
                return INVALID
            return _credentials(self.mechanism, parts[1], parts[2])
        if self._identity is None:
            self._identity = decoded
            return base64.b64encode(b"Password:")
        return _credentials(self.mechanism, self._identity, decoded)


def _credentials(mechanism: str, identity: bytes, password: bytes) -> Step:
    """The credentials to check; an identity holding a control character (CR, LF, NUL...:
    it would end up in the envelope, then in headers and logs) is refused unchecked."""
    if any(c < 0x20 or c == 0x7F for c in identity):
        return INVALID
    return Credentials(mechanism, identity, password)


__all__ = ["ABORTED", "BAD_BASE64", "MECHANISMS", "Credentials", "Exchange", "Step"]
