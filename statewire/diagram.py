"""Draw a declared protocol as a state diagram: Graphviz DOT, Mermaid, SVG and PNG.

The picture is read from the protocol's own definition (its automat machine and its
declarations), never from a running connection:

* every state, with its name and its framing (``line CRLF ≤ 1 KiB``, ``fixed(size)``, ...;
  a framing computed from the state's data is evaluated with symbolic data, so
  ``fixed(incoming.size)`` reads ``fixed(size)``); a state that declares no framing reads
  nothing;
* the initial state (an arrow from a dot) and terminal states (no way out: a double border);
* transitions labelled ``input / outputs``; for a routed input the command verb or message
  key is shown with it (``PUT (put) / start_upload``);
* timeouts as dashed edges labelled ``after 30 s`` (``after 30 s idle`` for idle timeouts);
* connection loss, when it leads every state to the same place, as one edge from an "any
  state" node instead of one edge per state;
* what happens to inputs a state does not accept, once, in a note.

The output is deterministic: states, edges and labels come out in a sorted order, so the
same protocol always gives the same bytes (diagrams can be committed and checked by CI with
``statewire diagram TARGET --check FILE``).

Rendering SVG and PNG needs Graphviz's ``dot`` on ``PATH`` or, failing that, the
``graphviz-pure`` command (``pip install "statewire[diagram]"``). DOT and Mermaid need
nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from construct import Construct

from statewire.machine import ByKey, graph_of, is_declared

#: the formats :func:`render` knows, and what each needs
FORMATS = ("dot", "mermaid", "svg", "png")


class DiagramError(Exception):
    """The protocol cannot be drawn, or the renderer is missing or failed (one line)."""


@dataclass(frozen=True)
class Edge:
    """One arrow of the diagram."""

    source: str
    target: str
    label: str
    timeout: bool = False


@dataclass
class Model:
    """What a diagram shows, in a fixed order (the formats are drawn from this)."""

    name: str
    initial: str
    #: state name -> framing description
    states: dict[str, str]
    terminal: set[str]
    edges: list[Edge]
    #: label of the folded connection-loss edge and its target, if folded
    lost: tuple[str, str] | None
    notes: list[str] = field(default_factory=list)


class _Symbol:
    """Stands for a value of state data while a framing is described (``size``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, context: Any) -> Any:  # a construct context function
        return context[self.name]

    def __str__(self) -> str:
        return self.name

    def __getattr__(self, name: str) -> _Symbol:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Symbol(name)

    def __getitem__(self, name: str) -> _Symbol:
        return _Symbol(name)


def describe_framing(spec: Any, protocol: type) -> str:
    """A short description of a state's framing declaration."""
    if spec is None:
        return "reads nothing"
    if not isinstance(spec, Construct) and callable(spec):
        try:
            spec = spec(protocol, _Symbol("data"))
        except Exception:
            return f"computed by {getattr(spec, '__name__', 'a function')}"
    describe = getattr(spec, "describe", None)
    if callable(describe):
        return str(describe())
    return type(spec).__name__


def _keys(route: Any) -> dict[str, str]:
    """input name -> the keys (command verbs, message types) that route to it."""
    if not isinstance(route, ByKey):
        return {}
    found: dict[str, list[str]] = {}
    for key, (name, _, _) in route.table.items():
        shown = key.decode("ascii", "backslashreplace") if isinstance(key, bytes) else str(key)
        found.setdefault(name, []).append(shown)
    return {name: "|".join(sorted(keys)) for name, keys in found.items()}


#: transitions counted per edge: ``(state left, input, state entered) -> count``
Counts = Mapping[tuple[str, str, str], int]


def model(protocol: type, counts: Counts | None = None) -> Model:
    """The diagram model of a declared protocol class; with ``counts`` (from a running
    server's metrics), each edge's label ends with how often it was taken: ``[12]``."""
    if not is_declared(protocol):
        raise DiagramError(f"{protocol.__name__} is not a declared protocol (no machine)")
    graph = graph_of(protocol)
    states = {s: describe_framing(graph.framings.get(s), protocol) for s in graph.states}
    lost_targets = {t.target for t in graph.transitions if t.input == graph.lost}
    fold_lost = graph.lost is not None and len(lost_targets) == 1
    edges: list[Edge] = []
    leaving: set[str] = set()
    for transition in graph.transitions:
        source, name, target = transition.source, transition.input, transition.target
        if fold_lost and name == graph.lost:
            continue
        if source != target:
            leaving.add(source)
        timeout = graph.timeouts.get(source)
        if timeout is not None and timeout.input_name != name:
            timeout = None
        if timeout is not None:
            trigger = f"after {timeout.seconds:g} s{' idle' if timeout.idle else ''}"
        else:
            key = _keys(graph.routes.get(source)).get(name)
            # a verb that is the input's name says it once: "GET", not "GET (get)"
            trigger = f"{key} ({name})" if key and key.lower() != name.lower() else key or name
        # an output named as its input says nothing more: "get", not "get / get"
        actions = [action for action in transition.outputs if action != name]
        label = f"{trigger} / {', '.join(actions)}" if actions else trigger
        if counts is not None:
            label += f" [{counts.get((source, name, target), 0)}]"
        edges.append(Edge(source, target, label, timeout is not None))
    edges.sort(key=lambda e: (e.source, e.target, e.label))
    lost = None
    if fold_lost and graph.lost is not None:
        target = lost_targets.pop()
        lost = (f"connection lost ({graph.lost})", target)
    close = getattr(protocol, "close_on_error", True)
    notes = [
        "an input a state does not accept, an unroutable frame or a framing error: "
        + (
            "remote error, state unchanged, connection closed"
            if close
            else "remote error, state unchanged, answered (connection kept)"
        )
    ]
    return Model(
        name=protocol.__name__,
        initial=graph.initial,
        states=states,
        terminal={s for s in states if s not in leaving},
        edges=edges,
        lost=lost,
        notes=notes,
    )


# -- DOT ------------------------------------------------------------------------------------


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_edges(edges: list[Edge]) -> list[tuple[str, str, str, bool]]:
    """The arrows to draw: a state's self-loops become one loop, its label a line per
    transition (Graphviz stacks separate loops on one side, their lines crossing the
    labels); timeouts stay a dashed loop of their own."""
    drawn: list[tuple[str, str, str, bool]] = []
    loops: dict[tuple[str, bool], list[str]] = {}
    for edge in edges:
        if edge.source == edge.target:
            key = (edge.source, edge.timeout)
            if key not in loops:
                loops[key] = []
                drawn.append((edge.source, edge.target, "", edge.timeout))
            loops[key].append(edge.label)
        else:
            drawn.append((edge.source, edge.target, edge.label, edge.timeout))
    return [
        (source, target, "\n".join(loops[source, timeout]) if source == target else label, timeout)
        for source, target, label, timeout in drawn
    ]


def to_dot(protocol: type, counts: Counts | None = None) -> str:
    """Graphviz DOT source for ``protocol``'s diagram."""
    m = model(protocol, counts)
    q = _dot_string

    def node(state: str) -> str:
        return q("s:" + state)  # the drawing's own nodes have ids no state can take

    lines = [
        f"digraph {q(m.name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
        '  "start" [shape=point, width=0.15, label=""];',
        f'  "start" -> {node(m.initial)};',
    ]
    for name, framing in m.states.items():
        extra = ", peripheries=2" if name in m.terminal else ""
        lines.append(f"  {node(name)} [label={q(name + chr(10) + framing)}{extra}];")
    for source, target, label, timeout in _dot_edges(m.edges):
        style = ", style=dashed" if timeout else ""
        lines.append(f"  {node(source)} -> {node(target)} [label={q(label)}{style}];")
    if m.lost is not None:
        label, target = m.lost
        lines.append('  "any" [shape=plaintext, label="any state", fontcolor=gray40];')
        lines.append(f'  "any" -> {node(target)} [label={q(label)}, style=dotted, color=gray40];')
    for i, note in enumerate(m.notes):
        wrapped = "\n".join(textwrap.wrap(note, 48))
        lines.append(f'  "note{i}" [shape=note, fontsize=9, label={q(wrapped)}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- Mermaid --------------------------------------------------------------------------------


def _mermaid_ids(names: list[str]) -> dict[str, str]:
    """Mermaid ids for the states: letters, digits and ``_`` after an ``s_`` (so no id is a
    keyword such as ``state`` or ``note``), made unique in sorted order."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(names):
        base = "s_" + "".join(
            c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name
        )
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        ids[name] = candidate
    return ids


#: the characters Mermaid's syntax uses, as the entity codes it shows as those characters
_MERMAID_CODES = str.maketrans({"#": "#35;", ":": "#58;", ";": "#59;", '"': "#quot;", "\n": " "})


def _mermaid_text(text: str) -> str:
    """Text Mermaid shows as is."""
    return text.translate(_MERMAID_CODES)


def to_mermaid(protocol: type, counts: Counts | None = None) -> str:
    """Mermaid ``stateDiagram-v2`` source for ``protocol``'s diagram."""
    m = model(protocol, counts)
    ident = _mermaid_ids(list(m.states))
    lines = ["stateDiagram-v2"]
    for name, framing in m.states.items():
        lines.append(f'    state "{_mermaid_text(name)}" as {ident[name]}')
        lines.append(f"    {ident[name]} : {_mermaid_text(framing)}")
    lines.append(f"    [*] --> {ident[m.initial]}")
    for edge in m.edges:
        label = ("⏱ " if edge.timeout else "") + _mermaid_text(edge.label)
        lines.append(f"    {ident[edge.source]} --> {ident[edge.target]} : {label}")
    for name in sorted(m.terminal):
        lines.append(f"    {ident[name]} --> [*]")
    if m.lost is not None:
        label, target = m.lost
        lines.append(f"    note left of {ident[target]} : from any state, {_mermaid_text(label)}")
    for note in m.notes:
        lines.append(f"    note right of {ident[m.initial]} : {_mermaid_text(note)}")
    return "\n".join(lines) + "\n"


# -- rendering ------------------------------------------------------------------------------


#: PNG resolution: Graphviz's default 96 dpi makes a picture too small to read on a screen
PNG_DPI = 192


def renderer() -> list[str]:
    """The command that renders DOT: Graphviz's ``dot``, else ``graphviz-pure`` — looked
    for beside the running interpreter first (installed in this environment, activated or
    not), then on ``PATH``."""
    here = sysconfig.get_path("scripts")
    for command in ("dot", "graphviz-pure"):
        path = shutil.which(command, path=os.pathsep.join([here, os.environ.get("PATH", "")]))
        if path is not None:
            return [path]
    raise DiagramError(
        "rendering SVG or PNG needs Graphviz's `dot` on PATH (e.g. `apt-get install "
        'graphviz`) or `pip install "statewire[diagram]"` (graphviz-pure); DOT and Mermaid '
        "need neither"
    )


def render(
    protocol: type,
    fmt: str,
    run: Callable[..., Any] = subprocess.run,
    counts: Counts | None = None,
) -> bytes:
    """``protocol``'s diagram in ``fmt`` (one of :data:`FORMATS`), as bytes; ``counts``:
    see :func:`model`."""
    if fmt == "dot":
        return to_dot(protocol, counts).encode()
    if fmt == "mermaid":
        return to_mermaid(protocol, counts).encode()
    if fmt not in FORMATS:
        raise DiagramError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    command = [*renderer(), f"-T{fmt}"]
    if fmt == "png":
        command.append(f"-Gdpi={PNG_DPI}")
    dot = to_dot(protocol, counts).encode()
    done = run(command, input=dot, capture_output=True, check=False)
    if done.returncode != 0:
        problem = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiagramError(f"{command[0]} failed: {problem[-1] if problem else done.returncode}")
    data: bytes = done.stdout
    return data


# -- finding the protocol a command line names --------------------------------------------


def protocol_from(target: str) -> type:
    """The declared protocol class ``target`` names: the class itself, a factory (or a
    factory class) whose ``protocol`` it is, or a function returning such a factory."""
    from statewire.declarative import MachineProtocol
    from statewire.target import TargetError, call, load

    found = load(target)
    if callable(found) and not isinstance(found, type):
        found = call(target, "calling", found)
    candidate: object = getattr(found, "protocol", found)
    if isinstance(found, type) and issubclass(found, MachineProtocol):
        candidate = found
    declared = isinstance(candidate, type) and issubclass(candidate, MachineProtocol)
    if declared and is_declared(candidate):
        assert isinstance(candidate, type)
        return candidate
    raise TargetError(f"{target} is not a declared protocol (a MachineProtocol with a machine)")


#: file suffix -> format, for ``--check`` and ``-o`` without ``--format``
SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}
SUFFIXES.update({".svg": "svg", ".png": "png"})
