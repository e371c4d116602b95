"""Asynchronous outputs: what an output may return, and when it need not be looked at.

Theory of operation
-------------------
An output (or a hook it forwards to, such as ``lineReceived``) may return an *awaitable*: a
coroutine, an asyncio future or task, a ``concurrent.futures.Future``, anything with
``add_done_callback``, or a Twisted ``Deferred`` (anything with ``addBoth`` and ``cancel``:
waited for on any reactor, Twisted not imported). The connection then stops cutting frames
after the current one until the awaitable completes (the engine holds its framer with the
reason ``"waiting"``), so the reply of each pipelined request is sent before the next
request is even framed: replies leave in request order however the work completes. Bytes
arriving meanwhile stay in the framer, in order; past :attr:`MachineProtocol.waiting_read_limit`
buffered bytes, reading from the peer pauses until the wait ends (bounded memory).

When it completes, framing resumes with the framing of the state the machine is in then:
an input called by the work (the reply came: ``machine.done()``) is honoured. A value
result is ignored. An exception (or a cancellation the connection did not ask for) is a
*local* error: the connection is aborted, nothing else is touched. A connection lost while
waiting cancels the awaitable, then the ``lost`` input runs as usual; a completion after
the loss touches nothing. Timeouts keep running while waiting: a state's timeout bounds
the work too (its close cancels the work when the connection is lost), and an idle
timeout measures the peer's silence, as always; when reading paused for the work resumes,
the silence counts from then (a peer we did not read from could not send).

Looking at every result would cost the fast paths (one frame, one call of the output and
nothing else) a call each. :func:`returns_nothing` reads a plain function's bytecode once:
a function whose every ``return`` returns the constant ``None``, and which is no coroutine
or generator function, can never return an awaitable, so its frames need no check. Any
other callable (``async def``, ``return value``, a builtin, a callable object) is checked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dis
import inspect
from collections.abc import Callable
from functools import lru_cache, partial
from types import CodeType, FunctionType
from typing import Any

#: code flags of functions whose call returns an object (a coroutine, a generator)
_MAKES_OBJECT = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


@lru_cache(maxsize=4096)
def _returns_none_only(code: CodeType) -> bool:
    if code.co_flags & _MAKES_OBJECT:
        return False
    previous: dis.Instruction | None = None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "RETURN_CONST" and instruction.argval is not None:
            return False  # (Python 3.12+)
        # only a ``LOAD_CONST None`` right before a RETURN_VALUE, and no jump landing on
        # it, proves the value returned is None
        if instruction.opname == "RETURN_VALUE" and (
            instruction.is_jump_target
            or previous is None
            or previous.opname != "LOAD_CONST"
            or previous.argval is not None
        ):
            return False
        previous = instruction
    return True


def returns_nothing(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` (a plain function, a bound method or a partial of
    one) can only ever return ``None``; ``False`` whenever that cannot be proved."""
    while isinstance(function, partial):
        function = function.func
    function = getattr(function, "__func__", function)  # a bound method's function
    if type(function) is not FunctionType:
        return False
    return _returns_none_only(function.__code__)


def future_of(result: object, loop: Callable[[], asyncio.AbstractEventLoop | None]) -> Any | None:
    """The future to wait for when an output returned ``result``, or ``None`` when it is
    no awaitable (a value: ignored). ``loop()`` gives the loop to run a coroutine on (or
    to hand a ``concurrent.futures.Future``'s completion to); it is asked only then."""
    if asyncio.iscoroutine(result):
        running = loop()
        if running is None:
            result.close()  # it will never run: no "never awaited" warning
            raise RuntimeError("an output returned a coroutine but no event loop runs it")
        return running.create_task(result)
    if isinstance(result, concurrent.futures.Future):
        running = loop()
        if running is None:
            raise RuntimeError("an output returned a thread's future but no event loop runs")
        return asyncio.wrap_future(result, loop=running)  # its callbacks run on our loop
    if hasattr(result, "add_done_callback"):
        return result
    if hasattr(result, "addBoth") and hasattr(result, "cancel"):
        return DeferredFuture(result)
    if inspect.isawaitable(result):  # an object with ``__await__``: run it as a task
        running = loop()
        if running is None:
            raise RuntimeError("an output returned an awaitable but no event loop runs it")
        return asyncio.ensure_future(result, loop=running)
    return None


class DeferredFuture:
    """A Twisted ``Deferred`` (anything with ``addBoth`` and ``cancel``) seen as the
    future the engine waits for, on any reactor, without importing Twisted: its result,
    or the exception a ``Failure`` holds; the Deferred's error is consumed (never
    "unhandled"). Only our own :meth:`cancel` makes it :meth:`cancelled`."""

    def __init__(self, deferred: Any) -> None:
        self._deferred = deferred
        self._callbacks: list[Callable[[DeferredFuture], object]] | None = []
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancelled = False
        deferred.addBoth(self._settle)

    def _settle(self, result: object) -> None:
        if hasattr(result, "trap") and isinstance(getattr(result, "value", None), BaseException):
            error: BaseException = result.value  # type: ignore[attr-defined]
            if not (self._cancelled and type(error).__name__ == "CancelledError"):
                self._error = error
        else:
            self._result = result
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)
        # returning None consumes a failure: it is ours to report

    def add_done_callback(self, callback: Callable[[DeferredFuture], object]) -> None:
        """Call ``callback(self)`` once the Deferred has fired (at once if it has)."""
        if self._callbacks is None:
            callback(self)
        else:
            self._callbacks.append(callback)

    def done(self) -> bool:
        """Whether the Deferred has fired."""
        return self._callbacks is None

    def cancel(self) -> bool:
        """Cancel the Deferred (``Deferred.cancel``) if it has not fired."""
        if self._callbacks is None:
            return False
        self._cancelled = True
        self._deferred.cancel()
        return True

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` ended it."""
        return self._cancelled and self._error is None

    def exception(self) -> BaseException | None:
        """What the Deferred failed with, else ``None``."""
        return self._error

    def result(self) -> Any:
        """What the Deferred fired with (raises what it failed with)."""
        if self._error is not None:
            raise self._error
        return self._result


def cancel(future: Any) -> None:
    """Cancel ``future`` if it can be cancelled."""
    cancel = getattr(future, "cancel", None)
    if cancel is not None:
        cancel()


def failure_of(future: Any) -> BaseException | None:
    """The exception ``future`` (done) ended with, a cancellation included; ``None``
    when it succeeded. Reading it also keeps asyncio from logging it as never retrieved."""
    cancelled = getattr(future, "cancelled", None)
    if cancelled is not None and cancelled():
        return asyncio.CancelledError()
    exception = getattr(future, "exception", None)
    if exception is None:
        return None
    try:
        failure: BaseException | None = exception()
    except BaseException as exc:  # a fake future whose exception() raises what it holds
        return exc
    return failure
