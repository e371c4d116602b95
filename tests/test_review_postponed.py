"""Adversarial review of 50b3744 ("Engine: postponed inputs switch the framer at once between
frames, call outputs without automat's wrappers, find the entry inline").

Three parts: ``Framer._interrupted`` sets ``_batch = _ONE`` while an ``after_frame`` callback
runs (a switch made from it takes ``switch``'s short way); ``TypedStyle`` input methods call
outputs' methods directly (the unhandled-transition fallback too); ``Engine._sw_sync`` finds
the entry inline.

The old-against-new comparisons play the same scripted sessions (an engine protocol with
postponed inputs, state changes, sized and eager grammars, ``raw`` with ``unread``, outputs
returning awaitables, keyword and default arguments, tracers; and a framer driven by random
callbacks: switches, unread, pause, clear, interrupt, a second ``after_frame``, raises) under
the tree of the parent commit ``485144a`` (extracted with ``git archive``, as
``tests/base_tree.py`` does; skipped without git or the commit) and under this one, each in
its own interpreter, and compare what comes out.

The review found three differences, each fixed in the commit after and pinned here: inside
an ``after_frame`` callback ``offset`` and ``buffered`` were read as if a frame were being
delivered (the work between frames now has its own marker, ``_BETWEEN``); a switch that
cannot be made (a bad size) inside postponed work raised there, reordering the inputs
queued after it (it is deferred again, as before); the unhandled-transition fallback lost
automat's own data check (it calls automat's outputs again).
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
from base_tree import base_tree, play_under

ROOT = Path(__file__).resolve().parent.parent
#: the commit before the one reviewed here
PARENT = "485144af6c4ba8f0bd0994a6f98b7e9fb93abfe0"

# -- the programs played under both trees (the same text in each) ------------------------------

#: an engine protocol: ``run(script, traced)`` plays reads (and "finish"/"finish_all"/"clear"
#: operations) and answers the outputs' log, the bytes written, state snapshots after each
#: operation, the tracer's transitions and the final state
ENGINE = r"""
import json, sys, random
from dataclasses import dataclass
from typing import Any, Protocol
from automat import TypeMachineBuilder
from construct import this
from grammars import line, fixed, raw
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb, observe, unobserve, Observer
from statewire.testing.memory import Clock, StringTransport

class Work:
    def __init__(self): self.done=False; self.cbs=[]
    def add_done_callback(self, cb):
        if self.done: cb(self)
        else: self.cbs.append(cb)
    def finish(self):
        self.done=True
        cbs, self.cbs = self.cbs, []
        for cb in cbs: cb(self)
    def cancel(self): self.finish(); return True
    def cancelled(self): return False
    def exception(self): return None

class I(Protocol):
    def note(self, *w: bytes) -> None: ...
    def swap(self, *w: bytes) -> None: ...
    def work(self, flag: bytes = b"") -> None: ...
    def alt(self, text: bytes) -> None: ...
    def go(self, *w: bytes) -> None: ...
    def later(self, *, tag: str = "t") -> None: ...
    def block(self, data: bytes) -> None: ...
    def enter_raw(self, *w: bytes) -> None: ...
    def chunk(self, data: bytes) -> None: ...
    def ping(self) -> None: ...
    def chain(self, *w: bytes) -> None: ...
    def back(self) -> None: ...
    def hop(self, text: bytes) -> None: ...
    def zero(self, *w: bytes) -> None: ...
    def empty(self, data: bytes) -> None: ...

class Core(MachineProtocol):
    close_on_error = False
    waiting_read_limit = 24
    def connectionMade(self):
        self.log = []; self.works = []
    def rec(self, *item):
        self.log.append(list(item) + [self.machine_engine.buffered.hex()])
        self.transport.write(repr(item[:2]).encode() + b"\n")
    def remoteError(self, e): self.log.append(["remote", type(e).__name__, self.machine_state])
    def localError(self, e):
        self.log.append(["local", type(e).__name__, str(e)[:60], self.machine_state])
    def mkwork(self):
        w = Work(); self.works.append(w); return w

@dataclass
class Size:
    size: int

b = TypeMachineBuilder(I, Core)
command = b.state("command")
other = b.state("other")
body = b.state("body", lambda m, c, *w: Size(int(w[0]) if w and w[0].isdigit() else 0))
rawst = b.state("rawst")
middle = b.state("middle")
zerost = b.state("zerost", lambda m, c, *w: Size(0))

@command.upon(I.note).loop()
def noted(m, c, *w): c.rec("note", w)

@other.upon(I.note).loop()
def noted_o(m, c, *w): c.rec("onote", w)

@command.upon(I.swap).to(other)
def swapped(m, c, *w):
    c.rec("swap", w)
    m.work(w[0] if w else b"")

@other.upon(I.work).loop()
def worked(m, c, flag: bytes = b"") -> Any:
    c.rec("work", flag)
    if flag == b"w":
        return c.mkwork()
    if flag == b"u":
        m.alt(b"auto")  # postponed again: other -> command
    return None

@other.upon(I.alt).to(command)
def alted(m, c, text): c.rec("alt", text)

@command.upon(I.go).to(body)
def went(m, c, *w):
    c.rec("go", w)
    m.later(tag="x")

@body.upon(I.later).loop()
def latered(m, c, data: Size, *, tag: str = "t") -> Any:
    c.rec("later", data.size, tag)
    return c.mkwork() if data.size == 3 else None

@body.upon(I.block).to(command)
def blocked(m, c, data: Size, payload: bytes):
    c.rec("block", data.size, payload)
    if payload.startswith(b"P"):
        m.ping()

@command.upon(I.ping).loop()
def pinged(m, c): c.rec("ping")

@command.upon(I.enter_raw).to(rawst)
def entered(m, c, *w):
    c.rec("raw", w)

@rawst.upon(I.chunk).loop()
def chunked(m, c, data: bytes):
    i = data.find(b"|")
    if i < 0:
        c.rec("chunk", data)
        return
    c.rec("chunk-end", data[:i])
    c.machine_engine.unread(data[i + 1:])
    m.hop(b"")

@rawst.upon(I.hop).to(command)
def hopped(m, c, text: bytes):
    c.rec("hop")
    m.ping()

@command.upon(I.chain).to(middle)
def chained(m, c, *w):
    c.rec("chain", w)
    m.back()

@middle.upon(I.back).to(command)
def backed(m, c): c.rec("back")

@middle.upon(I.note).loop()
def mnote(m, c, *w): c.rec("mnote", w)

@command.upon(I.zero).to(zerost)
def zeroed(m, c, *w): c.rec("zero", w)

@zerost.upon(I.empty).to(command)
def emptied(m, c, data: Size, payload: bytes):
    c.rec("empty", payload)
    m.ping()

M = b.build()

class P(Core):
    machine = M
    framings = {command: line(b"\n", max_length=40), other: line(b";", max_length=40),
                body: fixed(this.size), rawst: raw(), middle: line(b"#"), zerost: fixed(this.size)}
    routes = {
        command: by_verb({b"SW": I.swap, b"GO": I.go, b"RAW": I.enter_raw, b"CH": I.chain,
                          b"ZERO": I.zero}, unknown=I.note),
        other: by_verb({b"x": I.alt}, unknown=I.note),
        body: I.block, rawst: I.chunk, middle: I.note, zerost: I.empty,
    }

class Trace(Observer):
    def __init__(self): self.seen = []
    def started(self, protocol):
        return lambda old, inp, new, frame: self.seen.append([old, inp, new])

def run(script, traced):
    tr = Trace()
    if traced: observe(tr)
    try:
        p = P(); p.clock = Clock(); t = StringTransport(); p.makeConnection(t)
    finally:
        if traced: unobserve(tr)
    snaps = []
    for op in script:
        if op == "finish":
            if p.works: p.works.pop(0).finish()
        elif op == "finish_all":
            while p.works: p.works.pop(0).finish()
        elif op == "clear":
            snaps.append(["clear", p.machine_engine.clear().hex()])
        else:
            p.dataReceived(op.encode("latin-1"))
        e = p.machine_engine
        fr = e._sw_framer
        snaps.append([p.machine_state, e.buffered.hex(), None if fr is None else fr.offset,
                      t.producerState, len(p.works)])
    while p.works: p.works.pop(0).finish()
    return {"log": p.log, "out": t.value().decode("latin-1"), "snaps": snaps,
            "trace": tr.seen, "state": p.machine_state}

PIECES = ["SW\n", "SW w\n", "SW u\n", "x;", "n;", "GO 3\n", "GO 2\n", "GO 0\n", "abc", "Pq",
          "RAW\n", "data|", "NOTE z\n", "CH\n", "m#", "ZERO\n", "hello\n", "\n", ";", "|", "P"]

def make_script(rng):
    data = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14)))
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [data]
    script = []
    for c in chunks:
        script.append(c)
        r = rng.random()
        if r < 0.25: script.append("finish")
        elif r < 0.3: script.append("clear")
        elif r < 0.4: script.append("finish_all")
    return script
"""

#: a framer driven by random callbacks: ``run(chunks, plan_seed, check_after_offset)``
FRAMER = r"""
import sys, json, random
from construct import this
from grammars import line, fixed, raw, netstring
from statewire.framing import Framer

G = {"L": line(b"\n"), "S": line(b";"), "F": fixed(this.size), "Z": fixed(0), "R": raw(),
     "N": netstring(),
     "F2": fixed(2)}
CTX = {"F": {"size": 3}}
ACTIONS_FRAME = ["none", "after", "after2", "switch", "interrupt", "pause", "unread", "clear",
                 "raise",
                 "switch_after"]
ACTIONS_AFTER = ["none", "switch", "switch2", "unread", "pause", "interrupt", "clear", "again",
                 "raise",
                 "badswitch", "feed"]

def run(data_chunks, plan_seed, check_after_offset):
    rng = random.Random(plan_seed)
    log = []
    f = None
    count = [0]
    def pick_g():
        k = rng.choice(list(G))
        return k, G[k], CTX.get(k)
    def make_after(tag):
        def after():
            a = rng.choice(ACTIONS_AFTER)
            name = f.grammar.describe() if hasattr(f.grammar, "describe") else repr(f.grammar)
            ent = ["after", tag, a, f.buffered.hex(), name]
            if check_after_offset:
                ent.append(f.offset)
            log.append(ent)
            if a == "switch":
                k, g, c = pick_g(); f.switch(g, context=c); log.append(["sw", k])
            elif a == "switch2":
                k, g, c = pick_g(); f.switch(g, context=c)
                k2, g2, c2 = pick_g(); f.switch(g2, context=c2); log.append(["sw2", k, k2])
            elif a == "unread":
                f.unread(b"u\n")
            elif a == "pause":
                f.pause()
            elif a == "interrupt":
                f.interrupt()
            elif a == "clear":
                log.append(["cleared", f.clear().hex()])
            elif a == "again":
                f.after_frame(make_after(tag + "+"))
            elif a == "raise":
                raise KeyError("after")
            elif a == "badswitch":
                f.switch(G["F"], context={"size": -1})
            elif a == "feed":
                f.feed(b"fed\n")
            if a in ("switch",) and rng.random() < 0.5:
                f.unread(b"v;")
        return after
    def on_frame(frame):
        count[0] += 1
        a = rng.choice(ACTIONS_FRAME)
        shown = bytes(frame).hex() if isinstance(frame, (bytes, bytearray)) else repr(frame)
        log.append(["frame", shown, f.offset, f.buffered.hex(), a])
        if count[0] > 60:
            f.pause(); return
        if a == "after":
            f.after_frame(make_after("a"))
        elif a == "after2":
            f.after_frame(make_after("x")); f.after_frame(make_after("y"))
        elif a == "switch":
            k, g, c = pick_g(); f.switch(g, context=c); log.append(["fsw", k])
        elif a == "switch_after":
            k, g, c = pick_g(); f.switch(g, context=c); f.after_frame(make_after("sa"))
            log.append(["fsw", k])
        elif a == "interrupt":
            f.interrupt()
        elif a == "pause":
            f.pause()
        elif a == "unread":
            if isinstance(frame, bytes) and len(frame) > 1:
                f.unread(frame[1:])
        elif a == "clear":
            log.append(["fcleared", f.clear().hex()])
        elif a == "raise":
            raise ValueError("frame")
    f = Framer(G["L"], on_frame)
    for c in data_chunks:
        for attempt in range(3):
            try:
                f.feed(c if attempt == 0 else b"")
            except Exception as e:
                log.append(["raised", type(e).__name__, str(e)[:50]])
                continue
            break
        if f.paused:
            try:
                f.resume()
            except Exception as e:
                log.append(["raised-r", type(e).__name__])
        log.append(["read", f.offset, f.buffered.hex(), f.paused, f.error is not None])
    return log
"""

MAIN = r"""
import json, random, sys
kind, seed, count, flag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rng = random.Random(seed)
out = []
if kind == "engine":
    for _ in range(count):
        script = make_script(rng)
        out.append([repr(script), [run(script, False), run(script, True)]])
else:
    pieces = [b"ab\n", b"c;", b"xyz", b"3:abc,", b"\n", b";", b"0:,", b"hello\n", b"q", b"12"]
    for _ in range(count):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 5))))
        bounds = [0, *cuts, len(data)]
        chunks = [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
        plan = rng.randrange(1 << 30)
        try:
            result = run(chunks, plan, flag)
        except Exception as exc:
            result = ["crash", type(exc).__name__, str(exc)[:80]]
        out.append([repr(chunks), result])
print(json.dumps(out, default=repr))
"""


def _namespace(program: str) -> dict[str, Any]:
    """``program`` run in this interpreter (the tree under test), as a module of its own
    and without this file's ``from __future__ import annotations`` (automat and dataclasses
    read the annotations)."""
    module = types.ModuleType(f"review_postponed_program_{len(_MODULES)}")
    _MODULES.append(module)
    sys.modules[module.__name__] = module
    code = compile(program, f"<{module.__name__}>", "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return module.__dict__


_MODULES: list[types.ModuleType] = []


# -- the parent's tree ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parent() -> Path:
    tree = base_tree(PARENT, "STATEWIRE_PARENT_50B3744")
    if tree is None:
        pytest.skip(f"no tree of commit {PARENT[:12]} (git or the commit is missing here)")
    return tree


def _play(tree: Path, kind: str, seed: int, count: int, flag: bool = False) -> list[Any]:
    program = (ENGINE if kind == "engine" else FRAMER) + MAIN
    args = ["-c", program, kind, str(seed), str(count), "1" if flag else "0"]
    # (not from the checkout: the tree comes from PYTHONPATH only)
    result: list[Any] = play_under(tree, args, cwd=tempfile.gettempdir(), pure=True)
    return result


def _without_reading_state(sessions: list[Any]) -> list[Any]:
    """The sessions with the transport's producer state left out of the snapshots (see
    ``test_a_postponed_input_that_waits_pauses_reading_only_when_too_much_is_buffered``)."""
    for _, runs in sessions:
        for run in runs:
            for snap in run["snaps"]:
                if len(snap) == 5:
                    snap[3] = "-"
    return sessions


def _reads_kept_after_a_framing_error(old: list[Any], new: list[Any]) -> list[Any]:
    """``old`` with the bytes this tree keeps, and the old one dropped, after a fatal
    framing error (a protocol staying connected: the reads after it are kept behind the
    bytes that could not be framed, and ``clear`` returns them): where a run's log holds a
    framing error and a snapshot's buffered bytes (or cleared ones) of this tree extend
    the old tree's, the old snapshot takes them. Any other difference stays."""
    for (_, old_runs), (_, new_runs) in zip(old, new, strict=True):
        for old_run, new_run in zip(old_runs, new_runs, strict=True):
            failed = any(
                entry[:1] == ["remote"] and entry[1] in ("FrameTooLong", "MalformedFrame")
                for entry in old_run["log"]
            )
            if not failed or len(old_run["snaps"]) != len(new_run["snaps"]):
                continue
            for before, after in zip(old_run["snaps"], new_run["snaps"], strict=True):
                if (
                    len(before) == len(after)
                    and before[:1] == after[:1]
                    and after[1].startswith(before[1])
                ):
                    before[1] = after[1]
    return old


def _first_mismatch(old: list[Any], new: list[Any]) -> str:
    for a, b in zip(old, new, strict=True):
        if a != b:
            return f"script {a[0]}\nparent: {a[1]}\nnow:    {b[1]}"
    return ""


# -- old against new -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_sessions_agree_with_the_parent(parent: Path, seed: int) -> None:
    """Postponed inputs after state changes (to line, ``fixed(this.size)``, ``fixed(0)``,
    ``raw`` with ``unread``), chained postponed inputs, outputs with keyword-only and
    default arguments, awaitables completed between reads, ``clear``, traced and untraced:
    the same outputs in the same states, the same bytes written, the same bytes buffered
    and framer offsets after every read (the producer state: a test of its own below)."""
    old = _without_reading_state(_play(parent, "engine", seed, 300))
    new = _without_reading_state(_play(ROOT, "engine", seed, 300))
    old = _reads_kept_after_a_framing_error(old, new)
    assert old == new, _first_mismatch(old, new)


@pytest.mark.parametrize("seed", [1, 2])
def test_framer_scripts_agree_with_the_parent(parent: Path, seed: int) -> None:
    """Frames, their offsets and the bytes buffered seen from ``on_frame``, what
    ``after_frame`` callbacks see buffered and the grammar they run under, switches
    (twice, to sized and eager grammars, with an invalid size), unread, pause, clear,
    interrupt, a second ``after_frame``, raises, feeds from callbacks: the same as before,
    the offset read inside an ``after_frame`` callback compared by a test of its own below."""
    old = _play(parent, "framer", seed, 1200)
    new = _play(ROOT, "framer", seed, 1200)
    assert old == new, _first_mismatch(old, new)


def test_framer_offsets_inside_after_frame_agree_with_the_parent(parent: Path) -> None:
    old = _play(parent, "framer", 3, 600, flag=True)
    new = _play(ROOT, "framer", 3, 600, flag=True)
    assert old == new, _first_mismatch(old, new)


# -- finding 1: Framer.offset inside after_frame callbacks ------------------------------------


def _after_frame_offsets(chunks: list[bytes], action: str) -> list[tuple[int, int]]:
    """(offset + len(buffered), bytes fed) as seen from each ``after_frame`` callback."""
    from grammars import line
    from statewire.framing import Framer

    fed = 0
    seen: list[tuple[int, int]] = []

    def after() -> None:
        seen.append((framer.offset + len(framer.buffered), fed))

    def on_frame(frame: bytes) -> None:
        if frame in (b"a", b"ab"):
            if action == "switch":
                framer.after_frame(after)
                framer.switch(line(b";"))  # deferred: installed before the callback runs
            elif action == "unread":
                framer.unread(b"b\n")
                framer.after_frame(after)
            else:
                framer.after_frame(after)

    framer = Framer(line(b"\n"), on_frame)
    for chunk in chunks:
        fed += len(chunk)
        framer.feed(chunk)
    return seen


@pytest.mark.parametrize("chunks", [[b"a\nb;c;"], [b"a\n", b"b;c;"], [b"a\nb", b";c;"]])
def test_offset_and_buffered_add_up_inside_after_frame_without_a_switch(
    chunks: list[bytes],
) -> None:
    seen = _after_frame_offsets(chunks, "plain")
    assert seen and all(total == fed for total, fed in seen)


@pytest.mark.parametrize("chunks", [[b"a\nb;c;"], [b"a\n", b"b;c;"]])
def test_offset_and_buffered_add_up_inside_after_frame_after_a_switch(
    chunks: list[bytes],
) -> None:
    seen = _after_frame_offsets(chunks, "switch")
    assert seen and all(total == fed for total, fed in seen)


def test_offset_and_buffered_add_up_inside_after_frame_after_unread() -> None:
    seen = _after_frame_offsets([b"ab\nc\n"], "unread")
    assert seen and all(total == fed for total, fed in seen)


def test_a_postponed_input_after_a_state_change_sees_the_framer_offset() -> None:
    program = _namespace(ENGINE)
    offsets: list[int] = []

    protocol = program["P"]()
    protocol.clock = program["Clock"]()
    transport = program["StringTransport"]()
    protocol.makeConnection(transport)
    engine = protocol.machine_engine
    protocol.rec = lambda *item: offsets.append(engine.framer().offset)
    protocol.dataReceived(b"SW\n")  # swap (command -> other), then the postponed work
    assert offsets == [3, 3]  # what swap's output and work's output see: 3 bytes delivered


def test_a_postponed_input_that_waits_pauses_reading_only_when_too_much_is_buffered() -> None:
    program = _namespace(ENGINE)
    protocol = program["P"]()
    protocol.clock = program["Clock"]()
    transport = program["StringTransport"]()
    protocol.makeConnection(transport)  # waiting_read_limit = 24
    for read in [b"SW\n", b"x y;", b"NOTE " + b"a" * 30 + b"\n"]:
        protocol.dataReceived(read)
    protocol.dataReceived(b"SW w\nq;")  # swap; its postponed work returns an awaitable
    assert protocol.machine_state == "other"
    assert protocol.machine_engine.buffered == b"q;"  # 2 bytes wait: far under the limit
    assert transport.producerState == "producing"


@pytest.mark.parametrize("chunks", [[b"toolongline\r"], [b"toolong", b"line\r"]])
def test_buffered_inside_after_frame_from_on_error_holds_the_pending_bytes(
    chunks: list[bytes],
) -> None:
    from grammars import line
    from statewire.framing import Framer, Policy

    fed = 0
    seen: list[tuple[bytes, int, int]] = []

    def after() -> None:
        seen.append((framer.buffered, framer.offset + len(framer.buffered), fed))

    framer = Framer(
        line(b"\r\n", max_length=4),
        lambda frame: None,
        policy=Policy.DISCARD,
        on_error=lambda error: framer.after_frame(after),
    )
    for chunk in chunks:
        fed += len(chunk)
        framer.feed(chunk)
    assert framer.buffered == chunks[-1][-1:]  # between reads: what the discarding keeps
    # the error comes with the first read: its last byte is kept (a CR, or any byte
    # that may turn out to be one)
    assert seen and all(buffered == chunks[0][-1:] for buffered, _, _ in seen)
    assert all(total == fed for _, total, fed in seen)


DISCARDING = r"""
from typing import Protocol
from automat import TypeMachineBuilder
from grammars import line
from statewire.declarative import MachineProtocol
from statewire.framing import Policy
from statewire.testing.memory import Clock, StringTransport

class I(Protocol):
    def note(self, text: bytes) -> None: ...
    def bad(self) -> None: ...

class Core(MachineProtocol):
    close_on_error = False
    policy = Policy.DISCARD
    def connectionMade(self): self.log = []
    def remoteError(self, e):
        self.log.append(["remote", self.machine_engine.buffered])
        self.machine_engine.machine.bad()  # postponed: runs once the error is handled

b = TypeMachineBuilder(I, Core)
command = b.state("command")

@command.upon(I.note).loop()
def noted(m, c, text): c.log.append(["note", text, c.machine_engine.buffered])

@command.upon(I.bad).loop()
def badded(m, c): c.log.append(["bad", c.machine_engine.buffered])

class P(Core):
    machine = b.build()
    framings = {command: line(b"\r\n", max_length=4)}
    routes = {command: I.note}

def play(chunks):
    p = P(); p.clock = Clock(); p.makeConnection(StringTransport())
    for c in chunks: p.dataReceived(c)
    return p.log
"""


def test_a_postponed_input_queued_by_a_remote_error_sees_what_is_buffered() -> None:
    log = _namespace(DISCARDING)["play"]([b"toolongline\r", b"\nab\r\n"])
    assert log == [
        ["remote", b"toolongline\r"],
        ["bad", b"\r"],  # the parent's answer: the CR of a possible CRLF is still held
        ["note", b"ab", b""],
    ]


# -- finding 2: a switch that fails inside a postponed input ------------------------------------


SIZED = r"""
from dataclasses import dataclass
from typing import Protocol
from automat import TypeMachineBuilder
from construct import this
from grammars import line, fixed
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb
from statewire.testing.memory import Clock, StringTransport

class I(Protocol):
    def note(self, text: bytes) -> None: ...
    def go(self, *w: bytes) -> None: ...
    def later(self) -> None: ...
    def block(self, data: bytes) -> None: ...

class Core(MachineProtocol):
    close_on_error = False
    def connectionMade(self): self.log = []
    def localError(self, e): self.log.append(("local", type(e).__name__, self.machine_state))

@dataclass
class Size:
    size: int

b = TypeMachineBuilder(I, Core)
command = b.state("command")
mid = b.state("mid")
body = b.state("body", lambda m, c: Size(-1))  # an invalid size for fixed(this.size)

@command.upon(I.note).loop()
def noted(m, c, text): c.log.append(("note", text))

@command.upon(I.go).to(mid)
def went(m, c, *w):
    c.log.append("go"); m.later(); m.later()

@mid.upon(I.later).to(body)
def later1(m, c): c.log.append("later1")

@body.upon(I.later).loop()
def later2(m, c, data: Size): c.log.append("later2")

@body.upon(I.block).to(command)
def blk(m, c, data: Size, payload: bytes): c.log.append(("block", payload))

class P(Core):
    machine = b.build()
    framings = {command: line(b"\n"), mid: line(b"\n"), body: fixed(this.size)}
    routes = {command: by_verb({b"GO": I.go}, unknown=I.note), mid: I.note, body: I.block}
"""


def _sized_log(chunks: list[bytes]) -> list[Any]:
    program = _namespace(SIZED)
    protocol = program["P"]()
    protocol.clock = program["Clock"]()
    protocol.makeConnection(program["StringTransport"]())
    for chunk in chunks:
        protocol.dataReceived(chunk)
    log: list[Any] = protocol.log
    return log


def test_a_switch_that_fails_in_a_postponed_input_reorders_nothing() -> None:
    # the parent: go, later1, later2, the local error, then the block of the next read
    expected = [
        "go",
        "later1",
        "later2",
        ("local", "InvalidValueError", "body"),
        ("block", b"abc"),
    ]
    assert _sized_log([b"GO\n", b"abc\n"]) == expected


def test_a_switch_that_fails_in_a_postponed_input_is_a_local_error() -> None:
    log = _sized_log([b"GO\n"])
    assert log[:2] == ["go", "later1"]
    assert ("local", "InvalidValueError", "body") in log


# -- finding 3: the unhandled-transition fallback ----------------------------------------------


UNHANDLED = r"""
from dataclasses import dataclass
from typing import Protocol
from automat import TypeMachineBuilder
from grammars import line
from statewire.declarative import MachineProtocol
from statewire.testing.memory import Clock, StringTransport

class Inputs(Protocol):
    def go(self) -> None: ...
    def stop(self) -> None: ...

class Core(MachineProtocol):
    pass

@dataclass
class Size:
    size: int

builder = TypeMachineBuilder(Inputs, Core)
start = builder.state("start")
sized = builder.state("sized", lambda machine, core: Size(1))

@start.upon(Inputs.go).to(sized)
def went(machine: Inputs, core: Core) -> None:
    pass

@sized.upon(Inputs.stop).to(start)
def stopped(machine: Inputs, core: Core, data: Size) -> None:
    core.seen = data

machine = builder.build()
automaton = machine.__automat_automaton__
outputs = next(o for (_, i, _, o) in automaton.allTransitions() if i == "stop")
automaton.unhandledTransition(start, list(outputs))  # automat's own (private) fallback

class Unhandled(Core):
    machine = machine
    framings = {start: line(b"\\n"), sized: line(b"\\n")}

def connect():
    protocol = Unhandled()
    protocol.clock = Clock()
    protocol.makeConnection(StringTransport())
    return protocol
"""


def test_the_unhandled_transition_still_checks_the_state_data() -> None:
    protocol = _namespace(UNHANDLED)["connect"]()
    with pytest.raises(AssertionError):
        protocol.machine_engine.machine.stop()  # in start: no data, a Size expected


# -- what the change must keep ------------------------------------------------------------------


@pytest.mark.parametrize("cut", [None, 1, 2, 3, 4, 5])
def test_a_switch_from_after_frame_frames_the_rest_of_the_batch_with_the_new_grammar(
    cut: int | None,
) -> None:
    """A switch made from an ``after_frame`` callback (now installed at once) frames every
    byte after the frame, nothing lost or reframed by the old grammar, whatever the cut;
    a second switch in the same callback wins; offsets seen from ``on_frame`` add up."""
    from grammars import fixed, line
    from statewire.framing import Framer

    data = b"a\nxyzb;c\n"
    frames: list[tuple[str, bytes, int]] = []

    def switch_twice() -> None:
        framer.switch(line(b";"))  # installed at once now, then replaced
        framer.switch(fixed(3))

    def on_frame(frame: bytes) -> None:
        frames.append((framer.grammar.describe(), frame, framer.offset))
        if frame == b"a":
            framer.after_frame(switch_twice)
        elif frame == b"xyz":
            framer.switch(line(b";"))
        elif frame == b"b":
            framer.switch(line(b"\n"))

    framer = Framer(line(b"\n"), on_frame)
    for chunk in [data] if cut is None else [data[:cut], data[cut:]]:
        framer.feed(chunk)
    assert [(frame, offset) for _, frame, offset in frames] == [
        (b"a", 2),
        (b"xyz", 5),
        (b"b", 7),
        (b"c", 9),
    ]
    assert frames[1][0] == "fixed(3)"
    assert framer.offset == len(data) and framer.buffered == b""


def test_a_raise_from_after_frame_after_a_switch_leaves_the_switch_and_the_bytes() -> None:
    """The callback switched (at once now, deferred before) and then raised: the error
    reaches the feeder, the grammar is the new one and the next feed frames every byte
    after the frame with it."""
    from grammars import line
    from statewire.framing import Framer

    frames: list[bytes] = []

    def after() -> None:
        framer.switch(line(b";"))
        raise KeyError("after")

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        if frame == b"a":
            framer.after_frame(after)

    framer = Framer(line(b"\n"), on_frame)
    with pytest.raises(KeyError):
        framer.feed(b"a\nb;c;")
    framer.feed(b"")
    assert frames == [b"a", b"b", b"c"]
    assert framer.offset == 6 and framer.buffered == b""
