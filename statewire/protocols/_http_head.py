"""The rules of a request head (RFC 9112): each line checked as it arrives, then what the
complete head says about the body's framing, the connection and ``Expect``. Every
breach is a :class:`Refusal` carrying the status to answer; the connection's machine
(:mod:`statewire.protocols.http`) answers it and closes."""

from __future__ import annotations

import os
from collections.abc import Callable

from grammars import MalformedError
from grammars.http1 import (
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    MAX_REQUEST_LINE,
    Fields,
    UnsupportedVersion,
    content_of,
    field_of,
    fields_of,
    list_tokens,
    parse_chunk_line,
    request_line_of,
)
from statewire.protocols._http_exchange import Headers, cut_absolute_form

#: the optional C accelerator's readings of a common request line and field section
#: (:mod:`statewire.protocols._http1_speedups`), ``None`` without it or with
#: ``STATEWIRE_PURE=1``: each gives the grammar's own result, or ``None`` for the grammar
#: to read (or refuse) the bytes itself
quick_request_line: Callable[[bytes, int], tuple[bytes, bytes, tuple[int, int]] | None] | None
quick_section: Callable[[bytes, int, int], tuple[list[tuple[bytes, bytes]], int] | None] | None
try:
    if os.environ.get("STATEWIRE_PURE") == "1":
        raise ImportError("STATEWIRE_PURE=1")
    from statewire.protocols._http1_speedups import field_section as quick_section
    from statewire.protocols._http1_speedups import request_line as quick_request_line
except ImportError:
    quick_request_line = quick_section = None

#: longest Content-Length written in digits (18 digits fit any size a server takes)
MAX_LENGTH_DIGITS = 18
#: what a Host's reg-name or IPv4 address may hold (RFC 3986: unreserved, pct-encoded,
#: sub-delims but ``,``, which would make the field read as a list); an IP literal
#: between brackets may hold ``:`` too
_HOST_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+;="
#: what a URI scheme holds after its first letter (RFC 3986 §3.1)
_SCHEME_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-."


class Refusal(Exception):
    """A request refused with ``status``; the connection closes after the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def request_line(frame: bytes) -> tuple[bytes, bytes, tuple[int, int]]:
    """The method, target and version of a request line cut at its LF (at most
    :data:`~grammars.http1.MAX_REQUEST_LINE` bytes before its CR: the caller's check)."""
    if quick_request_line is not None:
        known = quick_request_line(frame, MAX_REQUEST_LINE)
        if known is not None:
            return known
    try:
        method, target, version = request_line_of(frame)
    except UnsupportedVersion as error:
        raise Refusal(505, error.message) from None
    except MalformedError as error:
        raise Refusal(400, error.message) from None
    if target[:1] != b"/" or method == b"CONNECT" or b"#" in target:
        check_target(method, target)  # (the origin-form of any other method passes)
    return method, target, version


def check_target(method: bytes, target: bytes) -> None:
    """Refuse (``400``) a request target whose form ``method`` may not use (RFC 9112
    §3.2): ``CONNECT`` takes the authority-form (``host:port``) and nothing else; any
    other method the origin-form (``/path?query``) or the absolute-form
    (``scheme://authority/path?query``, as sent to a proxy); ``OPTIONS`` the asterisk-form
    (``*``) too. A fragment (``#``) belongs to no form."""
    if b"#" in target:
        raise Refusal(400, "a fragment (#) in the request target")
    if method == b"CONNECT":
        if not is_authority_form(target):
            raise Refusal(400, "the target of CONNECT is not host:port (authority-form)")
    elif target[:1] == b"/":
        return
    elif target == b"*":
        if method != b"OPTIONS":
            raise Refusal(400, "the asterisk-form target (*) is for OPTIONS only")
    elif split_absolute_form(target) is None:
        if is_authority_form(target):
            raise Refusal(400, "an authority-form target (host:port) is for CONNECT only")
        raise Refusal(400, "the request target is not /path (origin-form) or scheme://host/path")


def is_authority_form(target: bytes) -> bool:
    """Whether ``target`` is ``uri-host ":" port``, the port given (RFC 9110 §9.3.6: a
    CONNECT names no default port)."""
    host, colon, port = target.rpartition(b":")
    return bool(host and colon and port.isdigit() and port.isascii() and valid_host(target))


def split_absolute_form(target: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(scheme, authority, rest)`` of an absolute-form target ``scheme://authority``
    followed by nothing, a path or a query; ``None`` when ``target`` is not one. The
    authority must be a valid, non-empty ``host[:port]`` (no userinfo: RFC 9110 §4.2.4
    has it treated as an error; ``a@b`` reads as two hosts to two parsers)."""
    parts = cut_absolute_form(target)
    if parts is None:
        return None
    scheme, authority, _ = parts
    if not scheme[:1].isalpha() or scheme[1:].translate(None, _SCHEME_BYTES):
        return None
    if not authority or not valid_host(authority):
        return None
    return parts


class FieldSection:
    """A field section (the headers, or the trailers) read one line at a time, within
    :data:`~grammars.http1.MAX_FIELD_BYTES` and :data:`~grammars.http1.MAX_FIELDS`."""

    __slots__ = ("fields", "size")

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.size = 0

    def add(self, frame: bytes) -> bool:
        """One line cut at its LF; ``True`` when it is the blank line ending the section."""
        size = self.size = self.size + len(frame) + 1
        if size > MAX_FIELD_BYTES:
            raise Refusal(431, f"field section over {MAX_FIELD_BYTES} bytes")
        fields = self.fields
        if len(fields) < MAX_FIELDS:  # the common case, one call
            try:
                field = field_of(frame)
            except MalformedError as error:
                raise Refusal(400, error.message) from None
            if field is None:
                return True
            fields.append(field)
            return False
        try:  # at the limit: a blank line ends the section, a bare LF is still a 400
            content = content_of(frame)
        except MalformedError as error:
            raise Refusal(400, error.message) from None
        if not content:
            return True
        raise Refusal(431, f"more than {MAX_FIELDS} fields")

    def read_ahead(self, data: bytes) -> int | None:
        """The rest of the section at the start of ``data`` (the bytes after the last line
        read: after the request line, all of it), read at once: the bytes it took, its
        blank line included; ``None`` when ``data`` does not hold its end (nothing read).
        The lines are the ones :meth:`add` would get a line at a time (cut at each LF),
        checked in the same order, so a section is read, or refused, alike either way."""
        fields = self.fields
        if quick_section is not None:
            known = quick_section(data, MAX_FIELD_BYTES - self.size, MAX_FIELDS - len(fields))
            if known is not None:
                more, size = known
                fields += more
                self.size += size
                return size
        if data[:2] == b"\r\n":
            size = 2  # no more field
        else:
            end = data.find(b"\r\n\r\n")  # (the first blank line: see below)
            if end < 0:
                return None
            size = end + 4
        lines = data[:size].split(b"\n")
        lines.pop()  # (what follows the last LF: nothing)
        # only the last line is blank: a blank line before it would end with the CRLF found
        # first, or follow a line that does not end with a CR (refused there)
        self.add_all(lines)
        return size

    def add_all(self, frames: list[bytes]) -> None:
        """Every line of the section at once, cut at their LF, the last one blank (the
        only blank one): what :meth:`add` of each in turn does, in one pass when all are
        well-formed and within the limits, else by :meth:`add` (which refuses the first
        line that breaks a rule)."""
        size = self.size + len(frames) + sum(map(len, frames))
        fields = self.fields
        if size <= MAX_FIELD_BYTES and len(fields) + len(frames) <= MAX_FIELDS + 1:
            more = fields_of(frames[:-1])
            if more is not None:
                fields += more
                self.size = size
                return
        for frame in frames:
            self.add(frame)


#: the fields whose meaning the server decides, by lower-cased name: read by
#: :func:`head_rules` in one pass (``True``: only the general path reads it)
_READ = {
    b"host": False,
    b"content-length": False,
    b"connection": False,
    b"transfer-encoding": True,
    b"expect": True,
}


#: Host values found valid (a server sees the same few again and again)
_HOSTS: dict[bytes, bool] = {}


def _valid_host_noted(host: bytes) -> bool:
    if not valid_host(host):
        return False
    if len(_HOSTS) >= 1024:
        _HOSTS.clear()
    _HOSTS[host] = True
    return True


def head_rules(
    version: tuple[int, int], fields: Fields, max_body: int
) -> tuple[Headers, int | None, bool, bool]:
    """What a complete head says, with every refusal of :func:`body_length`,
    :func:`expects_continue` and the ``413`` past ``max_body``, in their order: the
    headers, the body's length (``None``: chunked), whether the connection is kept alive
    and whether the client waits for ``100 Continue``.

    One pass over the fields for the common head (one ``Host``, at most one
    ``Content-Length`` of digits and one ``Connection``, no ``Transfer-Encoding`` or
    ``Expect``); any other head is read by those functions."""
    host = length = connection = None
    for name, value in fields:
        general = _READ.get(name.lower())
        if general is None:
            continue
        if general:
            break
        lower = name.lower()
        if lower == b"host":
            if host is not None:
                break
            host = value
        elif lower == b"content-length":
            if length is not None:
                break
            length = value
        elif connection is not None:
            break
        else:
            connection = value
    else:
        if (
            host is not None
            and (_HOSTS.get(host) or _valid_host_noted(host))
            and (
                length is None
                or (length.isdigit() and length.isascii() and len(length) <= MAX_LENGTH_DIGITS)
            )
        ):
            size = 0 if length is None else int(length)
            if size > max_body:
                raise Refusal(413, f"body of {size} bytes over the limit")
            if connection is None:
                keep_alive = version >= (1, 1)
            else:
                options = list_tokens(connection)
                keep_alive = b"close" not in options and (
                    version >= (1, 1) or b"keep-alive" in options
                )
            return Headers(fields), size, keep_alive, False
    headers = Headers(fields)
    body = body_length(version, headers)
    if body is not None and body > max_body:
        raise Refusal(413, f"body of {body} bytes over the limit")
    waits = expects_continue(version, headers) and body != 0
    return headers, body, keeps_alive(version, headers), waits


def body_length(version: tuple[int, int], headers: Headers) -> int | None:
    """How the request's body is framed (RFC 9112 §6.3): its length, or ``None`` for
    chunked. Anything two parsers could read two ways is refused."""
    hosts = headers.get_all(b"host")
    if len(hosts) > 1 or (version >= (1, 1) and not hosts):
        raise Refusal(400, "an HTTP/1.1 request needs exactly one Host field")
    if hosts and not valid_host(hosts[0]):
        raise Refusal(400, "Host is not host[:port]")
    codings = headers.tokens(b"transfer-encoding")
    if codings:
        if version < (1, 1):
            raise Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
        if b"content-length" in headers:
            raise Refusal(400, "both Content-Length and Transfer-Encoding")
        if b"" in codings or codings.count(b"chunked") > 1 or codings[-1] != b"chunked":
            raise Refusal(400, "Transfer-Encoding does not end in one chunked")
        if len(codings) > 1:
            raise Refusal(501, "transfer codings other than chunked are not supported")
        return None
    lengths = set(headers.tokens(b"content-length"))
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise Refusal(400, "differing Content-Length values")
    (length,) = lengths
    if not length.isdigit() or not length.isascii() or len(length) > MAX_LENGTH_DIGITS:
        raise Refusal(400, "Content-Length is not a number of bytes")
    return int(length)


def valid_host(value: bytes) -> bool:
    """Whether ``value`` is a Host field value, ``uri-host [ ":" port ]`` (RFC 9112 §3.2:
    anything else is ``400``). Empty is valid (a target without an authority). Refused
    among others: whitespace, ``/``, ``@``, ``\\``, a list (``a, b``), a port that is not
    digits: the forms where a proxy and an application could pick different hosts."""
    if value.startswith(b"["):
        end = value.find(b"]")
        literal, rest = value[1:end], value[end + 1 :]
        if end < 0 or not literal or literal.translate(None, _HOST_BYTES + b":"):
            return False
    else:
        colon = value.find(b":")
        literal, rest = (value, b"") if colon < 0 else (value[:colon], value[colon:])
        if literal.translate(None, _HOST_BYTES):
            return False
    return not rest or (rest[:1] == b":" and (rest[1:].isdigit() or rest == b":"))


def keeps_alive(version: tuple[int, int], headers: Headers) -> bool:
    """Whether the client lets the connection carry another request."""
    connection = headers.tokens(b"connection")
    if version >= (1, 1):
        return b"close" not in connection
    return b"keep-alive" in connection and b"close" not in connection


def expects_continue(version: tuple[int, int], headers: Headers) -> bool:
    """Whether the client waits for ``100 Continue``; other expectations are ``417``."""
    expectation = headers.tokens(b"expect")
    if not expectation or version < (1, 1):
        return False
    if expectation != [b"100-continue"]:
        raise Refusal(417, "only 100-continue is expected")
    return True


def chunk_size(frame: bytes) -> int:
    """The size of a chunk-size line cut at its LF (its extensions are ignored)."""
    try:
        size, _ = parse_chunk_line(content_of(frame))
    except MalformedError as error:
        raise Refusal(400, error.message) from None
    return size


__all__ = [
    "FieldSection",
    "Refusal",
    "body_length",
    "check_target",
    "chunk_size",
    "expects_continue",
    "head_rules",
    "is_authority_form",
    "keeps_alive",
    "request_line",
    "split_absolute_form",
    "valid_host",
]
