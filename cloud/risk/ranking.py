"""Rank measures of a backtest: lease-week AUC, per cause, and the lease-level matched AUC.

- Lease-week AUC: over every (lease, as-of day) observation, the chance that one whose lease
  falls into arrears within the horizon scores above one whose lease does not (Mann-Whitney U,
  ties counted half). Per cause: the positives of that cause against all the negatives.
- Lease-level matched AUC: what a credit team does on a given day. Each lease that fell into
  arrears is taken at the last scoring day at least `lead_days` (and less than `lead_days` plus
  one scoring step) before its arrears, and compared with every lease scored that same day
  whose arrears (if any) come after the horizon: the chance it scored above them. One
  comparison set per arrears lease, so each lease counts once, whatever its history length,
  and the season of that day is the same on both sides.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def auc(scores: FloatArray, positive: BoolArray) -> float | None:
    """ROC AUC of `scores` for `positive` (None when either class is empty)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return None
    statistic = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(statistic) / (len(pos) * len(neg))


def auc_of_causes(
    scores: FloatArray, positive: BoolArray, causes: npt.NDArray[np.str_], chosen: frozenset[str]
) -> float | None:
    """The lease-week AUC of the positives of the `chosen` causes against all negatives."""
    keep = ~positive | np.isin(causes, list(chosen))
    return auc(scores[keep], positive[keep])


@dataclass(frozen=True, slots=True)
class Panel:
    """Scores as a (leases x scoring days) table, with each lease's arrears day and cause."""

    days: npt.NDArray[np.int64]  # scoring days, ascending
    scores: FloatArray  # (leases, days); NaN where not scored
    arrears: FloatArray  # (leases,) scenario day of arrears, inf when none
    causes: list[str]


@dataclass(frozen=True, slots=True)
class MatchedAuc:
    """Lease-level AUC at one lead: its value and how many arrears leases it covers."""

    auc: float | None
    cases: int


def matched_auc(
    panel: Panel, lead_days: float, horizon_days: float, causes: frozenset[str] | None = None
) -> MatchedAuc:
    """Each arrears lease `lead_days` before its arrears against the leases clean that day."""
    wins = 0.0
    cases = 0
    step = int(panel.days[1] - panel.days[0]) if len(panel.days) > 1 else 1
    for lease, arrears in enumerate(panel.arrears):
        if not np.isfinite(arrears) or (causes is not None and panel.causes[lease] not in causes):
            continue
        before = np.nonzero(panel.days <= arrears - lead_days)[0]
        if not len(before) or arrears - panel.days[before[-1]] >= lead_days + step:
            continue  # arrears too long after the last scoring day for this lead
        if not np.isfinite(panel.scores[lease, before[-1]]):
            continue
        column = before[-1]
        day = panel.days[column]
        clean = (panel.arrears > day + horizon_days) & np.isfinite(panel.scores[:, column])
        controls = panel.scores[clean, column]
        if not len(controls):
            continue
        mine = panel.scores[lease, column]
        wins += (np.sum(controls < mine) + 0.5 * np.sum(controls == mine)) / len(controls)
        cases += 1
    return MatchedAuc(wins / cases if cases else None, cases)


def panel_of(
    leases: list[str], days: list[int], scores: FloatArray, arrears: dict[str, float],
    causes: dict[str, str],
) -> Panel:  # fmt: skip
    """The observations as a panel (`arrears` per lease: scenario day, inf for none)."""
    order = sorted(set(leases))
    row = {lease: i for i, lease in enumerate(order)}
    columns = np.array(sorted(set(days)), dtype=np.int64)
    column = {int(d): i for i, d in enumerate(columns)}
    table = np.full((len(order), len(columns)), np.nan)
    for lease, day, score in zip(leases, days, scores, strict=True):
        table[row[lease], column[day]] = score
    return Panel(
        columns, table, np.array([arrears[lease] for lease in order]), [causes[x] for x in order]
    )


def lead_days(panel: Panel, high: FloatArray, lookback_days: float) -> dict[str, list[float]]:
    """Per cause: days from the first alert (`high` true) in the lookback to the arrears."""
    found: dict[str, list[float]] = defaultdict(list)
    for lease, arrears in enumerate(panel.arrears):
        if not np.isfinite(arrears):
            continue
        ahead = arrears - panel.days
        alerted = np.nonzero((ahead > 0) & (ahead <= lookback_days) & (high[lease] > 0))[0]
        if len(alerted):
            found[panel.causes[lease]].append(float(ahead[alerted[0]]))
    return dict(found)
