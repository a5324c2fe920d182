"""Utilization: sustained drops in running hours against the asset's own weekly baseline.

Each settled day's running hours are compared with the median of the same weekday over the last
weeks (known holidays skipped, scaled by the peer group's level that day when known; a day the
whole peer group paused is skipped). Two CUSUMs watch the working days: one on the shortfall of
active days (standardised by the asset's own day-to-day spread, tuned to a 25% drop) and one on
the rate of idle days. A crossing opens an episode with its start (the CUSUM's last zero), its
magnitude (hours lost / hours expected since then) and a confidence (one-sided Mann-Whitney of
the ratios before vs since the start); an upward CUSUM back to the baseline closes it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from cloud.alerts.signals import EvidenceValue, Finding, Severity
from cloud.detectors.base import finding
from cloud.detectors.inputs import AssetData, DayUsage
from cloud.detectors.robust import lower_p_value, median_scale

KEY = "utilization"
#: How long after midnight a day is judged: late and replayed data have reached the rollups.
SETTLE = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class UtilizationThresholds:
    """Tuning of the utilization detector (one set for every asset; no per-asset tuning)."""

    history_weeks: int = 6  # same-weekday days kept for the baseline
    min_weeks: int = 4  # fewer same-weekday days: still learning, nothing detected
    working_share: float = 0.15  # a weekday below this share of the busiest one is not worked
    min_covered_hours: float = 12.0  # a day with less data is skipped, never read as idle
    idle_share: float = 0.1  # a working day below this share of its baseline is an idle day
    design_drop: float = 0.25  # the drop the active-day CUSUM finds fastest
    sigma_floor: float = 0.05
    sigma_ceiling: float = 0.3
    z_clip: float = 3.0  # a day counts as at most this many sigmas past the design drop
    max_day_share: float = 0.5  # one day brings a CUSUM at most this share of the way
    alarm_llr: float = 8.0  # CUSUM level (log-likelihood ratio) that opens or closes an episode
    idle_rate_floor: float = 0.02
    idle_rate_alt: float = 0.8  # idle-day rate the idle CUSUM looks for (an asset laid up)
    idle_alarm_llr: float = 13.0  # about six idle working days running: chance clusters are common
    pause_factor: float = 0.5  # peers below this share of their baseline: fleet pause, skip
    peer_dip: float = 0.85  # peers below this share: expect only as much of this asset too
    min_magnitude: float = 0.2  # a crossing with a smaller drop is dropped as noise
    report_step: float = 0.05  # an open episode is re-reported when its magnitude moves this much


@dataclass(frozen=True, slots=True)
class UtilizationInputs:
    """Settled days in time order, and the lease's known holidays."""

    days: tuple[DayUsage, ...]
    holidays: frozenset[date] = frozenset()


def _seven_lists() -> list[list[float]]:
    return [[] for _ in range(7)]


class DayRecord(BaseModel):
    """One evaluated working day."""

    day: date
    hours: float
    expected: float
    idle: bool
    shifts: dict[str, float] = Field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Running hours over expected hours (0 on an idle day)."""
        return 0.0 if self.idle else min(self.hours / self.expected, 1.5)


class Episode(BaseModel):
    """An open decline."""

    start: date
    detected: date
    trigger: Literal["hours", "idle_days"]
    magnitude: float
    confidence: float
    reported: float
    sigma: float
    recovery: float = 0.0
    recovery_start: date | None = None
    days: list[DayRecord] = Field(default_factory=list)


class UtilizationState(BaseModel):
    """Everything the detector remembers about one asset."""

    version: Literal[1] = 1
    device: str
    last_day: date | None = None
    weekday_hours: list[list[float]] = Field(default_factory=_seven_lists)
    healthy: list[DayRecord] = Field(default_factory=list)  # recent normal working days
    candidate: list[DayRecord] = Field(default_factory=list)  # days since a CUSUM left zero
    active_cusum: float = 0.0
    idle_cusum: float = 0.0
    active_start: date | None = None
    idle_start: date | None = None
    episode: Episode | None = None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


class UtilizationDetector:
    """Declines in one asset's daily running hours."""

    def __init__(self, state: UtilizationState, thresholds: UtilizationThresholds) -> None:
        """Wrap a state (new or restored)."""
        self.state = state
        self.t = thresholds

    @classmethod
    def create(cls, device: str, asset_type: str, t: UtilizationThresholds) -> UtilizationDetector:
        """A detector that knows nothing yet."""
        return cls(UtilizationState(device=device), t)

    @classmethod
    def restore(cls, text: str, t: UtilizationThresholds) -> UtilizationDetector:
        """A detector from its JSON state."""
        return cls(UtilizationState.model_validate_json(text), t)

    def to_json(self) -> str:
        """The state as JSON."""
        return self.state.model_dump_json()

    def expected_hours(self, day: date) -> float | None:
        """The baseline running hours of a day (same-weekday median), None while learning."""
        history = self.state.weekday_hours[day.weekday()]
        if len(history) < self.t.min_weeks:
            return None
        return statistics.median(history)

    def _working(self, base: float | None) -> bool:
        """Whether a weekday baseline is a working day's (scale-free: hours, minutes, kWh)."""
        if base is None or base <= 0:
            return False
        busiest = max((statistics.median(h) for h in self.state.weekday_hours if h), default=0.0)
        return base >= self.t.working_share * busiest

    def decline_evidence(self) -> float:
        """How close the detector is to reporting a decline: 0 nothing, 1 an open episode."""
        s, t = self.state, self.t
        if s.episode is not None:
            return 1.0
        return min(1.0, max(s.active_cusum / t.alarm_llr, s.idle_cusum / t.idle_alarm_llr))

    def peer_ratio(self, usage: DayUsage) -> float | None:
        """This asset's use of a day relative to its baseline, for its peers' factor."""
        base = self.expected_hours(usage.day)
        t = self.t
        if base is None or not self._working(base) or usage.covered_hours < t.min_covered_hours:
            return None
        return min(usage.running_hours / base, 2.0)

    def update(self, inputs: UtilizationInputs, now: datetime) -> list[Finding]:
        """Evaluate the new settled days in order."""
        found: list[Finding] = []
        for usage in inputs.days:
            last = self.state.last_day
            if last is not None and usage.day <= last:
                continue
            self.state.last_day = usage.day
            if usage.day in inputs.holidays or usage.covered_hours < self.t.min_covered_hours:
                continue
            found += self._observe(usage, now)
        return found

    def _observe(self, usage: DayUsage, now: datetime) -> list[Finding]:
        """One working day against its baseline."""
        base = self.expected_hours(usage.day)
        if base is None or not self._working(base):
            if self.state.episode is None:
                self._learn(usage.day, usage.running_hours)
            return []
        factor = usage.peer_factor
        if factor is not None and factor < self.t.pause_factor:
            return []  # the whole peer group paused: a holiday or the weather, not this asset
        dip = factor is not None and factor < self.t.peer_dip
        expected = base * (factor if dip and factor is not None else 1.0)
        record = DayRecord(
            day=usage.day,
            hours=usage.running_hours,
            expected=expected,
            idle=usage.running_hours < self.t.idle_share * expected,
            shifts=dict(usage.shift_hours),
        )
        if self.state.episode is not None:
            return self._follow(self.state.episode, record, now)
        return self._watch(record, now)

    def _learn(self, day: date, hours: float) -> None:
        history = self.state.weekday_hours[day.weekday()]
        history.append(round(hours, 3))
        del history[: -self.t.history_weeks]

    def _sigma(self) -> float:
        active = [r.ratio for r in self.state.healthy if not r.idle]
        if len(active) < 5:
            return 0.1
        return min(max(median_scale(active)[1], self.t.sigma_floor), self.t.sigma_ceiling)

    def _idle_rate(self) -> float:
        idle = sum(r.idle for r in self.state.healthy)
        return max(self.t.idle_rate_floor, (idle + 2.0) / (len(self.state.healthy) + 25.0))

    def _watch(self, record: DayRecord, now: datetime) -> list[Finding]:
        """Update both CUSUMs with a day; open an episode when one crosses."""
        s, t = self.state, self.t
        p, q = self._idle_rate(), t.idle_rate_alt
        if record.idle:
            step = min(math.log(q / p), t.idle_alarm_llr * t.max_day_share)
            s.idle_cusum = max(0.0, s.idle_cusum + step)
        else:
            sigma = self._sigma()
            d = t.design_drop / sigma
            z = max(-t.z_clip, min(d + t.z_clip, (1.0 - record.ratio) / sigma))
            step = min(d * (z - d / 2), t.alarm_llr * t.max_day_share)
            s.active_cusum = max(0.0, s.active_cusum + step)
            s.idle_cusum = max(0.0, s.idle_cusum + math.log((1 - q) / (1 - p)))
        s.active_start = (s.active_start or record.day) if s.active_cusum > 0 else None
        s.idle_start = (s.idle_start or record.day) if s.idle_cusum > 0 else None
        if s.active_start is None and s.idle_start is None:
            self._healthy(record)
            return []
        s.candidate.append(record)
        if s.active_cusum < t.alarm_llr and s.idle_cusum < t.idle_alarm_llr:
            return []
        return self._open(record, now)

    def _healthy(self, record: DayRecord) -> None:
        s = self.state
        for day in [*s.candidate, record]:
            self._learn(day.day, day.hours)
            s.healthy.append(day)
        s.candidate = []
        del s.healthy[:-40]

    def _open(self, record: DayRecord, now: datetime) -> list[Finding]:
        s = self.state
        trigger: Literal["hours", "idle_days"] = "hours"
        start = s.active_start
        if s.active_cusum < self.t.alarm_llr or start is None:
            trigger, start = "idle_days", s.idle_start or record.day
        days = [d for d in s.candidate if d.day >= start]
        magnitude = _lost_share(days)
        if magnitude < self.t.min_magnitude:
            s.active_cusum = s.idle_cusum = 0.0
            s.active_start = s.idle_start = None
            s.candidate = []
            return []
        p = lower_p_value([r.ratio for r in s.healthy], [d.ratio for d in days])
        s.episode = Episode(
            start=start, detected=record.day, trigger=trigger, magnitude=magnitude,
            confidence=1.0 - p, reported=magnitude, sigma=self._sigma(), days=days,
        )  # fmt: skip
        s.candidate = []
        s.active_cusum = s.idle_cusum = 0.0
        s.active_start = s.idle_start = None
        return [self._finding(s.episode, now, open_=True)]

    def _follow(self, episode: Episode, record: DayRecord, now: datetime) -> list[Finding]:
        """Track an open episode: re-estimate its magnitude, close it on recovery."""
        t = self.t
        episode.days.append(record)
        del episode.days[:-60]
        level = 1.0 - _lost_share(episode.days[-14:])
        shift = max(1.0 - level, t.design_drop)
        d = shift / episode.sigma
        z = max(-t.z_clip, min(d + t.z_clip, (record.ratio - level) / episode.sigma))
        step = min(d * (z - d / 2), t.alarm_llr * t.max_day_share)
        episode.recovery = max(0.0, episode.recovery + step)
        recovering = episode.recovery > 0
        episode.recovery_start = (episode.recovery_start or record.day) if recovering else None
        if episode.recovery >= t.alarm_llr:
            self.state.episode = None
            return [self._finding(episode, now, open_=False)]
        episode.magnitude = _lost_share(episode.days)
        if abs(episode.magnitude - episode.reported) < t.report_step:
            return []
        episode.reported = episode.magnitude
        return [self._finding(episode, now, open_=True)]

    def _finding(self, episode: Episode, now: datetime, *, open_: bool) -> Finding:
        """The finding of an episode, with its numbers."""
        days = episode.days
        expected = sum(d.expected for d in days)
        actual = sum(d.hours for d in days)
        if open_:
            summary = (
                f"Running hours down {episode.magnitude:.0%} since {episode.start}: "
                f"{actual:.1f} h over {len(days)} working days where {expected:.1f} h were usual."
            )
        else:
            summary = f"Running hours back to the usual level (decline since {episode.start} over)."
        healthy = self.state.healthy
        evidence: dict[str, EvidenceValue] = {
            "start": episode.start.isoformat(),
            "detected_on": episode.detected.isoformat(),
            "trigger": episode.trigger,
            "working_days": len(days),
            "actual_hours": actual,
            "expected_hours": expected,
            "baseline_ratio_sigma": episode.sigma,
            "idle_days": sum(d.idle for d in days),
        }
        evidence.update(_shift_change(healthy, days))
        since = episode.start if open_ else (episode.recovery_start or days[-1].day)
        at = min(now, _midnight(days[-1].day) + timedelta(days=1) + SETTLE)  # one instant a day
        return finding(
            self.state.device, KEY, "decline", open_=open_, severity=Severity.WARNING,
            since=_midnight(since), at=at, summary=summary, evidence=evidence,
            confidence=episode.confidence, magnitude=episode.magnitude,
        )  # fmt: skip


def _lost_share(days: Sequence[DayRecord]) -> float:
    """Share of the expected hours that were not run."""
    expected = sum(d.expected for d in days)
    return 0.0 if expected <= 0 else max(0.0, 1.0 - sum(d.hours for d in days) / expected)


def _shift_change(before: Sequence[DayRecord], after: Sequence[DayRecord]) -> dict[str, float]:
    """Mean hours per working day and shift, before the episode and during it."""
    change: dict[str, float] = {}
    for name in sorted({k for d in (*before, *after) for k in d.shifts}):
        for label, days in (("before", before), ("during", after)):
            if days:
                change[f"{name}_shift_{label}"] = sum(d.shifts.get(name, 0.0) for d in days) / len(
                    days
                )
    return change


def peer_ratio(state_json: str, usage: DayUsage, t: UtilizationThresholds) -> float | None:
    """One peer's use of a day relative to its own baseline (None while it is learning)."""
    return UtilizationDetector.restore(state_json, t).peer_ratio(usage)


def peer_factor(ratios: Sequence[float | None], min_peers: int = 5) -> float | None:
    """The peer group's level on a day: the median of its members' ratios (needs `min_peers`)."""
    known = [r for r in ratios if r is not None]
    return statistics.median(known) if len(known) >= min_peers else None


def utilization_inputs(data: AssetData) -> UtilizationInputs:
    """The value function: settled days and holidays from the runner's data."""
    return UtilizationInputs(data.days, data.holidays)
