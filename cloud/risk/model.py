"""What the risk engine reads and what it says: a lease's signals in, a score with reasons out.

The leasing domain (store, API, credit checks) computes `LeaseSignals` for a lease as of a time
from rollups, alerts, the completeness ledger and the lease's terms; the risk engine turns them
into a `RiskScore` with rules from a file. Both sides are plain data, so the scoring can be
tested, backtested and explained without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Band(StrEnum):
    """Risk band of a lease or lessee, from lowest to highest risk."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low up to 3 for critical: a band "worsened" when its rank went up."""
        return list(Band).index(self)


@dataclass(frozen=True, slots=True)
class LeaseSignals:
    """Everything the score of one lease depends on, as of one time (None: not known).

    Utilization figures cover the lease's assets over `window_days` up to `as_of`; counts
    of alerts are those open at `as_of` (or opened within the window, for events).
    """

    lease_id: str
    lessee_id: str
    as_of: datetime
    window_days: int
    assets: int
    #: Running hours in the window over the hours the contract expects (1.0 = as agreed).
    utilization_vs_contract: float | None
    #: Running hours in the last 14 days over the asset's own baseline (1.0 = as usual).
    utilization_vs_baseline: float | None
    #: Open capacity warnings (sustained utilization drops) and the largest drop among them (0..1).
    capacity_warnings: int
    capacity_drop: float | None
    #: Open fault alerts by severity.
    faults_warning: int
    faults_critical: int
    #: Silence alerts open now; removals/tamper among them are counted apart.
    silent_assets: int
    tamper_events: int
    #: Days the longest-silent asset has been silent (0 when all report).
    days_silent: float
    geofence_breaches: int
    #: Hours run beyond the contract's cap, as a fraction of the cap (0 when under it).
    hours_cap_overrun: float
    #: Share of expected messages received in the window (1.0 = nothing missing; None: no ledger).
    data_completeness: float | None
    #: Days since the lease started (new leases have little history to judge).
    lease_age_days: float
    #: The peer group's (same asset type and region) median of the same two ratios over the
    #: same windows (None: fewer than 5 peers known). When the whole group dips, it is the
    #: season, not the lessee: the score judges the lease's ratio over min(1, the peers').
    peer_utilization_vs_contract: float | None = None
    peer_utilization_vs_baseline: float | None = None
    #: Assets in the peer group the medians were taken over (0: no peer figures).
    peer_group_size: int = 0
    #: Full weeks, newest first, in which season-adjusted use stayed below 80% of the lease's
    #: baseline (the 8 weeks before the last quarter), and the use over those weeks (0..1).
    weeks_below_baseline: int = 0
    sustained_use: float | None = None
    #: The last 14 days' season-adjusted use against the same baseline before the quarter: a
    #: drop the 56-day baseline of `utilization_vs_baseline` has absorbed still shows here.
    utilization_vs_prior: float | None = None
    #: Working days, newest first, each below half the hours the asset's weekly pattern
    #: expects of it (season-adjusted): an abrupt drop, days before a weekly figure shows it.
    days_down: int = 0


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason code behind a score, with its contribution in score points and its evidence."""

    code: str
    points: float
    summary: str
    evidence: dict[str, str | int | float | bool | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RiskScore:
    """A score (0 = no concern, 100 = highest concern) with its band and ranked reasons."""

    subject: str  # "lease:<id>" or "lessee:<id>"
    as_of: datetime
    score: float
    band: Band
    reasons: tuple[Reason, ...]  # highest contribution first
    model_version: str
    data_completeness: float | None
