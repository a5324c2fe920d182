"""Every lease's signals as of a day, from a portfolio of asset histories (numpy over days).

Definitions (the credit-check side computes the same figures from rollups; `cloud.risk.usage`
holds the shared arithmetic):
- utilization vs contract: running hours of the window's judged days over the contract's
  expected hours on those days, each scaled by the day's share with data (a day without data,
  or a public holiday, is not judged; hours missing inside a judged day are not idle);
- utilization vs baseline: the last `RECENT_DAYS` against the asset's own weekly pattern over
  the `BASELINE_DAYS` before them (None with fewer than 28 judged baseline days);
- peer figures: the peer group's (type and region) median of each ratio over the same windows,
  weighted over the lease's assets by their expected hours;
- sustained drop: `usage.sustained_drop` (weeks below 80% of baseline, season-adjusted), and
  the last 14 days against that same older baseline (`utilization_vs_prior`);
- abrupt drop: `usage.abrupt_drop` (working days each under half their expected hours);
- data completeness: hours with data over hours in the window;
- silence: the whole days with no data right before the as-of day;
- capacity warnings, tamper, geofence: episodes open at the as-of time, or opened in the window;
  the warnings' drop is `capacity_drop`: the one known then (1 - utilization vs baseline), the
  one definition the credit check uses too;
- faults: fault episodes open at the as-of time, by severity (as the live scoring counts open
  fault alerts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from cloud.risk.history import AssetHistory, Episode
from cloud.risk.model import LeaseSignals
from cloud.risk.usage import (
    BASELINE_DAYS,
    RECENT_DAYS,
    DailyUse,
    FloatArray,
    IntArray,
    abrupt_drop,
    holiday_flags,
    lease_sum,
    peer_levels,
    ratio,
    recent_days,
    sustained_drop,
    weekly_use,
)

Calendars = Mapping[str, frozenset[date]]


@dataclass(frozen=True, slots=True)
class PeerLevels:
    """Per asset as of a day: its peer group's median ratios (NaN: unknown) and the group's size."""

    contract: FloatArray  # (assets,)
    baseline: FloatArray  # (assets,)
    weekly: FloatArray  # (assets, weeks), newest first, as `usage.weekly_use`
    sizes: IntArray  # (assets,)
    daily: FloatArray  # (assets, days), newest first, as `usage.recent_days`


def capacity_drop(warnings: int, utilization_vs_baseline: float | None) -> float | None:
    """The open capacity warnings' drop as of now: 1 - use vs baseline (None: no warning/ratio).

    The detector's alert magnitude is the drop it saw when it last evaluated; the score
    judges the drop known at the as-of time, the same in the backtest and the credit check.
    """
    if not warnings or utilization_vs_baseline is None:
        return None
    return max(0.0, 1.0 - float(utilization_vs_baseline))


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class Portfolio:
    """Asset histories indexed by lease and peer group, scored as of any day."""

    def __init__(
        self, histories: Sequence[AssetHistory], holidays: Calendars, window_days: int = 28
    ) -> None:
        """Index the histories (all from the same day 0); `holidays` per region."""
        if not histories:
            raise ValueError("a portfolio needs at least one asset history")
        self.assets = list(histories)
        self.window_days = window_days
        self.start = self.assets[0].start
        self.lease_ids = sorted({h.lease for h in self.assets})
        index = {lease: i for i, lease in enumerate(self.lease_ids)}
        self.lease_of = np.array([index[h.lease] for h in self.assets], dtype=np.int64)
        keys = sorted({(h.asset_type, h.region) for h in self.assets})
        group = {key: i for i, key in enumerate(keys)}
        self.groups = np.array([group[(h.asset_type, h.region)] for h in self.assets])
        self.covered = np.stack([h.covered for h in self.assets])
        days = self.covered.shape[1]
        dates = [self.start.date() + timedelta(days=d) for d in range(days)]
        flags = holiday_flags([h.region for h in self.assets], dates, dict(holidays))
        hours = np.stack([h.hours for h in self.assets])
        self.use = DailyUse.of(hours, self.covered, flags, self.start.weekday())
        self.per_day = np.array([h.expected_per_day for h in self.assets])

    def _lease(self, values: FloatArray) -> FloatArray:
        return lease_sum(values, self.lease_of, len(self.lease_ids))

    def _peer(self, levels: FloatArray, weights: FloatArray) -> FloatArray:
        """The lease's peer level: its assets' group medians weighted by expected hours."""
        known = np.isfinite(levels) & (weights > 0)
        return ratio(
            self._lease(np.where(known, levels * weights, 0.0)),
            self._lease(np.where(known, weights, 0.0)),
        )

    def _contract_use(self, day: int) -> tuple[FloatArray, FloatArray]:
        """Per asset: hours run and hours the contract expects on the window's judged days.

        A judged day expects the contract's hours times its share with data (a lossy link).
        """
        first = max(0, day - self.window_days)
        judged = self.use.judged[:, first:day]
        used = (self.use.hours[:, first:day] * judged).sum(axis=1)
        return used, self.per_day * (judged * self.use.coverage[:, first:day]).sum(axis=1)

    def _baseline_use(self, day: int) -> tuple[FloatArray, ...]:
        base = (day - RECENT_DAYS - BASELINE_DAYS, day - RECENT_DAYS)
        return self.use.window_use(base, (day - RECENT_DAYS, day))

    def peer_levels(self, day: int) -> PeerLevels:
        """Every asset's peer levels as of day `day`, its group being this portfolio's members."""
        used, expected = self._contract_use(day)
        contract, sizes = peer_levels(ratio(used, expected), self.groups)
        baseline, _ = peer_levels(ratio(*self._baseline_use(day)), self.groups)
        weekly, _ = peer_levels(ratio(*weekly_use(self.use, day)), self.groups)
        daily, _ = peer_levels(ratio(*recent_days(self.use, day)), self.groups)
        return PeerLevels(contract, baseline, weekly, sizes, daily)

    def signals(self, day: int, peers: PeerLevels | None = None) -> list[LeaseSignals]:
        """Every lease's signals as of the start of day `day` (days before it are known).

        `peers`: the assets' peer levels from elsewhere (a credit check's cached group
        figures); default: the groups among this portfolio's assets (the backtest).
        """
        if day <= 0 or day > self.covered.shape[1]:
            raise ValueError(f"day {day} is outside the portfolio's {self.covered.shape[1]} days")
        levels = peers or self.peer_levels(day)
        used, expected = self._contract_use(day)
        actual, base_expected = self._baseline_use(day)
        sustained = sustained_drop(
            self.use, self.groups, self.lease_of, len(self.lease_ids), day, levels=levels.weekly
        )
        abrupt = abrupt_drop(
            self.use, self.groups, self.lease_of, len(self.lease_ids), day, levels=levels.daily
        )
        mine: list[list[int]] = [[] for _ in self.lease_ids]
        for asset, lease in enumerate(self.lease_of):
            mine[lease].append(asset)
        contract, baseline = (
            ratio(self._lease(used), self._lease(expected)),
            ratio(self._lease(actual), self._lease(base_expected)),
        )
        peer_contract = self._peer(levels.contract, expected)
        peer_baseline = self._peer(levels.baseline, base_expected)
        return [
            self._one(lease, mine[i], day, {
                "utilization_vs_contract": _finite(contract[i]),
                "utilization_vs_baseline": _finite(baseline[i]),
                "peer_utilization_vs_contract": _finite(peer_contract[i]),
                "peer_utilization_vs_baseline": _finite(peer_baseline[i]),
                "peer_group_size": int(min(levels.sizes[a] for a in mine[i])),
                "weeks_below_baseline": int(sustained.weeks[i]),
                "sustained_use": _finite(sustained.ratio[i]),
                "utilization_vs_prior": _finite(sustained.recent[i]),
                "days_down": int(abrupt[i]),
            })
            for i, lease in enumerate(self.lease_ids)
        ]  # fmt: skip

    def _one(
        self, lease: str, assets: list[int], day: int, usage: dict[str, float | int | None]
    ) -> LeaseSignals:
        """One lease's signals: the usage figures plus episodes, silence and completeness."""
        as_of = self.start + timedelta(days=day)
        since = as_of - timedelta(days=self.window_days)
        first = max(0, day - self.window_days)
        histories = [self.assets[a] for a in assets]

        def counted(episodes: Sequence[Episode]) -> int:
            return sum(e.counts_at(as_of, since) for e in episodes)

        warnings = sum(counted(h.capacity) for h in histories)
        baseline = usage["utilization_vs_baseline"]
        drop = capacity_drop(warnings, None if baseline is None else float(baseline))
        silent = [h.silent_days(day) for h in histories]
        hours = 24.0 * (day - first) * len(assets)
        covered = float(self.covered[assets, first:day].sum()) / hours
        return LeaseSignals(
            lease_id=lease, lessee_id=lease, as_of=as_of, window_days=day - first,
            assets=len(assets), capacity_warnings=warnings, capacity_drop=drop,
            faults_warning=sum(e.open_at(as_of) for h in histories for e in h.faults_warning),
            faults_critical=sum(e.open_at(as_of) for h in histories for e in h.faults_critical),
            silent_assets=sum(1 for s in silent if s > 0), days_silent=float(max(silent)),
            tamper_events=sum(counted(h.tamper) for h in histories),
            geofence_breaches=sum(counted(h.geofence) for h in histories),
            hours_cap_overrun=0.0, data_completeness=covered, lease_age_days=float(day),
            **usage,  # type: ignore[arg-type]
        )  # fmt: skip
