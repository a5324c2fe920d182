"""Run a scenario offline: labels, the per-asset day summary and (optionally) every message.

`run_scenario` writes into one directory:

    scenario.json    the scenario as loaded (after defaults), its asset and incident counts
    assets.csv       asset, device, type, site, region, lease, home lat/lon, initial run hours
    labels.jsonl     ground truth, one label per incident (see `labels.py`)
    days.csv         asset, date, run_hours, nominal_hours: what each asset did each day, and
                     what it would have done without any incident (scoring only, never input)
    telemetry.jsonl  with `telemetry=True`: every publish the gateways make, in simulated time
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from firmware_sim.scenarios.asset import ScenarioAsset
from firmware_sim.scenarios.encoding import iso
from firmware_sim.scenarios.expand import ResolvedScenario
from firmware_sim.scenarios.gateway import GatewayStream, Outgoing, StreamTiming
from firmware_sim.scenarios.labels import labels_for, write_labels
from firmware_sim.scenarios.timeline import AssetTimeline

Progress = Callable[[int], None]
RowWriter = Callable[[Iterable[object]], object]


@dataclass(frozen=True)
class RunSummary:
    """What a scenario run wrote."""

    out_dir: Path
    assets: int
    days: int
    labels: int
    messages: int  # 0 unless telemetry was written


@dataclass(frozen=True)
class SimulatedAsset:
    """One asset of a run: its timeline, its signals and its gateway."""

    timeline: AssetTimeline
    machine: ScenarioAsset
    gateway: GatewayStream


def simulated_assets(resolved: ResolvedScenario, boot_tag: str = "b") -> list[SimulatedAsset]:
    """Timeline, machine and gateway of every asset of a resolved scenario."""
    scenario = resolved.scenario
    timing = StreamTiming(
        resolved.start_ts, scenario.sample_s, scenario.batch_s, scenario.seed, boot_tag
    )
    built = []
    for spec in resolved.assets:
        incidents = resolved.incidents_of(spec.id)
        timeline = AssetTimeline(
            spec, incidents, resolved.start_ts, scenario.seed, resolved.calendar_of(spec)
        )
        machine = ScenarioAsset(timeline, incidents)
        built.append(SimulatedAsset(timeline, machine, GatewayStream(machine, incidents, timing)))
    return built


def windows(resolved: ResolvedScenario) -> int:
    """Number of batch windows in the scenario."""
    return resolved.scenario.days * 86_400 // resolved.scenario.batch_s


def messages_of(asset: SimulatedAsset, count: int) -> Iterator[Outgoing]:
    """Every publish of one gateway over the first `count` windows."""
    for index in range(count):
        yield from asset.gateway.window(index)


def run_scenario(
    resolved: ResolvedScenario,
    out_dir: Path,
    *,
    telemetry: bool = False,
    progress: Progress | None = None,
) -> RunSummary:
    """Simulate every asset over the whole span and write the run's files into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    assets = simulated_assets(resolved, boot_tag=f"s{resolved.scenario.seed}")
    _write_scenario(resolved, out_dir / "scenario.json")
    _write_assets(assets, out_dir / "assets.csv")
    timelines = {a.timeline.spec.id: a.timeline for a in assets}
    labels = write_labels(out_dir / "labels.jsonl", labels_for(resolved, timelines))
    messages = 0
    telemetry_file = (out_dir / "telemetry.jsonl").open("w") if telemetry else None
    with (out_dir / "days.csv").open("w", newline="") as days_file:
        days = csv.writer(days_file)
        days.writerow(["asset", "date", "run_hours", "nominal_hours"])
        for asset in assets:
            _write_days(resolved, asset.timeline, days.writerow)
            if telemetry_file is not None:
                messages += _write_messages(asset, windows(resolved), telemetry_file)
            if progress is not None:
                progress(1)
    if telemetry_file is not None:
        telemetry_file.close()
    return RunSummary(out_dir, len(assets), resolved.scenario.days, labels, messages)


def _write_scenario(resolved: ResolvedScenario, path: Path) -> None:
    document = {
        "scenario": resolved.scenario.model_dump(mode="json"),
        "assets": len(resolved.assets),
        "incidents": len(resolved.incidents),
        "start": iso(resolved.start_ts),
        "end": iso(resolved.end_ts),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _write_assets(assets: list[SimulatedAsset], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "asset",
                "device",
                "type",
                "site",
                "region",
                "lease",
                "lat",
                "lon",
                "initial_run_hours",
            ]
        )
        for asset in assets:
            s = asset.timeline.spec
            writer.writerow(
                [s.id, s.device, s.type, s.site, s.region, s.lease, *s.home, s.initial_run_hours]
            )


def _write_days(resolved: ResolvedScenario, timeline: AssetTimeline, write: RowWriter) -> None:
    """One row per day: run hours done and run hours a normal day would have had."""
    for day in range(resolved.scenario.days):
        plan = timeline.plan(day)
        date = resolved.scenario.start + timedelta(days=day)
        write(
            [
                timeline.spec.id,
                date.isoformat(),
                round(plan.run_s / 3600.0, 4),
                round(plan.nominal_s / 3600.0, 4),
            ]
        )


def _write_messages(asset: SimulatedAsset, count: int, file: TextIO) -> int:
    """Append one gateway's publishes as JSON lines; returns how many."""
    written = 0
    for message in messages_of(asset, count):
        record = {
            "at": iso(message.due),
            "topic": message.topic,
            "kind": message.kind,
            "device": message.device,
            "boot": message.boot,
            "seq": message.seq,
            "historical": message.historical,
            "retain": message.retain,
            "fault": message.fault,
            "detail": message.detail,
            "payload": message.payload.decode(),
        }
        file.write(json.dumps(record, separators=(",", ":")) + "\n")
        written += 1
    return written
