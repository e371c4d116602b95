"""SMTP (RFC 5321) on the wire: command lines, replies, the dot-stuffed body, BDAT chunks.

Pure construct and plain functions, no I/O. A session is three kinds of bytes:

* command lines, CRLF-terminated, at most 512 octets with the CRLF (RFC 5321 4.5.3.1.4):
  :func:`command_line` frames them, :func:`parse_command` splits verb and argument,
  :func:`parse_path` reads ``FROM:<path> params`` and ``TO:<path> params``;
* replies, one or more lines ``250-...`` then ``250 ...``: :func:`replies` parses and
  builds them as :class:`Reply` values;
* the message: after ``DATA``, text lines of at most 1000 octets with the CRLF
  (4.5.3.1.6), a leading dot doubled (4.5.2), ended by a line holding one dot. Only
  ``CRLF . CRLF`` ends it: :func:`text_line` cuts at CRLF alone, so a bare LF or CR stays
  inside a line (where :func:`bare_newline` finds it) and never ends anything (the 2023
  "SMTP smuggling" family). :func:`dot_body` is the whole body as one construct (for
  clients and tests); a server reads it as it comes, finds its end (:data:`BODY_END`,
  or ``.CRLF`` first) and unstuffs its lines (:func:`unstuff`, or one ``replace`` of
  ``CRLF .`` for many whole lines). After ``BDAT n`` (RFC 3030) come exactly ``n`` raw octets
  (:func:`parse_bdat`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO, Any

from construct import stream_seek, stream_write

from grammars._base import Framing, as_bytes
from grammars.errors import InvalidValueError, MalformedError, TooLongError, TruncatedError
from grammars.line import Line, line

#: octets of a command line, CRLF included (RFC 5321 4.5.3.1.4)
COMMAND_LIMIT = 512
#: octets of a text line of the message, CRLF included (RFC 5321 4.5.3.1.6)
TEXT_LIMIT = 1000
#: octets of a reply line, CRLF included (RFC 5321 4.5.3.1.5)
REPLY_LIMIT = 512
#: octets of a forward or reverse path, the brackets included (RFC 5321 4.5.3.1.3)
PATH_LIMIT = 256
#: the last line of a ``DATA`` body, without its CRLF
END_OF_DATA = b"."
#: what ends a ``DATA`` body after its first line: CRLF, the line ".", its CRLF
BODY_END = b"\r\n.\r\n"

_CODE = re.compile(rb"[2-5][0-5][0-9]")
_VERB = re.compile(rb"[A-Za-z][A-Za-z0-9-]*")
_KEYWORD = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*")
_PARAMETER_VALUE = re.compile(rb"[\x21-\x3c\x3e-\x7e\x80-\xff]+")
#: RFC 5321 4.1.2's Mailbox (with RFC 6531's UTF-8 octets in its atoms and labels, for
#: SMTPUTF8, which the session checks apart): a local part, one ``@``, a domain. The local
#: part is a Dot-string of atext, its dots not checked (``a..b``, a leading or a trailing
#: dot: some carriers' addresses have them, and they route nowhere else), or a
#: Quoted-string; the domain is dot-separated LDH labels (a hyphen not first or last) or an
#: address literal (``[192.0.2.1]``, ``[IPv6:...]``, a tag and its value: letters, digits,
#: dots, colons and hyphens only, so no ``>``, ``"``, ``@`` or ``,`` hides in one). So
#: ``a@b@c``, ``a@b,c@d``, ``a@``, ``a(b)@c`` and an unquoted backslash are refused: a
#: handler that checks the domain after the last ``@`` and a relay after it would not read
#: such an address alike.
_LOCAL = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\x80-\xff-]+"
_QUOTED = rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\x20-\x7e])*"'
_LABEL = rb"[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]*[A-Za-z0-9\x80-\xff])?"
_DOMAIN = rb"%s(?:\.%s)*" % (_LABEL, _LABEL)
_LITERAL = rb"\[[A-Za-z0-9.:-]+\]"
_MAILBOX = rb"(?:%s|%s)@(?:%s|%s)" % (_LOCAL, _QUOTED, _DOMAIN, _LITERAL)
_MAILBOX_RE = re.compile(_MAILBOX)
#: RFC 5321 4.1.2's A-d-l, a source route: ``@one,@two``
_ROUTE = re.compile(rb"@%s(?:,@%s)*" % (_DOMAIN, _DOMAIN))
#: ``FROM:<mailbox>`` and ``TO:<mailbox>`` alone, the mailbox unquoted (what
#: :func:`parse_path` takes at once; anything else takes the long way)
_SIMPLE_PATHS = {
    keyword: re.compile(
        # (the lookahead bounds the path at PATH_LIMIT with its brackets: no len() after)
        rb"(?i:%s):<(?=[^>]{1,%d}>\Z)(%s@(?:%s|%s))>"
        % (keyword, PATH_LIMIT - 2, _LOCAL, _DOMAIN, _LITERAL)
    )
    for keyword in (b"FROM", b"TO")
}


class ArgumentError(ValueError):
    """A command's argument does not follow its syntax (answered ``501``); ``unsupported``:
    it is well formed but names a parameter the server does not know (``555``)."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


# -- command lines -------------------------------------------------------------------------


def command_line(max_length: int = COMMAND_LIMIT) -> Line:
    """A command line: the octets before CRLF, at most ``max_length`` with the CRLF.

    >>> command_line().parse(b"EHLO client.example\\r\\n")
    b'EHLO client.example'
    """
    return line(b"\r\n", max_length - 2)


def parse_command(frame: bytes) -> tuple[bytes, bytes]:
    """``(VERB, argument)``: the verb upper-cased, the argument after one space as sent.

    A line whose first word is no verb (empty, a digit first, a bare LF...) gives
    ``(b"", frame)``.

    >>> parse_command(b"mail FROM:<a@example.org>")
    (b'MAIL', b'FROM:<a@example.org>')
    """
    verb, _, argument = frame.partition(b" ")
    if _VERB.fullmatch(verb) is None:
        return b"", frame
    return verb.upper(), argument


#: what an EHLO or HELO name may not hold: a space inside, a control octet (it would reach
#: the reply, the envelope, then headers and logs)
_BAD_IN_NAME = re.compile(rb"[\x00-\x20\x7f]")
#: nor, in UTF-8, a C1 control (U+0080-U+009F: CSI is U+009B), a line or paragraph
#: separator (U+2028, U+2029) or a bidirectional embedding, override or isolate
#: (U+202A-U+202E, U+2066-U+2069): a terminal's escape, a line break or text reordered
#: for whoever prints the decoded name
_BAD_IN_UTF8_NAME = re.compile(rb"\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 (RFC 3629: no overlong form, no surrogate, nothing past
    U+10FFFF), as RFC 6531 3.3 has SMTPUTF8's addresses: a handler, and a Maildir's
    ``Return-Path``, never get other octets above 127 from the server.

    >>> is_utf8("bücher".encode()), is_utf8(b"b\\xfccher"), is_utf8(b"\\xed\\xa0\\x80")
    (True, False, False)
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def hello_name(argument: bytes) -> bytes | None:
    """The client's name in ``EHLO name`` or ``HELO name`` (spaces around it dropped), or
    ``None`` when there is none, it holds a space or a control octet, or its octets above
    127 are not UTF-8 (RFC 3629: a name in UTF-8, U-labels, is kept) or encode a C1
    control, a line separator or a bidirectional control. Its syntax is not
    checked further (RFC 5321 4.1.4 asks a domain or an address literal; clients send
    NetBIOS names with underscores, which a server should not refuse).

    >>> hello_name(b"client.example "), hello_name(b"a\\x1b]0;x"), hello_name(b"")
    (b'client.example', None, None)
    >>> hello_name("bücher.example".encode()), hello_name(b"b\\xfccher.example")
    (b'b\\xc3\\xbccher.example', None)
    >>> hello_name("a\\u009b31m.example".encode()), hello_name("a\\u202e.example".encode())
    (None, None)
    """
    name = argument.strip(b" ")
    if not name or _BAD_IN_NAME.search(name) is not None:
        return None
    if not name.isascii() and (not is_utf8(name) or _BAD_IN_UTF8_NAME.search(name)):
        return None
    return name


def _path_end(rest: bytes) -> int:
    """The index of the ``>`` closing the path that ``rest`` starts (after its ``<``), not
    one inside a quoted local part; -1 if there is none."""
    if b'"' not in rest:
        return rest.find(b">")
    quoted = False
    index = 1
    while index < len(rest):
        octet = rest[index]
        if quoted:
            if octet == 0x5C:  # a backslash: the next octet is taken as it is
                index += 1
            elif octet == 0x22:
                quoted = False
        elif octet == 0x22:
            quoted = True
        elif octet == 0x3E:
            return index
        index += 1
    return -1


def parse_path(argument: bytes, keyword: bytes) -> tuple[bytes, dict[bytes, bytes | None]]:
    """``FROM:<path> KEY=value ...`` (``keyword`` ``FROM`` or ``TO``): the path without its
    brackets (``b""`` for the null path ``<>``) and the parameters, keys upper-cased.

    Tolerates a space after the colon, as most servers do. Raises :class:`ArgumentError`.

    >>> parse_path(b"FROM:<a@example.org> SIZE=10 BODY=8BITMIME", b"FROM")
    (b'a@example.org', {b'SIZE': b'10', b'BODY': b'8BITMIME'})
    """
    simple = _SIMPLE_PATHS[keyword].fullmatch(argument)
    if simple is not None:  # ``FROM:<a@b>``: the common case, in one match
        return simple[1], {}
    head, colon, rest = argument.partition(b":")
    if not colon or head.upper() != keyword:
        raise ArgumentError(f"expected {keyword.decode()}:<address>")
    rest = rest.lstrip(b" ")
    if not rest.startswith(b"<"):
        raise ArgumentError("the address must be in angle brackets")
    end = _path_end(rest)
    if end < 0:
        raise ArgumentError("no closing angle bracket")
    path = rest[1:end]
    if end + 1 > PATH_LIMIT:
        raise ArgumentError("address too long")
    if path.startswith(b"@"):  # a source route (RFC 5321 C): kept for the mailbox only
        route, _, path = path.partition(b":")
        if not path or _ROUTE.fullmatch(route) is None:
            # (``<@x>`` is no null path: RFC 5321 4.1.2's Path has a Mailbox after A-d-l)
            raise ArgumentError("a source route with no mailbox, or a bad one")
    if (
        path
        and _MAILBOX_RE.fullmatch(path) is None
        and (keyword != b"TO" or path.lower() != b"postmaster")  # (RFC 5321 4.1.1.3)
    ):
        raise ArgumentError("bad address: a mailbox is local-part@domain")
    tail = rest[end + 1 :]
    if tail and not tail.startswith(b" "):
        raise ArgumentError("junk after the address")
    return path, parse_parameters(tail)


def parse_parameters(text: bytes) -> dict[bytes, bytes | None]:
    """``KEY=value KEY2 ...`` -> ``{KEY: value, KEY2: None}``, keys upper-cased.

    A value is RFC 5321 4.1.2's esmtp-value (visible ASCII but ``=``; RFC 6531's UTF-8
    octets too): no control octet reaches the handler. A keyword given twice is refused
    (which one would count?)."""
    parameters: dict[bytes, bytes | None] = {}
    for word in text.split(b" "):
        if not word:
            continue
        key, equals, value = word.partition(b"=")
        if _KEYWORD.fullmatch(key) is None or (
            equals and _PARAMETER_VALUE.fullmatch(value) is None
        ):
            raise ArgumentError(f"bad parameter {word[:40]!r}")
        key = key.upper()
        if key in parameters:
            raise ArgumentError(f"parameter {key[:40]!r} given twice")
        parameters[key] = value if equals else None
    return parameters


def parse_bdat(argument: bytes) -> tuple[int, bool]:
    """``BDAT``'s argument ``size [LAST]`` -> ``(size, last)`` (RFC 3030).

    >>> parse_bdat(b"1024 LAST")
    (1024, True)
    """
    words = argument.split(b" ")
    if not 1 <= len(words) <= 2 or not words[0].isdigit() or len(words[0]) > 18:
        raise ArgumentError("expected BDAT <size> [LAST]")
    if len(words) == 2 and words[1].upper() != b"LAST":
        raise ArgumentError("expected BDAT <size> [LAST]")
    return int(words[0]), len(words) == 2


# -- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A reply: its three-digit ``code`` and its lines of text (at least one, maybe empty;
    none holding CR or LF, so a text from anywhere cannot add a reply of its own).

    >>> bytes(Reply(250, (b"2.1.0 Ok",)))
    b'250 2.1.0 Ok\\r\\n'
    """

    code: int
    lines: tuple[bytes, ...]
    #: the reply as sent, made once (servers send the same replies again and again)
    wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        code = b"%d" % self.code
        if _CODE.fullmatch(code) is None or not self.lines:
            raise ValueError(f"a reply has a code from 200 to 559 and lines, not {self!r}")
        if any(b"\r" in text or b"\n" in text for text in self.lines):
            raise ValueError("a reply line holds CR or LF: it would end the reply early")
        last = len(self.lines) - 1
        wire = b"".join(
            code + (b" " if i == last else b"-") + text + b"\r\n"
            for i, text in enumerate(self.lines)
        )
        object.__setattr__(self, "wire", wire)

    def __bytes__(self) -> bytes:
        return self.wire

    @property
    def text(self) -> bytes:
        """The lines joined by LF (for messages and logs)."""
        return b"\n".join(self.lines)


def reply(code: int, *lines: str | bytes) -> Reply:
    """``reply(250, "2.1.0 Ok")``: a :class:`Reply` from text lines (``str`` as ASCII)."""
    texts = tuple(t if isinstance(t, bytes) else t.encode("ascii") for t in lines or (b"",))
    return Reply(code, texts)


class Replies(Framing):
    """One SMTP reply (all its lines) as a :class:`Reply`; lines of at most
    ``max_length`` octets with their CRLF."""

    def __init__(self, max_length: int = REPLY_LIMIT) -> None:
        super().__init__()
        self.line = line(b"\r\n", max_length - 2)

    def describe(self) -> str:
        return "SMTP reply"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Reply:
        code: bytes | None = None
        texts: list[bytes] = []
        while True:
            start = stream.tell()
            text = self.line._parse(stream, context, path)
            if b"\r" in text or b"\n" in text:
                raise MalformedError("a bare CR or LF in a reply", offset=start, path=path)
            if len(text) < 3 or _CODE.fullmatch(text[:3]) is None:
                raise MalformedError("a reply line starts with a code", offset=start, path=path)
            if code is not None and text[:3] != code:
                raise MalformedError("a reply's lines differ in code", offset=start, path=path)
            code = text[:3]
            separator = text[3:4]
            if separator not in (b" ", b"-", b""):
                raise MalformedError("a code is followed by ' ' or '-'", offset=start, path=path)
            texts.append(text[4:])
            if separator != b"-":
                return Reply(int(code), tuple(texts))

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        if not isinstance(obj, Reply):
            raise InvalidValueError("expected a Reply", path=path)
        for text in obj.lines:
            if len(text) + 6 > self.line.max_length + 2:
                raise TooLongError(
                    "reply line too long", limit=self.line.max_length + 2, path=path
                )
        wire = bytes(obj)
        stream_write(stream, wire, len(wire), path)
        return obj


def replies(max_length: int = REPLY_LIMIT) -> Replies:
    """The grammar of replies.

    >>> replies().parse(b"250-mx.example\\r\\n250 PIPELINING\\r\\n")
    Reply(code=250, lines=(b'mx.example', b'PIPELINING'))
    """
    return Replies(max_length)


# -- the message -------------------------------------------------------------------------------


def text_line(max_length: int = TEXT_LIMIT) -> Line:
    """A line of a ``DATA`` body as sent (still dot-stuffed), at most ``max_length`` octets
    with its CRLF. CRLF alone ends it: bare CR and LF are part of the line."""
    return line(b"\r\n", max_length - 2)


def unstuff(text: bytes) -> bytes:
    """A body line as the message holds it: one leading dot removed (RFC 5321 4.5.2)."""
    return text[1:] if text[:1] == b"." else text


def bare_newline(text: bytes) -> bool:
    """Whether a line cut at CRLF holds a CR or LF that is not part of a CRLF."""
    return b"\n" in text or b"\r" in text


def stuff(message: bytes) -> bytes:
    """``message`` (CRLF lines) as ``DATA`` sends it: dots doubled at line starts, a CRLF
    added if it lacks one, then the end ``.CRLF``.

    >>> stuff(b".hidden\\r\\nline")
    b'..hidden\\r\\nline\\r\\n.\\r\\n'
    """
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class DotBody(Framing):
    """A whole ``DATA`` body: the value is the message (CRLF lines, or empty); the wire
    holds it dot-stuffed and ended by ``.CRLF``. Only a line that is exactly one dot ends
    it; a message of at most ``max_length`` octets as sent."""

    def __init__(self, max_length: int = 1 << 20) -> None:
        super().__init__()
        self.max_length = max_length

    def describe(self) -> str:
        return "dot-stuffed body"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        start = stream.tell()
        window = stream.read(self.max_length + 3)
        if window.startswith(b".\r\n"):
            end, skip = 0, 3
        else:
            end = window.find(b"\r\n.\r\n")
            end, skip = (end + 2, 3) if end >= 0 else (-1, 0)
        if end < 0:
            if len(window) > self.max_length:
                raise TooLongError(
                    "body too long", limit=self.max_length, offset=start + self.max_length
                )
            raise TruncatedError(
                "stream ended inside a body",
                needed=start + len(window) + 1,
                offset=start + len(window),
                path=path,
            )
        stream_seek(stream, start + end + skip, 0, path)
        body = window[:end]
        return b"".join(unstuff(t) + b"\r\n" for t in body.split(b"\r\n")[:-1])

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        message = as_bytes(obj, path)
        if message and not message.endswith(b"\r\n"):
            raise InvalidValueError("a message ends with CRLF", path=path)
        if bare_newline(message.replace(b"\r\n", b"")):
            raise InvalidValueError("a message holds a bare CR or LF", path=path)
        wire = stuff(message)
        if len(wire) - 3 > self.max_length:
            raise TooLongError("body too long", limit=self.max_length, path=path)
        stream_write(stream, wire, len(wire), path)
        return obj


def dot_body(max_length: int = 1 << 20) -> DotBody:
    """The grammar of a whole dot-stuffed body.

    >>> dot_body().parse(b"..a\\r\\nb\\r\\n.\\r\\n")
    b'.a\\r\\nb\\r\\n'
    """
    return DotBody(max_length)


__all__ = [
    "BODY_END",
    "COMMAND_LIMIT",
    "END_OF_DATA",
    "PATH_LIMIT",
    "REPLY_LIMIT",
    "TEXT_LIMIT",
    "ArgumentError",
    "DotBody",
    "Replies",
    "Reply",
    "bare_newline",
    "command_line",
    "dot_body",
    "hello_name",
    "is_utf8",
    "parse_bdat",
    "parse_command",
    "parse_parameters",
    "parse_path",
    "replies",
    "reply",
    "stuff",
    "text_line",
    "unstuff",
]
