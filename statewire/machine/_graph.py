"""The graph of a declared protocol: one public, typed picture of its declarations.

Tools read a protocol through this and nothing else: :mod:`statewire.diagram` draws it and
:mod:`statewire.testing` walks it. It is computed once per protocol class from the class's
:class:`~statewire.machine.Plan`, with every state named by its name (never an automat
object), so its readers need no knowledge of automat nor of the engine's internals.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from statewire.machine._plan import Plan
from statewire.machine._routes import Route, Timeout


@dataclass(frozen=True)
class Transition:
    """One edge: in ``source``, ``input`` leads to ``target``, running ``outputs``."""

    source: str
    input: str
    target: str
    #: the names of the outputs that act (a data state's factory is not listed)
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """Everything a declared protocol says, by state and input names."""

    #: the protocol class's name
    name: str
    initial: str
    #: every state, sorted
    states: tuple[str, ...]
    inputs: frozenset[str]
    #: every transition, sorted by source, input and target
    transitions: tuple[Transition, ...]
    #: state -> its framing as declared (a grammar, or a callable of the state's data)
    framings: Mapping[str, Any]
    #: state -> how its frames become inputs
    routes: Mapping[str, Route]
    #: state -> its timeout
    timeouts: Mapping[str, Timeout]
    #: the input connection loss becomes, if declared
    lost: str | None
    #: input -> the arguments it takes after the machine's own (None: cannot be told)
    parameters: Mapping[str, tuple[inspect.Parameter, ...] | None]

    def target(self, state: str, input: str) -> str | None:
        """Where ``input`` leads from ``state``; None when the state refuses it."""
        for transition in self.transitions:
            if transition.source == state and transition.input == input:
                return transition.target
        return None


_GRAPHS: WeakKeyDictionary[type, Graph] = WeakKeyDictionary()


def is_declared(protocol: object) -> bool:
    """Whether ``protocol`` is a declared protocol class (it has a machine)."""
    return isinstance(protocol, type) and Plan.of(protocol) is not None


def graph_of(protocol: type) -> Graph:
    """The :class:`Graph` of the declared protocol class ``protocol`` (``TypeError`` for
    anything else)."""
    found = _GRAPHS.get(protocol)
    if found is not None:
        return found
    plan = Plan.of(protocol)
    if plan is None:
        raise TypeError(f"{getattr(protocol, '__name__', protocol)!r} is not a declared protocol")
    style = plan.style
    name = style.name_of
    transitions = sorted(
        (
            Transition(name(old), input, name(new), style.output_names(outputs))
            for (old, input), (new, outputs) in style.table.items()
        ),
        key=lambda t: (t.source, t.input, t.target),
    )
    graph = Graph(
        name=protocol.__name__,
        initial=name(style.initial),
        states=tuple(sorted(style.states)),
        inputs=frozenset(style.inputs),
        transitions=tuple(transitions),
        framings={name(s): f for s, f in plan.framings.items()},
        routes={name(s): r for s, r in plan.routes.items()},
        timeouts={name(s): t for s, t in plan.timeouts.items()},
        lost=plan.lost,
        parameters={input: style.parameters(input) for input in sorted(style.inputs)},
    )
    _GRAPHS[protocol] = graph
    return graph
