"""Ground-truth labels: one JSON object per incident per asset, what detectors are scored against.

Every label has `asset`, `device`, `lease`, `kind`, `category`, `start`, `end` (RFC 3339 UTC) and
`magnitude` (null when a kind has none), plus what a detector needs to be judged fairly:

    utilization_decline  magnitude = fraction of use lost; shape, ramp_end
    seasonal_dip         magnitude = fraction lost; category "seasonal": NOT a decline
    bearing_wear         magnitude = x vibration at the end of the trend; spike_start, fault_code
    overheating          magnitude = degC added; motor_overload: x current; both with fault_code
    sensor_failure       sensor, metric, mode (missing | stuck | out_of_range)
    network_outage, power_cut, tamper, parked
                         last_will, data (delayed | missing | flowing), new_boot, machine_running
    relocation           start = first instant outside the permitted region; magnitude = km
                         outside at the destination; departure, arrival, destination
    move_within_region   category "benign": a move that must NOT raise a relocation alert
    duplicates, late, out_of_order, malformed
                         magnitude = share of the window's messages hit; delay_s (late)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from firmware_sim.scenarios.effects import BEARING_SPIKE_CODE, OVERHEAT_CODE, OVERLOAD_CODE
from firmware_sim.scenarios.encoding import iso
from firmware_sim.scenarios.expand import DAY_S, Incident, ResolvedScenario
from firmware_sim.scenarios.geofence import Region, outside_windows
from firmware_sim.scenarios.timeline import AssetTimeline

Label = dict[str, object]

_SILENCE = {
    "network_outage": {"last_will": True, "data": "delayed", "new_boot": False},
    "power_cut": {"last_will": False, "data": "missing", "new_boot": True},
    "tamper": {"last_will": True, "data": "missing", "new_boot": True},
    "parked": {"last_will": False, "data": "flowing", "new_boot": False},
}
_FAULT_CODES = {
    "bearing_wear": BEARING_SPIKE_CODE,
    "overheating": OVERHEAT_CODE,
    "motor_overload": OVERLOAD_CODE,
}


def label_for(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    """The label of one incident."""
    spec = timeline.spec
    label: Label = {
        "asset": spec.id,
        "device": spec.device,
        "lease": spec.lease,
        "type": spec.type,
        "kind": incident.kind,
        "category": incident.category,
        "start": iso(incident.start),
        "end": iso(incident.end),
        "magnitude": None if incident.magnitude is None else round(incident.magnitude, 4),
        "event": incident.event,
    }
    label.update(_DETAILS[incident.category](resolved, incident, timeline))
    if incident.note:
        label["note"] = incident.note
    return label


def _decline(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    ramp_end = incident.start + incident.ramp_s
    shape = "gradual" if incident.ramp_s else "sudden"
    return {"shape": shape, "ramp_end": iso(ramp_end), "ramp_days": incident.ramp_s / DAY_S}


def _dip(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    return {"name": incident.name, "not_a_decline": True}


def _machine_fault(
    resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline
) -> Label:
    details: Label = {"fault_code": _FAULT_CODES[incident.kind]}
    if incident.kind == "bearing_wear":
        details["spike_start"] = iso(incident.end - incident.spike_s)
        details["spike_factor"] = round(2 * (incident.magnitude or 1.0), 4)
    return details


def _sensor(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    return {"sensor": "machine", "metric": incident.metric, "mode": incident.mode}


def _silence(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    details = dict(_SILENCE[incident.kind])
    details["machine_running"] = incident.kind in ("network_outage", "tamper")
    if incident.end >= resolved.end_ts:
        details["new_boot"] = False
    return details


def _data_fault(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    details: Label = {"message_share": incident.message_share}
    if incident.kind == "late":
        details["delay_s"] = round(incident.delay_s, 1)
    return details


def relocation_labels(resolved: ResolvedScenario, timeline: AssetTimeline) -> list[Label]:
    """Labels of one asset's moves: each time it was outside its region, and benign moves."""
    spec = timeline.spec
    area = resolved.scenario.regions[spec.region]
    region = Region(area.center, area.radius_km)
    moves = [i for i in resolved.incidents_of(spec.id) if i.kind == "relocation"]
    windows, benign = outside_windows(timeline, moves, region, resolved.end_ts)
    labels = []
    for window in windows:
        label = label_for(resolved, window.move, timeline)
        label.update(start=iso(window.start), end=iso(window.end))
        label.update(magnitude=round(window.farthest_km, 3), outside_region=True)
        labels.append(label)
    for move in benign:
        label = label_for(resolved, move, timeline)
        label.update(kind="move_within_region", category="benign", magnitude=0.0)
        label.update(start=iso(move.start), end=iso(move.start + move.travel_s))
        label.update(outside_region=False)
        labels.append(label)
    return labels


def _move(resolved: ResolvedScenario, incident: Incident, timeline: AssetTimeline) -> Label:
    destination = incident.destination or timeline.spec.home
    return {
        "departure": iso(incident.start),
        "arrival": iso(incident.start + incident.travel_s),
        "destination": [round(destination[0], 6), round(destination[1], 6)],
        "origin": [round(v, 6) for v in timeline.position(incident.start)],
        "permitted_region": timeline.spec.region,
    }


_DETAILS: dict[str, Callable[[ResolvedScenario, Incident, AssetTimeline], Label]] = {
    "utilization": _decline,
    "seasonal": _dip,
    "fault": lambda r, i, t: (_sensor if i.kind == "sensor_failure" else _machine_fault)(r, i, t),
    "silence": _silence,
    "relocation": _move,
    "data_fault": _data_fault,
}


def labels_for(resolved: ResolvedScenario, timelines: dict[str, AssetTimeline]) -> list[Label]:
    """Labels of every incident, ordered by start time then asset."""
    labels = [
        label_for(resolved, i, timelines[i.asset])
        for i in resolved.incidents
        if i.category != "relocation"
    ]
    moved = dict.fromkeys(i.asset for i in resolved.incidents if i.category == "relocation")
    for asset in moved:
        labels += relocation_labels(resolved, timelines[asset])
    return sorted(labels, key=lambda label: (str(label["start"]), str(label["asset"])))


def write_labels(path: Path, labels: Iterable[Label]) -> int:
    """Write labels as JSON lines; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for label in labels:
            file.write(json.dumps(label, separators=(",", ":")) + "\n")
            count += 1
    return count


def read_labels(path: Path) -> list[Label]:
    """Labels from a JSON lines file."""
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


__all__ = ["Label", "label_for", "labels_for", "read_labels", "relocation_labels", "write_labels"]
