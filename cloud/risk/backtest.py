"""Backtest: a scenario's telemetry through the detectors, scored weekly, against repayment.

Inputs come from the same pipeline `leasewatch detect score` uses (`cloud.detectors.simulated`,
`scoring_usage.run_fleet`, `scoring_silence.run_silence`), never from labels; the labels feed
only `firmware_sim.repayment`, which draws each lease's arrears. Then every lease is scored as
of every `step_days` (from `first_day`) and `cloud.risk.metrics` says how well the scores ranked
the leases that went into arrears. Faults are not run (too slow at portfolio scale; they do not
drive arrears in the repayment model): their points are 0 here.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from cloud.detectors import scoring_silence, scoring_usage
from cloud.detectors.geofence import GeofenceDetector, GeofenceInputs, GeofenceThresholds
from cloud.detectors.inputs import Region
from cloud.detectors.scoring import load, scenario_labels
from cloud.detectors.simulated import day_usage, off_windows, position_fixes
from cloud.risk.history import AssetHistory, Episode, lease_signals
from cloud.risk.rules import ScoringRules
from cloud.risk.scoring import score_lease
from firmware_sim.repayment import RepaymentOutcome, draw_outcomes
from firmware_sim.scenarios import ResolvedScenario, SimulatedAsset
from firmware_sim.scenarios.profiles import PROFILES
from firmware_sim.scenarios.run import simulated_assets

#: The contract expects 90% of a full shift on each of the type's working days.
CONTRACT_SHARE = 0.9
#: Reason codes with points in the backtest (the per-signal table's rows).
SIGNALS = (
    "utilization_below_contract",
    "utilization_below_baseline",
    "capacity_warning",
    "asset_silent",
    "tamper",
    "geofence_breach",
)


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to run: scenario (optionally subsampled), repayment seed, the scoring calendar."""

    scenario: str = "portfolio"
    assets: int | None = None
    seed: int | None = None  # repayment draws; None: the scenario's own seed
    first_day: int = 42
    step_days: int = 7
    window_days: int = 28


@dataclass(slots=True)
class Observations:
    """Every (lease, as-of day) scored: the score, its band rank and each signal's points."""

    leases: list[str] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    bands: list[int] = field(default_factory=list)
    points: list[list[float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """A run's histories, outcomes and observations, with its timings."""

    resolved: ResolvedScenario
    start: datetime  # midnight UTC of scenario day 0
    outcomes: dict[str, RepaymentOutcome]
    observations: Observations
    timings: dict[str, float]


def _contract_per_day(sim: SimulatedAsset) -> float:
    profile = PROFILES[sim.timeline.spec.type]
    return CONTRACT_SHARE * profile.shift_hours * len(profile.workdays) / 7.0


def _daily(sim: SimulatedAsset, resolved: ResolvedScenario) -> tuple[np.ndarray, np.ndarray]:
    off = off_windows(resolved, sim.timeline.spec.id)
    days = [day_usage(sim, resolved, d, off) for d in range(resolved.scenario.days)]
    hours = np.array([d.running_hours for d in days], dtype=np.float64)
    covered = np.array([d.covered_hours for d in days], dtype=np.float64)
    return hours, covered


def _geofence(sim: SimulatedAsset, resolved: ResolvedScenario) -> tuple[Episode, ...]:
    """The geofence detector over the asset's fixes, as `scoring_silence.score_geofence` runs it."""
    spec = sim.timeline.spec
    region = resolved.scenario.regions[spec.region]
    where = Region(center=region.center, radius_km=region.radius_km)
    detector = GeofenceDetector.create(spec.device, spec.type, GeofenceThresholds())
    episodes: list[Episode] = []
    for fix in position_fixes(sim, resolved, off_windows(resolved, spec.id)):
        for found in detector.update(GeofenceInputs((fix,), where), fix.ts):
            if found.state == "open" and (not episodes or episodes[-1].cleared is not None):
                episodes.append(Episode(fix.ts))
            elif found.state == "cleared" and episodes and episodes[-1].cleared is None:
                episodes[-1] = Episode(episodes[-1].reported, fix.ts)
    return tuple(episodes)


def _tamper(resolved: ResolvedScenario, gappy: set[str]) -> dict[str, tuple[Episode, ...]]:
    """Silence episodes classed as tamper when they opened, on gateways with gaps in their data.

    A gateway whose rollups have no hour without data never opens a silence episode, so only
    gateways with such hours go through the (slow, message-level) silence detector.
    """
    subset = tuple(a for a in resolved.assets if a.id in gappy)
    if not subset:
        return {}
    by_asset = {a.id: resolved.incidents_of(a.id) for a in subset}
    incidents = tuple(i for found in by_asset.values() for i in found)
    part = ResolvedScenario(resolved.scenario, subset, incidents, by_asset)
    found: dict[str, list[Episode]] = defaultdict(list)
    for episode in scoring_silence.run_silence(part):
        if episode.live == "tamper" or episode.key == "sensors_removed":
            found[episode.asset].append(Episode(episode.opened, episode.closed))
    return {asset: tuple(episodes) for asset, episodes in found.items()}


def _histories(
    resolved: ResolvedScenario, timings: dict[str, float], progress: Callable[[str], None]
) -> list[AssetHistory]:
    started = time.monotonic()
    sims = simulated_assets(resolved)
    daily = {s.timeline.spec.id: _daily(s, resolved) for s in sims}
    timings["daily usage"] = time.monotonic() - started
    progress(f"daily usage of {len(sims)} assets: {timings['daily usage']:.0f} s")
    started = time.monotonic()
    capacity: dict[str, list[Episode]] = defaultdict(list)
    for usage in scoring_usage.run_fleet(resolved):
        capacity[usage.asset].append(Episode(usage.detected, usage.cleared))
    timings["utilization detector"] = time.monotonic() - started
    progress(f"utilization detector: {timings['utilization detector']:.0f} s")
    started = time.monotonic()
    geofence = {s.timeline.spec.id: _geofence(s, resolved) for s in sims}
    timings["geofence detector"] = time.monotonic() - started
    progress(f"geofence detector: {timings['geofence detector']:.0f} s")
    started = time.monotonic()
    gappy = {asset for asset, (_, covered) in daily.items() if bool((covered < 24.0).any())}
    tamper = _tamper(resolved, gappy)
    timings["silence detector"] = time.monotonic() - started
    progress(
        f"silence detector on {len(gappy)} gateways with gaps: {timings['silence detector']:.0f} s"
    )
    start = datetime.combine(resolved.scenario.start, datetime.min.time(), UTC)
    return [
        AssetHistory(
            asset=s.timeline.spec.id,
            lease=s.timeline.spec.lease,
            start=start,
            hours=daily[s.timeline.spec.id][0],
            covered=daily[s.timeline.spec.id][1],
            expected_per_day=_contract_per_day(s),
            capacity=tuple(capacity[s.timeline.spec.id]),
            tamper=tamper.get(s.timeline.spec.id, ()),
            geofence=geofence[s.timeline.spec.id],
        )
        for s in sims
    ]


def score_histories(
    histories: list[AssetHistory], rules: ScoringRules, config: BacktestConfig, days: int
) -> Observations:
    """Every lease scored as of every step day: scores, band ranks and points per signal."""
    by_lease: dict[str, list[AssetHistory]] = defaultdict(list)
    for history in histories:
        by_lease[history.lease].append(history)
    observations = Observations()
    for day in range(config.first_day, days, config.step_days):
        for lease, assets in sorted(by_lease.items()):
            signals = lease_signals(lease, lease, assets, day, config.window_days)
            score = score_lease(signals, rules)
            points = dict.fromkeys(SIGNALS, 0.0)
            for reason in score.reasons:
                if reason.code in points:
                    points[reason.code] = reason.points
            observations.leases.append(lease)
            observations.days.append(day)
            observations.scores.append(score.score)
            observations.bands.append(score.band.rank)
            observations.points.append(list(points.values()))
    return observations


def run_backtest(
    config: BacktestConfig, rules: ScoringRules, progress: Callable[[str], None] = lambda _: None
) -> BacktestRun:
    """Detectors over the scenario, repayment outcomes drawn, every lease scored weekly."""
    timings: dict[str, float] = {}
    resolved = load(config.scenario, config.assets)
    if config.first_day >= resolved.scenario.days:
        raise ValueError(
            f"first day {config.first_day} is past the scenario's {resolved.scenario.days} days"
        )
    histories = _histories(resolved, timings, progress)
    start = datetime.combine(resolved.scenario.start, datetime.min.time(), UTC)
    window = (start, start + timedelta(days=resolved.scenario.days))
    seed = resolved.scenario.seed if config.seed is None else config.seed
    leases = [a.lease for a in resolved.assets]
    outcomes = draw_outcomes(leases, scenario_labels(resolved), window, seed)
    started = time.monotonic()
    observations = score_histories(histories, rules, config, resolved.scenario.days)
    timings["scoring"] = time.monotonic() - started
    progress(f"scored {len(observations.scores)} lease-weeks: {timings['scoring']:.1f} s")
    return BacktestRun(resolved, start, outcomes, observations, timings)
