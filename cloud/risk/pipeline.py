"""A scenario's telemetry through the detectors, once, into per-asset daily histories.

The same detectors `leasewatch detect score` runs (`cloud.detectors`), fed from the simulator
(`cloud.detectors.simulated`), never from labels:
- daily usage (running hours, hours with data) is computed once per asset-day and feeds both the
  histories and the utilization detector, run over the fleet in lockstep with peer groups (type
  and region) as `scoring_usage.run_fleet` runs it; groups are independent, so whole groups
  are spread over worker processes;
- the geofence detector over every GPS fix, and the silence detector over the gateways whose
  rollups have hours without data (a gateway without such gaps never opens a silence), per asset
  and so spread over worker processes (each worker loads the scenario itself).
"""

from __future__ import annotations

import os
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np

from cloud.detectors import scoring_silence
from cloud.detectors.geofence import GeofenceDetector, GeofenceInputs, GeofenceThresholds
from cloud.detectors.inputs import DayUsage, Region
from cloud.detectors.scoring import load
from cloud.detectors.scoring_usage import scenario_holidays
from cloud.detectors.simulated import day_usage, off_windows, position_fixes
from cloud.detectors.utilization import (
    SETTLE,
    UtilizationDetector,
    UtilizationInputs,
    UtilizationThresholds,
    peer_factor,
)
from cloud.risk.history import AssetHistory, Episode
from firmware_sim.scenarios import ResolvedScenario, SimulatedAsset
from firmware_sim.scenarios.profiles import PROFILES
from firmware_sim.scenarios.run import simulated_assets

#: The contract expects 90% of a full shift on each of the type's working days.
CONTRACT_SHARE = 0.9

Progress = Callable[[str], None]
T = TypeVar("T")
EpisodeMap = dict[str, tuple[Episode, ...]]


def contract_per_day(asset_type: str) -> float:
    """Running hours a calendar day the simulated leases' contracts expect of an asset type."""
    profile = PROFILES[asset_type]  # type: ignore[index]
    return CONTRACT_SHARE * profile.shift_hours * len(profile.workdays) / 7.0


class _Episodes:
    """Open/cleared findings of one detector per asset, as episodes (reported, cleared)."""

    def __init__(self) -> None:
        self.found: dict[str, list[Episode]] = defaultdict(list)

    def opened(self, asset: str, at: datetime) -> None:
        mine = self.found[asset]
        if not mine or mine[-1].cleared is not None:
            mine.append(Episode(at))

    def cleared(self, asset: str, at: datetime) -> None:
        mine = self.found[asset]
        if mine and mine[-1].cleared is None:
            mine[-1] = Episode(mine[-1].reported, at)

    def frozen(self) -> EpisodeMap:
        return {asset: tuple(found) for asset, found in self.found.items()}


def _peer_factors(
    groups: Sequence[Sequence[str]],
    detectors: dict[str, UtilizationDetector],
    usage: dict[str, DayUsage],
) -> dict[str, float | None]:
    """Each asset's peer-group level of the day (median use over baseline), before the day."""
    factors: dict[str, float | None] = {}
    for members in groups:
        level = peer_factor([detectors[m].peer_ratio(usage[m]) for m in members])
        factors.update(dict.fromkeys(members, level))
    return factors


def usage_and_capacity(
    resolved: ResolvedScenario, sims: Sequence[SimulatedAsset]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], EpisodeMap]:
    """Daily running and covered hours per asset, and the utilization detector's episodes."""
    days = resolved.scenario.days
    ids = [s.timeline.spec.id for s in sims]
    hours = {a: np.zeros(days) for a in ids}
    covered = {a: np.zeros(days) for a in ids}
    detectors = {a: UtilizationDetector.create(a, "", UtilizationThresholds()) for a in ids}
    by_group: dict[tuple[str, str], list[str]] = defaultdict(list)
    for sim in sims:
        by_group[(sim.timeline.spec.type, sim.timeline.spec.region)].append(sim.timeline.spec.id)
    offs = {a: off_windows(resolved, a) for a in ids}
    # each asset's region calendar (a region without one: the fixed PUBLIC_HOLIDAYS list)
    holidays = {s.timeline.spec.id: scenario_holidays(resolved, s.timeline.spec) for s in sims}
    capacity = _Episodes()
    for day in range(days):
        usage = {a: day_usage(s, resolved, day, offs[a]) for a, s in zip(ids, sims, strict=True)}
        factors = _peer_factors(list(by_group.values()), detectors, usage)
        for asset, detector in detectors.items():
            today = replace(usage[asset], peer_factor=factors[asset])
            hours[asset][day], covered[asset][day] = today.running_hours, today.covered_hours
            midnight = datetime.combine(today.day, datetime.min.time(), UTC)
            now = midnight + timedelta(days=1) + SETTLE
            for found in detector.update(UtilizationInputs((today,), holidays[asset]), now):
                if found.state == "cleared":
                    capacity.cleared(asset, found.evaluated_at)
                else:
                    capacity.opened(asset, found.evaluated_at)
    return hours, covered, capacity.frozen()


def _geofence(sim: SimulatedAsset, resolved: ResolvedScenario) -> tuple[Episode, ...]:
    """The geofence detector over the asset's fixes, as `scoring_silence.score_geofence` runs it."""
    spec = sim.timeline.spec
    region = resolved.scenario.regions[spec.region]
    where = Region(center=region.center, radius_km=region.radius_km)
    detector = GeofenceDetector.create(spec.device, spec.type, GeofenceThresholds())
    episodes = _Episodes()
    for fix in position_fixes(sim, resolved, off_windows(resolved, spec.id)):
        for found in detector.update(GeofenceInputs((fix,), where), fix.ts):
            if found.state == "open":
                episodes.opened(spec.id, fix.ts)
            elif found.state == "cleared":
                episodes.cleared(spec.id, fix.ts)
    return episodes.frozen().get(spec.id, ())


def _tamper(resolved: ResolvedScenario, asset: str) -> tuple[Episode, ...]:
    """Silence episodes of one gateway classed as tamper (or sensors removed) when they opened."""
    spec = next(a for a in resolved.assets if a.id == asset)
    incidents = resolved.incidents_of(asset)
    part = ResolvedScenario(resolved.scenario, (spec,), incidents, {asset: incidents})
    return tuple(
        Episode(e.opened, e.closed)
        for e in scoring_silence.run_silence(part)
        if e.live == "tamper" or e.key == "sensors_removed"
    )


Usage = tuple[dict[str, np.ndarray], dict[str, np.ndarray], EpisodeMap]
Detected = tuple[EpisodeMap, EpisodeMap]


def group_usage(scenario: str, assets: int | None, members: Sequence[str]) -> Usage:
    """Daily usage and utilization episodes of whole peer groups (one worker)."""
    resolved = load(scenario, assets)
    wanted = set(members)
    return usage_and_capacity(
        resolved, [s for s in simulated_assets(resolved) if s.timeline.spec.id in wanted]
    )


def per_asset_detectors(
    scenario: str, assets: int | None, chunk: Sequence[str], gappy: frozenset[str]
) -> Detected:
    """Geofence episodes of `chunk`, and tamper episodes of its gappy gateways (one worker)."""
    resolved = load(scenario, assets)
    wanted = set(chunk)
    geofence: EpisodeMap = {}
    tamper: EpisodeMap = {}
    for sim in simulated_assets(resolved):
        asset = sim.timeline.spec.id
        if asset not in wanted:
            continue
        geofence[asset] = _geofence(sim, resolved)
        if asset in gappy:
            tamper[asset] = _tamper(resolved, asset)
    return geofence, tamper


def _balanced(groups: Sequence[Sequence[str]], workers: int) -> list[list[str]]:
    """Whole groups dealt to `workers` chunks, largest first onto the lightest chunk."""
    chunks: list[list[str]] = [[] for _ in range(workers)]
    for members in sorted(groups, key=len, reverse=True):
        min(chunks, key=len).extend(members)
    return [c for c in chunks if c]


def fan_out(job: Callable[..., T], args: Sequence[tuple[object, ...]], workers: int) -> list[T]:
    """`job(*a)` for each of `args`, over `workers` processes (in this one when 1)."""
    if workers <= 1 or len(args) <= 1:
        return [job(*a) for a in args]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [j.result() for j in [pool.submit(job, *a) for a in args]]


def _usage(resolved: ResolvedScenario, scenario: str, assets: int | None, workers: int) -> Usage:
    """Daily usage and capacity episodes, peer groups spread over the workers."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for spec in resolved.assets:
        groups[(spec.type, spec.region)].append(spec.id)
    chunks = _balanced(list(groups.values()), workers)
    hours: dict[str, np.ndarray] = {}
    covered: dict[str, np.ndarray] = {}
    capacity: EpisodeMap = {}
    for part in fan_out(group_usage, [(scenario, assets, c) for c in chunks], workers):
        hours.update(part[0])
        covered.update(part[1])
        capacity.update(part[2])
    return hours, covered, capacity


def _spread(
    scenario: str, assets: int | None, ids: Sequence[str], gappy: frozenset[str], workers: int
) -> Detected:
    """Per-asset detectors over `workers` processes, gappy gateways dealt evenly."""
    ordered = sorted(ids, key=lambda a: (a not in gappy, a))
    chunks = [ordered[i::workers] for i in range(workers)]
    geofence: EpisodeMap = {}
    tamper: EpisodeMap = {}
    args = [(scenario, assets, c, gappy) for c in chunks if c]
    for found_geofence, found_tamper in fan_out(per_asset_detectors, args, workers):
        geofence.update(found_geofence)
        tamper.update(found_tamper)
    return geofence, tamper


def default_workers() -> int:
    """Worker processes for the per-asset detectors: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def run_detectors(
    scenario: str, assets: int | None, workers: int, progress: Progress
) -> tuple[list[AssetHistory], dict[str, float]]:
    """Every asset's daily history with its detectors' episodes, and the time each part took."""
    timings: dict[str, float] = {}
    cpu = cpu_seconds()
    started = time.monotonic()
    resolved = load(scenario, assets)
    sims = simulated_assets(resolved)
    workers = max(1, min(workers, len(sims)))
    hours, covered, capacity = _usage(resolved, scenario, assets, workers)
    timings["daily usage and utilization detector"] = time.monotonic() - started
    progress(f"daily usage and utilization detector: {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    gappy = frozenset(a for a, c in covered.items() if bool((c < 24.0).any()))
    ids = [s.timeline.spec.id for s in sims]
    geofence, tamper = _spread(scenario, assets, ids, gappy, workers)
    timings["geofence and silence detectors"] = time.monotonic() - started
    progress(
        f"geofence on {len(ids)} assets, silence on {len(gappy)} gateways with gaps, "
        f"{workers} worker(s): {time.monotonic() - started:.0f} s"
    )
    timings["cpu: detectors, all processes"] = cpu_seconds() - cpu
    start = datetime.combine(resolved.scenario.start, datetime.min.time(), UTC)
    histories = [
        AssetHistory(
            asset=s.timeline.spec.id,
            lease=s.timeline.spec.lease,
            start=start,
            hours=hours[s.timeline.spec.id],
            covered=covered[s.timeline.spec.id],
            expected_per_day=contract_per_day(s.timeline.spec.type),
            asset_type=s.timeline.spec.type,
            region=s.timeline.spec.region,
            capacity=capacity.get(s.timeline.spec.id, ()),
            tamper=tamper.get(s.timeline.spec.id, ()),
            geofence=geofence.get(s.timeline.spec.id, ()),
        )
        for s in sims
    ]
    return histories, timings
