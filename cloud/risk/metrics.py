"""How well a backtest's scores ranked the leases that went into arrears (see `ranking`).

- Lease-week AUC, overall and per cause (and over every cause but the base rate, the arrears
  no sensor can see): observations of leases already in arrears, and those
  whose horizon runs past the scenario's end (outcome unknown), are left out.
- Lease-level matched AUC at `LEADS` days before the arrears, overall and per cause.
- Lead time: per lease that fell into arrears, the days from the first scoring day in the
  `lookback_days` before it with band high or worse to the arrears date; median (with how many
  arrears leases were caught at all).
- Alerts: entries into a band or worse while the lease is still paying (from a better band, or
  at the first scoring day), per 100 leases per year, and the share followed by arrears within
  the horizon; for each band a risk team could act on (high, critical).
- Per signal: the lease-week AUC of one signal's points alone, and of the score without it
  (lease-week and lease-level at the first lead).
- The ceiling (`cloud.risk.oracle`): the same AUCs of a score that knew the repayment model's
  hazard, from the incidents begun by the as-of day (and from every incident), overall and
  per cause.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from cloud.risk.backtest import SIGNALS, BacktestRun
from cloud.risk.model import Band
from cloud.risk.oracle import oracle_scores
from cloud.risk.ranking import (
    FloatArray,
    Panel,
    auc,
    auc_of_causes,
    lead_days,
    matched_auc,
    panel_of,
)

LEADS = (30, 60)
BASE_RATE = "base_rate"
#: The per-cause row of every cause but the base rate (arrears no sensor can see).
SENSOR_VISIBLE = "all but base_rate"
ALERT_BANDS = (Band.HIGH, Band.CRITICAL)


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One signal's share of the ranking."""

    signal: str
    auc_alone: float | None
    auc_without: float | None
    lease_auc_without: float | None
    observations_with_points: int


@dataclass(frozen=True, slots=True)
class CauseRow:
    """How the leases in arrears of one cause were ranked and caught."""

    cause: str
    leases: int
    lease_week_auc: float | None
    lease_auc: float | None  # matched, at the first of LEADS
    caught: int
    median_lead_days: float | None
    oracle_auc: float | None = None  # lease-week AUC of the as-of oracle, same observations


@dataclass(frozen=True, slots=True)
class AlertRow:
    """Entries into a band or worse: how many, how often, how many were followed by arrears."""

    band: str
    alerts: int
    per_100_leases_per_year: float
    followed_by_arrears: float | None  # share of alerts with arrears within the horizon


@dataclass(frozen=True, slots=True)
class Ceiling:
    """The AUCs an oracle that knew the repayment model's hazard gets on the same observations."""

    auc: float | None  # lease-week, knowing the incidents begun by the as-of day
    lease_auc: float | None  # matched, at the first of LEADS, the same oracle
    full_auc: float | None  # lease-week, knowing every incident, also those still to come


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
    lease_auc: dict[int, float | None]  # lead days -> matched lease-level AUC
    lease_auc_cases: dict[int, int]
    median_lead_days: float | None
    caught: int
    alerts: tuple[AlertRow, ...]
    scored_days: int
    causes: tuple[CauseRow, ...]
    signals: tuple[SignalRow, ...]
    timings_s: dict[str, float]
    ceiling: Ceiling | None = None


def _arrears(run: BacktestRun) -> dict[str, float]:
    """Per lease: the scenario day its arrears began (inf: none in the scenario)."""
    return {
        lease: (o.arrears_at - run.start) / timedelta(days=1) if o.arrears_at else np.inf
        for lease, o in run.outcomes.items()
    }


def _labels(
    run: BacktestRun, arrears: dict[str, float], horizon_days: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which observations count, and which of them are positive."""
    as_of = np.array(run.observations.days, dtype=np.float64)
    ahead = np.array([arrears[x] for x in run.observations.leases]) - as_of
    within = as_of + horizon_days <= run.resolved.scenario.days
    known = (ahead > 0) & (within | (ahead <= horizon_days))
    return known, ahead <= horizon_days


def _alerts(panel: Panel, bands: FloatArray, horizon: float, years: float) -> tuple[AlertRow, ...]:
    leases = len(panel.arrears)
    rows = []
    for band in ALERT_BANDS:
        at = np.nan_to_num(bands, nan=-1.0) >= band.rank
        before = np.concatenate([np.zeros((leases, 1), dtype=bool), at[:, :-1]], axis=1)
        paying = panel.days[None, :] < panel.arrears[:, None]
        entries = at & ~before & paying
        ahead = panel.arrears[:, None] - panel.days[None, :]
        followed = entries & (ahead <= horizon)
        count = int(entries.sum())
        rows.append(
            AlertRow(
                str(band), count, 100.0 * count / leases / years if leases and years else 0.0,
                float(followed.sum()) / count if count else None,
            )
        )  # fmt: skip
    return tuple(rows)


def _signal_rows(
    points: FloatArray, labels: npt.NDArray[np.bool_], lease_auc_without: list[float | None]
) -> tuple[SignalRow, ...]:
    rows = []
    for index, signal in enumerate(SIGNALS):
        alone = points[:, index]
        without = np.minimum(np.delete(points, index, axis=1).sum(axis=1), 100.0)
        rows.append(
            SignalRow(
                signal, auc(alone, labels), auc(without, labels), lease_auc_without[index],
                int((alone > 0).sum()),
            )
        )  # fmt: skip
    return tuple(rows)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True, slots=True)
class _Ranked:
    """What the per-cause rows share: the known observations and the panel of scores."""

    scores: FloatArray  # known observations only
    labels: npt.NDArray[np.bool_]
    causes: npt.NDArray[np.str_]
    panel: Panel
    leads: dict[str, list[float]]
    horizon_days: float
    oracle: FloatArray  # the as-of oracle's scores of the known observations


def _cause_rows(ranked: _Ranked, by_cause: dict[str, int]) -> tuple[CauseRow, ...]:
    """One row per cause, and one for every cause but the base rate."""
    groups = [(cause, frozenset({cause})) for cause in sorted(by_cause)]
    groups.append((SENSOR_VISIBLE, frozenset(by_cause) - {BASE_RATE}))
    return tuple(
        CauseRow(
            name, sum(by_cause[c] for c in chosen),
            auc_of_causes(ranked.scores, ranked.labels, ranked.causes, chosen),
            matched_auc(ranked.panel, LEADS[0], ranked.horizon_days, chosen).auc,
            sum(len(ranked.leads.get(c, [])) for c in chosen),
            _median([x for c in chosen for x in ranked.leads.get(c, [])]),
            auc_of_causes(ranked.oracle, ranked.labels, ranked.causes, chosen),
        )
        for name, chosen in groups
    )  # fmt: skip


def _lease_auc_without(
    run: BacktestRun, points: FloatArray, outcome: tuple[dict[str, float], dict[str, str]],
    horizon_days: float,
) -> list[float | None]:  # fmt: skip
    """Per signal: the lease-level AUC (first lead) of the score without its points."""
    obs = run.observations
    found = []
    for index in range(len(SIGNALS)):
        rest = np.minimum(np.delete(points, index, axis=1).sum(axis=1), 100.0)
        part = panel_of(obs.leases, obs.days, rest, *outcome)
        found.append(matched_auc(part, LEADS[0], horizon_days).auc)
    return found


def _by_cause(run: BacktestRun) -> dict[str, int]:
    found: dict[str, int] = {}
    for outcome in run.outcomes.values():
        if outcome.arrears_at is not None:
            found[outcome.cause] = found.get(outcome.cause, 0) + 1
    return dict(sorted(found.items()))


def _ceiling(
    run: BacktestRun, labels: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
    outcome: tuple[dict[str, float], dict[str, str]], horizon_days: float,
) -> tuple[Ceiling, FloatArray]:  # fmt: skip
    """The oracles' AUCs, and the as-of oracle's scores of the known observations."""
    known, positive = labels
    oracle = oracle_scores(run, horizon_days)
    obs = run.observations
    oracle_panel = panel_of(obs.leases, obs.days, oracle.as_of, *outcome)
    ceiling = Ceiling(
        auc(oracle.as_of[known], positive[known]),
        matched_auc(oracle_panel, LEADS[0], horizon_days).auc,
        auc(oracle.full[known], positive[known]),
    )
    return ceiling, oracle.as_of[known]


def report(
    run: BacktestRun, horizon_days: float = 90.0, lookback_days: float = 180.0
) -> BacktestReport:
    """The figures of a backtest run."""
    obs = run.observations
    arrears = _arrears(run)
    causes = {lease: o.cause for lease, o in run.outcomes.items()}
    known, positive = _labels(run, arrears, horizon_days)
    scores = np.array(obs.scores, dtype=np.float64)
    points = np.array(obs.points, dtype=np.float64).reshape(-1, len(SIGNALS))
    panel = panel_of(obs.leases, obs.days, scores, arrears, causes)
    bands = panel_of(obs.leases, obs.days, np.array(obs.bands, dtype=np.float64), arrears, causes)
    high = (np.nan_to_num(bands.scores) >= Band.HIGH.rank).astype(np.float64)
    leads = lead_days(panel, high, lookback_days)
    cause_of = np.array([causes[x] for x in obs.leases])[known]
    ceiling, oracle = _ceiling(run, (known, positive), (arrears, causes), horizon_days)
    ranked = _Ranked(scores[known], positive[known], cause_of, panel, leads, horizon_days, oracle)
    matched = {lead: matched_auc(panel, lead, horizon_days) for lead in LEADS}
    by_cause = _by_cause(run)
    scored_days = max(obs.days) - min(obs.days) + run_step(obs.days) if obs.days else 0
    every_lead = [x for found in leads.values() for x in found]
    without = _lease_auc_without(run, points, (arrears, causes), horizon_days)
    return BacktestReport(
        scenario=run.resolved.scenario.name,
        leases=len(run.outcomes),
        leases_in_arrears=sum(by_cause.values()),
        arrears_by_cause=by_cause,
        observations=int(known.sum()),
        positives=int(ranked.labels.sum()),
        auc=auc(ranked.scores, ranked.labels),
        lease_auc={lead: m.auc for lead, m in matched.items()},
        lease_auc_cases={lead: m.cases for lead, m in matched.items()},
        median_lead_days=_median(every_lead),
        caught=len(every_lead),
        alerts=_alerts(panel, bands.scores, horizon_days, scored_days / 365.0),
        scored_days=scored_days,
        causes=_cause_rows(ranked, by_cause),
        signals=_signal_rows(points[known], ranked.labels, without),
        timings_s=dict(run.timings),
        ceiling=ceiling,
    )


def run_step(days: list[int]) -> int:
    """The spacing of the scoring days (1 when scored once)."""
    distinct = sorted(set(days))
    return distinct[1] - distinct[0] if len(distinct) > 1 else 1
