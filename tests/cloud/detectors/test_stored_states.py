"""Detector states stored before the dataclass states (pydantic models) load and carry on alike.

`data/states_v1.json` was written by the pydantic-model detectors (commit 2f037c7): per
detector the stored state text, the inputs that followed, the findings they gave and the state
after them. Restored with today's code and fed the same inputs, each must give the same.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.alerts.signals import Finding
from cloud.detectors.faults import FaultDetector, FaultInputs, FaultThresholds
from cloud.detectors.geofence import GeofenceDetector, GeofenceInputs, GeofenceThresholds
from cloud.detectors.inputs import EventInput, MinuteSample, PositionInput, Region, StatusInput
from cloud.detectors.silence import SilenceDetector, SilenceInputs, SilenceThresholds

CASES = json.loads((Path(__file__).parent / "data" / "states_v1.json").read_text())
HOME = (51.26, 4.40)
T0 = datetime(2025, 6, 2, 8, tzinfo=UTC)  # the geofence case's first fix, every 10 minutes
CIRCLE = Region(center=(51.5, 4.9), radius_km=200.0)


def samples(rows: list[list[Any]]) -> tuple[MinuteSample, ...]:
    return tuple(MinuteSample(datetime.fromisoformat(ts), values) for ts, values in rows)


def plain(found: list[Finding]) -> list[list[str]]:
    return [
        [f.key, f.state, f.since.isoformat(), f.evaluated_at.isoformat(), f.summary] for f in found
    ]


def same_as_before(case: dict[str, Any], found: list[Finding], state_text: str) -> None:
    """The findings and the state after the inputs are those the old code gave."""
    assert plain(found) == case["findings"]
    assert json.loads(state_text) == case["next"]


def test_faults_state_of_a_learned_machine_loads_and_carries_on() -> None:
    case = CASES["faults"]
    det = FaultDetector.restore(case["stored"], FaultThresholds())
    assert det.to_json() == case["stored"]  # the same text: the format did not change
    assert det.state.book.items["anomaly"].open and len(det.state.wear.points) == 72
    rest = samples(case["then"])
    same_as_before(case, det.update(FaultInputs(rest), rest[-1].ts), det.to_json())


def test_silence_state_with_an_open_episode_loads_and_carries_on() -> None:
    case = CASES["silence"]
    det = SilenceDetector.restore(case["stored"], SilenceThresholds())
    assert det.to_json() == case["stored"]
    assert det.state.silence is not None and det.state.day is not None
    later = datetime.fromisoformat(case["now"])
    inputs = SilenceInputs(
        minutes=samples(case["then"]), status=StatusInput("online", later, "b-1"),
        last_live_at=later, boot="b-1", home=HOME, events=(EventInput(later, "start"),),
    )  # fmt: skip
    same_as_before(case, det.update(inputs, later + timedelta(minutes=1)), det.to_json())


def test_geofence_state_loads_and_carries_on() -> None:
    case = CASES["geofence"]
    det = GeofenceDetector.restore(case["stored"], GeofenceThresholds())
    assert det.to_json() == case["stored"]
    assert det.state.watermark == T0 + timedelta(minutes=10)
    more = tuple(PositionInput(T0 + timedelta(minutes=10 * n), 45.76, 4.84) for n in range(2, 6))
    same_as_before(case, det.update(GeofenceInputs(more, CIRCLE), more[-1].ts), det.to_json())


def test_a_state_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown state version 2"):
        FaultDetector.restore('{"version":2,"device":"gw-1","profile":"cnc"}', FaultThresholds())


def test_a_state_missing_fields_gets_their_defaults() -> None:
    det = SilenceDetector.restore('{"device":"gw-1","extra":1}', SilenceThresholds())
    assert det.state.weekday_days == [0] * 7
    assert det.to_json().startswith('{"version":1,"device":"gw-1","last_seen":null')
