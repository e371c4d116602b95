"""How much a connection may hold unsent, and for how long.

The numbers of flow control (:data:`HIGH_WATER`, :data:`LOW_WATER`), the default
``close_timeout`` (:data:`CLOSE_TIMEOUT`), and :class:`WriteLimits`, the record a
connection makes only once one of its write deadlines differs from the default or is
armed (so that an idle connection carries nothing for them). The timers themselves are
run by :class:`~statewire.runtime.deadlines.Deadlines`.
"""

from __future__ import annotations

import asyncio
import math

#: unsent bytes above which reading and the producer pause
HIGH_WATER = 256 * 1024
#: unsent bytes under which they resume
LOW_WATER = 64 * 1024
#: default ``close_timeout``: seconds a closing connection may take to hand its unsent
#: data to a peer before it is aborted
CLOSE_TIMEOUT = 30.0
#: seconds a TLS handshake on statewire's socket transport (``listenSSL``, ``startTLS``)
#: may take before the connection is aborted: the bound asyncio puts on its own (its
#: ``ssl_handshake_timeout``), for protocols that set no deadline of their own
TLS_HANDSHAKE_TIMEOUT = 60.0
#: seconds a TLS handshake may still take once its connection is closing with data held
#: for after it (a refusal written in ``connectionMade``, a shutdown): a peer that is
#: about to say hello is answered, a silent one holds no shutdown for long (as long as
#: an HTTP server gives a new connection to begin its request, ``first_request_grace``)
CLOSING_HANDSHAKE_TIMEOUT = 2.0


class WriteLimits:
    """A connection's write deadlines, once one differs from the default or is armed."""

    __slots__ = ("close_timeout", "close_timer", "handed", "stall_timer", "write_timeout")

    def __init__(self) -> None:
        self.close_timeout: float | None = CLOSE_TIMEOUT
        self.write_timeout: float | None = None
        #: bytes handed to the socket (or asyncio transport) since this was made: with
        #: what is still unsent, how much the peer took (progress, for write_timeout)
        self.handed = 0
        self.close_timer: asyncio.TimerHandle | None = None
        self.stall_timer: asyncio.TimerHandle | None = None


def check_timeout(seconds: float | None, name: str) -> None:
    """``None``, or a finite number of seconds > 0 (NaN would disorder the loop's timers)."""
    if seconds is None:
        return
    try:
        valid = math.isfinite(seconds) and seconds > 0
    except TypeError:
        raise TypeError(f"{name} must be a number of seconds or None, not {seconds!r}") from None
    if not valid:
        raise ValueError(f"{name} must be a finite number of seconds > 0 or None, not {seconds!r}")
