"""Geofence: the asset outside its lease's permitted region for longer than a grace period.

The region is a circle (center, radius) or a polygon of (lat, lon) corners (ray casting; the
distance outside a polygon is to its nearest edge on a local flat projection, fine at the scale
of a region). The finding opens once every fix for `grace` has been outside, dated from the
first outside fix; it clears once the fixes have been inside for `grace` again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cloud.alerts.signals import EvidenceValue, Finding, Severity
from cloud.detectors.base import finding
from cloud.detectors.inputs import AssetData, PositionInput, Region
from cloud.detectors.state_json import build, dumps, loads

KEY = "geofence"
_EARTH_KM = 6371.0


@dataclass(frozen=True, slots=True)
class GeofenceThresholds:
    """How long an asset may be outside (or back inside) before the finding changes."""

    grace: timedelta = timedelta(minutes=30)
    margin_km: float = 0.5  # closer than this to the border counts as inside (GPS error)


@dataclass(frozen=True, slots=True)
class GeofenceInputs:
    """New GPS fixes in time order, and the lease's permitted region."""

    positions: tuple[PositionInput, ...]
    region: Region | None


@dataclass(kw_only=True)
class GeofenceState:
    """Where the asset was last judged to be."""

    version: Literal[1] = 1
    device: str
    watermark: datetime | None = None
    outside_since: datetime | None = None
    inside_since: datetime | None = None
    open: bool = False
    worst_km: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> GeofenceState:
        """A state from its JSON text (`state_json`: the shape the pydantic model wrote)."""
        return build(cls, loads(text), times=("watermark", "outside_since", "inside_since"))


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2
    h += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def _flat(point: tuple[float, float], origin: tuple[float, float]) -> tuple[float, float]:
    """Equirectangular km east/north of origin."""
    x = math.radians(point[1] - origin[1]) * math.cos(math.radians(origin[0])) * _EARTH_KM
    return x, math.radians(point[0] - origin[0]) * _EARTH_KM


def _segment_km(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = _flat(a, p)
    bx, by = _flat(b, p)
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / length2))
    return math.hypot(ax + t * dx, ay + t * dy)


def _inside_polygon(p: tuple[float, float], polygon: tuple[tuple[float, float], ...]) -> bool:
    inside = False
    lat, lon = p
    for (lat1, lon1), (lat2, lon2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (lat1 > lat) != (lat2 > lat):
            crossing = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing:
                inside = not inside
    return inside


def outside_km(region: Region, point: tuple[float, float]) -> float:
    """How far outside the region a point is (0 inside)."""
    if region.center is not None and region.radius_km is not None:
        return max(0.0, _km(point, region.center) - region.radius_km)
    if _inside_polygon(point, region.polygon):
        return 0.0
    corners = region.polygon
    return min(
        _segment_km(point, a, b) for a, b in zip(corners, corners[1:] + corners[:1], strict=True)
    )


class GeofenceDetector:
    """Whether one asset stays inside its permitted region."""

    def __init__(self, state: GeofenceState, thresholds: GeofenceThresholds) -> None:
        """Wrap a state (new or restored)."""
        self.state = state
        self.t = thresholds

    @classmethod
    def create(cls, device: str, asset_type: str, t: GeofenceThresholds) -> GeofenceDetector:
        """A detector that has seen no fix yet."""
        return cls(GeofenceState(device=device), t)

    @classmethod
    def restore(cls, text: str, t: GeofenceThresholds) -> GeofenceDetector:
        """A detector from its JSON state."""
        return cls(GeofenceState.from_json(text), t)

    def to_json(self) -> str:
        """The state as JSON."""
        return dumps(self.state)

    def update(self, inputs: GeofenceInputs, now: datetime) -> list[Finding]:
        """Judge each new fix in time order."""
        if inputs.region is None:
            return []
        found: list[Finding] = []
        for fix in inputs.positions:
            mark = self.state.watermark
            if mark is not None and fix.ts <= mark:
                continue
            self.state.watermark = fix.ts
            change = self._fix(inputs.region, fix)
            if change is not None:
                found.append(self._finding(change, fix, now))
        return found

    def _fix(self, region: Region, fix: PositionInput) -> str | None:
        s, t = self.state, self.t
        km = outside_km(region, (fix.lat, fix.lon))
        if km > t.margin_km:
            s.inside_since = None
            s.outside_since = s.outside_since or fix.ts
            s.worst_km = max(s.worst_km, km)
            if not s.open and fix.ts - s.outside_since >= t.grace:
                s.open = True
                return "open"
            return None
        s.inside_since = s.inside_since or fix.ts
        if not s.open:
            s.outside_since, s.worst_km = None, 0.0
            return None
        if fix.ts - s.inside_since >= t.grace:
            s.open = False
            return "cleared"
        return None

    def _finding(self, change: str, fix: PositionInput, now: datetime) -> Finding:
        s = self.state
        since = (s.outside_since or fix.ts) if change == "open" else (s.inside_since or fix.ts)
        if change == "open":
            summary = (
                f"Outside the permitted region since {since:%Y-%m-%d %H:%M} UTC,"
                f" {s.worst_km:.1f} km out."
            )
        else:
            summary = "Back inside the permitted region."
            s.outside_since, s.inside_since = None, None
        evidence: dict[str, EvidenceValue] = {
            "lat": fix.lat,
            "lon": fix.lon,
            "outside_km": s.worst_km,
            "grace_min": self.t.grace.total_seconds() / 60,
        }
        return finding(
            s.device, KEY, "region", open_=change == "open", severity=Severity.CRITICAL,
            since=since, at=fix.ts, summary=summary, evidence=evidence, confidence=0.95,
            magnitude=s.worst_km,
        )  # fmt: skip


def geofence_inputs(data: AssetData) -> GeofenceInputs:
    """The value function: new fixes and the lease's region."""
    return GeofenceInputs(data.positions, data.region)
