"""Asset types: registry, physics of the shared model and each type's readings, no I/O."""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from datetime import UTC, date, datetime, time, timedelta

import pytest

from firmware_sim.asset_types import (
    ASSET_TYPES,
    CNC_PROFILE,
    COMPRESSOR_PROFILE,
    EXCAVATOR_PROFILE,
    MIXED,
    TRUCK_PROFILE,
    AssetModel,
    asset_type,
)
from firmware_sim.calendar import PlannedStop, Shift, WorkCalendar
from firmware_sim.machine import AssetProfile, AssetState, DutyCycle, MachineModel
from firmware_sim.register_map import CLOCK_METRIC, encode_registers, held_values

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
PROFILES = {
    "truck": TRUCK_PROFILE,
    "excavator": EXCAVATOR_PROFILE,
    "cnc": CNC_PROFILE,
    "compressor": COMPRESSOR_PROFILE,
}
#: The reading that follows each type's load, and the one that shows it stopped.
LOAD_READING = {
    "truck": "engine_rpm",
    "excavator": "engine_load",
    "cnc": "spindle_current",
    "compressor": "loaded_hours",
}
RUN_METER = {
    "truck": "engine_hours",
    "excavator": "engine_hours",
    "cnc": "run_hours",
    "compressor": "run_hours",
}
ALWAYS_ON = WorkCalendar.weekly([Shift(time(0), time(0))], workdays=range(7))
NO_STOPS = DutyCycle(stop_probability=0.0)
each_type = pytest.mark.parametrize("name", MIXED)


def _walk(model: AssetModel, start: datetime, hours: float, step_s: float) -> list[AssetState]:
    """States every `step_s` seconds from `start` for `hours`."""
    steps = round(hours * 3600 / step_s)
    return [model.advance(start + timedelta(seconds=i * step_s)) for i in range(steps + 1)]


def _steady(name: str, **physics: float | tuple[float, float]) -> AssetProfile:
    """The type's profile without random stops and with some physics replaced."""
    profile = PROFILES[name]
    changed = dataclasses.replace(profile.physics, **physics)  # type: ignore[arg-type]
    return dataclasses.replace(profile, physics=changed, duty=NO_STOPS)


def test_registry_names_the_types_and_their_maps() -> None:
    assert list(ASSET_TYPES) == ["generic", "truck", "excavator", "cnc", "compressor"]
    assert MIXED == ("truck", "excavator", "cnc", "compressor")
    for name, kind in ASSET_TYPES.items():
        assert kind.name == name
        assert kind.description
        assert "fault_code" in kind.register_map.metrics
        assert (CLOCK_METRIC in kind.register_map.metrics) is (name != "generic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ASSET_TYPES["truck"].name = "lorry"  # type: ignore[misc]
    with pytest.raises(ValueError, match="known: generic, truck"):
        asset_type("forklift")


def test_generic_type_is_the_machine_model() -> None:
    model = ASSET_TYPES["generic"].model(3, initial_run_hours=50.0)
    assert isinstance(model, MachineModel)
    assert model.advance(MONDAY).run_hours == 50.0
    with pytest.raises(ValueError, match="no bearing model"):
        ASSET_TYPES["generic"].model(3, bearing_fault_at=MONDAY)


@pytest.mark.parametrize("name", list(ASSET_TYPES))
def test_a_day_of_states_fits_the_register_map(name: str) -> None:
    kind = ASSET_TYPES[name]
    model = kind.model(11, initial_run_hours=14_000.0)
    for hour in range(36):
        values = model.advance(MONDAY + timedelta(hours=hour, minutes=7)).values()
        assert held_values(encode_registers(values, kind.register_map), kind.register_map)


@each_type
def test_run_hours_grow_only_while_running(name: str) -> None:
    model = AssetModel(3, PROFILES[name], initial_run_hours=500.0)
    states = _walk(model, MONDAY, 24, 10.0)
    for before, after in itertools.pairwise(states):
        grown = after.run_hours - before.run_hours
        assert grown == pytest.approx(10 / 3600 if before.running else 0.0, abs=1e-9)
        assert after.readings[RUN_METER[name]] == after.run_hours
    ran = states[-1].run_hours - 500.0
    assert 8.0 < ran < 16.0  # two shifts (16 h) minus random stops
    in_shift = [s for s in states if time(6) <= s.at.time() < time(22)]
    assert any(not s.running for s in in_shift)  # random stops happen


@each_type
def test_holidays_weekends_and_planned_stops_are_idle(name: str) -> None:
    calendar = WorkCalendar.weekly(
        holidays=[date(2026, 1, 7)],  # Wednesday
        planned_stops=[PlannedStop(MONDAY + timedelta(days=1), MONDAY + timedelta(days=2))],
    )
    model = AssetModel(5, PROFILES[name], 100.0, calendar=calendar, step_s=60.0)
    states = _walk(model, MONDAY - timedelta(days=2), 24 * 7, 300.0)
    by_day: dict[date, list[AssetState]] = {}
    for state in states:
        by_day.setdefault(state.at.date(), []).append(state)
    for day, day_states in by_day.items():
        worked = day.weekday() in {0, 3, 4}  # Tuesday stopped, Wednesday a holiday
        assert any(s.running for s in day_states) is worked, day
    idle = [s for s in states if not s.running]
    assert all(s.readings[LOAD_READING[name]] == 0.0 for s in idle if name != "compressor")
    saturday = [s.run_hours for s in by_day[date(2026, 1, 10)]]
    assert saturday[0] == saturday[-1]


@each_type
def test_temperature_lags_the_load_first_order(name: str) -> None:
    load = 0.6
    profile = _steady(name, load_range=(load, load))
    physics = profile.physics
    model = AssetModel(1, profile, calendar=ALWAYS_ON)
    rise0, rise1 = physics.temp_rise_c
    target = physics.ambient_c + rise0 + (rise1 - rise0) * load
    for state in _walk(model, MONDAY, 2, 60.0):
        elapsed = (state.at - MONDAY).total_seconds()
        expected = target - (target - physics.ambient_c) * math.exp(-elapsed / physics.heat_tau_s)
        assert state.temperature == pytest.approx(expected, abs=1e-9)


@each_type
def test_temperature_cools_with_its_own_lag_after_the_shift(name: str) -> None:
    profile = _steady(name)
    model = AssetModel(1, profile, calendar=WorkCalendar.weekly(), step_s=60.0)
    model.advance(MONDAY)
    at_end = model.advance(MONDAY + timedelta(hours=22))
    an_hour_later = model.advance(MONDAY + timedelta(hours=23))
    ambient, tau = profile.physics.ambient_c, profile.physics.cool_tau_s
    expected = ambient + (at_end.temperature - ambient) * math.exp(-3600 / tau)
    assert at_end.temperature > ambient + 10
    assert an_hour_later.temperature == pytest.approx(expected, rel=1e-9)


@each_type
def test_readings_follow_the_load(name: str) -> None:
    model = AssetModel(7, _steady(name), calendar=ALWAYS_ON, step_s=60.0)
    states = [s for s in _walk(model, MONDAY, 24, 300.0) if s.running]
    metric = LOAD_READING[name]
    if name == "compressor":  # loaded hours grow with the share of time loaded
        rates = [(b.readings[metric] - a.readings[metric]) for a, b in itertools.pairwise(states)]
        assert statistics.correlation([s.load for s in states[:-1]], rates) > 0.99
    else:
        readings = [s.readings[metric] for s in states]
        assert statistics.correlation([s.load for s in states], readings) > 0.95


@each_type
def test_wear_raises_vibration_over_weeks(name: str) -> None:
    model = AssetModel(9, _steady(name, wear_life_h=1000.0), calendar=ALWAYS_ON, step_s=60.0)
    weekly: list[float] = []
    for week in range(4):
        states = _walk(model, MONDAY + timedelta(weeks=week), 24 * 7 - 1, 1800.0)
        weekly.append(statistics.median(s.vibration_rms / _new_vibration(name, s) for s in states))
    assert weekly == sorted(weekly)
    assert weekly[-1] > weekly[0] * 1.3  # ~500 running hours of a 1000 h wear life


def _new_vibration(name: str, state: AssetState) -> float:
    """Vibration of a new machine at the state's load (no wear, no noise)."""
    low, high = PROFILES[name].physics.vibration_mm_s
    return low + (high - low) * state.load


@each_type
def test_a_bearing_fault_trends_then_spikes(name: str) -> None:
    onset = MONDAY + timedelta(days=7)
    healthy = AssetModel(4, PROFILES[name], 2000.0, step_s=60.0)
    failing = AssetModel(4, PROFILES[name], 2000.0, bearing_fault_at=onset, step_s=60.0)
    days = [MONDAY + timedelta(days=d, hours=10, minutes=m) for d in range(28) for m in (0, 30)]
    pairs = [(healthy.advance(t), failing.advance(t)) for t in days]
    before = [(h, f) for h, f in pairs if h.at < onset]
    assert all(h == f for h, f in before)  # identical until the onset
    running = [(h, f) for h, f in pairs if h.at >= onset and h.running]
    ratios = [f.vibration_rms / h.vibration_rms for h, f in running]
    assert all(b > a * 0.99 for a, b in itertools.pairwise(ratios))  # only worse (up to a cap)
    assert ratios[0] < 1.2  # a trend at first ...
    assert ratios[-1] > 4.0  # ... then a spike
    assert running[-1][1].bearing_damage > running[0][1].bearing_damage


@each_type
def test_same_seed_same_states_different_seed_different_states(name: str) -> None:
    times = [MONDAY + timedelta(hours=5, minutes=7 * i) for i in range(150)]
    first, again, other = (AssetModel(s, PROFILES[name]) for s in (42, 42, 43))
    states = [first.advance(t) for t in times]
    assert states == [again.advance(t) for t in times]
    assert states != [other.advance(t) for t in times]


@each_type
def test_state_does_not_depend_on_how_often_it_was_asked(name: str) -> None:
    often, once = (AssetModel(9, PROFILES[name], 7.0) for _ in range(2))
    end = MONDAY + timedelta(hours=13, seconds=17.5)
    once.advance(MONDAY)
    _walk(often, MONDAY, 13, 37.0)
    assert often.advance(end) == once.advance(end)


def test_the_controller_clock_is_whole_unix_seconds() -> None:
    model = AssetModel(1, TRUCK_PROFILE)
    at = MONDAY + timedelta(seconds=12.75)
    assert model.advance(at).values()[CLOCK_METRIC] == math.floor(at.timestamp())
    assert model.advance(at - timedelta(hours=1)).at == at  # never runs backwards


@pytest.mark.parametrize(
    ("name", "metric", "code"),
    [("truck", "coolant_temp", 110), ("cnc", "spindle_temp", 2001), ("compressor", None, 1)],
)
def test_overheating_raises_the_fault_code(name: str, metric: str | None, code: int) -> None:
    hot = _steady(name, temp_rise_c=(150.0, 150.0))
    states = _walk(AssetModel(2, hot, calendar=ALWAYS_ON), MONDAY, 3, 60.0)
    assert states[0].readings["fault_code"] == 0
    assert states[-1].readings["fault_code"] == code


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AssetModel(1, CNC_PROFILE).advance(datetime(2026, 1, 5))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        AssetModel(1, CNC_PROFILE, bearing_fault_at=datetime(2026, 1, 5))  # noqa: DTZ001
