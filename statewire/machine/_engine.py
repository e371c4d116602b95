"""The per-connection engine of a declarative protocol (sans-IO).

Theory of operation
-------------------
A :class:`Engine` owns one :class:`~statewire.framing.Framer` and one machine instance.
The framer's grammar and its frame handler are always those of the machine's current state.
Bytes go in through :meth:`Engine.feed`; the framer cuts frames in batches and hands
each to the state's handler (:mod:`statewire.machine._dispatch`: the output itself for an
input looping on the state, the compiled transition for one leaving it, the general path
for anything else). A state change runs the new state's *entry*, made once per connection
and state (:meth:`Engine._sw_entry`): note the state, arm its timeout (the lazy timer of
:mod:`statewire.machine._timers`), switch the framer to its framing and handler (the framer
re-frames the bytes it holds, so nothing is lost). Compiled transitions run the entry
straight after their outputs; anything else finds the change in :meth:`Engine._sw_sync`.

Reentrancy follows automat: an input called while another input's outputs run is postponed
until they are done. During a pump the postponement queue is the pump's own; queueing
asks the framer to run them once the current frame's callback returns
(``Framer.after_frame``), *before* the next frame is cut, with the framing of whatever
state they lead to. The
compiled inputs call :meth:`_sw_sync` after they return, so a state changed from outside
(a timer, another object calling an input) re-frames the buffered bytes at once.

Holding. Delivery stops after the current frame while anything *holds* it:
:meth:`Engine.hold` with a reason (the protocol paused as a producer, the transport's
write buffer is over its high-water mark, ...) pauses the framer, and only when the last
reason is released does it resume. Bytes that arrive meanwhile stay in the framer, in
order; so a peer pipelining requests and not reading the replies gets no more replies
than fit the transport's buffer, and the requests wait unparsed.

Waiting. An output (or the hook it forwards to) may return an awaitable: every path a
frame takes to user code (the direct handlers, the ``by_verb`` fast path, the keyed loops,
the full dispatch) and the timeout inputs hand a result that is not ``None`` to
:meth:`_sw_wait`, which holds delivery with the reason ``"waiting"`` until the awaitable
completes (see :mod:`statewire.machine._waiting` for the rules). Direct handlers whose
function provably returns nothing are used as they are, so synchronous protocols pay
nothing for this.

The connection is the engine's :class:`~statewire.machine.Host` (the layer-4
``MachineProtocol`` makes one): the clock, pausing the reads, and where errors go. The
protocol *has* an engine (``protocol.machine_engine``); nothing outside
:mod:`statewire.machine` reads the engine's private names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from functools import partial
from typing import Any

from automat import NoTransition
from construct import Construct

from grammars import raw
from statewire.framing import Framer
from statewire.machine._dispatch import Dispatch
from statewire.machine._host import Host
from statewire.machine._observe import Observer, observers
from statewire.machine._plan import Plan
from statewire.machine._routes import input_name
from statewire.machine._styles import Handler
from statewire.machine._timers import Timers
from statewire.machine._waiting import cancel, failure_of, future_of
from statewire.machine.errors import (
    RemoteProtocolError,
)

_log = logging.getLogger("statewire.machine")

#: the framing of a state that declares none: any byte arriving is unroutable
_READS_NOTHING = raw()
#: nothing holds delivery (one object: an empty frozenset is not shared by Python)
_NO_HOLDS: frozenset[str] = frozenset()


#: the field names of each dataclass a state's data was made of (``_OWN`` for a dataclass
#: whose instances keep their fields in their ``__dict__``: that is the context)
_FIELDS: dict[type, tuple[str, ...]] = {}
_OWN: tuple[str, ...] = ("__dict__",)


def _context(data: Any) -> Mapping[str, Any] | None:
    """Construct context from a state's data (for grammars like ``fixed(this.size)``).

    A dataclass instance with a ``__dict__`` is read through it, not copied: the context
    is the data as it is (extra attributes an instance was given come along, unused)."""
    if data is None:
        return None
    names = _FIELDS.get(type(data))
    if names is _OWN:
        return data.__dict__  # type: ignore[no-any-return]
    if names is not None:
        return {name: getattr(data, name) for name in names}
    if isinstance(data, Mapping):
        return data
    if is_dataclass(data):
        names = tuple(f.name for f in fields(data))
        own = getattr(data, "__dict__", None)
        _FIELDS[type(data)] = _OWN if own is not None and set(names) <= set(own) else names
        return _context(data)
    return getattr(data, "__dict__", None)


class Engine(Dispatch, Timers):
    """One connection's engine: its machine, framer, holds and timer.

    ``Engine(plan, core, host)``: ``plan`` is the protocol class's compiled declarations
    (:meth:`Plan.of`), ``core`` the object the machine is made for (the protocol: outputs,
    forwarded hooks and computed framings get it), ``host`` the :class:`Host` that gives
    the clock and takes the errors. The verbs: :meth:`start`, :meth:`receive` (and
    :meth:`feed`), :meth:`hold`/:meth:`release`, :meth:`refresh`, :meth:`clear`,
    :meth:`close_input`, :meth:`lost`; :attr:`state`, :attr:`machine`, :attr:`buffered`.
    """

    # Slots, set in __init__: a connection's engine is one small object (no dict), and
    # every attribute is there from the start (the hot paths read them unconditionally);
    # the timer's are Timers' own.
    __slots__ = (
        "_sw_backlog",
        "_sw_busy",
        "_sw_closing",
        "_sw_core",
        "_sw_ending",
        "_sw_fed",
        "_sw_frame",
        "_sw_framer",
        "_sw_handlers",
        "_sw_holds",
        "_sw_host",
        "_sw_impl",
        "_sw_lost",
        "_sw_observers",
        "_sw_plan",
        "_sw_queue",
        "_sw_reading_held",
        "_sw_resume",
        "_sw_seen",
        "_sw_state",
        "_sw_traced",
        "_sw_waits",
    )

    _sw_plan: Plan
    #: the object the machine is made for (the protocol), and the connection's host
    _sw_core: Any
    _sw_host: Host
    #: the machine instance (``None`` until :meth:`start`), its state as the engine last
    #: entered it, and the machine's count of state changes then (see ``Style.moves``)
    _sw_impl: Any
    _sw_state: Any
    _sw_seen: int
    #: made when the first bytes arrive (an idle connection never needs one)
    _sw_framer: Framer | None
    _sw_queue: list[Callable[[], object]] | None
    #: each state's frame handler (by ``Plan.state_index``), made when first entered
    _sw_handlers: list[Handler | None] | None
    #: the observers told of this connection (see :mod:`._observe`), and whether its
    #: transitions are traced (then ``_sw_frame`` is the frame being dispatched)
    _sw_observers: tuple[Observer, ...]
    _sw_traced: bool
    _sw_frame: Any
    #: feeding now (bytes fed meanwhile go to the backlog); the connection is closing
    _sw_busy: bool
    _sw_closing: bool
    #: what to call once everything deliverable was delivered, after :meth:`end`
    _sw_ending: Callable[[], object] | None
    _sw_backlog: bytes
    #: a resume was asked for while feeding
    _sw_resume: bool
    #: why delivery is held (see :meth:`hold`); empty: frames flow
    _sw_holds: frozenset[str]
    #: the awaitables returned by outputs and not completed yet (see :meth:`_sw_wait`)
    _sw_waits: list[Any] | tuple[()]
    #: the connection is gone (``_sw_closing`` is also set by a close still flushing)
    _sw_lost: bool
    #: bytes handed to :meth:`feed` so far (less the backlog dropped by a clear):
    #: with the framer's offset, what is buffered, without copying it
    _sw_fed: int
    #: whether reading from the peer is paused because too much arrived while waiting
    _sw_reading_held: bool

    def __init__(self, plan: Plan, core: Any, host: Host) -> None:
        self._sw_plan = plan
        self._sw_core = core
        self._sw_host = host
        self._sw_impl = self._sw_state = self._sw_framer = self._sw_queue = None
        self._sw_ending = None
        self._sw_handlers = self._sw_frame = None
        self._sw_seen = self._sw_fed = 0
        self._sw_observers = self._sw_waits = ()
        self._sw_traced = self._sw_busy = self._sw_closing = self._sw_resume = False
        self._sw_lost = self._sw_reading_held = False
        self._sw_backlog = b""
        self._sw_holds = _NO_HOLDS
        self._sw_timers()

    @staticmethod
    def needed_from_start(plan: Plan) -> bool:
        """Whether a connection of ``plan`` needs its engine from its start: a state
        timeout to arm, a ``lost`` input to deliver, observers to tell. Else the host may
        make the engine when first needed (the first bytes): an idle connection then
        holds no engine and no machine."""
        return bool(plan.timeouts) or plan.lost is not None or bool(observers())

    # -- what the host and the protocol read ---------------------------------------------

    @property
    def state(self) -> str:
        """The name of the machine's current state."""
        plan = self._sw_plan
        return plan.style.name_of(plan.style.state(self._sw_impl))

    @property
    def machine(self) -> Any:
        """The machine instance (its inputs are the input protocol's methods)."""
        return self._sw_impl

    @property
    def buffered(self) -> bytes:
        """The bytes received and not yet delivered in a frame (a copy)."""
        held = b"" if self._sw_framer is None else self._sw_framer.buffered
        return held + self._sw_backlog

    @property
    def reading_held(self) -> bool:
        """Whether the engine paused reading (too much arrived while an output's work runs)."""
        return self._sw_reading_held

    @property
    def holds(self) -> frozenset[str]:
        """Why frame delivery is held now (empty: it is not): ``"waiting"`` for an
        output's work, ``"backpressure"`` while the peer does not take our replies, and
        the reasons given to :meth:`hold`."""
        return self._sw_holds

    @property
    def framing_failed(self) -> bool:
        """Whether the framer stopped on an error (the bytes after it cannot be framed)."""
        return self._sw_framer is not None and self._sw_framer.error is not None

    def framing(self) -> Any:
        """The grammar of the state the machine is in — inside a transition, of the state
        it leads to; a state that reads nothing lends none: the grammar frames were last
        cut with."""
        plan = self._sw_plan
        framer = self._sw_framer
        state = plan.style.state(self._sw_impl)
        if state is self._sw_state and framer is not None:
            return framer.grammar  # no transition under way: the framing in use
        if state in plan.framings:
            return self._sw_framing(state)[0]
        if framer is not None:
            return framer.grammar
        return self._sw_framing(self._sw_state)[0]

    def framer(self) -> Framer:
        """The framer, made now with the current state's framing if not made yet."""
        return self._sw_frames()

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Make the machine and arm its initial state's timeout. The framer is made when
        the first bytes arrive, with the framing of the state the machine is in then."""
        style = self._sw_plan.style
        impl = style.new(self._sw_core)
        self._sw_state = state = style.state(impl)
        self._sw_seen = style.moves(impl)
        self._sw_impl = impl
        impl._sw_after = self  # compiled inputs call our _sw_sync after they return
        if observers():
            self._sw_observe(style, impl)
        self._sw_arm(state)

    def _sw_observe(self, style: Any, impl: Any) -> None:
        """Tell the observers the connection started; trace transitions for those that
        asked (self-loops then take the traced path: their shortcuts skip the tracer)."""
        self._sw_observers = watching = observers()
        callbacks = [c for c in (o.started(self._sw_core) for o in watching) if c is not None]
        if not callbacks:
            return
        name_of = style.name_of

        def traced(old: Any, input: Any, new: Any) -> None:
            name = input_name(input)
            for callback in callbacks:
                callback(name_of(old), name, name_of(new), self._sw_frame)

        style.set_tracer(impl, traced)
        self._sw_traced = True

    def _sw_remote(self, error: RemoteProtocolError) -> None:
        for observer in self._sw_observers:
            observer.failed(self._sw_core, error, False)
        self._sw_host.remote_error(self._sw_core, error)

    def _sw_local(self, error: Exception) -> None:
        for observer in self._sw_observers:
            observer.failed(self._sw_core, error, True)
        self._sw_host.local_error(self._sw_core, error)

    def _sw_frames(self) -> Framer:
        """The framer, made now with the current state's framing if not made yet."""
        framer = self._sw_framer
        if framer is None:
            state = self._sw_state
            grammar, context = self._sw_framing(state)
            self._sw_framer = framer = Framer(
                grammar,
                self._sw_handler(state),
                on_error=self._sw_remote,
                policy=self._sw_plan.policy,
                context=context,
            )
            # inputs postponed during a pump: queued from inside a frame's callback, they
            # run as soon as it returns, before the framer cuts the next frame (no return
            # from the framer's loop, no new feed); queued elsewhere, the pump runs them
            self._sw_queue = framer.after_queue(self._sw_drain)
            if self._sw_holds:
                framer.pause()
        return framer

    def lost(self, lost_reason: Any) -> None:
        """The connection is gone: stop framing, cancel the timeout, deliver the loss."""
        self._sw_closing = True
        self._sw_stop()
        name = self._sw_plan.lost
        style = self._sw_plan.style
        if name is not None and style.accepts(style.state(self._sw_impl), name):
            self._sw_input(name, (lost_reason,))
        for observer in self._sw_observers:
            observer.stopped(self._sw_core)

    def retire(self) -> None:
        """This engine's connection is over without a loss to deliver (its protocol is
        connected again, with a new engine): cancel the timeout, deliver no more frames,
        wait for no work."""
        self.close_input()
        self._sw_stop()

    def _sw_stop(self) -> None:
        """No timeout, and no work waited for: the connection is over."""
        self._sw_lost = True
        self._sw_disarm()
        waits, self._sw_waits = self._sw_waits, ()
        for future in waits:
            cancel(future)  # its completion, if it still comes, finds nothing to resume

    def close_input(self) -> None:
        """The connection is closing: frames already buffered are not delivered."""
        self._sw_closing = True
        if self._sw_framer is not None:
            self._sw_framer.interrupt()

    # -- bytes in ------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Frame ``data``; an exception from our own code is a local error."""
        if self._sw_closing:
            return
        for observer in self._sw_observers:
            observer.received(self._sw_core, len(data))
        outer = self._sw_now
        if self._sw_plan.idle:
            # one reading of the clock for the read and the deadlines its handling arms
            self._sw_now = self._sw_last_read = self._sw_host.seconds(self._sw_core)
        try:
            self.feed(data)
            if self._sw_waits:
                self._sw_bound_reading()
        except Exception as exc:
            self._sw_local(exc)
        finally:
            self._sw_now = outer

    def unread(self, data: bytes) -> None:
        """From an input a frame made: ``data``, the end of that frame, was not used; it is
        framed again before any other byte, by the framing of the state the machine is in
        once the input is done (see :meth:`Framer.unread
        <statewire.framing.Framer.unread>`). A ``raw`` state that finds the end of its part
        of the stream gives back what follows it so."""
        framer = self._sw_framer
        if framer is None:
            raise RuntimeError("unread() is for an input a frame made: no frame was delivered")
        framer.unread(data)

    def take_ahead(self, size: int) -> bytes | None:
        """From an input a frame made: the ``size`` bytes after that frame when the read
        holds them all, consumed (the state's framing goes on after them); else ``None``
        and nothing consumed (see :meth:`Framer.take_ahead
        <statewire.framing.Framer.take_ahead>`). An output that would move to a state
        reading a block of known size, and back, reads it so at no state change when it
        came with its frame; the machine's diagram keeps the state for the other cases."""
        framer = self._sw_framer
        if framer is None:
            raise RuntimeError("take_ahead() is for an input a frame made: no frame was delivered")
        return framer.take_ahead(size)

    def peek_ahead(self, limit: int) -> bytes | None:
        """From an input a frame made: at most ``limit`` of the bytes after that frame in
        the read, not consumed; ``None`` where :meth:`take_ahead` would take nothing (see
        :meth:`Framer.peek_ahead <statewire.framing.Framer.peek_ahead>`): an output that
        must look at what follows its frame to know how much of it to take."""
        framer = self._sw_framer
        if framer is None:
            raise RuntimeError("peek_ahead() is for an input a frame made: no frame was delivered")
        return framer.peek_ahead(limit)

    def feed(self, data: bytes) -> None:
        """Feed ``data`` and run postponed inputs between frames until nothing is left."""
        self._sw_fed += len(data)
        if self._sw_busy:
            self._sw_backlog += data  # fed from inside a frame or input: after what is held
            return
        framer = self._sw_framer
        if framer is None:
            if not data:
                self._sw_resume = False  # nothing was ever buffered
                if self._sw_ending is not None:
                    self._sw_drained()
                return
            framer = self._sw_frames()
        queue = self._sw_queue
        attribute = self._sw_plan.style.postponed
        impl = self._sw_impl
        self._sw_busy = True
        if attribute is not None:  # inputs called from outputs wait in the pump's queue
            setattr(impl, attribute, queue)
        try:
            if framer.error is None:
                framer.feed(data)
            elif data:
                # the framer stopped on an error (a protocol that stays connected after
                # it): what arrives later is kept behind what it could not frame, as the
                # rest of the failing read is (buffered, clear()), however the reads came;
                # reading pauses once that is over the read limit, nothing framing it
                self._sw_backlog += data
                self._sw_bound_reading()
            while (queue or self._sw_backlog or self._sw_resume) and not self._sw_closing:
                if queue:  # (queued outside a frame's callback: a timeout's, a release's)
                    self._sw_drain()
                if framer.error is not None or self._sw_closing:
                    break
                if self._sw_resume:
                    self._sw_resume = False
                    if not self._sw_holds:  # held again since the resume was asked for
                        framer.resume()
                    continue  # what the resumed frames queued runs before more is framed
                data, self._sw_backlog = self._sw_backlog, b""
                framer.feed(data)
        finally:
            if attribute is not None:
                setattr(impl, attribute, None)
            self._sw_busy = False
        if self._sw_ending is not None:
            self._sw_drained()

    def _sw_drain(self) -> None:
        """Run the postponed inputs, each as an outermost one: right after the frame's
        callback that queued them (from the framer's loop, before the next frame is cut),
        or from the pump's loop for those queued elsewhere. None once the connection is
        closing (a callback that closed it: what it queued is not run)."""
        queue = self._sw_queue
        assert queue is not None
        if self._sw_closing:
            return
        attribute = self._sw_plan.style.postponed
        impl = self._sw_impl
        if attribute is not None:  # each runs as an outermost input
            setattr(impl, attribute, None)
        try:
            while queue:
                result = queue.pop(0)()
                if result is not None:  # its work is waited for, as a frame's
                    self._sw_wait(result)
        finally:
            if attribute is not None:
                setattr(impl, attribute, queue)

    def end(self, then: Callable[[], object]) -> None:
        """The peer will send nothing more (it shut down its sending side): deliver every
        complete frame buffered, as frames are always delivered (holds and the work of
        outputs waited for), then call ``then()`` once nothing more can be: the bytes
        still buffered, if any, are the start of a frame that will never be complete.
        ``then`` runs at once when nothing is buffered and nothing holds delivery; an
        exception it raises is a local error. A frame the generic path held back untried
        is tried first."""
        if self._sw_closing or self._sw_ending is not None:
            return
        self._sw_ending = then
        if self._sw_busy:
            return  # the pump running now calls it when it is done
        try:
            self.feed(b"")  # (and the framer's feed(b"") retries a held-back frame)
        except Exception as exc:
            self._sw_local(exc)

    def _sw_drained(self) -> None:
        """After a pump: once nothing holds delivery, :meth:`end`'s callback."""
        if self._sw_holds or self._sw_closing or self._sw_busy:
            return  # a release pumps again, and comes back here
        then, self._sw_ending = self._sw_ending, None
        if then is not None:
            then()

    def clear(self) -> bytes:
        """Drop and return every byte received but not yet delivered in a frame."""
        held = b"" if self._sw_framer is None else self._sw_framer.clear()
        data = held + self._sw_backlog
        self._sw_fed -= len(self._sw_backlog)  # the framer's offset skips what it held
        self._sw_backlog = b""
        if self._sw_reading_held and not self._sw_waits:
            # paused for bytes nothing could frame (after a framing error): gone now
            self._sw_reading_held = False
            self._sw_host.resume_reading(self._sw_core)
        return data

    def refresh(self) -> None:
        """Frame what follows with the current state's framing as it evaluates now (for
        framings computed from protocol attributes that changed, like a delimiter)."""
        framer = self._sw_framer
        if framer is None:
            return  # the framer will be made with the framing as it evaluates then
        grammar, context = self._sw_framing(self._sw_state)
        if grammar is not framer.grammar:
            framer.switch(grammar, context=context, deliver=False)
            if not self._sw_busy:
                self.feed(b"")

    def _sw_resume_input(self) -> None:
        """Resume delivering frames after a pause (from anywhere, even a callback)."""
        self._sw_resume = True
        if not self._sw_busy:
            self.feed(b"")

    def hold(self, reason: str) -> None:
        """Stop delivering frames after the current one until ``reason`` is released
        (reasons compose: delivery resumes when none is left). Bytes fed meanwhile are
        kept, in order."""
        self._sw_holds = self._sw_holds | {reason}
        framer = self._sw_framer
        if framer is not None:
            framer.pause()

    def release(self, reason: str) -> None:
        """Drop ``reason`` for holding; the last one gone, deliver what is buffered (from
        anywhere, even a callback)."""
        holds = self._sw_holds - {reason}
        self._sw_holds = holds
        if reason == "backpressure" and self._sw_plan.idle:
            # the peer took our replies: it is not idle, and we were the ones not reading
            self._sw_last_read = self._sw_host.seconds(self._sw_core)
        if not holds:
            self._sw_resume_input()

    # -- frames to inputs (the handlers are in _dispatch) -------------------------------

    def _sw_framing(self, state: Any) -> tuple[Any, Mapping[str, Any] | None]:
        spec = self._sw_plan.framings.get(state, _READS_NOTHING)
        data = self._sw_plan.style.data(self._sw_impl)
        if not isinstance(spec, Construct) and callable(spec):
            spec = spec(self._sw_core, data)
        return spec, _context(data)

    # -- state changes -------------------------------------------------------------------

    def _sw_sync(self) -> None:
        """After an input: if the state changed (or was left and entered again), switch
        framing and move the timeout."""
        style = self._sw_plan.style
        state = style.state(self._sw_impl)
        if state is self._sw_state and style.moves(self._sw_impl) == self._sw_seen:
            return
        entry = self._sw_plan.entries.get(id(state))  # (_sw_entry's lookup, inline)
        if entry is None:
            entry = self._sw_entry(state)
        entry(self)

    def _sw_entry(self, state: Any) -> Callable[[Any], None]:
        """What entering ``state`` does, one function for every connection of the class
        (called with the connection): note the state, move the timeout, switch the framer
        to the state's framing and handler (the handler made once per connection), and
        frame what is buffered. Compiled transitions call it straight after their outputs
        (they know the state changed); :meth:`_sw_sync` when it finds it did."""
        entries = self._sw_plan.entries
        # by identity: automat's states hash in Python (the plan keeps them alive)
        entry: Callable[[Any], None] | None = entries.get(id(state))
        if entry is None:
            entry = entries[id(state)] = _entry(self._sw_plan, state)
        return entry

    def _sw_input(self, name: str, args: tuple[Any, ...]) -> None:
        """Call an input from outside the framer (a timeout, the connection's loss)."""
        try:
            result = self._sw_plan.style.call(self._sw_impl, name, args)
            if result is not None:
                self._sw_wait(result)
        except Exception as exc:
            self._sw_local(exc)

    # -- waiting for outputs' work ---------------------------------------------------------

    def _sw_wait(self, result: object) -> None:
        """An output returned ``result``: if it is awaitable, deliver no frame after the
        current one until it completes (a value is ignored; a ``MethodicalMachine``
        collector's list or tuple is looked into)."""
        if type(result) is list or type(result) is tuple:
            for item in result:
                if item is not None:
                    self._sw_wait(item)
            return
        future = future_of(result, partial(self._sw_host.loop, self._sw_core))
        if future is None:
            return
        if self._sw_lost:
            # the ``lost`` input's own clean-up: run, waited for by nobody, failures logged
            future.add_done_callback(self._sw_after_loss)
            return
        waits = self._sw_waits
        if not waits:
            waits = self._sw_waits = []
            self.hold("waiting")  # before it can complete: a done future calls back now
        waits.append(future)
        self._sw_bound_reading()
        future.add_done_callback(self._sw_done)

    def _sw_done(self, future: Any) -> None:
        """An awaitable completed: a failure is a local error; the last one done, frames
        flow again, with the framing of the state the machine is in now."""
        failure = failure_of(future)
        waits = self._sw_waits
        if future not in waits:
            return  # cancelled because the connection was lost: nothing to resume
        assert isinstance(waits, list)
        waits.remove(future)
        if failure is not None:
            if not isinstance(failure, Exception):  # cancelled by someone else, ...
                failure = RuntimeError(f"an output's work ended: {type(failure).__name__}")
            if self._sw_closing:
                # the connection is closing (a close, a timeout's, a shutdown): aborting it
                # would drop what it still has to send (a 421...); the work's failure (an
                # input the final state refuses, as often as not) is only logged
                _log.info(
                    "%s: an output's work failed while closing: %r",
                    type(self._sw_core).__name__,
                    failure,
                    exc_info=failure if not isinstance(failure, NoTransition) else None,
                )
                return
            self._sw_local(failure)
            return
        if waits or self._sw_closing:
            return
        try:
            if self._sw_reading_held:
                self._sw_reading_held = False
                if self._sw_plan.idle:
                    # the peer could not send while we did not read: its silence counts
                    # from now (as after a hold for backpressure)
                    self._sw_last_read = self._sw_host.seconds(self._sw_core)
                self._sw_host.resume_reading(self._sw_core)
            self.release("waiting")  # a frame it lets through may start more work
            if self.framing_failed:
                # what it let through failed to frame: nothing will take what is buffered
                self._sw_bound_reading()
        except Exception as exc:
            self._sw_local(exc)

    def _sw_after_loss(self, future: Any) -> None:
        failure = failure_of(future)
        if isinstance(failure, Exception):  # (a cancellation is no Exception)
            self._sw_local(failure)

    def _sw_bound_reading(self) -> None:
        """Pause reading when more than :attr:`waiting_read_limit` bytes are buffered."""
        if self._sw_reading_held:
            return
        framer = self._sw_framer
        buffered = self._sw_fed - (0 if framer is None else framer.offset)
        if buffered > self._sw_host.read_limit(self._sw_core):
            self._sw_reading_held = True
            self._sw_host.pause_reading(self._sw_core)


def _entry(plan: Plan, state: Any) -> Callable[[Any], None]:
    """The entry of ``state`` (see ``Engine._sw_entry``), compiled for ``plan``."""
    state_data = plan.style.data
    timeouts = bool(plan.timeouts)
    plain = plan.plain.get(state)
    spec = plan.framings.get(state, _READS_NOTHING)
    computed = not isinstance(spec, Construct) and callable(spec)  # from the data
    index = plan.state_index(state)  # the state's handler in the connection's list
    timeout = plan.timeouts.get(state)
    seconds = 0.0 if timeout is None else timeout.seconds
    idle = timeout is not None and timeout.idle

    def enter(core: Any) -> None:
        core._sw_state = state
        impl = core._sw_impl
        core._sw_seen = impl._sw_moves  # (what style.moves reads)
        if core._sw_closing:
            core._sw_disarm()
            return
        if timeouts:
            now = core._sw_now
            if (
                now is not None
                and timeout is not None
                and core._sw_timer is not None
                and core._sw_wake_at <= now + seconds
            ):
                # inside a read, a wake-up scheduled early enough: what _sw_arm_timeout
                # does then, with no call (a protocol timing every state, at each change)
                core._sw_armed = timeout
                if idle:
                    core._sw_last_read = now
                core._sw_deadline = now + seconds
            else:
                core._sw_arm_timeout(timeout)
        framer = core._sw_framer
        if framer is not None:
            handlers = core._sw_handlers
            try:
                handler = handlers[index]
            except (TypeError, IndexError):  # none yet, or a state numbered since
                known = handlers or []
                handlers = [*known, *[None] * (len(plan.state_numbers) - len(known))]
                core._sw_handlers = handlers
                handler = handlers[index]
            if handler is None:  # a state's handler depends on nothing but the state
                handler = handlers[index] = core._sw_handler(state)
            framer.on_frame = handler
            if plain is not None:  # the common case, without the general path
                framer.switch(plain, deliver=False)
            else:
                data = state_data(impl)
                grammar = spec(core._sw_core, data) if computed else spec
                framer.switch(grammar, context=_context(data), deliver=False)
            if not core._sw_busy:
                core.feed(b"")

    return enter
