"""A memcached server (text protocol, and the common meta commands) whose connection
states are a declared machine, over a storage the application provides.

Theory of operation
-------------------
A request is a line (memcached's own rule: up to ``\\n``, a ``\\r`` before it dropped),
parsed by :func:`grammars.memcache.parse_command`. Storage commands announce a data block,
which is what makes memcached a mixed line/raw protocol; here it is three states::

    commands     a retrieval, delete, incr/decr, touch, flush_all, version, verbosity,
                 stats, mg, md, ma, mn              answered (:mod:`._memcache_ops`)
                 set add replace append prepend cas ms   the block read with the
                                                    line when it came in its read
                                                    (stored or not, as below), else
                                                    -> storing (``block_follows``;
                                                    so a subclass framing ``storing``
                                                    otherwise frames only those)
                 the same, the item over the limit  SERVER_ERROR object too large for
                                                    cache -> swallowing
                 quit                               -> closed
    storing      the block (``fixed(size + 2)``)    stored or not -> commands; a block
                                                    not ended by CRLF: CLIENT_ERROR bad
                                                    data chunk -> commands
    swallowing   the block as it arrives (``streamed(size + 2)``), dropped -> commands
    any state    connection lost -> closed

A refused line gets memcached's own reply (the grammar carries it: ``ERROR``, ``CLIENT_ERROR
bad command line format``...) and the connection goes on, as memcached's does. An ``ms``
refused before memcached reads its length (no length, or a bad one, a key over 250 bytes,
too many flags) leaves its block to be read as commands; refused after (a flag, a token,
a mode), its block is dropped unread, as memcached drops it. An oversize
item is never held: its bytes are dropped as they arrive, however large the announced size
(a ``set`` of 2 GiB costs nothing but the reads), and, as memcached does, a ``set`` refused
so removes the old item. A line longer than :attr:`MemcacheFactory.max_line` is answered
``CLIENT_ERROR line too long`` and the connection closed (memcached closes it silently).

Items live in a :class:`Storage` the application provides (``examples/memcached.py`` has
an LRU one with a memory limit); expiry times are memcached's: 0 never, up to 30 days
relative, beyond that a Unix time, negative already expired, of a larger number its low 32
bits (as memcached's C ``int`` keeps them); all on the connection's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from automat import TypeMachineBuilder
from construct import this

from grammars import fixed, line, streamed
from grammars.memcache import (
    MAX_DATA,
    MAX_KEY,
    MAX_META_WORDS,
    Command,
    MemcacheError,
    Meta,
    Retrieval,
    Storage,
    parse_command,
)
from statewire.declarative import MachineProtocol
from statewire.framing import FrameTooLong, FramingError
from statewire.machine import RemoteProtocolError, UnroutableFrame, by_key
from statewire.protocol import Factory
from statewire.protocols._memcache_ops import (
    COUNTERS,
    ITEM_OVERHEAD,
    MAX_ITEM,
    Item,
    ItemStore,
    fits,
    meta_item_key,
    meta_refusal,
    ms_fits,
    run,
    store,
)

#: an expiry time beyond this many seconds is a Unix time, not a delay
RELATIVE_LIMIT = 60 * 60 * 24 * 30
_INT32 = 1 << 31


@dataclass(frozen=True)
class Refused:
    """An ``ms`` line refused after its data length was read: memcached answers ``reply``
    and drops the ``size`` bytes announced (and their CRLF) all the same."""

    reply: bytes
    size: int
    name: bytes = b"ms"
    key: bytes | None = None


@dataclass
class Announced:
    """A storage command whose data block (``size`` bytes, then CRLF) comes next."""

    command: Storage | Meta | Refused
    size: int


def _announced(
    machine: Inputs, core: MemcacheConnection, command: Storage | Meta | Refused
) -> Announced:
    return Announced(command, command.size or 0)


class Inputs(Protocol):
    """The machine's inputs."""

    def request(self, command: Command) -> None: ...
    def store(self, command: Storage | Meta) -> None: ...
    def block_follows(self, command: Storage | Meta) -> None: ...
    def oversize(self, command: Storage | Meta) -> None: ...
    def refused(self, command: Refused) -> None: ...
    def unknown(self, line: bytes) -> None: ...
    def quit(self, command: Command) -> None: ...
    def block(self, data: bytes) -> None: ...
    def piece(self, data: bytes) -> None: ...
    def swallowed(self, data: bytes) -> None: ...
    def lost(self, reason: object) -> None: ...


class MemcacheConnection(MachineProtocol):
    """The machine's core: one client's connection and what the transitions use."""

    factory: MemcacheFactory

    def reply(self, data: bytes) -> None:
        """Send reply bytes as they are (lines carry their own CRLF)."""
        self.transport.write(data)

    def expiry(self, exptime: int) -> float:
        """When an item given ``exptime`` expires, on the connection's clock (0: never;
        negative: already). As memcached, which keeps it in a C ``int``, only its low 32
        bits count, read as signed: ``2**32 + 10`` is 10 seconds, ``2**31`` already past."""
        exptime = (exptime + _INT32) % (2 * _INT32) - _INT32
        if exptime == 0:
            return 0.0
        now = self.seconds()
        if exptime > RELATIVE_LIMIT:
            at = now + (exptime - self.factory.wall_clock())
            if at > now:
                return at
        elif exptime > 0:
            return now + exptime
        # already expired: a time in the past, never 0 (which means never) whatever ``now``
        return min(now - 1.0, -1.0)

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        """Word a refusal as memcached does (see the module)."""
        if isinstance(error, UnroutableFrame) and isinstance(error.__cause__, MemcacheError):
            reply = error.__cause__.reply
            if reply:
                self.reply(reply + b"\r\n")
            return
        if isinstance(error, FrameTooLong):
            self.reply(b"CLIENT_ERROR line too long\r\n")
            self.close()
            return
        super().remoteError(error)


# -- routing: a line, parsed once, to its input ---------------------------------------------

_STORES = frozenset({b"set", b"add", b"replace", b"append", b"prepend", b"cas", b"ms"})
#: the line the key function parsed, and its command, for the converter that follows it
_last: list[Any] = [None, None]


def _ms_size(text: bytes) -> int | None:
    """The data length of an ``ms`` line refused after memcached read it (its block is
    then dropped); ``None`` if refused before: no length, a key over 250 bytes, too many
    flags, a length that is none (the block is then read as commands)."""
    words = text.split()
    if len(words) < 3 or words[0] != b"ms" or len(words[1]) > MAX_KEY:
        return None
    if len(words) > MAX_META_WORDS or not words[2].isdigit() or len(words[2]) > 10:
        return None
    size = int(words[2])
    return size if size <= MAX_DATA else None


def _parsed(frame: bytes) -> Command | Refused:
    if _last[0] is frame:
        command: Command | Refused = _last[1]
        return command
    text = frame[:-1] if frame[-1:] == b"\r" else frame
    try:
        command = parse_command(text)
    except MemcacheError as error:
        size = _ms_size(text)
        if size is None:
            raise
        command = Refused(error.reply, size)
    else:
        if isinstance(command, Meta) and command.name == b"ms":
            refusal = meta_refusal(command)  # flags memcached refuses before the block
            if refusal is not None:
                command = Refused(refusal, command.size or 0)
    _last[0], _last[1] = frame, command
    return command


def _kind(frame: bytes) -> bytes:
    """The route key: the command's name; for a storage command, ``store`` or
    ``oversize`` (which the item's size decides)."""
    command = _parsed(frame)
    if type(command) is Retrieval:  # most requests: named at once
        return command.name
    if isinstance(command, Refused):
        return b"refused"
    if isinstance(command, Storage):
        return b"store" if fits(command.key, command.size, command.flags) else b"oversize"
    if isinstance(command, Meta) and command.name == b"ms":
        return b"store" if ms_fits(command) else b"oversize"
    return command.name


def _command(frame: bytes) -> tuple[Command | Refused]:
    if _last[0] is frame:  # parsed by the key just before (what _parsed would find)
        return (_last[1],)
    return (_parsed(frame),)


_ROUTE = by_key(
    _kind,
    {
        b"store": (Inputs.store, _command),
        b"oversize": (Inputs.oversize, _command),
        b"refused": (Inputs.refused, _command),
        b"quit": (Inputs.quit, _command),
        **{
            name: (Inputs.request, _command)
            for name in (
                b"get",
                b"gets",
                b"gat",
                b"gats",
                b"delete",
                b"incr",
                b"decr",
                b"touch",
                b"flush_all",
                b"version",
                b"verbosity",
                b"stats",
                b"mg",
                b"md",
                b"ma",
                b"mn",
                b"me",
            )
        },
    },
    unknown=Inputs.unknown,
)


# -- the machine -------------------------------------------------------------------------------

builder = TypeMachineBuilder(Inputs, MemcacheConnection)
commands = builder.state("commands")
storing = builder.state("storing", _announced)
swallowing = builder.state("swallowing", _announced)
closed = builder.state("closed")


@commands.upon(Inputs.request).loop()
def answer(machine: Inputs, core: MemcacheConnection, command: Command) -> None:
    reply = run(core, command)
    if reply:
        core.reply(reply)


@commands.upon(Inputs.store).loop()
def store_block(machine: Inputs, core: MemcacheConnection, command: Storage | Meta) -> None:
    # the block that came in the read of its line (a pipelined set, most often) is read
    # with it: no state change a set; else storing reads it
    data = core.take_ahead((command.size or 0) + 2)
    if data is None:
        machine.block_follows(command)
    else:
        _store_block(core, command, data)


commands.upon(Inputs.block_follows).to(storing).returns(None)


@commands.upon(Inputs.oversize).to(swallowing)
def refuse_item(machine: Inputs, core: MemcacheConnection, command: Storage | Meta) -> None:
    core.factory.count(b"store_too_large")
    if command.name in (b"set", b"ms") and command.key is not None:
        # as memcached: no stale value survives (an ``ms`` names its item's key decoded)
        key = meta_item_key(command) if isinstance(command, Meta) else command.key
        core.factory.storage.delete(key)
    # a classic command's noreply silences it; an ``ms`` q does not (memcached's q hides
    # only the replies of success: an error is always sent)
    if not (isinstance(command, Storage) and command.noreply):
        core.reply(b"SERVER_ERROR object too large for cache\r\n")


@commands.upon(Inputs.refused).to(swallowing)
def refuse_line(machine: Inputs, core: MemcacheConnection, command: Refused) -> None:
    core.reply(command.reply + b"\r\n")


@commands.upon(Inputs.unknown).loop()
def say_error(machine: Inputs, core: MemcacheConnection, line: bytes) -> None:
    core.reply(b"ERROR\r\n")


@commands.upon(Inputs.quit).to(closed)
def hang_up(machine: Inputs, core: MemcacheConnection, command: Command) -> None:
    core.close()


@storing.upon(Inputs.block).to(commands)
def stored(machine: Inputs, core: MemcacheConnection, announced: Announced, data: bytes) -> None:
    command = announced.command
    assert not isinstance(command, Refused)  # a refused line is swallowed, never stored
    _store_block(core, command, data)


def _store_block(core: MemcacheConnection, command: Storage | Meta, data: bytes) -> None:
    """A storage command's block (its data and the CRLF after it) stored, and answered."""
    if data[-2:] != b"\r\n":
        core.factory.count(b"cmd_set")  # as memcached counts it
        core.reply(b"CLIENT_ERROR bad data chunk\r\n")
        return
    reply = store(core, command, data[:-2])
    if reply:
        core.reply(reply)


@swallowing.upon(Inputs.piece).loop()
def drop(machine: Inputs, core: MemcacheConnection, announced: Announced, data: bytes) -> None:
    pass


@swallowing.upon(Inputs.swallowed).to(commands)
def dropped(machine: Inputs, core: MemcacheConnection, announced: Announced, data: bytes) -> None:
    pass


for _state in (commands, storing, swallowing, closed):
    _state.upon(Inputs.lost).to(closed).returns(None)


def _piece(piece: Any) -> str:
    return "last piece" if piece.last else "piece"


class MemcacheServer(MemcacheConnection):
    """A memcached server connection: the machine above, a line framing for commands, the
    announced block in ``storing``, and the oversize one dropped as it comes."""

    machine = builder.build()
    framings = {
        commands: line(b"\n", max_length=65536),
        storing: fixed(this.size + 2),
        swallowing: streamed(this.size + 2),
    }
    routes = {
        commands: _ROUTE,
        storing: Inputs.block,
        swallowing: by_key(_piece, {"piece": Inputs.piece, "last piece": Inputs.swallowed}),
    }
    lost = Inputs.lost
    close_on_error = False


class MemcacheFactory(Factory):
    """Serves :class:`MemcacheServer` connections over ``storage``, shared by them all
    with the CAS counter and the statistics (memcached's counters, by name: ``stats``
    lists them, then those the store reports)."""

    protocol = MemcacheServer
    #: what ``version`` answers
    version = b"1.6.18-statewire"

    def __init__(self, storage: ItemStore) -> None:
        self.storage = storage
        self.cas = 0
        self.stats: dict[bytes, int] = dict.fromkeys(COUNTERS, 0)

    def next_cas(self) -> int:
        """A fresh CAS unique (memcached counts them from 1, server-wide)."""
        self.cas += 1
        return self.cas

    def wall_clock(self) -> float:
        """The Unix time, for absolute expiry times (a test may pin it)."""
        import time

        return time.time()

    def count(self, name: bytes, by: int = 1) -> None:
        """Add to a statistic ``stats`` reports."""
        self.stats[name] = self.stats.get(name, 0) + by


__all__ = [
    "COUNTERS",
    "ITEM_OVERHEAD",
    "MAX_ITEM",
    "Announced",
    "Inputs",
    "Item",
    "ItemStore",
    "MemcacheConnection",
    "MemcacheFactory",
    "MemcacheServer",
    "Refused",
]
