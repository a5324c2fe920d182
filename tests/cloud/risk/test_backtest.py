"""The backtest's figures are computed from the data: change the scenario or seed, they change."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from cloud.detectors.scoring import parse_ts, scenario_labels
from cloud.risk.backtest import BacktestConfig, BacktestRun, run_backtest
from cloud.risk.metrics import report
from cloud.risk.oracle import oracle_scores
from cloud.risk.ranking import auc, matched_auc, panel_of
from cloud.risk.rules import ScoringRules
from firmware_sim.repayment import draw_outcomes

INCIDENTS = frozenset({"utilization_decline", "tamper", "relocation", "parked"})
QUIET = """
name = "quiet"
description = "6 assets, 63 days, a christmas-like dip and short outages: no decline at all"
seed = 5
start = 2025-03-03
days = 63
speed = 86400
sample_s = 300
batch_s = 3600

[regions.benelux]
center = [51.5, 4.9]
radius_km = 200

[sites.rotterdam-yard]
position = [51.885, 4.286]
region = "benelux"

[[populations]]
prefix = "q"
count = 6
types = { truck = 1, excavator = 1, cnc = 1, compressor = 1 }
sites = ["rotterdam-yard"]
lease_prefix = "L-Q"

[[events]]
kind = "seasonal_dip"
share = 1.0
start_day = 45
days = 7
magnitude = 0.8
name = "holiday"

[[events]]
kind = "silence"
cause = "network_outage"
share = 0.5
start_day = [5, 50]
days = [0.1, 0.5]
"""


@pytest.fixture(scope="module")
def utilization_run(rules: ScoringRules) -> BacktestRun:
    """The shipped `utilization` scenario (40 assets, 150 days) backtested once."""
    return run_backtest(BacktestConfig(scenario="utilization"), rules)


def _reseeded(run: BacktestRun, seed: int) -> BacktestRun:
    days = run.resolved.scenario.days
    leases = [a.lease for a in run.resolved.assets]
    window = (run.start, run.start + timedelta(days=days))
    outcomes = draw_outcomes(leases, scenario_labels(run.resolved), window, seed)
    return replace(run, outcomes=outcomes)


def test_auc_rank_formula() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([False, False, True, True])
    assert auc(scores, positive) == pytest.approx(0.75)
    assert auc(scores, np.zeros(4, dtype=bool)) is None
    assert auc(np.ones(4), positive) == pytest.approx(0.5)


def test_figures_are_counted_from_the_observations(utilization_run: BacktestRun) -> None:
    result = report(utilization_run, horizon_days=60.0)
    obs = utilization_run.observations
    arrears = {
        lease: (o.arrears_at - utilization_run.start) / timedelta(days=1)
        for lease, o in utilization_run.outcomes.items()
        if o.arrears_at is not None
    }
    positives = sum(
        1
        for lease, day in zip(obs.leases, obs.days, strict=True)
        if lease in arrears and 0 < arrears[lease] - day <= 60
    )
    assert result.positives == positives > 0
    assert result.leases == 40
    assert result.leases_in_arrears == len(arrears)
    assert result.auc is not None and 0.5 < result.auc <= 1.0
    assert result.median_lead_days is not None and result.median_lead_days > 0
    by_name = {row.signal: row for row in result.signals}
    assert by_name["capacity_warning"].observations_with_points > 0
    assert by_name["tamper"].auc_alone == pytest.approx(0.5)  # no tamper here: no ranking


def test_another_seed_or_scenario_changes_the_figures(
    utilization_run: BacktestRun, rules: ScoringRules
) -> None:
    base = report(utilization_run)
    reseeded = report(_reseeded(utilization_run, seed=99))
    assert (reseeded.leases_in_arrears, reseeded.positives, reseeded.auc) != (
        base.leases_in_arrears,
        base.positives,
        base.auc,
    )
    smaller = report(run_backtest(BacktestConfig(scenario="utilization", assets=20), rules))
    assert smaller.leases == 20
    assert (smaller.positives, smaller.auc) != (base.positives, base.auc)


def test_no_declines_no_lead_time(tmp_path: Path, rules: ScoringRules) -> None:
    path = tmp_path / "quiet.toml"
    path.write_text(QUIET, encoding="utf-8")
    run = run_backtest(BacktestConfig(scenario=str(path), first_day=28), rules)
    result = report(run, horizon_days=21.0)
    assert set(result.arrears_by_cause) <= {"base_rate"}
    assert result.median_lead_days is None
    assert result.caught == 0
    assert result.leases == 6
    assert result.observations > 0


def test_first_day_past_the_scenario_is_refused(tmp_path: Path, rules: ScoringRules) -> None:
    path = tmp_path / "quiet.toml"
    path.write_text(QUIET, encoding="utf-8")
    with pytest.raises(ValueError, match="past the scenario's 63 days"):
        run_backtest(BacktestConfig(scenario=str(path), first_day=70), rules)


def test_matched_auc_compares_each_arrears_lease_with_the_clean_leases_that_day() -> None:
    days = [0, 7, 14, 21]
    scores = {
        "bad": [10.0, 20.0, 60.0, 80.0],  # arrears on day 50: taken on day 14 at lead 30
        "late": [90.0, 90.0, 90.0, 90.0],  # arrears on day 200: clean within the horizon
        "good": [30.0, 50.0, 50.0, 50.0],
        "calm": [0.0, 0.0, 70.0, 0.0],
    }
    leases = [lease for lease in scores for _ in days]
    flat = np.array([s for lease in scores for s in scores[lease]])
    arrears = {"bad": 50.0, "late": 200.0, "good": np.inf, "calm": np.inf}
    causes = {lease: "base_rate" if lease in ("bad", "late") else "none" for lease in scores}
    panel = panel_of(leases, days * 4, flat, arrears, causes)
    found = matched_auc(panel, lead_days=30.0, horizon_days=90.0)
    assert found.cases == 1  # "late" has its arrears past the last scoring day + lead
    assert found.auc == pytest.approx(1 / 3)  # day 14: 60 beats good (50), loses to late, calm
    assert (
        matched_auc(panel, lead_days=30.0, horizon_days=90.0, causes=frozenset({"tamper"})).cases
        == 0
    )


def test_alerts_are_entries_while_paying_per_100_leases_a_year(
    utilization_run: BacktestRun,
) -> None:
    result = report(utilization_run)
    obs = utilization_run.observations
    arrears = {
        lease: (o.arrears_at - utilization_run.start) / timedelta(days=1)
        for lease, o in utilization_run.outcomes.items()
        if o.arrears_at is not None
    }
    years = result.scored_days / 365.0
    for row, rank in zip(result.alerts, (2, 3), strict=True):
        previous: dict[str, int] = {}
        entries = 0
        for lease, day, band in zip(obs.leases, obs.days, obs.bands, strict=True):
            paying = day < arrears.get(lease, 1e9)
            entries += band >= rank and previous.get(lease, -1) < rank and paying
            previous[lease] = band
        assert row.alerts == entries > 0
        assert row.per_100_leases_per_year == pytest.approx(100.0 * entries / 40 / years)
    assert [row.band for row in result.alerts] == ["high", "critical"]
    *each, visible = result.causes
    assert sum(row.leases for row in each) == result.leases_in_arrears
    assert visible.cause == "all but base_rate"
    assert visible.leases == result.leases_in_arrears - result.arrears_by_cause.get("base_rate", 0)
    assert result.lease_auc_cases[30] > 0


def test_the_ceiling_is_an_oracle_that_knows_the_hazard(utilization_run: BacktestRun) -> None:
    """The oracle scores each lease-week with the repayment model's chance of arrears."""
    result = report(utilization_run)
    ceiling = result.ceiling
    assert ceiling is not None and ceiling.auc is not None and ceiling.full_auc is not None
    assert 0.5 < ceiling.auc <= 1.0
    assert ceiling.full_auc >= ceiling.auc  # knowing the future incidents too cannot hurt here
    oracle = oracle_scores(utilization_run, 90.0)
    obs = utilization_run.observations
    starts = _decline_days(utilization_run)
    before = [
        i for i, (lease, day) in enumerate(zip(obs.leases, obs.days, strict=True))
        if lease in starts and day < starts[lease] <= day + 20
    ]  # fmt: skip
    clean = [i for i, lease in enumerate(obs.leases) if lease not in _incidents(utilization_run)]
    assert before and clean
    for i in before:  # the decline to come: the full oracle sees it, the as-of one cannot
        same_day = next(j for j in clean if obs.days[j] == obs.days[i])
        assert oracle.as_of[i] == pytest.approx(oracle.as_of[same_day])
        assert oracle.full[i] > oracle.as_of[i]
    visible = next(row for row in result.causes if row.cause == "all but base_rate")
    assert visible.oracle_auc is not None and visible.oracle_auc > 0.5
    reseeded = report(_reseeded(utilization_run, seed=99)).ceiling
    assert reseeded is not None and reseeded.auc != ceiling.auc  # other draws, other positives


def _decline_days(run: BacktestRun) -> dict[str, float]:
    """The scenario day of each declining lease's first incident (a decline)."""
    found: dict[str, tuple[float, str]] = {}
    for lb in run.labels:
        if lb["kind"] in INCIDENTS:
            day = (parse_ts(lb["start"]) - run.start) / timedelta(days=1)
            lease = str(lb["lease"])
            mine = (day, str(lb["kind"]))
            found[lease] = min(found.get(lease, mine), mine)
    return {lease: day for lease, (day, kind) in found.items() if kind == "utilization_decline"}


def _incidents(run: BacktestRun) -> set[str]:
    """Leases with any incident the repayment model turns into arrears."""
    return {str(lb["lease"]) for lb in run.labels if lb["kind"] in INCIDENTS}
