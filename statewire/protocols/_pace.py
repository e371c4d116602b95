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

from typing import Any

#: the engine's hold while the peer does not take our replies (the others: work under way)
_PEER_HOLD = frozenset({"backpressure"})


class Pace:
    """One body's budget (see the module)."""

    __slots__ = ("_budget", "_came", "_sent", "cap", "rate")

    def __init__(self, rate: float, cap: float, came: int = 0) -> None:
        self.rate = rate
        self.cap = cap
        self._budget = cap
        self._came = came
        self._sent: int | None = None

    def checked(
        self, came: int, elapsed: float, *, busy: bool, congested: bool, sent: int | None
    ) -> bool:
        """A period of ``elapsed`` seconds ended, ``came`` bytes of the body so far:
        whether the budget lasts. The period does not count when the server was the
        slow one: ``busy`` (its reading held while work is under way), or ``congested``
        (the peer not taking our replies, reading held) while the peer took some of them
        (``sent``, the bytes it has taken, moved: a peer taking nothing is the write
        deadline's; ``None``, not counted: taken as moved)."""
        moved = sent is None or sent != self._sent
        self._sent = sent
        if busy or (congested and moved):
            self.excused(came)
            return True
        return self.kept(came, elapsed)

    def looked(
        self,
        engine: Any,
        transport: Any,
        read: int,
        elapsed: float,
        *,
        behind: bool = False,
        congested: bool = False,
    ) -> bool:
        """:meth:`checked` for a connection whose ``engine`` (a
        :class:`~statewire.machine.Engine`) delivered ``read`` bytes of the body so far
        (what it buffers of the rest is added): busy when ``behind`` (the handler), when
        the engine's reading is held or its delivery held for work under way; congested
        when ``congested`` or its delivery is held for backpressure; the bytes the peer
        took, ``transport.bytes_sent`` (``None`` where not counted)."""
        holds = engine.holds
        return self.checked(
            read + len(engine.buffered),
            elapsed,
            busy=behind or engine.reading_held or bool(holds - _PEER_HOLD),
            congested=congested or bool(holds & _PEER_HOLD),
            sent=getattr(transport, "bytes_sent", None),
        )

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
