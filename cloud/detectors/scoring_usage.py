"""Score the utilization detector on a scenario: declines found, seasonal dips left alone.

The fleet is run day by day as the runner would: each day every asset's peer ratio is taken
from its detector state before the day is fed, the peer group's (type and region) median is
handed to every member, then each detector evaluates the day, `SETTLE` after midnight. An
asset's holidays are its scenario region's calendar (`calendar = "DE-NW"`), as the live
context gives them; a region without one keeps `PUBLIC_HOLIDAYS`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from cloud.alerts.signals import Finding
from cloud.detectors.scoring import YEAR_DAYS, KindScore, parse_ts, scenario_labels
from cloud.detectors.simulated import day_usage, off_windows
from cloud.detectors.utilization import (
    SETTLE,
    UtilizationDetector,
    UtilizationInputs,
    UtilizationThresholds,
    peer_factor,
)
from cloud.risk.calendars import NO_CALENDAR, public_holidays
from firmware_sim.scenarios import ResolvedScenario
from firmware_sim.scenarios.expand import AssetSpec
from firmware_sim.scenarios.labels import Label
from firmware_sim.scenarios.run import simulated_assets

#: Public holidays of a scenario region without a calendar (NL/BE/DE/FR common ones).
PUBLIC_HOLIDAYS = frozenset(
    date.fromisoformat(d)
    for d in (
        "2025-01-01", "2025-04-21", "2025-05-01", "2025-05-29", "2025-06-09", "2025-12-25",
        "2025-12-26", "2026-01-01", "2026-04-06", "2026-05-01", "2026-05-14", "2026-05-25",
    )
)  # fmt: skip
BAR_MAGNITUDE = 0.25
BAR_DAYS = 7.0


@dataclass(slots=True)
class UsageEpisode:
    """One episode a detector raised."""

    asset: str
    start: datetime
    detected: datetime
    magnitude: float
    cleared: datetime | None = None


def scenario_holidays(resolved: ResolvedScenario, asset: AssetSpec) -> frozenset[date]:
    """The asset's holidays: its region's calendar over the scenario, else `PUBLIC_HOLIDAYS`."""
    code = resolved.calendar_of(asset)
    if code == NO_CALENDAR:
        return PUBLIC_HOLIDAYS
    first = resolved.scenario.start
    return public_holidays(code, first, first + timedelta(days=resolved.scenario.days))


def run_fleet(
    resolved: ResolvedScenario, *, peers: bool = True, holidays: frozenset[date] | None = None
) -> list[UsageEpisode]:
    """Every episode the detectors raise over the scenario, fleet in lockstep.

    `holidays` None gives each asset its region's (`scenario_holidays`).
    """
    t = UtilizationThresholds()
    sims = simulated_assets(resolved)
    days_off = {
        s.timeline.spec.id: scenario_holidays(resolved, s.timeline.spec)
        if holidays is None
        else holidays
        for s in sims
    }
    states = {
        s.timeline.spec.id: UtilizationDetector.create(s.timeline.spec.id, "", t) for s in sims
    }
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for sim in sims:
        groups[(sim.timeline.spec.type, sim.timeline.spec.region)].append(sim.timeline.spec.id)
    offs = {s.timeline.spec.id: off_windows(resolved, s.timeline.spec.id) for s in sims}
    episodes: dict[str, list[UsageEpisode]] = defaultdict(list)
    for day in range(resolved.scenario.days):
        usage = {
            s.timeline.spec.id: day_usage(s, resolved, day, offs[s.timeline.spec.id]) for s in sims
        }
        factors: dict[str, float | None] = {}
        for members in groups.values():
            ratios = [states[m].peer_ratio(usage[m]) for m in members] if peers else []
            for member in members:
                factors[member] = peer_factor(ratios) if peers else None
        for asset, detector in states.items():
            day_in = replace(usage[asset], peer_factor=factors[asset])
            now = (
                datetime.combine(day_in.day + timedelta(days=1), datetime.min.time(), UTC) + SETTLE
            )
            inputs = UtilizationInputs((day_in,), days_off[asset])
            for found in detector.update(inputs, now):
                _record(episodes[asset], asset, found)
    return [e for found in episodes.values() for e in found]


def _record(episodes: list[UsageEpisode], asset: str, found: Finding) -> None:
    if found.state == "cleared":
        if episodes and episodes[-1].cleared is None:
            episodes[-1].cleared = found.evaluated_at
        return
    if episodes and episodes[-1].cleared is None:
        episodes[-1].magnitude = found.magnitude or 0.0
        return
    episodes.append(UsageEpisode(asset, found.since, found.evaluated_at, found.magnitude or 0.0))


def _overlaps(episode: UsageEpisode, label: Label, slack: timedelta) -> bool:
    end = episode.cleared or datetime.max.replace(tzinfo=UTC)
    return (
        episode.detected >= parse_ts(label["start"]) - slack
        and episode.start <= parse_ts(label["end"])
        and end >= parse_ts(label["start"])
    )


def score(resolved: ResolvedScenario, *, peers: bool = True) -> list[KindScore]:
    """Scores of declines (the quality bar's and the others), parked assets and seasonal dips."""
    name = resolved.scenario.name
    labels = scenario_labels(resolved)
    episodes = run_fleet(resolved, peers=peers)
    variant = "" if peers else " (no peers)"
    declines = [lb for lb in labels if lb["kind"] == "utilization_decline"]
    scores = [
        _decline_score(
            name,
            f"{shape} decline >=25% >=7d{variant}",
            [d for d in declines if _in_bar(d) and d.get("shape") == shape],
            episodes,
        )
        for shape in ("sudden", "gradual")
    ]
    others = [d for d in declines if not _in_bar(d)]
    scores.append(_decline_score(name, f"decline <25% or <7d{variant}", others, episodes))
    scores.append(_false_alarms(name, variant, resolved, labels, episodes))
    scores.append(_parked(name, variant, [lb for lb in labels if lb["kind"] == "parked"], episodes))
    return scores


def _quarter_down_h(label: Label) -> float:
    """Hours from a gradual decline's start to the day it first took 25% of the use."""
    magnitude = float(str(label["magnitude"]))
    ramp_days = float(str(label.get("ramp_days") or 0.0))
    if magnitude < BAR_MAGNITUDE or ramp_days <= 0:
        return 0.0
    return max(0.0, ramp_days * BAR_MAGNITUDE / magnitude - 1.0) * 24.0


def _in_bar(label: Label) -> bool:
    days = (parse_ts(label["end"]) - parse_ts(label["start"])).total_seconds() / 86_400
    return float(str(label["magnitude"])) >= BAR_MAGNITUDE and days >= BAR_DAYS


def _decline_score(
    name: str, kind: str, labels: list[Label], episodes: list[UsageEpisode]
) -> KindScore:
    result = KindScore(name, "utilization", kind, labels=len(labels))
    gradual_delays = []
    covered = 0
    for label in labels:
        start = parse_ts(label["start"])
        hits = [
            e for e in episodes
            if e.asset == label["asset"] and _overlaps(e, label, timedelta(0))
            and start <= e.detected <= parse_ts(label["end"]) + timedelta(days=7)
        ]  # fmt: skip
        if not hits:
            already = [
                e
                for e in episodes
                if e.asset == label["asset"]
                and e.detected < start
                and (e.cleared is None or e.cleared > start)
            ]
            covered += bool(already)
            result.detected += bool(already)
            continue
        result.detected += 1
        delay = (hits[0].detected - start).total_seconds() / 3600
        if label.get("shape") == "gradual":
            gradual_delays.append(delay)
            delay -= _quarter_down_h(label)
        result.delays_h.append(delay)
    if covered:
        result.note = f"{covered} found already open (an earlier incident); "
    if gradual_delays and "gradual" in kind:
        gradual_delays.sort()
        middle = gradual_delays[len(gradual_delays) // 2] / 24
        result.note += f"delay from the day use was 25% down; {middle:.1f} d from the ramp's start"
    return result


def _false_alarms(
    name: str,
    variant: str,
    resolved: ResolvedScenario,
    labels: list[Label],
    episodes: list[UsageEpisode],
) -> KindScore:
    """Episodes that no decline explains; the rate over assets without a decline."""
    declined = {lb["asset"] for lb in labels if lb["kind"] == "utilization_decline"}
    explained = [lb for lb in labels if lb["kind"] in ("utilization_decline", "parked")]
    seasonal = [lb for lb in labels if lb["kind"] == "seasonal_dip"]
    result = KindScore(name, "utilization", f"no decline (false alarms){variant}")
    quiet = [a for a in resolved.assets if a.id not in declined]
    result.asset_years = len(quiet) * resolved.scenario.days / YEAR_DAYS
    on_dips = 0
    for episode in episodes:
        mine = [lb for lb in explained if lb["asset"] == episode.asset]
        result.findings += 1
        if any(_overlaps(episode, lb, timedelta(days=7)) for lb in mine):
            result.true_findings += 1
            continue
        on_dips += any(
            _overlaps(episode, lb, timedelta(0)) for lb in seasonal if lb["asset"] == episode.asset
        )
        if episode.asset not in declined:
            result.false_alarms += 1
    result.note = (
        f"{on_dips} unexplained episodes during seasonal dips; precision counts parked as explained"
    )
    return result


def _parked(
    name: str, variant: str, labels: list[Label], episodes: list[UsageEpisode]
) -> KindScore:
    """Parked assets: found as a drop, and cleared once the asset works again."""
    result = KindScore(name, "utilization", f"parked, then back{variant}", labels=len(labels))
    cleared = 0
    for label in labels:
        hits = [
            e for e in episodes if e.asset == label["asset"] and _overlaps(e, label, timedelta(0))
        ]
        if not hits:
            continue
        result.detected += 1
        result.delays_h.append((hits[0].detected - parse_ts(label["start"])).total_seconds() / 3600)
        end = parse_ts(label["end"])
        cleared += any(e.cleared is not None and e.cleared >= end for e in hits)
    result.note = f"{cleared} of {result.detected} closed after use came back"
    return result
