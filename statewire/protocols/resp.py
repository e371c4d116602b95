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
                EXEC                        -> ready: the replies, or -EXECABORT, or a
                                            null array when a watched key changed
                DISCARD                     -> ready: +OK
                MULTI                       refused: -ERR MULTI calls can not be nested
                WATCH                       refused: -ERR WATCH inside MULTI is not allowed
    subscribed  (P|S)(UN)SUBSCRIBE, PING    answered; unsubscribed from the last channel,
                                            pattern and shard channel: -> ready (``emptied``)
                anything else (RESP2)       refused: -ERR Can't execute '...': only ...
    any state   QUIT -> closed, RESET -> anonymous (-> ready at once with no password),
                connection lost -> closed

Pub/sub counts a client's channels and patterns together (each confirmation carries the
sum); a pattern is a Redis glob (:class:`Glob`) and a message it matches is a ``pmessage``.
Shard channels (``SSUBSCRIBE``, ``SUNSUBSCRIBE``, ``SPUBLISH``; Redis 7) are a namespace of
their own, counted apart (their confirmations carry their own count; patterns never match
them; a message is an ``smessage``), as a Redis server that is not a cluster keeps them;
the client leaves pub/sub mode when all three counts are zero.
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
from statewire.protocols.glob import Glob

#: what a handler returns (any value :func:`grammars.resp.resp` builds)
Reply = Any
#: a command handler: the connection and the arguments after the command's name
Handler = Callable[["RESPConnection", list[bytes]], Reply]

_PUBSUB_ONLY = (
    "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
)
#: the empty set and mapping a connection's subscriptions and watched keys start as (one
#: object each for every connection: an empty frozenset is not shared by Python)
_NONE: frozenset[Any] = frozenset()
_NO_PATTERNS: Mapping[bytes, None] = MappingProxyType({})

NOAUTH = Error(b"NOAUTH Authentication required.")
WRONGPASS = Error(b"WRONGPASS invalid username-password pair or user is disabled.")


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
            self.register(name, arity, _BUILT_IN.get(name))
        self.register(b"unwatch", 1, _unwatch)

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

    def execute(self, argv: list[bytes]) -> Reply:
        """Run one request (checked) and return its reply."""
        command = self.factory.commands.get(argv[0])
        if (
            command is None
            or command.subcommands
            # the arity, as _fits reads it (a call less on every request)
            or (len(argv) != command.arity if command.arity >= 0 else len(argv) < -command.arity)
        ):
            refusal = self.check(argv)
            if refusal is not None:
                return refusal
        assert command is not None
        if command.handler is None:
            return Error(b"ERR Command not allowed inside a transaction")
        try:
            return command.handler(self, argv[1:])
        except ReplyError as error:
            return _error(error.text)

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
        refusal = self.check(argv)
        if refusal is None:
            refusal = _refusal(self.machine_state, error.input, argv[0])
        self.reply(refusal)


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


def _error(text: bytes) -> Error:
    """An error reply whose text cannot break the reply's line (Redis does the same)."""
    return Error(text.replace(b"\r", b" ").replace(b"\n", b" "))


def _refusal(state: str, name: str, verb: bytes) -> Error:
    """What Redis answers to a command the connection's state does not take."""
    if state == "anonymous":
        return NOAUTH
    if state == "queuing":
        if name == "multi":
            return Error(b"ERR MULTI calls can not be nested")
        if name == "watch":
            return Error(b"ERR WATCH inside MULTI is not allowed")
        return Error(b"ERR Command not allowed inside a transaction")
    if state == "subscribed":
        return _error(b"ERR Can't execute '%s': %s" % (verb.lower(), _PUBSUB_ONLY.encode()))
    return Error(b"ERR %s without MULTI" % name.upper().encode())


builder = TypeMachineBuilder(Inputs, RESPConnection)
anonymous = builder.state("anonymous")
ready = builder.state("ready")
queuing = builder.state("queuing")
subscribed = builder.state("subscribed")
closed = builder.state("closed")


# anonymous: only credentials get through


@anonymous.upon(Inputs.auth).loop()
def authenticate(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    answer = _auth(core, argv[1:])
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
    answer = _hello(core, argv[1:])
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
    refusal = core.check(argv)
    if refusal is not None:
        core.doomed = True  # Redis refuses the whole transaction at EXEC
        core.reply(refusal)
        return
    core.queued.append(argv)
    core.reply(Simple(b"QUEUED"))


for _input in (
    Inputs.auth,
    Inputs.hello,
    Inputs.ping,
    Inputs.subscribe,
    Inputs.unsubscribe,
    Inputs.psubscribe,
    Inputs.punsubscribe,
    Inputs.ssubscribe,
    Inputs.sunsubscribe,
):
    queuing.upon(_input).loop()(enqueue)


@queuing.upon(Inputs.exec).to(ready)
def commit(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    queued, doomed = core.queued, core.doomed
    core.queued, core.doomed = [], False
    changed = not doomed and core.watched_changed()
    core.unwatch()  # before the commands run: what they change is no one's news
    if doomed:
        core.reply(Error(b"EXECABORT Transaction discarded because of previous errors."))
    elif changed:
        core.reply(NULL_ARRAY)
    else:
        core.reply([core.execute(request) for request in queued])


@queuing.upon(Inputs.discard).to(ready)
def abandon(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    core.queued, core.doomed = [], False
    core.unwatch()
    core.reply(OK)


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
    if core.protocol_version == 3:
        core.reply(core.execute(argv))
    else:  # RESP2 pub/sub answers in the shape of a message
        core.reply([b"pong", argv[1] if len(argv) > 1 else b""])


@subscribed.upon(Inputs.command).loop()
def run_subscribed(machine: Inputs, core: RESPConnection, argv: list[bytes]) -> None:
    # RESP3 carries messages out of band (pushes), so its clients may run any command
    if core.protocol_version == 3 or core.check(argv) is not None:
        core.reply(core.execute(argv))
    else:
        core.reply(_refusal("subscribed", "command", argv[0]))


subscribed.upon(Inputs.watch).loop()(run_subscribed)
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


for _state in (anonymous, ready, queuing, subscribed):
    _state.upon(Inputs.quit).to(closed)(say_bye)
    _state.upon(Inputs.reset).to(anonymous)(start_over)
    _state.upon(Inputs.lost).to(closed)(hang_up)


# -- the built-in commands --------------------------------------------------------------------


def _auth(core: RESPConnection, args: list[bytes]) -> Reply:
    """``AUTH [user] password``: only the ``default`` user exists."""
    if len(args) > 2:
        return Error(b"ERR syntax error")
    password = core.factory.password
    if password is None:
        return Error(
            b"ERR AUTH <password> called without any password configured for the default "
            b"user. Are you sure your configuration is correct?"
        )
    user = args[0] if len(args) == 2 else b"default"
    return OK if (user, args[-1]) == (b"default", password) else WRONGPASS


def _hello(core: RESPConnection, args: list[bytes]) -> Reply:
    """``HELLO [protover [AUTH user pass] [SETNAME name]]``: the server's description,
    in the RESP version asked for."""
    version = core.protocol_version
    if args:
        try:
            version = int(args[0])
        except ValueError:
            return Error(b"ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            return Error(b"NOPROTO unsupported protocol version")
    options, name = args[1:], None
    while options:
        option = options[0].lower()
        if option == b"auth" and len(options) >= 3:
            answer = _auth(core, options[1:3])
            if answer is not OK:
                return answer
            options = options[3:]
        elif option == b"setname" and len(options) >= 2:
            name = options[1]
            options = options[2:]
        else:
            return _error(b"ERR Syntax error in HELLO option '%s'" % options[0])
    if name is not None:
        core.client_name = name
    core.use_protocol(version)
    return {
        b"server": b"redis",
        b"version": core.factory.version,
        b"proto": version,
        b"id": core.client_id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


def _ping(core: RESPConnection, args: list[bytes]) -> Reply:
    if len(args) > 1:
        return Error(b"ERR wrong number of arguments for 'ping' command")
    return args[0] if args else Simple(b"PONG")


def _watch(core: RESPConnection, args: list[bytes]) -> Reply:
    """``WATCH key...`` (inside ``MULTI`` the machine refuses it)."""
    core.watch(args)
    return OK


def _unwatch(core: RESPConnection, args: list[bytes]) -> Reply:
    core.unwatch()
    return OK


#: the machine's commands that run a handler as well (in ``ready``, say)
def _ssubscribe_in_exec(core: RESPConnection, args: list[bytes]) -> Reply:
    """``SSUBSCRIBE`` queued in a transaction, at ``EXEC``: Redis refuses it so."""
    return Error(b"ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client")


_BUILT_IN: dict[bytes, Handler] = {
    b"auth": _auth,
    b"hello": _hello,
    b"ping": _ping,
    b"watch": _watch,
    b"ssubscribe": _ssubscribe_in_exec,
}
#: the arity of each command the machine routes by name
_ROUTED_ARITY = {name.upper(): arity for name, arity in _MACHINE_COMMANDS.items()}


def _name(argv: list[bytes]) -> bytes:
    """The route key: the command's name; but a machine command of the wrong arity goes
    where any command goes, to be refused with Redis's words in every state (Redis checks
    the arity before anything else)."""
    name = argv[0].upper()
    arity = _ROUTED_ARITY.get(name)
    if arity is not None and not _fits(arity, len(argv)):
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
    framings = {anonymous: _STRANGERS, ready: _REQUESTS, queuing: _REQUESTS, subscribed: _REQUESTS}
    routes = {state: _ROUTE for state in (anonymous, ready, queuing, subscribed)}
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
