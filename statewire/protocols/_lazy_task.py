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

Only with CPython's own task (``_asyncio.Task``), which allows an object made but not
initialised; elsewhere :data:`AVAILABLE` is false and the caller makes its task at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any

#: CPython 3.11's C task (3.12 has its own eager start; the pure-Python task cannot be
#: left uninitialised)
AVAILABLE = sys.version_info[:2] == (3, 11) and asyncio.Task.__module__ == "_asyncio"

#: what a task offers that a held-back one answers only by becoming one first: every
#: method and attribute of ``asyncio.Task`` and ``asyncio.Future`` but the object's own
#: making and finalising
_KEPT = {"__new__", "__init__", "__del__", "__doc__", "__class_getitem__"}


class _Slots(asyncio.Task):  # type: ignore[type-arg]
    """The layout the three kinds share, so that a held-back task can become another."""

    __slots__ = ("_sw_ended", "_sw_start")
    #: what the task runs, on which loop, in which context (``None`` once a Task)
    _sw_start: tuple[Coroutine[Any, Any, None], asyncio.AbstractEventLoop, Any] | None
    #: its coroutine ended in its first step, before it was needed as a task
    _sw_ended: bool

    def end(self) -> None:
        """(A task already: its coroutine's end is its own.)"""

    def become(self) -> None:
        """(A task already.)"""


class Task(_Slots):
    """What a :class:`LazyTask` becomes when it is needed before its coroutine ended: an
    asyncio task with nothing of its own."""

    __slots__ = ()


class EndedTask(_Slots):
    """What a :class:`LazyTask` becomes when it is needed after its coroutine ended in
    its first step: done, its result ``None``, as the task the eager start made before
    was once its first turn had run (never scheduled: a loop closed since is no matter).
    Only its future's part is initialised, so its coroutine is kept here."""

    __slots__ = ()

    @property
    def _coro(self) -> Any:
        return self.get_coro()

    def get_coro(self) -> Any:
        assert self._sw_start is not None  # (kept: the future alone was initialised)
        return self._sw_start[0]


class LazyTask(_Slots):
    """A task object whose initialisation waits for :meth:`become` (see the module)."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - unused
        raise TypeError("LazyTask is made by held(), not called")

    def end(self) -> None:
        """The coroutine ended in its first step (returned or raised): the task, if it is
        ever needed, is one that ended so."""
        self._sw_ended = True

    def become(self) -> None:
        """Be the task at once: a :class:`Task`, scheduled, or after :meth:`end` an
        :class:`EndedTask`."""
        assert self._sw_start is not None  # (a LazyTask's own until it becomes another)
        coro, loop, context = self._sw_start
        kind: type[_Slots]
        if self._sw_ended:
            asyncio.Future.__init__(self, loop=loop)
            asyncio.Task.set_name(self, "Task (ended in its first step)")
            asyncio.Future.set_result(self, None)  # (a task's own set_result refuses)
            kind = EndedTask
        else:
            self._sw_start = None
            init: Any = asyncio.Task.__init__  # (typeshed's lacks 3.11's context=)
            init(self, coro, loop=loop, context=context)
            kind = Task
        self.__class__ = kind  # type: ignore[assignment]


def held(
    coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop, context: contextvars.Context
) -> LazyTask:
    """A held-back task that, once it becomes one, runs ``coro`` (on ``loop``, in
    ``context``), as ``loop.create_task(coro, context=context)`` would have."""
    task = LazyTask.__new__(LazyTask)
    task._sw_start = (coro, loop, context)
    task._sw_ended = False
    return task


def _becoming(name: str) -> Any:
    """``asyncio.Task``'s ``name``, reached only after the held-back task became one."""
    member = getattr(asyncio.Task, name)
    if hasattr(member, "__get__") and not callable(member):
        # an attribute (a getset or member descriptor): read and written through it
        def get(self: LazyTask) -> Any:
            self.become()
            return member.__get__(self, Task)

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
    for _name in set(vars(asyncio.Task)) | set(vars(asyncio.Future)):
        if _name not in _KEPT:
            setattr(LazyTask, _name, _becoming(_name))


__all__ = ["AVAILABLE", "LazyTask", "held"]
