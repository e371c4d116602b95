"""Run a handler's coroutine eagerly: its first steps run at once, inside the frame that
started it, and only a coroutine that really waits becomes an asyncio task.

A handler that answers without waiting (the common case: a response written into a
transport that is not congested) then completes inside the output that read the request,
so pipelined requests are answered within one read, with no task, no loop turn and no
hold of the framing per request. Python 3.12's ``eager_start`` does the same; this runs on
3.10 and 3.11 too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any


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
        self._first: Any = waiting
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            return self._first  # what the coroutine already waits for
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._started = True
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


__all__ = ["start"]
