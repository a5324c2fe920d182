"""Utilization: sudden drops found with their start and size, holidays and fleet dips left alone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from cloud.alerts.signals import Finding
from cloud.detectors.inputs import DayUsage
from cloud.detectors.scoring import load, scenario_labels
from cloud.detectors.scoring_usage import run_fleet
from cloud.detectors.utilization import (
    UtilizationDetector,
    UtilizationInputs,
    UtilizationThresholds,
    peer_factor,
    peer_ratio,
)
from cloud.risk.rules import load_rules

START = date(2025, 1, 6)  # a Monday


def week_series(days: int, seed: int = 1, hours: float = 8.0) -> list[float]:
    """Mon-Fri about `hours` h (5% noise), weekends idle."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(days):
        day = START + timedelta(days=n)
        out.append(0.0 if day.weekday() >= 5 else float(hours * (1 + 0.05 * rng.standard_normal())))
    return out


def run(
    series: list[float],
    *,
    holidays: frozenset[date] = frozenset(),
    factors: dict[int, float] | None = None,
    detector: UtilizationDetector | None = None,
    first: int = 0,
) -> tuple[UtilizationDetector, list[tuple[int, Finding]]]:
    """Feed one settled day at a time, as the runner does; findings with their day index."""
    det = detector or UtilizationDetector.create("a-1", "excavator", UtilizationThresholds())
    found: list[tuple[int, Finding]] = []
    for n, hours in enumerate(series[first:], start=first):
        day = START + timedelta(days=n)
        usage = DayUsage(day, hours, 24.0, {"early": hours}, (factors or {}).get(n))
        now = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        found += [(n, f) for f in det.update(UtilizationInputs((usage,), holidays), now)]
    return det, found


def test_sudden_40_percent_drop_is_found_within_days_with_its_size_and_start() -> None:
    series = week_series(120)
    drop_day = 70  # a Monday
    series[drop_day:] = [h * 0.6 for h in series[drop_day:]]
    _, found = run(series)
    assert len(found) >= 1
    day, first = found[0]
    assert first.state == "open" and first.key == "decline"
    assert drop_day <= day <= drop_day + 4  # two working days of evidence
    assert first.magnitude is not None and abs(first.magnitude - 0.4) < 0.08
    assert abs((first.since.date() - (START + timedelta(days=drop_day))).days) <= 2
    assert first.confidence > 0.9
    assert "Running hours down" in first.summary and first.evidence["trigger"] == "hours"


def test_known_holiday_fortnight_is_not_a_decline() -> None:
    series = week_series(120)
    holiday = frozenset(START + timedelta(days=n) for n in range(70, 84))
    for n in range(70, 84):
        series[n] *= 0.1
    _, found = run(series, holidays=holiday)
    assert found == []


def test_fleet_wide_dip_is_not_a_decline_when_peers_dip_too() -> None:
    series = week_series(120)
    factors = dict.fromkeys(range(70, 80), 0.5)
    for n in range(70, 80):
        series[n] *= 0.5
    _, found = run(series, factors=factors)
    assert found == []
    _, unexplained = run(series)
    assert unexplained, "without the peer group the same dip is a decline"


def test_recovery_closes_the_episode() -> None:
    series = week_series(140)
    for n in range(60, 90):
        series[n] *= 0.5
    _, found = run(series)
    states = [(n, f.state) for n, f in found if f.state == "cleared"]
    assert next(f.state for _, f in found) == "open"
    assert len(states) == 1
    assert 90 <= states[0][0] <= 97


def test_idle_days_alone_take_about_a_working_week() -> None:
    series = week_series(120)
    for n in range(70, 100):
        series[n] = 0.0
    _, found = run(series)
    day, first = found[0]
    assert first.evidence["trigger"] in ("idle_days", "hours")
    assert day <= 70 + 9


def test_state_survives_json_between_evaluations() -> None:
    series = week_series(120)
    series[70:] = [h * 0.6 for h in series[70:]]
    _, straight = run(series)
    half, before = run(series[:65])
    restored = UtilizationDetector.restore(half.to_json(), UtilizationThresholds())
    _, after = run(series, detector=restored, first=65)
    assert [(n, f.state, f.magnitude) for n, f in before + after] == [
        (n, f.state, f.magnitude) for n, f in straight
    ]


def test_already_judged_days_are_ignored() -> None:
    series = week_series(60)
    det, _ = run(series)
    day = START + timedelta(days=10)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert det.update(UtilizationInputs((DayUsage(day, 0.0),)), now) == []


def test_peer_factor_is_the_median_ratio_of_enough_peers() -> None:
    detectors = [run(week_series(60, seed=s))[0] for s in range(6)]
    day = START + timedelta(days=63)  # a Wednesday
    ratios = [
        peer_ratio(d.to_json(), DayUsage(day, 4.0), UtilizationThresholds()) for d in detectors
    ]
    factor = peer_factor(ratios)
    assert factor is not None and 0.4 < factor < 0.6
    assert peer_factor(ratios[:3]) is None


def test_golden_simulator_scenario_drop_found_and_seasonal_dips_left_alone() -> None:
    """The shipped `utilization` scenario: exc-040 loses 40% on 2025-10-03 (a Friday)."""
    resolved = load("utilization")
    labels = scenario_labels(resolved)
    episodes = run_fleet(resolved)
    exc = [e for e in episodes if e.asset == "exc-040"]
    assert len(exc) == 1
    assert abs((exc[0].start.date() - date(2025, 10, 3)).days) <= 2
    assert (exc[0].detected - datetime(2025, 10, 3, tzinfo=UTC)) <= timedelta(days=6)
    assert abs(exc[0].magnitude - 0.4) < 0.06
    explained = {lb["asset"] for lb in labels if lb["kind"] in ("utilization_decline", "parked")}
    assert {e.asset for e in episodes} <= explained  # christmas and frost dips raise nothing


CORPUS_CHRISTI = date(2026, 6, 4)  # a public holiday in Cologne (DE-NW), not in Hanover (DE-NI)


def _idle_before_corpus_christi(holidays: frozenset[date]) -> list[Finding]:
    """Weekdays about 8 h from January 2026; idle on Corpus Christi and the 3 working days before.

    The asset also rests on every DE-NW holiday (it is in Cologne); the detector is given the
    holidays its context would carry.
    """
    start = date(2026, 1, 5)
    idle = {date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)}
    kept = load_rules().holidays.resolver().around("rhine-ruhr", CORPUS_CHRISTI)
    hours = week_series(170)
    det = UtilizationDetector.create("gw-k", "excavator", UtilizationThresholds())
    found: list[Finding] = []
    for n, usual in enumerate(hours):
        day = start + timedelta(days=n)
        ran = 0.0 if day in idle or day in kept or day == CORPUS_CHRISTI else usual
        now = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        usage = DayUsage(day, ran, 24.0, {"early": ran}, None)
        found += det.update(UtilizationInputs((usage,), holidays), now)
    return found


def test_a_regional_holiday_is_not_a_drop_for_an_asset_in_that_region() -> None:
    """The asset's region calendar (rules: rhine-ruhr = DE-NW) skips Corpus Christi.

    The same days judged with Lower Saxony's calendar read the holiday as a fourth idle working
    day in a row, and the idle-day CUSUM opens a decline on it.
    """
    holidays = load_rules().holidays.resolver()
    own = holidays.around("rhine-ruhr", CORPUS_CHRISTI)
    other = holidays.around("DE-NI", CORPUS_CHRISTI)
    assert CORPUS_CHRISTI in own and CORPUS_CHRISTI not in other
    assert _idle_before_corpus_christi(own) == []
    misjudged = _idle_before_corpus_christi(other)
    assert misjudged and misjudged[0].key == "decline" and misjudged[0].state == "open"
    assert misjudged[0].evaluated_at.date() == CORPUS_CHRISTI + timedelta(days=1)
