"""Signals from daily history: weekly pattern, holidays, peer group and sustained drops, scored."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from cloud.risk.history import AssetHistory
from cloud.risk.model import Band, LeaseSignals
from cloud.risk.portfolio import Portfolio
from cloud.risk.rules import ScoringRules
from cloud.risk.scoring import score_lease

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
DAYS = 210
AS_OF = 182  # a Monday: 26 full weeks known
PEERS = 12


def _normal(seed: int) -> np.ndarray:
    """Nine hours a weekday, four on Saturdays, none on Sundays, with day-to-day noise."""
    rng = np.random.default_rng(seed)
    pattern = np.array([9.0, 9.0, 9.0, 9.0, 9.0, 4.0, 0.0])
    hours = np.tile(pattern, DAYS // 7) * rng.uniform(0.85, 1.1, DAYS)
    return np.asarray(hours, dtype=np.float64)


def _asset(number: int, hours: np.ndarray, *, asset_type: str = "excavator") -> AssetHistory:
    return AssetHistory(
        asset=f"a{number}",
        lease=f"L-{number:02d}",
        start=START,
        hours=hours,
        covered=np.full(DAYS, 24.0),
        expected_per_day=6.5,
        asset_type=asset_type,
        region="benelux",
    )


def _signals(
    histories: list[AssetHistory], holidays: frozenset[date] = frozenset()
) -> dict[str, LeaseSignals]:
    portfolio = Portfolio(histories, {"benelux": holidays})
    return {s.lease_id: s for s in portfolio.signals(AS_OF)}


def _group(change: dict[int, tuple[int, float]]) -> list[AssetHistory]:
    """PEERS assets; `change` maps an asset to (first day, factor) from then to the as-of day."""
    found = []
    for number in range(PEERS):
        hours = _normal(number)
        if number in change:
            first, factor = change[number]
            hours[first:AS_OF] *= factor
        found.append(_asset(number, hours))
    return found


def test_a_season_that_dips_the_whole_peer_group_scores_low(rules: ScoringRules) -> None:
    everyone = dict.fromkeys(range(PEERS), (AS_OF - 14, 0.2))  # two weeks laid up: Christmas
    signals = _signals(_group(everyone))
    for lease in signals.values():
        assert lease.utilization_vs_baseline == pytest.approx(0.2, abs=0.05)
        assert lease.peer_utilization_vs_baseline == pytest.approx(0.2, abs=0.05)
        assert lease.peer_group_size == PEERS
        score = score_lease(lease, rules)
        assert score.band is Band.LOW
        codes = {r.code for r in score.reasons}
        assert "utilization_below_baseline" not in codes
        assert "peer_group_dip" in codes


def test_a_milder_group_dip_is_judged_against_the_peers(rules: ScoringRules) -> None:
    dip = dict.fromkeys(range(PEERS), (AS_OF - 14, 0.7))
    dip[0] = (AS_OF - 14, 0.7 * 0.5)  # the whole group at 70%, this lessee at half of that
    signals = _signals(_group(dip))
    alone, peer = signals["L-00"], signals["L-01"]
    assert score_lease(peer, rules).score == 0.0
    reason = {r.code: r for r in score_lease(alone, rules).reasons}["utilization_below_baseline"]
    assert reason.evidence["season_adjusted_ratio"] == pytest.approx(0.5, abs=0.08)
    assert reason.points > 0


def test_a_lessee_specific_sustained_drop_scores_high_with_that_reason(
    rules: ScoringRules,
) -> None:
    signals = _signals(_group({3: (AS_OF - 49, 0.35)}))  # seven weeks at about a third
    lease = signals["L-03"]
    assert lease.weeks_below_baseline == 7
    assert lease.sustained_use == pytest.approx(0.35, abs=0.06)
    score = score_lease(lease, rules)
    assert score.band.rank >= Band.HIGH.rank
    top = score.reasons[0]
    assert top.code == "sustained_decline"
    assert top.evidence["weeks"] == 7
    assert "7 week(s)" in top.summary
    others = [s for lease_id, s in signals.items() if lease_id != "L-03"]
    assert all(score_lease(s, rules).band is Band.LOW for s in others)


def test_a_one_week_dip_is_not_a_sustained_drop(rules: ScoringRules) -> None:
    lease = _signals(_group({5: (AS_OF - 7, 0.3)}))["L-05"]
    assert lease.weeks_below_baseline == 1
    assert all(r.code != "sustained_decline" for r in score_lease(lease, rules).reasons)


def test_the_weekly_pattern_and_holidays_set_what_is_expected() -> None:
    histories = _group({})
    easter = START.date() + timedelta(days=AS_OF - 7)  # a Monday in the recent window
    histories[0].hours[AS_OF - 7] = 0.0  # closed for the holiday
    plain = _signals(histories)["L-00"]
    known = _signals(histories, frozenset({easter}))["L-00"]
    assert known.utilization_vs_baseline is not None
    assert plain.utilization_vs_baseline is not None
    assert known.utilization_vs_baseline > plain.utilization_vs_baseline
    assert known.utilization_vs_baseline == pytest.approx(1.0, abs=0.1)


def test_a_small_peer_group_gives_no_peer_figures() -> None:
    histories = [_asset(n, _normal(n), asset_type="cnc") for n in range(4)]
    lease = _signals(histories)["L-00"]
    assert lease.peer_utilization_vs_baseline is None
    assert lease.peer_group_size == 4
    assert lease.utilization_vs_baseline == pytest.approx(1.0, abs=0.1)


def test_days_without_data_are_not_judged() -> None:
    histories = _group({})
    histories[2].covered[AS_OF - 10 : AS_OF] = 0.0
    histories[2].hours[AS_OF - 10 : AS_OF] = 0.0
    lease = _signals(histories)["L-02"]
    assert lease.utilization_vs_baseline == pytest.approx(1.0, abs=0.15)
    assert lease.days_silent == 10.0
    assert lease.weeks_below_baseline == 0


def test_a_day_outside_the_history_is_refused() -> None:
    portfolio = Portfolio(_group({}), {})
    with pytest.raises(ValueError, match="outside the portfolio's 210 days"):
        portfolio.signals(DAYS + 1)


def test_an_abrupt_drop_shows_in_days_before_a_weekly_figure(rules: ScoringRules) -> None:
    signals = _signals(_group({4: (AS_OF - 5, 0.3)}))  # Wednesday to Sunday at 30%
    lease = signals["L-04"]
    assert lease.days_down == 4  # Wednesday to Saturday; the Sunday is no working day
    assert lease.weeks_below_baseline <= 1
    score = score_lease(lease, rules)
    top = score.reasons[0]
    assert (top.code, top.evidence["days"]) == ("abrupt_drop", 4)
    assert rules.abrupt_drop is not None
    assert top.points == rules.abrupt_drop.weight  # four days: at or past `full`
    assert all(s.days_down == 0 for lease_id, s in signals.items() if lease_id != "L-04")


def test_one_day_down_or_a_whole_group_down_is_no_abrupt_drop(rules: ScoringRules) -> None:
    one_day = _signals(_group({4: (AS_OF - 2, 0.3)}))["L-04"]  # the Saturday only
    assert one_day.days_down == 1
    assert "abrupt_drop" not in {r.code for r in score_lease(one_day, rules).reasons}
    everyone = _signals(_group(dict.fromkeys(range(PEERS), (AS_OF - 5, 0.3))))
    assert all(s.days_down == 0 for s in everyone.values())  # the season, not the lessee


def test_a_drop_the_recent_baseline_absorbed_shows_against_the_prior_one() -> None:
    lease = _signals(_group({7: (AS_OF - 77, 0.5)}))["L-07"]  # eleven weeks at half
    assert lease.utilization_vs_baseline == pytest.approx(1.0, abs=0.1)  # the 56 days absorbed it
    assert lease.utilization_vs_prior == pytest.approx(0.5, abs=0.08)


def test_hours_lost_inside_a_day_are_not_idle_but_an_idle_asset_is(rules: ScoringRules) -> None:
    histories = _group({8: (AS_OF - 28, 0.3)})  # idle at 30%, every hour reported
    lossy = histories[6]
    lossy.covered[AS_OF - 28 : AS_OF] = 12.0  # half of each day's data lost while it ran
    lossy.hours[AS_OF - 28 : AS_OF] *= 0.5
    signals = _signals(histories)
    steady, poor_link, idle = signals["L-05"], signals["L-06"], signals["L-08"]
    assert steady.utilization_vs_contract is not None
    assert poor_link.utilization_vs_contract == pytest.approx(
        steady.utilization_vs_contract, rel=0.12
    )
    assert poor_link.utilization_vs_baseline == pytest.approx(1.0, abs=0.12)
    assert poor_link.days_down == 0
    assert score_lease(poor_link, rules).score == 0.0
    assert idle.utilization_vs_contract == pytest.approx(
        0.3 * steady.utilization_vs_contract, rel=0.15
    )
    assert "utilization_below_contract" in {r.code for r in score_lease(idle, rules).reasons}
