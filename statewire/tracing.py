"""A log line per transition of every declared connection: where a running server's
connections go, as its diagram draws it.

    from statewire import tracing
    tracing.enable()          # or: statewire serve TARGET --trace
    ...
    tracing.disable()

Each line names the connection (a number, and its peer), the state it left, the input,
the state it entered, and the size of the frame that caused it (``-`` for an input the
protocol fed itself or a timeout)::

    #3 127.0.0.1:40312 commands --store--> commands (12 bytes)
    #3 127.0.0.1:40312 commands --block_follows--> storing (-)

Connections started after :func:`enable` are traced, until they end; those already open
are not. Lines are rate-limited (``rate`` a second, bursts of as many; the lines dropped
are counted in the next one written). Off, tracing costs nothing beyond the observer check
every connection makes (see ``bench/bench_tracing.py``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from statewire.machine import Observer, TransitionCallback, observe, unobserve

log = logging.getLogger("statewire.trace")


class Tracer(Observer):
    """The observer :func:`enable` registers: numbered connections, rate-limited lines."""

    def __init__(
        self,
        logger: logging.Logger = log,
        rate: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 lines a second, got {rate!r}")
        self.logger = logger
        self.rate = rate
        self.clock = clock
        self._numbers = itertools.count(1)
        self._tokens = rate
        self._last = clock()
        #: lines not written since the last one that was (the rate was exceeded)
        self.dropped = 0

    def started(self, protocol: Any) -> TransitionCallback:
        number = next(self._numbers)
        peer = _peer(protocol)

        def transition(old: str, input: str, new: str, frame: Any) -> None:
            if not self._admit():
                return
            size = "-" if frame is None else f"{_size(frame)} bytes"
            dropped, self.dropped = self.dropped, 0
            note = f" [{dropped} lines dropped]" if dropped else ""
            line = "#%d %s %s --%s--> %s (%s)%s"
            self.logger.info(line, number, peer, old, input, new, size, note)

        return transition

    def _admit(self) -> bool:
        now = self.clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            self.dropped += 1
            return False
        self._tokens -= 1
        return True


def _peer(protocol: Any) -> str:
    try:
        peer = protocol.transport.getPeer()
    except Exception:  # an in-memory transport, a closed one
        return "?"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:  # a UNIX socket's name, which a PROXY v2 header may give: any bytes
        return _printable(str(getattr(peer, "name", peer)))
    text = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return _printable(text)


def _printable(text: str) -> str:
    """``text`` with what is not printable escaped: one log line stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _size(frame: Any) -> int | str:
    try:
        return len(frame)
    except TypeError:
        return "?"


_current: Tracer | None = None


def enable(logger: logging.Logger = log, rate: float = 100.0) -> Tracer:
    """Trace every declared connection started from now on (see the module)."""
    global _current
    disable()
    _current = Tracer(logger, rate)
    observe(_current)
    return _current


def disable() -> None:
    """Trace no connection started from now on."""
    global _current
    if _current is not None:
        unobserve(_current)
        _current = None


__all__ = ["Tracer", "disable", "enable"]
