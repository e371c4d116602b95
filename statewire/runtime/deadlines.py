"""The write side's deadlines: a peer that never reads cannot hold a connection for ever.

A connection closing with unsent data is aborted after :attr:`Deadlines.close_timeout`
seconds (default :data:`~statewire.runtime.limits.CLOSE_TIMEOUT`, 30 s; ``None`` waits for
ever), and, when :attr:`Deadlines.write_timeout` is set, a connection whose unsent data
has not moved at all for that many seconds is aborted (checked every ``write_timeout``
seconds: the abort comes between one and two periods after the peer stopped taking
bytes). Both are ``ConnectionAborted`` and logged at INFO (the peer's fault). Timers run on
the connection's own loop. Connections that keep the defaults carry nothing for them (a
:class:`~statewire.runtime.limits.WriteLimits` is made when one is changed or armed).

Progress is what the peer has taken: bytes handed over, less what still waits in our
buffers and in the kernel, unacknowledged (:func:`~statewire.runtime.kernel.unacked`).

:class:`Deadlines` is the base of :class:`~statewire.runtime.connection.Connection`; the
underscore methods it declares and does not define (``_unsent``, ``_socket``, ``_abort``,
``_fail``) are the hooks the connection and its two transports fill in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from statewire.error import ConnectionAborted, ConnectionLost
from statewire.runtime.kernel import unacked
from statewire.runtime.limits import CLOSE_TIMEOUT, WriteLimits, check_timeout
from statewire.runtime.naming import peer_of

log = logging.getLogger("statewire")


class Deadlines:
    """``close_timeout``, ``write_timeout`` and ``peer_progress`` of a connection."""

    __slots__ = ("_limits",)

    _loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        #: the write deadlines and their timers; ``None`` while all are the defaults
        self._limits: WriteLimits | None = None

    # -- what the connection provides ----------------------------------------------------

    def _unsent(self) -> int:
        """Bytes written and not yet taken by the kernel, wherever they wait (what the
        write deadlines watch; flow control counts ``_write_buffer_size``)."""
        raise NotImplementedError

    def _socket(self) -> Any:
        """The connection's socket (anything with ``fileno``), or None."""
        raise NotImplementedError

    def _abort(self, reason: ConnectionLost, reset: bool) -> None:
        raise NotImplementedError

    def _fail(self, exc: Exception) -> None:
        raise NotImplementedError

    # -- the deadlines -------------------------------------------------------------------

    def _write_limits(self) -> WriteLimits:
        limits = self._limits
        if limits is None:
            limits = self._limits = WriteLimits()
        return limits

    @property
    def close_timeout(self) -> float | None:
        """Seconds a closing connection with unsent data may take to hand it to the peer
        before it is aborted (default :data:`~statewire.runtime.limits.CLOSE_TIMEOUT`,
        30 s; ``None``: wait for ever, as Twisted). Set it per connection, e.g. in
        ``connectionMade``."""
        limits = self._limits
        return CLOSE_TIMEOUT if limits is None else limits.close_timeout

    @close_timeout.setter
    def close_timeout(self, seconds: float | None) -> None:
        check_timeout(seconds, "close_timeout")
        if seconds != self.close_timeout:
            self._write_limits().close_timeout = seconds

    @property
    def write_timeout(self) -> float | None:
        """Seconds unsent data may wait without the peer taking a byte of it before the
        connection is aborted (default ``None``: no limit). What the kernel takes counts,
        and it takes in steps of up to half its send buffer: use seconds, not fractions."""
        limits = self._limits
        return None if limits is None else limits.write_timeout

    @write_timeout.setter
    def write_timeout(self, seconds: float | None) -> None:
        check_timeout(seconds, "write_timeout")
        if seconds != self.write_timeout:
            self._write_limits().write_timeout = seconds

    def peer_progress(self) -> int:
        """A count that grows as the peer reads what we wrote (bytes it acknowledged,
        where the platform tells, else bytes the kernel took); counted from the first
        congestion or write deadline of the connection: compare two readings."""
        return self._taken(self._write_limits())

    def _taken(self, limits: WriteLimits) -> int:
        """How far the peer has taken what we wrote: bytes handed over, less what waits in
        our buffer and what the kernel still holds for the peer (sent or not, never
        acknowledged; Linux tells it). It grows only when the peer reads: the kernel's
        send buffer filling up is no progress (a stalled peer's window closes, and the
        kernel takes nothing until half its buffer drains)."""
        return limits.handed - self._unsent() - unacked(self._socket())

    def _watch_stall(self, limits: WriteLimits) -> None:
        seconds = limits.write_timeout
        if seconds is not None:
            taken = self._taken(limits)
            limits.stall_timer = self._loop.call_later(seconds, self._check_stall, taken)

    def _check_stall(self, taken_before: int) -> None:
        """``write_timeout`` seconds ago the peer had taken ``taken_before`` bytes: abort
        if it has taken none since (and data is waiting), else watch on."""
        limits = self._write_limits()
        limits.stall_timer = None
        try:
            unsent = self._unsent()
            if not unsent or limits.write_timeout is None:  # drained, or the limit lifted
                return
            if self._taken(limits) <= taken_before:
                log.info(
                    "the connection from %s took no byte of %d unsent in %s s; aborting it",
                    peer_of(self),
                    unsent,
                    limits.write_timeout,
                )
                self._abort(ConnectionAborted("write timeout"), reset=True)
            else:
                self._watch_stall(limits)
        except Exception as exc:
            self._fail(exc)

    def _close_when_sent(self) -> None:
        """Closing with unsent data: abort if the peer stops taking it."""
        seconds = self.close_timeout
        if seconds is not None:
            limits = self._write_limits()
            if limits.close_timer is None:
                taken = self._taken(limits)
                limits.close_timer = self._loop.call_later(seconds, self._close_expired, taken)

    def _close_expired(self, taken_before: int) -> None:
        """``close_timeout`` seconds ago the peer had taken ``taken_before`` bytes: a peer
        still reading (a long download) gets another period; one that took nothing is
        aborted."""
        limits = self._write_limits()
        limits.close_timer = None
        try:
            seconds = self.close_timeout
            if seconds is None:  # lifted since
                return
            taken = self._taken(limits)
            if taken > taken_before:
                limits.close_timer = self._loop.call_later(seconds, self._close_expired, taken)
                return
            log.info(
                "the connection from %s took none of its last %d bytes in the %s s after "
                "closing; aborting it",
                peer_of(self),
                self._unsent(),
                seconds,
            )
            self._abort(ConnectionAborted("close timeout"), reset=True)
        except Exception as exc:
            self._fail(exc)

    def _cancel_timers(self) -> None:
        limits = self._limits
        if limits is not None:
            for timer in (limits.close_timer, limits.stall_timer):
                if timer is not None:
                    timer.cancel()
            limits.close_timer = limits.stall_timer = None
