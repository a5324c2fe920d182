"""A lease's signals as of a day, from its assets' daily history and their detectors' episodes.

The backtest (and anything else holding per-day rollups) keeps, per asset, the running hours and
the hours with data of each day, and the episodes its detectors raised; `lease_signals` turns
them into the `LeaseSignals` of a lease as of the start of a day, reading nothing from later.
Definitions (the ones the credit-check side uses too):
- utilization vs contract: running hours in the window over the contract's expected hours;
- utilization vs baseline: mean hours a day over the last 14 days over the mean of the 56 days
  before them (None with fewer than 28 baseline days);
- data completeness: hours with data over hours in the window;
- silence: the whole days with no data right before the as-of day;
- capacity warnings, tamper, geofence: episodes open at the as-of time, or opened in the window;
  a warning's drop is the one known then (1 - utilization vs baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from cloud.risk.model import LeaseSignals

RECENT_DAYS = 14
BASELINE_DAYS = 56
MIN_BASELINE_DAYS = 28

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Episode:
    """One detector episode: when it was reported (not when it began) and when it cleared."""

    reported: datetime
    cleared: datetime | None = None

    def counts_at(self, as_of: datetime, since: datetime) -> bool:
        """Open at `as_of`, or reported in (since, as_of]."""
        if self.reported > as_of:
            return False
        return self.cleared is None or self.cleared > as_of or self.reported > since


@dataclass(frozen=True, slots=True)
class AssetHistory:
    """One asset's days (from `start`): running hours, hours with data, and its episodes."""

    asset: str
    lease: str
    start: datetime  # midnight UTC of day 0
    hours: FloatArray
    covered: FloatArray  # hours of the day with data, 0..24
    expected_per_day: float  # running hours a calendar day the contract expects
    capacity: tuple[Episode, ...] = ()
    tamper: tuple[Episode, ...] = ()
    geofence: tuple[Episode, ...] = ()
    hours_sum: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sums = np.concatenate(([0.0], np.cumsum(self.hours)))
        object.__setattr__(self, "hours_sum", sums)

    def total(self, first: int, last: int) -> float:
        """Running hours over days [first, last)."""
        first = max(first, 0)
        return float(self.hours_sum[last] - self.hours_sum[first]) if last > first else 0.0

    def silent_days(self, day: int) -> int:
        """Whole days without data right before `day`."""
        count = 0
        while day - count - 1 >= 0 and self.covered[day - count - 1] <= 0.0:
            count += 1
        return count


def _baseline_ratio(assets: Sequence[AssetHistory], day: int) -> float | None:
    first = max(0, day - RECENT_DAYS - BASELINE_DAYS)
    base_days = day - RECENT_DAYS - first
    if base_days < MIN_BASELINE_DAYS:
        return None
    base = sum(a.total(first, day - RECENT_DAYS) for a in assets) / base_days
    if base <= 0.0:
        return None
    return sum(a.total(day - RECENT_DAYS, day) for a in assets) / RECENT_DAYS / base


def _capacity(
    assets: Sequence[AssetHistory], as_of: datetime, since: datetime, baseline: float | None
) -> tuple[int, float | None]:
    """Warnings open (or reported in the window); the drop as known now: 1 - baseline ratio."""
    warnings = sum(e.counts_at(as_of, since) for a in assets for e in a.capacity)
    if not warnings:
        return 0, None
    return warnings, (None if baseline is None else max(0.0, 1.0 - baseline))


def lease_signals(
    lease_id: str,
    lessee_id: str,
    assets: Sequence[AssetHistory],
    day: int,
    window_days: int = 28,
) -> LeaseSignals:
    """The lease's signals as of the start of scenario day `day` (days before it are known)."""
    if not assets or day <= 0:
        raise ValueError(f"lease {lease_id}: need at least one asset and one day of history")
    as_of = assets[0].start + timedelta(days=day)
    since = as_of - timedelta(days=window_days)
    first = max(0, day - window_days)
    span = day - first
    expected = sum(a.expected_per_day for a in assets) * span
    used = sum(a.total(first, day) for a in assets)
    covered = sum(float(a.covered[first:day].sum()) for a in assets) / (24.0 * span * len(assets))
    baseline = _baseline_ratio(assets, day)
    warnings, drop = _capacity(assets, as_of, since, baseline)
    silent = [a.silent_days(day) for a in assets]
    return LeaseSignals(
        lease_id=lease_id,
        lessee_id=lessee_id,
        as_of=as_of,
        window_days=span,
        assets=len(assets),
        utilization_vs_contract=used / expected if expected > 0 else None,
        utilization_vs_baseline=baseline,
        capacity_warnings=warnings,
        capacity_drop=drop,
        faults_warning=0,
        faults_critical=0,
        silent_assets=sum(1 for s in silent if s > 0),
        tamper_events=sum(e.counts_at(as_of, since) for a in assets for e in a.tamper),
        days_silent=float(max(silent)),
        geofence_breaches=sum(e.counts_at(as_of, since) for a in assets for e in a.geofence),
        hours_cap_overrun=0.0,
        data_completeness=covered,
        lease_age_days=float(day),
    )
