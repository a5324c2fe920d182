"""How well a backtest's scores ranked the leases that went into arrears.

- AUC: over every (lease, as-of day) observation, the chance that one whose lease falls into
  arrears within `horizon_days` after it scores above one whose lease does not. Observations
  of leases already in arrears, and those whose horizon runs past the scenario's end (outcome
  unknown), are left out. Mann-Whitney U (scipy), ties counted half.
- Lead time: per lease that fell into arrears, the days from the first as-of day in the
  `lookback_days` before it with band high or worse to the arrears date; median over the
  leases caught (with the share caught).
- Alerts: entries into band high or worse (from a better band, or at the first as-of day),
  per 100 leases over the scored period.
- Per signal: the AUC of one signal's points alone, and of the score without it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

from cloud.risk.backtest import SIGNALS, BacktestRun
from cloud.risk.model import Band

HIGH = Band.HIGH.rank


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One signal's share of the ranking."""

    signal: str
    auc_alone: float | None
    auc_without: float | None
    observations_with_points: int


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """The backtest's figures."""

    scenario: str
    leases: int
    leases_in_arrears: int
    arrears_by_cause: dict[str, int]
    observations: int
    positives: int
    auc: float | None
    median_lead_days: float | None
    caught: int
    alerts_per_100_leases: float
    scored_days: int
    signals: tuple[SignalRow, ...]
    timings_s: dict[str, float]


def auc(scores: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float | None:
    """ROC AUC of `scores` for `positive` (None when either class is empty)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return None
    statistic = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(statistic) / (len(pos) * len(neg))


def _arrears_days(run: BacktestRun) -> npt.NDArray[np.float64]:
    """Per observation: days from its as-of to its lease's arrears (inf: none in the scenario)."""
    start = run.start
    days = {
        lease: (o.arrears_at - start) / timedelta(days=1) if o.arrears_at else np.inf
        for lease, o in run.outcomes.items()
    }
    return np.array([days[lease] for lease in run.observations.leases], dtype=np.float64)


def _labels(
    run: BacktestRun, horizon_days: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which observations count, and which of them are positive."""
    as_of = np.array(run.observations.days, dtype=np.float64)
    arrears = _arrears_days(run)
    ahead = arrears - as_of
    within = as_of + horizon_days <= run.resolved.scenario.days
    known = (ahead > 0) & (within | (ahead <= horizon_days))
    return known, ahead <= horizon_days


def _lead_days(run: BacktestRun, lookback_days: float) -> list[float]:
    first_high: dict[str, int] = {}
    start = run.start
    obs = run.observations
    for lease, day, band in zip(obs.leases, obs.days, obs.bands, strict=True):
        outcome = run.outcomes[lease].arrears_at
        if outcome is None or band < HIGH or lease in first_high:
            continue
        before = (outcome - start) / timedelta(days=1) - day
        if 0 < before <= lookback_days:
            first_high[lease] = day
    return [
        (run.outcomes[lease].arrears_at - start) / timedelta(days=1) - day  # type: ignore[operator]
        for lease, day in first_high.items()
    ]


def _alerts(run: BacktestRun) -> int:
    previous: dict[str, int] = {}
    count = 0
    for lease, band in zip(run.observations.leases, run.observations.bands, strict=True):
        count += band >= HIGH and previous.get(lease, -1) < HIGH
        previous[lease] = band
    return count


def _signal_rows(
    points: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]
) -> tuple[SignalRow, ...]:
    rows = []
    for index, signal in enumerate(SIGNALS):
        alone = points[:, index]
        without = np.minimum(np.delete(points, index, axis=1).sum(axis=1), 100.0)
        rows.append(
            SignalRow(signal, auc(alone, positive), auc(without, positive), int((alone > 0).sum()))
        )
    return tuple(rows)


def report(
    run: BacktestRun, horizon_days: float = 90.0, lookback_days: float = 180.0
) -> BacktestReport:
    """The figures of a backtest run."""
    obs = run.observations
    known, positive = _labels(run, horizon_days)
    scores = np.array(obs.scores, dtype=np.float64)[known]
    labels = positive[known]
    points = np.array(obs.points, dtype=np.float64).reshape(-1, len(SIGNALS))[known]
    in_arrears = [o for o in run.outcomes.values() if o.arrears_at is not None]
    causes: dict[str, int] = {}
    for outcome in in_arrears:
        causes[outcome.cause] = causes.get(outcome.cause, 0) + 1
    leads = _lead_days(run, lookback_days)
    leases = len(run.outcomes)
    return BacktestReport(
        scenario=run.resolved.scenario.name,
        leases=leases,
        leases_in_arrears=len(in_arrears),
        arrears_by_cause=dict(sorted(causes.items())),
        observations=int(known.sum()),
        positives=int(labels.sum()),
        auc=auc(scores, labels),
        median_lead_days=statistics.median(leads) if leads else None,
        caught=len(leads),
        alerts_per_100_leases=100.0 * _alerts(run) / leases if leases else 0.0,
        scored_days=max(obs.days) - min(obs.days) + 1 if obs.days else 0,
        signals=_signal_rows(points, labels),
        timings_s=dict(run.timings),
    )
