"""What the engine needs from an automat machine: the :class:`Style` interface.

The engine and the plan see a machine only through this interface; its two implementations
(one per automat style) live in :mod:`statewire.machine._automat`, the one module that reads
automat's internals.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from statewire.machine._waiting import returns_nothing

_log = logging.getLogger("statewire.machine")

Handler = Callable[[Any], object]
#: a compiled transition leaving a state (see :meth:`Style.transit`)
Transit = Callable[..., None]
#: a looping input's output function (called ``f(machine, core, *args)``), or the name of
#: the protocol hook it forwards to (called ``core.hook(*args)``)
LoopTarget = tuple[Callable[..., Any] | None, str | None]
#: ``(state, input name) -> (new state, outputs)``: a machine's transitions
Table = dict[tuple[Any, str], tuple[Any, tuple[Any, ...]]]
#: the attribute :func:`statewire.machine.forward` marks a transition body with
FORWARD_MARK = "__statewire_forward__"


class Style:
    """How statewire reads and runs one kind of automat machine."""

    automaton: Any
    table: Table
    initial: Any
    #: state name -> state object
    states: dict[str, Any]
    inputs: set[str]

    def _index(self, automaton: Any, table: Table, initial: Any) -> None:
        self.automaton = automaton
        self.table = table
        self.initial = initial
        found = {initial} | {s for s, _ in table} | {n for n, _ in table.values()}
        self.states = {self.name_of(s): s for s in found}
        self.inputs = {name for _, name in table}

    def name_of(self, state: Any) -> str:
        """The state's name."""
        raise NotImplementedError

    def set_tracer(self, impl: Any, tracer: Any) -> None:
        """Have ``tracer(old, input, new)`` called on each transition of ``impl``."""
        raise NotImplementedError

    def output_names(self, outputs: tuple[Any, ...]) -> tuple[str, ...]:
        """The names of a transition's outputs that are actions (not state data)."""
        raise NotImplementedError

    def parameters(self, name: str) -> tuple[inspect.Parameter, ...] | None:
        """The arguments input ``name`` takes (after the machine's own ones), read from its
        method or from the transitions that receive them; ``None`` when nothing tells."""
        raise NotImplementedError

    def accepts(self, state: Any, name: str) -> bool:
        """Whether ``state`` has a transition for input ``name``."""
        return (state, name) in self.table

    def new(self, core: Any) -> Any:
        """A machine instance for one connection whose core is ``core``."""
        raise NotImplementedError

    def state(self, impl: Any) -> Any:
        """The current state of ``impl``."""
        raise NotImplementedError

    def data(self, impl: Any) -> Any:
        """The current state's data (``TypeMachineBuilder`` data states), else ``None``."""
        return None

    def moves(self, impl: Any) -> int:
        """How many transitions of ``impl`` so far changed its state (a state left and
        entered again within one input counts)."""
        moves: int = impl._sw_moves
        return moves

    def call(self, impl: Any, name: str, args: tuple[Any, ...]) -> Any:
        """Call input ``name`` as user code would (postponed if an input is running)."""
        return getattr(impl, name)(*args)

    def fire(self, impl: Any, name: str, args: tuple[Any, ...]) -> Any:
        """Run the transition for a frame (the connection checked that it exists); return
        what the input returns (an awaitable makes the connection wait for it)."""
        return getattr(impl, name)(*args)

    #: the attribute of a machine where inputs called from outputs wait: the engine sets it
    #: to its queue while it pumps (``None`` there: they run at once); ``None`` for a
    #: style whose inputs are never postponed
    postponed: str | None = None

    def loop_target(self, state: Any, name: str) -> LoopTarget | None:
        """When input ``name`` loops on ``state`` with one plain output: that output's
        function, or the protocol hook it forwards to, to call with no machinery."""
        return None

    def loop_handler(self, impl: Any, engine: Any, state: Any, name: str) -> Handler | None:
        """A direct frame handler for ``state`` when input ``name`` loops on it; a result
        that is not ``None`` goes to ``engine._sw_wait`` (unless the function provably
        returns nothing: then it is the handler itself)."""
        target = self.loop_target(state, name)
        if target is None:
            return None
        function, hook = target
        handler: Handler
        core = engine._sw_core  # what the machine was made for: the protocol
        if hook is not None:
            handler = getattr(core, hook)
        else:
            assert function is not None
            handler = partial(function, impl, core)
        if returns_nothing(handler):
            return handler
        return checked(handler, engine._sw_wait)

    def transit(self, state: Any, name: str, entry_of: Any) -> Transit | None:
        """The transition of input ``name`` leaving ``state``, compiled once for every
        connection: called ``(engine, frame)`` when the frame is the input's one argument,
        else ``(engine, frame, args)``; ``entry_of(new)`` is what entering the new state
        does (called with the engine). ``None`` when the style has none (then the general
        path runs)."""
        return None


def entered_anyway(enter: Callable[[Any], None], core: Any) -> None:
    """Run the entry of a state an output left the machine in before raising; what the
    entry itself raises (the state's framing computed from data that was never made...) is
    logged, not raised: the output's error is the one to report."""
    try:
        enter(core)
    except Exception:
        _log.debug("entering the new state after an output raised failed too", exc_info=True)


def checked(handler: Handler, wait: Callable[[Any], object]) -> Handler:
    """``handler``, handing what it returns, when not ``None``, to ``wait``."""

    def call(frame: Any) -> None:
        result = handler(frame)
        if result is not None:
            wait(result)

    return call
