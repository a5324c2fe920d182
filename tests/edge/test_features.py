"""Local features, without I/O: machine state with hysteresis and dwell, run hours, RMS windows."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import FeaturesConfig, MachineStateConfig, VibrationRmsConfig
from edge.features import (
    RUN_HOURS_METRIC,
    STATE_METRIC,
    FeatureEngine,
    MachineState,
    StateTracker,
    classify,
)
from leasewatch.wire import Reading

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
CURRENT = MachineStateConfig(
    sensor="machine",
    metric="motor_current",
    idle_above=0.5,
    running_above=5.0,
    hysteresis=0.3,
    min_dwell=10.0,
)


def _feed(tracker: StateTracker, samples: list[tuple[float, float]]) -> list[tuple[str, float]]:
    """Feed (seconds after T0, value) samples; returns the events as (kind, seconds)."""
    events = []
    for seconds, value in samples:
        out = tracker.update(T0 + timedelta(seconds=seconds), value)
        events += [(e.kind, (e.ts - T0).total_seconds()) for e in out.events]
    return events


def test_classify_needs_the_hysteresis_band_to_leave_a_state() -> None:
    assert classify(CURRENT, 5.5, MachineState.OFF) is MachineState.RUNNING
    assert classify(CURRENT, 4.8, MachineState.OFF) is MachineState.IDLE
    assert classify(CURRENT, 4.8, MachineState.RUNNING) is MachineState.RUNNING  # within band
    assert classify(CURRENT, 4.6, MachineState.RUNNING) is MachineState.IDLE
    assert classify(CURRENT, 0.3, MachineState.IDLE) is MachineState.IDLE  # within band
    assert classify(CURRENT, 0.1, MachineState.IDLE) is MachineState.OFF
    assert classify(CURRENT, 0.3, MachineState.OFF) is MachineState.OFF


def test_start_and_stop_need_the_minimum_dwell_and_carry_when_they_happened() -> None:
    tracker = StateTracker(CURRENT)
    samples = [(t, 0.1) for t in range(10)]  # off
    samples += [(t, 12.0) for t in range(10, 15)]  # a 5 s blip: shorter than the dwell
    samples += [(t, 0.1) for t in range(15, 20)]
    samples += [(t, 12.0) for t in range(20, 60)]  # runs from 20 s
    samples += [(t, 0.1) for t in range(60, 80)]  # stops at 60 s
    events = _feed(tracker, samples)
    assert events == [("start", 20.0), ("stop", 60.0)]
    assert tracker.state is MachineState.OFF
    assert tracker.run_hours == pytest.approx(40 / 3600)


def test_outputs_state_and_run_hour_readings_and_ignores_other_metrics() -> None:
    config = CURRENT.model_copy(update={"min_dwell": 0, "max_gap": 3600})
    engine = FeatureEngine(FeaturesConfig(machine_state=[config]))
    readings = [
        Reading(sensor="machine", metric="motor_current", ts=T0, value=12.0, unit="A"),
        Reading(sensor="machine", metric="temperature", ts=T0, value=40.0),
        Reading(sensor="other", metric="motor_current", ts=T0, value=12.0),
    ]
    out = engine.process(readings)
    assert {(r.sensor, r.metric, r.value) for r in out.readings} == {
        ("machine", STATE_METRIC, 2.0),
        ("machine", RUN_HOURS_METRIC, 0.0),
    }
    later = Reading(
        sensor="machine", metric="motor_current", ts=T0 + timedelta(hours=0.5), value=12.0
    )
    out = engine.process([later])
    assert next(r.value for r in out.readings if r.metric == RUN_HOURS_METRIC) == 0.5


def test_a_gap_longer_than_max_gap_counts_no_run_time_and_missing_is_not_off() -> None:
    tracker = StateTracker(CURRENT.model_copy(update={"min_dwell": 0, "max_gap": 60}))
    _feed(tracker, [(0, 12.0), (30, 12.0)])
    assert tracker.run_hours == pytest.approx(30 / 3600)
    _feed(tracker, [(3630, 12.0)])  # an hour without readings: not counted, still running
    assert tracker.run_hours == pytest.approx(30 / 3600)
    assert tracker.state is MachineState.RUNNING


def test_run_hours_and_state_survive_a_restart_without_a_false_start() -> None:
    config = FeaturesConfig(machine_state=[CURRENT.model_copy(update={"min_dwell": 0})])
    before = FeatureEngine(config)
    for minute in range(61):
        before.process(
            [
                Reading(
                    sensor="machine",
                    metric="motor_current",
                    ts=T0 + timedelta(minutes=minute),
                    value=9.0,
                )
            ]
        )
    after = FeatureEngine(config, saved=before.snapshot())
    out = after.process(
        [
            Reading(
                sensor="machine", metric="motor_current", ts=T0 + timedelta(minutes=61), value=9.0
            )
        ]
    )
    assert out.events == []
    assert next(r.value for r in out.readings if r.metric == RUN_HOURS_METRIC) == pytest.approx(
        61 / 60
    )


def test_vibration_rms_over_clock_aligned_windows() -> None:
    config = FeaturesConfig(
        vibration_rms=[VibrationRmsConfig(sensor="band", metric="accel", window=10)]
    )
    engine = FeatureEngine(config)

    def sample(seconds: float, value: float) -> list[Reading]:
        reading = Reading(
            sensor="band", metric="accel", ts=T0 + timedelta(seconds=seconds), value=value, unit="g"
        )
        return engine.process([reading]).readings

    assert sample(1, 3.0) == []
    assert sample(5, -4.0) == []
    (rms,) = sample(12, 1.0)  # closes [0, 10)
    assert (rms.metric, rms.unit, rms.ts) == ("accel_rms", "g", T0 + timedelta(seconds=10))
    assert rms.value == pytest.approx(math.sqrt((9 + 16) / 2))
    (rms,) = sample(35, 0.0)  # closes [10, 20) holding one sample
    assert rms.value == pytest.approx(1.0)
    assert rms.ts == T0 + timedelta(seconds=20)


samples = st.lists(
    st.tuples(st.floats(0.1, 120.0), st.floats(0.0, 20.0, allow_nan=False)), max_size=200
)


@settings(max_examples=150, deadline=None)
@given(samples)
def test_run_hours_never_decrease_never_exceed_elapsed_and_starts_alternate_with_stops(
    steps: list[tuple[float, float]],
) -> None:
    tracker = StateTracker(CURRENT.model_copy(update={"max_gap": 300}))
    now, hours, kinds = 0.0, 0.0, []
    for step, value in steps:
        now += step
        out = tracker.update(T0 + timedelta(seconds=now), value)
        assert tracker.run_hours >= hours - 1e-12
        hours = tracker.run_hours
        kinds += [e.kind for e in out.events]
        assert {r.value for r in out.readings if r.metric == STATE_METRIC} <= {0.0, 1.0, 2.0}
    assert hours <= now / 3600 + 1e-9
    assert all(a != b for a, b in itertools.pairwise(kinds))
