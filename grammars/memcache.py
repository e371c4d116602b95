"""memcached's text protocol: command lines, data blocks and reply lines.

A request is a CRLF line of at most 2048 bytes (``set k 0 0 5``, ``get a b``, ``mg k v``);
storage commands (``set add replace append prepend cas`` and the meta ``ms``) are followed by
a data block of the announced size and its own CRLF. Framing stays the framings': the
command is a :func:`~grammars.line`, the block :func:`data_block` (``fixed(size + 2)`` whose
last two bytes must be CRLF). What this module adds is the meaning of a line, both ways:
:func:`parse_command` turns a line into a typed command, ``bytes(command)`` (or
:func:`build_command`) turns it back, and :func:`command` packs both into one construct
grammar for use on its own.

Mistakes are refused as memcached 1.6 refuses them (checked line by line against the real
server), and each error carries the reply memcached sends (``error.reply``): an unknown
command, or a known one with too few or too many words, is :class:`UnknownCommand`
(``ERROR``); a known one with a bad argument — a key over 250 bytes, a number that is not
one — is :class:`BadCommandLine` (``CLIENT_ERROR bad command line format``, or the more
precise words memcached uses for deltas, expiry times and meta flags); a data block whose
CRLF is missing is :class:`BadDataChunk` (``CLIENT_ERROR bad data chunk``). As memcached
does, a word where ``noreply`` may stand that is not ``noreply`` is ignored, and keys may hold
any byte but a space. An expiry time is read as memcached reads it, any 64-bit signed
number (what it means, memcached's 32 bits of it, is the server's business). One
deliberate difference: flags over 32 bits are refused, where memcached keeps their low 32
bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

from construct import Adapter

from grammars.errors import InvalidValueError, MalformedError
from grammars.fixed import Fixed
from grammars.line import Line

#: longest command line memcached reads (its own limit is 2048 bytes)
MAX_COMMAND = 2048
#: longest key memcached accepts
MAX_KEY = 250
#: largest data block memcached reads the length of (its ``INT_MAX - 2``); a larger one is
#: a bad command line, its block then read as commands
MAX_DATA = (1 << 31) - 3

STORAGE = frozenset({b"set", b"add", b"replace", b"append", b"prepend", b"cas"})
RETRIEVAL = frozenset({b"get", b"gets", b"gat", b"gats"})
ARITHMETIC = frozenset({b"incr", b"decr"})
META = frozenset({b"mg", b"ms", b"md", b"ma", b"mn", b"me"})
_FLAG_LETTERS = frozenset(bytes([letter]) for letter in b"bcfhklqstuvCDFIJLMNOPRT")
#: the letters memcached 1.6.18 takes as flags, by meta command (probed letter by letter:
#: one parser serves them all, so each takes every letter, ``I`` in ``mg`` as ``D`` in
#: ``md``, and refuses the others, ``E`` and ``S`` among them; ``me`` reads none of its
#: words, ``mn`` none at all). What a token means, and whether one is needed, is the
#: server's business, not the line's.
META_FLAGS: dict[bytes, frozenset[bytes]] = {
    name: _FLAG_LETTERS for name in (b"mg", b"ms", b"md", b"ma")
}
#: most words memcached reads on a meta line (its ``MFLAG_MAX_OPT_LENGTH`` tokens, the
#: command and the end of line among them)
MAX_META_WORDS = 19
#: commands of a word or a few that take no key
SIMPLE = frozenset({b"flush_all", b"version", b"verbosity", b"stats", b"quit"})


class MemcacheError(MalformedError):
    """A line or block memcached refuses; ``reply`` is what memcached answers (no CRLF;
    empty when it answers nothing)."""

    def __init__(self, message: str, reply: bytes = b"ERROR", **where: Any) -> None:
        self.reply = reply
        super().__init__(message, **where)


class UnknownCommand(MemcacheError):
    """memcached answers ``ERROR``: an unknown command, or a known one with too few or too
    many words."""


class BadCommandLine(MemcacheError):
    """A known command with an argument memcached refuses (``CLIENT_ERROR ...``)."""

    def __init__(self, message: str, reply: bytes = b"CLIENT_ERROR bad command line format"):
        super().__init__(message, reply)


class BadDataChunk(MemcacheError):
    """A data block not followed by CRLF (``CLIENT_ERROR bad data chunk``)."""

    def __init__(self, message: str, **where: Any) -> None:
        super().__init__(message, b"CLIENT_ERROR bad data chunk", **where)


_BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument"
_BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument"
_DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"


@dataclass(frozen=True, init=False)
class Storage:
    """``set|add|replace|append|prepend KEY FLAGS EXPTIME BYTES [noreply]``, ``cas`` with a
    CAS unique before ``noreply``; BYTES of data follow, then CRLF. EXPTIME is as written
    (64 bits, signed)."""

    name: bytes
    key: bytes
    flags: int
    exptime: int
    size: int
    cas: int | None = None
    noreply: bool = False

    def __init__(
        self,
        name: bytes,
        key: bytes,
        flags: int,
        exptime: int,
        size: int,
        cas: int | None = None,
        noreply: bool = False,
    ) -> None:
        # straight into the instance's dict: a frozen dataclass's own ``__init__`` sets
        # each field through ``object.__setattr__``, and ``__dict__.update(**fields)``
        # builds a dict of keywords first; this costs half the first (one made a request)
        fields = self.__dict__
        fields["name"] = name
        fields["key"] = key
        fields["flags"] = flags
        fields["exptime"] = exptime
        fields["size"] = size
        fields["cas"] = cas
        fields["noreply"] = noreply

    def __bytes__(self) -> bytes:
        words = [self.name, self.key, b"%d" % self.flags, b"%d" % self.exptime, b"%d" % self.size]
        if self.cas is not None:
            words.append(b"%d" % self.cas)
        return _join(words, self.noreply)


@dataclass(frozen=True, init=False)
class Retrieval:
    """``get|gets KEY...``; ``gat|gats EXPTIME KEY...``."""

    name: bytes
    keys: tuple[bytes, ...]
    exptime: int | None = None

    def __init__(self, name: bytes, keys: tuple[bytes, ...], exptime: int | None = None) -> None:
        fields = self.__dict__  # (as Storage's)
        fields["name"] = name
        fields["keys"] = keys
        fields["exptime"] = exptime

    def __bytes__(self) -> bytes:
        head = [self.name] if self.exptime is None else [self.name, b"%d" % self.exptime]
        return b" ".join([*head, *self.keys])


@dataclass(frozen=True)
class Delete:
    """``delete KEY [noreply]``."""

    key: bytes
    noreply: bool = False
    name: bytes = b"delete"

    def __bytes__(self) -> bytes:
        return _join([self.name, self.key], self.noreply)


@dataclass(frozen=True)
class Arithmetic:
    """``incr|decr KEY DELTA [noreply]`` (DELTA a 64-bit unsigned number)."""

    name: bytes
    key: bytes
    delta: int
    noreply: bool = False

    def __bytes__(self) -> bytes:
        return _join([self.name, self.key, b"%d" % self.delta], self.noreply)


@dataclass(frozen=True)
class Touch:
    """``touch KEY EXPTIME [noreply]``."""

    key: bytes
    exptime: int
    noreply: bool = False
    name: bytes = b"touch"

    def __bytes__(self) -> bytes:
        return _join([self.name, self.key, b"%d" % self.exptime], self.noreply)


@dataclass(frozen=True)
class Simple:
    """``flush_all [DELAY] [noreply]``, ``version``, ``verbosity LEVEL [noreply]``,
    ``stats [ARGS]``, ``quit``: the words after the name as they came."""

    name: bytes
    args: tuple[bytes, ...] = ()

    def __bytes__(self) -> bytes:
        return b" ".join([self.name, *self.args])


@dataclass(frozen=True)
class Meta:
    """A meta command: ``mg|md|ma KEY FLAG...``, ``ms KEY DATALEN FLAG...`` (DATALEN bytes
    follow), ``mn``, ``me KEY``. Each flag is its letter and the token glued to it
    (``T30`` -> ``(b"T", b"30")``)."""

    name: bytes
    key: bytes | None = None
    size: int | None = None
    flags: tuple[tuple[bytes, bytes], ...] = field(default=())

    def flag(self, letter: bytes) -> bytes | None:
        """The token of flag ``letter`` (``b""`` for a bare flag), or None if absent."""
        for name, token in self.flags:
            if name == letter:
                return token
        return None

    def __bytes__(self) -> bytes:
        words = [self.name]
        if self.key is not None:
            words.append(self.key)
        if self.size is not None:
            words.append(b"%d" % self.size)
        words.extend(name + token for name, token in self.flags)
        return b" ".join(words)


Command = Storage | Retrieval | Delete | Arithmetic | Touch | Simple | Meta


def _join(words: list[bytes], noreply: bool) -> bytes:
    return b" ".join([*words, b"noreply"] if noreply else words)


def _key(word: bytes) -> bytes:
    # memcached 1.6 splits on spaces only and takes any other byte in a key
    if len(word) > MAX_KEY:
        raise BadCommandLine(f"key of {len(word)} bytes (at most {MAX_KEY})")
    return word


def _number(word: bytes, bits: int, signed: bool = False, reply: bytes | None = None) -> int:
    """``word`` as a decimal number of ``bits`` bits (a sign allowed as C's ``strtol``
    allows it); out of range or not a number is a :class:`BadCommandLine`."""
    sign = word[:1] in (b"+", b"-") and (signed or word[:1] == b"+")
    digits = word[1:] if sign else word
    value = int(word) if digits.isdigit() and len(digits) <= 20 else None
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if value is None or not low <= value <= high:
        problem = f"{word[:32]!r} is not a number of {bits} bits"
        raise BadCommandLine(problem) if reply is None else BadCommandLine(problem, reply)
    return value


def _size(word: bytes) -> int:
    size = _number(word, 31)
    if size > MAX_DATA:
        raise BadCommandLine(f"a data block of {size} bytes (at most {MAX_DATA})")
    return size


def _tail(words: list[bytes], fixed: int, most: int) -> bool:
    """Whether ``noreply`` follows the ``fixed`` words; memcached ignores any other word
    there, and answers ``ERROR`` to lines of fewer than ``fixed`` or more than ``most``."""
    if not fixed <= len(words) <= most:
        raise UnknownCommand(f"{words[0][:32]!r} with {len(words) - 1} arguments")
    return len(words) > fixed and words[fixed] == b"noreply"


#: commands whose last word may be ``noreply``
_NOREPLY = STORAGE | ARITHMETIC | {b"delete", b"touch"}


def parse_command(line: bytes) -> Command:
    """The command a request line (without its CRLF) holds; see the module for errors.

    A line ending in ``noreply`` gets no reply from memcached, not even for a bad argument:
    the error's ``reply`` is then empty."""
    words = line.split(b" ")
    if b"" in words:
        words = [word for word in words if word]
    else:
        quick = _quick(words)
        if quick is not None:
            return quick
    try:
        return _parse(words)
    except BadCommandLine as error:
        if words[0] in _NOREPLY and words[-1] == b"noreply":
            error.reply = b""
        raise


def _quick(words: list[bytes]) -> Command | None:
    """The commands of almost every request, ``get``/``gets`` of keys and ``set`` of a small
    block, made without :func:`_parse`'s checks when no check can fail (plain digits, short
    keys); ``None`` for anything else, which :func:`_parse` then reads (or refuses)."""
    name = words[0]
    count = len(words)
    if name == b"get" or name == b"gets":
        if count == 2:
            key = words[1]
            if len(key) <= MAX_KEY:
                return Retrieval(name, (key,))
        elif count > 2 and max(map(len, words)) <= MAX_KEY:
            return Retrieval(name, tuple(words[1:]))
        return None
    if name == b"set" and (count == 5 or (count == 6 and words[5] == b"noreply")):
        key, flags, exptime, size = words[1], words[2], words[3], words[4]
        # the three numbers, none empty (split found no empty word), checked together:
        # nine digits in all, so each is below 2**32 and MAX_DATA, no range to check
        digits = flags + exptime + size
        if len(key) <= MAX_KEY and len(digits) < 10 and digits.isdigit():
            return Storage(name, key, int(flags), int(exptime), int(size), None, count == 6)
    return None


def _parse(words: list[bytes]) -> Command:
    if not words:
        raise UnknownCommand("empty command line")
    name = words[0]
    if name in STORAGE:
        fixed = 6 if name == b"cas" else 5
        noreply = _tail(words, fixed, fixed + 1)
        key, flags = _key(words[1]), _number(words[2], 32)
        exptime, size = _number(words[3], 64, signed=True), _size(words[4])
        cas = _number(words[5], 64) if name == b"cas" else None
        return Storage(name, key, flags, exptime, size, cas, noreply)
    if name in (b"get", b"gets"):
        _tail(words, 2, len(words))
        return Retrieval(name, tuple(_key(k) for k in words[1:]))
    if name in (b"gat", b"gats"):
        _tail(words, 2, len(words))
        exptime = _number(words[1], 64, signed=True, reply=_BAD_EXPTIME)
        return Retrieval(name, tuple(_key(k) for k in words[2:]), exptime)
    if name == b"delete":
        _tail(words, 2, 4)
        rest = words[2:]
        if rest not in ([], [b"noreply"], [b"0"], [b"0", b"noreply"]):  # "0": an old form
            raise BadCommandLine(f"delete with {rest!r}", _DELETE_USAGE)
        return Delete(_key(words[1]), rest[-1:] == [b"noreply"])
    if name in ARITHMETIC:
        noreply = _tail(words, 3, 4)
        return Arithmetic(name, _key(words[1]), _number(words[2], 64, reply=_BAD_DELTA), noreply)
    if name == b"touch":
        noreply = _tail(words, 3, 4)
        exptime = _number(words[2], 64, signed=True, reply=_BAD_EXPTIME)
        return Touch(_key(words[1]), exptime, noreply)
    if name in SIMPLE:
        return Simple(name, tuple(words[1:]))
    if name in META:
        return _meta(name, words[1:])
    raise UnknownCommand(f"unknown command {name[:32]!r}")


def _meta(name: bytes, words: list[bytes]) -> Meta:
    if name == b"mn":
        return Meta(name)  # memcached ignores what follows
    if not words:
        raise UnknownCommand(f"{name.decode()} without a key")
    key = _key(words[0])
    if name == b"me":  # memcached reads no word after the key but a ``b``
        return Meta(name, key, None, tuple((word[:1], word[1:]) for word in words[1:]))
    size = None
    if name == b"ms" and len(words) < 2:
        raise BadCommandLine("ms without a data length")
    if len(words) + 1 > MAX_META_WORDS:
        too_long = b"are too long" if name == b"mg" else b"too long"
        raise BadCommandLine(
            f"{len(words) - 1} meta flags", b"CLIENT_ERROR options flags " + too_long
        )
    if name == b"ms":
        size = _size(words[1])
        words = words[1:]
    letters = META_FLAGS[name]
    flags: list[tuple[bytes, bytes]] = []
    for word in words[1:]:
        letter = word[:1]
        if letter not in letters:
            raise BadCommandLine(
                f"unknown meta flag {word[:32]!r}", _meta_refusal(name, "invalid")
            )
        if any(letter == seen for seen, _ in flags):
            raise BadCommandLine(f"meta flag {letter!r} twice", _meta_refusal(name, "duplicate"))
        flags.append((letter, word[1:]))
    return Meta(name, key, size, tuple(flags))


def _meta_refusal(name: bytes, problem: str) -> bytes:
    # memcached words it one way for mg and ms, another for md and ma
    if name in (b"md", b"ma"):
        return b"CLIENT_ERROR invalid or duplicate flag"
    return b"CLIENT_ERROR %s flag" % problem.encode()


def build_command(command: Command) -> bytes:
    """The request line of ``command`` (without CRLF); it parses back to ``command``."""
    wire = bytes(command)
    if len(wire) > MAX_COMMAND:
        raise InvalidValueError(f"command line of {len(wire)} bytes exceeds {MAX_COMMAND}")
    if parse_command(wire) != command:
        raise InvalidValueError(f"{command!r} does not survive the trip to {wire!r}")
    return wire


class CommandLine(Adapter):
    """A command line as a typed command, both ways (see :func:`command`)."""

    def _decode(self, obj: bytes, context: Any, path: str) -> Command:
        return parse_command(obj)

    def _encode(self, obj: Command, context: Any, path: str) -> bytes:
        return build_command(obj)


def command(max_length: int = MAX_COMMAND) -> CommandLine:
    """A memcached request line as a typed command.

    >>> command().parse(b"set greeting 0 0 5\\r\\n")
    Storage(name=b'set', key=b'greeting', flags=0, exptime=0, size=5, cas=None, noreply=False)
    >>> command().build(Retrieval(b"get", (b"a", b"b")))
    b'get a b\\r\\n'
    """
    return CommandLine(Line(b"\r\n", max_length))


class DataBlock(Fixed):
    """``size`` bytes of data and the CRLF after them; the value is the data alone."""

    def __init__(self, size: int) -> None:
        super().__init__(size + 2)
        self.data_size = size

    def describe(self) -> str:
        return f"data block({self.data_size}) + CRLF"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        start = stream.tell()
        data: bytes = super()._parse(stream, context, path)
        if data[-2:] != b"\r\n":
            raise BadDataChunk(
                f"data block of {self.data_size} bytes not followed by CRLF",
                offset=start + self.data_size,
                path=path,
            )
        return data[:-2]

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise InvalidValueError(f"a data block is bytes, not {type(obj).__name__}", path=path)
        super()._build(bytes(obj) + b"\r\n", stream, context, path)
        return obj


def data_block(size: int) -> DataBlock:
    """The data block of a storage command announcing ``size`` bytes.

    >>> data_block(5).parse(b"hello\\r\\n")
    b'hello'
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return DataBlock(size)


def value_line(key: bytes, flags: int, size: int, cas: int | None = None) -> bytes:
    """The ``VALUE`` line of a retrieval reply (without CRLF)."""
    head = b"VALUE %s %d %d" % (key, flags, size)
    return head if cas is None else head + b" %d" % cas
