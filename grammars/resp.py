"""RESP, the Redis serialization protocol: replies (RESP2 and RESP3) and requests.

Two grammars, both symmetric (what they build they parse back):

* :func:`resp` — one RESP *value*, as a server replies or a client reads. RESP2 types
  (``+`` simple string, ``-`` error, ``:`` integer, ``$`` bulk string, ``*`` array, with the
  nulls ``$-1`` and ``*-1``) and RESP3 types (``_`` null, ``#`` boolean, ``,`` double,
  ``(`` big number, ``!`` blob error, ``=`` verbatim string, ``%`` map, ``~`` set, ``>``
  push, ``|`` attribute). A ``resp(2)`` grammar builds RESP3 values the way Redis answers a
  RESP2 client (a map as a flat array, a boolean as ``:1``, a double as a bulk string...),
  so a server builds its replies once and picks the grammar per connection (``HELLO``).
* :func:`request` — one *command*: an array of bulk strings (``*2\\r\\n$3\\r\\nGET...``), or an
  inline command typed by hand (``PING\\r\\n``, split on spaces and quotes as Redis does).
  Its value is the list of arguments as bytes; ``*0``, ``*-1`` and blank inline lines are
  the empty list (Redis ignores them).

Limits are refused from the header, before any body byte is read: a bulk string longer
than ``max_bulk`` (512 MiB by default, as Redis's ``proto-max-bulk-len``), an array of more
than ``max_array`` elements, an inline line of more than ``max_inline`` bytes without its
newline. Request errors carry Redis's own words (``Protocol error: invalid bulk length``),
so a server can answer ``-ERR`` plus the message as Redis does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from construct import stream_write

from grammars._base import Framing, human_size
from grammars.errors import InvalidValueError, MalformedError, TooLongError, TruncatedError

CRLF = b"\r\n"
#: Redis's ``proto-max-bulk-len`` default
MAX_BULK = 512 << 20
#: elements of one array (a command's arguments)
MAX_ARRAY = 1 << 20
#: Redis's ``PROTO_INLINE_MAX_SIZE``: an inline command, or a header, without its newline
MAX_INLINE = 64 << 10
#: nesting of aggregate replies
MAX_DEPTH = 64
#: the longest integer header: ``-`` and the 19 digits of a 64-bit integer
_MAX_DIGITS = 20


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simple:
    """A simple string (``+OK``): no CR or LF inside."""

    text: bytes


@dataclass(frozen=True)
class Error:
    """An error reply (``-ERR message``); its first word is the error's kind."""

    text: bytes


@dataclass(frozen=True)
class BlobError:
    """A RESP3 blob error (``!``): an error that may hold any bytes."""

    text: bytes


@dataclass(frozen=True)
class BigNumber:
    """A RESP3 big number (``(``): an integer of any size."""

    value: int


@dataclass(frozen=True)
class Verbatim:
    """A RESP3 verbatim string (``=``): a 3-byte format (``txt``, ``mkd``) and the text."""

    format: bytes
    text: bytes


@dataclass(frozen=True)
class Map:
    """A RESP3 map (``%``) as its pairs, in order; a ``dict`` builds one too."""

    items: tuple[tuple[Any, Any], ...]


@dataclass(frozen=True)
class Set:
    """A RESP3 set (``~``) as its elements, in order; a ``set`` builds one too."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class Push:
    """A RESP3 push (``>``): out-of-band data such as a pub/sub message."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class Attributed:
    """A RESP3 value preceded by an attribute map (``|``)."""

    attributes: Map
    value: Any


class _NullArray:
    """The RESP2 null array (``*-1``); RESP3 builds it as its one null (``_``)."""

    _instance: _NullArray | None = None

    def __new__(cls) -> _NullArray:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()
OK = Simple(b"OK")


# -- integers in headers -----------------------------------------------------------------


def parse_integer(digits: bytes) -> int | None:
    """A header's integer as Redis's ``string2ll`` reads it: an optional ``-``, then
    digits with no leading zero (``0`` alone is fine), within 64 bits; else ``None``."""
    body = digits[1:] if digits[:1] == b"-" else digits
    if not body.isdigit() or (body[0] == 0x30 and (len(body) > 1 or body is not digits)):
        return None
    value = int(digits)
    return value if -(1 << 63) <= value < (1 << 63) else None


def read_header(
    buf: bytes | bytearray, start: int, end: int, what: str, base: int = 0
) -> tuple[int, int] | None:
    """The integer of the header line at ``buf[start]`` (its type byte included) and the
    index after its CRLF; ``None`` if the line is not complete yet. A line that cannot be
    a header raises :class:`MalformedError`: ``Protocol error: invalid {what} length``."""
    stop = min(end, start + _MAX_DIGITS + 2)
    cr = buf.find(b"\r", start + 1, stop)
    if cr < 0 or cr + 1 >= end:
        partial = bytes(buf[start + 1 : stop if cr < 0 else cr])
        if len(partial) > _MAX_DIGITS or (
            partial not in (b"", b"-") and (parse_integer(partial) is None)
        ):
            # no valid header can start so: refuse now, as Redis does once the CR comes
            raise MalformedError(f"Protocol error: invalid {what} length", offset=base + start)
        return None
    value = parse_integer(bytes(buf[start + 1 : cr]))
    if value is None or buf[cr + 1] != 0x0A:
        raise MalformedError(f"Protocol error: invalid {what} length", offset=base + start)
    return value, cr + 2


# -- requests ----------------------------------------------------------------------------

_SPACES = b" \t\n\r\x0b\x0c"
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command into words as Redis's ``sdssplitargs`` does: spaces
    separate words; ``"..."`` takes ``\\n``, ``\\xHH``... escapes, ``'...'`` only ``\\'``;
    a closing quote must end its word. ``None`` for unbalanced quotes."""
    if not any(c in line for c in (b'"', b"'", b"\0", b"\x0b", b"\x0c")):
        return line.split()  # the common case: nothing but plain words
    # Redis splits a C string: a NUL ends the line
    line = line.split(b"\0", 1)[0]
    words: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACES:
            i += 1
        if i >= n:
            return words
        word = bytearray()
        quote = 0
        while True:
            if i >= n:
                if quote:
                    return None
                break
            c = line[i]
            if quote == 0x22:
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == 0x78
                    and (line[i + 2] in _HEX and line[i + 3] in _HEX)
                ):
                    word.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    word.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in _SPACES:
                        return None
                    i += 1
                    break
                else:
                    word.append(c)
            elif quote == 0x27:
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    word.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in _SPACES:
                        return None
                    i += 1
                    break
                else:
                    word.append(c)
            elif c in b" \n\r\t":
                break  # the loop above skips it
            elif c in (0x22, 0x27):
                quote = c
            else:
                word.append(c)
            i += 1
        words.append(bytes(word))


class Request(Framing):
    """One Redis command: an array of bulk strings, or an inline line (see the module)."""

    def __init__(
        self,
        max_bulk: int = MAX_BULK,
        max_array: int = MAX_ARRAY,
        max_inline: int = MAX_INLINE,
        oversize: str = "invalid",
    ) -> None:
        super().__init__()
        if min(max_bulk, max_array, max_inline) < 0:
            raise ValueError("limits must be >= 0")
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_inline = max_inline
        #: the word for a length over a limit: Redis says ``invalid``, or ``unauthenticated``
        #: for the tighter limits it sets before AUTH
        self.oversize = oversize

    def describe(self) -> str:
        return f"RESP command ≤ {self.max_array} args of {human_size(self.max_bulk)}"

    def scan(
        self, buf: bytes, start: int, end: int, base: int = 0
    ) -> tuple[list[bytes], int] | None:
        """The command at ``buf[start:end]`` and the index after it, or ``None`` when more
        bytes are needed. Raises :class:`MalformedError` or :class:`TooLongError` (with
        Redis's words) as soon as the bytes seen prove the command bad; the error's offset
        is ``base`` plus the index of the bad header in ``buf``."""
        if start >= end:
            return None
        if buf[start] != 0x2A:  # "*"
            return self._scan_inline(buf, start, end, base)
        header = read_header(buf, start, end, "multibulk", base)
        if header is None:
            return None
        count, i = header
        if count > self.max_array:
            raise TooLongError(
                f"Protocol error: {self.oversize} multibulk length",
                limit=self.max_array,
                offset=base + start,
            )
        args: list[bytes] = []
        for _ in range(max(count, 0)):
            if i >= end:
                return None
            if buf[i] != 0x24:  # "$"
                got = bytes(buf[i : i + 1]).replace(b"\r", b" ").replace(b"\n", b" ")
                raise MalformedError(
                    f"Protocol error: expected '$', got '{got.decode('latin-1')}'",
                    offset=base + i,
                )
            header = read_header(buf, i, end, "bulk", base)
            if header is None:
                return None
            size, body = header
            if size < 0 or size > self.max_bulk:
                raise TooLongError(
                    f"Protocol error: {'invalid' if size < 0 else self.oversize} bulk length",
                    limit=self.max_bulk,
                    offset=base + i,
                )
            after = body + size
            if after + 2 > end:
                return None
            if buf[after : after + 2] != CRLF:
                raise MalformedError(
                    "Protocol error: expected CRLF after a bulk string", offset=base + after
                )
            args.append(bytes(buf[body:after]))
            i = after + 2
        return args, i

    def _scan_inline(
        self, buf: bytes, start: int, end: int, base: int
    ) -> tuple[list[bytes], int] | None:
        newline = buf.find(b"\n", start, min(end, start + self.max_inline + 1))
        if newline >= 0 and buf.find(b"\0", start, newline) >= 0:
            # Redis looks for the newline in a C string: a NUL hides it, and the line
            # waits until it is too long
            newline = -1
        if newline < 0:
            if end - start > self.max_inline:
                raise TooLongError(
                    "Protocol error: too big inline request",
                    limit=self.max_inline,
                    offset=base + start,
                )
            return None
        # Redis takes LF alone as the end of an inline command, dropping a CR before it
        stop = newline - 1 if newline > start and buf[newline - 1] == 0x0D else newline
        line = bytes(buf[start:stop])
        words = split_inline(line)
        if words is None:
            raise MalformedError(
                "Protocol error: unbalanced quotes in request", offset=base + start
            )
        return words, newline + 1

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> list[bytes]:
        start = stream.tell()
        buf = stream.read()
        try:
            found = self.scan(buf, 0, len(buf), base=start)
        except (MalformedError, TooLongError) as error:
            error.path = path
            raise
        if found is None:
            raise TruncatedError(
                "stream ended inside a RESP command",
                needed=start + len(buf) + 1,
                offset=start + len(buf),
                path=path,
            )
        args, after = found
        stream.seek(start + after)
        return args

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        if not isinstance(obj, (list, tuple)) or not all(
            isinstance(a, (bytes, bytearray)) for a in obj
        ):
            raise InvalidValueError("a RESP command is a list of bytes", path=path)
        if len(obj) > self.max_array:
            raise TooLongError(
                f"{len(obj)} arguments, more than max_array {self.max_array}",
                limit=self.max_array,
                path=path,
            )
        parts = [b"*%d\r\n" % len(obj)]
        for arg in obj:
            if len(arg) > self.max_bulk:
                raise TooLongError(
                    f"argument of {len(arg)} bytes, more than max_bulk {self.max_bulk}",
                    limit=self.max_bulk,
                    path=path,
                )
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        wire = b"".join(parts)
        stream_write(stream, wire, len(wire), path)
        return obj


def request(
    max_bulk: int = MAX_BULK,
    max_array: int = MAX_ARRAY,
    max_inline: int = MAX_INLINE,
    oversize: str = "invalid",
) -> Request:
    """One Redis command (its arguments as a list of bytes); a bulk over ``max_bulk`` or
    an array over ``max_array`` is refused as ``Protocol error: <oversize> bulk length``.

    >>> request().parse(b"*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n")
    [b'GET', b'k']
    >>> request().parse(b"SET k 'a b'\\r\\n")
    [b'SET', b'k', b'a b']
    >>> request().build([b"PING"])
    b'*1\\r\\n$4\\r\\nPING\\r\\n'
    """
    return Request(max_bulk, max_array, max_inline, oversize)


# -- values: building ----------------------------------------------------------------------


def format_double(value: float) -> bytes:
    """A double as RESP3 writes it (``inf``, ``-inf``, ``nan`` included)."""
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return repr(value).encode()


def _line_text(text: bytes, kind: str, path: str | None) -> bytes:
    if b"\r" in text or b"\n" in text:
        raise InvalidValueError(f"a {kind} cannot hold CR or LF", path=path)
    return text


class Resp(Framing):
    """One RESP value (see the module); ``version`` 2 or 3 says how values are built."""

    def __init__(
        self,
        version: int = 3,
        max_bulk: int = MAX_BULK,
        max_array: int = MAX_ARRAY,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        super().__init__()
        if version not in (2, 3):
            raise ValueError(f"RESP version is 2 or 3, got {version}")
        self.version = version
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_depth = max_depth

    def describe(self) -> str:
        return f"RESP{self.version} value"

    def encode(self, value: Any) -> bytes:
        """The bytes of ``value`` (faster than ``build``: no construct stream)."""
        kind = type(value)
        if kind is bytes:  # the replies of most commands, made at once
            return b"$%d\r\n%s\r\n" % (len(value), value)
        if kind is int:
            return b":%d\r\n" % value
        if value is None:
            return b"_\r\n" if self.version == 3 else b"$-1\r\n"
        if value is OK:
            return b"+OK\r\n"
        if kind is Simple:  # (PONG, QUEUED...: no list to join)
            return b"+%s\r\n" % _line_text(value.text, "simple string", None)
        out: list[bytes] = []
        self._encode(value, out, 0, None)
        return b"".join(out)

    def _encode(self, value: Any, out: list[bytes], depth: int, path: str | None) -> None:
        if depth > self.max_depth:
            raise InvalidValueError(f"nested deeper than max_depth {self.max_depth}", path=path)
        v3 = self.version == 3
        kind = type(value)
        if kind is bytes or kind is bytearray:
            out.append(b"$%d\r\n%s\r\n" % (len(value), value))
        elif kind is Simple:
            out.append(b"+%s\r\n" % _line_text(value.text, "simple string", path))
        elif kind is bool:  # before int: a bool is an int
            out.append((b"#t\r\n" if value else b"#f\r\n") if v3 else b":%d\r\n" % value)
        elif kind is int:
            out.append(b":%d\r\n" % value)
        elif kind is Error:
            out.append(b"-%s\r\n" % _line_text(value.text, "error", path))
        elif value is None:
            out.append(b"_\r\n" if v3 else b"$-1\r\n")
        elif value is NULL_ARRAY:
            out.append(b"_\r\n" if v3 else b"*-1\r\n")
        elif kind is list or kind is tuple:
            out.append(b"*%d\r\n" % len(value))
            for item in value:
                self._encode(item, out, depth + 1, path)
        elif kind is Map or kind is dict:
            pairs = list(value.items() if kind is dict else value.items)
            out.append(b"%%%d\r\n" % len(pairs) if v3 else b"*%d\r\n" % (2 * len(pairs)))
            for key, item in pairs:
                self._encode(key, out, depth + 1, path)
                self._encode(item, out, depth + 1, path)
        elif kind is Set or kind is set or kind is frozenset:
            self._aggregate(b"~" if v3 else b"*", _items(value), out, depth, path)
        elif kind is Push:
            self._aggregate(b">" if v3 else b"*", value.items, out, depth, path)
        elif kind is float:
            text = format_double(value)
            out.append(b",%s\r\n" % text if v3 else b"$%d\r\n%s\r\n" % (len(text), text))
        elif kind is BigNumber:
            text = b"%d" % value.value
            out.append(b"(%s\r\n" % text if v3 else b"$%d\r\n%s\r\n" % (len(text), text))
        elif kind is BlobError:
            if v3:
                out.append(b"!%d\r\n%s\r\n" % (len(value.text), value.text))
            else:
                out.append(b"-%s\r\n" % _line_text(value.text, "RESP2 error", path))
        elif kind is Verbatim:
            if len(value.format) != 3 or b":" in value.format:
                raise InvalidValueError("a verbatim format is 3 bytes, no ':'", path=path)
            if v3:
                body = value.format + b":" + value.text
                out.append(b"=%d\r\n%s\r\n" % (len(body), body))
            else:
                out.append(b"$%d\r\n%s\r\n" % (len(value.text), value.text))
        elif kind is Attributed:
            if v3:  # RESP2 has no attributes: they are dropped, as Redis does
                pairs = value.attributes.items
                out.append(b"|%d\r\n" % len(pairs))
                for key, item in pairs:
                    self._encode(key, out, depth + 1, path)
                    self._encode(item, out, depth + 1, path)
            self._encode(value.value, out, depth + 1, path)
        else:
            raise InvalidValueError(f"no RESP type for {kind.__name__}", path=path)

    def _aggregate(
        self, tag: bytes, items: Iterable[Any], out: list[bytes], depth: int, path: str | None
    ) -> None:
        items = list(items)
        out.append(b"%s%d\r\n" % (tag, len(items)))
        for item in items:
            self._encode(item, out, depth + 1, path)

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        out: list[bytes] = []
        self._encode(obj, out, 0, path)
        wire = b"".join(out)
        stream_write(stream, wire, len(wire), path)
        return obj

    # -- values: parsing -------------------------------------------------------------------

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Any:
        start = stream.tell()
        buf = stream.read()
        found = self.scan(buf, 0, len(buf), base=start)
        if found is None:
            raise TruncatedError(
                "stream ended inside a RESP value",
                needed=start + len(buf) + 1,
                offset=start + len(buf),
                path=path,
            )
        value, after = found
        stream.seek(start + after)
        return value

    def scan(self, buf: bytes, start: int, end: int, base: int = 0) -> tuple[Any, int] | None:
        """The value at ``buf[start:end]`` and the index after it, or ``None`` when more
        bytes are needed; malformed or oversize values raise at once."""
        try:
            return self._value(buf, start, end, base, 0)
        except _Incomplete:
            return None

    def _line(self, buf: bytes, i: int, end: int, base: int) -> tuple[bytes, int]:
        """The text of the line at ``buf[i]`` (just after its type byte) and the index
        after its CRLF; a line too long is refused at its type byte's offset."""
        crlf = buf.find(CRLF, i, min(end, i + MAX_INLINE + 2))
        if crlf < 0:
            if _over_inline(buf, i, end):
                raise TooLongError("RESP line too long", limit=MAX_INLINE, offset=base + i - 1)
            raise _Incomplete
        return bytes(buf[i:crlf]), crlf + 2

    def _length(self, buf: bytes, i: int, end: int, base: int, limit: int) -> tuple[int, int]:
        text, after = self._line(buf, i + 1, end, base)
        size = parse_integer(text)
        if size is None or size < -1:
            raise MalformedError(f"bad RESP length {text!r}", offset=base + i)
        if size > limit:
            raise TooLongError(
                f"RESP length {size} over the limit {limit}", limit=limit, offset=base + i
            )
        return size, after

    def _blob(self, buf: bytes, i: int, end: int, base: int) -> tuple[bytes | None, int]:
        size, body = self._length(buf, i, end, base, self.max_bulk)
        if size < 0:
            return None, body
        if body + size + 2 > end:
            raise _Incomplete
        if buf[body + size : body + size + 2] != CRLF:
            raise MalformedError("expected CRLF after a RESP blob", offset=base + body + size)
        return bytes(buf[body : body + size]), body + size + 2

    def _value(self, buf: bytes, i: int, end: int, base: int, depth: int) -> tuple[Any, int]:
        if i >= end:
            raise _Incomplete
        if depth > self.max_depth:
            raise TooLongError(
                f"RESP value nested deeper than {self.max_depth}",
                limit=self.max_depth,
                offset=base + i,
            )
        tag = buf[i]
        if tag == 0x24:  # $
            return self._blob(buf, i, end, base)
        if tag in b"*%~>|":
            count, after = self._length(buf, i, end, base, self.max_array)
            if count < 0:
                if tag != 0x2A:
                    raise MalformedError("only arrays have a null length", offset=base + i)
                return NULL_ARRAY, after
            width = 2 if tag in b"%|" else 1
            items = []
            for _ in range(count * width):
                item, after = self._value(buf, after, end, base, depth + 1)
                items.append(item)
            if tag == 0x2A:
                return items, after
            if tag in b"%|":
                pairs = tuple(zip(items[::2], items[1::2], strict=True))
                if tag == 0x25:
                    return Map(pairs), after
                value, after = self._value(buf, after, end, base, depth + 1)
                return Attributed(Map(pairs), value), after
            return (Set if tag == 0x7E else Push)(tuple(items)), after
        if tag in b"!=":
            blob, after = self._blob(buf, i, end, base)
            if blob is None:
                raise MalformedError(
                    "a blob error or verbatim string cannot be null", offset=base + i
                )
            if tag == 0x21:
                return BlobError(blob), after
            if blob[3:4] != b":":
                raise MalformedError("a verbatim string starts with 'fmt:'", offset=base + i)
            return Verbatim(blob[:3], blob[4:]), after
        text, after = self._line(buf, i + 1, end, base)
        if tag == 0x2B:  # +
            return Simple(text), after
        if tag == 0x2D:  # -
            return Error(text), after
        if tag == 0x3A or tag == 0x28:  # : (
            number = parse_integer(text) if tag == 0x3A else _big(text)
            if number is None:
                raise MalformedError(f"bad RESP integer {text!r}", offset=base + i)
            return (number if tag == 0x3A else BigNumber(number)), after
        if tag == 0x5F and not text:  # _
            return None, after
        if tag == 0x23 and text in (b"t", b"f"):  # #
            return text == b"t", after
        if tag == 0x2C:  # ,
            try:
                return float(text), after
            except ValueError:
                pass
        raise MalformedError(f"bad RESP value starting {bytes(buf[i : i + 1])!r}", offset=base + i)


def _over_inline(buf: bytes | bytearray, i: int, end: int) -> bool:
    """Whether the line starting at ``buf[i]``, with no CRLF in ``buf[i:end]``, is over
    :data:`MAX_INLINE` already: a CR as the last of ``MAX_INLINE + 1`` bytes may still be
    the end of a line of ``MAX_INLINE`` (its LF in the next read)."""
    size = end - i
    return size > MAX_INLINE + 1 or (size == MAX_INLINE + 1 and buf[end - 1] != 0x0D)


class _Incomplete(Exception):
    """More bytes are needed (internal to :meth:`Resp.scan`)."""


def _big(text: bytes) -> int | None:
    body = text[1:] if text[:1] == b"-" else text
    if not body.isdigit():
        return None
    try:
        return int(text)
    except ValueError:  # past Python's digit limit for int(): refused as malformed
        return None


def _items(value: Any) -> tuple[Any, ...]:
    if isinstance(value, Set):
        return value.items
    return tuple(value)


def resp(
    version: int = 3,
    max_bulk: int = MAX_BULK,
    max_array: int = MAX_ARRAY,
    max_depth: int = MAX_DEPTH,
) -> Resp:
    """One RESP value, built for a ``version`` 2 or 3 peer (parsing reads both).

    >>> resp(2).build({b"proto": 2})
    b'*2\\r\\n$5\\r\\nproto\\r\\n:2\\r\\n'
    >>> resp(3).parse(b"%1\\r\\n+a\\r\\n#t\\r\\n")
    Map(items=((Simple(text=b'a'), True),))
    """
    return Resp(version, max_bulk, max_array, max_depth)


# -- values: reading a stream of them, resumably ---------------------------------------------

#: type bytes whose header line is a length: blobs, then aggregates
_BLOBS = b"$!="
_AGGREGATES = b"*%~>|"
#: a length header: the type byte, at most 20 characters, CRLF
_LENGTH_SPAN = _MAX_DIGITS + 3


def _aggregate_value(tag: int, items: list[Any]) -> Any:
    """The finished aggregate of type byte ``tag`` holding ``items``, as :func:`resp` reads it."""
    if tag == 0x2A:  # *
        return items
    if tag == 0x7E:  # ~
        return Set(tuple(items))
    if tag == 0x3E:  # >
        return Push(tuple(items))
    if tag == 0x25:  # %
        return Map(tuple(zip(items[::2], items[1::2], strict=True)))
    # |: the attributes' pairs, then the value they are about
    return Attributed(Map(tuple(zip(items[:-1:2], items[1:-1:2], strict=True))), items[-1])


class ReplyReader:
    """Reads RESP values — replies — from a stream cut anywhere, resuming where it stopped.

    :meth:`Resp.scan` reads a value whole; a value cut short is read again from its start
    once more bytes come, which costs a reply's size at every read that brings part of it.
    This reader keeps what it has read of an unfinished value instead: the aggregates still
    open, with the values they hold so far, and the offset of the next one; a header line
    searched for its CRLF is not searched again. Each byte of the stream is looked at a
    bounded number of times however it is cut: a 512 MiB bulk string fed a byte at a time,
    or a million-element array, costs time linear in its size.

    It reads what :meth:`Resp.scan` reads and refuses what it refuses (the tests hold the two
    equal), as early: a length over ``max_bulk`` or ``max_array`` or below -1, a null of a
    type that has none, nesting deeper than ``max_depth``, a type byte RESP does not have,
    a line of more than :data:`MAX_INLINE` bytes; a length header is refused as soon as it
    is longer than a 64-bit integer can be written. After an error, call :meth:`reset`.

    Two ways to use it: :meth:`feed` takes each read and returns the values it completed,
    keeping the bytes of an unfinished one; :meth:`scan` is the step under it, for a caller
    that keeps those bytes itself (an incremental framer).
    """

    __slots__ = (
        "_at",
        "_pending",
        "_seen",
        "_stack",
        "max_array",
        "max_bulk",
        "max_depth",
        "need",
        "offset",
    )

    def __init__(
        self, max_bulk: int = MAX_BULK, max_array: int = MAX_ARRAY, max_depth: int = MAX_DEPTH
    ) -> None:
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_depth = max_depth
        #: the bytes of the unfinished value (:meth:`feed` only)
        self._pending = bytearray()
        #: the stream offset of the first byte not in a value read whole (:meth:`feed`)
        self.offset = 0
        self.reset()

    def reset(self) -> None:
        """Forget the unfinished value, if any: the next byte starts a new one."""
        #: the aggregates open, outermost first: [type byte, values so far, values missing]
        self._stack: list[list[Any]] = []
        #: where, from the value's first byte, the next part of it starts
        self._at = 0
        #: where the CRLF of the line being read may start, from the value's first byte
        self._seen = 0
        #: how many bytes of the unfinished value must be there before it may progress
        #: (a blob's whole body); 0: any byte may help
        self.need = 0
        self._pending.clear()

    @property
    def unfinished(self) -> bool:
        """Whether :meth:`feed` holds the first bytes of a value whose rest has not come."""
        return bool(self._pending)

    def feed(self, data: bytes, values: list[Any] | None = None) -> list[Any]:
        """Append to ``values`` (a new list if not given), and return it, the values that
        ``data``, the next bytes of the stream, completes, in order; the bytes of a value
        it leaves unfinished are kept for the next call. A bad value raises
        :class:`MalformedError` or :class:`TooLongError`, its offset counted from the
        stream's first byte (``values`` then holds the values before it)."""
        if values is None:
            values = []
        pending = self._pending
        if pending:
            held = len(pending)
            pending += data
            if len(pending) < self.need:
                return values
            found = self.scan(pending, 0, len(pending), self.offset)
            if found is None:
                return values
            values.append(found[0])
            self.offset += found[1]
            data = data[found[1] - held :]
            pending.clear()
        i = self.read(data, 0, len(data), values, None, self.offset)
        if i < len(data):
            pending += memoryview(data)[i:]
        self.offset += i
        return values

    def read(
        self,
        data: bytes,
        start: int,
        end: int,
        values: list[Any],
        ends: list[int] | None = None,
        base: int = 0,
        limit: int = -1,
    ) -> int:
        """Append to ``values`` the whole values of ``data[start:end]`` (at most ``limit``
        of them; -1: all), and to ``ends``, if given, the index after each; return the
        index of the first byte not read: ``end``, the first byte of a value past the
        limit, or that of an unfinished value (then resume it with :meth:`scan`, given its
        bytes from there). A bad value raises, ``values`` and ``ends`` holding those
        before it (it starts at ``ends[-1]``, or ``start``); errors carry the offset
        ``base`` plus the index in ``data``."""
        # the commonest replies, whole, are read here (a bulk string, +OK, an integer);
        # anything else, or anything odd about these, by scan
        scan, find, max_bulk = self.scan, data.find, self.max_bulk
        append = values.append
        mark = None if ends is None else ends.append
        last = len(values) + limit if limit >= 0 else -1
        i = start
        while i < end:
            if len(values) == last:
                return i
            tag = data[i]
            if tag == 0x24:  # $
                cr = find(CRLF, i + 1, min(end, i + _LENGTH_SPAN))
                digits = data[i + 1 : cr] if cr > 0 else b""
                if digits.isdigit() and (digits[0] != 0x30 or len(digits) == 1):
                    size = int(digits)
                    stop = cr + 2 + size
                    if size <= max_bulk and stop + 2 <= end and data[stop : stop + 2] == CRLF:
                        append(data[cr + 2 : stop])
                        i = stop + 2
                        if mark is not None:
                            mark(i)
                        continue
            elif tag == 0x2B:  # +
                cr = find(CRLF, i + 1, min(end, i + MAX_INLINE + 3))
                if cr > 0:
                    text = data[i + 1 : cr]
                    append(OK if text == b"OK" else Simple(text))
                    i = cr + 2
                    if mark is not None:
                        mark(i)
                    continue
            elif tag == 0x3A:  # :
                cr = find(CRLF, i + 1, min(end, i + _LENGTH_SPAN))
                number = parse_integer(data[i + 1 : cr]) if cr > 0 else None
                if number is not None:
                    append(number)
                    i = cr + 2
                    if mark is not None:
                        mark(i)
                    continue
            found = scan(data, i, end, base)
            if found is None:
                return i
            append(found[0])
            i = found[1]
            if mark is not None:
                mark(i)
        return i

    def scan(
        self, buf: bytes | bytearray, start: int, end: int, base: int = 0
    ) -> tuple[Any, int] | None:
        """The value whose first byte is ``buf[start]`` and the index after it; ``None``
        while ``buf[start:end]`` is not all of it. The reader then remembers how far it
        got: the next call must give the same value's bytes from its first one, with more
        after them (only the new ones are looked at). Errors carry the offset ``base`` plus
        the index in ``buf`` of the header at fault."""
        stack = self._stack
        i = start + self._at
        seen = start + self._seen
        while True:
            if i >= end:
                return self._wait(i - start, 0, 0)
            if len(stack) > self.max_depth:  # (where the grammar refuses it: this value)
                raise TooLongError(
                    f"RESP value nested deeper than {self.max_depth}",
                    limit=self.max_depth,
                    offset=base + i,
                )
            tag = buf[i]
            if tag in _BLOBS or tag in _AGGREGATES:
                cr = buf.find(CRLF, i + 1, i + _LENGTH_SPAN)
                if cr < 0:
                    if end < i + _LENGTH_SPAN:
                        return self._wait(i - start, 0, 0)
                    raise MalformedError(
                        f"bad RESP length {bytes(buf[i + 1 : i + _LENGTH_SPAN])!r}",
                        offset=base + i,
                    )
                size = parse_integer(bytes(buf[i + 1 : cr]))
                if size is None or size < -1:
                    raise MalformedError(
                        f"bad RESP length {bytes(buf[i + 1 : cr])!r}", offset=base + i
                    )
                after = cr + 2
                if tag in _BLOBS:
                    if size > self.max_bulk:
                        raise TooLongError(
                            f"RESP length {size} over the limit {self.max_bulk}",
                            limit=self.max_bulk,
                            offset=base + i,
                        )
                    if size < 0:
                        if tag != 0x24:
                            raise MalformedError(
                                "a blob error or verbatim string cannot be null", offset=base + i
                            )
                        value: Any = None
                    else:
                        stop = after + size
                        if stop + 2 > end:
                            return self._wait(i - start, stop + 2 - start, 0)
                        if buf[stop : stop + 2] != CRLF:
                            raise MalformedError(
                                "expected CRLF after a RESP blob", offset=base + stop
                            )
                        value = bytes(buf[after:stop])
                        if tag == 0x21:  # !
                            value = BlobError(value)
                        elif tag == 0x3D:  # =
                            if value[3:4] != b":":
                                raise MalformedError(
                                    "a verbatim string starts with 'fmt:'", offset=base + i
                                )
                            value = Verbatim(value[:3], value[4:])
                        after = stop + 2
                else:
                    if size > self.max_array:
                        raise TooLongError(
                            f"RESP length {size} over the limit {self.max_array}",
                            limit=self.max_array,
                            offset=base + i,
                        )
                    if size < 0:
                        if tag != 0x2A:
                            raise MalformedError("only arrays have a null length", offset=base + i)
                        value = NULL_ARRAY
                    else:
                        left = size * 2 + (tag == 0x7C) if tag in b"%|" else size
                        if left:
                            stack.append([tag, [], left])
                            i = after
                            continue
                        value = _aggregate_value(tag, [])
            else:
                text_at = i + 1
                cr = buf.find(CRLF, max(text_at, seen), min(end, text_at + MAX_INLINE + 2))
                if cr < 0:
                    if _over_inline(buf, text_at, end):
                        raise TooLongError("RESP line too long", limit=MAX_INLINE, offset=base + i)
                    # the CR may be the last byte: look from it next time
                    return self._wait(i - start, 0, max(end - 1, text_at) - start)
                seen = 0
                value = _line_value(tag, bytes(buf[text_at:cr]), base + i)
                after = cr + 2
            i = after
            while stack:
                top = stack[-1]
                top[1].append(value)
                top[2] -= 1
                if top[2]:
                    break
                stack.pop()
                value = _aggregate_value(top[0], top[1])
            else:
                self._at = self._seen = self.need = 0
                return value, i

    def _wait(self, at: int, need: int, seen: int) -> tuple[Any, int] | None:
        """Remember how far the unfinished value was read; ``None`` (it is not all here)."""
        self._at = at
        self.need = need
        self._seen = seen
        return None


def _line_value(tag: int, text: bytes, offset: int) -> Any:
    """The value of a one-line reply of type byte ``tag`` (``+OK``, ``:1``, ``_``...)."""
    if tag == 0x2B:  # +
        return Simple(text)
    if tag == 0x2D:  # -
        return Error(text)
    if tag == 0x3A or tag == 0x28:  # : (
        number = parse_integer(text) if tag == 0x3A else _big(text)
        if number is None:
            raise MalformedError(f"bad RESP integer {text!r}", offset=offset)
        return number if tag == 0x3A else BigNumber(number)
    if tag == 0x5F and not text:  # _
        return None
    if tag == 0x23 and text in (b"t", b"f"):  # #
        return text == b"t"
    if tag == 0x2C:  # ,
        try:
            return float(text)
        except ValueError:
            pass
    raise MalformedError(f"bad RESP value starting {bytes([tag])!r}", offset=offset)
