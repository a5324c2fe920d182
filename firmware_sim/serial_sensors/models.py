"""Models behind the simulated line sensors: a band's vibration, a vehicle's GPS track.

Both are deterministic functions of their parameters and the wall-clock time they are asked
about (plus a seed for the band's noise), so a test can replay what a sensor said.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from firmware_sim.machine import Machine

_EARTH_RADIUS_M = 6_371_000.0
_AXIS_WEIGHTS = (0.6, 0.45, 0.66)  # how the vibration splits over the band's x, y, z axes
_PEAK_PER_RMS = 0.444  # m/s2 of peak acceleration per mm/s of RMS velocity at 50 Hz


@dataclass(frozen=True, slots=True)
class BandSample:
    """What the band measured over one line's window."""

    rms: tuple[float, float, float]  # mm/s per axis
    peak: float  # m/s2
    temperature: float  # degC
    battery: float  # %


class WristbandModel:
    """A band clamped on a machine: its axes share the machine's vibration, plus noise."""

    def __init__(
        self,
        machine: Machine,
        seed: int = 0,
        *,
        battery_start: float = 95.0,
        drain_per_hour: float = 0.5,
        housing_offset_c: float = -3.0,
    ) -> None:
        """Clamp a band on `machine`; the battery starts draining at the first sample."""
        self.machine = machine
        self.seed = seed
        self.battery_start = battery_start
        self.drain_per_hour = drain_per_hour
        self.housing_offset_c = housing_offset_c
        self._started: datetime | None = None

    def sample(self, now: datetime) -> BandSample:
        """The band's measurement at `now`."""
        state = self.machine.advance(now)
        self._started = self._started or now
        noise = random.Random(f"{self.seed}:{now.timestamp():.3f}")
        norm = math.sqrt(sum(w * w for w in _AXIS_WEIGHTS))
        rms = tuple(
            max(0.0, state.vibration_rms * w / norm * (1 + 0.05 * noise.uniform(-1, 1)))
            for w in _AXIS_WEIGHTS
        )
        crest = 1.5 + noise.random()
        hours = (now - self._started).total_seconds() / 3600
        return BandSample(
            rms=(rms[0], rms[1], rms[2]),
            peak=state.vibration_rms * _PEAK_PER_RMS * crest,
            temperature=min(125.0, max(-40.0, state.temperature + self.housing_offset_c)),
            battery=max(0.0, self.battery_start - self.drain_per_hour * hours),
        )


@dataclass(frozen=True, slots=True)
class Fix:
    """Where the receiver is and how well it knows it."""

    latitude: float
    longitude: float
    speed_kmh: float
    course: float
    satellites: int
    hdop: float
    altitude: float


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2
    h += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(h))


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial course from a to b, degrees clockwise from north."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360


class GpsTrack:
    """A vehicle that waits at each site, then drives straight to the next, round and round."""

    def __init__(
        self,
        sites: Sequence[tuple[float, float]],
        start: datetime,
        *,
        speed_kmh: float = 60.0,
        dwell_s: float = 120.0,
        altitude_m: float = 120.0,
    ) -> None:
        """Start at `sites[0]` at `start` (timezone-aware)."""
        if len(sites) < 2 or speed_kmh <= 0 or dwell_s < 0:
            raise ValueError("a track needs two sites, a positive speed and dwell_s >= 0")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.sites = list(sites)
        self.start = start
        self.speed_ms = speed_kmh / 3.6
        self.dwell_s = dwell_s
        self.altitude_m = altitude_m
        legs = zip(self.sites, [*self.sites[1:], self.sites[0]], strict=True)
        self._legs = [(a, b, _distance_m(a, b) / self.speed_ms) for a, b in legs]
        self._period = sum(dwell_s + drive for _, _, drive in self._legs)

    def fix(self, now: datetime) -> Fix:
        """Position, speed and course at `now`."""
        t = (now - self.start).total_seconds() % self._period
        for a, b, drive in self._legs:
            if t < self.dwell_s:
                return self._fix(a, 0.0, _bearing(a, b))
            t -= self.dwell_s
            if t < drive:
                share = t / drive
                point = (a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share)
                return self._fix(point, self.speed_ms * 3.6, _bearing(a, b))
            t -= drive
        return self._fix(self.sites[0], 0.0, 0.0)  # pragma: no cover (rounding at period end)

    def _fix(self, point: tuple[float, float], speed_kmh: float, course: float) -> Fix:
        return Fix(point[0], point[1], speed_kmh, course, 9, 0.9, self.altitude_m)
