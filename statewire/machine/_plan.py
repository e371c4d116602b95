"""A protocol class's declarations, checked and compiled once, when the class is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grammars import Fixed, LengthPrefixed, Limited, Line, Netstring, Raw, Request, Streamed
from statewire.framing import Policy
from statewire.machine._routes import ByKey, Route, Timeout, input_name, make_route
from statewire.machine._styles import LoopTarget, Style, style_for
from statewire.machine.errors import DefinitionError


def _state_name(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    name = getattr(ref, "name", None)  # TypeMachineBuilder state
    if isinstance(name, str):
        return name
    method = getattr(ref, "method", None)  # MethodicalMachine state
    if method is not None:
        return str(method.__name__)
    raise DefinitionError(f"{ref!r} is not a state (a state object or its name)")


#: a ``by_verb`` fast-path entry: output function, forwarded hook, fewest and most parts
VerbEntry = tuple[Any, "str | None", float, float]


@dataclass
class Plan:
    """The compiled declarations: per state object, its framing, route and timeout."""

    style: Style
    framings: dict[Any, Any]
    routes: dict[Any, Route]
    timeouts: dict[Any, Timeout]
    lost: str | None
    policy: Policy
    #: whether any timeout measures silence (reads then note the time)
    idle: bool
    #: per state, the inputs of its keyed route that loop there (see ``loops``)
    _loops: dict[Any, dict[str, LoopTarget]] = field(default_factory=dict)
    #: per state, its ``by_verb`` route's fast path (see ``verbs``)
    _verbs: dict[Any, dict[Any, VerbEntry]] = field(default_factory=dict)
    #: the states whose framing is a grammar that needs no context (not computed from the
    #: state's data, no ``this`` in it): their grammar, taken as it is on entering them
    plain: dict[Any, Any] = field(default_factory=dict)
    #: what entering each state does, for any connection, by the state's ``id`` (made by
    #: the engine, when first entered: see ``Engine._sw_entry``)
    entries: dict[int, Any] = field(default_factory=dict)
    #: per state, the compiled transitions of its route's inputs that leave it (see
    #: ``transits``), and other per-state tables the connections' handlers share
    _transits: dict[Any, dict[str, Any]] = field(default_factory=dict)
    shared: dict[tuple[str, Any], Any] = field(default_factory=dict)

    @staticmethod
    def of(protocol: Any) -> Plan | None:
        """The plan a protocol class (or instance) runs, or ``None`` if it declares none."""
        plan = getattr(protocol, "_sw_plan", None)
        return plan if isinstance(plan, Plan) else None

    @staticmethod
    def declared_on(cls: type) -> bool:
        """Whether ``cls`` itself (not a base class) was given a plan."""
        return "_sw_plan" in vars(cls)

    def install(self, cls: type) -> None:
        """Make this the plan of protocol class ``cls`` (and of subclasses that declare
        nothing of their own)."""
        type.__setattr__(cls, "_sw_plan", self)

    def state_index(self, state: Any) -> int:
        """A small number for ``state``, the same for every connection: where its frame
        handler is in a connection's list (no hashing of the state on each entry)."""
        order = self.state_numbers
        if state not in order:
            order[state] = len(order)
        return order[state]

    def __post_init__(self) -> None:
        #: the states' numbers (see ``state_index``): every state of the machine
        self.state_numbers: dict[Any, int] = {}
        for state in self.style.states.values():
            self.state_index(state)
        #: the shortest timeout of any state (how far a state timer's wake-up may be)
        self.shortest = min((t.seconds for t in self.timeouts.values()), default=float("inf"))
        for state, spec in self.framings.items():
            if _plain(spec):
                self.plain[state] = spec

    def loops(self, state: Any, route: ByKey) -> dict[str, LoopTarget]:
        """The inputs of ``route`` that loop on ``state`` with one plain output, by name:
        frames for them are handed to the output (or forwarded hook) directly."""
        found = self._loops.get(state)
        if found is None:
            found = {}
            for name in route.inputs():
                target = self.style.loop_target(state, name)
                if target is not None:
                    found[name] = target
            self._loops[state] = found
        return found

    def verbs(self, state: Any, route: ByKey) -> dict[Any, VerbEntry]:
        """For ``by_verb`` routes: the verbs whose input loops on ``state`` and takes its
        words unconverted, with the output to call and the bounds on the number of parts
        (verb included) the frame may split into."""
        found = self._verbs.get(state)
        if found is None:
            found = {}
            loops = self.loops(state, route)
            for verb, (name, convert, arity) in route.table.items():
                target = loops.get(name)
                if target is not None and convert is None:
                    fewest, most = arity if arity is not None else (0, float("inf"))
                    found[verb] = (target[0], target[1], fewest + 1, most + 1)
            self._verbs[state] = found
        return found

    def transits(self, state: Any, route: Route, entry_of: Any) -> dict[str, Any]:
        """The compiled transitions (shared by every connection: called with the core
        first) of the inputs of ``route`` that leave ``state``, by name; ``entry_of(new)``
        gives the entry of the state each leads to."""
        found = self._transits.get(state)
        if found is None:
            found = {}
            for name in route.inputs():
                transit = self.style.transit(state, name, entry_of)
                if transit is not None:
                    found[name] = transit
            self._transits[state] = found
        return found

    @classmethod
    def compile(
        cls,
        owner: type,
        *,
        machine: Any,
        framings: Mapping[Any, Any],
        routes: Mapping[Any, Any],
        timeouts: Mapping[Any, Timeout],
        lost: Any,
        policy: Policy,
    ) -> Plan:
        """Check the declarations of protocol class ``owner`` against its machine."""
        style = style_for(machine, owner)

        def state(ref: Any, what: str) -> Any:
            name = _state_name(ref)
            found = style.states.get(name)
            if found is None:
                known = ", ".join(sorted(style.states))
                raise DefinitionError(
                    f"{owner.__name__}.{what} names state {name!r}; the machine has: {known}"
                )
            return found

        def known_input(name: str, what: str) -> str:
            if name not in style.inputs:
                known = ", ".join(sorted(style.inputs))
                raise DefinitionError(
                    f"{owner.__name__}.{what} names input {name!r}; the machine has: {known}"
                )
            return name

        compiled_routes: dict[Any, Route] = {}
        for ref, spec in routes.items():
            route = make_route(spec)
            for name in route.inputs():
                known_input(name, "routes")
            compiled_routes[state(ref, "routes")] = route
        compiled_timeouts: dict[Any, Timeout] = {}
        for ref, timeout in timeouts.items():
            where = state(ref, "timeouts")
            name = known_input(timeout.input_name, "timeouts")
            if not style.accepts(where, name):
                raise DefinitionError(
                    f"{owner.__name__}.timeouts: state {style.name_of(where)!r} has no "
                    f"transition for its timeout input {name!r}"
                )
            compiled_timeouts[where] = timeout
        lost_name = None if lost is None else known_input(input_name(lost), "lost")
        return cls(
            style=style,
            framings={state(ref, "framings"): g for ref, g in framings.items()},
            routes=compiled_routes,
            timeouts=compiled_timeouts,
            lost=lost_name,
            policy=policy,
            idle=any(t.idle for t in compiled_timeouts.values()),
        )


def _plain(spec: Any) -> bool:
    """Whether framing ``spec`` is a grammar that no context can change."""
    kind = type(spec)
    if kind in (Fixed, Streamed):
        return type(spec.size) is int
    if kind is Limited:  # a bound on any grammar: plain if that grammar is
        return _plain(spec.subcon)
    return kind in (Line, Raw, Netstring, LengthPrefixed, Request)
