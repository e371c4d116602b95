"""The pace a body must keep (statewire/protocols/_pace.py): Postfix's min data rate
reckoning, as a budget of seconds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statewire.protocols._pace import Pace


def test_a_silent_peer_has_the_cap_and_no_more() -> None:
    pace = Pace(500, 30)
    assert all(pace.kept(0, 5) for _ in range(5))  # 25 s
    assert not pace.kept(0, 5)  # 30 s: spent


@given(st.lists(st.floats(0.1, 10), min_size=1, max_size=200))
def test_a_peer_keeping_the_rate_is_never_stopped(periods: list[float]) -> None:
    pace = Pace(500, 30)
    came = 0.0
    for elapsed in periods:
        came += 500 * elapsed
        assert pace.kept(int(came) + 1, elapsed)


@given(st.integers(1, 400), st.floats(0.5, 20))
def test_a_trickle_runs_out_within_about_the_cap(step: int, every: float) -> None:
    # a peer at under a tenth of the rate is stopped within cap / 0.9 seconds, however it
    # spreads its bytes; a fast start banks no more than the cap
    pace = Pace(5000, 30)
    came, spent = 10**9, 0.0
    assert pace.kept(came, 0.0)
    while pace.kept(came, every):
        came += min(step, int(500 * every))
        spent += every
        assert spent < 30 / 0.9 + every


def test_a_period_excused_earns_and_spends_nothing() -> None:
    pace = Pace(500, 30)
    assert pace.kept(0, 25)
    pace.excused(10**6)  # (the server read nothing: what came meanwhile earns nothing)
    assert pace.kept(10**6, 4) and not pace.kept(10**6, 1)
