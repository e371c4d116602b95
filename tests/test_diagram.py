"""Diagrams: golden DOT and Mermaid for the examples, structurally valid Mermaid, rendered
SVG naming every state, the README's diagram in sync, and the CLI's errors and ``--check``."""

from __future__ import annotations

import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import pytest
from automat import TypeMachineBuilder

from grammars import line
from statewire.declarative import MachineProtocol
from statewire.diagram import DiagramError, model, protocol_from, render, to_dot, to_mermaid
from statewire.machine import Timeout

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = ROOT / "examples" / "diagrams"
#: (target, file stem in examples/diagrams)
GOLDEN = [
    ("examples/upload.py:UploadServer", "upload"),
    ("statewire.basic:LineReceiver", "linereceiver"),
    ("examples/keyvalue.py:factory", "keyvalue"),
    ("statewire.protocols.resp:RESPServer", "resp"),
    ("statewire.protocols.memcache:MemcacheServer", "memcache"),
    ("examples/smtpd.py:factory", "smtpd"),
]


def _protocol(target: str) -> type:
    if target.startswith("examples/"):
        target = str(ROOT / target)
    return protocol_from(target)


@pytest.mark.parametrize(("target", "stem"), GOLDEN)
def test_golden_dot_and_mermaid(target: str, stem: str) -> None:
    protocol = _protocol(target)
    assert to_dot(protocol) == (DIAGRAMS / f"{stem}.dot").read_text()
    assert to_mermaid(protocol) == (DIAGRAMS / f"{stem}.mmd").read_text()


def test_the_upload_diagram_shows_what_the_issue_asks_for() -> None:
    m = model(_protocol("examples/upload.py:UploadServer"))
    assert m.initial == "anonymous"
    assert m.states["receiving"] == "fixed(size)"
    assert m.states["ready"] == "line CRLF ≤ 1 KiB"
    assert m.terminal == {"closed"}
    labels = {(e.source, e.target, e.label, e.timeout) for e in m.edges}
    assert ("ready", "receiving", "PUT / start_upload", False) in labels
    assert ("receiving", "closed", "after 30 s idle / time_out", True) in labels
    assert m.lost == ("connection lost (lost)", "closed")  # folded: one edge, not four
    assert not any(e.label.startswith("lost") for e in m.edges)
    dot = to_dot(_protocol("examples/upload.py:UploadServer"))
    assert '"s:receiving" -> "s:closed" [label="after 30 s idle / time_out", style=dashed];' in dot
    assert '"s:closed" [label="closed\\nreads nothing", peripheries=2];' in dot


#: text in a label, description or note: no raw ``:``, ``;``, ``#`` or ``"`` (entity codes)
_TEXT = r'(?:[^:;#"\n]|#\d+;|#quot;)+'
_MERMAID_LINE = re.compile(
    r"^(stateDiagram-v2"
    rf'|    state "{_TEXT}" as (?P<declared>s_\w+)'
    rf"|    (?P<described>s_\w+) : {_TEXT}"
    rf"|    (?P<source>s_\w+|\[\*\]) --> (?P<target>s_\w+|\[\*\])( : {_TEXT})?"
    rf"|    note (left|right) of (?P<noted>s_\w+) : {_TEXT})$"
)


def _check_mermaid(text: str) -> None:
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    declared: set[str] = set()
    used: set[str] = set()
    for text_line in lines:
        match = _MERMAID_LINE.match(text_line)
        assert match, f"not a stateDiagram-v2 statement: {text_line!r}"
        if match["declared"]:
            declared.add(match["declared"])
        for group in ("described", "source", "target", "noted"):
            if match[group] and match[group] != "[*]":
                used.add(match[group])
    assert used <= declared
    assert sum(1 for t in lines if t.startswith("    [*] --> ")) == 1  # one initial state


@pytest.mark.parametrize(("target", "stem"), GOLDEN)
def test_mermaid_is_structurally_valid(target: str, stem: str) -> None:
    _check_mermaid(to_mermaid(_protocol(target)))


def test_the_svg_renders_and_names_every_state() -> None:
    protocol = _protocol("examples/upload.py:UploadServer")
    svg = render(protocol, "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for state in model(protocol).states:
        assert f">{state}</text>" in svg
    png = render(protocol, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_output_is_deterministic() -> None:
    protocol = _protocol("statewire.basic:LineReceiver")
    assert render(protocol, "dot") == render(protocol, "dot")
    assert render(protocol, "mermaid") == render(protocol, "mermaid")


def test_the_readme_shows_the_upload_diagram_as_drawn_today() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == (DIAGRAMS / "upload.mmd").read_text()


def test_a_missing_renderer_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda command, path=None: None)
    protocol = _protocol("statewire.basic:LineReceiver")
    with pytest.raises(DiagramError, match="graphviz-pure"):
        render(protocol, "svg")
    assert render(protocol, "mermaid")  # DOT and Mermaid need no tool


def test_a_hundred_state_protocol_draws() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_diagram import hundred_states

    protocol = hundred_states(100)
    m = model(protocol)
    assert len(m.states) == 100 and len(m.edges) == 300
    _check_mermaid(to_mermaid(protocol))


# -- the command line -----------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statewire", "diagram", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "target",
    ["examples/nope.py:X", "examples/upload.py:nothing", "statewire.wire:Echo", "no.such:module"],
)
def test_a_bad_target_is_one_line_and_exit_2(target: str) -> None:
    done = _cli(target)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("statewire diagram: ")


def test_check_passes_on_the_committed_diagram_and_fails_on_drift(tmp_path: Path) -> None:
    assert (
        _cli(
            "examples/upload.py:UploadServer", "--check", "examples/diagrams/upload.mmd"
        ).returncode
        == 0
    )
    stale = tmp_path / "stale.dot"
    stale.write_text(to_dot(_protocol("examples/upload.py:UploadServer")).replace("30 s", "31 s"))
    done = _cli("examples/upload.py:UploadServer", "--check", str(stale))
    assert done.returncode == 1 and "differs" in done.stderr


def test_format_from_the_suffix_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "lines.mmd"
    assert _cli("statewire.basic:LineReceiver", "-o", str(out)).returncode == 0
    assert out.read_text() == (DIAGRAMS / "linereceiver.mmd").read_text()


def test_a_protocol_with_a_timeout_on_a_loop() -> None:
    class Inputs(Protocol):
        def tick(self) -> None: ...

    builder = TypeMachineBuilder(Inputs, MachineProtocol)
    waiting = builder.state("waiting")
    waiting.upon(Inputs.tick).loop().returns(None)

    class Ticker(MachineProtocol):
        machine = builder.build()
        framings = {waiting: line()}
        timeouts = {waiting: Timeout(1.5, Inputs.tick)}

    m = model(Ticker)
    assert m.edges[0].label == "after 1.5 s" and m.edges[0].timeout
    assert m.states == {"waiting": "line CRLF ≤ 16 KiB"}
    assert m.terminal == {"waiting"}


def awkward_protocol() -> type:
    """States whose names are Mermaid keywords, carry quotes, or collide once sanitised."""

    class Steps(Protocol):
        def go(self, line: bytes) -> None: ...

    names = ["state", "note", "wait data", "wait_data", 'say "hi": now', "start", "end", "é"]
    builder = TypeMachineBuilder(Steps, MachineProtocol)
    states = [builder.state(name) for name in names]
    for here, there in pairwise(states):
        here.upon(Steps.go).to(there).returns(None)
    return type(
        "Awkward",
        (MachineProtocol,),
        {
            "machine": builder.build(),
            "framings": {s: line(b"\n") for s in states},
            "routes": {s: Steps.go for s in states},
        },
    )


def test_awkward_state_names_stay_distinct_and_valid() -> None:
    protocol = awkward_protocol()
    mermaid = to_mermaid(protocol)
    _check_mermaid(mermaid)
    ids = re.findall(r" as (\w+)$", mermaid, re.MULTILINE)
    assert len(ids) == len(set(ids)) == 8
    assert all(i.startswith("s_") for i in ids)  # never a keyword such as `state` or `note`
    assert 'state "say #quot;hi#quot;#58; now" as' in mermaid
    dot = to_dot(protocol)
    assert '"start" -> "s:state";' in dot  # a state called "start" is not the start dot
    assert '"s:start" [label="start\\nline LF ≤ 16 KiB"];' in dot


@pytest.mark.parametrize(("target", "stem"), GOLDEN)
def test_committed_svg_is_what_graphviz_pure_renders(target: str, stem: str) -> None:
    """The README says the pictures are checked: the SVGs too, as graphviz-pure draws them."""
    import shutil
    import sysconfig

    command = shutil.which("graphviz-pure", path=sysconfig.get_path("scripts")) or shutil.which(
        "graphviz-pure"
    )
    if command is None:
        pytest.skip("graphviz-pure is not installed (the test extra installs it)")
    dot = to_dot(_protocol(target)).encode()
    drawn = subprocess.run([command, "-Tsvg"], input=dot, capture_output=True, check=True)
    assert drawn.stdout == (DIAGRAMS / f"{stem}.svg").read_bytes()


def test_self_loops_are_one_loop_with_a_line_each() -> None:
    dot = to_dot(_protocol("examples/keyvalue.py:factory"))
    loops = [row for row in dot.splitlines() if '"s:ready" -> "s:ready"' in row]
    assert loops == [
        '  "s:ready" -> "s:ready" '
        '[label="D (delete) / _forget\\nG (get) / _send_value\\nS (set) / _store\\n'
        'unknown / _refuse"];'
    ]


def test_labels_do_not_repeat_names() -> None:
    class Commands(Protocol):
        def get(self, key: bytes) -> None: ...

    class Core(MachineProtocol):
        pass

    builder = TypeMachineBuilder(Commands, Core)
    ready = builder.state("ready")

    @ready.upon(Commands.get).loop()
    def get(machine: Commands, core: Core, key: bytes) -> None:
        pass

    from statewire.machine import by_verb

    class Server(Core):
        machine = builder.build()
        framings = {ready: line()}
        routes = {ready: by_verb({b"get": Commands.get})}

    (edge,) = model(Server).edges
    assert edge.label == "get"


def test_png_is_rendered_at_a_readable_resolution() -> None:
    seen: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[bytes]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, b"png", b"")

    render(_protocol("statewire.basic:LineReceiver"), "png", run=run)
    assert "-Gdpi=192" in seen[0]


def test_the_renderer_is_found_beside_the_running_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtual environment with graphviz-pure renders without being activated."""
    import sysconfig

    installed = Path(sysconfig.get_path("scripts")) / "graphviz-pure"
    if not installed.exists():
        pytest.skip("graphviz-pure is not installed beside this interpreter")
    monkeypatch.setenv("PATH", "/nonexistent")
    from statewire.diagram import renderer

    command = renderer()
    assert Path(command[0]).name in ("dot", "graphviz-pure")
    assert Path(command[0]).parent == installed.parent
