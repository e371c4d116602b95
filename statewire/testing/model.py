"""Model-based tests generated from a declared protocol's own diagram.

:func:`protocol_state_machine` turns a declared protocol into a Hypothesis
``RuleBasedStateMachine``. The test keeps its *own* model state, walked on the diagram (the
protocol's declaration, or a separate ``spec`` protocol whose diagram the implementation
must follow), and drives the implementation in memory (:class:`StringTransport`, a
:class:`Clock`):

* one rule per input a state's route can produce: a frame for it is generated from the
  state's grammar and route (a verb and words for ``by_verb`` routes, the key and a tail for
  ``by_key`` routes, any frame for a plain route; ``frames={input: strategy}`` overrides),
  encoded with the state's framing and fed in an arbitrary chunking. An accepted input must
  move the implementation to the diagram's target; a refused one must be reported as a
  remote error with the state unchanged;
* one rule per state timeout: the clock is moved on by its delay;
* one rule per input that takes no arguments and no frame produces (``setRawMode``):
  it is called directly;
* invariants: the implementation is in the model's state, and ``invariants={state: check}``
  hold there.

Every transition exercised is recorded: :func:`check_protocol` runs the machine and can fail
when some transition of the diagram was never reached. :func:`shortest_paths` lists, for
every state and every transition, a shortest sequence of steps from the initial state (timeouts
included), and :func:`check_path` drives one: pytest parameters for a test per edge.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from grammars import LengthPrefixed, Line, Netstring, Raw
from statewire.machine import ByKey, ToInput, UnexpectedInput, graph_of, input_name
from statewire.testing.memory import Clock, StringTransport
from statewire.testing.strategies import UnsupportedGrammar, chunkings, from_grammar

#: words ``by_verb`` frames are made of: names, small numbers, and nothing odd
WORDS = st.one_of(
    st.sampled_from([b"a", b"b", b"key", b"x1"]),
    st.integers(1, 64).map(lambda n: str(n).encode()),
)
#: words for arguments the input takes as ``int``
NUMBERS = st.integers(0, 64).map(lambda n: str(n).encode())
#: tails ``by_key`` frames get after their key
TAILS = st.lists(
    st.one_of(st.sampled_from([b"k", b"\0", b"v", b" ", b"1"]), st.binary(max_size=4)),
    max_size=6,
).map(b"".join)


@dataclass(frozen=True)
class Exchange:
    """One accepted frame and what the protocol sent back for it: what a reply check
    (``replies={input: check}``) is given."""

    input: str
    #: the frame sent (its value, before the framing encoded it)
    frame: Any
    #: every byte the protocol wrote while handling it (a whole reply, or several)
    reply: bytes
    #: the connection, after the frame (its factory, its state data...)
    protocol: Any
    source: str
    target: str


#: what a reply check may be: the exact bytes, a pattern they must match whole, or a
#: function of the :class:`Exchange` that raises or returns False when the reply is wrong
ReplyCheck = bytes | re.Pattern[bytes] | Callable[[Exchange], object]


def _check_reply(check: ReplyCheck, exchange: Exchange) -> None:
    what = f"reply to {exchange.input} {exchange.frame!r} in {exchange.source!r}"
    if isinstance(check, bytes):
        assert exchange.reply == check, f"{what}: {exchange.reply!r}, expected {check!r}"
    elif isinstance(check, re.Pattern):
        assert check.fullmatch(exchange.reply), (
            f"{what}: {exchange.reply!r} does not match {check.pattern!r}"
        )
    else:
        assert check(exchange) is not False, f"{what}: {exchange.reply!r} refused by the check"


@dataclass(frozen=True)
class Step:
    """One step of a path: send a frame for ``input``, wait for a timeout, or call an
    input directly; ``source`` -> ``target`` in the diagram."""

    kind: str  # "frame", "timeout" or "call"
    input: str
    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.source} --{self.input}--> {self.target}"


@dataclass(frozen=True)
class Path:
    """A shortest way to reach ``goal`` (a state, or a transition's ``Step``)."""

    goal: str
    steps: tuple[Step, ...]

    @property
    def id(self) -> str:
        """A pytest id: the goal."""
        return self.goal


class _Diagram:
    """The spec's transitions by state name, and what can trigger each."""

    def __init__(self, protocol: type) -> None:
        graph = graph_of(protocol)
        self.graph = graph
        self.initial = graph.initial
        self.states = list(graph.states)
        self.table = {(t.source, t.input): t.target for t in graph.transitions}
        self.routes = graph.routes
        self.timeouts = graph.timeouts
        self.framings = graph.framings
        self.direct = {
            input
            for input in graph.inputs
            if input != graph.lost
            and not any(input in r.inputs() for r in graph.routes.values())
            and not any(t.input_name == input for t in graph.timeouts.values())
            and _required(graph.parameters[input]) == 0
        }

    def numbers(self, input: str) -> list[bool] | None:
        """Per argument of ``input``, whether it is annotated ``int`` (None: unknown)."""
        parameters = self.graph.parameters.get(input)
        if parameters is None or any(p.kind is p.VAR_POSITIONAL for p in parameters):
            return None
        return [p.annotation in (int, "int") for p in parameters]

    def producible(self, state: str) -> set[str]:
        route = self.routes.get(state)
        return set() if route is None else route.inputs()

    def steps_from(self, state: str) -> list[Step]:
        steps = []
        for input in sorted(self.producible(state)):
            if (state, input) in self.table:
                steps.append(Step("frame", input, state, self.table[state, input]))
        timeout = self.timeouts.get(state)
        if timeout is not None:
            steps.append(
                Step("timeout", timeout.input_name, state, self.table[state, timeout.input_name])
            )
        for input in sorted(self.direct):
            if (state, input) in self.table:
                steps.append(Step("call", input, state, self.table[state, input]))
        return steps


def _required(parameters: tuple[inspect.Parameter, ...] | None) -> int | None:
    """How many arguments must be given for ``parameters``; None when unknown (an input
    whose arguments nothing tells is taken to need some)."""
    if parameters is None:
        return None
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return sum(1 for p in parameters if p.default is p.empty and p.kind not in kinds)


# -- frames for an input ------------------------------------------------------------------


def _fits(grammar: Any, context: Mapping[str, Any] | None) -> Callable[[Any], bool]:
    def fits(value: Any) -> bool:
        try:
            wire = grammar.build(value, **(context or {}))
            return bool(grammar.parse(wire, **(context or {})) == value)
        except Exception:
            return False

    return fits


def frames_for(
    route: Any,
    input: str,
    grammar: Any,
    context: Mapping[str, Any] | None = None,
    numbers: Sequence[bool] | None = None,
) -> st.SearchStrategy[Any]:
    """Frames of ``grammar`` that ``route`` turns into ``input``.

    ``numbers`` says, per argument of ``input``, whether it is an ``int``: a command's words
    for those are then generated as decimal numbers, so that a converter that validates
    them (``int(size)``) is given words it takes instead of having most draws filtered out.
    """
    if isinstance(route, ToInput):
        if isinstance(grammar, (Line, Netstring, LengthPrefixed, Raw)):
            # small frames: limits are the framer's tests' business, and big draws are slow
            return st.binary(min_size=1, max_size=64).filter(_fits(grammar, context))
        return from_grammar(grammar, context)
    if not isinstance(route, ByKey):
        raise UnsupportedGrammar(f"no frames can be derived for route {route!r}")
    fits = _fits(grammar, context)
    if input == route.unknown and not any(name == input for name, _, _ in route.table.values()):
        known = set(route.table)
        if route.words is not None:
            verbs = st.text("QWXZ", min_size=3, max_size=6).map(str.encode)
            frames = verbs.filter(lambda v: v not in known)
        else:
            frames = from_grammar(grammar, context).filter(lambda f: _key(route, f) not in known)
        return frames.filter(fits)
    targets = [key for key, (name, _, _) in route.table.items() if name == input]
    keys = [key for key in targets if isinstance(key, bytes)]
    if not keys or len(keys) != len(targets):
        raise UnsupportedGrammar(
            f"cannot make frames for input {input!r} (keys that are not bytes); "
            "pass frames={input: strategy}"
        )
    options: list[st.SearchStrategy[Any]] = []
    for key in sorted(keys):
        _, convert, arity = route.table[key]
        if route.words is not None:
            counts = _positional(convert) if convert else arity
            frames = _command_frames(key, route.words, counts, numbers)
        else:
            frames = TAILS.map(partial(operator.add, key))
        options.append(frames.filter(partial(_routes_to, route, input=input)))
    return st.one_of(options).filter(fits)


def _command_frames(
    verb: bytes,
    separator: bytes,
    arity: tuple[int, float] | None,
    numbers: Sequence[bool] | None = None,
) -> st.SearchStrategy[bytes]:
    """``verb`` and as many words as the input (or its converter) takes; a number where
    ``numbers`` says the argument is an ``int``."""
    if arity is not None and arity[1] != float("inf"):
        counts = st.integers(arity[0], int(arity[1]))
    else:
        counts = st.integers(0, 3)

    def words(count: int) -> st.SearchStrategy[list[bytes]]:
        kinds = list(numbers or ())
        return st.tuples(
            *(NUMBERS if i < len(kinds) and kinds[i] else WORDS for i in range(count))
        ).map(list)

    def join(chosen: list[bytes]) -> bytes:
        return separator.join([verb, *chosen])

    return counts.flatmap(words).map(join)


def _positional(function: Callable[..., Any]) -> tuple[int, float] | None:
    """How many positional arguments ``function`` takes (fewest, most), if it can be told."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return sum(1 for p in positional if p.default is p.empty), float(len(positional))


def _key(route: ByKey, frame: Any) -> Any:
    try:
        return route.key(frame)
    except Exception:
        return None


def _routes_to(route: ByKey, frame: Any, input: str) -> bool:
    entry = route.table.get(_key(route, frame))
    if entry is None or entry[0] != input:
        return False
    _, convert, arity = entry
    try:
        if route.words is not None:
            words = tuple(w for w in bytes(frame).split(route.words)[1:] if w)
            if convert is not None:
                convert(*words)
            elif arity is not None and not arity[0] <= len(words) <= arity[1]:
                return False
        elif convert is not None:
            convert(frame)
    except Exception:
        return False
    return True


# -- the state machine --------------------------------------------------------------------


class ProtocolMachine(RuleBasedStateMachine):
    """Base of the generated machines (see :func:`protocol_state_machine`)."""

    implementation: type
    #: what ``protocol.factory`` is (a callable is called for each connection)
    factory: Any
    diagram: _Diagram
    frames: Mapping[str, st.SearchStrategy[Any]]
    replies: Mapping[str, ReplyCheck]
    state_invariants: Mapping[str, Callable[[Any], object]]
    #: transitions exercised, across every run of this class: (source, input, target)
    covered: set[tuple[str, str, str]]
    #: the implementation's state for each state of the spec named otherwise
    state_names: Mapping[str, str]

    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = _connect(self.implementation, self.factory, self.refused_log())
        self.model = self.diagram.initial

    def refused_log(self) -> list[Any]:
        self.refused: list[Any] = []
        return self.refused

    @property
    def open(self) -> bool:
        return not self.protocol.transport.disconnecting

    def _expect(self, input: str) -> str:
        return self.diagram.table.get((self.model, input), self.model)

    def _after(self, input: str, target: str, refusals: int) -> None:
        if (self.model, input) in self.diagram.table:
            self.covered.add((self.model, input, target))
            assert len(self.refused) == refusals, (
                f"{input!r} in state {self.model!r} was refused: {self.refused[-1]}"
            )
        else:
            assert len(self.refused) == refusals + 1 and isinstance(
                self.refused[-1], UnexpectedInput
            ), f"{input!r} is not accepted in {self.model!r} but was not refused"
        self.model = target
        if self.open:
            assert self.protocol.machine_state == self.state_names.get(target, target), (
                f"after {input!r}: implementation in {self.protocol.machine_state!r}, "
                f"diagram says {target!r}"
            )

    def send(self, input: str, data: st.DataObject, *, whole: bool = False) -> bytes:
        """Send a frame for ``input`` (in arbitrary reads, or in one); return its bytes."""
        framer = self.protocol.machine_engine.framer()
        grammar = framer.grammar
        context = dict(framer.context)
        strategy = self.frames.get(input)  # never bool() a strategy: Hypothesis warns
        if strategy is None:
            route = self.diagram.routes[self.model]
            numbers = self.diagram.numbers(input)
            strategy = frames_for(route, input, grammar, context, numbers)
        frame = data.draw(strategy, label=f"{input} frame")
        wire: bytes = grammar.build(frame, **context)
        chunks = [wire] if whole else data.draw(chunkings(wire, max_chunks=6), label="reads")
        source, target, refusals = self.model, self._expect(input), len(self.refused)
        written = len(self.protocol.transport.value())
        for chunk in chunks:
            self.protocol.dataReceived(chunk)
        self._after(input, target, refusals)
        check = self.replies.get(input)
        if check is not None and (source, input) in self.diagram.table:
            reply = self.protocol.transport.value()[written:]
            _check_reply(check, Exchange(input, frame, reply, self.protocol, source, target))
        return wire

    def wait(self) -> None:
        timeout = self.diagram.timeouts[self.model]
        target, refusals = self._expect(timeout.input_name), len(self.refused)
        self.protocol.clock.advance(timeout.seconds)
        self._after(timeout.input_name, target, refusals)

    def call(self, input: str) -> None:
        target, refusals = self._expect(input), len(self.refused)
        if (self.model, input) not in self.diagram.table:
            return  # calling an input a state refuses is the caller's error, not a peer's
        getattr(self.protocol.inputs, input)()
        self._after(input, target, refusals)

    @precondition(lambda self: not self.open)
    @rule()
    def reconnect(self) -> None:
        """The connection closed (a quit, a timeout): go on with a new one."""
        self.protocol = _connect(self.implementation, self.factory, self.refused_log())
        self.model = self.diagram.initial

    @invariant()
    def implementation_follows_the_diagram(self) -> None:
        if self.open:
            assert self.protocol.machine_state == self.state_names.get(self.model, self.model)
            check = self.state_invariants.get(self.model)
            if check is not None:
                check(self.protocol)


def _connect(implementation: type, factory: Any, refused: list[Any]) -> Any:
    """An instance of ``implementation`` that records remote errors instead of closing."""

    class UnderTest(implementation):  # type: ignore[misc]
        close_on_error = False

        def remoteError(self, error: Any) -> None:
            refused.append(error)
            super().remoteError(error)

    UnderTest.__name__ = implementation.__name__
    protocol = UnderTest()
    protocol.factory = factory() if callable(factory) else factory
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    return protocol


def protocol_state_machine(
    implementation: type,
    *,
    spec: type | None = None,
    factory: Any = None,
    frames: Mapping[Any, st.SearchStrategy[Any]] | None = None,
    invariants: Mapping[Any, Callable[[Any], object]] | None = None,
    replies: Mapping[Any, ReplyCheck] | None = None,
    states: Mapping[str, str] | None = None,
) -> type[ProtocolMachine]:
    """A ``RuleBasedStateMachine`` testing ``implementation`` against the diagram of
    ``spec`` (default: its own). ``factory`` becomes each protocol's ``factory`` (a
    callable is called once per connection). ``frames`` maps inputs (``Commands.put``, or
    their names) to strategies of frames that route to them; ``invariants`` maps states
    (or their names) to checks of the protocol in that state; ``replies`` maps inputs to
    what the protocol must send back for each frame of theirs it accepts: the exact bytes,
    a ``re.Pattern`` of bytes they match whole, or a function of the :class:`Exchange`
    that raises or returns False when the reply is wrong. ``states`` names the
    implementation's state for each state of ``spec`` named otherwise: a spec may tell
    apart, as a client sees them, what the implementation does in one state (HTTP's
    request line and field lines, both read in ``head``). Run it with
    ``TestCase = machine.TestCase`` or :func:`check_protocol`."""
    diagram = _Diagram(spec or implementation)
    namespace: dict[str, Any] = {
        "implementation": implementation,
        "factory": factory,
        "diagram": diagram,
        "frames": {_name(k): v for k, v in (frames or {}).items()},
        "state_invariants": {_name(k): v for k, v in (invariants or {}).items()},
        "replies": {_name(k): v for k, v in (replies or {}).items()},
        "covered": set(),
        "state_names": dict(states or {}),
    }
    for input in sorted({i for s in diagram.states for i in diagram.producible(s)}):
        can = [s for s in diagram.states if input in diagram.producible(s)]
        namespace[f"send_{input}"] = _send_rule(input, can)
    if diagram.timeouts:
        namespace["wait_for_timeout"] = precondition(
            lambda self: self.open and self.model in self.diagram.timeouts
        )(rule()(ProtocolMachine.wait))
    for input in sorted(diagram.direct):
        namespace[f"call_{input}"] = precondition(lambda self: self.open)(
            rule()(lambda self, i=input: self.call(i))
        )
    return type(f"{implementation.__name__}Model", (ProtocolMachine,), namespace)


def _name(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    name = getattr(ref, "name", None)
    return name if isinstance(name, str) else input_name(ref)


def _send_rule(input: str, states: list[str]) -> Any:
    def send(self: ProtocolMachine, data: st.DataObject) -> None:
        self.send(input, data)

    send.__name__ = f"send_{input}"
    return precondition(lambda self: self.open and self.model in states)(
        rule(data=st.data())(send)
    )


# -- coverage and paths ---------------------------------------------------------------------


def transitions(protocol: type) -> set[tuple[str, str, str]]:
    """Every transition of the diagram a test can drive: (source, input, target)."""
    diagram = _Diagram(protocol)
    return {
        (s.source, s.input, s.target)
        for state in diagram.states
        for s in diagram.steps_from(state)
    }


def check_protocol(
    implementation: type,
    *,
    require_coverage: bool = False,
    settings: Any = None,
    **options: Any,
) -> set[tuple[str, str, str]]:
    """Run :func:`protocol_state_machine` (Hypothesis ``settings``, default: the active
    profile's) and return the transitions it never exercised; with ``require_coverage``
    that set must be empty."""
    machine = protocol_state_machine(implementation, **options)
    run: Any = run_state_machine_as_test  # typed in some Hypothesis releases, not in others
    with _explained(implementation):
        run(machine, settings=settings)
    missed = transitions(options.get("spec") or implementation) - machine.covered
    if require_coverage and missed:
        listed = ", ".join(f"{s} --{i}--> {t}" for s, i, t in sorted(missed))
        raise AssertionError(
            f"transitions never exercised: {listed} (when frames for an input are hard to "
            "generate, pass frames={Commands.input: strategy}; more examples may help too)"
        )
    return missed


def shortest_paths(protocol: type) -> list[Path]:
    """A shortest step sequence from the initial state to every state and through every
    transition (breadth first, so timeouts count as one step like any input)."""
    diagram = _Diagram(protocol)
    reach: dict[str, tuple[Step, ...]] = {diagram.initial: ()}
    queue = deque([diagram.initial])
    while queue:
        state = queue.popleft()
        for step in diagram.steps_from(state):
            if step.target not in reach:
                reach[step.target] = (*reach[state], step)
                queue.append(step.target)
    paths = [Path(f"state {s}", reach[s]) for s in sorted(reach)]
    for state in sorted(reach):
        for step in diagram.steps_from(state):
            paths.append(Path(str(step), (*reach[state], step)))
    return paths


def check_path(implementation: type, path: Path, *, settings: Any = None, **options: Any) -> None:
    """Drive ``implementation`` along ``path`` (frames generated by Hypothesis, with
    ``settings``, default: the active profile's) and check every step lands where the
    diagram says."""
    machine = protocol_state_machine(implementation, **options)

    @given(st.data())
    def walk(data: st.DataObject) -> None:
        run = machine()
        for step in path.steps:
            assert run.model == step.source
            if step.kind == "frame":
                run.send(step.input, data)
            elif step.kind == "timeout":
                run.wait()
            else:
                run.call(step.input)
            run.implementation_follows_the_diagram()

    with _explained(implementation):
        (walk if settings is None else settings(walk))()


def check_chunking(
    implementation: type, *, factory: Any = None, max_steps: int = 8, **options: Any
) -> None:
    """Check that what ``implementation`` does with a session does not depend on how the
    session's bytes are cut into reads: a walk on the diagram (frames generated as in
    :func:`protocol_state_machine`, each sent in one read) is replayed on a new connection
    in arbitrary reads, which must write the same bytes and end in the same state."""
    machine = protocol_state_machine(implementation, factory=factory, **options)

    @given(st.data())
    def replay(data: st.DataObject) -> None:
        walk = machine()
        wire = bytearray()
        for _ in range(data.draw(st.integers(1, max_steps), label="steps")):
            inputs = sorted(walk.diagram.producible(walk.model))
            if not walk.open or not inputs:
                break
            wire += walk.send(data.draw(st.sampled_from(inputs), label="input"), data, whole=True)
        first = walk.protocol
        again = _connect(implementation, factory, [])
        reads = data.draw(chunkings(bytes(wire)), label="reads")
        for chunk in reads:
            again.dataReceived(chunk)
        for what in ("value", "disconnecting"):
            ours, theirs = getattr(again.transport, what), getattr(first.transport, what)
            if what == "value":
                ours, theirs = ours(), theirs()
            assert ours == theirs, f"{what} differs when {bytes(wire)!r} is read as {reads!r}"
        assert again.machine_state == first.machine_state, (
            f"{bytes(wire)!r} read as {reads!r}: state differs"
        )

    with _explained(implementation):
        replay()


@contextmanager
def _explained(implementation: type) -> Iterator[None]:
    """Say what to do when Hypothesis gives up generating frames: most were refused by a
    route's converter (which validates the arguments) or by the grammar."""
    try:
        yield
    except FailedHealthCheck as error:
        raise FailedHealthCheck(
            f"{error}\n\nstatewire: the frames generated for {implementation.__name__} were "
            "mostly refused by a route's converter or by the state's grammar. Pass "
            "frames={Commands.input: strategy} with a strategy of frames the route accepts "
            "(e.g. st.builds(b'SET %b %d'.__mod__, ...)), or annotate the input's int "
            "arguments as int so that numbers are generated for them."
        ) from None
