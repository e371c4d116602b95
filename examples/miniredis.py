"""miniredis: an in-memory Redis on statewire's RESP server (strings, lists, hashes, sets).

The connection's states (AUTH, MULTI, pub/sub, HELLO 2/3, QUIT, RESET) are the library's
declared machine, :class:`statewire.protocols.resp.RESPServer`; this file is only the
commands: a table of name, arity and handler over a dict per database. Replies and
errors are worded as Redis words them, so ``redis-cli``, redis-py and the tests that
replay the same sessions against a real ``redis-server`` cannot tell the difference for the
commands below. Keys expire lazily, on the connection's clock (the reactor's ``seconds()``).

    PING ECHO HELLO AUTH SELECT QUIT RESET INFO DBSIZE FLUSHDB FLUSHALL KEYS EXISTS DEL TYPE
    EXPIRE PEXPIRE TTL PTTL PERSIST GET SET GETDEL MGET MSET INCR INCRBY DECR DECRBY APPEND
    STRLEN LPUSH RPUSH LPOP RPOP LLEN LRANGE HSET HGET HDEL HGETALL HLEN SADD SREM SMEMBERS
    SCARD SISMEMBER MULTI EXEC DISCARD WATCH UNWATCH SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE
    PUNSUBSCRIBE PUBLISH SSUBSCRIBE SUNSUBSCRIBE SPUBLISH PUBSUB CLIENT COMMAND

Every change a command makes to a key is reported to the server (``touch``), as Redis
signals it, so that ``WATCH`` sees it: writes, deletions, expiries, flushes.

python examples/miniredis.py --port 6380 [--password secret]
statewire serve examples/miniredis.py:factory --listen tcp:6380:interface=127.0.0.1
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any

from grammars.resp import NULL_ARRAY, OK, Map, Set, Simple, Verbatim, parse_integer
from statewire.protocols.resp import CommandTable, Glob, ReplyError, RESPConnection, RESPFactory

DATABASES = 16
WRONGTYPE = b"WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER = b"ERR value is not an integer or out of range"
SYNTAX = b"ERR syntax error"
_INT64 = (-(1 << 63), (1 << 63) - 1)

commands = CommandTable()
command = commands.command


class Keyspace:
    """One database: values (bytes, list, dict or set) and their deadlines, in seconds;
    ``touch(key)`` is told of every change (a value changed in place is the caller's to
    tell); when ``watched`` is given, only while it is not empty (the server's watched
    keys: nobody watching, nobody to tell, and no call made)."""

    def __init__(
        self, touch: Callable[[bytes], None] = lambda key: None, watched: Sized = (True,)
    ) -> None:
        self.values: dict[bytes, Any] = {}
        self.deadlines: dict[bytes, float] = {}
        self.touch = touch
        self.watched = watched  # (the default is never empty: every change is told)

    def get(self, key: bytes, now: float, kind: type | None = None) -> Any:
        """The live value of ``key`` (``None`` if none); of ``kind`` or WRONGTYPE."""
        deadline = self.deadlines.get(key)
        if deadline is not None and deadline <= now:
            self.delete(key)
        value = self.values.get(key)
        if kind is not None and value is not None and type(value) is not kind:
            raise ReplyError(WRONGTYPE)
        return value

    def delete(self, key: bytes) -> bool:
        """Forget ``key``; whether it was there."""
        self.deadlines.pop(key, None)
        if self.values.pop(key, None) is None:
            return False
        if self.watched:
            self.touch(key)
        return True

    def store(self, key: bytes, value: Any, keep_ttl: bool = False) -> None:
        """Set ``key`` (a new value forgets the old deadline unless ``keep_ttl``)."""
        self.values[key] = value
        if not keep_ttl:
            self.deadlines.pop(key, None)
        if self.watched:
            self.touch(key)

    def expire_at(self, key: bytes, deadline: float | None) -> None:
        """Give ``key`` a deadline (``None``: none)."""
        if deadline is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = deadline
        if self.watched:
            self.touch(key)

    def clear(self) -> None:
        """Forget every key (``FLUSHDB``)."""
        keys = list(self.values)
        self.values.clear()
        self.deadlines.clear()
        for key in keys:
            self.touch(key)


class MiniRedisFactory(RESPFactory):
    """The server: the command table and :data:`DATABASES` keyspaces shared by clients."""

    def __init__(self, password: bytes | None = None) -> None:
        super().__init__(commands, password)
        self.databases = [Keyspace(self._toucher(i), self.watchers) for i in range(DATABASES)]

    def flush(self) -> None:
        """Empty every database (``FLUSHALL``)."""
        for space in self.databases:
            space.clear()

    def _toucher(self, index: int) -> Callable[[bytes], None]:
        def touch(key: bytes) -> None:
            if self.watchers:  # (the common case: nobody watches, nothing to do)
                self.touch(index, key)

        return touch

    def expire_watched(self, db: int, key: bytes, now: float) -> None:
        self.databases[db].get(key, now)


def db(conn: RESPConnection) -> Keyspace:
    keyspace: Keyspace = conn.factory.databases[conn.db]  # type: ignore[attr-defined]
    return keyspace


def integer(word: bytes, error: bytes = NOT_INTEGER) -> int:
    """A 64-bit integer argument as Redis reads one, or the error."""
    value = parse_integer(word)
    if value is None:
        raise ReplyError(error)
    return value


def lookup(conn: RESPConnection, key: bytes, kind: type | None = None) -> Any:
    keyspace: Keyspace = conn.factory.databases[conn.db]  # type: ignore[attr-defined]
    # the clock matters only to a key with a deadline (most have none: two calls saved)
    now = conn.seconds() if key in keyspace.deadlines else 0.0
    return keyspace.get(key, now, kind)


# -- server --------------------------------------------------------------------------------


@command(b"echo", 2)
def echo(conn: RESPConnection, args: list[bytes]) -> Any:
    return args[0]


@command(b"select", 2)
def select(conn: RESPConnection, args: list[bytes]) -> Any:
    index = integer(args[0])
    if not 0 <= index < DATABASES:
        raise ReplyError(b"ERR DB index is out of range")
    conn.db = index
    return OK


@command(b"info", -1)
def info(conn: RESPConnection, args: list[bytes]) -> Any:
    keys = sum(bool(space.values) for space in conn.factory.databases)  # type: ignore[attr-defined]
    text = (
        b"# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\nserver_name:miniredis\r\n"
        b"\r\n# Keyspace\r\ndatabases_used:%d\r\n" % (conn.factory.version, keys)
    )
    return Verbatim(b"txt", text)


@command(b"dbsize", 1)
def dbsize(conn: RESPConnection, args: list[bytes]) -> Any:
    return len(db(conn).values)


def _flush_mode(args: list[bytes]) -> None:
    if len(args) > 1 or (args and args[0].upper() not in (b"ASYNC", b"SYNC")):
        raise ReplyError(SYNTAX)


@command(b"flushdb", -1)
def flushdb(conn: RESPConnection, args: list[bytes]) -> Any:
    _flush_mode(args)
    db(conn).clear()
    return OK


@command(b"flushall", -1)
def flushall(conn: RESPConnection, args: list[bytes]) -> Any:
    _flush_mode(args)
    conn.factory.flush()  # type: ignore[attr-defined]
    return OK


@command(b"client", -2, {b"id": 2, b"getname": 2, b"setname": 3, b"setinfo": 4})
def client(conn: RESPConnection, args: list[bytes]) -> Any:
    sub = args[0].lower()
    if sub == b"id":
        return conn.client_id
    if sub == b"getname":
        return conn.client_name or None
    if sub == b"setname":
        if any(c <= 0x20 or c > 0x7E for c in args[1]):
            raise ReplyError(
                b"ERR Client names cannot contain spaces, newlines or special characters."
            )
        conn.client_name = args[1]
    return OK  # SETINFO: what redis-py says about itself is not kept


@command(b"command", -1, {b"count": 2, b"docs": -2})
def command_info(conn: RESPConnection, args: list[bytes]) -> Any:
    table = conn.factory.commands
    if not args:
        return [[c.name, c.arity, [], 0, 0, 0] for c in table]
    if args[0].lower() == b"count":
        return len(table)
    return {}  # DOCS: no documentation, so redis-cli gives no hints, and works


# -- keys ----------------------------------------------------------------------------------


@command(b"keys", 2)
def keys(conn: RESPConnection, args: list[bytes]) -> Any:
    now = conn.seconds()
    space = db(conn)
    everything = args[0] == b"*"  # Redis's shortcut, which takes the empty key too
    glob = Glob(args[0])
    return [
        key
        for key in list(space.values)
        if space.get(key, now) is not None and (everything or glob.match(key))
    ]


@command(b"exists", -2)
def exists(conn: RESPConnection, args: list[bytes]) -> Any:
    return sum(lookup(conn, key) is not None for key in args)


@command(b"del", -2)
def delete(conn: RESPConnection, args: list[bytes]) -> Any:
    space = db(conn)
    return sum(lookup(conn, key) is not None and space.delete(key) for key in args)


@command(b"type", 2)
def type_of(conn: RESPConnection, args: list[bytes]) -> Any:
    value = lookup(conn, args[0])
    names: dict[type, bytes] = {bytes: b"string", list: b"list", dict: b"hash", set: b"set"}
    return Simple(b"none" if value is None else names[type(value)])


def _expire(conn: RESPConnection, args: list[bytes], scale: float) -> Any:
    amount = integer(args[1])
    condition = args[2].upper() if len(args) > 2 else None
    if len(args) > 3 or condition not in (None, b"NX", b"XX", b"GT", b"LT"):
        raise ReplyError(b"ERR Unsupported option %s" % args[-1])
    space, now = db(conn), conn.seconds()
    if space.get(args[0], now) is None:
        return 0
    current = space.deadlines.get(args[0])
    deadline = now + amount * scale
    if (
        (condition == b"NX" and current is not None)
        or (condition == b"XX" and current is None)
        or (condition == b"GT" and (current is None or deadline <= current))
        or (condition == b"LT" and current is not None and deadline >= current)
    ):
        return 0
    if amount <= 0:
        space.delete(args[0])
    else:
        space.expire_at(args[0], deadline)
    return 1


@command(b"expire", -3)
def expire(conn: RESPConnection, args: list[bytes]) -> Any:
    return _expire(conn, args, 1.0)


@command(b"pexpire", -3)
def pexpire(conn: RESPConnection, args: list[bytes]) -> Any:
    return _expire(conn, args, 0.001)


def _ttl(conn: RESPConnection, key: bytes, milliseconds: bool) -> int:
    space, now = db(conn), conn.seconds()
    if space.get(key, now) is None:
        return -2
    deadline = space.deadlines.get(key)
    if deadline is None:
        return -1
    left = max(0, round((deadline - now) * 1000))
    return left if milliseconds else (left + 500) // 1000


@command(b"ttl", 2)
def ttl(conn: RESPConnection, args: list[bytes]) -> Any:
    return _ttl(conn, args[0], False)


@command(b"pttl", 2)
def pttl(conn: RESPConnection, args: list[bytes]) -> Any:
    return _ttl(conn, args[0], True)


@command(b"persist", 2)
def persist(conn: RESPConnection, args: list[bytes]) -> Any:
    space = db(conn)
    if lookup(conn, args[0]) is None or args[0] not in space.deadlines:
        return 0
    space.expire_at(args[0], None)
    return 1


# -- strings -------------------------------------------------------------------------------


@command(b"get", 2)
def get(conn: RESPConnection, args: list[bytes]) -> Any:
    return lookup(conn, args[0], bytes)


@command(b"set", -3)
def set_(conn: RESPConnection, args: list[bytes]) -> Any:
    if len(args) == 2:  # a plain SET (most): no option to read, the old value not needed
        db(conn).store(args[0], args[1])
        return OK
    key, value, options = args[0], args[1], [o.upper() for o in args[2:]]
    # the options as Redis parses them: a repeated flag is fine, a conflict is not, and
    # the expire time is read only once the options are known to be well-formed
    flags: set[bytes] = set()
    unit, amount = b"", b""
    i = 0
    while i < len(options):
        option = options[i]
        conflict = {b"NX": b"XX", b"XX": b"NX", b"EX": b"PX", b"PX": b"EX"}.get(option)
        if (option in (b"NX", b"XX", b"GET") and conflict not in flags) or (
            option == b"KEEPTTL" and not unit
        ):
            flags.add(option)
        elif (
            option in (b"EX", b"PX")
            and conflict != unit
            and b"KEEPTTL" not in flags
            and i + 1 < len(options)
        ):
            unit, amount = option, args[3 + i]
            i += 1
        else:
            raise ReplyError(SYNTAX)
        i += 1
    ttl: float | None = None
    if unit:
        ttl = integer(amount) * (1.0 if unit == b"EX" else 0.001)
        if ttl <= 0:
            raise ReplyError(b"ERR invalid expire time in 'set' command")
    old = lookup(conn, key, bytes if b"GET" in flags else None)
    if (b"NX" in flags and old is not None) or (b"XX" in flags and old is None):
        return old if b"GET" in flags else None
    space = db(conn)
    space.store(key, value, keep_ttl=b"KEEPTTL" in flags)
    if ttl is not None:
        space.expire_at(key, conn.seconds() + ttl)
    return old if b"GET" in flags else OK


@command(b"getdel", 2)
def getdel(conn: RESPConnection, args: list[bytes]) -> Any:
    value = lookup(conn, args[0], bytes)
    if value is not None:
        db(conn).delete(args[0])
    return value


@command(b"mget", -2)
def mget(conn: RESPConnection, args: list[bytes]) -> Any:
    values = (lookup(conn, key) for key in args)
    return [value if type(value) is bytes else None for value in values]


@command(b"mset", -3)
def mset(conn: RESPConnection, args: list[bytes]) -> Any:
    if len(args) % 2:
        raise ReplyError(b"ERR wrong number of arguments for 'mset' command")
    space = db(conn)
    for key, value in zip(args[::2], args[1::2], strict=True):
        space.store(key, value)
    return OK


def _add(conn: RESPConnection, key: bytes, amount: int) -> Any:
    current = lookup(conn, key, bytes)
    number = 0 if current is None else integer(current)
    total = number + amount
    if not _INT64[0] <= total <= _INT64[1]:
        raise ReplyError(b"ERR increment or decrement would overflow")
    db(conn).store(key, b"%d" % total, keep_ttl=True)
    return total


@command(b"incr", 2)
def incr(conn: RESPConnection, args: list[bytes]) -> Any:
    return _add(conn, args[0], 1)


@command(b"decr", 2)
def decr(conn: RESPConnection, args: list[bytes]) -> Any:
    return _add(conn, args[0], -1)


@command(b"incrby", 3)
def incrby(conn: RESPConnection, args: list[bytes]) -> Any:
    return _add(conn, args[0], integer(args[1]))


@command(b"decrby", 3)
def decrby(conn: RESPConnection, args: list[bytes]) -> Any:
    amount = integer(args[1])
    if amount == _INT64[0]:
        raise ReplyError(b"ERR decrement would overflow")
    return _add(conn, args[0], -amount)


@command(b"append", 3)
def append(conn: RESPConnection, args: list[bytes]) -> Any:
    value = (lookup(conn, args[0], bytes) or b"") + args[1]
    db(conn).store(args[0], value, keep_ttl=True)
    return len(value)


@command(b"strlen", 2)
def strlen(conn: RESPConnection, args: list[bytes]) -> Any:
    return len(lookup(conn, args[0], bytes) or b"")


# -- lists, hashes, sets -------------------------------------------------------------------


def _container(conn: RESPConnection, key: bytes, kind: type) -> Any:
    value = lookup(conn, key, kind)
    if value is None:
        value = kind()
        db(conn).store(key, value)
    return value


def _changed(conn: RESPConnection, key: bytes, value: Any) -> None:
    """``value``, held at ``key``, was changed in place: tell the keyspace, and drop the
    key if it is now empty (Redis keeps no empty container)."""
    space = db(conn)
    if value:
        space.touch(key)
    else:
        space.delete(key)


@command(b"lpush", -3)
def lpush(conn: RESPConnection, args: list[bytes]) -> Any:
    items = _container(conn, args[0], list)
    items[:0] = reversed(args[1:])
    _changed(conn, args[0], items)
    return len(items)


@command(b"rpush", -3)
def rpush(conn: RESPConnection, args: list[bytes]) -> Any:
    items = _container(conn, args[0], list)
    items.extend(args[1:])
    _changed(conn, args[0], items)
    return len(items)


def _pop(conn: RESPConnection, args: list[bytes], left: bool) -> Any:
    if len(args) > 2:
        raise ReplyError(
            b"ERR wrong number of arguments for '%s' command" % (b"lpop" if left else b"rpop")
        )
    count = None
    if len(args) == 2:
        count = integer(args[1], b"ERR value is out of range, must be positive")
        if count < 0:
            raise ReplyError(b"ERR value is out of range, must be positive")
    items = lookup(conn, args[0], list)
    if items is None:
        return None if count is None else NULL_ARRAY
    n = 1 if count is None else count
    if left:
        taken = items[:n]
        del items[:n]
    else:
        taken = items[::-1][:n]
        del items[len(items) - len(taken) :]
    if taken:
        _changed(conn, args[0], items)
    return taken[0] if count is None else taken


@command(b"lpop", -2)
def lpop(conn: RESPConnection, args: list[bytes]) -> Any:
    return _pop(conn, args, True)


@command(b"rpop", -2)
def rpop(conn: RESPConnection, args: list[bytes]) -> Any:
    return _pop(conn, args, False)


@command(b"llen", 2)
def llen(conn: RESPConnection, args: list[bytes]) -> Any:
    return len(lookup(conn, args[0], list) or ())


@command(b"lrange", 4)
def lrange(conn: RESPConnection, args: list[bytes]) -> Any:
    start, stop = integer(args[1]), integer(args[2])
    items = lookup(conn, args[0], list) or []
    n = len(items)
    start = max(start + n if start < 0 else start, 0)
    stop = stop + n if stop < 0 else stop
    return items[start : stop + 1] if start <= stop else []


@command(b"hset", -4)
def hset(conn: RESPConnection, args: list[bytes]) -> Any:
    if len(args) % 2 == 0:
        raise ReplyError(b"ERR wrong number of arguments for 'hset' command")
    fields = _container(conn, args[0], dict)
    added = 0
    for field, value in zip(args[1::2], args[2::2], strict=True):
        added += field not in fields
        fields[field] = value
    _changed(conn, args[0], fields)
    return added


@command(b"hget", 3)
def hget(conn: RESPConnection, args: list[bytes]) -> Any:
    return (lookup(conn, args[0], dict) or {}).get(args[1])


@command(b"hdel", -3)
def hdel(conn: RESPConnection, args: list[bytes]) -> Any:
    fields = lookup(conn, args[0], dict)
    if fields is None:
        return 0
    removed = sum(fields.pop(field, None) is not None for field in args[1:])
    if removed:
        _changed(conn, args[0], fields)
    return removed


@command(b"hgetall", 2)
def hgetall(conn: RESPConnection, args: list[bytes]) -> Any:
    return Map(tuple((lookup(conn, args[0], dict) or {}).items()))


@command(b"hlen", 2)
def hlen(conn: RESPConnection, args: list[bytes]) -> Any:
    return len(lookup(conn, args[0], dict) or ())


@command(b"sadd", -3)
def sadd(conn: RESPConnection, args: list[bytes]) -> Any:
    members = _container(conn, args[0], set)
    before = len(members)
    members.update(args[1:])
    if len(members) > before:
        _changed(conn, args[0], members)
    return len(members) - before


@command(b"srem", -3)
def srem(conn: RESPConnection, args: list[bytes]) -> Any:
    members = lookup(conn, args[0], set)
    if members is None:
        return 0
    before = len(members)
    members.difference_update(args[1:])
    if len(members) < before:
        _changed(conn, args[0], members)
    return before - len(members)


@command(b"smembers", 2)
def smembers(conn: RESPConnection, args: list[bytes]) -> Any:
    return Set(tuple(sorted(lookup(conn, args[0], set) or ())))


@command(b"scard", 2)
def scard(conn: RESPConnection, args: list[bytes]) -> Any:
    return len(lookup(conn, args[0], set) or ())


@command(b"sismember", 3)
def sismember(conn: RESPConnection, args: list[bytes]) -> Any:
    return int(args[1] in (lookup(conn, args[0], set) or ()))


@command(b"publish", 3)
def publish(conn: RESPConnection, args: list[bytes]) -> Any:
    return conn.factory.publish(args[0], args[1])


@command(b"spublish", 3)
def spublish(conn: RESPConnection, args: list[bytes]) -> Any:
    return conn.factory.spublish(args[0], args[1])


#: ``PUBSUB HELP``, line for line as Redis 7.0 answers it
PUBSUB_HELP = (
    b"PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"CHANNELS [<pattern>]",
    b"    Return the currently active channels matching a <pattern> (default: '*').",
    b"NUMPAT",
    b"    Return number of subscriptions to patterns.",
    b"NUMSUB [<channel> ...]",
    b"    Return the number of subscribers for the specified channels, excluding",
    b"    pattern subscriptions(default: no channels).",
    b"SHARDCHANNELS [<pattern>]",
    b"    Return the currently active shard level channels matching a <pattern> (default: '*').",
    b"SHARDNUMSUB [<shardchannel> ...]",
    b"    Return the number of subscribers for the specified shard level channel(s)",
    b"HELP",
    b"    Prints this help.",
)


@command(
    b"pubsub",
    -2,
    {
        b"channels": -2,
        b"numpat": 2,
        b"numsub": -2,
        b"shardchannels": -2,
        b"shardnumsub": -2,
        b"help": 2,
    },
)
def pubsub(conn: RESPConnection, args: list[bytes]) -> Any:
    """``PUBSUB CHANNELS|SHARDCHANNELS [pattern]``, ``NUMSUB|SHARDNUMSUB [channel...]``
    (flat name, count pairs, in RESP3 too), ``NUMPAT``, ``HELP``; the channels come in the
    server's order, which is Redis's hash table's there."""
    sub, server = args[0].lower(), conn.factory
    if sub == b"help":
        return [Simple(line) for line in PUBSUB_HELP]
    if sub == b"numpat":
        return server.pattern_count()
    shard = sub.startswith(b"shard")
    if sub.endswith(b"channels"):
        if len(args) > 2:
            raise ReplyError(
                b"ERR unknown subcommand or wrong number of arguments for '%s'. "
                b"Try PUBSUB HELP." % args[0][:128]
            )
        return server.active_channels(args[1] if len(args) == 2 else None, shard)
    return [word for name in args[1:] for word in (name, server.subscriber_count(name, shard))]


factory = MiniRedisFactory()


def main() -> None:
    from _cli import options, run_with_endpoint

    args = options(
        __doc__,
        extra=lambda parser: parser.add_argument("--password", help="require AUTH"),
    )
    if args.password:
        factory.password = args.password.encode()
    run_with_endpoint(factory, __doc__, args)


if __name__ == "__main__":
    main()
