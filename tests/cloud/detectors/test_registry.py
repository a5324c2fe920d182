"""The registry, the runner's evaluate(), and inputs built from state-store rollup rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine

from cloud.detector_state import load_detector_state, save_detector_state
from cloud.detectors.base import evaluate, evaluate_state
from cloud.detectors.inputs import (
    AssetData,
    DayUsage,
    MinuteSample,
    PositionInput,
    Region,
    day_usage,
    minute_samples,
    positions,
    settled_days,
)
from cloud.detectors.registry import DETECTORS
from cloud.detectors.scoring import load
from cloud.detectors.simulated import day_usage as simulated_day_usage
from cloud.rollups import rollup_deltas
from cloud.schema import detector_state
from firmware_sim.scenarios.run import simulated_assets
from leasewatch.wire import decode_telemetry

NOW = datetime(2025, 3, 5, 12, tzinfo=UTC)


def test_every_detector_evaluates_from_nothing_and_from_its_json() -> None:
    data = AssetData(
        device="gw-1",
        asset_type="cnc",
        now=NOW,
        minutes=(MinuteSample(NOW - timedelta(minutes=1), {"running": 1.0, "temperature": 40.0}),),
        days=(DayUsage(NOW.date() - timedelta(days=1), 8.0),),
        positions=(PositionInput(NOW, 51.5, 4.9),),
        region=Region(center=(51.5, 4.9), radius_km=50.0),
    )
    assert list(DETECTORS) == ["utilization", "faults", "silence", "geofence"]
    for key, description in DETECTORS.items():
        state, findings = evaluate(description, None, data)
        assert json.loads(state)["device"] == "gw-1", key
        again, _ = evaluate(description, state, data)
        assert json.loads(again) == json.loads(state), key  # the same inputs change nothing
        assert findings == [], key
        as_dict, _ = evaluate_state(description, json.loads(state), data)
        assert as_dict == json.loads(state), key


def _rollup_rows(minute: datetime) -> list[dict[str, object]]:
    return [
        {
            "bucket": minute.replace(tzinfo=None),
            "metric": "running",
            "count": 2,
            "sum": 1.0,
            "min": 0.0,
            "max": 1.0,
        },
        {
            "bucket": minute,
            "metric": "fault_code",
            "count": 2,
            "sum": 21.0,
            "min": 0.0,
            "max": 21.0,
        },
        {"bucket": minute, "metric": "lat", "count": 1, "sum": 51.5, "min": 51.5, "max": 51.5},
        {"bucket": minute, "metric": "lon", "count": 1, "sum": 4.9, "min": 4.9, "max": 4.9},
    ]


def test_inputs_from_rollup_rows() -> None:
    minute = datetime(2025, 3, 5, 7, 30, tzinfo=UTC)
    samples = minute_samples(_rollup_rows(minute))
    assert samples[0].ts == minute and samples[0].values["running"] == 0.5
    assert samples[0].values["fault_code"] == 21.0  # the max: a code is never averaged away
    assert positions(_rollup_rows(minute)) == [PositionInput(minute, 51.5, 4.9)]
    hourly = [
        {
            "bucket": datetime(2025, 3, 5, h, tzinfo=UTC),
            "metric": "running",
            "count": 60,
            "sum": 30.0,
        }
        for h in range(6, 20)
    ]
    usage = day_usage(hourly)
    assert usage[0].running_hours == 7.0 and usage[0].covered_hours == 14.0
    assert usage[0].shift_hours == {"early": 4.0, "late": 3.0}
    assert settled_days(usage, NOW, timedelta(hours=2)) == []
    assert settled_days(usage, NOW + timedelta(days=1), timedelta(hours=2)) == usage


def test_scoring_inputs_equal_the_rollups_of_the_gateway_messages() -> None:
    """The scoring harness's day usage is what the ingest path's rollups would hold."""
    resolved = load("smoke")
    sim = simulated_assets(resolved)[0]
    day = 1
    per_window = 86_400 // resolved.scenario.batch_s
    batches = []
    for index in range(day * per_window, (day + 1) * per_window):
        batches += [
            decode_telemetry(m.topic, m.payload)
            for m in sim.gateway.window(index)
            if m.kind == "telemetry"
        ]
    rows = [
        {"bucket": d.bucket, "metric": d.metric, "count": d.count, "sum": d.sum}
        for d in rollup_deltas(batches)
        if d.resolution_s == 3600
    ]
    from_rollups = [
        u for u in day_usage(rows) if u.day == resolved.scenario.start + timedelta(days=day)
    ]
    harness = simulated_day_usage(sim, resolved, day, [])
    assert abs(from_rollups[0].running_hours - harness.running_hours) < 1e-6
    assert from_rollups[0].covered_hours == harness.covered_hours == 24.0


def test_states_round_trip_through_the_detector_state_table() -> None:
    """The runner keeps states with `cloud.detector_state`: every detector's state fits it."""
    engine = create_engine("sqlite://")
    detector_state.create(engine)
    data = AssetData(
        device="gw-1",
        asset_type="truck",
        now=NOW,
        minutes=tuple(
            MinuteSample(NOW - timedelta(minutes=n), {"running": 1.0, "motor_current": 50.0 + n})
            for n in range(30, 0, -1)
        ),
    )
    with engine.begin() as conn:
        for key, description in DETECTORS.items():
            state, _ = evaluate_state(description, None, data)
            save_detector_state(conn, "gw-1", key, state, NOW)
            loaded = load_detector_state(conn, "gw-1", key)
            assert loaded == state, key
            again, findings = evaluate_state(description, loaded, data)
            assert again == state and findings == [], key
