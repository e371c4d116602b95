"""The two automat styles behind one interface: how statewire reads and runs a machine.

``TypeMachineBuilder`` machines get dispatch compiled from their transition table:
statewire builds a subclass of the machine's own runtime type whose input methods do what
automat's do (a transitioner with the same fields, the same data and postponement fields,
the same outputs, in the same order; reentrant inputs are postponed until the running
input's outputs are done) but look transitions up in a dict instead of scanning a list, and
tell the connection when the state may have changed. The transitioner is a slotted one with
automat's fields (``_automaton``, ``_state``, ``_tracer``) and methods: one small object
per connection. A differential property test runs the compiled type and automat's own side
by side. One difference, on purpose: automat refuses a *reentrant* call of an input whose
declared return type is not ``None``; the compiled type postpones it and returns ``None``,
because the machine alone no longer says what the input returns. ``MethodicalMachine``
machines run through automat itself (about 6.5 µs an input); statewire only wraps their
inputs to learn when the state may have changed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from automat import MethodicalMachine, NoTransition
from automat._core import Transitioner

from statewire.machine.errors import DefinitionError

Handler = Callable[[Any], object]
#: a looping input's output function (called ``f(machine, core, *args)``), or the name of
#: the protocol hook it forwards to (called ``core.hook(*args)``)
LoopTarget = tuple[Callable[..., Any] | None, str | None]
_Table = dict[tuple[Any, str], tuple[Any, tuple[Any, ...]]]


class SlotTransitioner:
    """automat's ``Transitioner`` (state, automaton, tracer), without an instance dict."""

    __slots__ = ("_automaton", "_state", "_tracer")

    def __init__(self, automaton: Any, initial: Any) -> None:
        self._automaton = automaton
        self._state = initial
        self._tracer: Any = None

    def setTrace(self, tracer: Any) -> None:
        """Call ``tracer(old, input, new)`` on each transition (``None``: stop)."""
        self._tracer = tracer

    def transition(self, symbol: str) -> tuple[Any, Any]:
        """Move on ``symbol``; return the outputs and what the tracer returned."""
        old = self._state
        new, outputs = self._automaton.outputForInput(old, symbol)
        traced = self._tracer(old, symbol, new) if self._tracer else None
        self._state = new
        return outputs, traced


def forward(hook: str) -> Callable[..., None]:
    """A transition body that calls the protocol's method ``hook`` with the input's
    arguments: ``state.upon(Inputs.line).loop()(forward("lineReceived"))``.

    Declaring it this way (rather than writing the same function by hand) lets the
    compiled dispatch hand frames straight to ``core.<hook>``: the cheapest possible path.
    The method is looked up when the connection enters the state.
    """

    def transition(machine: object, core: object, *args: Any) -> None:
        getattr(core, hook)(*args)

    transition.__name__ = hook
    transition.__statewire_forward__ = hook  # type: ignore[attr-defined]
    return transition


def _table(automaton: Any) -> _Table:
    return {
        (old, name if isinstance(name, str) else name._name()): (new, tuple(outputs))
        for old, name, new, outputs in automaton.allTransitions()
    }


class Style:
    """What the declarative layer needs from a machine (see the module documentation)."""

    automaton: Any
    table: _Table
    initial: Any
    #: state name -> state object
    states: dict[str, Any]
    inputs: set[str]

    def _index(self, automaton: Any) -> None:
        self.automaton = automaton
        self.table = _table(automaton)
        self.initial = automaton.initialState
        found = {self.initial} | {s for s, _ in self.table} | {n for n, _ in self.table.values()}
        self.states = {self.name_of(s): s for s in found}
        self.inputs = {name for _, name in self.table}

    def name_of(self, state: Any) -> str:
        """The state's name."""
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

    def fire(self, impl: Any, name: str, args: tuple[Any, ...]) -> None:
        """Run the transition for a frame (the connection checked that it exists)."""
        getattr(impl, name)(*args)

    def hold(self, impl: Any, queue: list[Callable[[], object]] | None) -> None:
        """Make inputs called from outputs wait in ``queue`` (``None``: run them at once)."""

    def loop_target(self, state: Any, name: str) -> LoopTarget | None:
        """When input ``name`` loops on ``state`` with one plain output: that output's
        function, or the protocol hook it forwards to, to call with no machinery."""
        return None

    def loop_handler(self, impl: Any, core: Any, state: Any, name: str) -> Handler | None:
        """A direct frame handler for ``state`` when input ``name`` loops on it."""
        target = self.loop_target(state, name)
        if target is None:
            return None
        function, hook = target
        if hook is not None:
            handler: Handler = getattr(core, hook)
            return handler
        assert function is not None
        return partial(function, impl, core)


class TypedStyle(Style):
    """A built ``TypeMachineBuilder`` machine, with compiled dispatch."""

    def __init__(self, machine: Any) -> None:
        self._index(machine.__automat_automaton__)
        base = machine.__automat_type__
        names = [n for n, v in vars(base).items() if callable(v) and not n.startswith("__")]
        self.inputs |= set(names)
        methods: dict[str, Any] = {name: self._compile(name) for name in names}
        methods["_sw_after"] = None
        methods["_sw_moves"] = 0
        self.runtime = type(base.__name__, (base,), methods)

    def _compile(self, name: str) -> Callable[..., Any]:
        table = self.table
        automaton = self.automaton

        def input_method(self: Any, *args: Any, **kwargs: Any) -> Any:
            queue = self.__automat_postponed__
            if queue is not None:
                queue.append(partial(input_method, self, *args, **kwargs))
                return None
            txn = self.__automat_transitioner__
            data = self.__automat_data__
            queue = self.__automat_postponed__ = []
            try:
                state = txn._state
                entry = table.get((state, name))
                if entry is None:
                    entry = automaton._unhandledTransition
                    if entry is None:
                        raise NoTransition(state=state, symbol=name)
                new, outputs = entry
                if txn._tracer:
                    txn._tracer(state, name, new)
                txn._state = new
                if new is not state:
                    self._sw_moves += 1
                result = None
                for output in outputs:
                    result = output(self, data, *args, **kwargs)
            finally:
                self.__automat_postponed__ = None
            while queue:
                queue.pop(0)()
            core = self._sw_after
            if core is not None:
                core._sw_sync()
            return result

        input_method.__name__ = input_method.__qualname__ = name
        return input_method

    def name_of(self, state: Any) -> str:
        return str(state.name)

    def new(self, core: Any) -> Any:
        return self.runtime(core, SlotTransitioner(self.automaton, self.initial))

    def state(self, impl: Any) -> Any:
        return impl.__automat_transitioner__._state

    def data(self, impl: Any) -> Any:
        return impl.__automat_data__

    def fire(self, impl: Any, name: str, args: tuple[Any, ...]) -> None:
        txn = impl.__automat_transitioner__
        data = impl.__automat_data__
        state = txn._state
        new, outputs = self.table[state, name]
        if txn._tracer:
            txn._tracer(state, name, new)
        txn._state = new
        if new is not state:
            impl._sw_moves += 1
        for output in outputs:
            output(impl, data, *args)

    def hold(self, impl: Any, queue: list[Callable[[], object]] | None) -> None:
        impl.__automat_postponed__ = queue

    def loop_target(self, state: Any, name: str) -> LoopTarget | None:
        entry = self.table.get((state, name))
        if entry is None:
            return None
        new, outputs = entry
        if new is not state or len(outputs) != 1:
            return None
        method = getattr(outputs[0], "method", None)
        if method is None or outputs[0].requiresData:
            return None
        hook = getattr(method, "__statewire_forward__", None)
        return (None, hook) if hook is not None else (method, None)


class _Observed:
    """Wraps a ``MethodicalMachine`` input: after the outermost input returns, the
    connection looks at the state again."""

    def __init__(self, original: Any, symbol: str) -> None:
        self.original = original
        self.symbol = symbol

    def __get__(self, oself: Any, owner: Any = None) -> Any:
        if oself is None:
            return self.original
        run = self.original.__get__(oself, owner)
        txn = getattr(oself, self.symbol)

        def observed(*args: Any, **kwargs: Any) -> Any:
            oself._sw_depth += 1
            state = txn._state
            try:
                return run(*args, **kwargs)
            finally:
                if txn._state is not state:
                    oself._sw_moves += 1
                oself._sw_depth -= 1
                core = oself._sw_after if oself._sw_depth == 0 else None
                if core is not None:
                    core._sw_sync()

        return observed


class MethodicalStyle(Style):
    """A ``MethodicalMachine`` declared in the protocol class; runs through automat."""

    def __init__(self, machine: MethodicalMachine, owner: type) -> None:
        self._index(machine._automaton)
        self._symbol = machine._symbol
        for name in self.inputs:
            found = inspect.getattr_static(owner, name, None)
            if found is None:
                raise DefinitionError(f"{owner.__name__} has no input {name!r}")
            if not isinstance(found, _Observed):
                setattr(owner, name, _Observed(found, self._symbol))
        owner._sw_depth = 0  # type: ignore[attr-defined]
        owner._sw_moves = 0  # type: ignore[attr-defined]

    def name_of(self, state: Any) -> str:
        return str(state.method.__name__)

    def new(self, core: Any) -> Any:
        setattr(core, self._symbol, Transitioner(self.automaton, self.initial))
        return core

    def state(self, impl: Any) -> Any:
        return getattr(impl, self._symbol)._state


def style_for(machine: Any, owner: type) -> Style:
    """The style adapter for ``machine`` (built ``TypeMachineBuilder`` or
    ``MethodicalMachine``) used by protocol class ``owner``."""
    if isinstance(machine, MethodicalMachine):
        return MethodicalStyle(machine, owner)
    if hasattr(machine, "__automat_automaton__"):
        return TypedStyle(machine)
    if hasattr(machine, "build") and hasattr(machine, "_automaton"):
        raise DefinitionError("pass the built machine: TypeMachineBuilder(...).build()")
    raise DefinitionError(
        f"{owner.__name__}.machine must be a built TypeMachineBuilder machine or a "
        f"MethodicalMachine, not {type(machine).__name__}"
    )
