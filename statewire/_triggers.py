"""The reactor's system event triggers: Twisted's ``addSystemEventTrigger`` for its
``"shutdown"`` event (part of :class:`~statewire._reactor.Reactor`).

A shutdown runs three phases, as Twisted's does:

* ``"before"``: the triggers run first, before anything is closed. What one returns that
  can be awaited (a coroutine, a future, anything with ``__await__``) is awaited, all of
  them together, before the shutdown goes on (Twisted waits for their ``Deferred``\\ s).
* ``"during"``: the triggers run as the ports stop and the connections are told to close
  (Twisted's own closing is a ``"during"`` trigger); what they return is not awaited (an
  awaitable is started as a task of its own).
* ``"after"``: the triggers run once every connection has closed (or was aborted). What
  one returns that can be awaited is awaited before the shutdown ends, so before
  ``run()`` returns. Twisted ignores what an ``"after"`` trigger returns; statewire waits,
  because that is where cleanup that must follow the connections belongs.

A second SIGINT or SIGTERM during the shutdown stops its waits: the one under way and the
ones after it, as it aborts the connections (the factories' ``afterServing``, such as an
ASGI application's ``lifespan.shutdown``, is then not waited for either).

A trigger that raises (or whose awaitable raises) is logged with its traceback and the
shutdown goes on. Triggers stay registered from one shutdown to the next (a reactor that
runs again fires them again) until :meth:`SystemEvents.remove` takes them out.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("statewire")

PHASES = ("before", "during", "after")

#: a registered trigger: its phase, what it calls, and with what
Trigger = tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def call_hook(
    awaitables: list[Any], what: tuple[Any, ...], f: Callable[..., Any], *args: Any, **kw: Any
) -> None:
    """Call ``f(*args, **kw)``, one step of a shutdown: what it raises is logged (``what``
    it is: a format and its arguments) and the shutdown goes on; what it returns to await
    is added to ``awaitables``."""
    try:
        result = f(*args, **kw)
    except Exception:
        log.exception(what[0] + " raised", *what[1:])
        return
    if inspect.isawaitable(result):
        awaitables.append(result)


class SystemEvents:
    """The triggers registered for the reactor's shutdown, by identifier."""

    def __init__(self) -> None:
        self._triggers: dict[int, Trigger] = {}
        self._next = 0
        #: the wait for the awaitables of a phase, while one runs (a second signal
        #: cancels it: :meth:`stop_waiting`)
        self._waiting: asyncio.Future[Any] | None = None
        self._stopped = False
        self._during: set[asyncio.Future[Any]] = set()

    def add(
        self,
        phase: str,
        event: str,
        f: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> int:
        """Register ``f(*args, **kwargs)`` for ``event``'s ``phase``; its identifier."""
        if event != "shutdown":
            raise ValueError(
                f"statewire's reactor fires only 'shutdown' triggers, not {event!r} "
                "(callWhenRunning runs code once the reactor runs)"
            )
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
        if not callable(f):
            raise TypeError(f"a system event trigger must be callable, not {f!r}")
        self._next += 1
        self._triggers[self._next] = (phase, f, args, kwargs)
        return self._next

    def remove(self, identifier: int) -> None:
        """Take out the trigger ``add`` returned ``identifier`` for; ``ValueError`` if
        there is none (removed already), as Twisted."""
        if self._triggers.pop(identifier, None) is None:
            raise ValueError(f"no system event trigger {identifier!r}")

    def fire(self, phase: str) -> list[Any]:
        """Run ``phase``'s triggers, in the order they were added; the awaitables they
        returned."""
        awaitables: list[Any] = []
        for identifier, (when, f, args, kwargs) in list(self._triggers.items()):
            if when == phase and identifier in self._triggers:  # (one may remove another)
                call_hook(awaitables, ("%s shutdown trigger %r", phase, f), f, *args, **kwargs)
        return awaitables

    def fire_during(self) -> None:
        """Run the ``"during"`` triggers; what they return to await runs on its own (a
        coroutine is not left unawaited), not waited for."""
        for awaitable in self.fire("during"):
            task = asyncio.ensure_future(awaitable)
            self._during.add(task)  # (held while it runs: a task only weakly referenced
            task.add_done_callback(self._during.discard)  # could be collected)

    async def fire_and_wait(self, phase: str) -> None:
        """Run ``phase``'s triggers, then wait for what they returned to await."""
        await self.wait(self.fire(phase), f"the {phase} shutdown triggers")

    async def wait(self, awaitables: list[Any], what: str) -> None:
        """Wait for ``awaitables`` together (``what`` they are, for the log): what one
        raises is logged; :meth:`stop_waiting` ends the wait."""
        if not awaitables:
            return
        waits = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
        if self._stopped:  # (told to stop waiting during this shutdown already)
            for wait in waits:
                wait.cancel()
            log.warning("not waiting for %s", what)
            return
        self._waiting = gathered = asyncio.gather(*waits, return_exceptions=True)
        try:
            results = await gathered
        except asyncio.CancelledError:
            if not self._stopped:
                raise  # the shutdown itself was cancelled
            log.warning("stopped waiting for %s", what)
            return
        finally:
            self._waiting = None
        for result in results:
            if isinstance(result, Exception):
                log.error("one of %s raised", what, exc_info=result)

    def begin(self) -> None:
        """A shutdown begins: its waits are waited for (until :meth:`stop_waiting`)."""
        self._stopped = False

    def stop_waiting(self) -> None:
        """Stop waiting, for the rest of this shutdown: what is awaited now is cancelled,
        and what the next phases return is not awaited (cancelled too)."""
        self._stopped = True
        if self._waiting is not None:
            self._waiting.cancel()
