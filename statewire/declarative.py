"""``MachineProtocol``: a Twisted-style protocol declared as an automat machine.

A subclass names its machine and, per state, the framing, the route from frames to inputs
and an optional timeout; connection loss becomes the ``lost`` input in every state that
accepts it. ``TypeMachineBuilder`` machines take the protocol instance as their *core*:
outputs get it and call :meth:`MachineProtocol.send`, :meth:`MachineProtocol.close`, reach
``core.factory``, ... ::

    class Commands(typing.Protocol):
        def hello(self, line: bytes) -> None: ...

    builder = TypeMachineBuilder(Commands, MachineProtocol)
    ready = builder.state("ready")

    @ready.upon(Commands.hello).loop()
    def greet(machine: Commands, core: MachineProtocol, line: bytes) -> None:
        core.send(b"hello " + line)

    class Greeter(MachineProtocol):
        machine = builder.build()
        framings = {ready: line(b"\\r\\n", max_length=1024)}
        routes = {ready: Commands.hello}

With a ``MethodicalMachine`` the machine lives in the protocol class, as automat's own
examples do, and ``machine = _machine`` names it. See ``examples/`` for complete protocols
in both styles.

Errors. A frame the routes cannot place, an input the state does not accept, or a framing
error (too long, malformed) is a *remote* error: :meth:`MachineProtocol.remoteError` logs
it, sends ``error_reply`` (when set) and closes the connection unless ``close_on_error`` is
false; the state is unchanged either way. An exception from an output or a hook is a
*local* error: :meth:`MachineProtocol.localError` logs it and aborts the connection.
Closing the connection (``close()``, or ``transport.loseConnection()`` on statewire's own
transports) stops the delivery of frames already received, as Twisted's ``LineReceiver``
does.

Flow control and write deadlines. While the transport's unsent data is over its high-water
mark (a peer that sends requests and does not read the replies), no frame is delivered:
the framer stops after the current frame, the rest of the read waits in its buffer, in
order, reading from the peer stops, and all resumes when the peer has taken enough. So a
pipelining non-reader costs the high-water mark plus one reply, whatever it sends. A peer
that never reads is then stopped by the deadlines: an idle or state :class:`Timeout`
fires (no request is read any more), and its ``close()`` waits at most
:attr:`MachineProtocol.close_timeout` for the unsent reply before aborting;
:attr:`MachineProtocol.write_timeout` aborts a connection whose unsent data has not moved
at all for that long, in any state.

Asynchronous outputs. An output (or a ``basic`` callback) may return an awaitable: a
coroutine (``async def``), an asyncio future or task, a ``concurrent.futures.Future``,
anything with ``add_done_callback``. No frame after the current one is delivered until it
completes, so pipelined requests get their replies in request order, and bytes arriving
meanwhile wait in order (past :attr:`MachineProtocol.waiting_read_limit`
buffered bytes, reading pauses). Framing then resumes in the state the machine is in
(an input the work called is honoured); a value result is ignored. A coroutine runs on the
connection's loop (the running one, else its reactor's). An exception in the work is a
local error; a connection lost meanwhile cancels it. Timeouts keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from statewire.error import Failure, connectionDone
from statewire.framing import FramingError, Policy, encode_frame
from statewire.machine import DefinitionError, Engine, Plan, RemoteProtocolError, Timeout
from statewire.protocol import Protocol

log = logging.getLogger("statewire.declarative")

#: the class attributes that declare a protocol (a subclass setting one is compiled again)
_DECLARATIONS = ("machine", "framings", "routes", "timeouts", "lost", "policy")


class MachineProtocol(Protocol):
    """A protocol whose states, framings and inputs are declared (see the module docs).

    Declared by class attributes (or :meth:`declare`):

    ``machine``
        the automat machine: ``TypeMachineBuilder(...).build()`` or a ``MethodicalMachine``.
    ``framings``
        state -> grammar (``fixed(this.size)`` may use the state's data), or a callable
        ``(protocol, state_data) -> grammar``; a state with none reads nothing.
    ``routes``
        state -> an input (each frame becomes ``input(frame)``) or a route (``by_verb``,
        ``by_key``).
    ``timeouts``
        state -> :class:`~statewire.machine.Timeout`.
    ``lost``
        the input connection loss becomes (called with the reason), or ``None``.

    Behaviour, all optional:

    ``sends``
        the grammar :meth:`send` builds frames with; ``None`` (the default): the framing of
        the state the machine is in (inside a transition, the state it leads to).
    ``error_reply``
        what :meth:`remoteError` sends: one value for every remote error, or a mapping from
        kinds of error to values (``{UnknownKey: b"500 unknown", ...}``).
    ``close_on_error``
        whether a remote error closes the connection (default true). A frame too long or
        malformed closes it anyway under ``policy = Policy.CLOSE``, the default: the
        framer cannot go on; ``Policy.DISCARD`` skips such a frame when it can.
    ``policy``
        what the framer does after a framing error (``Policy.CLOSE`` or ``DISCARD``).
    ``clock``
        where timers come from (``callLater``/``seconds``); ``None``: the reactor serving
        the connection. Tests set a :class:`~statewire.testing.memory.Clock`.
    ``close_timeout``, ``write_timeout``
        seconds a closing connection may wait for the peer to take unsent data (30), and
        unsent data may wait without the peer taking any of it (``None``: no limit).
    """

    #: the automat machine: ``TypeMachineBuilder(...).build()`` or a ``MethodicalMachine``
    machine: ClassVar[Any] = None
    #: state -> grammar, or a callable ``(protocol, state_data) -> grammar``; a state with
    #: no framing reads nothing (any byte arriving in it is a remote error)
    framings: ClassVar[Mapping[Any, Any]] = {}
    #: state -> an input (each frame becomes ``input(frame)``) or a route (``by_verb``...)
    routes: ClassVar[Mapping[Any, Any]] = {}
    #: state -> :class:`~statewire.machine.Timeout`
    timeouts: ClassVar[Mapping[Any, Timeout]] = {}
    #: the input connection loss becomes (called with the reason), or ``None``
    lost: ClassVar[Any] = None
    #: what the framer does after a framing error (``Policy.DISCARD`` skips oversize frames)
    policy: ClassVar[Policy] = Policy.CLOSE
    #: grammar :meth:`send` builds frames with; ``None``: the framing of the state the
    #: machine is in (inside a transition: the state it leads to; see :meth:`send`)
    sends: ClassVar[Any] = None
    #: a value sent (through :meth:`send`) on a remote error, or ``None``; or a mapping
    #: from kinds of remote error to the value each gets (see :meth:`remoteError`)
    error_reply: ClassVar[Any] = None
    #: whether a remote error closes the connection (after a fatal framing error it always
    #: does: the bytes after it cannot be framed)
    close_on_error: ClassVar[bool] = True
    #: timer source with ``callLater`` and ``seconds``; ``None``: the reactor serving the
    #: connection (statewire's global reactor for transports that do not say)
    clock: Any = None
    #: the reactor of the connection's transport, once looked up (the clock without one)
    _sw_reactor: Any = None
    #: bytes that may wait in the buffer, unframed, while an output's awaitable is
    #: pending, before reading from the peer pauses until the wait ends (one more read
    #: may arrive after the pause is asked for)
    waiting_read_limit: ClassVar[int] = 64 * 1024
    #: the :class:`~statewire.machine.Host` the connections' engines are made with (named
    #: so as not to clash with the ``host`` a Twisted client often keeps)
    machine_host: ClassVar[ProtocolHost]
    #: the connection's engine, once made (see :attr:`machine_engine`)
    _sw_eng: Engine | None = None
    #: between makeConnection and connectionLost; and whether close() stopped the input
    _sw_open = False
    _sw_input_closed = False
    #: seconds a closing connection (``close()``, a timeout's close...) with unsent data
    #: may wait for the peer to take it before it is aborted; ``None`` waits for ever.
    #: 30 s, as statewire's transports by default
    close_timeout: ClassVar[float | None] = 30.0
    #: seconds unsent data may wait without the peer taking a byte of it before the
    #: connection is aborted, in any state (a peer that never reads); ``None``: no limit.
    #: Progress is what the kernel takes, which it does in steps of up to half its send
    #: buffer: use seconds, not fractions. An output may set
    #: ``core.transport.write_timeout`` for the state it leads to
    write_timeout: ClassVar[float | None] = None

    @classmethod
    def declare(
        cls,
        machine: Any,
        *,
        framings: Mapping[Any, Any] | None = None,
        routes: Mapping[Any, Any] | None = None,
        timeouts: Mapping[Any, Timeout] | None = None,
        lost: Any = None,
        policy: Policy | None = None,
    ) -> None:
        """Declare the protocol once the class exists: one class can then be both the
        core a ``TypeMachineBuilder`` machine is built for and the protocol that runs it
        (the class attributes say the same thing from a subclass). Checked as a
        subclass's declarations are; anything not given keeps the class's value.

        A class is declared once: a second ``declare()`` (or one on a class whose own
        attributes already declared it) is a :class:`DefinitionError`, since connections
        already open run the plan they started with. A refused declaration changes nothing.
        """
        if Plan.declared_on(cls):
            raise DefinitionError(
                f"{cls.__name__} is declared already: declare a subclass for another machine"
            )
        given = {
            "machine": machine,
            "framings": framings,
            "routes": routes,
            "timeouts": timeouts,
            "lost": lost,
            "policy": policy,
        }
        declared = {name: inspect.getattr_static(cls, name) for name in _DECLARATIONS}
        declared.update((name, value) for name, value in given.items() if value is not None)
        plan = Plan.compile(cls, **declared)  # before any change: a refusal leaves none
        for name, value in given.items():
            if value is not None:
                setattr(cls, name, value)
        plan.install(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.machine is not None and any(name in vars(cls) for name in _DECLARATIONS):
            # read statically: a MethodicalMachine input (``lost = disconnected``) is a
            # descriptor that must not be bound to the class
            declared = {name: inspect.getattr_static(cls, name) for name in _DECLARATIONS}
            Plan.compile(cls, **declared).install(cls)

    # -- connection ----------------------------------------------------------------------

    def makeConnection(self, transport: Any) -> None:
        """Start the machine in its initial state, then connect (``connectionMade``)."""
        plan = Plan.of(type(self))
        if plan is None:
            raise TypeError(f"{type(self).__name__} declares no machine")
        old, self._sw_eng = self._sw_eng, None
        if old is not None:  # connected again: the old engine acts no more
            old.retire()
        self.transport = transport  # the initial state's timeout may need its reactor
        self._sw_open = True
        self._sw_input_closed = False
        if Engine.needed_from_start(plan):
            self._sw_engine_now()
        if hasattr(transport, "on_closing"):
            transport.on_closing = self._sw_close_input
        if hasattr(transport, "write_timeout"):  # statewire's own transports
            transport.close_timeout = self.close_timeout
            transport.write_timeout = self.write_timeout
        super().makeConnection(transport)

    @property
    def machine_engine(self) -> Engine | None:
        """The connection's engine (layer 3): its machine, framer, holds and timer.

        Made by :meth:`makeConnection` when the protocol needs it from the start (a state
        timeout, a ``lost`` input, an observer registered), else when first needed (the
        first read, :attr:`inputs`, :attr:`machine_state`...): an idle connection of a
        protocol without them holds no engine and no machine. ``None`` before
        ``makeConnection``, and after ``connectionLost`` if it was never needed."""
        engine = self._sw_eng
        if engine is None and self._sw_open:
            engine = self._sw_engine_now()
        return engine

    def _sw_engine_now(self) -> Engine:
        plan = Plan.of(type(self))
        assert plan is not None
        self._sw_eng = engine = Engine(plan, self, self.machine_host)
        engine.start()
        if self._sw_input_closed:
            engine.close_input()
        return engine

    def _sw_close_input(self) -> None:
        """The connection is closing: frames already buffered are not delivered."""
        self._sw_input_closed = True
        if self._sw_eng is not None:
            self._sw_eng.close_input()

    def dataReceived(self, data: bytes) -> None:
        """Frame ``data`` with the current state's grammar and run the inputs it makes."""
        engine = self._sw_eng
        if engine is None:
            engine = self.machine_engine
            if engine is None:
                return  # not connected
        engine.receive(data)

    def transportCongested(self, congested: bool) -> None:
        """The transport's unsent data passed its high-water mark: hold the frames after
        the current one (``congested``); it drained: deliver them again."""
        engine = self.machine_engine
        if engine is None:
            return
        try:
            if congested:
                engine.hold("backpressure")
            else:
                engine.release("backpressure")
        except Exception as exc:
            self.localError(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Cancel the state timeout and deliver the ``lost`` input. Subclasses that
        override this should call it."""
        self._sw_open = False
        if self._sw_eng is not None:
            self._sw_eng.lost(reason)

    # -- outputs -------------------------------------------------------------------------

    def send(self, value: Any, grammar: Any = None) -> None:
        """Send ``value`` as a frame built by ``grammar``; by default by :attr:`sends` or,
        when the protocol declares none, by the framing of the state the machine is in —
        inside a transition, the state it leads to (a ``STORED`` sent on leaving a
        ``fixed(n)`` block state is built as a line of the command state it returns to).
        A state that reads nothing lends none: the framing frames were last cut with is
        used."""
        if grammar is None:
            grammar = self.sends
            if grammar is None:
                grammar = self.machine_engine.framing()  # type: ignore[union-attr]
        self.transport.write(encode_frame(grammar, value))

    @property
    def inputs(self) -> Any:
        """The machine driving this connection, to feed it an event that is not a frame
        (``self.inputs.admitted()``): its inputs are the input protocol's methods. Called
        from inside a transition, the input runs when that transition is done."""
        engine = self.machine_engine
        return None if engine is None else engine.machine

    @property
    def machine_state(self) -> str:
        """The name of the machine's current state (not ``state``: Twisted protocols often
        keep a ``state`` attribute of their own)."""
        engine = self.machine_engine
        if engine is None:  # never needed: the machine never left its initial state
            plan = Plan.of(type(self))
            assert plan is not None
            return plan.style.name_of(plan.style.initial)
        return engine.state

    def refresh_framing(self) -> None:
        """Frame what follows with the current state's framing as it evaluates now: for a
        framing computed from state data or attributes that a loop changed (a state that
        reads a body in bounded pieces, counting down what is left)."""
        if self._sw_eng is not None:  # (else it is made with the framing as it is then)
            self._sw_eng.refresh()

    def take_ahead(self, size: int) -> bytes | None:
        """From an output of an input a frame made: the ``size`` bytes right after that
        frame when the read holds them all, consumed (the state's framing goes on after
        them); else ``None``, nothing consumed (:meth:`statewire.machine.Engine.take_ahead`).

        For an output that knows what follows its frame and how long it is (a body, a data
        block): when that came with the frame, it is read there, with no move to a state
        framing it and back; otherwise the output moves to that state, as the diagram
        says."""
        engine = self._sw_eng
        if engine is None:
            raise RuntimeError("take_ahead() is for an output of a frame's input")
        return engine.take_ahead(size)

    def peek_ahead(self, limit: int) -> bytes | None:
        """From an output of an input a frame made: at most ``limit`` of the bytes after
        that frame in the read, not consumed; ``None`` where :meth:`take_ahead` would take
        nothing (:meth:`statewire.machine.Engine.peek_ahead`). For an output that must
        look at what follows its frame to know how much of it to take."""
        engine = self._sw_eng
        if engine is None:
            raise RuntimeError("peek_ahead() is for an output of a frame's input")
        return engine.peek_ahead(limit)

    def discard_input(self) -> bytes:
        """Drop and return every byte received but not yet delivered in a frame.

        For a switch that must not act on what the peer sent ahead of it: after
        ``STARTTLS`` (RFC 3207), plaintext pipelined behind the command in the same read is
        discarded, never executed once the handshake is done (the CVE-2011-0411 class)."""
        return b"" if self._sw_eng is None else self._sw_eng.clear()

    def close(self) -> None:
        """Close the connection once what was sent is flushed; no more frames are read."""
        self._sw_close_input()
        self.transport.loseConnection()

    def abort(self) -> None:
        """Close the connection at once, dropping unsent data."""
        self._sw_close_input()
        self.transport.abortConnection()

    # -- clock ---------------------------------------------------------------------------

    def _sw_clock(self) -> Any:
        clock = self.clock
        if clock is None:
            clock = self._sw_reactor
            if clock is None:
                clock = getattr(self.transport, "reactor", None)
                if clock is None:
                    clock = default_clock()
                if self.transport is not None:  # the transport's reactor stays its own
                    self._sw_reactor = clock
        return clock

    def seconds(self) -> float:
        """The connection's clock: :attr:`clock`'s ``seconds()``, else the reactor's that
        serves the connection (what timeouts count with; a test's clock in tests)."""
        clock = self.clock
        if clock is None:
            clock = self._sw_reactor  # (what _sw_clock finds, once it found it)
            if clock is None:
                clock = self._sw_clock()
        seconds: float = clock.seconds()
        return seconds

    def callLater(self, seconds: float, f: Callable[..., object], *args: Any) -> Any:
        """Call ``f(*args)`` in ``seconds`` on the connection's clock (see :meth:`seconds`);
        return the delayed call (``cancel()``)."""
        return self._sw_clock().callLater(seconds, f, *args)

    # -- errors --------------------------------------------------------------------------

    def remoteError(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol (the state is unchanged): log it, send the
        :attr:`error_reply` for it if there is one, and close unless :attr:`close_on_error`
        is false — or unless framing cannot go on: under ``Policy.CLOSE`` (the default) a
        frame too long or malformed stops the framer, so the connection closes whatever
        ``close_on_error`` says (``Policy.DISCARD`` skips the bad frame when it can).

        ``error_reply`` may map kinds of error to replies; the most specific kind of the
        error that has an entry wins. The kinds: :class:`~statewire.machine.UnknownKey`
        (an unknown command), :class:`~statewire.machine.BadArguments`,
        :class:`~statewire.machine.UnroutableFrame` (both, and bytes in a state that reads
        none), :class:`~statewire.machine.UnexpectedInput` (a command out of sequence),
        :class:`~statewire.framing.FrameTooLong`, :class:`~statewire.framing.MalformedFrame`,
        :class:`~statewire.framing.FramingError`, :class:`RemoteProtocolError` (any)::

            error_reply = {UnknownKey: b"500 unknown command", BadArguments: b"501 bad
            arguments", UnexpectedInput: b"503 bad sequence", FrameTooLong: b"500 too long"}
        """
        engine = self.machine_engine
        fatal = isinstance(error, FramingError) and engine is not None and engine.framing_failed
        close = self.close_on_error or fatal
        log.info("%s: %s%s", type(self).__name__, error, "; closing" if close else "")
        reply = self.error_reply
        if isinstance(reply, Mapping):
            reply = next((reply[kind] for kind in type(error).__mro__ if kind in reply), None)
        if reply is not None:
            self.send(reply)
        if close:
            self.close()

    def localError(self, error: Exception) -> None:
        """Our own code raised: log it with its traceback and abort the connection."""
        log.error(
            "%s: %s raised; aborting the connection",
            type(self).__name__,
            type(error).__name__,
            exc_info=error,
        )
        self.abort()


class ProtocolHost:
    """What a :class:`MachineProtocol` gives its engine (the
    :class:`~statewire.machine.Host` interface): its clock (:attr:`MachineProtocol.clock`,
    else the transport's reactor), its transport's reading, its error methods. One
    instance serves every connection of a class (a protocol's ``host`` attribute); a
    subclass may change a method (``basic``'s helpers keep reading paused while the
    protocol itself paused it); a protocol's ``machine_host`` names it."""

    __slots__ = ()

    def call_later(
        self, core: MachineProtocol, seconds: float, f: Callable[..., object], *args: Any
    ) -> Any:
        return core._sw_clock().callLater(seconds, f, *args)

    # MachineProtocol's own (core.seconds may be shadowed), with no call more: the engine
    # reads the clock at every read
    seconds = staticmethod(MachineProtocol.seconds)

    def loop(self, core: MachineProtocol) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            pass
        reactor = getattr(core.transport, "reactor", None)  # statewire's transports
        loop: asyncio.AbstractEventLoop | None = getattr(reactor, "loop", None)
        return loop

    def read_limit(self, core: MachineProtocol) -> int:
        return core.waiting_read_limit

    def pause_reading(self, core: MachineProtocol) -> None:
        core.transport.pauseProducing()

    def resume_reading(self, core: MachineProtocol) -> None:
        core.transport.resumeProducing()

    def peer_progress(self, core: MachineProtocol) -> int | None:
        progress = getattr(core.transport, "peer_progress", None)
        return None if progress is None else int(progress())

    def remote_error(self, core: MachineProtocol, error: RemoteProtocolError) -> None:
        core.remoteError(error)

    def local_error(self, core: MachineProtocol, error: Exception) -> None:
        core.localError(error)


MachineProtocol.machine_host = ProtocolHost()

#: what :func:`default_clock` returns (see :func:`set_default_clock`)
_default: list[Any] = []


def set_default_clock(clock: Any) -> None:
    """The clock (``callLater`` and ``seconds``) of connections whose protocol names no
    :attr:`~MachineProtocol.clock` and whose transport has no reactor (a test's transport):
    statewire's global reactor sets itself when it is made (layer 5 tells layer 4; layer 4
    never imports the reactor)."""
    _default[:] = [clock]


class _LoopClock:
    """The running event loop as a clock."""

    __slots__ = ("loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def callLater(self, seconds: float, f: Callable[..., object], *args: Any) -> Any:
        return self.loop.call_later(seconds, f, *args)

    def seconds(self) -> float:
        return self.loop.time()


def default_clock() -> Any:
    """The clock :func:`set_default_clock` gave, else the running event loop's; with
    neither, a :class:`RuntimeError` that says what to do."""
    if _default:
        return _default[0]
    try:
        return _LoopClock(asyncio.get_running_loop())
    except RuntimeError:
        raise RuntimeError(
            "this connection has no clock: its transport has no reactor and no loop is "
            "running; set the protocol's `clock` (statewire.testing.memory.Clock in tests)"
        ) from None
