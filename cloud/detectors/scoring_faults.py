"""Score the fault detector on a scenario: every machine fault and failed sensor, and no more.

Each asset's minute samples (`simulated.minute_samples`) are fed in 10-minute batches, as the
runner would after each gateway message; an episode is detected when it opens, at the end of
the batch that opened it. A label counts as found when an episode on its asset opens between
its start and its end; an episode is a true finding when it overlaps a fault label of its
asset (an hour of slack after the end, while a hot machine cools down).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloud.alerts.signals import Severity
from cloud.detectors.faults import FaultDetector, FaultInputs, FaultThresholds
from cloud.detectors.inputs import MinuteSample
from cloud.detectors.scoring import YEAR_DAYS, KindScore, parse_ts, scenario_labels
from cloud.detectors.simulated import minute_samples, off_windows
from firmware_sim.scenarios import ResolvedScenario, SimulatedAsset
from firmware_sim.scenarios.labels import Label
from firmware_sim.scenarios.run import simulated_assets

KINDS = ("bearing_wear", "overheating", "motor_overload", "sensor_failure")
BATCH = 10
SLACK = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class FaultEpisode:
    """An episode the fault detector opened."""

    asset: str
    key: str
    opened: datetime
    cleared: datetime | None
    severity: Severity


def run_asset(sim: SimulatedAsset, resolved: ResolvedScenario) -> list[FaultEpisode]:
    """Every fault episode of one asset over the scenario."""
    spec = sim.timeline.spec
    detector = FaultDetector.create(spec.device, spec.type, FaultThresholds())
    off = off_windows(resolved, spec.id)
    opened: dict[str, tuple[datetime, Severity]] = {}
    episodes: list[FaultEpisode] = []
    batch: list[MinuteSample] = []
    for sample in minute_samples(sim, resolved.start_ts, resolved.end_ts, off):
        batch.append(sample)
        if len(batch) < BATCH:
            continue
        now = batch[-1].ts + timedelta(minutes=1)
        for found in detector.update(FaultInputs(tuple(batch)), now):
            if found.state == "open":
                opened[found.key] = (now, found.severity)
            elif found.key in opened:
                at, severity = opened.pop(found.key)
                episodes.append(FaultEpisode(spec.id, found.key, at, now, severity))
        batch = []
    episodes += [FaultEpisode(spec.id, k, at, None, sev) for k, (at, sev) in opened.items()]
    return episodes


def run_fleet(resolved: ResolvedScenario) -> list[FaultEpisode]:
    """Every fault episode of every asset."""
    return [e for sim in simulated_assets(resolved) for e in run_asset(sim, resolved)]


def score(resolved: ResolvedScenario) -> list[KindScore]:
    """Recall and delay per fault kind; precision and false alarms over all fault episodes."""
    name = resolved.scenario.name
    labels = [lb for lb in scenario_labels(resolved) if lb["kind"] in KINDS]
    episodes = run_fleet(resolved)
    scores = []
    for kind in KINDS:
        mine = [lb for lb in labels if lb["kind"] == kind]
        if mine:
            scores.append(_kind_score(name, kind, mine, episodes))
    scores.append(_precision(name, resolved, labels, episodes))
    return scores


def _found(label: Label, episodes: list[FaultEpisode]) -> list[FaultEpisode]:
    start, end = parse_ts(label["start"]), parse_ts(label["end"])
    return sorted(
        (e for e in episodes if e.asset == label["asset"] and start <= e.opened <= end + SLACK),
        key=lambda e: e.opened,
    )


def _kind_score(
    name: str, kind: str, labels: list[Label], episodes: list[FaultEpisode]
) -> KindScore:
    result = KindScore(name, "faults", kind, labels=len(labels))
    before_failure = 0
    keys: Counter[str] = Counter()
    for label in labels:
        hits = _found(label, episodes)
        if not hits:
            continue
        result.detected += 1
        result.delays_h.append((hits[0].opened - parse_ts(label["start"])).total_seconds() / 3600)
        keys[hits[0].key.split(":")[0]] += 1
        if "spike_start" in label and hits[0].opened < parse_ts(label["spike_start"]):
            before_failure += 1
    first = ", ".join(f"{k} {n}" for k, n in keys.most_common())
    result.note = f"first finding: {first}"
    if kind == "bearing_wear":
        result.note += f"; {before_failure} of {len(labels)} before the failure point"
    return result


def _precision(
    name: str, resolved: ResolvedScenario, labels: list[Label], episodes: list[FaultEpisode]
) -> KindScore:
    result = KindScore(name, "faults", "all fault findings (precision)")
    result.asset_years = len(resolved.assets) * resolved.scenario.days / YEAR_DAYS
    false_keys: Counter[str] = Counter()
    for episode in episodes:
        result.findings += 1
        end = episode.cleared or datetime.max.replace(tzinfo=UTC)
        if any(
            lb["asset"] == episode.asset
            and episode.opened <= parse_ts(lb["end"]) + SLACK
            and end >= parse_ts(lb["start"])
            for lb in labels
        ):
            result.true_findings += 1
        else:
            result.false_alarms += 1
            false_keys[episode.key] += 1
    result.note = "false: " + (
        ", ".join(f"{k} {n}" for k, n in false_keys.most_common(6)) or "none"
    )
    return result
