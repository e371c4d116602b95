"""The framing modules mypyc compiled against the pure-Python ones.

The whole suite runs on the modules in use (the compiled ones where statewire was built
with mypyc). Here: the compiled framer and the pure one side by side on the same reads,
whatever the callbacks do between frames; the framing suites run again in a process of
their own on the pure modules (``STATEWIRE_PURE=1``); and the compiled modules are put in
place all or none, never when built from other sources.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from construct import Construct, StreamError
from hypothesis import given, settings
from hypothesis import strategies as st
from process_helpers import ROOT, assert_runs_pure

import statewire.framing
from grammars import TruncatedError, fixed, line, netstring, prefixed, raw
from statewire.framing import _compiled
from statewire.framing.errors import FramingError
from statewire.testing.strategies import chunkings

FRAMING = Path(statewire.framing.__file__).resolve().parent
NOT_COMPILED = pytest.mark.skipif(
    not statewire.framing.compiled(), reason=f"not compiled: {_compiled.reason}"
)


def _pure_framer() -> ModuleType:
    """``_framer.py`` run as pure Python, under a name of its own (its decoders are the
    ones in use)."""
    spec = importlib.util.spec_from_file_location(
        "statewire.framing._framer_pure", FRAMING / "_framer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAMMARS = [
    line(b"\n", max_length=8),
    line(b"\r\n", max_length=30),
    netstring(max_length=12),
    prefixed(1, max_length=20),
    fixed(3),
    raw(),
]

#: what a callback may do with the frame it was given (an action and its argument)
ACTIONS = st.one_of(
    st.just(("nothing", 0)),
    st.tuples(st.just("switch"), st.integers(0, len(GRAMMARS) - 1)),
    st.tuples(st.just("take"), st.integers(0, 6)),
    st.tuples(st.just("peek"), st.integers(1, 6)),
    st.tuples(st.just("unread"), st.integers(1, 3)),
    st.tuples(st.just("pause"), st.just(0)),
    st.tuples(st.just("interrupt"), st.just(0)),
    st.tuples(st.just("clear"), st.just(0)),
    st.tuples(st.just("raise"), st.just(0)),
    st.tuples(st.just("after"), st.just(0)),
)


def _session(
    module: ModuleType, start: int, policy: str, actions: list[tuple[str, int]], reads: list[bytes]
) -> list[Any]:
    """What one framer of ``module`` does with ``reads``: every frame with its offset and
    buffer, every error, every result of a take or peek, and the state at the end."""
    seen: list[Any] = []
    script = iter(actions)
    framer: Any = None

    def on_frame(frame: Any) -> None:
        seen.append(("frame", bytes(frame), framer.offset, framer.buffered))
        action, argument = next(script, ("nothing", 0))
        if action == "switch":
            framer.switch(GRAMMARS[argument])
        elif action == "take":
            seen.append(("took", framer.take_ahead(argument)))
        elif action == "peek":
            seen.append(("peeked", framer.peek_ahead(argument)))
        elif action == "unread" and isinstance(frame, bytes) and frame:
            framer.unread(frame[-argument:])
        elif action == "pause":
            framer.pause()
        elif action == "interrupt":
            framer.interrupt()
        elif action == "clear":
            seen.append(("cleared", framer.clear()))
        elif action == "raise":
            raise ValueError("from the callback")
        elif action == "after":
            framer.after_frame(lambda: seen.append(("after", framer.offset)))

    def on_error(error: FramingError) -> None:
        seen.append(("error", type(error).__name__, str(error)))

    framer = module.Framer(
        GRAMMARS[start], on_frame, on_error=on_error, policy=getattr(module.Policy, policy)
    )

    def attempt(call: Any, *args: Any) -> None:
        try:
            call(*args)
        except (ValueError, FramingError) as error:
            seen.append(("raised", type(error).__name__, str(error)))

    for data in reads:
        if framer.error is not None:
            break
        attempt(framer.feed, data)
        for _ in range(64):  # (a callback may pause again at each frame)
            if not framer.paused or framer.error is not None:
                break
            attempt(framer.resume)
    seen.append(("end", framer.offset, framer.buffered, repr(framer.error)))
    return seen


@NOT_COMPILED
@settings(max_examples=300)
@given(
    start=st.integers(0, len(GRAMMARS) - 1),
    policy=st.sampled_from(["CLOSE", "DISCARD"]),
    actions=st.lists(ACTIONS, max_size=12),
    wire=st.lists(
        st.sampled_from([b"ab\n", b"\r\n", b"3:abc,", b"\x03xyz", b"0:,", b"longer than eight\n"])
        | st.binary(max_size=6),
        max_size=8,
    ).map(b"".join),
    data=st.data(),
)
def test_the_compiled_framer_does_what_the_pure_one_does(
    start: int,
    policy: str,
    actions: list[tuple[str, int]],
    wire: bytes,
    data: st.DataObject,
) -> None:
    compiled, pure = sys.modules["statewire.framing._framer"], PURE
    assert compiled.__name__ == "statewire.framing._framer_compiled"
    reads = data.draw(chunkings(wire))
    assert _session(compiled, start, policy, actions, reads) == _session(
        pure, start, policy, actions, reads
    )


@NOT_COMPILED
def test_the_compiled_modules_are_the_ones_in_use() -> None:
    for name in _compiled.MODULES:
        module = sys.modules[f"statewire.framing.{name}"]
        assert module.__name__ == f"statewire.framing.{name}_compiled"
        assert module.__file__ is not None and not module.__file__.endswith(".py")
        assert getattr(statewire.framing, name) is module
    assert statewire.framing.Framer is sys.modules["statewire.framing._framer"].Framer


def test_the_framing_suites_pass_on_the_pure_modules() -> None:
    suites = ["test_framing.py", "test_framing_properties.py", "test_framing_take_ahead.py"]
    suites += ["test_framing_unread.py", "test_framing_after.py", "test_hardening_framing.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [f"tests/{name}" for name in suites],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "STATEWIRE_PURE": "1"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


def _fakes(monkeypatch: pytest.MonkeyPatch, stale: str | None) -> dict[str, ModuleType]:
    """Compiled copies made up for :func:`_compiled.install` to find, the pure modules not
    imported yet (all put back after the test); ``stale``'s stamp names other sources."""
    monkeypatch.delenv("STATEWIRE_PURE", raising=False)
    monkeypatch.setattr(_compiled, "reason", _compiled.reason)
    fakes = {}
    for name in _compiled.MODULES:
        fake = ModuleType(f"statewire.framing.{name}_compiled")
        digest = _compiled.digest(FRAMING)
        fake.SOURCE_DIGEST = "0" * 64 if name == stale else digest  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, fake.__name__, fake)
        monkeypatch.delitem(sys.modules, f"statewire.framing.{name}", raising=False)
        monkeypatch.setattr(statewire.framing, name, getattr(statewire.framing, name, None))
        fakes[name] = fake
    return fakes


def test_compiled_modules_of_the_current_sources_are_put_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = _fakes(monkeypatch, stale=None)
    assert _compiled.install()
    assert _compiled.reason is None
    for name, fake in fakes.items():
        assert sys.modules[f"statewire.framing.{name}"] is fake
        assert getattr(statewire.framing, name) is fake


def test_one_copy_of_other_sources_and_none_is_put_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fakes(monkeypatch, stale="_line")
    assert not _compiled.install()
    assert _compiled.reason is not None and "other sources" in _compiled.reason
    assert not any(f"statewire.framing.{name}" in sys.modules for name in _compiled.MODULES)


def test_not_put_in_place_over_pure_modules_imported_already(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fakes(monkeypatch, stale=None)
    pure = ModuleType("statewire.framing._decoder")
    monkeypatch.setitem(sys.modules, pure.__name__, pure)
    assert not _compiled.install()
    assert _compiled.reason is not None and "imported before" in _compiled.reason
    assert "statewire.framing._framer" not in sys.modules


def test_without_compiled_copies_the_reason_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    _fakes(monkeypatch, stale=None)
    monkeypatch.setitem(sys.modules, "statewire.framing._resp_compiled", None)
    assert not _compiled.install()
    assert _compiled.reason is not None and "not built" in _compiled.reason


def test_statewire_pure_runs_the_pure_modules() -> None:
    assert_runs_pure(
        "import sys\n"
        "import statewire.framing as f\n"
        "assert not f.compiled(), f._compiled.reason\n"
        "assert sys.modules['statewire.framing._framer'].__file__.endswith('_framer.py')\n"
        "frames = []\n"
        "framer = f.Framer(__import__('grammars').line(b'\\n'), frames.append)\n"
        "framer.feed(bytearray(b'one\\ntwo\\n'))\n"
        "assert frames == [b'one', b'two'], frames\n"
        "print('pure')\n"
    )


PURE = _pure_framer()


def test_the_stamp_is_of_every_source_of_the_package(tmp_path: Path) -> None:
    for source in FRAMING.glob("*.py"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    before = _compiled.digest(tmp_path)
    assert before == _compiled.digest(FRAMING)
    (tmp_path / "_line_compiled.py").write_text("# a copy setup.py left: not a source\n")
    assert _compiled.digest(tmp_path) == before
    errors = tmp_path / "errors.py"  # not compiled, but the compiled code counts on it
    errors.write_bytes(errors.read_bytes() + b"\n")
    assert _compiled.digest(tmp_path) != before
    assert _compiled.digest(tmp_path / "empty") is None


class _Index:
    """A size that is an integer by ``__index__`` only (a NumPy integer, say)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_unread_takes_bytes_like_data_and_sizes_take_any_index() -> None:
    seen: list[Any] = []
    framer: Any = None

    def on_frame(frame: bytes) -> None:
        seen.append(frame)
        if frame == b"ab":
            seen.append(framer.peek_ahead(_Index(2)))
            seen.append(framer.take_ahead(_Index(2)))
        elif frame == b"ef":
            framer.unread(bytearray(b"f"))

    framer = statewire.framing.Framer(fixed(2), on_frame)
    framer.feed(memoryview(b"abcdef"))
    assert seen == [b"ab", b"cd", b"cd", b"ef"]
    assert framer.buffered == b"f"


def test_the_stamp_covers_the_loader_itself(tmp_path: Path) -> None:
    for source in FRAMING.glob("*.py"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    before = _compiled.digest(tmp_path)
    loader = tmp_path / "_compiled.py"  # (its list says which modules are compiled)
    loader.write_bytes(loader.read_bytes() + b"\n")
    assert _compiled.digest(tmp_path) != before


@NOT_COMPILED
def test_a_reloaded_package_keeps_the_compiled_modules() -> None:
    framer = statewire.framing.Framer
    importlib.reload(statewire.framing)
    assert statewire.framing.compiled(), _compiled.reason
    assert statewire.framing.Framer is framer


def test_a_pickled_policy_names_the_module_every_process_has() -> None:
    policy = statewire.framing.Policy
    assert policy.__module__ == "statewire.framing._framer"
    assert pickle.loads(pickle.dumps(policy.CLOSE)) is policy.CLOSE


class _Short(Construct):  # type: ignore[misc]
    """Three bytes, read short with a ``TruncatedError`` that does not say how far."""

    def _parse(self, stream: Any, context: Any, path: str) -> bytes:
        data = stream.read(3)
        if len(data) < 3:
            raise TruncatedError("short", needed=None)  # type: ignore[arg-type]
        return bytes(data)


def test_a_truncated_error_without_a_length_waits_for_more() -> None:
    frames: list[Any] = []
    framer = statewire.framing.Framer(_Short(), frames.append)
    for read in (b"a", b"bc", b"d"):
        framer.feed(read)
    assert frames == [b"abc"]
    assert framer.buffered == b"d"


class _TwoByIndex(Construct):  # type: ignore[misc]
    """Two bytes, read with a size that is an integer by ``__index__`` only."""

    def _parse(self, stream: Any, context: Any, path: str) -> bytes:
        data = stream.read(_Index(2))
        if len(data) < 2:
            raise StreamError("short")
        return bytes(data)


def test_a_read_size_that_is_an_integer_by_index_only() -> None:
    frames: list[Any] = []
    framer = statewire.framing.Framer(_TwoByIndex(), frames.append)
    framer.feed(b"abc")
    assert frames == [b"ab"]
    assert framer.buffered == b"c"
