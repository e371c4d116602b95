"""A task that becomes an asyncio task only once something needs one: Python 3.12's eager
start, as far as it saves work, on Python 3.11.

:func:`statewire.protocols._http_task.start_in_task` runs a handler's coroutine at once,
as the current task of its own (anyio's cancel scopes and task groups look for one). On
Python 3.11 that task is made before the coroutine's first step; made, it is scheduled,
so even a handler that answered without waiting costs a task's registration, a loop
turn's callback and an empty step. Here the current task during that first step is a
:class:`LazyTask`: a task object (its identity, ``isinstance`` and the current task's slot
are a task's) whose asyncio initialisation is held back. If the coroutine finishes in
that step and nothing asked anything of its task, the object is dropped, never
scheduled, never in ``asyncio.all_tasks()``. The first use of anything a task offers
(``cancel()``, ``cancelling()``, ``add_done_callback()``, ``get_name()``, its ``repr``,
awaiting it, any of its attributes) makes it a task at once (:meth:`LazyTask.become`), the
same task the eager start made before: scheduled, its first step the coroutine's next
(:class:`~statewire.protocols._http_task` gives it the coroutine's rest). A coroutine that
waits makes it a task too, once its first step is over.

Only with CPython 3.11's C task (which allows an object made but not initialised), and
while ``asyncio.Task`` is still that task and the loop's ``create_task`` asyncio's or
uvloop's own (:func:`available`); elsewhere (a library that swaps the task class, as
``nest_asyncio`` does, or a loop that makes its tasks its own way) the caller makes its
task with ``create_task``, as before.

A coroutine that ended in its first step leaves a task that something kept (any reference
to it beyond :func:`~statewire.protocols._http_task.start_in_task`'s own) made whole at
once: done, never scheduled (initialised on a stand-in loop that drops its first step,
then its future's part on its own loop), so that no uninitialised task outlives the step.

What differs from a task made at once: during that first step the task is not in
``asyncio.all_tasks()``, its type is a subclass of ``asyncio.Task``, and asyncio's C
methods called unbound on it (``asyncio.Task.get_coro(task)``, rather than
``task.get_coro()``) find it uninitialised: they raise, and ``get_coro`` reads a missing
coroutine (do not). A task kept from a first step its coroutine ended in is done at once
(as under 3.12's eager start), not after a first turn. A coroutine that waits has its
task's first turn queued once its first step is over, after what that step queued (a
task made at once had it queued before): a cancel queued by that step without asking
anything of the task reaches it after those callbacks (what it waits for is then
cancelled if it is still pending).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any

#: CPython 3.11's C task and future, as they were at import (3.12 has its own eager
#: start; the pure-Python task cannot be left uninitialised)
_C_TASK: Any = asyncio.Task
_C_FUTURE: Any = asyncio.Future
AVAILABLE = (
    sys.version_info[:2] == (3, 11)
    and _C_TASK.__module__ == "_asyncio"
    and _C_FUTURE.__module__ == "_asyncio"
)

#: what a task offers that a held-back one answers only by becoming one first: every
#: method and attribute of ``asyncio.Task`` and ``asyncio.Future`` but the object's own
#: making and finalising
_KEPT = {"__new__", "__init__", "__del__", "__doc__", "__class_getitem__"}


class _Keeper:
    """A stand-in loop a task is initialised on to be made complete without being
    scheduled: the first step the task asks it to schedule is dropped."""

    __slots__ = ()

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Callable[[], object], *args: Any, context: Any = None) -> None:
        pass


_KEEPER = _Keeper()


class _Slots(_C_TASK):  # type: ignore[misc]
    """The layout both kinds share, so that a held-back task can become the other."""

    __slots__ = ("_sw_start",)
    #: what the task runs, on which loop, in which context (``None`` once a Task)
    _sw_start: tuple[Coroutine[Any, Any, None], asyncio.AbstractEventLoop, Any] | None

    def end(self) -> None:
        """(A task already: its coroutine's end is its own.)"""

    def become(self) -> None:
        """(A task already.)"""


class Task(_Slots):
    """What a :class:`LazyTask` becomes: an asyncio task with nothing of its own."""

    __slots__ = ()


class LazyTask(_Slots):
    """A task object whose initialisation waits for :meth:`become` (see the module)."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("LazyTask is made by held(), not called")

    def end(self) -> None:
        """The coroutine ended in its first step (returned or raised) and something keeps
        its task: made at once a whole task that ended so, done, never scheduled (nothing
        holds an uninitialised task past its first step): initialised on a stand-in loop
        that drops its first step, then its future's part again on its own loop."""
        coro, loop, context = self._started()
        _C_TASK.__init__(self, coro, loop=_KEEPER, context=context)
        _C_FUTURE.__init__(self, loop=loop)
        _C_FUTURE.set_result(self, None)  # (a task's own set_result refuses)
        self._became()

    def become(self) -> None:
        """Be the task at once: scheduled, its first step the coroutine's next."""
        coro, loop, context = self._started()
        _C_TASK.__init__(self, coro, loop=loop, context=context)
        self._became()

    def _started(self) -> tuple[Coroutine[Any, Any, None], asyncio.AbstractEventLoop, Any]:
        start = self._sw_start
        assert start is not None  # (a LazyTask's own until it becomes a Task)
        return start

    def _became(self) -> None:
        self._sw_start = None  # (only now: a failure before leaves it to try again)
        self.__class__ = Task


def available(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`held` may stand for ``loop.create_task``: on CPython 3.11's C task,
    still ``asyncio.Task``, on a loop whose ``create_task`` is asyncio's or uvloop's."""
    if not AVAILABLE or asyncio.Task is not _C_TASK or asyncio.Future is not _C_FUTURE:
        return False
    plain = _PLAIN.get(type(loop))
    if plain is None:
        plain = _PLAIN[type(loop)] = _plain_create_task(type(loop))
    return plain


#: loop classes, and whether their ``create_task`` is asyncio's or uvloop's own
_PLAIN: dict[type, bool] = {}


def _plain_create_task(kind: type) -> bool:
    create = getattr(kind, "create_task", None)
    if create is asyncio.BaseEventLoop.create_task:
        return True
    uvloop = sys.modules.get("uvloop")
    return uvloop is not None and create is getattr(uvloop.Loop, "create_task", None)


def held(
    coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop, context: contextvars.Context
) -> LazyTask:
    """A held-back task that, once it becomes one, runs ``coro`` (on ``loop``, in
    ``context``), as ``loop.create_task(coro, context=context)`` would have."""
    task = LazyTask.__new__(LazyTask)
    task._sw_start = (coro, loop, context)
    return task


def _becoming(name: str) -> Any:
    """``asyncio.Task``'s ``name``, reached only after the held-back task became one."""
    member = getattr(_C_TASK, name)
    if hasattr(member, "__get__") and not callable(member):
        # an attribute (a getset or member descriptor): read and written through it
        def get(self: LazyTask) -> Any:
            self.become()
            return member.__get__(self, _C_TASK)

        def put(self: LazyTask, value: Any) -> None:
            self.become()
            member.__set__(self, value)

        return property(get, put)

    def method(self: LazyTask, *args: Any, **kwargs: Any) -> Any:
        self.become()
        return member(self, *args, **kwargs)

    method.__name__ = name
    return method


if AVAILABLE:
    for _name in set(vars(_C_TASK)) | set(vars(_C_FUTURE)):
        if _name not in _KEPT:
            setattr(LazyTask, _name, _becoming(_name))


__all__ = ["AVAILABLE", "LazyTask", "Task", "available", "held"]
