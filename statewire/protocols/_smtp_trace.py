"""The trace a server accepting a message puts at its top (RFC 5321 4.4): a ``Received:``
header field saying from whom (the name the client gave, and its address), by whom, with
which protocol (RFC 3848's names: ``ESMTP``, ``ESMTPS``, ``ESMTPSA``, ``LMTP``...), under
which id, for whom, and when.

The client's name is its own word: written as it is only when it is a domain or an
address literal, else in the comment, escaped, after ``from unknown``, so a name holding
parentheses, a ``;`` or non-ASCII octets cannot change how the field reads.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import format_datetime

#: a domain of letters, digits and hyphens (RFC 5321 4.1.2's ``Domain``), or an address
#: literal (``[192.0.2.1]``, ``[IPv6:...]``)
_DOMAIN = re.compile(
    rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    rb"|\[(?:IPv6:)?[0-9A-Fa-f:.]+\]"
)
#: what a comment's text cannot hold as it is (RFC 5322 3.2.2: ``ctext`` is printable
#: ASCII but the parentheses and the backslash, which are escaped)
_COMMENT_ESCAPED = re.compile(rb"[()\\]")
_NOT_PRINTABLE = re.compile(rb"[^\x21-\x7e]")
#: octets of a client's odd name the comment shows
SHOWN = 64
#: what the server's name and an id may be: up to 255 octets of printable ASCII, no
#: space, nothing that would end or open a part of the field (a comment, a quoted
#: string, an angle address, the ``;`` before the date)
ATOM = re.compile(r"(?:(?![;()\\\"<>,])[!-~]){1,255}")


def check_word(text: str, what: str) -> None:
    """``ValueError`` unless ``text`` is one word that cannot end or open a part of a
    header field or a reply (:data:`ATOM`)."""
    if ATOM.fullmatch(text) is None:
        raise ValueError(
            f"{what}={text!r}: one word of printable ASCII (at most 255 octets, no space "
            'nor any of ;()\\"<>,)'
        )


def received(
    by: str,
    helo: bytes,
    address: tuple[str, int] | None,
    protocol: str,
    *,
    id: str | None = None,
    recipient: bytes | None = None,
    when: datetime | None = None,
    tls: tuple[str, str] | None = None,
) -> bytes:
    """A ``Received:`` header field, folded, with its CRLF: from the client that said
    ``helo`` at ``address`` (``(host, port)``, or ``None`` when unknown), over ``tls``
    (its version and cipher, in a comment as Postfix writes them), by ``by`` (the
    server's name), with ``protocol``, under ``id``, for ``recipient`` (give it for a
    message of one recipient: naming them all would tell each the others), at ``when``
    (now by default; a local time with its offset)."""
    check_word(by, "by")
    if id is not None:
        check_word(id, "id")
    host = address[0] if address is not None else None
    literal = None if host is None else f"[IPv6:{host}]" if ":" in host else f"[{host}]"
    if _DOMAIN.fullmatch(helo):
        source = helo.decode("ascii")
        comment = literal
    else:
        source = "unknown"
        # (cut short: the field's lines stay within RFC 5322's 998 octets, escapes and all)
        shown = helo if len(helo) <= SHOWN else helo[:SHOWN] + b"..."
        shown = _COMMENT_ESCAPED.sub(rb"\\\g<0>", shown)
        shown = _NOT_PRINTABLE.sub(lambda m: b"\\x%02x" % m.group()[0], shown)
        comment = f"helo={shown.decode('ascii')}" + ("" if literal is None else f" {literal}")
    lines = [f"Received: from {source}" + ("" if comment is None else f" ({comment})")]
    if tls is not None and all(ATOM.fullmatch(part) for part in tls):
        lines.append(f"(using {tls[0]} with cipher {tls[1]})")
    lines.append(f"by {by} with {protocol}" + ("" if id is None else f" id {id}"))
    if recipient is not None:
        lines.append(f"for <{recipient.decode('utf-8', 'replace')}>;")
    else:
        lines[-1] += ";"
    moment = when if when is not None else datetime.now(timezone.utc).astimezone()
    lines.append(format_datetime(moment))
    return "\r\n\t".join(lines).encode("utf-8") + b"\r\n"


def protocol_name(lmtp: bool, extended: bool, tls: bool, user: bytes | None, utf8: bool) -> str:
    """RFC 3848's (and RFC 6531's) name of the protocol a message came by: ``SMTP`` after
    HELO, ``ESMTP`` after EHLO, ``LMTP``; ``S`` for TLS, ``A`` for an authenticated
    client; ``UTF8`` first for a transaction with ``SMTPUTF8``."""
    if not lmtp and not extended:
        # (RFC 3848 names no TLS or AUTH after HELO; SMTPUTF8 after HELO, which the
        # server takes: RFC 6531 3.7.7's name)
        return "UTF8SMTP" if utf8 else "SMTP"
    names = {(True, True): "UTF8LMTP", (False, True): "UTF8SMTP", (True, False): "LMTP"}
    base = names.get((lmtp, utf8), "ESMTP")
    return base + ("S" if tls else "") + ("A" if user else "")
