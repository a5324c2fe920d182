"""Score the silence and geofence detectors on scenarios, fed with the gateways' own messages.

Silence: every publish of every gateway (`GatewayStream`) is decoded with the wire contract;
after each batch window the detector gets the samples, events and positions that arrived, the
retained status and the registry's live timestamp and boot, as the runner would read them. A
labelled silence is classified correctly when the episode that opened on its asset during it
names its cause, when it opened ("live") and when the data came back ("final").
Geofence: the fix every batch carries, against the asset's permitted region.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cloud.detectors.geofence import GeofenceDetector, GeofenceInputs, GeofenceThresholds
from cloud.detectors.inputs import EventInput, MinuteSample, PositionInput, Region, StatusInput
from cloud.detectors.scoring import YEAR_DAYS, KindScore, parse_ts, scenario_labels
from cloud.detectors.silence import SilenceDetector, SilenceInputs, SilenceThresholds
from cloud.detectors.simulated import off_windows, position_fixes
from firmware_sim.scenarios import ResolvedScenario, SimulatedAsset
from firmware_sim.scenarios.encoding import GPS_SENSOR
from firmware_sim.scenarios.gateway import Outgoing
from firmware_sim.scenarios.labels import Label
from firmware_sim.scenarios.run import simulated_assets, windows
from leasewatch.wire import RejectedMessageError, TelemetryBatch, decode_status, decode_telemetry

SILENCES = ("network_outage", "power_cut", "tamper")


@dataclass(slots=True)
class Registry:
    """What the state store knows about one gateway: retained status, live time, boot."""

    status: StatusInput | None = None
    last_live_at: datetime | None = None
    boot: str | None = None


@dataclass(slots=True)
class SilenceEpisode:
    """One silence (or parking) episode and its classes over time."""

    asset: str
    key: str
    since: datetime
    opened: datetime
    live: str
    final: str
    closed: datetime | None = None
    classes: list[str] = field(default_factory=list)


def _batch_inputs(
    batch: TelemetryBatch,
) -> tuple[list[MinuteSample], list[EventInput], list[PositionInput]]:
    values: dict[datetime, dict[str, float]] = defaultdict(dict)
    fixes: dict[datetime, dict[str, float]] = defaultdict(dict)
    for reading in batch.readings:
        target = fixes if reading.sensor == GPS_SENSOR else values
        target[reading.ts][reading.metric] = reading.value
    samples = [MinuteSample(ts, v) for ts, v in values.items()]
    events = [EventInput(e.ts, e.kind, e.sensor, e.detail) for e in batch.events]
    positions = [PositionInput(ts, f["lat"], f["lon"]) for ts, f in fixes.items() if len(f) == 2]
    return samples, events, positions


def gateway_inputs(
    sim: SimulatedAsset, resolved: ResolvedScenario
) -> Iterator[tuple[datetime, SilenceInputs]]:
    """After each batch window: what arrived, and the registry as the state store has it."""
    registry = Registry()
    home = sim.timeline.spec.home
    for index in range(windows(resolved)):
        samples: list[MinuteSample] = []
        events: list[EventInput] = []
        fixes: list[PositionInput] = []
        window = list(messages_of_window(sim, index))
        for message in window:
            if message.kind == "status":
                status = decode_status(message.topic, message.payload)
                if registry.status is None or status.ts >= registry.status.ts:
                    registry.status = StatusInput(status.state, status.ts, status.boot)
                continue
            try:
                batch = decode_telemetry(message.topic, message.payload)
            except RejectedMessageError:
                continue
            got = _batch_inputs(batch)
            samples += got[0]
            events += got[1]
            fixes += got[2]
            if not batch.historical and batch.readings:
                newest = max(r.ts for r in batch.readings)
                registry.last_live_at = max(registry.last_live_at or newest, newest)
                registry.boot = batch.boot
        now = datetime.fromtimestamp(
            resolved.start_ts + (index + 1) * resolved.scenario.batch_s, UTC
        )
        yield now, SilenceInputs(
            tuple(sorted(samples, key=lambda s: s.ts)), tuple(events), registry.status,
            registry.last_live_at, registry.boot, tuple(fixes), home,
        )  # fmt: skip


def messages_of_window(sim: SimulatedAsset, index: int) -> list[Outgoing]:
    """The publishes of one window (a seam for tests)."""
    return list(sim.gateway.window(index))


def run_silence(resolved: ResolvedScenario) -> list[SilenceEpisode]:
    """Every silence and parking episode of every asset."""
    episodes: list[SilenceEpisode] = []
    for sim in simulated_assets(resolved):
        detector = SilenceDetector.create(
            sim.timeline.spec.device, sim.timeline.spec.type, SilenceThresholds()
        )
        current: dict[str, SilenceEpisode] = {}
        for now, inputs in gateway_inputs(sim, resolved):
            for found in detector.update(inputs, now):
                cause = str(found.evidence.get("cause"))
                episode = current.get(found.key)
                if found.state == "open" and episode is None:
                    episode = current[found.key] = SilenceEpisode(
                        sim.timeline.spec.id, found.key, found.since, now, cause, cause
                    )
                    episodes.append(episode)
                elif episode is not None:
                    episode.final = cause
                    if found.state == "cleared":
                        episode.closed = now
                        del current[found.key]
    return episodes


def score_silence(resolved: ResolvedScenario) -> list[KindScore]:
    """Detection, delay and classification accuracy per labelled cause; false silences."""
    name = resolved.scenario.name
    labels = [lb for lb in scenario_labels(resolved) if lb["kind"] in (*SILENCES, "parked")]
    episodes = run_silence(resolved)
    scores: list[KindScore] = []
    matched: set[int] = set()
    totals = [0, 0, 0]
    for kind in (*SILENCES, "parked"):
        mine = [lb for lb in labels if lb["kind"] == kind]
        if not mine:
            continue
        result = KindScore(name, "silence", kind, labels=len(mine))
        live = final = 0
        for label in mine:
            hit = _match(label, episodes)
            if hit is None:
                continue
            matched.add(id(hit))
            result.detected += 1
            result.delays_h.append((hit.opened - parse_ts(label["start"])).total_seconds() / 3600)
            live += hit.live == kind
            final += hit.final == kind
        totals = [totals[0] + len(mine), totals[1] + live, totals[2] + final]
        result.note = f"class right: {live}/{len(mine)} when opened, {final}/{len(mine)} final"
        scores.append(result)
    false = KindScore(name, "silence", "all causes (recall = final class right)")
    false.labels = totals[0]
    false.detected = totals[2]
    false.findings = len(episodes)
    false.true_findings = len(matched)
    false.false_alarms = len(episodes) - len(matched)
    false.asset_years = len(resolved.assets) * resolved.scenario.days / YEAR_DAYS
    labelled = max(1, totals[0])
    false.note = (
        f"accuracy {totals[1] / labelled:.2f} when opened, {totals[2] / labelled:.2f} final"
    )
    return [*scores, false]


def _match(label: Label, episodes: list[SilenceEpisode]) -> SilenceEpisode | None:
    """The episode that opened on the label's asset during it (parked: dated by its last run)."""
    start, end = parse_ts(label["start"]), parse_ts(label["end"])
    key = "parked" if label["kind"] == "parked" else "gateway"
    for episode in episodes:
        if episode.asset != label["asset"] or episode.key != key:
            continue
        began = episode.opened if key == "parked" else episode.since
        if start - timedelta(hours=1) <= began <= end and episode.opened >= start:
            return episode
    return None


def score_geofence(resolved: ResolvedScenario) -> list[KindScore]:
    """Relocations out of the permitted region found, and moves inside it left alone."""
    name = resolved.scenario.name
    labels = [lb for lb in scenario_labels(resolved) if lb["category"] in ("relocation", "benign")]
    regions = resolved.scenario.regions
    opened: dict[str, list[datetime]] = defaultdict(list)
    for sim in simulated_assets(resolved):
        spec = sim.timeline.spec
        region = Region(
            center=regions[spec.region].center, radius_km=regions[spec.region].radius_km
        )
        detector = GeofenceDetector.create(spec.device, spec.type, GeofenceThresholds())
        for fix in position_fixes(sim, resolved, off_windows(resolved, spec.id)):
            for found in detector.update(GeofenceInputs((fix,), region), fix.ts):
                if found.state == "open":
                    opened[spec.id].append(fix.ts)
    out = KindScore(
        name,
        "geofence",
        "relocation outside the region",
        labels=sum(lb["kind"] == "relocation" for lb in labels),
    )
    for label in (lb for lb in labels if lb["kind"] == "relocation"):
        hits = [t for t in opened[str(label["asset"])] if t >= parse_ts(label["start"])]
        if hits:
            out.detected += 1
            out.delays_h.append((hits[0] - parse_ts(label["start"])).total_seconds() / 3600)
    relocated = {lb["asset"] for lb in labels if lb["kind"] == "relocation"}
    out.findings = sum(len(v) for v in opened.values())
    out.true_findings = sum(len(v) for a, v in opened.items() if a in relocated)
    out.false_alarms = out.findings - out.true_findings
    out.asset_years = len(resolved.assets) * resolved.scenario.days / YEAR_DAYS
    benign = [lb for lb in labels if lb["kind"] == "move_within_region"]
    alarmed = sum(
        1 for lb in benign if opened.get(str(lb["asset"])) and lb["asset"] not in relocated
    )
    out.note = f"{len(benign)} moves inside the region, {alarmed} alerted"
    return [out]
