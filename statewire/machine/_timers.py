"""State timeouts: one lazy timer per connection (part of the
:class:`~statewire.machine.Engine`, as one of its bases).

A state's :class:`~statewire.machine.Timeout` is armed when the state is entered. The timer
is lazy: a state change only notes the new timeout and its deadline; the wake-up already
scheduled stays when it comes no later than the new deadline, and a wake-up that comes
early sleeps again until the deadline. So a protocol whose every state has a timeout (HTTP,
SMTP) does not cancel and schedule a timer at each transition. A wake-up is never scheduled
further than the protocol's shortest timeout (``Plan.shortest``) or a quarter of the armed
timeout, whichever is longer: entering a state with a shorter deadline then mostly finds a
wake-up early enough, and a long timeout wakes a connection up at most four times. An idle
timeout measures the peer's silence: each read moves it (``_sw_last_read``); while
delivery is held for backpressure the peer is idle only if it stopped reading our replies
too, and once reading paused behind an output's work (too much buffered) resumes, its
silence counts from then (it could not send while we did not read). The pause itself
stops nothing: an idle timeout still bounds work that never ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statewire.machine._host import Host
from statewire.machine._plan import Plan
from statewire.machine._routes import Timeout

#: how early a wake-up may find its deadline and still act: times are floats, and
#: ``now + (deadline - now)`` may round past ``deadline`` (a sleep that short would wake
#: up at once, again and again)
_ROUNDING = 1e-6


class Timers:
    """The connection's state timer (a base of the engine)."""

    __slots__ = (
        "_sw_armed",
        "_sw_deadline",
        "_sw_idle_mark",
        "_sw_last_read",
        "_sw_now",
        "_sw_timer",
        "_sw_wake_at",
    )

    #: the wake-up scheduled on the clock, and when it comes
    _sw_timer: Any
    _sw_wake_at: float
    #: the current state's timeout, and when it expires (idle ones: if nothing is read)
    _sw_armed: Timeout | None
    _sw_deadline: float
    _sw_last_read: float
    #: while a read is handled, the time it came (the handling of a read is one instant
    #: for the timers: the deadlines its state changes arm count from it); else None
    _sw_now: float | None
    #: while held for backpressure: how far the peer had read our replies when the idle
    #: timeout last looked
    _sw_idle_mark: int | None

    def _sw_timers(self) -> None:
        """No timeout armed (called when the engine is made)."""
        self._sw_timer = self._sw_armed = self._sw_idle_mark = self._sw_now = None
        self._sw_wake_at = self._sw_deadline = self._sw_last_read = 0.0

    if TYPE_CHECKING:  # what the engine provides
        _sw_plan: Plan
        _sw_host: Host
        _sw_core: Any
        _sw_state: Any
        _sw_closing: bool
        _sw_holds: frozenset[str]

        def _sw_input(self, name: str, args: tuple[Any, ...]) -> None: ...

    def _sw_arm(self, state: Any) -> None:
        """Arm ``state``'s timeout, if it has one, from now.

        Timers are lazy: a state change only notes the new timeout and its deadline; the
        wake-up already scheduled stays when it comes no later than the new deadline, and
        when it comes early :meth:`_sw_expired` sleeps again until the deadline. So a
        protocol whose every state has a timeout (HTTP, SMTP) does not cancel and schedule
        a timer at each transition. An idle timeout shared by two states goes on measuring
        the peer's silence; entering the state counts as activity, as arming does."""
        self._sw_arm_timeout(self._sw_plan.timeouts.get(state))

    def restart_timeout(self) -> None:
        """The current state's timeout starts again from now, as if the state were
        entered again (Erlang's ``repeat_state``): for a state that loops through a whole
        exchange, a deadline per exchange. Nothing when the state has none."""
        self._sw_arm_timeout(self._sw_armed)

    def _sw_arm_timeout(self, timeout: Timeout | None) -> None:
        """:meth:`_sw_arm` with the state's timeout found (a state's entry finds it once:
        automat's states hash in Python). A state's entry (``_engine._entry``) does the
        branch that schedules nothing itself, inside a read: keep the two alike."""
        self._sw_armed = timeout
        if timeout is None:
            return  # a wake-up still scheduled finds nothing armed
        now = self._sw_now
        if now is None:
            now = self._sw_host.seconds(self._sw_core)
        if timeout.idle:
            self._sw_last_read = now
        self._sw_deadline = deadline = now + timeout.seconds
        if self._sw_timer is None or self._sw_wake_at > deadline:
            self._sw_sleep(min(timeout.seconds, self._sw_nap(timeout)), now)

    def _sw_nap(self, timeout: Timeout) -> float:
        """The longest sleep while ``timeout`` is armed: the protocol's shortest timeout
        (entering its state then finds a wake-up early enough), but no shorter than a
        quarter of ``timeout`` (a long timeout wakes up at most four times)."""
        return max(self._sw_plan.shortest, timeout.seconds / 4)

    def _sw_sleep(self, seconds: float, now: float) -> None:
        """Schedule the wake-up in ``seconds`` (replacing the one scheduled)."""
        if self._sw_timer is not None:
            self._sw_timer.cancel()
        self._sw_timer = self._sw_host.call_later(self._sw_core, seconds, self._sw_expired)
        self._sw_wake_at = now + seconds

    def _sw_disarm(self) -> None:
        self._sw_armed = None
        timer, self._sw_timer = self._sw_timer, None
        if timer is not None:
            timer.cancel()

    def _sw_expired(self) -> None:
        self._sw_timer = None
        timeout = self._sw_armed
        if timeout is None:
            return  # the state it was scheduled for was left for one without a timeout
        now = self._sw_host.seconds(self._sw_core)
        left = self._sw_deadline - now
        if left > _ROUNDING:  # re-armed since it was scheduled
            self._sw_sleep(min(left, self._sw_nap(timeout)), now)
            return
        if timeout.idle and "backpressure" in self._sw_holds:
            # we stopped reading, not the peer: it is idle only if it stopped reading our
            # replies too
            mark = self._sw_host.peer_progress(self._sw_core)
            if mark is not None and mark != self._sw_idle_mark:
                self._sw_idle_mark = mark
                self._sw_deadline = now + timeout.seconds
                self._sw_sleep(timeout.seconds, now)
                return
        if timeout.idle:
            left = timeout.seconds - (now - self._sw_last_read)
            if left > _ROUNDING:  # something was read since: the peer is not idle
                self._sw_deadline = now + left
                self._sw_sleep(left, now)
                return
        self._sw_input(timeout.input_name, ())
        if self._sw_timer is None and not self._sw_closing:
            self._sw_arm(self._sw_state)  # the timeout looped: the next period starts now
