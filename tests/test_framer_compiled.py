"""The framer mypyc compiled against the pure-Python one: the same frames, offsets,
buffers and errors for the same reads, whatever the callbacks do between frames.

The whole suite runs on the framer in use (the compiled one where statewire was built
with mypyc); this module runs both side by side, and checks that an edited source is
never shadowed by a compiled copy of older code.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from process_helpers import assert_runs_pure

import statewire.framing
from grammars import fixed, line, netstring, prefixed, raw
from statewire.framing import _compiled
from statewire.framing import _framer as pure
from statewire.framing.errors import FramingError
from statewire.testing.strategies import chunkings

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


def _compiled_module() -> ModuleType | None:
    if not statewire.framing.compiled():
        return None
    return importlib.import_module("statewire.framing._framer_compiled")


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


@pytest.mark.skipif(_compiled_module() is None, reason=f"not compiled: {_compiled.reason}")
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
    compiled = _compiled_module()
    assert compiled is not None
    reads = data.draw(chunkings(wire))
    assert _session(compiled, start, policy, actions, reads) == _session(
        pure, start, policy, actions, reads
    )


@pytest.mark.skipif(_compiled_module() is None, reason=f"not compiled: {_compiled.reason}")
def test_the_compiled_framer_is_the_one_in_use() -> None:
    compiled = _compiled_module()
    assert compiled is not None
    assert statewire.framing.Framer is compiled.Framer
    assert statewire.framing.Policy is compiled.Policy
    assert compiled.__file__ is not None and not compiled.__file__.endswith(".py")


def test_a_compiled_copy_of_other_source_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    stale = ModuleType("statewire.framing._framer_compiled")
    stale.SOURCE_DIGEST = "0" * 64  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, stale.__name__, stale)
    monkeypatch.delenv("STATEWIRE_PURE", raising=False)
    monkeypatch.setattr(_compiled, "reason", None)
    assert _compiled.load() is None
    assert _compiled.reason is not None and "another version" in _compiled.reason


def test_without_a_compiled_copy_the_reason_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "statewire.framing._framer_compiled", None)
    monkeypatch.delenv("STATEWIRE_PURE", raising=False)
    monkeypatch.setattr(_compiled, "reason", None)
    assert _compiled.load() is None
    assert _compiled.reason is not None and "not built" in _compiled.reason


def test_statewire_pure_runs_the_pure_framer() -> None:
    assert_runs_pure(
        "import statewire.framing as f\n"
        "from statewire.framing import _framer\n"
        "assert f.Framer is _framer.Framer and not f.compiled(), f._compiled.reason\n"
        "frames = []\n"
        "framer = f.Framer(__import__('grammars').line(b'\\n'), frames.append)\n"
        "framer.feed(bytearray(b'one\\ntwo\\n'))\n"
        "assert frames == [b'one', b'two'], frames\n"
        "print('pure')\n"
    )
