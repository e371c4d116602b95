"""Model-based tests of a declared client talking to a declared server over a real socket.

:mod:`statewire.testing.model` walks one protocol's diagram in memory. A conversation test
puts both ends of a protocol on a loopback TCP connection (127.0.0.1, a free port), on a
reactor of its own, and checks each end against its own diagram:

* the model walks the *server's* diagram. Each step sends a frame of an input the route of
  the model's server state produces: three times in four the first input on a shortest
  way to an edge the run has not made yet (so that a few runs make every edge within
  reach), else any, accepted or refused. The frame is drawn from the strategy the caller
  gives for that input (``frames={input: strategy}``), or generated from the state's route
  and grammar (:func:`statewire.testing.model.frames_for`); the input is the one the route
  makes of it;
* the frame goes through the *client*: the caller's ``send(client, input, frame)`` makes the
  client call that sends it (``argv -> client.call(*argv)``), and the model awaits its
  outcome, then waits for the server to have read every byte the client sent;
* the transitions each end made meanwhile are read from an
  :func:`~statewire.machine.observe` observer. The server's must start with the edge the
  diagram has for the input in the model's state, and every one must be an edge of the
  diagram (an input a transition feeds the machine itself, like an ``admitted`` after a
  good password, and the frames that came in the same request, like a memcached data
  block, follow it); the client's must be edges of the client's diagram, one at least (it
  read the reply). Each end must be in the state its chain of edges ends in;
* an input the model's state refuses (no edge) must come back as an error reply
  (``error_reply``), be reported as an :class:`~statewire.machine.UnexpectedInput`, and
  leave the server where it was;
* when the server's edges end in a state that reads nothing (``closed``: QUIT) both ends
  must see the connection end, the client through its loss edge (``lost``: ``replies ->
  closed``); the connection must not end anywhere else. The model then connects again.
  With ``close``, a step may also hang up from the client's side: each end must follow its
  loss edge.

Every edge either end makes is recorded: :func:`check_conversation` runs the machine and
returns the edges of each diagram made and never made, or, with ``require_coverage``,
fails unless every one was made but those the caller names unreachable (edges no client
call causes). Timeouts are not waited for (real time would make the test slow): their
edges are left out. Every wait is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from itertools import takewhile
from operator import attrgetter
from typing import Any, TypeVar

from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from statewire._reactor import Reactor
from statewire.machine import (
    ByKey,
    Graph,
    Route,
    ToInput,
    UnexpectedInput,
    graph_of,
    input_name,
    observe,
    unobserve,
)
from statewire.protocol import Factory
from statewire.testing.model import frames_for

#: the only address a conversation uses
HOST = "127.0.0.1"

#: an edge of a diagram: (source, input, target)
Edge = tuple[str, str, str]
#: ``connect(reactor, host, port)``: a connected client (``RespClient.connect``)
Connect = Callable[[Any, str, int], Awaitable[Any]]
#: ``send(client, input, frame)``: the client call that sends ``frame`` (of ``input``)
Send = Callable[[Any, str, Any], Awaitable[Any]]
#: ``close(client)``: end the connection from the client's side
Close = Callable[[Any], Awaitable[object]]

T = TypeVar("T")


@dataclass(frozen=True)
class Coverage:
    """The edges of each diagram a conversation test made, and those it never made."""

    server: frozenset[Edge]
    client: frozenset[Edge]
    server_missed: frozenset[Edge]
    client_missed: frozenset[Edge]
    #: the (state, input) pairs the server refused, each answered with an error reply
    refused: frozenset[tuple[str, str]] = frozenset()


@dataclass
class _Trace:
    """What one connection did, as its observer saw it."""

    protocol: Any
    edges: list[Edge] = field(default_factory=list)
    remote_errors: list[BaseException] = field(default_factory=list)
    #: bytes read
    received: int = 0
    stopped: bool = False


class _Recorder:
    """An observer keeping every declared connection's edges; wakes the model's waits."""

    def __init__(self, server_factory: Any) -> None:
        self.server_factory = server_factory
        self.traces: dict[int, _Trace] = {}
        #: the server's connections, in the order they started
        self.servers: list[_Trace] = []
        self.changed = asyncio.Event()

    def started(self, protocol: Any) -> Callable[[str, str, str, Any], None]:
        trace = self.traces[id(protocol)] = _Trace(protocol)
        if getattr(protocol, "factory", None) is self.server_factory:
            self.servers.append(trace)
        self.changed.set()

        def transition(old: str, input: str, new: str, frame: Any) -> None:
            trace.edges.append((old, input, new))
            self.changed.set()

        return transition

    def received(self, protocol: Any, size: int) -> None:
        trace = self.traces.get(id(protocol))
        if trace is not None:
            trace.received += size
            self.changed.set()

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        trace = self.traces.get(id(protocol))
        if trace is not None and not local:
            trace.remote_errors.append(error)

    def stopped(self, protocol: Any) -> None:
        trace = self.traces.get(id(protocol))
        if trace is not None:
            trace.stopped = True
            self.changed.set()

    def of(self, protocol: Any) -> _Trace:
        trace = self.traces.get(id(protocol))
        if trace is None or trace.protocol is not protocol:
            raise TypeError(f"{protocol!r} is not a declared connection started in this test")
        return trace

    async def until(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` holds (re-checked after every observed event)."""
        while not done():
            self.changed.clear()
            await self.changed.wait()


class _Diagram:
    """A diagram as the conversation reads it: edges by (state, input), routes."""

    def __init__(self, protocol: type, unreachable: frozenset[Edge] = frozenset()) -> None:
        self.graph: Graph = graph_of(protocol)
        #: edges no client call causes: a way never counts on them
        self.unreachable = unreachable
        self.table = {(t.source, t.input): t.target for t in self.graph.transitions}
        produced = {i for route in self.graph.routes.values() for i in route.inputs()}
        timeouts = {t.input_name for t in self.graph.timeouts.values()}
        #: the inputs a transition feeds the machine itself (no frame, no loss, no timer)
        self.internal = self.graph.inputs - produced - timeouts - {self.graph.lost}
        self._settled = {state: self._settle(state) for state in self.graph.states}

    def edges(self) -> set[Edge]:
        timeouts = {t.input_name for t in self.graph.timeouts.values()}
        return {(t.source, t.input, t.target) for t in self.graph.transitions} - {
            (t.source, t.input, t.target) for t in self.graph.transitions if t.input in timeouts
        }

    def numbers(self, input: str) -> list[bool] | None:
        """Per argument of ``input``, whether it is an ``int`` (None: cannot be told)."""
        parameters = self.graph.parameters.get(input)
        if parameters is None or any(p.kind is p.VAR_POSITIONAL for p in parameters):
            return None
        return [p.annotation in (int, "int") for p in parameters]

    def producible(self, state: str) -> set[str]:
        route = self.graph.routes.get(state)
        return set() if route is None else route.inputs()

    def reads(self, state: str) -> bool:
        return state in self.graph.routes

    def settled(self, state: str) -> frozenset[str]:
        """``state`` and where the internal inputs may take it from there."""
        return self._settled[state]

    def _settle(self, state: str) -> frozenset[str]:
        found, todo = {state}, [state]
        while todo:
            source = todo.pop()
            for input in self.internal:
                target = self.table.get((source, input))
                if (source, input, target) in self.unreachable:
                    continue
                if target is not None and target not in found:
                    found.add(target)
                    todo.append(target)
        return frozenset(found)

    def ways(self, state: str, moves: Callable[[str], list[str]]) -> dict[Edge, str]:
        """Each edge a way from ``state`` leads to, with the first of ``moves`` on the
        way; nearest first (breadth first), but the ways that start over come last: first
        those through no edge back to the initial state (RESET) nor out of the connection
        (QUIT, hanging up), then those through the former, then any; and a state's loops
        come before the edges out of it. Internal inputs may follow an edge: a way assumes
        they take it where it leads."""
        found: dict[Edge, str] = {}
        for allowed in (self._onwards, self.reads, lambda target: True):
            queue: deque[tuple[str, str | None]] = deque([(state, None)])
            seen = {state}
            while queue:
                source, first = queue.popleft()
                for input in sorted(moves(source), key=lambda i: self.table[source, i] != source):
                    target = self.table[source, input]
                    found.setdefault((source, input, target), first or input)
                    if not allowed(target):
                        continue
                    # where nothing is read, the model connects again
                    settled = self.settled(target if self.reads(target) else self.graph.initial)
                    for after in sorted(settled - seen):
                        if self.reads(after):
                            seen.add(after)
                            queue.append((after, first or input))
        return found

    def _onwards(self, target: str) -> bool:
        return self.reads(target) and target != self.graph.initial

    def follow(self, start: str, edges: list[Edge], who: str) -> str:
        """The state a chain of ``edges`` from ``start`` ends in, each checked against the
        diagram."""
        state = start
        for old, input, new in edges:
            assert old == state, f"{who} left {old!r} by {input!r}, but was in {state!r}"
            assert self.table.get((old, input)) == new, (
                f"{who} went {old} --{input}--> {new}, not an edge of its diagram"
            )
            state = new
        return state


def _routed(route: Route, frame: Any) -> str | None:
    """The input ``route`` turns ``frame`` into (None: none, the frame is unroutable)."""
    if isinstance(route, ToInput):
        return route.input
    if not isinstance(route, ByKey):
        return None
    try:
        entry = route.table.get(route.key(frame))
    except Exception:
        return None
    return route.unknown if entry is None else entry[0]


class ConversationMachine(RuleBasedStateMachine):
    """Base of the machines :func:`conversation_state_machine` makes."""

    make_factory: Callable[[], Any]
    connect: Connect
    send_frame: Send
    close: Close | None
    connection_of: Callable[[Any], Any]
    frames: Mapping[str, st.SearchStrategy[Any]]
    error_reply: type[BaseException] | tuple[type[BaseException], ...]
    timeout: float
    #: server edges no client call causes: neither sought nor their inputs sent
    unreachable: frozenset[Edge]
    server_diagram: _Diagram
    client_diagram: _Diagram
    #: the ways from each state (:meth:`_Diagram.ways`), made when first asked
    ways: dict[str, dict[Edge, str]]
    #: edges made, across every run of this class
    covered_server: set[Edge]
    covered_client: set[Edge]
    #: (state, input) refused as the diagram says, across every run of this class
    refused: set[tuple[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.factory = self.make_factory()
        self.recorder = _Recorder(self.factory)
        self.connected = False
        #: the server's edges this run made, or gave up on: :meth:`step` seeks the others
        self.made: set[Edge] = set(self.unreachable)
        #: the edge :meth:`step` seeks, and for how many moves it has
        self.goal: Edge | None = None
        self.pursuit = 0
        self.loop = asyncio.new_event_loop()
        self.reactor = Reactor()
        observe(self.recorder)
        try:
            self.port = self._run(self._listen(), "listening")
            self.reconnect()
        except BaseException:
            self.teardown()
            raise

    # -- the loop --------------------------------------------------------------------------

    def _run(self, step: Awaitable[T], what: str) -> T:
        """Run ``step`` on the test's loop, for ``timeout`` seconds at most."""
        try:
            return self.loop.run_until_complete(asyncio.wait_for(step, self.timeout))
        except asyncio.TimeoutError:
            raise AssertionError(f"{what}: nothing after {self.timeout} s") from None

    async def _listen(self) -> int:
        port = self.reactor.listenTCP(0, self.factory, interface=HOST)
        await port.ready
        address: Any = port.getHost()  # an IPv4Address: it listens on HOST
        number: int = address.port
        return number

    def teardown(self) -> None:
        try:
            self._run(self.reactor.shutdown(), "closing the connections")
        finally:
            unobserve(self.recorder)
            self.loop.close()

    # -- one connection --------------------------------------------------------------------

    def reconnect(self) -> None:
        """Connect a client; the server's connection starts in its initial state (and
        follows what it feeds itself, an ``admitted`` when no password is needed)."""
        self._run(self._connect(), "connecting")

    async def _connect(self) -> None:
        known = len(self.recorder.servers)
        self.client = await self.connect(self.reactor, HOST, self.port)
        self.client_trace = self.recorder.of(self.connection_of(self.client))
        await self.recorder.until(lambda: len(self.recorder.servers) > known)
        self.server_trace = self.recorder.servers[known]
        self.connected = True
        self.server_state = self._server_follows(self.server_diagram.graph.initial, 0)
        self.client_state = self._client_follows(self.client_diagram.graph.initial, 0)

    def _server_follows(self, start: str, mark: int) -> str:
        edges = self.server_trace.edges[mark:]
        end = self.server_diagram.follow(start, edges, "the server")
        self.covered_server.update(edges)
        self.made.update(edges)
        actual = self.server_trace.protocol.machine_state
        assert actual == end, f"the server is in {actual!r}, its diagram says {end!r}"
        return end

    def _client_follows(self, start: str, mark: int) -> str:
        edges = self.client_trace.edges[mark:]
        end = self.client_diagram.follow(start, edges, "the client")
        self.covered_client.update(edges)
        actual = self.connection_of(self.client).machine_state
        assert actual == end, f"the client is in {actual!r}, its diagram says {end!r}"
        return end

    async def _both_stopped(self) -> None:
        await self.recorder.until(lambda: self.server_trace.stopped and self.client_trace.stopped)

    def _ended(self, server_mark: int, client_mark: int) -> None:
        """Both ends lost the connection: each followed its diagram to the end."""
        self._run(self._both_stopped(), "waiting for both ends to see the connection end")
        self.server_state = self._server_follows(self.server_state, server_mark)
        self.client_state = self._client_follows(self.client_state, client_mark)
        lost = self.client_diagram.graph.lost
        assert lost is None or (self.client_state, lost) not in self.client_diagram.table, (
            f"the client's connection ended, but its machine stayed in {self.client_state!r}"
        )
        self.connected = False

    # -- an exchange -----------------------------------------------------------------------

    def exchange(self, input: str, data: st.DataObject) -> None:
        """Send a frame of ``input`` through the client and check both ends."""
        state = self.server_state
        route = self.server_diagram.graph.routes[state]
        strategy = self.frames.get(input)  # never bool() a strategy: Hypothesis warns
        if strategy is None:  # the kit's own, from the grammar the server frames with now
            framer = self.server_trace.protocol.machine_engine.framer()
            numbers = self.server_diagram.numbers(input)
            strategy = frames_for(route, input, framer.grammar, dict(framer.context), numbers)
        frame = data.draw(strategy, label=f"{input} frame")
        routed = _routed(route, frame)
        assume(routed is not None)
        assert routed is not None
        target = self.server_diagram.table.get((state, routed))
        server_mark, client_mark = len(self.server_trace.edges), len(self.client_trace.edges)
        errors = len(self.server_trace.remote_errors)
        error = self._run(self._call(routed, frame), f"the reply to {routed} {frame!r}")
        # a reply may come before the request is all read (an item too large is refused
        # from its line, its block dropped after): the server's state settles once it is
        self._run(self._all_read(), f"the server reading all of {routed} {frame!r}")
        what = f"{routed} {frame!r} in {state!r}"
        if target is None:
            assert isinstance(error, self.error_reply), (
                f"{what} is refused by the diagram: expected an error reply, got {error!r}"
            )
            assert self.server_trace.edges[server_mark:] == [], (
                f"{what} is refused by the diagram, yet the server went "
                f"{self.server_trace.edges[server_mark:]}"
            )
            refusals = self.server_trace.remote_errors[errors:]
            assert any(
                isinstance(e, UnexpectedInput) and input_name(e.input) == routed for e in refusals
            ), f"{what} is refused by the diagram, but the server did not refuse it: {refusals}"
            self.refused.add((state, routed))
        else:
            assert error is None or isinstance(error, self.error_reply), (
                f"{what}: the client call failed with {error!r}"
            )
            made = self.server_trace.edges[server_mark : server_mark + 1]
            assert made == [(state, routed, target)], (
                f"{what}: the diagram says {state} --{routed}--> {target}, the server made {made}"
            )
        lost = self.server_diagram.graph.lost
        made = list(takewhile(lambda edge: edge[1] != lost, self.server_trace.edges[server_mark:]))
        end = self.server_diagram.follow(state, made, "the server")
        if not self.server_diagram.reads(end):  # the diagram says: the server hangs up
            self._ended(server_mark, client_mark)
            return
        ended = self.server_trace.stopped or len(made) < len(self.server_trace.edges) - server_mark
        assert not (ended or self.client_trace.stopped), (
            f"after {what} the connection ended, though the server's diagram reads on in "
            f"{end!r} (the server went {self.server_trace.edges[server_mark:]}, the client "
            f"{self.client_trace.edges[client_mark:]})"
        )
        self.server_state = self._server_follows(state, server_mark)
        assert len(self.client_trace.edges) > client_mark, (
            f"after {what} the client's machine read no reply"
        )
        self.client_state = self._client_follows(self.client_state, client_mark)

    async def _all_read(self) -> None:
        """Return once the server has read every byte the client sent (or has stopped);
        at once when the client's transport does not count what it sends."""
        transport = getattr(self.connection_of(self.client), "transport", None)
        trace = self.server_trace

        def read_all() -> bool:
            sent = getattr(transport, "bytes_sent", None)
            return not isinstance(sent, int) or trace.received >= sent or trace.stopped

        await self.recorder.until(read_all)

    async def _call(self, input: str, frame: Any) -> BaseException | None:
        try:
            await self.send_frame(self.client, input, frame)
        except Exception as error:
            return error
        return None

    def hang_up(self) -> None:
        """End the connection from the client's side: each end follows its loss edge."""
        assert self.close is not None
        state, lost = self.server_state, self.server_diagram.graph.lost
        server_mark, client_mark = len(self.server_trace.edges), len(self.client_trace.edges)
        self._run(self.close(self.client), "closing the client")
        self._ended(server_mark, client_mark)
        target = None if lost is None else self.server_diagram.table.get((state, lost))
        if target is not None:
            made = self.server_trace.edges[server_mark : server_mark + 1]
            assert made == [(state, lost, target)], (
                f"the client hung up: the diagram says {state} --{lost}--> {target}, "
                f"the server made {made}"
            )

    def _moves(self, state: str) -> list[str]:
        """What the model can do in ``state`` that the diagram accepts: send a frame of
        an input, or hang up (the loss input's name)."""
        diagram, lost = self.server_diagram, self.server_diagram.graph.lost
        moves = sorted(i for i in diagram.producible(state) if (state, i) in diagram.table)
        if self.close is not None and lost is not None and (state, lost) in diagram.table:
            moves.append(lost)
        return moves

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """One move (the only rule: Hypothesis's swarm testing, which turns rules off for
        a run, cannot leave a run that does nothing). Not connected: connect. Else, three
        times in four, the first move of a shortest way to an edge this run has not made yet
        (drawn at random; so that a few runs make every edge within the client's reach);
        otherwise a frame of any input the state's route produces, accepted or refused, or
        (with ``close``) hanging up."""
        if not self.connected:
            self.reconnect()
            return
        state, move = self.server_state, None
        if data.draw(st.integers(0, 3), label="towards an edge not made (not 0)") != 0:
            move = self._towards_goal(state, data)
        lost = self.server_diagram.graph.lost
        if move is None:
            table = self.server_diagram.table
            moves = sorted(
                i
                for i in self.server_diagram.producible(state)
                if (state, i, table.get((state, i))) not in self.unreachable
            )
            if self.close is not None and lost is not None:
                moves.append(lost)
            move = data.draw(st.sampled_from(moves), label="move")
        if move == lost and self.close is not None:
            self.hang_up()
        else:
            self.exchange(move, data)

    def _towards_goal(self, state: str, data: st.DataObject) -> str | None:
        diagram = self.server_diagram
        # a way assumes internal inputs take it where they may (RESP's ``admitted`` may
        # follow RESET at once): a goal still not made after as many moves as the diagram
        # has edges is given up for this run
        if self.goal is not None and self.goal not in self.made:
            self.pursuit += 1
            if self.pursuit > len(diagram.table):
                self.made.add(self.goal)
        ways = self.ways.get(state)
        if ways is None:  # the same in every run: made once per state
            ways = self.ways[state] = diagram.ways(state, self._moves)
        if self.goal is None or self.goal in self.made:
            # nearest first: what Hypothesis draws most, and shrinks towards; internal
            # edges are not sought (no move causes them: they follow one)
            left = [e for e in ways if e not in self.made and e[1] not in diagram.internal]
            if not left:
                return None
            self.goal, self.pursuit = data.draw(st.sampled_from(left), label="edge sought"), 0
        return ways.get(self.goal)

    @invariant()
    def both_ends_follow_their_diagrams(self) -> None:
        if self.connected:
            assert self.server_trace.protocol.machine_state == self.server_state
            assert self.connection_of(self.client).machine_state == self.client_state


def conversation_state_machine(
    factory: Any,
    client: type,
    *,
    connect: Connect,
    send: Send,
    close: Close | None = None,
    frames: Mapping[Any, st.SearchStrategy[Any]] | None = None,
    error_reply: type[BaseException] | tuple[type[BaseException], ...],
    connection: Callable[[Any], Any] = attrgetter("protocol"),
    unreachable: Collection[Edge] = (),
    timeout: float = 5.0,
) -> type[ConversationMachine]:
    """A ``RuleBasedStateMachine`` in which a client made by ``connect(reactor, host,
    port)``, whose connection is the declared protocol ``client``, talks to a server of
    ``factory`` over loopback TCP (see the module).

    ``factory`` is a server :class:`~statewire.protocol.Factory` of a declared protocol, or
    a callable making one (called once per run, so each run starts afresh). ``send(client,
    input, frame)`` makes the client call that sends ``frame`` (a frame of the server's
    ``input``); ``close(client)``, if given, ends the connection from the client's side.
    ``frames`` maps server inputs (or their names) to strategies of their frames; the
    others are generated from the state's route and grammar. ``error_reply`` is what a
    client call raises when the server answers an error (``ErrorReply``: a refusal must
    be one; an accepted request may). ``connection``
    gives the client object's declared connection (default: ``client.protocol``).
    ``unreachable`` names server edges no client call causes: the model neither seeks them
    nor sends their inputs in their source states.
    Every wait lasts ``timeout`` seconds at most."""
    shared = isinstance(factory, Factory)
    server_class = (factory if shared else factory()).protocol
    server = _Diagram(server_class, frozenset(unreachable))
    namespace: dict[str, Any] = {
        "make_factory": staticmethod((lambda: factory) if shared else factory),
        "connect": staticmethod(connect),
        "send_frame": staticmethod(send),
        "close": None if close is None else staticmethod(close),
        "connection_of": staticmethod(connection),
        "frames": {_name(k): v for k, v in (frames or {}).items()},
        "error_reply": error_reply,
        "timeout": timeout,
        "unreachable": frozenset(unreachable),
        "server_diagram": server,
        "client_diagram": _Diagram(client),
        "ways": {},
        "covered_server": set(),
        "covered_client": set(),
        "refused": set(),
    }
    return type(f"{server_class.__name__}Conversation", (ConversationMachine,), namespace)


def _name(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    name = getattr(ref, "name", None)
    return name if isinstance(name, str) else input_name(ref)


def check_conversation(
    factory: Any,
    client: type,
    *,
    require_coverage: bool = False,
    unreachable: Collection[Edge] = (),
    client_unreachable: Collection[Edge] = (),
    settings: Any = None,
    **options: Any,
) -> Coverage:
    """Run :func:`conversation_state_machine` (Hypothesis ``settings``, default: the
    active profile's) and return the edges each diagram made and never made. With
    ``require_coverage`` every edge must have been made, but the server's ``unreachable``
    ones and the client's ``client_unreachable`` ones (edges no client call can cause)."""
    machine = conversation_state_machine(factory, client, unreachable=unreachable, **options)
    run: Any = run_state_machine_as_test  # typed in some Hypothesis releases, not in others
    run(machine, settings=settings)
    server_missed = machine.server_diagram.edges() - machine.covered_server - set(unreachable)
    client_missed = (
        machine.client_diagram.edges() - machine.covered_client - set(client_unreachable)
    )
    if require_coverage and (server_missed or client_missed):
        listed = ", ".join(
            [f"server {s} --{i}--> {t}" for s, i, t in sorted(server_missed)]
            + [f"client {s} --{i}--> {t}" for s, i, t in sorted(client_missed)]
        )
        raise AssertionError(
            f"edges never made: {listed} (pass frames={{input: strategy}} that reach them, "
            "more examples, or name those no client call can cause unreachable)"
        )
    return Coverage(
        frozenset(machine.covered_server),
        frozenset(machine.covered_client),
        frozenset(server_missed),
        frozenset(client_missed),
        frozenset(machine.refused),
    )


__all__ = [
    "HOST",
    "Close",
    "Connect",
    "ConversationMachine",
    "Coverage",
    "Edge",
    "Send",
    "check_conversation",
    "conversation_state_machine",
]
