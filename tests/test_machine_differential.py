"""The compiled dispatch behaves exactly like automat's own machine.

Two levels:

* the machine: statewire's compiled runtime type against automat's own, on generated
  sequences of input calls (including outputs that call inputs reentrantly, data states and
  refused inputs): same outputs in the same order, same states, same errors;
* the protocol: a declared protocol fed bytes under any chunking, against a naive reference
  built from automat's own machine and construct's own parser (cut one frame with the
  current state's grammar, route it, call the input, repeat): same outputs, same refusals,
  same final state, same bytes left over.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from automat import NoTransition, TypeMachineBuilder
from hypothesis import example, given
from hypothesis import strategies as st

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.framing import FramingError
from statewire.machine import RemoteProtocolError, UnexpectedInput, by_verb
from statewire.machine._styles import TypedStyle
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
    buffered = protocol._sw_frames().buffered
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


def _verb_run(general: bool, frames: list[bytes]) -> tuple[list[Any], str]:
    protocol = Verbs()
    protocol.events = []  # type: ignore[attr-defined]
    protocol.makeConnection(StringTransport())
    if general:  # by_verb frames through the general path, as before the fast path
        plan = Verbs._sw_plan
        route = plan.routes[protocol._sw_state]
        handler = protocol._sw_handler

        def general_path(state: Any) -> Any:
            if plan.routes[state] is not route:
                return handler(state)
            return lambda frame: protocol._sw_keyed(route, plan.loops(state, route), frame)

        protocol._sw_handler = general_path  # type: ignore[method-assign]
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
