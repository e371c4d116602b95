"""The compiled dispatch behaves exactly like automat's own machine.

These tests are the gate for raising the automat version pinned in ``pyproject.toml``:
``statewire.machine._automat`` reads automat's internals, and a release that changes them
must fail here. Two levels, for both automat styles:

* the machine: statewire's compiled dispatch against automat's own, on generated sequences
  of input calls (including outputs that call inputs reentrantly, outputs that raise, data
  states and refused inputs): same outputs in the same order, same states, same errors.
  For ``MethodicalMachine`` the machines are random too: random signatures of inputs and
  outputs (automat filters the arguments each output gets), collectors, tracers,
  serializers, calls with wrong arguments;
* the protocol: a declared protocol fed bytes under any chunking, against a naive reference
  built from automat's own machine and construct's own parser (cut one frame with the
  current state's grammar, route it, call the input, repeat): same outputs, same refusals,
  same final state, same bytes left over. For ``MethodicalMachine``, user code also calls
  the inputs directly between reads: the compiled frame path and those calls share one
  current state.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from automat import MethodicalMachine, NoTransition, TypeMachineBuilder
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.framing import FramingError
from statewire.machine import (
    Observer,
    RemoteProtocolError,
    TransitionCallback,
    UnexpectedInput,
    by_key,
    by_verb,
    observe,
    unobserve,
)
from statewire.machine._automat import MethodicalStyle, TypedStyle
from statewire.testing.memory import StringTransport
from statewire.testing.strategies import chunkings


class Inputs(Protocol):
    def echo(self, word: bytes) -> None: ...
    def go(self, size: int) -> None: ...
    def body(self, data: bytes) -> None: ...
    def flip(self) -> None: ...
    def chain(self) -> None: ...
    def unknown(self, line: bytes) -> None: ...
    def ping(self) -> None: ...


class Core(MachineProtocol):
    """What the outputs use: a log of events and ``send``."""

    sends = line(b"\r\n")

    def note(self, *event: object) -> None:
        self.events.append(event)


@dataclass
class Body:
    size: int


builder = TypeMachineBuilder(Inputs, Core)
command = builder.state("command")
alternate = builder.state("alternate")
receiving = builder.state("receiving", lambda machine, core, size: Body(size))
pinged = builder.state("pinged")


@command.upon(Inputs.ping).to(pinged)
def ping(machine: Inputs, core: Core) -> None:
    core.note("ping")


@pinged.upon(Inputs.echo).to(command)
def pong(machine: Inputs, core: Core, word: bytes) -> None:
    core.note("pong", word)


@command.upon(Inputs.echo).loop()
def echo(machine: Inputs, core: Core, word: bytes) -> None:
    core.note("echo", word)
    core.send(b"ECHO " + word)


@command.upon(Inputs.go).to(receiving)
def go(machine: Inputs, core: Core, size: int) -> None:
    core.note("go", size)


@alternate.upon(Inputs.go).to(receiving)
def go_alternate(machine: Inputs, core: Core, size: int) -> None:
    core.note("go from alternate", size)


@receiving.upon(Inputs.body).to(command)
def body(machine: Inputs, core: Core, data: Body, payload: bytes) -> None:
    core.note("body", data.size, payload)


@command.upon(Inputs.flip).to(alternate)
def flip(machine: Inputs, core: Core) -> None:
    core.note("flip to alternate")


@alternate.upon(Inputs.flip).to(command)
def flop(machine: Inputs, core: Core) -> None:
    core.note("flip to command")


@command.upon(Inputs.chain).loop()
def chain(machine: Inputs, core: Core) -> None:
    # reentrant: both inputs run after this output, in order
    machine.flip()
    machine.go(3)
    core.note("chain done")


@alternate.upon(Inputs.chain).loop()
def chain_alternate(machine: Inputs, core: Core) -> None:
    machine.echo(b"refused later")  # not accepted in alternate: NoTransition when it runs
    core.note("chain in alternate")


@command.upon(Inputs.unknown).loop()
def unknown(machine: Inputs, core: Core, text: bytes) -> None:
    core.note("unknown", text)


@alternate.upon(Inputs.unknown).loop()
def unknown_alternate(machine: Inputs, core: Core, text: bytes) -> None:
    core.note("unknown in alternate", text)


Machine = builder.build()


def _size(word: bytes) -> tuple[int]:
    size = int(word)
    if not 1 <= size <= 40:
        raise ValueError("size out of range")
    return (size,)


VERBS = {
    b"ECHO": Inputs.echo,
    b"GO": (Inputs.go, _size),
    b"FLIP": Inputs.flip,
    b"CHAIN": Inputs.chain,
    b"PING": Inputs.ping,
}
FRAMINGS: dict[Any, Any] = {
    command: line(b"\r\n", max_length=10_000),
    alternate: line(b"\n", max_length=10_000),
    receiving: lambda protocol, data: fixed(data.size),
    pinged: fixed(2),
}


class Declared(Core):
    machine = Machine
    framings = FRAMINGS
    routes = {
        command: by_verb(VERBS, unknown=Inputs.unknown),
        alternate: by_verb(VERBS, unknown=Inputs.unknown),
        receiving: Inputs.body,
        pinged: Inputs.echo,
    }
    close_on_error = False

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        if isinstance(error, UnexpectedInput):
            self.note("refused", error.state, error.input)
        else:
            self.note("unroutable", self.machine_state)

    def localError(self, error: Exception) -> None:
        self.note("local error", type(error).__name__)
        super().localError(error)


class Recorder:
    """A core for machines run outside any protocol."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.out = bytearray()

    def note(self, *event: object) -> None:
        self.events.append(event)

    def send(self, value: bytes) -> None:
        self.out += value + b"\r\n"


# -- level 1: the machine -------------------------------------------------------------------

CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("echo"), st.binary(max_size=3)),
        st.tuples(st.just("go"), st.integers(1, 5)),
        st.tuples(st.just("body"), st.binary(max_size=3)),
        st.tuples(st.just("flip")),
        st.tuples(st.just("chain")),
        st.tuples(st.just("unknown"), st.binary(max_size=3)),
        st.tuples(st.just("ping")),
    ),
    max_size=30,
)


def _drive(make: Any, calls: list[tuple[Any, ...]]) -> list[object]:
    core = Recorder()
    machine = make(core)
    trace: list[object] = []
    for name, *args in calls:
        try:
            result = getattr(machine, name)(*args)
            trace.append(("ok", result))
        except NoTransition as error:
            trace.append(("NoTransition", str(error)))
        trace.append(machine.__automat_transitioner__._state.name)
        trace.append(machine.__automat_data__)
    return [*trace, core.events, bytes(core.out)]


@given(CALLS)
def test_compiled_machine_behaves_as_automat(calls: list[tuple[Any, ...]]) -> None:
    style = TypedStyle(Machine)
    compiled = _drive(lambda core: style.new(core), calls)
    assert compiled == _drive(Machine, calls)


def test_reentrant_inputs_run_after_the_output_in_order() -> None:
    style = TypedStyle(Machine)
    for make in (Machine, style.new):
        core = Recorder()
        machine = make(core)
        machine.chain()
        assert core.events == [("chain done",), ("flip to alternate",), ("go from alternate", 3)]
        assert machine.__automat_transitioner__._state is receiving


# -- level 2: the protocol ------------------------------------------------------------------


def _route(state: Any, frame: bytes) -> tuple[str, tuple[Any, ...]] | None:
    """What ``by_verb`` does, written out plainly (``None``: unroutable)."""
    if state is receiving:
        return "body", (frame,)
    if state is pinged:
        return "echo", (frame,)
    verb, *rest = frame.split(b" ")
    words = tuple(w for w in rest if w)
    target = VERBS.get(verb)
    if target is None:
        return "unknown", (frame,)
    if isinstance(target, tuple):
        try:
            return target[0].__name__, target[1](*words)
        except (ValueError, TypeError):
            return None
    takes = len(inspect.signature(target).parameters) - 1
    return (target.__name__, words) if len(words) == takes else None


def reference(data: bytes) -> tuple[list[object], bytes, str, bytes | None]:
    """Frame ``data`` one frame at a time with construct's own parser and run automat's own
    machine: what the declared protocol must do."""
    core = Recorder()
    machine = Machine(core)
    pos = 0
    while True:
        state = machine.__automat_transitioner__._state
        grammar = FRAMINGS[state]
        if not hasattr(grammar, "parse"):
            grammar = grammar(None, machine.__automat_data__)
        try:
            frame = grammar.parse(data[pos:])
        except Exception:
            break  # no whole frame left
        pos += len(grammar.build(frame))
        routed = _route(state, frame)
        if routed is None:
            core.note("unroutable", state.name)
            continue
        name, args = routed
        try:
            Machine.__automat_automaton__.outputForInput(state, name)
        except NoTransition:
            core.note("refused", state.name, name)  # the peer's fault: state unchanged
            continue
        try:
            getattr(machine, name)(*args)
        except Exception as error:  # our own code's fault: the connection is aborted
            core.note("local error", type(error).__name__)
            return core.events, bytes(core.out), "aborted", None
    final = machine.__automat_transitioner__._state.name
    return core.events, bytes(core.out), final, data[pos:]


TOKENS = st.one_of(
    st.sampled_from(
        [
            *(b"ECHO hi", b"ECHO", b"GO 3", b"GO 12", b"GO x", b"GO 0", b"FLIP", b"CHAIN"),
            b"PING",
            b"HUH",
            b"",
        ]
    ),
    st.binary(max_size=12),
)
STREAMS = st.lists(st.tuples(TOKENS, st.sampled_from([b"\r\n", b"\n", b""])), max_size=25).map(
    lambda parts: b"".join(token + end for token, end in parts)
)


def declared(chunks: list[bytes]) -> tuple[list[object], bytes, str, bytes | None]:
    protocol = Declared()
    protocol.events = []
    transport = StringTransport()
    protocol.makeConnection(transport)
    for chunk in chunks:
        protocol.dataReceived(chunk)
    if transport.aborted:  # what was left unread then depends on the reads: not compared
        return protocol.events, transport.value(), "aborted", None
    buffered = protocol.machine_engine.buffered
    return protocol.events, transport.value(), protocol.machine_state, buffered


@given(st.data(), STREAMS)
def test_declared_protocol_behaves_as_the_plain_machine(
    data: st.DataObject, stream: bytes
) -> None:
    chunks = data.draw(chunkings(stream))
    assert declared(chunks) == reference(stream)


@pytest.mark.parametrize(
    "stream",
    [
        b"CHAIN\r\nabcFLIP\n",  # reentrant switch: bytes after CHAIN framed by fixed(3)
        b"GO 5\r\nhel\r\nECHO x\r\n",  # a body that contains the delimiter
        b"FLIP\r\nECHO no\nFLIP\nECHO yes\r\n",  # refused in alternate, accepted back in command
        b"FLIP\r\nCHAIN\nGO 2\nok",  # a postponed input refused by the state it runs in
        b"PING\r\nabECHO x\r\n",  # a plain frame route that leaves its state
    ],
)
def test_declared_protocol_edge_cases_one_byte_at_a_time(stream: bytes) -> None:
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    assert declared(one_by_one) == declared([stream]) == reference(stream)


# -- by_verb's fast path against its general path ------------------------------------------


class VerbInputs(Protocol):
    def get(self, key: bytes) -> None: ...
    def put(self, key: bytes, value: bytes = b"") -> None: ...
    def tags(self, *words: bytes) -> None: ...
    def size(self, n: int) -> None: ...
    def quit(self) -> None: ...
    def other(self, frame: bytes) -> None: ...


verbs = TypeMachineBuilder(VerbInputs, MachineProtocol)
serving = verbs.state("serving")
closed = verbs.state("closed")


def _record(name: str) -> Any:
    def output(machine: VerbInputs, core: Any, *args: Any) -> None:
        core.events.append((name, args))

    output.__name__ = name
    return output


serving.upon(VerbInputs.get).loop()(_record("get"))
serving.upon(VerbInputs.put).loop()(_record("put"))
serving.upon(VerbInputs.tags).loop()(_record("tags"))
serving.upon(VerbInputs.size).loop()(_record("size"))
serving.upon(VerbInputs.other).loop()(_record("other"))
serving.upon(VerbInputs.quit).to(closed)(_record("quit"))
closed.upon(VerbInputs.other).loop()(_record("after"))


class Verbs(MachineProtocol):
    machine = verbs.build()
    framings = {serving: line(b"\n", max_length=64), closed: line(b"\n", max_length=64)}
    routes = {
        serving: by_verb(
            {
                b"GET": VerbInputs.get,
                b"PUT": VerbInputs.put,
                b"TAGS": VerbInputs.tags,
                b"SIZE": (VerbInputs.size, lambda n: (int(n),)),
                b"QUIT": VerbInputs.quit,
            },
            unknown=VerbInputs.other,
        ),
        closed: VerbInputs.other,
    }
    close_on_error = False

    def remoteError(self, error: Any) -> None:
        self.events.append(("error", type(error).__name__))


class _EveryTransition(Observer):
    """An observer of transitions: a traced connection sends every frame by the general
    path (no loop or transition shortcut skips the tracer)."""

    def started(self, protocol: Any) -> TransitionCallback | None:
        return lambda old, input, new, frame: None


def _verb_run(
    general: bool, frames: list[bytes], kind: type[Verbs] = Verbs
) -> tuple[list[Any], str]:
    protocol = kind()
    protocol.events = []  # type: ignore[attr-defined]
    tracer = _EveryTransition()
    if general:  # every frame through the general path
        observe(tracer)
    try:
        protocol.makeConnection(StringTransport())
    finally:
        unobserve(tracer)
    protocol.dataReceived(b"".join(frame + b"\n" for frame in frames))
    return protocol.events, protocol.machine_state  # type: ignore[attr-defined]


_verb = st.sampled_from([b"GET", b"PUT", b"TAGS", b"SIZE", b"QUIT", b"NOPE", b"", b"7"])
_arg = st.sampled_from([b"k", b"7", b"x", b"v2", b""])  # b"": a doubled or trailing space
_command = st.builds(
    lambda verb, args: b" ".join([verb, *args]), _verb, st.lists(_arg, max_size=3)
)


@example([b"PUT k 7", b"GET  k", b"SIZE 12", b"SIZE x", b"TAGS", b"QUIT", b"GET k"])
@given(st.lists(_command, max_size=12))
def test_by_verb_fast_path_matches_the_general_path(frames: list[bytes]) -> None:
    """Commands with any verb, any number of words, doubled and trailing spaces, bad
    numbers: the fast path routes every one as the general path does (same outputs and
    arguments, same refusals, same final state)."""
    assert _verb_run(False, frames) == _verb_run(True, frames)


def _first_word(frame: bytes) -> bytes:
    return frame.split(b" ", 1)[0]


_KEYED = by_key(
    _first_word,
    {
        b"GET": (VerbInputs.get, lambda frame: (frame[4:],)),
        b"SIZE": (VerbInputs.size, lambda frame: (int(frame[5:]),)),
        b"QUIT": (VerbInputs.quit, lambda frame: ()),
    },
    unknown=VerbInputs.other,
)


class Keyed(Verbs):
    """The same machine routed ``by_key``, with an ``unknown`` input that loops (the fast
    path calls it straight away) in both states, next to inputs ``closed`` refuses."""

    routes = {serving: _KEYED, closed: _KEYED}


@example([b"GET k", b"NOPE x", b"SIZE 3", b"SIZE x", b"QUIT", b"NOPE", b"GET k", b"QUIT"])
@given(st.lists(_command, max_size=12))
def test_by_key_fast_path_matches_the_general_path(frames: list[bytes]) -> None:
    """Keys the table names and keys it does not (the ``unknown`` input, looping), before
    and after a state that refuses some inputs: the fast path routes every frame as the
    general path does."""
    assert _verb_run(False, frames, Keyed) == _verb_run(True, frames, Keyed)


# -- MethodicalMachine: random machines, compiled against automat's own ---------------------

#: each input's signature, and the output signatures automat accepts for it (an output takes
#: a subset of its input's argument names)
METHODICAL_INPUTS = {
    "a": ("self", ["self"]),
    "b": ("self, x", ["self", "self, x"]),
    "c": ("self, x, y=7", ["self", "self, x", "self, y", "self, y, x", "self, x, y=0"]),
    "d": ("self, *rest", ["self", "self, *more"]),
    "e": ("self, x, *, k=1", ["self", "self, x", "self, x, *, k", "self, *, k=5"]),
    "f": ("self, x, **extra", ["self", "self, **extra", "self, x, **extra"]),
}
#: calls of each input: fitting ones, keyword ones (automat filters arguments then), and
#: ones the input's signature refuses (a ``TypeError`` before anything moves)
METHODICAL_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("a", (), {}),
    ("a", (1,), {}),
    ("b", (1,), {}),
    ("b", (), {"x": 2}),
    ("b", (), {}),
    ("c", (1,), {}),
    ("c", (1, 2), {}),
    ("c", (), {"x": 1, "y": 3}),
    ("c", (1,), {"y": 4}),
    ("d", (), {}),
    ("d", (1, 2, 3), {}),
    ("e", (1,), {}),
    ("e", (1,), {"k": 2}),
    ("f", (1,), {}),
    ("f", (1,), {"z": 9}),
]
COLLECTORS: dict[str, Any] = {
    "list": list,
    "tuple": tuple,
    "last": lambda values: list(values)[-1:],
    "count": lambda values: ("collected", len(list(values))),
}


class Boom(Exception):
    """What an output raises on purpose."""


def _function(name: str, signature: str, body: str) -> Any:
    found: dict[str, Any] = {}
    exec(f"def {name}({signature}):\n    {body}\n", {}, found)
    return found[name]


class RandomBase:
    """What the generated outputs call: a log, and their action (note, raise, call an input
    reentrantly, at most two deep)."""

    actions: dict[str, tuple[Any, ...]]

    def __init__(self) -> None:
        self.log: list[object] = []
        self.nest = 0

    def output_ran(self, name: str, seen: dict[str, Any]) -> str:
        self.log.append((name, sorted(((k, v) for k, v in seen.items() if k != "self"), key=str)))
        action = self.actions[name]
        if action[0] == "raise":
            raise Boom(name)
        if action[0] == "call" and self.nest < 2:
            _, (input_name, args, kwargs) = action
            self.nest += 1
            try:
                getattr(self, input_name)(*args, **kwargs)
            finally:
                self.nest -= 1
        return name

    def tracer(self, old: str, input: str, new: str) -> Any:
        self.log.append(("trace", old, input, new))
        return lambda output: self.log.append(("traced", output))


#: (number of states, {(state, input): (new state, [(output signature, action)], collector)})
MethodicalSpec = tuple[int, dict[tuple[int, str], tuple[int, list[Any], str]]]
_actions = st.one_of(
    st.just(("note",)),
    st.just(("raise",)),
    st.tuples(st.just("call"), st.sampled_from(METHODICAL_CALLS)),
)


@st.composite
def methodical_specs(draw: st.DrawFn) -> MethodicalSpec:
    count = draw(st.integers(1, 3))
    transitions = {}
    for state in range(count):
        for name, (_, outputs) in METHODICAL_INPUTS.items():
            if draw(st.booleans()):
                made = draw(st.lists(st.tuples(st.sampled_from(outputs), _actions), max_size=3))
                target = draw(st.integers(0, count - 1))
                transitions[state, name] = (target, made, draw(st.sampled_from(list(COLLECTORS))))
    return count, transitions


def build_methodical(spec: MethodicalSpec) -> type:
    """A class with a ``MethodicalMachine`` made from ``spec`` (each call: a new one)."""
    count, transitions = spec
    machine = MethodicalMachine()
    states = [
        machine.state(initial=i == 0, serialized=f"s{i}")(_function(f"s{i}", "self", "pass"))
        for i in range(count)
    ]
    inputs = {
        name: machine.input()(_function(name, signature, "pass"))
        for name, (signature, _) in METHODICAL_INPUTS.items()
    }
    actions: dict[str, tuple[Any, ...]] = {}
    for (state, name), (target, outputs, collector) in sorted(transitions.items()):
        made = []
        for signature, action in outputs:
            output = f"o{len(actions)}"
            actions[output] = action
            body = f"return self.output_ran({output!r}, locals())"
            made.append(machine.output()(_function(output, signature, body)))
        states[state].upon(
            inputs[name], enter=states[target], outputs=made, collector=COLLECTORS[collector]
        )
    namespace: dict[str, Any] = {
        "machine": machine,
        "actions": actions,
        "save": machine.serializer()(lambda self, state: state),
        "restore": machine.unserializer()(lambda self, state: state),
        "setTrace": machine._setTrace,
        **inputs,
    }
    return type("Random", (RandomBase,), namespace)


METHODICAL_OPS = st.lists(
    st.one_of(
        st.sampled_from(METHODICAL_CALLS).map(lambda call: ("input", *call)),
        st.tuples(st.just("trace"), st.booleans()),
        st.tuples(st.just("restore"), st.sampled_from(["s0", "s1", "s2"])),
    ),
    max_size=25,
)


def _run_methodical(cls: type, ops: list[tuple[Any, ...]]) -> list[object]:
    machine = cls()
    trace: list[object] = []
    for op in ops:
        try:
            if op[0] == "input":
                _, name, args, kwargs = op
                result = getattr(machine, name)(*args, **kwargs)
            elif op[0] == "trace":
                result = machine.setTrace(machine.tracer if op[1] else None)
            else:
                result = machine.restore(op[1])
            trace.append(("ok", result))
        except NoTransition as error:
            trace.append(("NoTransition", error.state.method.__name__, error.symbol._name()))
        except Exception as error:
            trace.append((type(error).__name__, str(error)))
        trace.append(machine.save())
    return [*trace, machine.log]


@settings(max_examples=300)
@given(methodical_specs(), METHODICAL_OPS)
def test_compiled_methodical_machine_behaves_as_automat(
    spec: MethodicalSpec, ops: list[tuple[Any, ...]]
) -> None:
    """Random machines, random calls: return values (collectors), outputs in order with the
    arguments automat hands each, reentrant inputs, outputs that raise, refused inputs,
    wrong arguments, tracers, serializers: all as automat's own dispatch."""
    compiled = build_methodical(spec)
    MethodicalStyle(compiled.machine, compiled)  # type: ignore[attr-defined]
    assert _run_methodical(compiled, ops) == _run_methodical(build_methodical(spec), ops)


# -- MethodicalMachine: a declared protocol against automat's own machine ---------------------


def methodical_machine(base: type) -> type:
    """The machine of level 2 in automat's classic style, with more: a state whose every
    frame loops on one output (the compiled direct path) until that output calls an input
    that leaves, and an output that raises. Reentrant inputs run nested, as automat runs
    them. Built on ``base``: the declared protocol's core, or ``Recorder`` for the reference.
    """

    class Methodical(base):  # type: ignore[valid-type,misc]
        _m = MethodicalMachine()
        size = 0

        @_m.state(initial=True, serialized="command")
        def command(self) -> None:
            "Reading commands."

        @_m.state(serialized="alternate")
        def alternate(self) -> None:
            "Reading commands, LF-terminated."

        @_m.state(serialized="receiving")
        def receiving(self) -> None:
            "Reading a body."

        @_m.state(serialized="pinged")
        def pinged(self) -> None:
            "Reading two bytes."

        @_m.state(serialized="collecting")
        def collecting(self) -> None:
            "Reading items until b'end'."

        @_m.state(serialized="stamping")
        def stamping(self) -> None:
            "Every line is an input that needs a keyword: no frame fits it."

        @_m.state(serialized="gathering")
        def gathering(self) -> None:
            "Reading pieces until b'end' (an input taking any number of arguments)."

        @_m.input()
        def echo(self, word: bytes) -> None:
            "ECHO word"

        @_m.input()
        def go(self, size: int) -> None:
            "GO size"

        @_m.input()
        def body(self, payload: bytes) -> None:
            "A body."

        @_m.input()
        def flip(self) -> None:
            "FLIP"

        @_m.input()
        def chain(self) -> None:
            "CHAIN"

        @_m.input()
        def unknown(self, text: bytes) -> None:
            "Any other line."

        @_m.input()
        def ping(self) -> None:
            "PING"

        @_m.input()
        def collect(self) -> None:
            "COLLECT"

        @_m.input()
        def item(self, line: bytes) -> None:
            "An item."

        @_m.input()
        def finish(self) -> None:
            "No more items."

        @_m.input()
        def boom(self) -> None:
            "BOOM"

        @_m.input()
        def gather(self) -> None:
            "GATHER"

        @_m.input()
        def stamp(self) -> None:
            "STAMP"

        @_m.input()
        def stamped(self, line: bytes, *, tag: bytes) -> None:
            "A line, and a tag no frame gives: automat raises TypeError."

        @_m.input()
        def piece(self, *parts: bytes) -> None:
            "A piece."

        @_m.output()
        def _echo(self, word: bytes) -> None:
            self.note("echo", word)
            self.send(b"ECHO " + word)

        @_m.output()
        def _pong(self, word: bytes) -> None:
            self.note("pong", word)

        @_m.output()
        def _go(self, size: int) -> None:
            self.note("go", size)
            self.size = size

        @_m.output()
        def _go_alternate(self, size: int) -> None:
            self.note("go from alternate", size)
            self.size = size

        @_m.output()
        def _body(self, payload: bytes) -> None:
            self.note("body", self.size, payload)

        @_m.output()
        def _flip(self) -> None:
            self.note("flip to alternate")

        @_m.output()
        def _flop(self) -> None:
            self.note("flip to command")

        @_m.output()
        def _chain(self) -> None:
            self.flip()  # nested: runs now, in automat's classic style
            self.go(3)
            self.note("chain done")

        @_m.output()
        def _chain_alternate(self) -> None:
            try:
                self.echo(b"refused")
            except NoTransition:
                self.note("refused inside")

        @_m.output()
        def _unknown(self, text: bytes) -> None:
            self.note("unknown", text)

        @_m.output()
        def _unknown_alternate(self, text: bytes) -> None:
            self.note("unknown in alternate", text)

        @_m.output()
        def _ping(self) -> None:
            self.note("ping")

        @_m.output()
        def _collect(self) -> None:
            self.note("collect")

        @_m.output()
        def _item(self, line: bytes) -> None:
            self.note("item", line)
            if line == b"end":
                self.finish()
                self.note("after finish")

        @_m.output()
        def _finished(self) -> None:
            self.note("finished")

        @_m.output()
        def _boom(self) -> None:
            raise ValueError("boom")

        @_m.output()
        def _stamped(self, line: bytes) -> None:
            self.note("stamped", line)

        @_m.output()
        def _piece(self, *parts: bytes) -> None:
            self.note("piece", parts)
            if parts == (b"end",):
                self.finish()

        command.upon(echo, enter=command, outputs=[_echo])
        pinged.upon(echo, enter=command, outputs=[_pong])
        command.upon(go, enter=receiving, outputs=[_go])
        alternate.upon(go, enter=receiving, outputs=[_go_alternate])
        receiving.upon(body, enter=command, outputs=[_body])
        command.upon(flip, enter=alternate, outputs=[_flip])
        alternate.upon(flip, enter=command, outputs=[_flop])
        command.upon(chain, enter=command, outputs=[_chain])
        alternate.upon(chain, enter=alternate, outputs=[_chain_alternate])
        command.upon(unknown, enter=command, outputs=[_unknown])
        alternate.upon(unknown, enter=alternate, outputs=[_unknown_alternate])
        command.upon(ping, enter=pinged, outputs=[_ping])
        command.upon(collect, enter=collecting, outputs=[_collect])
        collecting.upon(item, enter=collecting, outputs=[_item])
        collecting.upon(finish, enter=command, outputs=[_finished])
        command.upon(boom, enter=command, outputs=[_boom])
        command.upon(gather, enter=gathering, outputs=[])
        command.upon(stamp, enter=stamping, outputs=[])
        stamping.upon(stamped, enter=stamping, outputs=[_stamped])
        gathering.upon(piece, enter=gathering, outputs=[_piece])
        gathering.upon(finish, enter=command, outputs=[_finished])

        @_m.serializer()
        def save(self, state: str) -> str:
            return state

        setTrace = _m._setTrace

        def tracer(self, old: str, input: str, new: str) -> None:
            self.note("trace", old, input, new)

        verbs = {
            b"ECHO": echo,
            b"GO": (go, _size),
            b"FLIP": flip,
            b"CHAIN": chain,
            b"PING": ping,
            b"COLLECT": collect,
            b"BOOM": boom,
            b"GATHER": gather,
            b"STAMP": stamp,
        }
        routes: dict[str, Any] = {
            "command": by_verb(verbs, unknown=unknown),
            "alternate": by_verb(verbs, unknown=unknown),
            "receiving": body,
            "pinged": echo,
            "collecting": item,
            "gathering": piece,
            "stamping": stamped,
        }
        framings: dict[str, Any] = {
            "command": line(b"\r\n", max_length=10_000),
            "alternate": line(b"\n", max_length=10_000),
            "receiving": lambda protocol, data: fixed(protocol.size),
            "pinged": fixed(2),
            "collecting": line(b"\n", max_length=10_000),
            "gathering": line(b"\n", max_length=10_000),
            "stamping": line(b"\n", max_length=10_000),
        }

    return Methodical


class Reporting(Core):
    """A core that notes its errors, as ``Declared`` does, and keeps the connection."""

    close_on_error = False

    def remoteError(self, error: RemoteProtocolError | FramingError) -> None:
        if isinstance(error, UnexpectedInput):
            self.note("refused", error.state, error.input)
        else:
            self.note("unroutable", self.machine_state)

    def localError(self, error: Exception) -> None:
        self.note("local error", type(error).__name__)
        super().localError(error)


_MethodicalCore = methodical_machine(Reporting)


class DeclaredMethodical(_MethodicalCore):  # type: ignore[valid-type,misc]
    machine = _MethodicalCore._m  # type: ignore[attr-defined]


class MethodicalReference:
    """automat's own dispatch, fed one frame at a time by construct's own parser."""

    def __init__(self) -> None:
        self.machine: Any = methodical_machine(Recorder)()
        self.data = b""
        self.aborted = False

    def route(self, state: str, frame: bytes) -> tuple[str, tuple[Any, ...]] | None:
        """What the declared routes do, written out plainly (``None``: unroutable)."""
        target = self.machine.routes[state]
        if not hasattr(target, "table"):
            return target._name(), (frame,)
        verb, *rest = frame.split(b" ")
        words = tuple(w for w in rest if w)
        found = self.machine.verbs.get(verb)
        if found is None:
            return "unknown", (frame,)
        if isinstance(found, tuple):
            try:
                return found[0]._name(), found[1](*words)
            except (ValueError, TypeError):
                return None
        takes = len(inspect.signature(found.method).parameters) - 1
        return (found._name(), words) if len(words) == takes else None

    def feed(self, data: bytes) -> None:
        self.data += data
        self.drain()

    def drain(self) -> None:
        machine = self.machine
        while not self.aborted:
            state = machine.save()
            grammar = machine.framings[state]
            if not hasattr(grammar, "parse"):
                grammar = grammar(machine, None)
            try:
                frame = grammar.parse(self.data)
            except Exception:
                return  # no whole frame yet
            self.data = self.data[len(grammar.build(frame)) :]
            routed = self.route(state, frame)
            if routed is None:
                machine.note("unroutable", state)
                continue
            name, args = routed
            try:
                getattr(machine, name)(*args)
            except NoTransition as error:
                if error.state.method.__name__ != state:
                    raise  # only the frame's own input is refused by the peer's fault
                machine.note("refused", state, name)
            except Exception as error:
                machine.note("local error", type(error).__name__)
                self.aborted = True


#: what happens to a connection: bytes arrive (whole, or a byte at a time), user code calls
#: an input directly, a tracer is set or cleared
METHODICAL_TOKENS = st.one_of(
    TOKENS,
    st.sampled_from(
        [b"COLLECT", b"GATHER", b"STAMP", b"end", b"it", b"BOOM", b"CHAIN", b"GO 2", b"PING"]
    ),
)
METHODICAL_STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("data"),
            st.tuples(METHODICAL_TOKENS, st.sampled_from([b"\r\n", b"\n", b""])).map(b"".join),
            st.booleans(),
        ),
        st.tuples(
            st.just("call"),
            st.sampled_from(
                [
                    *(("flip", ()), ("ping", ()), ("finish", ()), ("echo", (b"hi",))),
                    *(("go", (2,)), ("chain", ()), ("collect", ()), ("item", (b"end",))),
                ]
            ),
        ),
        st.tuples(st.just("trace"), st.booleans()),
    ),
    max_size=30,
)


def _methodical_steps(target: Any, steps: list[tuple[Any, ...]]) -> list[object]:
    """Run ``steps`` on a declared protocol (``feed`` is ``dataReceived``) or on the
    reference; what the peer and user code see."""
    machine = target.machine
    for step in steps:
        if step[0] == "data":
            _, data, bytewise = step
            for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
                target.feed(chunk)
        elif step[0] == "call":
            name, args = step[1]
            try:
                result = getattr(machine, name)(*args)
            except NoTransition:
                result = "refused"
            if isinstance(target, MethodicalReference):
                target.drain()  # the declared protocol frames at once what the state reads
            machine.note("direct", name, result)
        else:
            machine.setTrace(machine.tracer if step[1] else None)
        if target.aborted:
            break
    return machine.events  # type: ignore[no-any-return]


class _Fed:
    """A declared protocol driven like the reference."""

    def __init__(self) -> None:
        self.machine = DeclaredMethodical()
        self.machine.events = []
        self.transport = StringTransport()
        self.machine.makeConnection(self.transport)
        self.feed = self.machine.dataReceived

    @property
    def aborted(self) -> bool:
        return self.transport.aborted


@settings(max_examples=300)
@given(METHODICAL_STEPS)
def test_declared_methodical_protocol_behaves_as_automat(steps: list[tuple[Any, ...]]) -> None:
    """The compiled MethodicalMachine dispatch in a declared protocol (by_verb's fast path,
    the direct path of a one-output loop, inputs that leave the state from inside an output,
    outputs that raise) with user code calling the same inputs directly between reads and
    tracers set and cleared: one current state, the same outputs as automat's own dispatch
    fed frame by frame."""
    fed, reference = _Fed(), MethodicalReference()
    events = _methodical_steps(fed, steps)
    assert events == _methodical_steps(reference, steps)
    if not fed.transport.aborted:
        assert fed.machine.machine_state == reference.machine.save()
        assert fed.machine.machine_engine.buffered == reference.data


def test_methodical_reentrant_inputs_run_nested_as_in_automat() -> None:
    """Unlike ``TypeMachineBuilder``'s, a ``MethodicalMachine``'s input called from an
    output runs at once, inside it; compiled, too."""
    compiled = methodical_machine(Recorder)
    MethodicalStyle(compiled._m, compiled)  # type: ignore[attr-defined]
    for cls in (compiled, methodical_machine(Recorder)):
        machine = cls()
        assert machine.chain() == [None]  # the default collector: a list of output values
        assert machine.events == [
            ("flip to alternate",),
            ("go from alternate", 3),
            ("chain done",),
        ]
        assert machine.save() == "receiving"
