"""An asset's daily history and its detectors' episodes: what a lease's signals are made from.

The backtest (and anything else holding per-day rollups) keeps, per asset, the running hours and
the hours with data of each day, the asset's type and region (its peer group), and the episodes
its detectors raised. `cloud.risk.portfolio` turns a portfolio of them into every lease's
`LeaseSignals` as of the start of a day, reading nothing from later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

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

    def open_at(self, as_of: datetime) -> bool:
        """Reported by `as_of` and not cleared by then (an open alert)."""
        return self.reported <= as_of and (self.cleared is None or self.cleared > as_of)


@dataclass(frozen=True, slots=True)
class AssetHistory:
    """One asset's days (from `start`): running hours, hours with data, and its episodes."""

    asset: str
    lease: str
    start: datetime  # midnight UTC of day 0
    hours: FloatArray
    covered: FloatArray  # hours of the day with data, 0..24
    expected_per_day: float  # running hours a calendar day the contract expects
    asset_type: str = ""  # peer group: same type and region
    region: str = ""
    capacity: tuple[Episode, ...] = ()
    tamper: tuple[Episode, ...] = ()
    geofence: tuple[Episode, ...] = ()
    faults_warning: tuple[Episode, ...] = ()  # fault episodes by severity (one per detector key)
    faults_critical: tuple[Episode, ...] = ()

    def silent_days(self, day: int) -> int:
        """Whole days without data right before `day`."""
        count = 0
        while day - count - 1 >= 0 and self.covered[day - count - 1] <= 0.0:
            count += 1
        return count
