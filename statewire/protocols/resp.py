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
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from automat import TypeMachineBuilder

from grammars.resp import NULL_ARRAY, OK, Error, Push, Resp, Simple, request, resp
from statewire.declarative import MachineProtocol
from statewire.framing import FramingError
from statewire.machine import RemoteProtocolError, UnexpectedInput, UnroutableFrame, by_key
from statewire.protocol import Factory
from statewire.protocols._resp_builtins import (
    BUILT_IN,
    auth,
    exec_abort,
    hello,
    refusal,
    unwatch,
)
from statewire.protocols._resp_builtins import one_line as _error
from statewire.protocols.glob import Glob

#: what a handler returns (any value :func:`grammars.resp.resp` builds)
Reply = Any
#: a command handler: the connection and the arguments after the command's name
Handler = Callable[["RESPConnection", list[bytes]], Reply]

#: the empty set and mapping a connection's subscriptions and watched keys start as (one
#: object each for every connection: an empty frozenset is not shared by Python)
_NONE: frozenset[Any] = frozenset()
_NO_PATTERNS: Mapping[bytes, None] = MappingProxyType({})


class ReplyError(Exception):
    """Raised by a handler to answer an error: ``ReplyError(b"WRONGTYPE ...")``; the
    first word is the error's kind, as in Redis."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("utf-8", "replace"))
        self.text = text


@dataclass(frozen=True)
class Command:
    """A command: its lower-case ``name``, its ``arity`` as Redis counts it (the name
    included; positive: exactly that many, negative: at least minus that many) and its
    ``handler`` (``None`` for those the connection's machine answers itself)."""

    name: bytes
    arity: int
    handler: Handler | None
    #: a container command's subcommands (``CLIENT ID``...): lower-case name -> arity
    #: (counted from the container's name), checked as Redis checks them, before the
    #: handler runs or the request is queued
    subcommands: Mapping[bytes, int] | None = None

    def accepts(self, count: int) -> bool:
        """Whether a request of ``count`` words (the name included) has the right arity."""
        return _fits(self.arity, count)


class CommandTable:
    """The commands a server knows, by lower-case name; it starts with the connection's
    own (``AUTH``, ``HELLO``, ``PING``, ``MULTI``... ``RESET``)."""

    def __init__(self) -> None:
        self._commands: dict[bytes, Command] = {}
        #: the same by upper-case name (what clients send), found without a lower()
        self._upper: dict[bytes, Command] = {}
        for name, arity in _MACHINE_COMMANDS.items():
            self.register(name, arity, BUILT_IN.get(name))
        self.register(b"unwatch", 1, unwatch)

    def register(
        self,
        name: bytes,
        arity: int,
        handler: Handler | None,
        subcommands: Mapping[bytes, int] | None = None,
    ) -> None:
        """Add (or replace) the command ``name``."""
        command = Command(name.lower(), arity, handler, subcommands)
        self._commands[command.name] = command
        self._upper[command.name.upper()] = command

    def command(
        self, name: bytes, arity: int, subcommands: Mapping[bytes, int] | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``@table.command(b"get", 2)`` registers the function below."""

        def register(handler: Handler) -> Handler:
            self.register(name, arity, handler, subcommands)
            return handler

        return register

    def get(self, name: bytes) -> Command | None:
        """The command called ``name`` (any case), or ``None``."""
        command = self._upper.get(name)
        return self._commands.get(name.lower()) if command is None else command

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)


#: the commands the machine routes by name (their arity is checked before the machine sees
#: them: see ``_name``)
_MACHINE_COMMANDS = {
    b"multi": 1,
    b"exec": 1,
    b"discard": 1,
    b"subscribe": -2,
    b"unsubscribe": -1,
    b"psubscribe": -2,
    b"punsubscribe": -1,
    b"ssubscribe": -2,
    b"sunsubscribe": -1,
    b"quit": -1,
    b"reset": 1,
    b"auth": -2,
    b"hello": -1,
    b"ping": -1,
    b"watch": -2,
}


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


class RESPConnection(MachineProtocol):
    """The machine's core: one client's connection and what the transitions use."""

    factory: RESPFactory
    #: replies are built for this RESP version (``HELLO`` changes it)
    protocol_version = 2
    encoder: Resp = resp(2)
    #: the client's id (``CLIENT ID``) and name (``CLIENT SETNAME``)
    client_id = 0
    client_name = b""
    #: the database a command works on (``SELECT``)
    db = 0
    #: the commands queued by ``MULTI``, and whether one was refused (``EXECABORT``)
    queued: list[list[bytes]]
    doomed = False
    #: the channels and the glob patterns (in the order given) the client listens to; the
    #: class's empty ones until the client subscribes (an idle connection holds none)
    channels: AbstractSet[bytes] = _NONE
    patterns: Mapping[bytes, None] = _NO_PATTERNS
    #: the shard channels the client listens to (``SSUBSCRIBE``)
    shard_channels: AbstractSet[bytes] = _NONE
    #: the ``(database, key)`` pairs ``WATCH`` keeps, and whether one of them changed
    watched: AbstractSet[tuple[int, bytes]] = _NONE
    dirty = False

    def connectionMade(self) -> None:
        """Number the client; admit it at once when no password is set."""
        self.client_id = self.factory.new_client_id()
        self.queued = []
        if self.factory.password is None:
            # the machine starts in ``anonymous``; statewire has no way yet to start it
            # elsewhere, so the admission is an input, as after AUTH
            self.inputs.admitted()

    # -- replies ---------------------------------------------------------------------------

    def reply(self, value: Reply) -> None:
        """Send one reply, built for the client's RESP version."""
        self.transport.write(self.encoder.encode(value))

    def use_protocol(self, version: int) -> None:
        """Build replies for RESP ``version`` (2 or 3) from now on."""
        self.protocol_version = version
        self.encoder = resp(version)

    # -- commands ----------------------------------------------------------------------------

    def check(self, argv: list[bytes]) -> Error | None:
        """The error Redis answers before anything else: an unknown command or a wrong
        number of arguments; ``None`` when the request may run."""
        command = self.factory.commands.get(argv[0])
        if command is None:
            shown = b"".join(b"'%s' " % a[:128] for a in argv[1:])[:128]
            return _error(
                b"ERR unknown command '%s', with args beginning with: %s" % (argv[0][:128], shown)
            )
        if not command.accepts(len(argv)):
            return _error(b"ERR wrong number of arguments for '%s' command" % command.name)
        if command.subcommands is not None and len(argv) > 1:
            sub = argv[1].lower()
            arity = command.subcommands.get(sub)
            if arity is None:
                return _error(
                    b"ERR unknown subcommand '%s'. Try %s HELP."
                    % (argv[1][:128], command.name.upper())
                )
            if not _fits(arity, len(argv)):
                return _error(
                    b"ERR wrong number of arguments for '%s|%s' command" % (command.name, sub)
                )
        return None

    def full_name(self, argv: list[bytes]) -> bytes:
        """The name Redis gives a (checked) request in its refusals: a container's
        subcommand is ``container|sub`` (``pubsub|numsub``), lower-case."""
        command = self.factory.commands.get(argv[0])
        if command is None:
            return argv[0]
        if command.subcommands and len(argv) > 1:
            return command.name + b"|" + argv[1].lower()
        return command.name

    def execute(self, argv: list[bytes]) -> Reply:
        """Run one request (checked) and return its reply."""
        command = self.factory.commands.get(argv[0])
        if (
            command is None
            or command.subcommands
            # the arity, as _fits reads it (a call less on every request)
            or (len(argv) != command.arity if command.arity >= 0 else len(argv) < -command.arity)
        ):
            refused = self.check(argv)
            if refused is not None:
                return refused
        assert command is not None
        if command.handler is None:
            return Error(b"ERR Command not allowed inside a transaction")
        try:
            return command.handler(self, argv[1:])
        except ReplyError as error:
            return _error(error.text)

    # -- transactions ----------------------------------------------------------------------

    def run_transaction(self, argv: list[bytes]) -> None:
        """``EXEC``: the queued requests' replies, or -EXECABORT (one was refused, or this
        EXEC is), or a null array (a watched key changed); the transaction and the watched
        keys are forgotten."""
        queued, doomed, refused = self.queued, self.doomed, self.check(argv)
        self.queued, self.doomed = [], False
        changed = not doomed and refused is None and self.watched_changed()
        self.unwatch()  # before the commands run: what they change is no one's news
        if refused is not None:  # (EXEC of the wrong arity)
            self.reply(exec_abort(refused))
        elif doomed:
            self.reply(Error(b"EXECABORT Transaction discarded because of previous errors."))
        elif changed:
            self.reply(NULL_ARRAY)
        else:
            self.exec_queued(queued)

    def drop_transaction(self) -> None:
        """``DISCARD``: forget the transaction and the watched keys; +OK."""
        self.queued, self.doomed = [], False
        self.unwatch()
        self.reply(OK)

    def exec_queued(self, queued: list[list[bytes]]) -> None:
        """Run the requests ``MULTI`` queued, answering as Redis's ``EXEC`` does: an array
        header counting them, then what each one writes as it runs, in the RESP version of
        that moment (a queued ``HELLO`` changes it); a pub/sub command confirms each channel
        (and a message the client publishes to itself comes where it is sent), so the array
        may hold more elements than it announces."""
        self.transport.write(b"*%d\r\n" % len(queued))  # the same in RESP2 and RESP3
        for argv in queued:
            pubsub = _PUBSUB_IN_EXEC.get(argv[0].upper())
            if pubsub is not None:
                pubsub(self, argv[1:])
            else:
                self.reply(self.execute(argv))

    # -- pub/sub -----------------------------------------------------------------------------

    @property
    def subscriptions(self) -> int:
        """How many channels and patterns the client listens to (what Redis confirms)."""
        return len(self.channels) + len(self.patterns)

    @property
    def listening(self) -> bool:
        """Whether the client listens to anything: a channel, a pattern, a shard channel
        (while it does, a RESP2 client is in pub/sub mode)."""
        return bool(self.channels or self.patterns or self.shard_channels)

    def join(self, channels: list[bytes]) -> None:
        """Subscribe to ``channels``, confirming each."""
        for channel in channels:
            if type(self.channels) is not set:
                self.channels = set()
            self.channels.add(channel)
            self.factory.subscribers.setdefault(channel, set()).add(self)
            self.reply(Push((b"subscribe", channel, self.subscriptions)))

    def join_patterns(self, patterns: list[bytes]) -> None:
        """Subscribe to the glob ``patterns``, confirming each."""
        for pattern in patterns:
            if type(self.patterns) is not dict:
                self.patterns = {}
            self.patterns[pattern] = None
            self.factory.follow_pattern(pattern, self)
            self.reply(Push((b"psubscribe", pattern, self.subscriptions)))

    def leave(self, channels: list[bytes]) -> None:
        """Unsubscribe from ``channels`` (all when empty), confirming each."""
        for channel in channels or self._all(b"unsubscribe", sorted(self.channels)):
            self._unsubscribe(channel)
            self.reply(Push((b"unsubscribe", channel, self.subscriptions)))

    def leave_patterns(self, patterns: list[bytes]) -> None:
        """Unsubscribe from ``patterns`` (all when empty), confirming each."""
        for pattern in patterns or self._all(b"punsubscribe", list(self.patterns)):
            if type(self.patterns) is dict:
                self.patterns.pop(pattern, None)
            self.factory.unfollow_pattern(pattern, self)
            self.reply(Push((b"punsubscribe", pattern, self.subscriptions)))

    def join_shards(self, channels: list[bytes]) -> None:
        """Subscribe to the shard ``channels``, confirming each with the shard count."""
        for channel in channels:
            if type(self.shard_channels) is not set:
                self.shard_channels = set()
            self.shard_channels.add(channel)
            self.factory.shard_subscribers.setdefault(channel, set()).add(self)
            self.reply(Push((b"ssubscribe", channel, len(self.shard_channels))))

    def leave_shards(self, channels: list[bytes]) -> None:
        """Unsubscribe from the shard ``channels`` (all when empty), confirming each."""
        every = sorted(self.shard_channels)
        for channel in channels or self._all(b"sunsubscribe", every, len(every)):
            self._unsubscribe_shard(channel)
            self.reply(Push((b"sunsubscribe", channel, len(self.shard_channels))))

    def _all(self, kind: bytes, names: list[bytes], count: int | None = None) -> list[bytes]:
        """``names``; when there are none, Redis still confirms, naming nothing (with the
        channels and patterns counted, or ``count``)."""
        if not names:
            self.reply(Push((kind, None, self.subscriptions if count is None else count)))
        return names

    def forget(self) -> None:
        """Drop the connection's subscriptions, transaction and watched keys (QUIT, RESET,
        the loss)."""
        for channel in list(self.channels):
            self._unsubscribe(channel)
        for channel in list(self.shard_channels):
            self._unsubscribe_shard(channel)
        for pattern in self.patterns:
            self.factory.unfollow_pattern(pattern, self)
        self.patterns = _NO_PATTERNS
        self.queued.clear()
        self.doomed = False
        self.unwatch()

    def _unsubscribe(self, channel: bytes) -> None:
        if type(self.channels) is set:
            self.channels.discard(channel)
        _drop(self.factory.subscribers, channel, self)

    def _unsubscribe_shard(self, channel: bytes) -> None:
        if type(self.shard_channels) is set:
            self.shard_channels.discard(channel)
        _drop(self.factory.shard_subscribers, channel, self)

    # -- WATCH ---------------------------------------------------------------------------------

    def watch(self, keys: list[bytes]) -> None:
        """Watch ``keys`` of the current database until the next ``EXEC`` (or ``UNWATCH``,
        ``DISCARD``, ``RESET``)."""
        factory, now = self.factory, self.seconds()
        for key in keys:
            # a key already expired goes now, so that its going is not a change seen later
            factory.expire_watched(self.db, key, now)
            if type(self.watched) is not set:
                self.watched = set()
            self.watched.add((self.db, key))
            factory.watchers.setdefault((self.db, key), set()).add(self)

    def unwatch(self) -> None:
        """Forget the watched keys (and whether one changed)."""
        watchers = self.factory.watchers
        for pair in self.watched:
            clients = watchers.get(pair)
            if clients is not None:
                clients.discard(self)
                if not clients:
                    del watchers[pair]
        self.watched = _NONE
        self.dirty = False

    def watched_changed(self) -> bool:
        """Whether a watched key changed since ``WATCH`` (an expiry due now included)."""
        now = self.seconds()
        for db, key in list(self.watched):
            self.factory.expire_watched(db, key, now)
        return self.dirty

    # -- errors ------------------------------------------------------------------------------

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        """Word a refusal as Redis does (see the module); a bad request closes."""
        if isinstance(error, FramingError):
            self.reply(_error(b"ERR " + error.message.encode("latin-1", "replace")))
            self.close()
            return
        if isinstance(error, UnroutableFrame):
            return  # an empty request (``*0``, a blank line): Redis ignores it
        if not isinstance(error, UnexpectedInput) or self.machine_state == "closed":
            return
        argv: list[bytes] = error.frame
        answer, state = self.check(argv), self.machine_state
        if state == "subscribed" and self.protocol_version == 3:
            state = "ready"  # RESP3 pub/sub mode takes any command: EXEC without MULTI
        # rejected before it runs (EXEC without MULTI is its answer), before AUTH too
        rejected = answer is not None or state in ("subscribed", "anonymous")
        if answer is None:
            answer = refusal(state, error.input, argv[0])
        if rejected and error.input == "exec":
            answer = exec_abort(answer)
        self.reply(answer)


def _drop(listeners: dict[bytes, set[RESPConnection]], channel: bytes, client: Any) -> None:
    """Take ``client`` off the listeners of ``channel``; a channel nobody listens to goes."""
    clients = listeners.get(channel)
    if clients is not None:
        clients.discard(client)
        if not clients:
            del listeners[channel]


def _fits(arity: int, count: int) -> bool:
    """Whether ``count`` words meet a Redis ``arity`` (negative: at least)."""
    return count == arity if arity >= 0 else count >= -arity


#: the pub/sub commands a transaction runs at ``EXEC``: they answer as they go, as in
#: pub/sub mode (``SSUBSCRIBE`` is refused there: its handler says so)
_PUBSUB_IN_EXEC: dict[bytes, Callable[[RESPConnection, list[bytes]], None]] = {
    b"SUBSCRIBE": RESPConnection.join,
    b"PSUBSCRIBE": RESPConnection.join_patterns,
    b"UNSUBSCRIBE": RESPConnection.leave,
    b"PUNSUBSCRIBE": RESPConnection.leave_patterns,
    b"SUNSUBSCRIBE": RESPConnection.leave_shards,
}


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
_ROUTED_ARITY = {name.upper(): arity for name, arity in _MACHINE_COMMANDS.items()}


def _name(argv: list[bytes]) -> bytes:
    """The route key: the command's name; but a machine command of the wrong arity goes
    where any command goes, to be refused with Redis's words in every state (Redis checks
    the arity before anything else); but EXEC, whose refusal ends a transaction."""
    name = argv[0].upper()
    arity = _ROUTED_ARITY.get(name)
    if arity is not None and not _fits(arity, len(argv)) and name != b"EXEC":
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
