"""automat's internals, read and reproduced in this one module.

Theory of operation
-------------------
automat's public API declares machines; running them fast needs what it keeps private: the
transition list of an ``Automaton``, the ``Transitioner`` holding an instance's state, the
``__automat_*__`` fields of a ``TypeMachineBuilder`` runtime object, the argument filtering
of ``MethodicalMachine`` outputs. Everything statewire takes from there is in this module,
and ``pyproject.toml`` pins automat to the releases it was checked against. The gate for
raising that pin is ``tests/test_machine_differential.py``: random machines and random
input sequences run through automat's own dispatch and through the compiled one here must
give the same outputs, return values, states and errors.

Both styles get *compiled dispatch*: each input is a function that looks its transition up
in a dict built once from the machine's transition table (automat scans a list per input)
and does, in the same order, exactly what automat's input does.

* ``TypeMachineBuilder``: a subclass of the machine's own runtime type, with a slotted
  transitioner with automat's fields. Reentrant inputs are postponed until the running
  input's outputs are done, as automat does. One difference, on purpose: automat refuses a
  *reentrant* call of an input whose declared return type is not ``None``; the compiled
  type postpones it and returns ``None``, because the machine alone no longer says what the
  input returns.
* ``MethodicalMachine``: the protocol class's input descriptors are replaced by plain
  functions that keep automat's order: the input's own (empty) method is called first, so
  wrong arguments raise ``TypeError`` before anything moves; then the tracer, the new
  state, each output (traced, with automat's argument filtering when the output's
  signature differs from the input's), and the state's collector over the outputs' values.
  Reentrant inputs run at once, nested, as automat runs them. The state stays in automat's
  own ``Transitioner`` at the instance attribute automat uses, so inputs called by user
  code, ``setTrace``, serializers and unserializers all see the one current state. A frame
  whose input loops on the state with one output, the default collector and no tracer
  runs just that output, with the input's bookkeeping (``loop_handler``): what makes a
  declared line protocol cheaper than Twisted's ``LineReceiver``.

Both tell the connection when the state may have changed: after the outermost input
returns, they call its ``_sw_sync``. An unserializer changes a ``MethodicalMachine``'s
state without an input: the connection sees it at the next input; a frame cut before then
is cut with the old state's framing, and its input runs, as automat's would, in the new
state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from functools import partial, update_wrapper
from operator import attrgetter
from typing import Any

from automat import MethodicalMachine, NoTransition
from automat._methodical import _filterArgs, _transitionerFromInstance
from automat._typed import DataOutput, MethodOutput, TypedDataState

from statewire.machine._arguments import check_arguments
from statewire.machine._style import (
    FORWARD_MARK,
    Handler,
    LoopTarget,
    Style,
    Table,
    Transit,
    checked,
    entered_anyway,
)
from statewire.machine.errors import DefinitionError

#: automat's own filtering of an input's arguments for one output (untyped in automat)
_filter_arguments: Callable[..., tuple[Any, dict[str, Any]]] = _filterArgs


def _order(item: tuple[tuple[Any, str], Any]) -> tuple[str, str]:
    (state, input), _ = item
    return (repr(state), input)


def _table(automaton: Any) -> Table:
    return {
        (old, name if isinstance(name, str) else name._name()): (new, tuple(outputs))
        for old, name, new, outputs in automaton.allTransitions()
    }


def _output_names(outputs: tuple[Any, ...]) -> tuple[str, ...]:
    names = []
    for output in outputs:
        if hasattr(output, "dataFactory"):
            continue  # the data of a data state, not an action
        name = output._name() if hasattr(output, "_name") else getattr(output, "name", "")
        if name and not name.startswith("returns("):
            names.append(name)
    return tuple(names)


def _parameters(function: Any, skip: int) -> tuple[inspect.Parameter, ...] | None:
    """``function``'s parameters after its first ``skip``; None if it cannot be told."""
    try:
        return tuple(inspect.signature(function).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None


# -- TypeMachineBuilder -----------------------------------------------------------------------


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


def _direct(output: Any) -> Any:
    """An output of the table as a plain call ``(impl, data, *args)``: automat's own
    output object rebuilds its arguments and re-checks the state data's type at every call
    (the annotation is checked once, when the protocol is declared). Data factories and
    anything else stay as automat made them."""
    if type(output) is not MethodOutput:
        return output
    method = output.method
    if output.requiresData:

        def with_data(impl: Any, data: Any, /, *args: Any, **kwargs: Any) -> Any:
            return method(impl, impl.__automat_core__, data, *args, **kwargs)

        return with_data

    def without_data(impl: Any, data: Any, /, *args: Any, **kwargs: Any) -> Any:
        return method(impl, impl.__automat_core__, *args, **kwargs)

    return without_data


def _sync(engine: Any) -> None:
    engine._sw_sync()


# what a step of a compiled transition calls (see _steps)
_PLAIN, _WITH_DATA, _NEW_DATA, _OTHER = "plain", "with data", "new data", "other"


def _steps(outputs: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    """A transition's outputs as ``(kind, function)`` steps a compiled transition calls
    without automat's objects in between: an output's method with ``(impl, core, *args)``
    or ``(impl, core, data, *args)``, a data factory with ``(impl, core, *args)`` (what it
    returns is the new state's data); anything else as automat made it."""
    steps: list[tuple[str, Any]] = []
    for output in outputs:
        if type(output) is MethodOutput:
            steps.append((_WITH_DATA if output.requiresData else _PLAIN, output.method))
        elif type(output) is DataOutput:
            steps.append((_NEW_DATA, output.dataFactory))
        else:
            steps.append((_OTHER, output))
    return tuple(steps)


def _input_steps(outputs: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    """A transition's outputs as an input method calls them (see :func:`_steps`): an
    output's method with ``(impl, core, *args)`` or ``(impl, core, data, *args)``;
    anything else, data factories included, as automat made it, with ``(impl, data,
    *args)``."""
    return tuple(
        (_WITH_DATA if output.requiresData else _PLAIN, output.method)
        if type(output) is MethodOutput
        else (_OTHER, output)
        for output in outputs
    )


def _check_data_annotations(table: Table, name_of: Callable[[Any], str]) -> None:
    """Refuse, when the protocol is declared, a transition function whose state-data
    parameter has no annotation: automat checks the data against it at every call, and
    an empty annotation fails there, at the first frame, as an error in our code."""
    for (state, _), (_, outputs) in sorted(table.items(), key=_order):
        for output in outputs:
            method = getattr(output, "method", None)
            if method is None or not getattr(output, "requiresData", False):
                continue
            found = _parameters(method, 2)
            if found and found[0].annotation is inspect.Parameter.empty:
                raise DefinitionError(
                    f"{method.__qualname__}: annotate its state-data parameter "
                    f"{found[0].name!r} with the type of the data of state "
                    f"{name_of(state)!r} (automat checks the data against it at every call)"
                )


class TypedStyle(Style):
    """A built ``TypeMachineBuilder`` machine, with compiled dispatch."""

    postponed = "__automat_postponed__"  # (the input methods' queue: see _compile)

    def __init__(self, machine: Any) -> None:
        automaton = machine.__automat_automaton__
        self._index(automaton, _table(automaton), automaton.initialState)
        _check_data_annotations(self.table, self.name_of)
        for (_, name), (new, outputs) in sorted(self.table.items(), key=_order):
            for output in outputs:
                factory = getattr(output, "dataFactory", None)
                if factory is not None:
                    check_arguments(factory, name, self.parameters(name), self.name_of(new))
        #: the table with each output compiled to a plain call (see :func:`_direct`)
        self.calls: Table = {
            key: (new, tuple(_direct(output) for output in outputs))
            for key, (new, outputs) in self.table.items()
        }
        base = machine.__automat_type__
        names = [n for n, v in vars(base).items() if callable(v) and not n.startswith("__")]
        self.inputs |= set(names)
        methods: dict[str, Any] = {name: self._compile(name) for name in names}
        methods["_sw_after"] = None
        methods["_sw_moves"] = 0
        self.runtime = type(base.__name__, (base,), methods)
        # the engine reads the state after every input that moves: a C getter, no call
        self.state = attrgetter("__automat_transitioner__._state")  # type: ignore[method-assign,assignment]

    def _compile(self, name: str) -> Callable[..., Any]:
        # this input's transitions by the identity of the state they leave (automat's
        # states hash in Python; the table is made once and never changes)
        table = {
            id(state): (new, _input_steps(outputs))
            for (state, input), (new, outputs) in self.table.items()
            if input == name
        }
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
                entry = table.get(id(state))
                if entry is None:
                    unhandled = automaton._unhandledTransition
                    if unhandled is None:
                        raise NoTransition(state=state, symbol=name)
                    # automat's own outputs, as automat calls them (checks included)
                    entry = (unhandled[0], tuple((_OTHER, o) for o in unhandled[1]))
                new, steps = entry
                if txn._tracer:
                    txn._tracer(state, name, new)
                txn._state = new
                if new is not state:
                    self._sw_moves += 1
                result = None
                core = self.__automat_core__
                for kind, function in steps:
                    if kind is _PLAIN:
                        result = function(self, core, *args, **kwargs)
                    elif kind is _WITH_DATA:
                        result = function(self, core, data, *args, **kwargs)
                    else:
                        result = function(self, data, *args, **kwargs)
            except BaseException:
                self.__automat_postponed__ = None
                engine = self._sw_after
                if engine is not None:  # the state may have moved: framing follows
                    entered_anyway(_sync, engine)
                raise
            finally:
                self.__automat_postponed__ = None
            engine = self._sw_after
            while queue:
                later = queue.pop(0)()  # a postponed input, run as an outermost one
                if later is not None and engine is not None:
                    engine._sw_wait(later)  # its work is waited for as a frame's would be
            if engine is not None:
                engine._sw_sync()
            return result

        input_method.__name__ = input_method.__qualname__ = name
        return input_method

    def name_of(self, state: Any) -> str:
        return str(state.name)

    def output_names(self, outputs: tuple[Any, ...]) -> tuple[str, ...]:
        return _output_names(outputs)

    def parameters(self, name: str) -> tuple[inspect.Parameter, ...] | None:
        # the input protocol's methods are stubs: its transition functions
        # (``machine, core[, data], *arguments``) say what the arguments are; one that
        # names them beats one that takes ``*args``
        fallback = None
        for (_, input), (_, outputs) in sorted(self.table.items(), key=_order):
            if input != name:
                continue
            for output in outputs:
                method = getattr(output, "method", None)
                if method is None or getattr(method, FORWARD_MARK, None):
                    continue
                found = _parameters(method, 3 if output.requiresData else 2)
                if found is None:
                    continue
                if not any(p.kind is p.VAR_POSITIONAL for p in found):
                    return found
                fallback = fallback or found
        return fallback

    def new(self, core: Any) -> Any:
        return self.runtime(core, SlotTransitioner(self.automaton, self.initial))

    def state(self, impl: Any) -> Any:
        return impl.__automat_transitioner__._state

    def set_tracer(self, impl: Any, tracer: Any) -> None:
        impl.__automat_transitioner__.setTrace(tracer)

    def data(self, impl: Any) -> Any:
        # automat keeps the data of the last data state after it is left: not this state's
        if type(impl.__automat_transitioner__._state) is not TypedDataState:
            return None
        return impl.__automat_data__

    def fire(self, impl: Any, name: str, args: tuple[Any, ...]) -> Any:
        txn = impl.__automat_transitioner__
        data = impl.__automat_data__
        state = txn._state
        new, outputs = self.calls[state, name]
        if txn._tracer:
            txn._tracer(state, name, new)
        txn._state = new
        if new is not state:
            impl._sw_moves += 1
        result = None
        for output in outputs:
            result = output(impl, data, *args)
        return result  # as the input would: the last output's

    def transit(self, state: Any, name: str, entry_of: Any) -> Transit | None:
        """The compiled transition of ``name`` leaving ``state`` (None for a loop): what
        the general path does (``_sw_dispatch``, ``fire``, ``_sw_sync``) with the lookups
        done once and automat's output objects unwrapped (:func:`_steps`); one function
        for every connection, called with the engine, the frame, and the input's arguments
        when they are not just the frame."""
        entry = self.table.get((state, name))
        if entry is None or entry[0] is state:
            return None
        new, outputs = entry
        steps = _steps(outputs)
        enter = entry_of(new)  # the state changes: what _sw_sync would find

        def transit(engine: Any, frame: Any, args: tuple[Any, ...] | None = None) -> None:
            if args is None:
                args = (frame,)
            impl = engine._sw_impl
            txn = impl.__automat_transitioner__
            if txn._state is not state or txn._tracer is not None:
                engine._sw_dispatch(name, args, frame)
                return
            core = engine._sw_core  # what the machine was made for: the protocol
            data = impl.__automat_data__
            txn._state = new
            impl._sw_moves += 1
            result = None
            try:
                for kind, function in steps:
                    if kind is _PLAIN:
                        result = function(impl, core, *args)
                    elif kind is _WITH_DATA:
                        result = function(impl, core, data, *args)
                    elif kind is _NEW_DATA:
                        result = impl.__automat_data__ = function(impl, core, *args)
                    else:
                        result = function(impl, data, *args)
            except BaseException:
                # the machine is in the new state even when an output raised: its framing
                # and handler follow as far as they can (as _sw_dispatch's sync does);
                # the output's error is the one reported
                entered_anyway(enter, engine)
                raise
            enter(engine)
            if result is not None:
                engine._sw_wait(result)

        return transit

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
        hook = getattr(method, FORWARD_MARK, None)
        return (None, hook) if hook is not None else (method, None)


# -- MethodicalMachine ------------------------------------------------------------------------

#: one output of a transition: automat's output object (for the tracer), its method, and
#: whether the output takes the input's positional arguments as they are (no filtering)
_Step = tuple[Any, Callable[..., Any], bool]
#: per state: the new state, the outputs, the collector of their values
_Move = tuple[Any, tuple[_Step, ...], Callable[[Iterable[Any]], Any]]


def _same_arguments(input: Any, output: Any) -> bool:
    """Whether automat's ``_filterArgs`` hands ``output`` exactly the positional arguments
    ``input`` was called with, when it was called with no keyword argument: no input
    default fills in a keyword, and the output takes every positional one."""
    given, takes = input.argSpec, output.argSpec
    if given.defaults:
        return False
    return bool(takes.varargs) or (not given.varargs and set(given.args[1:]) <= set(takes.args))


def _takes_one(input: Any) -> bool:
    """Whether a call with exactly one positional argument always fits ``input``'s method."""
    spec = input.argSpec
    defaulted = {name for name, _ in spec.kwonlydefaults}
    return len(spec.args) == 2 and not spec.varargs and set(spec.kwonlyargs) <= defaulted


def _compile_input(machine: Any, input: Any) -> Callable[..., Any]:
    """``input``'s compiled method (see the module documentation)."""
    automaton = machine._automaton
    symbol = machine._symbol
    body = input.method
    moves: dict[Any, _Move] = {}
    for old, symbol_in, new, outputs in automaton.allTransitions():
        if symbol_in is input:
            steps = tuple((o, o.method, _same_arguments(input, o)) for o in outputs)
            moves[old] = (new, steps, input.collectors[old])

    def run(oself: Any, *args: Any, **kwargs: Any) -> Any:
        body(oself, *args, **kwargs)  # automat calls it first: wrong arguments raise here
        txn = getattr(oself, symbol, None)
        if txn is None:
            txn = _transitionerFromInstance(oself, symbol, automaton)
        state = txn._state
        move = moves.get(state)
        if move is None:
            # (MethodicalMachine has no unhandled transition, Automaton's fallback)
            raise NoTransition(state=state, symbol=input)
        new, steps, collector = move
        tracer = txn._tracer
        traced = tracer(state, input, new) if tracer else None
        txn._state = new
        if new is not state:
            oself._sw_moves += 1
        oself._sw_depth += 1
        try:
            values = []
            for output, method, same in steps:
                if traced is not None:
                    traced(output)
                if same and not kwargs:
                    values.append(method(oself, *args))
                else:
                    some, named = _filter_arguments(args, kwargs, input.argSpec, output.argSpec)
                    values.append(method(oself, *some, **named))
            return collector(values)
        finally:
            oself._sw_depth -= 1
            if not oself._sw_depth:
                engine = oself._sw_after
                if engine is not None:
                    engine._sw_sync()

    update_wrapper(run, body)
    run.original = input  # type: ignore[attr-defined]  # what routes name the input by
    return run


class MethodicalStyle(Style):
    """A ``MethodicalMachine`` declared in the protocol class, with compiled dispatch: the
    class's inputs are replaced by compiled ones when the protocol is declared."""

    def __init__(self, machine: MethodicalMachine, owner: type) -> None:
        automaton = machine._automaton
        self._index(automaton, _table(automaton), automaton.initialState)
        self._symbol = machine._symbol
        #: input name -> compiled input (also the class attribute of that name)
        self._runs: dict[str, Callable[..., Any]] = {}
        for input in {i for _, i, _, _ in automaton.allTransitions()}:
            name = input._name()
            found = inspect.getattr_static(owner, name, None)
            if found is None:
                raise DefinitionError(f"{owner.__name__} has no input {name!r}")
            if getattr(found, "original", None) is input:  # compiled for a base class
                self._runs[name] = found
            elif found is input:
                self._runs[name] = _compile_input(machine, input)
                setattr(owner, name, self._runs[name])
            else:
                raise DefinitionError(
                    f"{owner.__name__}.{name} is not the machine's input {name!r}"
                )
        owner._sw_depth = 0  # type: ignore[attr-defined]
        owner._sw_moves = 0  # type: ignore[attr-defined]
        if not hasattr(owner, "_sw_after"):  # a class that is no protocol (tests, tools)
            owner._sw_after = None  # type: ignore[attr-defined]

    def name_of(self, state: Any) -> str:
        return str(state.method.__name__)

    def output_names(self, outputs: tuple[Any, ...]) -> tuple[str, ...]:
        return _output_names(outputs)

    def parameters(self, name: str) -> tuple[inspect.Parameter, ...] | None:
        run = self._runs.get(name)
        input = getattr(run, "original", None)
        return None if input is None else _parameters(input.method, 1)

    def new(self, core: Any) -> Any:
        # the instance's own transitioner, made as automat makes it, if it has none yet
        _transitionerFromInstance(core, self._symbol, self.automaton)
        return core

    def state(self, impl: Any) -> Any:
        return getattr(impl, self._symbol)._state

    def set_tracer(self, impl: Any, tracer: Any) -> None:
        getattr(impl, self._symbol).setTrace(tracer)

    def fire(self, impl: Any, name: str, args: tuple[Any, ...]) -> Any:
        return self._runs[name](impl, *args)

    def loop_target(self, state: Any, name: str) -> LoopTarget | None:
        entry = self.table.get((state, name))
        if entry is None or entry[0] is not state:
            return None
        run = self._runs[name]

        def looped(machine: Any, core: Any, *args: Any) -> Any:
            return run(machine, *args)

        return (looped, None)

    def loop_handler(self, impl: Any, engine: Any, state: Any, name: str) -> Handler | None:
        """For a one-output loop whose output takes the frame as the input does, run by
        the default collector, untraced: just the output, with the input's bookkeeping.
        Anything else (a tracer set, a state changed by an unserializer): the full input."""
        entry = self.table.get((state, name))
        if entry is None or entry[0] is not state:
            return None
        run = self._runs[name]
        input = run.original  # type: ignore[attr-defined]
        outputs = entry[1]
        if (
            len(outputs) != 1
            or input.collectors[state] is not list
            or not _same_arguments(input, outputs[0])
        ):
            return checked(partial(run, impl), engine._sw_wait)
        method = outputs[0].method
        check = None if _takes_one(input) else input.method
        txn = getattr(impl, self._symbol)

        wait = engine._sw_wait

        def handler(frame: Any) -> None:
            if txn._state is not state or txn._tracer is not None:
                result = run(impl, frame)
            else:
                if check is not None:
                    check(impl, frame)
                moves = impl._sw_moves
                impl._sw_depth += 1
                try:
                    result = method(impl, frame)
                finally:
                    impl._sw_depth -= 1
                    if not impl._sw_depth and (txn._state is not state or impl._sw_moves != moves):
                        engine._sw_sync()
            if result is not None:  # an awaitable (see statewire.machine._waiting)
                wait(result)

        return handler


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
