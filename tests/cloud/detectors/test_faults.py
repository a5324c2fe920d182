"""Faults: limits, failed sensors, fault codes, anomalies and the wear trend, on crafted series."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from cloud.alerts.signals import Finding
from cloud.detectors.fault_profiles import in_range
from cloud.detectors.faults import FaultDetector, FaultInputs, FaultThresholds
from cloud.detectors.inputs import MinuteSample

T0 = datetime(2025, 3, 3, tzinfo=UTC)
Shape = Callable[[int, dict[str, float]], dict[str, float]]


def machine(minutes: int, shape: Shape | None = None, seed: int = 3) -> Iterator[MinuteSample]:
    """A CNC-like machine: 06:00-22:00 running, one load level per 2 h, thermal lag, wobble."""
    rng = np.random.default_rng(seed)
    levels = rng.uniform(8.5, 24.5, size=minutes // 120 + 1)
    temperature = 20.0
    for m in range(minutes):
        ts = T0 + timedelta(minutes=m)
        on = 6 <= ts.hour < 22
        current = float(levels[m // 120]) * (1 + 0.01 * math.sin(m / 7)) if on else 0.2
        target = 20.0 + 1.6 * current if on else 20.0
        temperature = target + (temperature - target) * math.exp(-60 / 900)
        vibration = (1.8 + 0.1 * current) * (1 + 0.03 * math.sin(m / 3)) if on else 0.06
        values = {
            "running": 1.0 if on else 0.0,
            "motor_current": round(current, 2),
            "temperature": round(temperature + 0.1 * float(rng.standard_normal()), 1),
            "vibration_rms": round(vibration * (1 + 0.01 * float(rng.standard_normal())), 2),
            "fault_code": 0.0,
        }
        yield MinuteSample(ts, shape(m, values) if shape else values)


def feed(samples: Iterator[MinuteSample], detector: FaultDetector | None = None) -> list[Finding]:
    """Feed in 10-minute batches like the runner after each message."""
    det = detector or FaultDetector.create("cnc-1", "cnc", FaultThresholds())
    found: list[Finding] = []
    batch: list[MinuteSample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == 10:
            found += det.update(FaultInputs(tuple(batch)), batch[-1].ts)
            batch = []
    return found


def opened(found: list[Finding], prefix: str) -> list[Finding]:
    return [f for f in found if f.state == "open" and f.key.startswith(prefix)]


def test_healthy_machine_raises_nothing() -> None:
    assert feed(machine(8 * 1440)) == []


def test_temperature_over_the_profile_limit_opens_and_clears() -> None:
    def hot(m: int, v: dict[str, float]) -> dict[str, float]:
        return v | {"temperature": 80.0} if 600 <= m < 660 else v

    found = feed(machine(1440, hot))
    limit = [f for f in found if f.key == "limit:temperature"]
    assert [f.state for f in limit] == ["open", "cleared"]
    assert limit[0].since == T0 + timedelta(minutes=600)
    assert "past its limit" in limit[0].summary


def test_out_of_range_is_a_failed_sensor_not_a_hot_machine() -> None:
    def broken(m: int, v: dict[str, float]) -> dict[str, float]:
        return v | {"temperature": 3276.7} if m >= 400 else v

    found = feed(machine(600, broken))
    assert opened(found, "out_of_range:temperature")
    assert not opened(found, "limit:temperature")
    assert not opened(found, "missing:temperature")  # one failure, one finding


def test_fault_code_is_reported_and_cleared() -> None:
    def code(m: int, v: dict[str, float]) -> dict[str, float]:
        return v | {"fault_code": 21.0} if 500 <= m < 520 else v

    found = feed(machine(700, code))
    assert [f.state for f in found if f.key == "code:21"] == ["open", "cleared"]


def test_stuck_sensor_is_found_while_the_others_move() -> None:
    def stuck(m: int, v: dict[str, float]) -> dict[str, float]:
        return v | {"vibration_rms": 2.5} if m >= 420 else v

    found = feed(machine(600, stuck))
    hit = opened(found, "stuck:vibration_rms")
    assert hit and hit[0].since >= T0 + timedelta(minutes=420)
    assert not opened(found, "stuck:motor_current")


def test_missing_sensor_is_found_while_the_others_report() -> None:
    def missing(m: int, v: dict[str, float]) -> dict[str, float]:
        return {k: x for k, x in v.items() if k != "temperature"} if m >= 300 else v

    assert opened(feed(machine(400, missing)), "missing:temperature")


def test_overheating_residual_is_an_anomaly() -> None:
    start = 5 * 1440

    def overheat(m: int, v: dict[str, float]) -> dict[str, float]:
        if m < start or not v["running"]:
            return v
        return v | {"temperature": v["temperature"] + min(12.0, (m - start) / 60)}

    found = feed(machine(7 * 1440, overheat))
    hit = opened(found, "anomaly")
    assert hit and start <= (hit[0].since - T0).total_seconds() / 60 <= start + 1440
    assert "temperature_residual" in hit[0].summary


def test_bearing_wear_trend_is_projected_before_the_limit() -> None:
    start = 3 * 1440
    span = 12 * 1440

    def wear(m: int, v: dict[str, float]) -> dict[str, float]:
        factor = 1 + 1.5 * (max(0, m - start) / span) ** 2
        return v | {"vibration_rms": round(v["vibration_rms"] * factor, 2)}

    found = feed(machine(start + span, wear))
    worn = opened(found, "wear")
    assert worn, [f.key for f in found]
    first = worn[0]
    minutes = (first.evaluated_at - T0).total_seconds() / 60
    factor_then = 1 + 1.5 * ((minutes - start) / span) ** 2
    assert factor_then < 2.0  # reported before the vibration doubled
    assert "reaches 2.0x" in str(first.evidence["detail"])


def test_generic_columns_score_a_broken_relation() -> None:
    rng = np.random.default_rng(5)
    samples = []
    for n in range(600):
        a = float(rng.standard_normal())
        b = 2 * a + 0.05 * float(rng.standard_normal()) + (2.0 if 500 <= n < 505 else 0.0)
        samples.append(MinuteSample(T0 + timedelta(minutes=n), {"a": a, "b": b}))
    det = FaultDetector.for_columns("csv", ["a", "b"], FaultThresholds())
    det.update(FaultInputs(tuple(samples)), samples[-1].ts)
    alerts = [n for n, s in enumerate(det.trace) if s.alert]
    assert alerts == list(range(500, 505))
    assert all(0.0 <= s.score <= 1.0 for s in det.trace)


def test_state_survives_json_between_evaluations() -> None:
    def code(m: int, v: dict[str, float]) -> dict[str, float]:
        return v | {"fault_code": 2.0} if 900 <= m < 905 else v

    samples = list(machine(1200, code))
    straight = feed(iter(samples))
    det = FaultDetector.create("cnc-1", "cnc", FaultThresholds())
    first = feed(iter(samples[:600]), det)
    restored = FaultDetector.restore(det.to_json(), FaultThresholds())
    rest = feed(iter(samples[600:]), restored)
    assert [(f.key, f.state, f.since) for f in first + rest] == [
        (f.key, f.state, f.since) for f in straight
    ]


def test_values_in_range_are_used_as_they_are_and_failed_or_nan_ones_sorted_out() -> None:
    fine = {"temperature": 20.0, "lat": 51.2, "motor_current": 12.0}
    assert in_range(fine) == (fine, {}) and in_range(fine)[0] is fine
    valid, active = in_range({"temperature": 3276.7, "lat": math.nan, "motor_current": 5.0})
    assert valid == {"motor_current": 5.0}
    assert list(active) == ["out_of_range:temperature", "out_of_range:lat"]
    assert in_range({"a": math.inf, "b": -math.inf})[1] == {}  # unranged: only NaN is out
