"""A call scheduled on the reactor's clock: :class:`DelayedCall` (``callLater``).

Arguments that would corrupt the loop are refused where they are given
(:func:`checked_delay`, :func:`checked_callable`): a NaN deadline breaks the order of the
loop's timer heap, delaying and reordering every other timer of the loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for types only: the reactor imports this module
    from statewire._reactor import Reactor

log = logging.getLogger("statewire")


class AlreadyCalled(ValueError):
    """The delayed call already ran."""


class AlreadyCancelled(ValueError):
    """The delayed call was cancelled."""


def checked_delay(seconds: float, what: str) -> None:
    """Refuse ``seconds`` unless it is a finite number >= 0.

    A NaN deadline breaks the order of the loop's timer heap (every comparison with NaN is
    false), delaying and reordering every other timer of the loop; an infinite or negative
    one is a bug, often a delay computed from a peer's input: refuse it where it is given.
    """
    try:
        valid = math.isfinite(seconds) and seconds >= 0
    except TypeError:
        raise TypeError(f"{what} must be a number of seconds, not {seconds!r}") from None
    if not valid:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {seconds!r}")


def _finite(seconds: float, what: str) -> None:
    """Refuse ``seconds`` unless it is a finite number (of either sign)."""
    try:
        finite = math.isfinite(seconds)
    except TypeError:
        raise TypeError(f"{what} takes a number of seconds, not {seconds!r}") from None
    if not finite:
        raise ValueError(f"{what} takes a finite number of seconds, not {seconds!r}")


def checked_callable(f: object) -> None:
    """Refuse a callback that is not callable now, not when it comes due."""
    if not callable(f):
        raise TypeError(f"the callback must be callable, not {f!r}")


class DelayedCall:
    """A call scheduled by :meth:`Reactor.callLater`.

    :meth:`reset` and :meth:`delay` refuse NaN and infinite values with ``ValueError``;
    a negative value runs the call sooner (at once at most), as in Twisted.
    """

    def __init__(
        self, reactor: Reactor, when: float, f: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        self._reactor = reactor
        self.func = f
        self.args = args
        self.kwargs = kwargs
        self.time = when
        self.called = False
        self.cancelled = False
        self._handle = reactor.loop.call_at(when, self._run)

    def _run(self) -> None:
        self.called = True
        try:
            self.func(*self.args, **self.kwargs)
        except Exception:
            log.exception("delayed call %r raised", self.func)

    def getTime(self) -> float:
        """When the call will run, in :meth:`Reactor.seconds` time."""
        return self.time

    def active(self) -> bool:
        """Whether the call is still to run."""
        return not (self.called or self.cancelled)

    def _check(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled(self)
        if self.called:
            raise AlreadyCalled(self)

    def cancel(self) -> None:
        """Do not run the call."""
        self._check()
        self.cancelled = True
        self._handle.cancel()

    def reset(self, seconds_from_now: float) -> None:
        """Run the call ``seconds_from_now`` seconds from now instead (finite; a negative
        delay, a deadline just passed, runs it at once, as in Twisted)."""
        _finite(seconds_from_now, "reset()")
        self._check()
        self._reschedule(self._reactor.seconds() + max(seconds_from_now, 0.0))

    def delay(self, seconds_later: float) -> None:
        """Run the call ``seconds_later`` (finite; negative: sooner) seconds later than
        planned; a time already past runs it at once."""
        _finite(seconds_later, "delay()")
        self._check()
        _finite(self.time + seconds_later, "delay()'s new time")  # two huge delays add up
        self._reschedule(self.time + seconds_later)

    def _reschedule(self, when: float) -> None:
        self._handle.cancel()
        self.time = when
        self._handle = self._reactor.loop.call_at(when, self._run)

    def __repr__(self) -> str:
        state = "called" if self.called else "cancelled" if self.cancelled else "active"
        return f"<DelayedCall {self.func!r} at {self.time:.3f} {state}>"
