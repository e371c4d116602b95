"""The core of a RESP connection: one client's facts and what the server machine's
transitions use.

:mod:`statewire.protocols.resp` declares the states and transitions; this module keeps the
client's facts (its RESP version, id, name and database, the queued transaction, its
channels, patterns and shard channels, the watched keys) and does the work each transition
asks for: checking a request as Redis does first, running it, running a transaction at
``EXEC``, (un)subscribing, ``WATCH``, and wording the machine's refusals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from grammars.resp import NULL_ARRAY, OK, Error, Push, Resp, resp
from statewire.declarative import MachineProtocol
from statewire.framing import FramingError
from statewire.machine import RemoteProtocolError, UnexpectedInput, UnroutableFrame
from statewire.protocols._resp_builtins import exec_abort, refusal
from statewire.protocols._resp_builtins import one_line as _error
from statewire.protocols._resp_commands import Reply, ReplyError, fits

if TYPE_CHECKING:
    from statewire.protocols.resp import RESPFactory

#: the empty set and mapping a connection's subscriptions and watched keys start as (one
#: object each for every connection: an empty frozenset is not shared by Python)
_NONE: frozenset[Any] = frozenset()
_NO_PATTERNS: Mapping[bytes, None] = MappingProxyType({})


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
            if not fits(arity, len(argv)):
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
            # the arity, as fits reads it (a call less on every request)
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


#: the pub/sub commands a transaction runs at ``EXEC``: they answer as they go, as in
#: pub/sub mode (``SSUBSCRIBE`` is refused there: its handler says so)
_PUBSUB_IN_EXEC: dict[bytes, Callable[[RESPConnection, list[bytes]], None]] = {
    b"SUBSCRIBE": RESPConnection.join,
    b"PSUBSCRIBE": RESPConnection.join_patterns,
    b"UNSUBSCRIBE": RESPConnection.leave,
    b"PUNSUBSCRIBE": RESPConnection.leave_patterns,
    b"SUNSUBSCRIBE": RESPConnection.leave_shards,
}


__all__ = ["RESPConnection"]
