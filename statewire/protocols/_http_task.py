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


class _Resume:
    """Awaitable that carries on driving ``coro`` from where it first waited."""

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.coro = coro
        self.waiting = waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                sent = yield waiting  # the task waits for what the coroutine waits for
            except BaseException as error:  # cancellation included: hand it on
                try:
                    waiting = coro.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration:
                    return


async def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    await _Resume(coro, waiting)


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
    return loop().create_task(_resume(coro, waiting))


__all__ = ["start"]
