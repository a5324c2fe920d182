"""Machine models: duty cycle, run-hour meter, thermal lag, determinism; the held machine."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, time, timedelta

import pytest

from firmware_sim.machine import DutyCycle, HeldMachine, MachineModel, MachineState
from firmware_sim.register_map import MACHINE_MAP, encode_registers

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC
ALWAYS_ON = DutyCycle(
    shift_start=time(0, 0),
    shift_end=time(23, 59, 59),
    workdays=frozenset(range(7)),
    stop_probability=0.0,
)


def _walk(model: MachineModel, start: datetime, hours: float, step_s: float) -> list[MachineState]:
    """States every `step_s` seconds from `start` for `hours`."""
    steps = round(hours * 3600 / step_s)
    return [model.advance(start + timedelta(seconds=i * step_s)) for i in range(steps + 1)]


def test_run_hours_grow_only_while_running() -> None:
    states = _walk(MachineModel(seed=3, initial_run_hours=500.0), MONDAY, 24, 10.0)
    for before, after in itertools.pairwise(states):
        grown = after.run_hours - before.run_hours
        assert grown == pytest.approx(10 / 3600 if before.running else 0.0, abs=1e-9)
    ran = states[-1].run_hours - 500.0
    assert 13.0 < ran < 16.0  # a 16 h shift minus short random stops
    assert any(not s.running for s in states if time(6) <= s.at.time() < time(22))  # stops happen


def test_no_running_at_night_or_on_weekends() -> None:
    model = MachineModel(seed=3, initial_run_hours=100.0)
    weekend = _walk(model, MONDAY - timedelta(days=2), 48, 60.0)
    night = _walk(model, MONDAY, 5.99, 60.0)
    assert not any(s.running for s in weekend + night)
    assert weekend[-1].run_hours == night[-1].run_hours == 100.0
    assert all(s.motor_current < 0.3 and s.vibration_rms < 0.2 for s in night)


def test_readings_follow_load_while_running() -> None:
    states = [
        s for s in _walk(MachineModel(seed=11), MONDAY + timedelta(hours=6), 16, 30.0) if s.running
    ]
    assert len(states) > 1000
    currents = [s.motor_current for s in states]
    assert min(currents) >= 8.0
    assert max(currents) <= 25.0
    assert max(currents) - min(currents) > 8.0  # the load varies
    assert all(2.0 < s.vibration_rms < 5.0 for s in states)
    assert all(s.fault_code == 0 for s in states)


def test_thermal_lag_is_first_order() -> None:
    tau = 900.0
    model = MachineModel(seed=1, duty=ALWAYS_ON, current_range=(20.0, 20.0), thermal_tau_s=tau)
    target = 18.0 + 1.6 * 20.0
    for state in _walk(model, MONDAY, 2, 60.0):
        elapsed = (state.at - MONDAY).total_seconds()
        expected = target - (target - 18.0) * math.exp(-elapsed / tau)
        assert state.temperature == pytest.approx(expected, abs=1e-9)


def test_temperature_lags_a_shift_start_and_cools_after() -> None:
    model = MachineModel(seed=5)
    model.advance(MONDAY)
    cold = model.advance(MONDAY + timedelta(hours=6))
    just_started = model.advance(MONDAY + timedelta(hours=6, minutes=1))
    warm = model.advance(MONDAY + timedelta(hours=9))
    cooled = model.advance(MONDAY + timedelta(hours=23, minutes=30))
    assert cold.temperature == pytest.approx(18.32, abs=0.01)  # ambient + idle rise
    assert just_started.temperature < cold.temperature + 2.0
    assert warm.temperature > 35.0
    assert cooled.temperature < 25.0


def test_same_seed_same_states_different_seed_different_states() -> None:
    times = [MONDAY + timedelta(minutes=7 * i) for i in range(500)]
    first, again, other = MachineModel(seed=42), MachineModel(seed=42), MachineModel(seed=43)
    states = [first.advance(t) for t in times]
    assert states == [again.advance(t) for t in times]
    assert states != [other.advance(t) for t in times]


def test_state_does_not_depend_on_how_often_it_was_asked() -> None:
    often, once = (
        MachineModel(seed=9, initial_run_hours=7.0),
        MachineModel(seed=9, initial_run_hours=7.0),
    )
    end = MONDAY + timedelta(hours=13, seconds=17.5)
    once.advance(MONDAY)
    _walk(often, MONDAY, 13, 37.0)
    assert often.advance(end) == once.advance(end)


def test_time_never_runs_backwards() -> None:
    model = MachineModel(seed=2)
    late = model.advance(MONDAY + timedelta(hours=10))
    assert model.advance(MONDAY + timedelta(hours=9)) == late


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MachineModel(seed=1).advance(datetime(2026, 1, 5))  # noqa: DTZ001


def test_model_states_fit_the_register_map() -> None:
    states = _walk(MachineModel(seed=8, initial_run_hours=14_000.0), MONDAY, 24, 120.0)
    for state in states:
        assert len(encode_registers(state.values(), MACHINE_MAP)) == 7


def test_held_machine_returns_what_was_set() -> None:
    machine = HeldMachine(motor_current=1.0)
    machine.set(running=True, temperature=42.5, run_hours=12.0)
    state = machine.advance(MONDAY)
    assert state == MachineState(
        at=MONDAY,
        running=True,
        motor_current=1.0,
        temperature=42.5,
        vibration_rms=0.0,
        run_hours=12.0,
    )
    machine.set(running=False)
    assert machine.advance(MONDAY).values() == {
        "running": 0.0,
        "motor_current": 1.0,
        "temperature": 42.5,
        "vibration_rms": 0.0,
        "run_hours": 12.0,
        "fault_code": 0.0,
    }
