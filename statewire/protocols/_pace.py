"""The pace a peer must keep while it sends a body (HTTP's request body, SMTP's message):
Postfix's ``smtpd_min_data_rate`` reckoning, shared by the two servers.

A body has a budget of seconds, ``cap`` at the start. Time passing spends it; each byte
arriving earns ``1 / rate`` of a second, never past ``cap``. The budget spent, the peer is
too slow. So a silent peer is given ``cap`` seconds (the protocol's idle timeout), a peer
keeping ``rate`` bytes a second is never stopped, a pause is allowed while the budget
lasts, and a peer trickling a byte now and then (which an idle timeout alone would let
hold its connection for ever) runs out within about ``cap`` seconds. The budget cannot be
banked: a fast start earns no more than ``cap``.
"""

from __future__ import annotations


class Pace:
    """One body's budget (see the module)."""

    __slots__ = ("_budget", "_came", "cap", "rate")

    def __init__(self, rate: float, cap: float) -> None:
        self.rate = rate
        self.cap = cap
        self._budget = cap
        self._came = 0

    def kept(self, came: int, elapsed: float) -> bool:
        """``elapsed`` seconds since the last look, ``came`` bytes of the body so far:
        whether the budget lasts."""
        earned = (came - self._came) / self.rate
        self._came = came
        self._budget = min(self.cap, self._budget - elapsed + earned)
        return self._budget > 0

    def excused(self, came: int) -> None:
        """The last period does not count (the server read nothing of the body meanwhile:
        its own slowness, not the peer's)."""
        self._came = came


__all__ = ["Pace"]
