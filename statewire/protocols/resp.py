"""A Redis-protocol (RESP) server whose connection states are a declared machine.

Theory of operation
-------------------
Every request is one frame of :func:`grammars.request` (a list of arguments), routed by its
upper-cased name to an input of the machine below; any name without an input of its own is
``command``. What a state does with each input *is* Redis's connection logic::

    anonymous   AUTH, HELLO ... AUTH        -> ready (credentials accepted: ``admitted``)
                anything else               refused: -NOAUTH Authentication required.
    ready       a command                   run, answered
                WATCH                       watches keys (see below)
                MULTI                       -> queuing
                (P|S)SUBSCRIBE              -> subscribed
                EXEC, DISCARD               refused: -ERR EXEC without MULTI
    queuing     a command                   checked and queued: +QUEUED (or its error,
                                            which dooms the transaction)
                (P)SUBSCRIBE                queued: -> queuing_subscribed
                EXEC                        -> ready: the replies, or -EXECABORT, or a
                                            null array when a watched key changed
                DISCARD                     -> ready: +OK
                MULTI                       refused: -ERR MULTI calls can not be nested
                WATCH                       refused: -ERR WATCH inside MULTI is not allowed
    queuing_subscribed                      as queuing, but EXEC and DISCARD -> subscribed
                                            (-> ready at once when no subscription is
                                            left: ``emptied``)
    subscribed  (P|S)(UN)SUBSCRIBE, PING    answered; unsubscribed from the last channel,
                                            pattern and shard channel: -> ready (``emptied``)
                MULTI (RESP3)               -> queuing_subscribed (``resp3_multi``)
                anything else (RESP2)       refused: -ERR Can't execute '...': only ...
    any state   QUIT -> closed, RESET -> anonymous (-> ready at once with no password),
                connection lost -> closed

Pub/sub counts a client's channels and patterns together (each confirmation carries the
sum); a pattern is a Redis glob (:class:`Glob`) and a message it matches is a ``pmessage``.
Shard channels (``SSUBSCRIBE``, ``SUNSUBSCRIBE``, ``SPUBLISH``; Redis 7) are a namespace of
their own, counted apart (their confirmations carry their own count; patterns never match
them; a message is an ``smessage``), as a Redis server that is not a cluster keeps them;
the client leaves pub/sub mode when all three counts are zero. What ``PUBSUB`` asks, the
factory answers (:meth:`RESPFactory.active_channels`, ``subscriber_count``,
``pattern_count``); the application registers the command, as it does ``PUBLISH``. RESP2
pub/sub mode refuses it (a container's refusal names ``container|sub``: ``pubsub|numsub``).
A transaction runs the pub/sub commands it queued as Redis does, at ``EXEC``: EXEC's array
counts the commands, and a command's confirmations (one per channel) are its elements, so
the array holds more elements than it announces; whether the client is in pub/sub mode
after ``EXEC`` (or ``DISCARD``) is whether it then listens to anything. In RESP3 a
subscribed client may run any command, a transaction included.
``WATCH`` keeps ``(database, key)`` pairs; the application calls
:meth:`RESPFactory.touch` for each key a command changes (Redis's ``signalModifiedKey``)
and :meth:`RESPFactory.expire_watched` lets an expiry count as a change; ``EXEC``,
``DISCARD``, ``RESET`` and the end of the connection forget the watched keys.

A refusal is the machine's own: the state has no transition for the input, and
:meth:`RESPServer.remoteError` words it as Redis does. Unknown commands and wrong arities
are answered first, in every state, as Redis checks them first. A request the grammar
refuses (``*abc``, a bulk length over the limit) is answered ``-ERR Protocol error: ...``
and the connection closed, as Redis does.

Replies are Python values (see :mod:`grammars.resp`): ``bytes`` a bulk string, ``int``,
``None``, lists, :class:`~grammars.resp.Simple`, :class:`~grammars.resp.Error`, and the
RESP3 types (``dict``, ``set``, ``float``, ``bool``, :class:`~grammars.resp.Push`...).
Each connection builds them with ``resp(2)`` until ``HELLO 3`` switches it to ``resp(3)``,
so a command handler returns one value for both.

An application registers its commands in a :class:`CommandTable` (name, Redis arity,
handler) and serves a :class:`RESPFactory` of them; ``examples/miniredis.py`` is one.

This module declares the machine (:class:`Inputs`, its states and transitions), its route
and framings, :class:`RESPServer` and :class:`RESPFactory`. What the transitions call, one
client's connection, is :class:`RESPConnection` (``_resp_connection``); the command
registry (:class:`CommandTable`, :class:`Command`, :class:`ReplyError`) is
``_resp_commands``; the commands and refusals the connection words by itself are
``_resp_builtins``. Everything an application uses is importable from here.
"""

from __future__ import annotations

import itertools
from typing import Protocol

from automat import TypeMachineBuilder

from grammars.resp import OK, Error, Push, Simple, request
from statewire.machine import by_key
from statewire.protocol import Factory
from statewire.protocols._resp_builtins import auth, hello, refusal
from statewire.protocols._resp_commands import (
    MACHINE_COMMANDS,
    Command,
    CommandTable,
    ReplyError,
    fits,
)
from statewire.protocols._resp_commands import Handler as Handler
from statewire.protocols._resp_commands import Reply as Reply
from statewire.protocols._resp_connection import RESPConnection
from statewire.protocols.glob import Glob

# -- the machine -------------------------------------------------------------------------


class Inputs(Protocol):
    """The machine's inputs: a request per kind of command, and the internal events."""

    def command(self, argv: list[bytes]) -> None: ...
    def auth(self, argv: list[bytes]) -> None: ...
    def hello(self, argv: list[bytes]) -> None: ...
    def ping(self, argv: list[bytes]) -> None: ...
    def multi(self, argv: list[bytes]) -> None: ...
    def exec(self, argv: list[bytes]) -> None: ...
    def discard(self, argv: list[bytes]) -> None: ...
    def subscribe(self, argv: list[bytes]) -> None: ...
    def unsubscribe(self, argv: list[bytes]) -> None: ...
    def psubscribe(self, argv: list[bytes]) -> None: ...
    def punsubscribe(self, argv: list[bytes]) -> None: ...
    def ssubscribe(self, argv: list[bytes]) -> None: ...
    def sunsubscribe(self, argv: list[bytes]) -> None: ...
    def watch(self, argv: list[bytes]) -> None: ...
    def quit(self, argv: list[bytes]) -> None: ...
    def reset(self, argv: list[bytes]) -> None: ...
    def admitted(self) -> None: ...
    def emptied(self) -> None: ...
    def resp3_multi(self) -> None: ...
    def lost(self, reason: object) -> None: ...


builder = TypeMachineBuilder(Inputs, RESPConnection)
anonymous = builder.state("anonymous")
ready = builder.state("ready")
queuing = builder.state("queuing")
queuing_subscribed = builder.state("queuing_subscribed")
subscribed = builder.state("subscribed")
closed = builder.state("closed")


# anonymous: only credentials get through


@anonymous.upon(Inputs.auth).loop()
def authenticate(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    answer = auth(core, argv[1:])
    core.reply(answer)
    if answer is OK:
        machine.admitted()


@anonymous.upon(Inputs.hello).loop()
def hello_anonymous(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    if b"auth" not in (a.lower() for a in argv[2:]):
        core.reply(
            Error(
                b"NOAUTH HELLO must be called with the client already authenticated, "
                b"otherwise the HELLO AUTH <user> <pass> option can be used to "
                b"authenticate the client and select the RESP protocol version at the "
                b"same time"
            )
        )
        return
    answer = hello(core, argv[1:])
    core.reply(answer)
    if not isinstance(answer, Error):
        machine.admitted()


anonymous.upon(Inputs.admitted).to(ready).returns(None)


# ready: commands run


@ready.upon(Inputs.command).loop()
def run(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    answer = core.execute(argv)  # first: HELLO changes the encoder
    core.transport.write(core.encoder.encode(answer))


for _input in (Inputs.auth, Inputs.hello, Inputs.ping, Inputs.watch):
    ready.upon(_input).loop()(run)


@ready.upon(Inputs.multi).to(queuing)
def begin(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.reply(OK)


@ready.upon(Inputs.subscribe).to(subscribed)
def join(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.join(argv[1:])


@ready.upon(Inputs.psubscribe).to(subscribed)
def join_patterns(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.join_patterns(argv[1:])


@ready.upon(Inputs.ssubscribe).to(subscribed)
def join_shards(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.join_shards(argv[1:])


@ready.upon(Inputs.sunsubscribe).loop()
def leave_no_shard(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.leave_shards(argv[1:])


@ready.upon(Inputs.unsubscribe).loop()
def leave_none(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.leave(argv[1:])


@ready.upon(Inputs.punsubscribe).loop()
def leave_no_pattern(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.leave_patterns(argv[1:])


# queuing: a transaction


@queuing.upon(Inputs.command).loop()
def enqueue(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    refused = core.check(argv)
    if refused is not None:
        core.doomed = True  # Redis refuses the whole transaction at EXEC
        core.reply(refused)
        return
    core.queued.append(argv)
    core.reply(Simple(b"QUEUED"))


#: the machine's commands a transaction queues
_QUEUED = (
    Inputs.auth,
    Inputs.hello,
    Inputs.ping,
    Inputs.subscribe,
    Inputs.unsubscribe,
    Inputs.psubscribe,
    Inputs.punsubscribe,
    Inputs.ssubscribe,
    Inputs.sunsubscribe,
)
for _input in _QUEUED:
    if _input not in (Inputs.subscribe, Inputs.psubscribe):  # (see queuing_subscribed)
        queuing.upon(_input).loop()(enqueue)


@queuing.upon(Inputs.exec).to(ready)
def commit(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.run_transaction(argv)


@queuing.upon(Inputs.discard).to(ready)
def abandon(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.drop_transaction()


# queuing_subscribed: a transaction that leaves the client in pub/sub mode (it queued a
# (P)SUBSCRIBE, or began subscribed, in RESP3), unless no subscription is left by then

queuing.upon(Inputs.subscribe).to(queuing_subscribed)(enqueue)
queuing.upon(Inputs.psubscribe).to(queuing_subscribed)(enqueue)
for _input in (Inputs.command, *_QUEUED):
    queuing_subscribed.upon(_input).loop()(enqueue)


@queuing_subscribed.upon(Inputs.exec).to(subscribed)
def commit_subscribed(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.run_transaction(argv)
    if not core.listening:
        machine.emptied()


@queuing_subscribed.upon(Inputs.discard).to(subscribed)
def abandon_subscribed(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.drop_transaction()
    if not core.listening:
        machine.emptied()


# subscribed: pub/sub mode


subscribed.upon(Inputs.subscribe).loop()(join)
subscribed.upon(Inputs.psubscribe).loop()(join_patterns)
subscribed.upon(Inputs.ssubscribe).loop()(join_shards)


@subscribed.upon(Inputs.unsubscribe).loop()
def leave(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.leave(argv[1:])
    if not core.listening:
        machine.emptied()


@subscribed.upon(Inputs.punsubscribe).loop()
def leave_patterns(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.leave_patterns(argv[1:])
    if not core.listening:
        machine.emptied()


@subscribed.upon(Inputs.sunsubscribe).loop()
def leave_shards(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.leave_shards(argv[1:])
    if not core.listening:
        machine.emptied()


subscribed.upon(Inputs.emptied).to(ready).returns(None)


@subscribed.upon(Inputs.ping).loop()
def pong(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.reply(core.execute(argv))  # (RESP2 pub/sub mode: in the shape of a message)


@subscribed.upon(Inputs.multi).loop()
def begin_subscribed(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    if core.protocol_version == 2:  # RESP2 pub/sub mode takes no transaction
        core.reply(refusal("subscribed", "multi", argv[0]))
        return
    core.reply(OK)
    machine.resp3_multi()


subscribed.upon(Inputs.resp3_multi).to(queuing_subscribed).returns(None)


@subscribed.upon(Inputs.command).loop()
def run_subscribed(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    # RESP3 carries messages out of band (pushes), so its clients may run any command
    if core.protocol_version == 3 or core.check(argv) is not None:
        core.reply(core.execute(argv))
    else:
        core.reply(refusal("subscribed", "command", core.full_name(argv)))


subscribed.upon(Inputs.watch).loop()(run_subscribed)
subscribed.upon(Inputs.auth).loop()(run_subscribed)
subscribed.upon(Inputs.hello).loop()(run_subscribed)  # RESP3: HELLO 2 too (then RESP2 rules)


# any state: QUIT, RESET, the loss


def say_bye(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.forget()
    core.reply(OK)
    core.close()


def start_over(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.forget()
    core.use_protocol(2)
    core.db = 0
    core.client_name = b""
    core.reply(Simple(b"RESET"))
    if core.factory.password is None:
        machine.admitted()


def hang_up(machine: Inputs, core: RESPConnection, reason: object) -> None:
    core.forget()


for _state in (anonymous, ready, queuing, queuing_subscribed, subscribed):
    _state.upon(Inputs.quit).to(closed)(say_bye)
    _state.upon(Inputs.reset).to(anonymous)(start_over)
    _state.upon(Inputs.lost).to(closed)(hang_up)


#: the arity of each command the machine routes by name
_ROUTED_ARITY = {name.upper(): arity for name, arity in MACHINE_COMMANDS.items()}


def _name(argv: list[bytes]) -> bytes:
    """The route key: the command's name; but a machine command of the wrong arity goes
    where any command goes, to be refused with Redis's words in every state (Redis checks
    the arity before anything else); but EXEC, whose refusal ends a transaction."""
    name = argv[0].upper()
    arity = _ROUTED_ARITY.get(name)
    if arity is not None and not fits(arity, len(argv)) and name != b"EXEC":
        return b""
    return name


#: requests by name; any other name is a ``command``
_ROUTE = by_key(
    _name,
    {
        b"AUTH": Inputs.auth,
        b"HELLO": Inputs.hello,
        b"PING": Inputs.ping,
        b"MULTI": Inputs.multi,
        b"EXEC": Inputs.exec,
        b"DISCARD": Inputs.discard,
        b"SUBSCRIBE": Inputs.subscribe,
        b"UNSUBSCRIBE": Inputs.unsubscribe,
        b"PSUBSCRIBE": Inputs.psubscribe,
        b"PUNSUBSCRIBE": Inputs.punsubscribe,
        b"SSUBSCRIBE": Inputs.ssubscribe,
        b"SUNSUBSCRIBE": Inputs.sunsubscribe,
        b"WATCH": Inputs.watch,
        b"QUIT": Inputs.quit,
        b"RESET": Inputs.reset,
    },
    unknown=Inputs.command,
)
_REQUESTS = request()
#: before AUTH, Redis's own tighter limits: 10 arguments of 16 KiB
_STRANGERS = request(max_bulk=16384, max_array=10, oversize="unauthenticated")


class RESPServer(RESPConnection):
    """A Redis-protocol server connection: the machine above, a RESP request framing in
    every state but ``closed``, and the same route everywhere."""

    machine = builder.build()
    framings = {
        anonymous: _STRANGERS,
        ready: _REQUESTS,
        queuing: _REQUESTS,
        queuing_subscribed: _REQUESTS,
        subscribed: _REQUESTS,
    }
    routes = {
        state: _ROUTE for state in (anonymous, ready, queuing, queuing_subscribed, subscribed)
    }
    lost = Inputs.lost
    close_on_error = False


class RESPFactory(Factory):
    """Serves :class:`RESPServer` connections running ``commands``; shared by them all:
    the password (``None``: no ``AUTH`` needed), the pub/sub channels and patterns, and
    the watched keys."""

    protocol = RESPServer
    #: the Redis version the server reports (``HELLO``, ``INFO``)
    version = b"7.0.15"

    def __init__(self, commands: CommandTable, password: bytes | None = None) -> None:
        self.commands = commands
        self.password = password
        self.subscribers: dict[bytes, set[RESPConnection]] = {}
        #: pattern -> its glob and the clients subscribed to it
        self.pattern_subscribers: dict[bytes, tuple[Glob, set[RESPConnection]]] = {}
        #: shard channel -> the clients subscribed to it
        self.shard_subscribers: dict[bytes, set[RESPConnection]] = {}
        #: ``(database, key)`` -> the clients watching it
        self.watchers: dict[tuple[int, bytes], set[RESPConnection]] = {}
        self._ids = itertools.count(1)

    def new_client_id(self) -> int:
        """A fresh client id (``CLIENT ID``)."""
        return next(self._ids)

    def publish(self, channel: bytes, message: bytes) -> int:
        """Send ``message`` to the subscribers of ``channel``, then to those of each
        pattern it matches; return how many messages went (a client listening twice
        gets it twice, as in Redis)."""
        listeners = self.subscribers.get(channel, ())
        for listener in listeners:
            listener.reply(Push((b"message", channel, message)))
        sent = len(listeners)
        for pattern, (glob, followers) in self.pattern_subscribers.items():
            if glob.match(channel):
                for follower in followers:
                    follower.reply(Push((b"pmessage", pattern, channel, message)))
                sent += len(followers)
        return sent

    def spublish(self, channel: bytes, message: bytes) -> int:
        """Send ``message`` to the subscribers of the shard ``channel`` (``smessage``; no
        pattern sees it); return how many went."""
        listeners = self.shard_subscribers.get(channel, ())
        for listener in listeners:
            listener.reply(Push((b"smessage", channel, message)))
        return len(listeners)

    def active_channels(self, pattern: bytes | None = None, shard: bool = False) -> list[bytes]:
        """The channels (``shard``: the shard channels) someone listens to, in no order;
        only those the glob ``pattern`` matches when one is given (``PUBSUB CHANNELS``,
        ``PUBSUB SHARDCHANNELS``: no ``*`` shortcut, so ``*`` leaves out the empty name)."""
        channels = self.shard_subscribers if shard else self.subscribers
        if pattern is None:
            return list(channels)
        glob = Glob(pattern)
        return [channel for channel in channels if glob.match(channel)]

    def subscriber_count(self, channel: bytes, shard: bool = False) -> int:
        """How many clients listen to ``channel`` (``shard``: the shard channel), patterns
        left out (``PUBSUB NUMSUB``, ``PUBSUB SHARDNUMSUB``)."""
        return len((self.shard_subscribers if shard else self.subscribers).get(channel, ()))

    def pattern_count(self) -> int:
        """How many patterns someone listens to, each counted once however many clients
        follow it (``PUBSUB NUMPAT``, as Redis 7.0 counts)."""
        return len(self.pattern_subscribers)

    def follow_pattern(self, pattern: bytes, client: RESPConnection) -> None:
        """Send ``client`` the messages of the channels ``pattern`` matches."""
        entry = self.pattern_subscribers.get(pattern)
        if entry is None:
            entry = self.pattern_subscribers[pattern] = (Glob(pattern), set())
        entry[1].add(client)

    def unfollow_pattern(self, pattern: bytes, client: RESPConnection) -> None:
        """Stop :meth:`follow_pattern`."""
        entry = self.pattern_subscribers.get(pattern)
        if entry is not None:
            entry[1].discard(client)
            if not entry[1]:
                del self.pattern_subscribers[pattern]

    def touch(self, db: int, key: bytes) -> None:
        """Key ``key`` of database ``db`` changed: the transactions watching it will fail.
        The application calls it for every change a command makes (Redis's
        ``signalModifiedKey``), a deletion and an expiry included."""
        for client in self.watchers.get((db, key), ()):
            client.dirty = True

    def expire_watched(self, db: int, key: bytes, now: float) -> None:
        """Drop ``key`` of database ``db`` if it expired by ``now`` (calling :meth:`touch`
        as for any deletion), so that an expiry counts as a change; asked at ``WATCH``
        and at ``EXEC``. The keyspace is the application's: this default does nothing."""


__all__ = [
    "Command",
    "CommandTable",
    "Glob",
    "Inputs",
    "RESPConnection",
    "RESPFactory",
    "RESPServer",
    "ReplyError",
]
