"""The held-back task of ``start_in_task`` on CPython 3.11
(``statewire.protocols._lazy_task``): a coroutine that ends without asking anything of its
task costs no task; anything asked of it makes it the task it would have been."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
from collections.abc import Callable
from typing import Any

import pytest
from runtime_helpers import error_records

from statewire.protocols import _lazy_task
from statewire.protocols._http_task import start_in_task

pytestmark = pytest.mark.skipif(
    not _lazy_task.AVAILABLE, reason="CPython 3.11's C task (3.12 has its own eager start)"
)


def _run_from_a_callback(body: Callable[[asyncio.AbstractEventLoop], Any]) -> Any:
    """``body(loop)`` from a loop callback (no task current, as a transport's read runs),
    then a few loop turns; what it returned."""

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        loop.call_soon(lambda: done.set_result(body(loop)))
        result = await done
        for _ in range(5):
            await asyncio.sleep(0)
        return result

    return asyncio.run(main())


def test_a_coroutine_that_asks_nothing_of_its_task_costs_none() -> None:
    seen: list[Any] = []

    async def handler() -> None:
        task = asyncio.current_task()
        seen.append(type(task))
        seen.append(task in asyncio.all_tasks())

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        before = len(asyncio.all_tasks(loop))
        assert start_in_task(handler(), lambda: loop) is None
        return len(asyncio.all_tasks(loop)) - before

    with error_records() as errors:
        assert _run_from_a_callback(body) == 0
    assert seen == [_lazy_task.LazyTask, False]  # (never registered, never scheduled)
    assert not errors


@pytest.mark.parametrize(
    "ask",
    [
        "get_name",
        "get_coro",
        "get_loop",
        "done",
        "cancelling",
        "repr",
        "_state",
        "_coro",
        "add_done_callback",
        "get_stack",
        "print_stack",
    ],
)
def test_anything_asked_in_the_first_step_makes_it_a_task_that_ends_at_its_first_turn(
    ask: str,
) -> None:
    seen: list[Any] = []
    callbacks: list[Any] = []

    async def handler() -> None:
        task = asyncio.current_task()
        assert task is not None
        if ask == "repr":
            answer: Any = repr(task)
        elif ask == "add_done_callback":
            answer = task.add_done_callback(callbacks.append)
        elif ask == "print_stack":
            answer = task.print_stack(file=io.StringIO())
        elif ask.startswith("_"):
            answer = getattr(task, ask)
        else:
            answer = getattr(task, ask)()
        seen.extend([task, answer, task in asyncio.all_tasks()])

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        assert start_in_task(handler(), lambda: loop) is None
        task = seen[0]
        assert not task.done()  # (its first turn is still to come, as a task's)
        return task

    with error_records() as errors:
        task = _run_from_a_callback(body)
    assert not errors
    assert type(task) is _lazy_task.Task and isinstance(task, asyncio.Task)
    assert task.done() and task.result() is None and seen[2] is True
    answer = seen[1]
    if ask == "get_name":
        assert isinstance(answer, str) and answer.startswith("Task-")
    elif ask == "get_loop":
        assert isinstance(answer, asyncio.AbstractEventLoop)
    elif ask in ("get_coro", "_coro"):
        assert answer is task.get_coro() and answer is not None
    elif ask == "done":
        assert answer is False
    elif ask == "cancelling":
        assert answer == 0
    elif ask == "repr":
        assert answer.startswith("<Task pending name='Task-")
    elif ask == "_state":
        assert answer == "PENDING"
    elif ask == "add_done_callback":
        assert callbacks == [task]  # called once, at its end
    elif ask == "get_stack":
        assert isinstance(answer, list)


@pytest.mark.parametrize("ends", ["returns", "raises"])
def test_a_task_kept_from_a_first_step_that_ended_is_a_whole_task_done_at_once(
    ends: str,
) -> None:
    kept: list[asyncio.Task[Any]] = []

    async def handler() -> None:
        kept.append(asyncio.current_task())  # type: ignore[arg-type]
        if ends == "raises":
            raise KeyError("in the first step")

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        with pytest.raises(KeyError) if ends == "raises" else contextlib.nullcontext():
            assert start_in_task(handler(), lambda: loop) is None
        (task,) = kept
        assert type(task) is _lazy_task.Task  # (made whole before the call returned)
        assert task.done() and task.result() is None
        return len(asyncio.all_tasks(loop))

    with error_records() as errors:
        assert _run_from_a_callback(body) == 1  # (main's own: this one is done)
    assert not errors
    (task,) = kept  # the loop is closed by now
    # asyncio's own C methods, unbound, find it whole (none reads a missing part)
    assert asyncio.Task.done(task) and not asyncio.Task.cancelled(task)
    assert asyncio.Task.get_coro(task) is task.get_coro() is task._coro
    assert asyncio.Task.get_name(task).startswith("Task-")
    assert isinstance(asyncio.Task.get_loop(task), asyncio.AbstractEventLoop)
    assert not task.cancel() and task.cancelling() == 0
    assert repr(task).startswith("<Task finished name='Task-") and task.get_stack() == []
    task.print_stack(file=io.StringIO())


def test_a_coroutine_that_waits_keeps_its_task_and_is_scheduled_from_there() -> None:
    seen: list[Any] = []

    async def handler(loop: asyncio.AbstractEventLoop) -> None:
        first = asyncio.current_task()
        future = loop.create_future()
        loop.call_soon(future.set_result, "woken")
        seen.append(await future)
        seen.append(asyncio.current_task() is first)

    def body(loop: asyncio.AbstractEventLoop) -> Any:
        task = start_in_task(handler(loop), lambda: loop)
        assert type(task) is _lazy_task.Task and task in asyncio.all_tasks(loop)
        assert not task.done()
        return task

    with error_records() as errors:
        task = _run_from_a_callback(body)
    assert not errors
    assert task.done() and seen == ["woken", True]


def test_a_cancel_asked_in_the_first_step_reaches_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []

    async def handler(loop: asyncio.AbstractEventLoop) -> None:
        task = asyncio.current_task()
        assert task is not None and task.cancel("from itself")
        assert task.cancelling() == 1
        try:
            await loop.create_future()  # never done: the cancel comes first
        except asyncio.CancelledError as error:
            seen.append(f"cancelled {error.args}")
            raise

    with error_records() as errors:
        task = _run_from_a_callback(lambda loop: start_in_task(handler(loop), lambda: loop))
    assert not errors
    assert task.cancelled() and seen == ["cancelled ('from itself',)"]


def test_a_held_task_dropped_unused_says_nothing() -> None:
    # (no "Task was destroyed but it is pending!": it never was a task)
    async def handler() -> None:
        asyncio.current_task()

    with error_records() as errors:
        for _ in range(3):
            _run_from_a_callback(lambda loop: start_in_task(handler(), lambda: loop))
        gc.collect()
    assert not errors


@pytest.mark.parametrize("held", [True, False], ids=["held", "made at once"])
def test_a_cancel_queued_in_the_first_step_reaches_what_the_coroutine_then_awaits(
    held: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the task's first turn comes after what the step queued; the cancel still reaches
    # the awaited task, as when the first turn came first (and as 3.12's eager start)
    if not held:
        monkeypatch.setattr(_lazy_task, "available", lambda loop: False)
    seen: list[Any] = []

    async def handler(loop: asyncio.AbstractEventLoop) -> None:
        task = asyncio.current_task()
        assert task is not None
        inner = loop.create_task(asyncio.sleep(3600))
        loop.call_soon(task.cancel, "stop")
        try:
            await inner
        except asyncio.CancelledError as error:
            seen.extend([inner.cancelled(), error.args])
            raise

    with error_records() as errors:
        task = _run_from_a_callback(lambda loop: start_in_task(handler(loop), lambda: loop))
    assert not errors
    assert task.cancelled() and seen == [True, ("stop",)]


def test_a_swapped_task_class_or_a_loop_of_its_own_making_gets_create_task_s_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[Any] = []

    class Loop(asyncio.SelectorEventLoop):
        def create_task(self, coro: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            made.append(coro)
            return super().create_task(coro, **kwargs)

    async def handler() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        loop.call_soon(lambda: done.set_result(start_in_task(handler(), lambda: loop)))
        task = await done
        assert type(task) is asyncio.Task
        await task

    loop = Loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert len(made) == 2  # (main's task, then the handler's)

    class Swapped(asyncio.Task):  # type: ignore[type-arg]
        pass

    plain = asyncio.new_event_loop()
    try:
        assert _lazy_task.available(plain) and not _lazy_task.available(loop)
        monkeypatch.setattr(asyncio, "Task", Swapped)  # (as nest_asyncio swaps it)
        assert not _lazy_task.available(plain)
    finally:
        plain.close()


def test_a_held_task_is_not_made_by_calling_its_class() -> None:
    with pytest.raises(TypeError):
        _lazy_task.LazyTask()
