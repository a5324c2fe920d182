"""Backtest: a scenario's telemetry through the detectors, scored weekly, against repayment.

Inputs come from the same pipeline `leasewatch detect score` uses (`cloud.detectors.simulated`,
`scoring_usage.run_fleet`, `scoring_silence.run_silence`), never from labels; the labels feed
only `firmware_sim.repayment`, which draws each lease's arrears. Then every lease is scored as
of every `step_days` (from `first_day`) and `cloud.risk.metrics` says how well the scores ranked
the leases that went into arrears. Faults are run only with `faults` (about 37 ms of CPU per
asset-day: use a subsampled scenario); otherwise their points are 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cloud.detectors.scoring import load, scenario_labels
from cloud.risk import cache
from cloud.risk.faults import fault_episodes, with_faults
from cloud.risk.history import AssetHistory
from cloud.risk.pipeline import Progress, default_workers, run_detectors
from cloud.risk.portfolio import Portfolio
from cloud.risk.rules import ScoringRules
from cloud.risk.scoring import score_lease
from firmware_sim.repayment import Label, RepaymentModel, RepaymentOutcome, draw_outcomes
from firmware_sim.scenarios import ResolvedScenario

#: Reason codes with points in the backtest (the per-signal table's rows).
SIGNALS = (
    "utilization_below_contract",
    "utilization_below_baseline",
    "capacity_warning",
    "sustained_decline",
    "abrupt_drop",
    "asset_silent",
    "tamper",
    "geofence_breach",
    "fault_burden",
)


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to run: scenario (optionally subsampled), repayment seed, the scoring calendar."""

    scenario: str = "portfolio"
    assets: int | None = None
    seed: int | None = None  # repayment draws; None: the scenario's own seed
    first_day: int = 42
    step_days: int = 7
    window_days: int = 28
    workers: int = field(default_factory=default_workers)  # processes for per-asset detectors
    cache_dir: Path | None = None  # detector histories kept here (None: always recompute)
    faults: bool = False  # run the fault detector too (slow: use on a subsampled scenario)


@dataclass(slots=True)
class Observations:
    """Every (lease, as-of day) scored: the score, its band rank and each signal's points."""

    leases: list[str] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    bands: list[int] = field(default_factory=list)
    points: list[list[float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """A run's histories, outcomes and observations, with its timings."""

    resolved: ResolvedScenario
    start: datetime  # midnight UTC of scenario day 0
    outcomes: dict[str, RepaymentOutcome]
    observations: Observations
    timings: dict[str, float]
    labels: tuple[Label, ...] = ()  # the scenario's ground truth (repayment and the oracle only)
    repayment: RepaymentModel = field(default_factory=RepaymentModel)


def histories_of(
    config: BacktestConfig, timings: dict[str, float], progress: Progress
) -> list[AssetHistory]:
    """The scenario's detector histories: from the cache when its key matches, else computed."""
    path = None
    if config.cache_dir is not None:
        path = config.cache_dir / f"{cache.cache_key(config.scenario, config.assets)}.npz"
        if path.exists():
            started = time.monotonic()
            found = cache.load(path)
            took = timings["cached detector histories"] = time.monotonic() - started
            progress(f"detector histories from {path}: {took:.1f} s")
            return found
    found, parts = run_detectors(config.scenario, config.assets, config.workers, progress)
    timings.update(parts)
    if path is not None:
        cache.save(path, found)
        progress(f"detector histories cached in {path}")
    return found


def holiday_calendars(
    histories: list[AssetHistory], rules: ScoringRules, days: int
) -> dict[str, frozenset[date]]:
    """Each region's public holidays over the histories' days (the rules' `[holidays]`)."""
    first = histories[0].start.date() if histories else date.min
    last = first + timedelta(days=max(0, days - 1))
    return rules.holidays.resolver().calendars((h.region for h in histories), first, last)


def score_histories(
    histories: list[AssetHistory], rules: ScoringRules, config: BacktestConfig, days: int
) -> Observations:
    """Every lease scored as of every step day: scores, band ranks and points per signal."""
    calendars = holiday_calendars(histories, rules, days)
    portfolio = Portfolio(histories, calendars, config.window_days)
    observations = Observations()
    for day in range(config.first_day, days, config.step_days):
        for signals in portfolio.signals(day):
            score = score_lease(signals, rules)
            points = dict.fromkeys(SIGNALS, 0.0)
            for reason in score.reasons:
                if reason.code in points:
                    points[reason.code] = reason.points
            observations.leases.append(signals.lease_id)
            observations.days.append(day)
            observations.scores.append(score.score)
            observations.bands.append(score.band.rank)
            observations.points.append(list(points.values()))
    return observations


def run_backtest(
    config: BacktestConfig, rules: ScoringRules, progress: Progress = lambda _: None
) -> BacktestRun:
    """Detectors over the scenario, repayment outcomes drawn, every lease scored weekly."""
    timings: dict[str, float] = {}
    resolved = load(config.scenario, config.assets)
    if config.first_day >= resolved.scenario.days:
        raise ValueError(
            f"first day {config.first_day} is past the scenario's {resolved.scenario.days} days"
        )
    histories = histories_of(config, timings, progress)
    if config.faults:
        started = time.monotonic()
        found = fault_episodes(
            config.scenario, config.assets, config.workers, config.cache_dir, progress
        )
        histories = with_faults(histories, found)
        timings["fault detector"] = time.monotonic() - started
    start = datetime.combine(resolved.scenario.start, datetime.min.time(), UTC)
    window = (start, start + timedelta(days=resolved.scenario.days))
    seed = resolved.scenario.seed if config.seed is None else config.seed
    leases = [a.lease for a in resolved.assets]
    labels = tuple(scenario_labels(resolved))
    repayment = RepaymentModel()
    outcomes = draw_outcomes(leases, labels, window, seed, repayment)
    started = time.monotonic()
    observations = score_histories(histories, rules, config, resolved.scenario.days)
    timings["scoring"] = time.monotonic() - started
    progress(f"scored {len(observations.scores)} lease-weeks: {timings['scoring']:.1f} s")
    return BacktestRun(resolved, start, outcomes, observations, timings, labels, repayment)
