"""What each memcached command does to the items, and the reply it gets (the connection's
machine, in :mod:`statewire.protocols.memcache`, decides when a command runs).

Replies are memcached 1.6's, word for word, checked session by session against the real
server (``tests/test_memcache_server.py``). Two of its quirks are kept because clients see
them: ``decr`` that shortens a number pads the stored value with spaces, and a ``set``
refused as too large removes the old item. An append (``append``, ``prepend``, ``ms`` with
``MA`` or ``MP``) whose item would grow over the size limit is not stored (``NOT_STORED``,
``NS``), as memcached answers a failed allocation there: no error, nothing counted.

The statistics are memcached's too, counted as it counts them
(``tests/test_memcache_stats.py``): a retrieval counts once a key, not once a request; a
``gat`` or an ``mg`` with a ``T`` that finds its item is a touch, not a get; ``total_items``
counts the items made (a store, a number grown longer, an ``mg``/``ma`` that vivifies),
not those changed in place.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from grammars.memcache import (
    Arithmetic,
    Command,
    Delete,
    Meta,
    Retrieval,
    Simple,
    Storage,
    Touch,
)

if TYPE_CHECKING:
    from statewire.protocols.memcache import MemcacheConnection

#: the largest item memcached stores by default (its ``-I``), value, key and header
MAX_ITEM = 1 << 20
#: what an item costs beyond its key and value, as this server counts it (memory, not
#: the size limit: see :func:`fits`)
ITEM_OVERHEAD = 56
#: memcached's item header, the key's NUL, the block's CRLF, the CAS: what an item's size
#: counts beyond its key and value (4 more when its client flags are not 0)
_HEADER = 48 + 1 + 2 + 8
_WRAP = 1 << 64
_NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
_BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
_BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
_LONG_OPAQUE = b"CLIENT_ERROR opaque token too long"
#: memcached's longest ``O`` flag, its letter included (its MFLAG_MAX_OPAQUE_LENGTH)
_MAX_OPAQUE = 32
_NO_MEMORY = b"SERVER_ERROR out of memory storing object\r\n"
#: the statistics the server counts, in the order memcached's ``stats`` lists them (the
#: store may report more: see :class:`ItemStore`)
COUNTERS = (
    b"cmd_get",
    b"cmd_set",
    b"cmd_flush",
    b"cmd_touch",
    b"cmd_meta",
    b"get_hits",
    b"get_misses",
    b"delete_misses",
    b"delete_hits",
    b"incr_misses",
    b"incr_hits",
    b"decr_misses",
    b"decr_hits",
    b"cas_misses",
    b"cas_hits",
    b"cas_badval",
    b"touch_hits",
    b"touch_misses",
    b"store_too_large",
    b"store_no_memory",
    b"total_items",
)
#: what a retrieval counts: requests, hits, misses (a ``get``; a ``gat``, which touches)
_GET = (b"cmd_get", b"get_hits", b"get_misses")
_GAT = (b"cmd_touch", b"touch_hits", b"touch_misses")
#: the flags whose token memcached's flag parser reads, and the words it refuses a token
#: with (``F``: none of its own, the words of a refusal before it stand)
_TOKENS: dict[bytes, tuple[bool, bytes | None]] = {
    b"N": (True, b"CLIENT_ERROR bad token in command line format"),
    b"T": (True, b"CLIENT_ERROR bad token in command line format"),
    b"R": (True, b"CLIENT_ERROR bad token in command line format"),
    b"C": (False, b"CLIENT_ERROR bad token in command line format"),
    b"F": (False, None),
    b"J": (False, b"CLIENT_ERROR invalid numeric initial value"),
    b"D": (False, b"CLIENT_ERROR invalid numeric delta value"),
}
#: the flags each meta command's reply gives back, when the request has them (``mg``:
#: every one it knows)
_ECHOED = {
    b"mg": frozenset(b"Okcfstlh"),
    b"ms": frozenset(b"Okc"),
    b"md": frozenset(b"Ok"),
    b"ma": frozenset(b"Okct"),
}


@dataclass
class Item:
    """A stored value: its client ``flags``, when it ``expires`` (seconds on the server's
    clock; 0 never) and its ``cas`` unique; for the meta commands, whether it is ``stale``
    (``md I``), whether a client was told it ``won`` the right to recache it (the ``W``
    flag, sent once), and whether ``ms`` was given its key in base64 (``b``): ``mg`` names
    it so. ``fetched`` (``mg h``) and ``accessed``, when it was last accessed (``mg l``;
    ``None``: unknown, reported as just now), the server records on the item the store
    gives it, in place."""

    value: bytes
    flags: int
    expires: float
    cas: int
    stale: bool = False
    won: bool = False
    binary_key: bool = False
    fetched: bool = False
    accessed: float | None = None


class ItemStore(Protocol):
    """What the server needs of a store. ``get`` returns live items only (expired ones, and
    those a ``flush`` reached, are the store's to drop); ``put`` replaces, and may refuse
    for want of memory; ``flush(at)`` drops every item stored before ``at`` once the
    clock reaches it. A fetch is recorded on the item ``get`` returned (its ``fetched``
    and ``accessed``): a store that gives copies only loses ``mg h`` and ``l``.

    A store may also have a ``stats()`` method, a mapping of the statistics only it can
    count (memcached's ``curr_items``, ``evictions``, ``get_expired``, ``get_flushed``):
    ``stats`` lists them after the server's."""

    def get(self, key: bytes, now: float) -> Item | None: ...
    def put(self, key: bytes, item: Item, now: float) -> bool: ...
    def delete(self, key: bytes) -> bool: ...
    def flush(self, at: float, now: float) -> None: ...


def run(core: MemcacheConnection, command: Command) -> bytes:
    """Run a command that has no data block; return its reply (empty: none)."""
    if type(command) is Retrieval:  # most requests: no dispatch
        return _retrieve(core, command)
    if isinstance(command, Delete):
        return _quiet(command.noreply, _delete(core, command.key))
    if isinstance(command, Arithmetic):
        reply = _arithmetic(core, command.key, command.delta, command.name == b"incr")
        return _quiet(command.noreply, reply)
    if isinstance(command, Touch):
        return _quiet(command.noreply, _touch(core, command))
    if isinstance(command, Meta):
        refusal = meta_refusal(command)
        return _meta(core, command) if refusal is None else refusal + b"\r\n"
    assert isinstance(command, Simple)
    return _simple(core, command)


def _quiet(noreply: bool, reply: bytes) -> bytes:
    return b"" if noreply else reply


def _retrieve(core: MemcacheConnection, command: Retrieval) -> bytes:
    factory = core.factory
    storage, now = factory.storage, core.seconds()
    name, keys, exptime = command.name, command.keys, command.exptime
    with_cas = name == b"gets" or name == b"gats"
    out: list[bytes] = []
    for key in keys:
        item = storage.get(key, now)
        if item is None:
            continue
        if item.fetched:  # the fetch recorded (see _fetch)
            item.accessed = now
        else:
            item.fetched = True
        if exptime is not None:
            item = replace(item, expires=core.expiry(exptime))
            storage.put(key, item, now)
        value = item.value
        if with_cas:
            out.append(b"VALUE %s %d %d %d\r\n" % (key, item.flags, len(value), item.cas))
        else:
            out.append(b"VALUE %s %d %d\r\n" % (key, item.flags, len(value)))
        out.append(value)
        out.append(b"\r\n")
    hits, asked, count = len(out) // 3, len(keys), factory.count
    requests, hit, miss = _GET if exptime is None else _GAT
    count(requests, asked)  # memcached counts each key
    if hits:
        count(hit, hits)
    if hits < asked:
        count(miss, asked - hits)
    if hits == 1:
        return out[0] + out[1] + b"\r\nEND\r\n"
    out.append(b"END\r\n")
    return b"".join(out)


def _delete(core: MemcacheConnection, key: bytes) -> bytes:
    storage = core.factory.storage
    if storage.get(key, core.seconds()) is None:
        core.factory.count(b"delete_misses")
        return b"NOT_FOUND\r\n"
    core.factory.count(b"delete_hits")
    storage.delete(key)
    return b"DELETED\r\n"


def _number(value: bytes) -> int | None:
    """``value`` as memcached reads a counter (C's ``strtoull`` and its checks): spaces
    first, a sign, digits, then nothing or a space and anything; a negative number only if
    it wraps to less than 2**63."""
    text = value.lstrip(b" \t\n\v\f\r")
    sign = text[:1]
    if sign in (b"+", b"-"):
        text = text[1:]
    end = 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    if end == 0 or (end < len(text) and text[end] not in b" \t\n\v\f\r"):
        return None
    digits = text[:end].lstrip(b"0") or b"0"
    if len(digits) > 20:
        return None  # ERANGE, found without converting (a value may hold 1 MiB of digits)
    number = int(digits)
    if number >= _WRAP:
        return None  # ERANGE
    if sign == b"-":
        number = -number % _WRAP
        if number >= 1 << 63:
            return None
    return number


def _arithmetic(core: MemcacheConnection, key: bytes, delta: int, incr: bool) -> bytes:
    storage, now = core.factory.storage, core.seconds()
    item = storage.get(key, now)
    if item is None:
        core.factory.count(b"incr_misses" if incr else b"decr_misses")
        return b"NOT_FOUND\r\n"
    changed = _add_delta(core, item, delta, incr, now)
    if changed is None:
        return _NON_NUMERIC
    storage.put(key, changed, now)
    return changed.value.rstrip(b" ") + b"\r\n"


def _add_delta(
    core: MemcacheConnection, item: Item, delta: int, incr: bool, now: float
) -> Item | None:
    """``item`` with its number moved by ``delta`` (None: it holds no number), counted a
    hit. As memcached does, a number that got no longer is rewritten in place, padded with
    spaces (the item keeps what it was, stale, fetched...); a longer one is a new item."""
    number = _number(item.value)
    if number is None:
        return None
    number = (number + delta) % _WRAP if incr else max(number - delta, 0)
    text = b"%d" % number
    factory = core.factory
    factory.count(b"incr_hits" if incr else b"decr_hits")
    cas = factory.next_cas()
    if len(text) <= len(item.value):
        return replace(item, value=text.ljust(len(item.value)), cas=cas, accessed=now)
    factory.count(b"total_items")
    return Item(text, item.flags, item.expires, cas, accessed=now)


def _fetch(item: Item, now: float) -> None:
    """Record a fetch as memcached's LRU does: the first marks the item fetched, each
    later one is its last access (memcached's maintainer thread, which moves items
    between its LRUs, is not imitated: its effect on the time depends on its timing)."""
    if item.fetched:
        item.accessed = now
    else:
        item.fetched = True


def _touch(core: MemcacheConnection, command: Touch) -> bytes:
    storage, now = core.factory.storage, core.seconds()
    item = storage.get(command.key, now)
    core.factory.count(b"cmd_touch")
    if item is None:
        core.factory.count(b"touch_misses")
        return b"NOT_FOUND\r\n"
    core.factory.count(b"touch_hits")
    _fetch(item, now)
    storage.put(command.key, replace(item, expires=core.expiry(command.exptime)), now)
    return b"TOUCHED\r\n"


def _simple(core: MemcacheConnection, command: Simple) -> bytes:
    args, name = command.args, command.name
    if name == b"version":
        return b"VERSION " + core.factory.version + b"\r\n"
    if name == b"quit":
        return b""
    if name == b"stats":
        # a group this server does not keep (``noreply`` too) is memcached's ERROR
        return b"ERROR\r\n" if args else _stats(core)
    # verbosity LEVEL [noreply], flush_all [DELAY] [noreply]: memcached's word counts
    noreply = bool(args) and args[-1] == b"noreply"
    if not (1 if name == b"verbosity" else 0) <= len(args) <= 2:
        return b"ERROR\r\n"
    if name == b"verbosity":  # a level memcached's strtoul takes, or a refusal
        level = _c_integer(args[0], signed=False)
        return _quiet(noreply, b"OK\r\n" if level is not None else _BAD_FORMAT)
    core.factory.count(b"cmd_flush")  # a delay refused too, as memcached counts it
    rest = args[:-1] if noreply else args
    delay = 0
    if rest:  # the delay; memcached ignores a word after it
        number = _c_integer(rest[0], signed=True)
        if number is None:
            return _quiet(noreply, _BAD_EXPTIME)
        delay = max((number + (1 << 31)) % (1 << 32) - (1 << 31), 0)  # its int32; < 0: now
    now = core.seconds()
    # memcached flushes a second before the time it is given (its oldest_live is that
    # time less 1): ``flush_all 1`` at once, ``flush_all 2`` a second later. (On its
    # whole-second clock it then also drops what is stored in the rest of that second,
    # which depends on where its clock ticks: not imitated)
    at = core.expiry(delay) - 1 if delay else now
    if at <= now:
        core.factory.next_cas()  # as memcached's flush marks its place in the CAS order
    if not delay or at > now - 1:  # a Unix time already past flushes nothing in memcached
        core.factory.storage.flush(at, now)
    return _quiet(noreply, b"OK\r\n")


def _c_integer(word: bytes, signed: bool) -> int | None:
    """``word`` as memcached's ``safe_strtol``/``safe_strtoul`` read a whole word: a sign,
    digits, in the range of a 64-bit long (unsigned: no minus); ``None`` if not (bounded:
    never converts more than 20 significant digits)."""
    sign = word[:1]
    digits = word[1:] if sign in (b"+", b"-") else word
    if not digits.isdigit():
        return None
    digits = digits.lstrip(b"0") or b"0"
    if len(digits) > 20:
        return None
    number = -int(digits) if sign == b"-" else int(digits)
    if not signed:
        return number if 0 <= number < _WRAP else None
    return number if -(1 << 63) <= number < 1 << 63 else None


def _stats(core: MemcacheConnection) -> bytes:
    factory = core.factory
    counted = dict(factory.stats)
    report = getattr(factory.storage, "stats", None)  # the store's own (see ItemStore)
    if callable(report):
        counted.update(report())
    lines = [b"STAT version " + factory.version]
    lines += [b"STAT %s %d" % (name, value) for name, value in counted.items()]
    return b"".join(line + b"\r\n" for line in lines) + b"END\r\n"


# -- storage commands ----------------------------------------------------------------------


def store(core: MemcacheConnection, command: Storage | Meta, value: bytes) -> bytes:
    """Run a storage command with its data block; return its reply (empty: none)."""
    core.factory.count(b"cmd_set")
    if isinstance(command, Meta):  # its flags were checked before its block came
        return _meta_set(core, command, value)
    storage, now = core.factory.storage, core.seconds()
    name = command.name
    # read for every command: the read is itself an access (a store drops an expired
    # item, refreshes a live one in its LRU) even when the new value is refused
    old = storage.get(command.key, now)
    flags, expires = command.flags, core.expiry(command.exptime) if command.exptime else 0.0
    if name == b"add" and old is not None:
        return _quiet(command.noreply, b"NOT_STORED\r\n")
    if name in (b"replace", b"append", b"prepend") and old is None:
        return _quiet(command.noreply, b"NOT_STORED\r\n")
    if name == b"cas":
        if old is None:
            core.factory.count(b"cas_misses")
            return _quiet(command.noreply, b"NOT_FOUND\r\n")
        if old.cas != command.cas:
            core.factory.count(b"cas_badval")
            return _quiet(command.noreply, b"EXISTS\r\n")
        core.factory.count(b"cas_hits")
    if old is not None and name in (b"append", b"prepend"):
        value = old.value + value if name == b"append" else value + old.value
        flags, expires = old.flags, old.expires
        if not fits(command.key, len(value), flags):  # memcached: no item made, no count
            return _quiet(command.noreply, b"NOT_STORED\r\n")
    # (the route checked the size of any other: the size its block has)
    item = Item(value, flags, expires, core.factory.next_cas(), accessed=now)
    if not storage.put(command.key, item, now):
        core.factory.count(b"store_no_memory")
        return _quiet(command.noreply, _NO_MEMORY)
    core.factory.count(b"total_items")
    return _quiet(command.noreply, b"STORED\r\n")


def fits(key: bytes, size: int, flags: int = 0) -> bool:
    """Whether an item of ``key``, a value of ``size`` bytes and client ``flags`` is not
    too large: memcached's ``item_size_ok``, to the byte (its header, and 4 bytes more for
    flags other than 0, count)."""
    return len(key) + size + (_HEADER + 4 if flags else _HEADER) <= MAX_ITEM


def ms_fits(command: Meta) -> bool:
    """Whether an ``ms`` item is not too large, as memcached checks it: by the key it
    names (decoded, with ``b``) and the client flags its ``F`` gives (32 bits kept)."""
    key, _ = _meta_key(command)
    flags = (_token(command, b"F") or 0) % (1 << 32)
    return fits(key, command.size or 0, flags)


# -- meta commands -------------------------------------------------------------------------


def meta_refusal(command: Meta) -> bytes | None:
    """What memcached answers (no CRLF) to a meta command whose flags it refuses, or
    ``None``. As its flag parser does, every flag is read in order, the words of the last
    refusal kept (``md`` and ``ma`` word them all alike); then an ``O`` too long, and an
    ``ms`` mode it does not know, are refused (for ``ms``: before its block is read)."""
    name = command.name
    if name not in _ECHOED:  # me, mn: flags not read
        return None
    failed, words = False, b"CLIENT_ERROR bad command line format"
    for letter, token in command.flags:
        if letter == b"b" and _from_base64(command.key or b"") is None:
            failed, words = True, b"CLIENT_ERROR error decoding key"
        elif letter == b"M" and len(token) != 1:
            failed, words = True, b"CLIENT_ERROR incorrect length for M token"
        elif letter in _TOKENS:
            signed, refusal = _TOKENS[letter]
            if _c_integer(token, signed) is None:
                failed, words = True, refusal or words
    if failed:
        return b"CLIENT_ERROR invalid or duplicate flag" if name in (b"md", b"ma") else words
    if any(letter == b"O" and 1 + len(token) > _MAX_OPAQUE for letter, token in command.flags):
        return _LONG_OPAQUE
    if name == b"ms" and command.flag(b"M") not in (None, b"S", b"E", b"A", b"P", b"R"):
        return b"CLIENT_ERROR invalid mode for ms M token"
    return None


def _token(command: Meta, letter: bytes, signed: bool = False) -> int | None:
    """The number a flag carries, read as memcached reads it (a 64-bit long, or unsigned
    long; :func:`meta_refusal` refused a token that is no such number)."""
    token = command.flag(letter)
    return None if token is None else _c_integer(token, signed)


def meta_item_key(command: Meta) -> bytes:
    """The key of the item a meta command names: decoded when it came in base64 (``b``)."""
    return _meta_key(command)[0]


def _meta_key(command: Meta) -> tuple[bytes, bool]:
    """The key a meta command names, and whether it came in base64 (the ``b`` flag)."""
    key = command.key or b""
    if command.flag(b"b") is None:
        return key, False
    return _from_base64(key) or key, True


_BASE64 = {
    symbol: value
    for value, symbol in enumerate(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    )
}
_PAD = 0x3D  # =


def _from_base64(text: bytes) -> bytes | None:
    """``text`` decoded as memcached decodes a ``b`` key (``None``: it does not): bytes
    outside the alphabet are skipped, the rest must come in groups of four, ``=`` counts
    as a zero, and the first group with padding (one or two ``=``) is the last read."""
    symbols = [symbol for symbol in text if symbol in _BASE64 or symbol == _PAD]
    if not symbols or len(symbols) % 4:
        return None
    out = bytearray()
    for start in range(0, len(symbols), 4):
        group = symbols[start : start + 4]
        a, b, c, d = (_BASE64.get(symbol, 0) for symbol in group)
        out += bytes(((a << 2 | b >> 4) & 255, (b << 4 | c >> 2) & 255, (c << 6 | d) & 255))
        padding = group.count(_PAD)
        if padding:
            if padding > 2:
                return None
            del out[-padding:]
            break
    return bytes(out)


def _flag_word(
    letter: bytes, token: bytes, key: bytes, item: Item | None, now: float, binary: bool
) -> bytes | None:
    """What a reply says for one flag of the request (``None``: nothing); a ``binary`` key
    is given back in base64, marked `` b``."""
    if letter == b"O":
        return b"O" + token
    if letter == b"k":
        return b"k" + base64.b64encode(key) + b" b" if binary else b"k" + key
    if item is None:
        return None
    if letter == b"c":
        return b"c%d" % item.cas
    if letter == b"f":
        return b"f%d" % item.flags
    if letter == b"s":
        return b"s%d" % len(item.value)
    if letter == b"t":
        return b"t%d" % _ttl(item, now)
    if letter == b"h":
        return b"h1" if item.fetched else b"h0"
    if letter == b"l":
        return b"l%d" % _idle(item, now)
    return None


def _ttl(item: Item, now: float) -> int:
    """The seconds ``item`` has left (-1: it never expires)."""
    return -1 if item.expires == 0 else max(int(item.expires - now + 0.5), 0)


def _idle(item: Item, now: float) -> int:
    """The seconds since ``item`` was last accessed."""
    return 0 if item.accessed is None else max(int(now - item.accessed), 0)


def _returned(
    command: Meta, key: bytes, item: Item | None, now: float, binary: bool = False
) -> bytes:
    """The flags a meta reply echoes, those its command gives back, in the order the
    request gave them."""
    echoed = _ECHOED[command.name]
    words = (
        _flag_word(letter, token, key, item, now, binary)
        for letter, token in command.flags
        if letter[0] in echoed
    )
    return b"".join(b" " + word for word in words if word is not None)


def _meta(core: MemcacheConnection, command: Meta) -> bytes:
    name = command.name
    if name == b"mn":
        return b"MN\r\n"
    if name == b"me":
        return _meta_debug(core, command)
    storage, now = core.factory.storage, core.seconds()
    key, binary = _meta_key(command)
    quiet = command.flag(b"q") is not None
    item = storage.get(key, now)
    if name == b"mg":
        return _meta_get(core, command, key, binary, item, now)
    if name == b"md":
        compare = _token(command, b"C")
        ttl = _token(command, b"T", signed=True)
        if item is None or (compare is not None and compare != item.cas):
            core.factory.count(b"delete_misses")  # a CAS that differs too, in memcached
            status = b"NF" if item is None else b"EX"
            return status + _returned(command, key, None, now, binary) + b"\r\n"
        if command.flag(b"I") is not None:  # invalidate: kept, stale, to be recached
            expires = item.expires if ttl is None else core.expiry(ttl)
            stale = replace(item, stale=True, won=False, cas=core.factory.next_cas())
            storage.put(key, replace(stale, expires=expires), now)  # (memcached: no count)
        else:
            core.factory.count(b"delete_hits")
            storage.delete(key)
        return b"" if quiet else b"HD" + _returned(command, key, None, now, binary) + b"\r\n"
    return _meta_arithmetic(core, command, key, binary, item, now)


def _meta_debug(core: MemcacheConnection, command: Meta) -> bytes:
    """``me``: what memcached knows of an item, in its words; as memcached, its ``exp`` is
    the TTL left with its sign turned, and its size the item's with memcached's header.
    Only a ``b`` right after the key is read (the key then in base64)."""
    key = command.key or b""
    if command.flags[:1] == ((b"b", b""),):
        decoded = _from_base64(key)
        if decoded is None:
            return _BAD_FORMAT
        key = decoded
    core.factory.count(b"cmd_meta")
    now = core.seconds()
    item = core.factory.storage.get(key, now)
    if item is None:
        return b"EN\r\n"
    size = _HEADER + len(key) + len(item.value) + (4 if item.flags else 0)
    return b"ME %s exp=%d la=%d cas=%d fetch=%s cls=1 size=%d\r\n" % (
        key,
        -_ttl(item, now) if item.expires else -1,
        _idle(item, now),
        item.cas,
        b"yes" if item.fetched else b"no",
        size,
    )


def _meta_get(
    core: MemcacheConnection,
    command: Meta,
    key: bytes,
    binary: bool,
    item: Item | None,
    now: float,
) -> bytes:
    """``mg``: the flags act in the order given (a ``t`` before a ``T`` says the old TTL);
    then ``Z`` if a client already won the item, ``X`` if it is stale, ``W`` if this one
    wins it: ``N`` created it, ``R`` found its TTL short, or it is stale and unclaimed."""
    ttl = _token(command, b"T", signed=True)
    vivify = _token(command, b"N", signed=True)
    recache = _token(command, b"R", signed=True)
    created, count = item is None, core.factory.count
    if item is None:
        if vivify is None:
            count(b"cmd_get")  # with a T too: memcached counts a miss as a get
            count(b"get_misses")
            miss = b"EN" + _returned(command, key, None, now, binary) + b"\r\n"
            return b"" if command.flag(b"q") is not None else miss
        count(b"total_items")
        item = Item(b"", 0, 0.0, core.factory.next_cas(), accessed=now)  # a plain name
    # a hit, the item vivified too; with a T, memcached counts a touch instead of a get
    count(b"cmd_get" if ttl is None else b"cmd_touch")
    count(b"get_hits" if ttl is None else b"touch_hits")
    won = changed = False
    words: list[bytes] = []
    for letter, token in command.flags:
        if letter == b"T" and ttl is not None:
            item, changed = replace(item, expires=core.expiry(ttl)), True
        elif letter == b"N" and created and vivify is not None:
            item, won = replace(item, expires=core.expiry(vivify)), True
        elif letter == b"R" and recache is not None:
            won = won or (not created and not item.won and _short_lived(core, item, recache, now))
        else:
            word = _flag_word(letter, token, key, item, now, item.binary_key)
            if word is not None:
                words.append(word)
    if item.won:
        words.append(b"Z")
    if item.stale:
        words.append(b"X")
        won = won or not item.won
    if won:
        words.append(b"W")
        item = replace(item, won=True)
    if command.flag(b"u") is None:  # u: leave the item as if not fetched
        _fetch(item, now)
    if created or changed or won:
        core.factory.storage.put(key, item, now)
    flags = b"".join(b" " + word for word in words)
    if command.flag(b"v") is None:
        return b"HD" + flags + b"\r\n"
    return b"VA %d%s\r\n%s\r\n" % (len(item.value), flags, item.value)


def _short_lived(core: MemcacheConnection, item: Item, recache: int, now: float) -> bool:
    """Whether ``item`` expires before ``recache`` would (``mg R``); in whole seconds, as
    memcached counts them, so a TTL just given is not already shorter than itself."""
    deadline = core.expiry(recache)
    if item.expires == 0 or deadline <= now:
        return False
    return round(item.expires - now) < round(deadline - now)


def _meta_arithmetic(
    core: MemcacheConnection,
    command: Meta,
    key: bytes,
    binary: bool,
    item: Item | None,
    now: float,
) -> bytes:
    storage = core.factory.storage
    delta = _token(command, b"D")
    delta = 1 if delta is None else delta
    mode = command.flag(b"M") or b"I"
    if mode not in (b"I", b"i", b"+", b"D", b"d", b"-"):
        return b"CLIENT_ERROR invalid mode for ma M token\r\n"
    vivify = _token(command, b"N", signed=True)
    initial = _token(command, b"J") or 0
    ttl = _token(command, b"T", signed=True)
    compare = _token(command, b"C")
    created = quiet = False
    incr = mode in (b"I", b"i", b"+")
    if item is None:
        if vivify is None:
            core.factory.count(b"incr_misses" if incr else b"decr_misses")
            return b"NF" + _returned(command, key, None, now, binary) + b"\r\n"
        core.factory.count(b"total_items")  # (neither a hit nor a miss, in memcached)
        item, created = Item(b"%d" % initial, 0, 0.0, core.factory.next_cas(), accessed=now), True
    elif compare and compare != item.cas:  # C0: no CAS given, as memcached reads it
        return b"EX" + _returned(command, key, None, now, binary) + b"\r\n"
    else:
        changed = _add_delta(core, item, delta, incr, now)
        if changed is None:
            return _NON_NUMERIC
        item = changed
        quiet = command.flag(b"q") is not None  # memcached quiets the update, not the rest
    words: list[bytes] = []
    for letter, token in command.flags:  # in order: a t before a T says the old TTL
        if letter == b"T" and ttl is not None:
            item.expires = core.expiry(ttl)
        elif letter == b"N" and created and vivify is not None:
            item.expires = core.expiry(vivify)
        elif letter[0] in _ECHOED[b"ma"]:
            word = _flag_word(letter, token, key, item, now, binary)
            if word is not None:
                words.append(word)
    storage.put(key, item, now)
    if quiet:
        return b""
    flags = b"".join(b" " + word for word in words)
    if command.flag(b"v") is None:
        return b"HD" + flags + b"\r\n"
    number = item.value.rstrip(b" ")  # the number, not the padding it is stored with
    return b"VA %d%s\r\n%s\r\n" % (len(number), flags, number)


def _meta_set(core: MemcacheConnection, command: Meta, value: bytes) -> bytes:
    storage, now = core.factory.storage, core.seconds()
    key, binary = _meta_key(command)
    old = storage.get(key, now)
    flags = (_token(command, b"F") or 0) % (1 << 32)  # memcached keeps 32 bits
    ttl = _token(command, b"T", signed=True)
    compare = _token(command, b"C")
    mode = command.flag(b"M") or b"S"  # one meta_refusal knows
    expires = core.expiry(ttl or 0)
    if mode == b"E":
        compare = None  # memcached's add takes no CAS: C is ignored
    elif mode in (b"A", b"P") and old is None:
        return b"NS" + _not_stored(command, key, binary)  # before the CAS
    if compare is not None and old is None:
        core.factory.count(b"cas_misses")
        return b"NF" + _not_stored(command, key, binary)
    stale = False
    # an append's CAS is checked, but not counted (memcached's do_store_item counts those
    # of a set, a replace, and a stale store)
    appending = mode == b"A" or mode == b"P"
    if compare is not None and old is not None and compare != old.cas:
        # I: a CAS older than the item's still stores, as a stale value -- a set or a
        # replace; an append or prepend is EX whatever (memcached's do_store_item)
        if command.flag(b"I") is None or compare > old.cas or appending:
            if not appending:
                core.factory.count(b"cas_badval")
            return b"EX" + _not_stored(command, key, binary)
        stale = True
    if (mode == b"E" and old is not None) or ((appending or mode == b"R") and old is None):
        return b"NS" + _not_stored(command, key, binary)
    if old is not None and appending:
        value = old.value + value if mode == b"A" else value + old.value
        flags, expires = old.flags, old.expires
        if not fits(key, len(value), flags):  # memcached: no item made, nothing counted
            return b"NS" + _not_stored(command, key, binary)
    won = stale and old is not None and old.won  # a stale value keeps its winner
    item = Item(value, flags, expires, core.factory.next_cas(), stale, won, binary, False, now)
    if not storage.put(key, item, now):  # (the route checked the block's size)
        core.factory.count(b"store_no_memory")
        return _NO_MEMORY
    if compare is not None and not appending:
        core.factory.count(b"cas_hits")  # a stale store too, as memcached counts it
    core.factory.count(b"total_items")
    if command.flag(b"q") is not None:
        return b""
    return b"HD" + _returned(command, key, item, now, binary) + b"\r\n"


def _not_stored(command: Meta, key: bytes, binary: bool) -> bytes:
    """The flags an ``ms`` that stored nothing gives back, its CRLF too: as memcached,
    ``O``, ``k`` and a ``c`` of 0."""
    words = (
        b"c0" if letter == b"c" else _flag_word(letter, token, key, None, 0.0, binary)
        for letter, token in command.flags
        if letter[0] in _ECHOED[b"ms"]
    )
    return b"".join(b" " + word for word in words if word is not None) + b"\r\n"
