"""An ASGI application's ``lifespan`` scope: its startup before the first request, its
shutdown after the last connection (ASGI lifespan spec 2.0, as uvicorn serves it).

:class:`Lifespan` runs the application once with a ``lifespan`` scope, in a task of its
own, and speaks the protocol with it: ``lifespan.startup`` then, at the shutdown,
``lifespan.shutdown``. The scope's ``state`` (a dict the application fills at startup) is
copied, shallowly, into the scope of each request (the ASGI "lifespan state" extension:
Starlette's ``request.state``, a FastAPI ``lifespan`` that yields a dict).

Two modes, uvicorn's:

* ``"auto"``: an application that raises before answering the startup, or returns
  without a word, does not support the scope. That is logged (``INFO``) and the server
  serves it without a lifespan. A ``lifespan.startup.failed`` is a failure.
* ``"on"``: an exception before the startup's answer is a failure too.

A failure is :class:`LifespanFailed`: the factory does not start (``statewire serve``
exits, the port never accepts), or, when the startup had to run beside a running loop,
every request is answered ``503`` and the failure is logged. What the application raises
after its startup, and a ``lifespan.shutdown.failed``, are logged; the shutdown goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("statewire.asgi")

#: an ASGI message
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: an ASGI 3 application
Application = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

MODES = ("auto", "on", "off")


def _from_outside(error: BaseException) -> bool:
    """Whether ``error`` is not the application's own: its task was cancelled (Python
    3.11's ``cancelling()``; before, any cancellation), or it is not an ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``)."""
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)
        return cancelling is None or bool(cancelling())
    return not isinstance(error, Exception)


class LifespanFailed(Exception):
    """The application's startup failed (its message, or what it raised)."""


class Lifespan:
    """One run of an application's ``lifespan`` scope."""

    def __init__(self, app: Application, mode: str) -> None:
        if mode not in ("auto", "on"):
            raise ValueError(f"lifespan mode {mode!r} is not 'auto' or 'on'")
        self.app = app
        self.mode = mode
        #: the scope's ``state``, copied into each request's scope once started
        self.state: dict[str, Any] = {}
        #: whether the startup was answered: requests need not wait any more
        self.ready = False
        #: whether the application serves the scope (known once ready)
        self.supported = False
        #: whether :meth:`begin` was called (and no :meth:`shutdown` ended it since)
        self.begun = False
        self._abandoned = False
        self._started: asyncio.Future[None] | None = None
        self._shut: asyncio.Future[None] | None = None
        self._inbox: asyncio.Queue[Message] | None = None
        self._task: asyncio.Task[None] | None = None

    def begin(self) -> None:
        """Start the application's lifespan on the running loop; :meth:`wait` waits for
        its startup."""
        loop = asyncio.get_running_loop()
        self.state = {}
        self.ready = self.supported = self._abandoned = False
        self.begun = True
        self._started = loop.create_future()
        self._shut = loop.create_future()
        self._inbox = asyncio.Queue()
        self._inbox.put_nowait({"type": "lifespan.startup"})
        self._task = loop.create_task(self._run())

    async def startup(self) -> None:
        """:meth:`begin`, then :meth:`wait`."""
        self.begin()
        await self.wait()

    async def wait(self) -> None:
        """Return once the startup is answered; :class:`LifespanFailed` if it failed."""
        assert self._started is not None, "the lifespan was not begun"
        await asyncio.shield(self._started)

    async def shutdown(self) -> None:
        """Tell the application to shut down and wait for its answer (or its return);
        nothing when it does not serve the scope. A cancelled wait cancels the
        application's lifespan task too (no task is left pending)."""
        task, self._task = self._task, None
        self.begun = self.ready = False  # (a factory started again starts it again)
        if task is None or task.done() or not self.supported:
            return
        assert self._inbox is not None and self._shut is not None
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait([self._shut, task], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()  # (the wait given up, its bound past: the application's too)
            raise

    def abandon(self) -> None:
        """Cancel a startup under way (the factory stopped before it was answered);
        nothing once it was answered (a failed startup still answers 503)."""
        if self._started is None or self._started.done():
            return
        task, self._task = self._task, None
        self.begun = False
        self._abandoned = True  # (what it says of its cancellation is no failure)
        if task is not None and not task.done():
            task.cancel()

    # -- the application's side --------------------------------------------------------

    def _scope(self) -> dict[str, Any]:
        return {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }

    async def _run(self) -> None:
        started = self._started
        assert started is not None
        try:
            await self.app(self._scope(), self._receive, self._send)
        except BaseException as error:
            if _from_outside(error):
                # its task cancelled (the loop's end, a startup abandoned), or the process
                # leaving: it propagates, and nothing waits for the startup in vain
                if not started.done():
                    self._fail(f"the lifespan ended: {type(error).__name__}")
                raise
            self._raised(error)
        else:
            if not started.done():
                log.info("ASGI application returned from its lifespan scope at once: no lifespan")
                self._answer(False)
        finally:
            if self._shut is not None and not self._shut.done():
                self._shut.set_result(None)

    def _raised(self, error: BaseException) -> None:
        """The application raised ``error`` (its own ``CancelledError`` included, as
        uvicorn takes any exception)."""
        started = self._started
        assert started is not None
        if not started.done():
            if self.mode == "auto":
                log.info(
                    "ASGI 'lifespan' protocol appears unsupported (the application "
                    "raised %s: %s); serving without it",
                    type(error).__name__,
                    error,
                )
                self._answer(False)
            else:
                log.error("ASGI application raised at its lifespan's startup", exc_info=error)
                self._fail(f"the application raised {type(error).__name__}: {error}")
        elif started.exception() is None:  # (after a startup.failed: reported there)
            log.error("ASGI application raised in its lifespan", exc_info=error)

    def _answer(self, supported: bool) -> None:
        assert self._started is not None
        self.supported = supported
        self.ready = True
        self._started.set_result(None)

    def _fail(self, message: str) -> None:
        assert self._started is not None
        self._started.set_exception(LifespanFailed(message))
        # (consumed here too, so an unawaited failure does not warn at collection)
        self._started.exception()

    async def _receive(self) -> Message:
        assert self._inbox is not None
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        started, shut = self._started, self._shut
        assert started is not None and shut is not None
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if started.done():
                raise RuntimeError(f"{kind} after the startup was answered")
            if kind == "lifespan.startup.complete":
                self._answer(True)
            else:
                text = str(message.get("message", "")).strip() or "(no message)"
                if self._abandoned:
                    log.info("ASGI application's startup abandoned: %s", text.splitlines()[-1])
                else:
                    log.error("ASGI application's startup failed: %s", text)
                # (a traceback, from Starlette: its last line says what failed)
                self._fail(f"the application's startup failed: {text.splitlines()[-1]}")
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if not self.supported:  # (set by its startup.complete)
                raise RuntimeError(f"{kind} before the startup was answered")
            if shut.done():
                raise RuntimeError(f"{kind} after the shutdown was answered")
            if kind == "lifespan.shutdown.failed":
                text = message.get("message", "")
                log.error("ASGI application's shutdown failed: %s", text or "(no message)")
            shut.set_result(None)
        else:
            raise ValueError(f"unexpected ASGI message {kind!r} in a lifespan scope")
