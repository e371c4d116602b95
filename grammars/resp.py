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

    def _line(self, buf: bytes, i: int, end: int) -> tuple[bytes, int]:
        crlf = buf.find(CRLF, i, min(end, i + MAX_INLINE + 2))
        if crlf < 0:
            if end - i > MAX_INLINE:
                raise TooLongError("RESP line too long", limit=MAX_INLINE, offset=i)
            raise _Incomplete
        return bytes(buf[i:crlf]), crlf + 2

    def _length(self, buf: bytes, i: int, end: int, base: int, limit: int) -> tuple[int, int]:
        text, after = self._line(buf, i + 1, end)
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
        text, after = self._line(buf, i + 1, end)
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


class _Incomplete(Exception):
    """More bytes are needed (internal to :meth:`Resp.scan`)."""


def _big(text: bytes) -> int | None:
    body = text[1:] if text[:1] == b"-" else text
    return int(text) if body.isdigit() else None


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
