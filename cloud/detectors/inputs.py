"""Typed inputs of the detectors, and how to build them from what the state store keeps.

The runner reads, per asset and evaluation, one `AssetData` (rollups, the retained status, the
registry's latest live reading, machine events, positions, the lease's region and holidays);
each detector's description has a `value_fn` that picks what that detector needs from it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

#: Metrics that say whether the machine runs: `running` (0/1) or the edge's `state` (2 = running).
RUNNING_METRICS: Mapping[str, float] = {"running": 0.5, "state": 1.5}
_RUNNING = tuple(RUNNING_METRICS.items())
#: Shifts for per-shift running hours (UTC hours, end exclusive; night wraps past midnight).
SHIFTS: tuple[tuple[str, int, int], ...] = (("early", 6, 14), ("late", 14, 22), ("night", 22, 6))


@dataclass(frozen=True, slots=True)
class MinuteSample:
    """One minute of one asset: the mean of each metric's 1-minute rollup (missing = absent)."""

    ts: datetime
    values: Mapping[str, float]

    def running(self) -> bool | None:
        """Whether the machine ran in this minute, None when no running measure is present."""
        values = self.values
        for metric, above in _RUNNING:
            value = values.get(metric)
            if value is not None:
                return value >= above
        return None


@dataclass(frozen=True, slots=True)
class DayUsage:
    """Running hours of one asset on one UTC day, how many hours had data, and its peers' level."""

    day: date
    running_hours: float
    covered_hours: float = 24.0
    shift_hours: Mapping[str, float] = field(default_factory=dict)
    peer_factor: float | None = None  # median use/baseline of the peer group that day


@dataclass(frozen=True, slots=True)
class StatusInput:
    """The gateway's retained status: birth (online) or last will (offline)."""

    state: Literal["online", "offline"]
    ts: datetime
    boot: str = ""


@dataclass(frozen=True, slots=True)
class EventInput:
    """A machine event the gateway reported (start, stop, fault, sensor_lost, ...)."""

    ts: datetime
    kind: str
    sensor: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PositionInput:
    """A GPS fix of the asset."""

    ts: datetime
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Region:
    """A lease's permitted region: a circle (center, radius) or a polygon of (lat, lon)."""

    center: tuple[float, float] | None = None
    radius_km: float | None = None
    polygon: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        """Refuse a region that is neither a circle nor a polygon."""
        circle = self.center is not None and self.radius_km is not None and self.radius_km > 0
        if circle == (len(self.polygon) >= 3):
            raise ValueError("region: a circle (center, radius_km > 0) or a polygon (3+ corners)")


@dataclass(frozen=True, slots=True)
class AssetData:
    """What the runner read for one asset for one evaluation (all times UTC, time order)."""

    device: str
    asset_type: str
    now: datetime
    minutes: tuple[MinuteSample, ...] = ()  # 1-minute rollups past the detector's watermark
    days: tuple[DayUsage, ...] = ()  # closed, settled days not evaluated yet
    status: StatusInput | None = None
    last_live_at: datetime | None = None  # devices.latest_reading_at (live data only)
    boot: str | None = None  # devices.last_boot
    events: tuple[EventInput, ...] = ()
    positions: tuple[PositionInput, ...] = ()
    region: Region | None = None
    home: tuple[float, float] | None = None  # the asset's site, for "parked at a known site"
    holidays: frozenset[date] = frozenset()


def _aware(ts: datetime) -> datetime:
    """A UTC-aware datetime (SQLite hands naive ones back)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def minute_samples(rows: Iterable[Mapping[str, Any]]) -> list[MinuteSample]:
    """Samples from 1-minute rollup rows (`StateStore.rollups(device, 60, ...)`): mean per metric.

    `fault_code` takes the bucket's max instead, so a code raised for a moment is not averaged away.
    """
    buckets: dict[datetime, dict[str, float]] = defaultdict(dict)
    for row in rows:
        count = int(row["count"])
        if count <= 0:
            continue
        metric = str(row["metric"])
        value = float(row["max"]) if metric == "fault_code" else float(row["sum"]) / count
        buckets[_aware(row["bucket"])][metric] = value
    return [MinuteSample(ts, values) for ts, values in sorted(buckets.items())]


def positions(rows: Iterable[Mapping[str, Any]]) -> list[PositionInput]:
    """GPS fixes from 1-minute rollup rows of the metrics `lat` and `lon` (bucket means)."""
    fixes: dict[datetime, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row["metric"] in ("lat", "lon") and int(row["count"]) > 0:
            fixes[_aware(row["bucket"])][str(row["metric"])] = float(row["sum"]) / int(row["count"])
    return [
        PositionInput(ts, pair["lat"], pair["lon"])
        for ts, pair in sorted(fixes.items())
        if "lat" in pair and "lon" in pair
    ]


def _shift_of(hour: int) -> str:
    """Name of the shift a UTC hour belongs to."""
    for name, start, end in SHIFTS:
        if (start <= hour < end) if start < end else (hour >= start or hour < end):
            return name
    return SHIFTS[0][0]  # pragma: no cover - the shifts cover the day


def day_usage(rows: Iterable[Mapping[str, Any]]) -> list[DayUsage]:
    """Running hours per UTC day from 1-hour rollups of `running` (0/1): mean x 1 h per bucket.

    An hour without a `running` bucket is not covered: its running time is unknown, never zero.
    """
    hours: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    covered: dict[date, float] = defaultdict(float)
    for row in rows:
        count = int(row["count"])
        if row["metric"] != "running" or count <= 0:
            continue
        bucket = _aware(row["bucket"])
        share = min(1.0, max(0.0, float(row["sum"]) / count))
        hours[bucket.date()][_shift_of(bucket.hour)] += share
        covered[bucket.date()] += 1.0
    return [
        DayUsage(day, math.fsum(hours[day].values()), covered[day], dict(hours[day]))
        for day in sorted(covered)
    ]


def settled_days(usage: Iterable[DayUsage], now: datetime, settle: timedelta) -> list[DayUsage]:
    """The days that closed at least `settle` before `now` (late and replayed data had time)."""
    return [
        u
        for u in usage
        if datetime.combine(u.day, datetime.min.time(), UTC) + settle + timedelta(days=1) <= now
    ]
