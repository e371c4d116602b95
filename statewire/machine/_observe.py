"""Observers of every declared connection: tracing and metrics hook in here.

An observer registered with :func:`observe` is told when a connection starts (it may
return a callback for its transitions), of each read's size, of each remote or local
error, and when the connection stops. Connections started before an observer was
registered are not observed. With no observer registered a connection pays one check per
read and per routed frame; with one, self-loops also take the traced path (compiled
shortcuts skip automat's tracer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

#: what a transition callback gets: the state left, the input, the state entered, and the
#: frame that caused it (``None`` for an input the protocol fed itself, or a timeout)
TransitionCallback = Callable[[str, str, str, Any], None]


class Observer(Protocol):
    """What :func:`observe` takes (every method is called on the connection's loop)."""

    def started(self, protocol: Any) -> TransitionCallback | None:
        """A connection started; return a callback for its transitions, or ``None``."""

    def received(self, protocol: Any, size: int) -> None:
        """``size`` bytes arrived on the connection."""

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        """A remote (the peer's) or local (our code's) error on the connection."""

    def stopped(self, protocol: Any) -> None:
        """The connection is gone."""


_observers: tuple[Observer, ...] = ()


def observe(observer: Observer) -> None:
    """Observe every declared connection started from now on."""
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)


def unobserve(observer: Observer) -> None:
    """Stop observing connections started from now on (the others keep it)."""
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)


def observers() -> tuple[Observer, ...]:
    """The observers registered now."""
    return _observers
