"""Observers of every declared connection: tracing and metrics hook in here.

An observer registered with :func:`observe` is told when a connection starts (it may
return a callback for its transitions), of each read's size, of each remote or local
error, and when the connection stops. Connections started before an observer was
registered are not observed. With no observer registered a connection pays one check per
read and per routed frame; with one, self-loops also take the traced path (compiled
shortcuts skip automat's tracer).

Observing never changes what a connection does: an exception an observer raises is logged
(its first one, with the traceback, on the ``statewire.observe`` logger; the others are
counted in :attr:`Guarded.errors`) and the connection goes on as if it were not observed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("statewire.observe")

#: what a transition callback gets: the state left, the input, the state entered, and the
#: frame that caused it (``None`` for an input the protocol fed itself, or a timeout)
TransitionCallback = Callable[[str, str, str, Any], None]


class Observer(Protocol):
    """What :func:`observe` takes (every method is called on the connection's loop). A
    subclass overrides what it needs: the others do nothing."""

    def started(self, protocol: Any) -> TransitionCallback | None:
        """A connection started; return a callback for its transitions, or ``None``."""
        return None

    def received(self, protocol: Any, size: int) -> None:
        """``size`` bytes arrived on the connection."""
        return None

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        """A remote (the peer's) or local (our code's) error on the connection."""
        return None

    def stopped(self, protocol: Any) -> None:
        """The connection is gone."""
        return None


class Guarded:
    """An observer as connections see it: the same calls, but what it raises is logged
    and swallowed (see the module), so a faulty observer cannot break a connection."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        #: exceptions the observer raised (each swallowed)
        self.errors = 0

    def _failed(self, where: str) -> None:
        self.errors += 1
        if self.errors == 1:
            log.exception(
                "observer %r raised in %s; ignored (and so its next errors)", self.observer, where
            )

    def started(self, protocol: Any) -> TransitionCallback | None:
        try:
            callback = self.observer.started(protocol)
        except Exception:
            self._failed("started")
            return None
        if callback is None:
            return None

        def transition(old: str, input: str, new: str, frame: Any) -> None:
            try:
                callback(old, input, new, frame)
            except Exception:
                self._failed("a transition callback")

        return transition

    def received(self, protocol: Any, size: int) -> None:
        try:
            self.observer.received(protocol, size)
        except Exception:
            self._failed("received")

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        try:
            self.observer.failed(protocol, error, local)
        except Exception:
            self._failed("failed")

    def stopped(self, protocol: Any) -> None:
        try:
            self.observer.stopped(protocol)
        except Exception:
            self._failed("stopped")


_observers: tuple[Guarded, ...] = ()


def observe(observer: Observer) -> None:
    """Observe every declared connection started from now on."""
    global _observers
    if all(o.observer is not observer for o in _observers):
        _observers = (*_observers, Guarded(observer))


def unobserve(observer: Observer) -> None:
    """Stop observing connections started from now on (the others keep it)."""
    global _observers
    _observers = tuple(o for o in _observers if o.observer is not observer)


def observers() -> tuple[Observer, ...]:
    """The observers registered now, each :class:`Guarded`."""
    return _observers
