"""HTTP/1.1 messages (RFC 9112): request and status lines, field sections, chunked bodies.

Two levels, sharing every rule:

* Line readers — :func:`parse_request_line`, :func:`parse_field_line`,
  :func:`parse_chunk_line` and :func:`content_of` — check one line as an incremental
  reader cuts it (at each LF). A server declared as a state machine reads the head line by
  line with them, so each limit and each refusal is decided at the line that breaks it,
  however the bytes were cut into reads.
* Construct grammars, symmetric (what they build they parse back): :func:`request_head`
  and :func:`response_head` (a start line and its fields, through the blank line) and
  :func:`chunked` (a whole chunked body: its chunks, the last chunk and the trailers).
  The server builds its responses with them; tests round-trip them.

Strict by design, because two parsers that disagree about where a message ends are how
requests are smuggled (RFC 9112 §11.2). Every line ends with CRLF: a bare LF ends nothing
(:class:`MalformedError`, not a lenient line end), a CR anywhere else is refused. Field
names are tokens with no whitespace before the colon; a line starting with whitespace
(obs-fold) is refused; values hold visible ASCII, obs-text, SP and HTAB only (no NUL, no
other control). A chunk size is 1 to 16 hex digits, extensions follow the RFC's grammar.

Limits raise their own :class:`~grammars.TooLongError` subclasses so a server can answer
with the right status: :class:`RequestLineTooLong` (``414``), :class:`FieldsTooLarge`
(``431``); an HTTP version other than 1.0 and 1.1 is :class:`UnsupportedVersion`
(``505``); anything else malformed is a :class:`MalformedError` (``400``).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import IO, Any

from construct import stream_write

from grammars._base import Framing, human_size
from grammars.errors import InvalidValueError, MalformedError, TooLongError, TruncatedError

CRLF = b"\r\n"
#: a request line, its CRLF not counted (longer: ``414 URI Too Long``)
MAX_REQUEST_LINE = 8 << 10
#: bytes of one field section, line ends included (more: ``431``)
MAX_FIELD_BYTES = 64 << 10
#: field lines in one section (more: ``431``)
MAX_FIELDS = 100
#: a chunk-size line with its extensions, CRLF not counted
MAX_CHUNK_LINE = 4 << 10
#: hex digits of a chunk size: 16 hold any 64-bit size
MAX_CHUNK_DIGITS = 16

#: (name, value) pairs as they arrived, names in their original case
Fields = tuple[tuple[bytes, bytes], ...]

_DIGITS = b"0123456789"
_ALPHA = bytes(range(0x41, 0x5B)) + bytes(range(0x61, 0x7B))
_TCHARS = b"!#$%&'*+-.^_`|~" + _DIGITS + _ALPHA
_HEX = b"0123456789abcdefABCDEF"
#: what a field value may hold: VCHAR, obs-text, SP, HTAB
_VALUE_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100)) + b" \t"
#: what a request target may hold: VCHAR
_TARGET_BYTES = bytes(range(0x21, 0x7F))
_QDTEXT = b"\t !" + bytes(range(0x23, 0x5C)) + bytes(range(0x5D, 0x7F)) + bytes(range(0x80, 0x100))
_OWS = b" \t"
_VERSIONS = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}

#: the reason phrase of each status Python's ``http.HTTPStatus`` knows (the IANA registry's
#: codes), in RFC 9110's words where it renamed one (``413 Content Too Large``, ``422
#: Unprocessable Content``); other statuses get an empty phrase (``HTTP/1.1 299 ``), which
#: RFC 9112 §4 allows
REASONS: dict[int, bytes] = {
    **{status.value: status.phrase.encode("ascii") for status in HTTPStatus},
    413: b"Content Too Large",
    414: b"URI Too Long",
    416: b"Range Not Satisfiable",
    422: b"Unprocessable Content",
}


class RequestLineTooLong(TooLongError):
    """The request line is longer than its limit (``414 URI Too Long``)."""


class FieldsTooLarge(TooLongError):
    """A field section has too many bytes or lines (``431``)."""


class UnsupportedVersion(MalformedError):
    """A well-formed HTTP version other than 1.0 and 1.1 (``505``)."""


def is_token(data: bytes) -> bool:
    """Whether ``data`` is an RFC 9110 token (a method, a field name, a coding)."""
    return bool(data) and not data.translate(None, _TCHARS)


def _only(data: bytes, allowed: bytes) -> bool:
    return not data.translate(None, allowed)


# -- lines ---------------------------------------------------------------------------------


def content_of(frame: bytes, offset: int = 0) -> bytes:
    """A line as cut at its LF (``frame`` is what came before the LF): the bytes before
    its CR. A line without that CR (a bare LF) or with a CR elsewhere (a bare CR) is
    refused: both are ways parsers disagree about where a line ends."""
    if frame[-1:] != b"\r":
        raise MalformedError("line ended by a bare LF (CRLF expected)", offset=offset)
    content = frame[:-1]
    if b"\r" in content:
        raise MalformedError("bare CR in a line", offset=offset + content.index(b"\r"))
    return content


def parse_request_line(line: bytes) -> tuple[bytes, bytes, tuple[int, int]]:
    """``method SP request-target SP HTTP-version`` (CRLF removed): the method, the target
    and the version as ``(major, minor)``; exactly one space between the parts."""
    parts = line.split(b" ")
    if len(parts) != 3:
        raise MalformedError("request line is not: method SP target SP version")
    method, target, version = parts
    if not is_token(method):
        raise MalformedError("method is not a token")
    if not target or not _only(target, _TARGET_BYTES):
        raise MalformedError("request target is empty or holds a byte that is not VCHAR")
    known = _VERSIONS.get(version)
    if known is None:
        if (
            len(version) == 8
            and version[:5] == b"HTTP/"
            and version[5] in _DIGITS
            and version[6] == 0x2E
            and version[7] in _DIGITS
        ):
            raise UnsupportedVersion(f"HTTP version {version.decode()} is not supported")
        raise MalformedError("malformed HTTP version")
    return method, target, known


def request_line_of(frame: bytes) -> tuple[bytes, bytes, tuple[int, int]]:
    """:func:`parse_request_line` of :func:`content_of` ``frame``, in one call: a
    well-formed line costs one split and two scans; anything else is left to those two,
    which refuse it with their own errors (so both paths refuse exactly the same lines)."""
    if frame[-1:] == b"\r":
        parts = frame[:-1].split(b" ")
        if len(parts) == 3:
            method, target, version = parts
            known = _VERSIONS.get(version)
            if (
                known is not None
                and method
                and target
                and not method.translate(None, _TCHARS)
                and not target.translate(None, _TARGET_BYTES)
            ):
                return method, target, known
    return parse_request_line(content_of(frame))


def field_of(frame: bytes) -> tuple[bytes, bytes] | None:
    """:func:`parse_field_line` of :func:`content_of` ``frame`` (a field line as cut at its
    LF), in one call; ``None`` for the blank line that ends a field section. A
    well-formed line costs one search and two scans (a CR, whitespace before the colon or
    a control byte all fail them); anything else is left to those two, which refuse it
    with their own errors."""
    if frame[-1:] == b"\r":
        colon = frame.find(b":")
        if colon > 0:
            name = frame[:colon]
            value = frame[colon + 1 : -1].strip(_OWS)
            if not name.translate(None, _TCHARS) and not value.translate(None, _VALUE_BYTES):
                return name, value
        elif len(frame) == 1:
            return None
    content = content_of(frame)
    return parse_field_line(content) if content else None


def fields_of(frames: list[bytes]) -> list[tuple[bytes, bytes]] | None:
    """:func:`field_of` of each of ``frames`` (field lines as cut at their LF, none of them
    blank) in one call, when every one is the common well-formed line :func:`field_of`
    reads at once; ``None`` when any is not (each is then for :func:`field_of`, which
    reads or refuses it)."""
    fields = []
    for frame in frames:
        colon = frame.find(b":")
        if colon <= 0 or frame[-1:] != b"\r":
            return None
        name = frame[:colon]
        value = frame[colon + 1 : -1].strip(_OWS)
        if name.translate(None, _TCHARS) or value.translate(None, _VALUE_BYTES):
            return None
        fields.append((name, value))
    return fields


def list_tokens(value: bytes) -> list[bytes]:
    """The elements of a comma-separated field value (``Connection``, ``Transfer-Encoding``),
    lower-cased, their surrounding SP and HTAB dropped, empty ones kept."""
    return [part.strip(_OWS) for part in value.lower().split(b",")]


def parse_field_line(line: bytes) -> tuple[bytes, bytes]:
    """``field-name ":" OWS field-value OWS`` (CRLF removed): the name as sent and the
    value without its surrounding whitespace."""
    if line[:1] in (b" ", b"\t"):
        raise MalformedError("obs-fold (a field line starting with whitespace)")
    colon = line.find(b":")
    if colon < 0:
        raise MalformedError("field line without a colon")
    name = line[:colon]
    if not is_token(name):
        if name.rstrip(_OWS) != name:
            raise MalformedError("whitespace between a field name and its colon")
        raise MalformedError("field name is not a token")
    value = line[colon + 1 :].strip(_OWS)
    if not _only(value, _VALUE_BYTES):
        raise MalformedError(f"control character in the value of {name.decode()}")
    return name, value


def parse_chunk_line(line: bytes) -> tuple[int, tuple[tuple[bytes, bytes | None], ...]]:
    """``chunk-size [ chunk-ext ]`` (CRLF removed): the size and the extensions as
    ``(name, value or None)`` pairs, a quoted value without its quotes and escapes."""
    if len(line) > MAX_CHUNK_LINE:
        raise MalformedError(f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
    end = 0
    while end < len(line) and line[end] in _HEX:
        end += 1
    if end == 0:
        raise MalformedError("chunk size is not hexadecimal")
    if end > MAX_CHUNK_DIGITS:
        raise MalformedError(f"chunk size of more than {MAX_CHUNK_DIGITS} hex digits")
    size = int(line[:end], 16)
    extensions: list[tuple[bytes, bytes | None]] = []
    rest = line[end:]
    while rest:
        rest = rest.lstrip(_OWS)
        if rest[:1] != b";":
            raise MalformedError("chunk size followed by something other than an extension")
        rest = rest[1:].lstrip(_OWS)
        name, rest = _token_prefix(rest)
        if not name:
            raise MalformedError("chunk extension without a name")
        after = rest.lstrip(_OWS)
        value: bytes | None = None
        if after[:1] == b"=":
            after = after[1:].lstrip(_OWS)
            if after[:1] == b'"':
                value, rest = _quoted_prefix(after)
            else:
                value, rest = _token_prefix(after)
                if not value:
                    raise MalformedError("chunk extension value is neither token nor quoted")
        elif after and after[:1] != b";":
            raise MalformedError("malformed chunk extension")
        extensions.append((name, value))
    return size, tuple(extensions)


def _token_prefix(data: bytes) -> tuple[bytes, bytes]:
    end = 0
    while end < len(data) and data[end] in _TCHARS:
        end += 1
    return data[:end], data[end:]


def _quoted_prefix(data: bytes) -> tuple[bytes, bytes]:
    """The quoted string at the start of ``data`` (its ``"`` included) unescaped, and the
    rest after its closing quote."""
    value = bytearray()
    i = 1
    while i < len(data):
        c = data[i]
        if c == 0x22:
            return bytes(value), data[i + 1 :]
        if c == 0x5C and i + 1 < len(data) and data[i + 1] in _QDTEXT + b'"\\':
            value.append(data[i + 1])
            i += 2
            continue
        if c not in _QDTEXT:
            raise MalformedError("bad byte in a quoted chunk extension value")
        value.append(c)
        i += 1
    raise MalformedError("unterminated quoted chunk extension value")


# -- heads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestHead:
    """A request's start line and fields."""

    method: bytes
    target: bytes
    version: tuple[int, int] = (1, 1)
    fields: Fields = ()


@dataclass(frozen=True)
class ResponseHead:
    """A response's status line and fields; ``reason`` defaults to the status's own."""

    status: int
    fields: Fields = ()
    reason: bytes | None = None
    version: tuple[int, int] = (1, 1)


def _read_lines(
    stream: IO[bytes], path: str, first_limit: int, first_error: type[TooLongError]
) -> tuple[bytes, list[bytes], int]:
    """The start line and field lines of a head at the stream's position, through the
    blank line; the limits are checked as they are met."""
    start = stream.tell()
    data = stream.read(first_limit + 2 + MAX_FIELD_BYTES + 2)
    lines: list[bytes] = []
    pos = 0
    field_bytes = 0
    while True:
        newline = data.find(b"\n", pos)
        first = not lines
        limit = first_limit + 1 if first else MAX_FIELD_BYTES - field_bytes
        if newline < 0 or newline - pos > limit:
            if len(data) - pos > limit:
                if first:
                    raise first_error(
                        f"start line longer than {first_limit} bytes",
                        limit=first_limit,
                        offset=start + pos,
                        path=path,
                    )
                raise FieldsTooLarge(
                    f"fields over {human_size(MAX_FIELD_BYTES)}",
                    limit=MAX_FIELD_BYTES,
                    offset=start + pos,
                    path=path,
                )
            raise TruncatedError(
                "stream ended inside an HTTP head",
                needed=start + len(data) + 1,
                offset=start + len(data),
                path=path,
            )
        try:
            content = content_of(data[pos:newline], start + pos)
        except MalformedError as error:
            error.path = path
            raise
        if not first:
            field_bytes += newline + 1 - pos
        pos = newline + 1
        if not content and not first:
            stream.seek(start + pos)
            return lines[0], lines[1:], start
        if len(lines) > MAX_FIELDS:
            raise FieldsTooLarge(
                f"more than {MAX_FIELDS} fields", limit=MAX_FIELDS, offset=start + pos, path=path
            )
        lines.append(content)


def _parse_fields(lines: list[bytes], offset: int, path: str) -> Fields:
    try:
        return tuple(parse_field_line(line) for line in lines)
    except MalformedError as error:
        error.offset, error.path = offset, path
        raise


def field_line(name: bytes, value: bytes, path: str = "(field)") -> bytes:
    """The field line ``name: value`` of a head, its CRLF included; a name that is not a
    token, or a value with surrounding whitespace or a control byte (a CR or LF that
    would start another field) is an :class:`InvalidValueError`."""
    if not is_token(name):
        raise InvalidValueError(f"field name {name!r} is not a token", path=path)
    if value != value.strip(_OWS) or not _only(value, _VALUE_BYTES):
        raise InvalidValueError(
            f"value of {name!r} has surrounding whitespace or a control byte", path=path
        )
    return b"%s: %s\r\n" % (name, value)


def _build_fields(fields: Fields, path: str) -> bytes:
    return b"".join([field_line(name, value, path) for name, value in fields])


#: status lines built so far, by (status, version) (see :func:`status_line`)
_STATUS_LINES: dict[tuple[int, tuple[int, int]], bytes] = {}


def status_line(status: int, version: tuple[int, int] = (1, 1)) -> bytes:
    """The status line of a response (CRLF included) with the status's usual reason
    phrase: what :func:`build_response_head` starts with, built once per status."""
    line = _STATUS_LINES.get((status, version))
    if line is None:
        if not 100 <= status <= 999:
            raise InvalidValueError("a status is 100-999", path="(status line)")
        reason = REASONS.get(status, b"")
        line = b"%s %d %s\r\n" % (_version(version, "(status line)"), status, reason)
        if len(_STATUS_LINES) < 1024:
            _STATUS_LINES[status, version] = line
    return line


def _version(version: tuple[int, int], path: str) -> bytes:
    if version not in ((1, 0), (1, 1)):
        raise InvalidValueError(f"HTTP version {version} is not 1.0 or 1.1", path=path)
    return b"HTTP/%d.%d" % version


class RequestHeadGrammar(Framing):
    """A request head: request line, fields, blank line (see the module)."""

    def describe(self) -> str:
        return f"HTTP request head ≤ {human_size(MAX_FIELD_BYTES)}"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> RequestHead:
        line, lines, start = _read_lines(stream, path, MAX_REQUEST_LINE, RequestLineTooLong)
        try:
            method, target, version = parse_request_line(line)
        except MalformedError as error:
            error.offset, error.path = start, path
            raise
        return RequestHead(method, target, version, _parse_fields(lines, start, path))

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        if not isinstance(obj, RequestHead):
            raise InvalidValueError("a request head is a RequestHead", path=path)
        if not is_token(obj.method) or not obj.target or not _only(obj.target, _TARGET_BYTES):
            raise InvalidValueError("method is not a token or target not VCHAR", path=path)
        start = b"%s %s %s" % (obj.method, obj.target, _version(obj.version, path))
        if len(start) > MAX_REQUEST_LINE:
            raise RequestLineTooLong("request line too long", limit=MAX_REQUEST_LINE, path=path)
        wire = start + CRLF + _build_fields(obj.fields, path) + CRLF
        stream_write(stream, wire, len(wire), path)
        return obj


class ResponseHeadGrammar(Framing):
    """A response head: status line, fields, blank line."""

    def describe(self) -> str:
        return f"HTTP response head ≤ {human_size(MAX_FIELD_BYTES)}"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> ResponseHead:
        line, lines, start = _read_lines(stream, path, MAX_REQUEST_LINE, TooLongError)
        parts = line.split(b" ", 2)
        if (
            len(parts) < 2
            or parts[0] not in _VERSIONS
            or len(parts[1]) != 3
            or not _only(parts[1], _DIGITS)
        ):
            raise MalformedError("malformed status line", offset=start, path=path)
        reason = parts[2] if len(parts) == 3 else b""
        fields = _parse_fields(lines, start, path)
        return ResponseHead(int(parts[1]), fields, reason, _VERSIONS[parts[0]])

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        wire = build_response_head(obj, path)
        stream_write(stream, wire, len(wire), path)
        return obj


def build_response_head(head: object, path: str = "(response head)") -> bytes:
    """The bytes of a :class:`ResponseHead` (what ``response_head().build`` gives, without
    construct's machinery: a server builds one per response)."""
    if not isinstance(head, ResponseHead) or not 100 <= head.status <= 999:
        raise InvalidValueError("a response head is a ResponseHead, status 100-999", path=path)
    reason = REASONS.get(head.status, b"") if head.reason is None else head.reason
    if not _only(reason, _VALUE_BYTES):
        raise InvalidValueError("reason phrase holds a control byte", path=path)
    return b"%s %d %s\r\n%s\r\n" % (
        _version(head.version, path),
        head.status,
        reason,
        _build_fields(head.fields, path),
    )


def request_head() -> RequestHeadGrammar:
    """A request head.

    >>> request_head().parse(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    RequestHead(method=b'GET', target=b'/', version=(1, 1), fields=((b'Host', b'a'),))
    """
    return RequestHeadGrammar()


def response_head() -> ResponseHeadGrammar:
    """A response head.

    >>> response_head().build(ResponseHead(204))
    b'HTTP/1.1 204 No Content\\r\\n\\r\\n'
    """
    return ResponseHeadGrammar()


# -- chunked bodies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunked:
    """A chunked body: its chunks (none empty) and its trailer fields."""

    chunks: tuple[bytes, ...] = ()
    trailers: Fields = ()


def chunk_header(size: int) -> bytes:
    """The chunk-size line (CRLF included) of a chunk of ``size`` bytes."""
    return b"%x\r\n" % size


#: the last chunk of a body without trailers
LAST_CHUNK = b"0\r\n\r\n"


class ChunkedGrammar(Framing):
    """A whole chunked body (the server reads one chunk at a time instead, in states)."""

    def describe(self) -> str:
        return "chunked body"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Chunked:
        start = stream.tell()
        data = stream.read()
        chunks: list[bytes] = []
        pos = 0

        def line_at(pos: int) -> tuple[bytes, int]:
            newline = data.find(b"\n", pos)
            if newline < 0:
                raise TruncatedError(
                    "stream ended inside a chunked body",
                    needed=start + len(data) + 1,
                    offset=start + len(data),
                    path=path,
                )
            return content_of(data[pos:newline], start + pos), newline + 1

        try:
            while True:
                line, pos = line_at(pos)
                size, _ = parse_chunk_line(line)
                if size == 0:
                    break
                if pos + size + 2 > len(data):
                    raise TruncatedError(
                        "stream ended inside a chunk",
                        needed=start + pos + size + 2,
                        offset=start + len(data),
                        path=path,
                    )
                if data[pos + size : pos + size + 2] != CRLF:
                    raise MalformedError("chunk data not followed by CRLF", offset=start + pos)
                chunks.append(data[pos : pos + size])
                pos += size + 2
            trailers = []
            while True:
                line, pos = line_at(pos)
                if not line:
                    break
                trailers.append(parse_field_line(line))
        except MalformedError as error:
            error.path = path
            raise
        stream.seek(start + pos)
        return Chunked(tuple(chunks), tuple(trailers))

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        if not isinstance(obj, Chunked) or not all(obj.chunks):
            raise InvalidValueError("a chunked body is a Chunked of non-empty chunks", path=path)
        wire = (
            b"".join(chunk_header(len(c)) + c + CRLF for c in obj.chunks)
            + b"0\r\n"
            + _build_fields(obj.trailers, path)
            + CRLF
        )
        stream_write(stream, wire, len(wire), path)
        return obj


def chunked() -> ChunkedGrammar:
    """A chunked body.

    >>> chunked().build(Chunked((b"hello",)))
    b'5\\r\\nhello\\r\\n0\\r\\n\\r\\n'
    """
    return ChunkedGrammar()


__all__ = [
    "LAST_CHUNK",
    "MAX_CHUNK_LINE",
    "MAX_FIELDS",
    "MAX_FIELD_BYTES",
    "MAX_REQUEST_LINE",
    "REASONS",
    "Chunked",
    "ChunkedGrammar",
    "Fields",
    "FieldsTooLarge",
    "RequestHead",
    "RequestHeadGrammar",
    "RequestLineTooLong",
    "ResponseHead",
    "ResponseHeadGrammar",
    "UnsupportedVersion",
    "build_response_head",
    "chunk_header",
    "chunked",
    "content_of",
    "field_line",
    "field_of",
    "fields_of",
    "is_token",
    "list_tokens",
    "parse_chunk_line",
    "parse_field_line",
    "parse_request_line",
    "request_head",
    "request_line_of",
    "response_head",
    "status_line",
]
