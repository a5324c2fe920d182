"""Detector inputs from simulator scenarios: what the rollups would hold, without the broker.

Scoring runs each detector on the inputs the ingest path would give it for a scenario asset:
- utilization: running hours per day as the 1-hour rollups of `running` hold them, i.e. the
  gateway's samples every `sample_s` inside the day plan's running intervals, none while the
  gateway is off (power cut, tamper: `firmware_sim.scenarios.gateway` takes no samples then);
- faults: minute samples of `ScenarioAsset.values` (the values the gateway publishes);
- silence: the gateway's actual publishes (`GatewayStream`), decoded with the wire contract;
- geofence: the GPS fix each batch carries (`AssetTimeline.position` at the window's first sample).
Labels are read only by the scoring module, never here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from cloud.detectors.inputs import SHIFTS, DayUsage, MinuteSample, PositionInput
from firmware_sim.scenarios import ResolvedScenario, SimulatedAsset
from firmware_sim.scenarios.asset import METRICS

DAY_S = 86_400
_OFF_KINDS = ("power_cut", "tamper")


def off_windows(resolved: ResolvedScenario, asset: str) -> list[tuple[float, float]]:
    """When the asset's gateway takes no samples at all (power cut, tamper)."""
    return [(i.start, i.end) for i in resolved.incidents_of(asset) if i.kind in _OFF_KINDS]


def _samples_in(start: float, end: float, origin: float, step: int) -> int:
    """How many sample instants origin + k*step fall in [start, end)."""
    if end <= start:
        return 0
    return max(0, math.ceil((end - origin) / step) - math.ceil((start - origin) / step))


def _hour_shift(hour: int) -> str:
    for name, first, last in SHIFTS:
        if (first <= hour < last) if first < last else (hour >= first or hour < last):
            return name
    return SHIFTS[0][0]  # pragma: no cover


def _cut(
    spans: list[tuple[float, float]], gaps: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The spans without the gaps."""
    for gap_start, gap_end in gaps:
        kept = []
        for start, end in spans:
            if end <= gap_start or start >= gap_end:
                kept.append((start, end))
                continue
            if start < gap_start:
                kept.append((start, gap_start))
            if end > gap_end:
                kept.append((gap_end, end))
        spans = kept
    return spans


def day_usage(
    sim: SimulatedAsset, resolved: ResolvedScenario, day: int, off: list[tuple[float, float]]
) -> DayUsage:
    """Running hours of one scenario day as the 1-hour rollups of `running` would give them."""
    origin, step = resolved.start_ts, resolved.scenario.sample_s
    midnight = origin + day * DAY_S
    running = _cut([(s, e) for s, e, _ in sim.timeline.plan(day).intervals], off)
    shifts: dict[str, float] = {}
    covered = 0.0
    for hour in range(24):
        h0, h1 = midnight + hour * 3600, midnight + (hour + 1) * 3600
        taken = sum(_samples_in(s, e, origin, step) for s, e in _cut([(h0, h1)], off))
        if not taken:
            continue
        covered += 1.0
        ran = sum(_samples_in(max(s, h0), min(e, h1), origin, step) for s, e in running)
        name = _hour_shift(hour)
        shifts[name] = shifts.get(name, 0.0) + ran / taken
    when = datetime.fromtimestamp(midnight, UTC).date()
    return DayUsage(when, math.fsum(shifts.values()), covered, shifts)


def minute_samples(
    sim: SimulatedAsset, start: float, end: float, off: list[tuple[float, float]]
) -> Iterator[MinuteSample]:
    """One sample a minute of the asset's published values (missing readings left out)."""
    t = math.ceil(start / 60) * 60
    while t < end:
        if not any(s <= t < e for s, e in off):
            values = sim.machine.values(t)
            present = {m: v for m, v in zip(METRICS, values, strict=True) if v is not None}
            yield MinuteSample(datetime.fromtimestamp(t, UTC), present)
        t += 60


def position_fixes(
    sim: SimulatedAsset, resolved: ResolvedScenario, off: list[tuple[float, float]]
) -> Iterator[PositionInput]:
    """The GPS fix of every batch window the gateway sends (its first sample's position)."""
    batch = resolved.scenario.batch_s
    t = resolved.start_ts
    while t < resolved.end_ts:
        if not any(s <= t < e for s, e in off):
            lat, lon = sim.timeline.position(t)
            yield PositionInput(datetime.fromtimestamp(t, UTC), lat, lon)
        t += batch


def scenario_day(resolved: ResolvedScenario, day: int) -> date:
    """The calendar date of a scenario day."""
    return resolved.scenario.start + timedelta(days=day)
