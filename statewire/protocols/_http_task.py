"""Run a handler's coroutine eagerly: its first steps run at once, inside the frame that
started it, and only a coroutine that really waits becomes an asyncio task.

A handler that answers without waiting (the common case: a response written into a
transport that is not congested) then completes inside the output that read the request,
so pipelined requests are answered within one read, with no task, no loop turn and no
hold of the framing per request. Python 3.12's ``eager_start`` does the same; this runs on
3.10 and 3.11 too.

A handler's task that still runs once its request was read is what the connection waits
for (:class:`Waited`), until the task ends or the response is complete, whichever comes
first: a handler at work after its response does not hold the next request.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import contextvars
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from statewire.protocols import _lazy_task

#: Python 3.12's own eager start of a task (``Task(..., eager_start=True)``)
_NATIVE_EAGER = sys.version_info >= (3, 12)
#: a task made in a context of our choosing (``create_task(..., context=)``: 3.11)
_TASK_CONTEXT = sys.version_info >= (3, 11)
#: what makes a task the current one while its coroutine's first step runs outside it
#: (asyncio's own bookkeeping, as ``Task.__step`` uses it; absent: no eager start in a task)
_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)
#: ``_Resume``'s first step when the coroutine was not started before it, and when it
#: finished in the step run before the task's (what it waits for may be ``None``: a bare
#: ``yield``, as ``asyncio.sleep(0)``'s)
_NOT_STARTED = object()
_FINISHED = object()


class _Resume(Coroutine[Any, Any, None]):
    """The rest of ``coro``, from where it first waited, as the coroutine a task drives.

    A coroutine object of its own rather than an ``async def`` around ``coro``: a task
    cancelled before its first step throws into the coroutine it drives without starting
    it, and an ``async def`` wrapper never started would leave ``coro`` suspended, its
    ``finally`` blocks and ``async with`` exits run only by the garbage collector (and
    an ``async for`` in it reported as "asynchronous generator is already running").
    Here the first step hands the task what ``coro`` waits for, and everything else,
    that early cancellation included, goes to ``coro`` itself."""

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        #: what the coroutine waits for after its first step (``_NOT_STARTED``: its first
        #: step is the task's; ``_FINISHED``: it finished in that step)
        self._first: Any = waiting
        self._started = False
        #: what the coroutine's first step, run before the task's, raised for the task
        #: to end with (a ``CancelledError``: the task ends cancelled, as if its own)
        self._raised: BaseException | None = None

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            first = self._first
            if first is _FINISHED:  # (in the step run before the task's: start_in_task)
                raised, self._raised = self._raised, None
                if raised is not None:
                    raise raised
                raise StopIteration
            if first is not _NOT_STARTED:
                return first  # what the coroutine already waits for
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if not self._started:
            first = self._first
            self._started = True
            if first is _FINISHED:
                # cancelled before its first turn, its coroutine already done: the task
                # ends with what was thrown (the coroutine cannot take it any more)
                raise typ if val is None else val
            error = typ if val is None else val
            if (
                isinstance(error, asyncio.CancelledError)
                and first is not _NOT_STARTED
                and getattr(first, "_asyncio_future_blocking", False)
                and first.cancel(*error.args[:1])
            ):
                # cancelled before its first turn took the future the coroutine waits
                # for: that future is cancelled, as the task would have cancelled it
                # (Python 3.12's eager start too), and waited for as before
                return first
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - asyncio throws one

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, None]:
        raise TypeError("_Resume is driven by its task only")  # pragma: no cover


def start(
    coro: Coroutine[Any, Any, None], loop: Callable[[], asyncio.AbstractEventLoop]
) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first waits; ``None`` if it finished, else the task, on the
    event loop ``loop()`` gives, that finishes it (so a coroutine that never waits needs
    no loop at all). An exception it raises before waiting propagates."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return loop().create_task(_Resume(coro, waiting))


def start_in_task(
    coro: Coroutine[Any, Any, None], loop: Callable[[], asyncio.AbstractEventLoop]
) -> asyncio.Task[None] | None:
    """:func:`start` with a task from the first step: ``coro`` runs at once until it first
    waits, as the current task of its own (``asyncio.current_task()`` is it: anyio's task
    groups and cancel scopes, under Starlette and FastAPI, work), in that task's context;
    ``None`` if it finished (its task, if the coroutine kept it, is then done), else the
    task, which goes on from there. Python 3.12's ``eager_start``; on 3.11 the same by
    asyncio's own task bookkeeping, the task held back until it is needed
    (:mod:`statewire.protocols._lazy_task`: a coroutine that finishes without asking
    anything of its task costs none). Where a task is running already (bytes fed
    from inside one), where the loop has a task factory (instrumentation that wraps
    coroutines), and before Python 3.11, the coroutine starts as a task's first step, as
    ``create_task`` starts it. A ``CancelledError`` it raises before waiting ends its task
    cancelled (the task is returned); any other exception propagates."""
    running = loop()
    if running.get_task_factory() is not None or not _TASK_CONTEXT:
        # a factory (instrumentation) gets the coroutine itself, as create_task gives it;
        # before 3.11 a task cannot be made in a context of ours: a task's first step
        return running.create_task(coro)
    context = contextvars.copy_context()
    if _NATIVE_EAGER:  # pragma: no cover - on Python 3.12 and later
        task: asyncio.Task[None] = asyncio.Task(  # type: ignore[call-arg]
            coro, loop=running, context=context, eager_start=True
        )
        if not task.done() or task.cancelled():
            return task  # (cancelled: what waits for it is told so, as below)
        task.result()  # (an exception propagates, as from start())
        return None
    if _enter_task is None or _leave_task is None or asyncio.tasks.current_task(running):
        return running.create_task(coro, context=context)  # type: ignore[call-arg]  # pragma: no cover
    resume = _Resume(coro, _NOT_STARTED)
    lazy: _lazy_task.LazyTask | None
    if _lazy_task.available(running):
        # held back: a task (scheduled, registered) only if the step asks for one or
        # the coroutine waits; a coroutine that answers at once costs no task at all
        lazy = _lazy_task.held(resume, running, context)
        task = lazy
        references = sys.getrefcount(lazy)  # (this frame's own)
    else:
        lazy, task = None, running.create_task(resume, context=context)  # type: ignore[call-arg]
    _enter_task(running, task)
    try:
        resume._first = context.run(coro.send, None)
    except StopIteration:
        resume._first = _FINISHED
        return None  # (a task it became ends at its first turn, with nothing to do)
    except asyncio.CancelledError as error:
        # the application cancelled itself: its task ends cancelled, as a task's own
        # first step would have ended it (what waits for it is told so)
        resume._first, resume._raised = _FINISHED, error
    except BaseException:
        resume._first = _FINISHED
        raise
    finally:
        _leave_task(running, task)
        if (
            lazy is not None
            and resume._first is _FINISHED
            and resume._raised is None
            and sys.getrefcount(lazy) > references
        ):
            # ended in its first step (returned, or raised to the caller) and kept by
            # something (a reference beyond this frame's): made a whole task, done
            # (else it is dropped with this frame)
            lazy.end()
    if lazy is not None:
        lazy.become()
    return task


class Waited(Awaitable[None]):
    """A handler's task as the framing waits for it once the request was read (see
    ``statewire.machine``'s waiting: anything with ``add_done_callback``): done when the
    task is, or once released (:meth:`release`) when the response is complete first.
    Cancelling the wait (the connection lost) cancels the task only if its handler is to
    be cancelled then (``cancel_on_disconnect``); else the task goes on, told of the loss,
    as ``asyncio.shield`` would leave it, without its future and the loop turn it costs."""

    __slots__ = ("_callbacks", "_cancels", "_released", "_task")

    def __init__(self, task: asyncio.Task[None], cancels: bool) -> None:
        self._task = task
        self._cancels = cancels
        self._released = False
        self._callbacks: list[Callable[[Waited], object]] | None = []
        task.add_done_callback(self._fire)

    def __await__(self) -> Generator[Any, None, None]:  # pragma: no cover - not awaited
        return asyncio.shield(self._task).__await__()

    def _fire(self, _: object = None) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)

    def release(self) -> None:
        """The response is complete: the wait ends (its callbacks run a loop turn later,
        as a task's do), the task goes on."""
        if self._callbacks is not None and not self._released:
            self._released = True
            self._task.get_loop().call_soon(self._fire)

    def add_done_callback(self, callback: Callable[[Waited], object]) -> None:
        if self._callbacks is None:
            callback(self)
        else:
            self._callbacks.append(callback)

    def done(self) -> bool:
        return self._released or self._task.done()

    def cancel(self) -> bool:
        if self._released or not self._cancels:
            return False  # the task goes on: its handler is told of the loss instead
        return self._task.cancel()

    def cancelled(self) -> bool:
        return not self._released and self._task.cancelled()

    def exception(self) -> BaseException | None:
        return None if self._released else self._task.exception()


__all__ = ["Waited", "start", "start_in_task"]
