"""FaultSwitch and fault specs: switching, counting, probabilities, value and byte faults."""

from __future__ import annotations

import pytest

from firmware_sim.faults import Fault, FaultSetting, FaultSwitch, parse_fault
from firmware_sim.register_map import MACHINE_MAP, TRUCK_MAP

TRUCK_VALUES = {
    "engine_rpm": 1200.0,
    "vehicle_speed": 80.0,
    "coolant_temp": 90.0,
    "fuel_level": 50.0,
    "engine_hours": 1000.0,
    "odometer": 42_000.0,
    "fault_code": 0.0,
    "controller_time": 1_767_600_000.0,
}
FRAME = bytes.fromhex("010302002a399b")  # unit 1, fc 3, one register (42), CRC


def test_a_fault_fires_while_set_and_is_counted() -> None:
    switch = FaultSwitch(TRUCK_MAP)
    assert not switch.fires(Fault.TIMEOUT)
    switch.set(Fault.TIMEOUT)
    assert switch.active == {Fault.TIMEOUT: FaultSetting(Fault.TIMEOUT)}
    assert [switch.fires(Fault.TIMEOUT) for _ in range(3)] == [True] * 3
    switch.clear(Fault.TIMEOUT)
    assert not switch.fires(Fault.TIMEOUT)
    assert switch.injected == {Fault.TIMEOUT: 3}
    switch.set("crc")
    switch.set("garbage")
    switch.clear()
    assert switch.active == {}
    assert switch.injected == {Fault.TIMEOUT: 3}  # clearing keeps the counts


def test_a_probability_fires_that_share_of_requests_the_same_way_each_run() -> None:
    def draws(seed: int) -> list[bool]:
        switch = FaultSwitch(TRUCK_MAP, seed=seed)
        switch.set(Fault.CRC, probability=0.25)
        return [switch.fires(Fault.CRC) for _ in range(2000)]

    fired = draws(1)
    assert 400 < sum(fired) < 600
    assert fired == draws(1)
    assert fired != draws(2)


def test_stuck_freezes_what_the_next_read_holds() -> None:
    switch = FaultSwitch(TRUCK_MAP)
    switch.set(Fault.STUCK, metric="coolant_temp")
    first, applied = switch.distort(TRUCK_VALUES)
    later, _ = switch.distort(TRUCK_VALUES | {"coolant_temp": 95.0, "engine_rpm": 900.0})
    assert applied == (Fault.STUCK,)
    assert first["coolant_temp"] == later["coolant_temp"] == 90.0
    assert later["engine_rpm"] == 900.0
    switch.clear(Fault.STUCK)
    assert switch.distort(TRUCK_VALUES | {"coolant_temp": 95.0}) == (
        TRUCK_VALUES | {"coolant_temp": 95.0},
        (),
    )


def test_stuck_without_a_metric_freezes_the_whole_device() -> None:
    switch = FaultSwitch(TRUCK_MAP)
    switch.set(Fault.STUCK)
    switch.distort(TRUCK_VALUES)
    moved = {k: v + 1.0 for k, v in TRUCK_VALUES.items()}
    assert switch.distort(moved)[0] == TRUCK_VALUES


def test_out_of_range_reports_full_scale_or_the_given_value() -> None:
    switch = FaultSwitch(TRUCK_MAP)
    switch.set(Fault.OUT_OF_RANGE, metric="coolant_temp")
    assert switch.distort(TRUCK_VALUES)[0]["coolant_temp"] == 3276.7
    switch.set(Fault.OUT_OF_RANGE, metric="fuel_level", value=0.0)
    values, applied = switch.distort(TRUCK_VALUES)
    assert values == TRUCK_VALUES | {"fuel_level": 0.0}
    assert applied == (Fault.OUT_OF_RANGE,)


def test_clock_skew_shifts_the_controller_clock() -> None:
    switch = FaultSwitch(TRUCK_MAP)
    switch.set(Fault.CLOCK_SKEW, value=-300)
    values, applied = switch.distort(TRUCK_VALUES)
    assert values == TRUCK_VALUES | {"controller_time": 1_767_600_000.0 - 300}
    assert applied == (Fault.CLOCK_SKEW,)
    assert switch.injected == {Fault.CLOCK_SKEW: 1}


def test_crc_inverts_the_checksum_and_garbage_comes_first() -> None:
    switch = FaultSwitch(TRUCK_MAP, seed=3)
    switch.set(Fault.CRC)
    assert switch.corrupt(FRAME) == (FRAME[:-2] + bytes([0x39 ^ 0xFF, 0x9B ^ 0xFF]), (Fault.CRC,))
    switch.clear()
    switch.set(Fault.GARBAGE, value=6)
    noisy, applied = switch.corrupt(FRAME)
    assert (len(noisy), noisy[6:], applied) == (len(FRAME) + 6, FRAME, (Fault.GARBAGE,))
    switch.set(Fault.GARBAGE)
    assert 4 <= len(switch.corrupt(FRAME)[0]) - len(FRAME) <= 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fault": "flood"}, "not a valid Fault"),
        ({"fault": Fault.TIMEOUT, "probability": 0.0}, "probability"),
        ({"fault": Fault.TIMEOUT, "probability": 1.5}, "probability"),
        ({"fault": Fault.STUCK, "probability": 0.5}, "a state, not an event"),
        ({"fault": Fault.OUT_OF_RANGE}, "needs a metric"),
        ({"fault": Fault.CRC, "metric": "coolant_temp"}, "whole device"),
        ({"fault": Fault.CLOCK_SKEW}, "skew in seconds"),
        ({"fault": Fault.GARBAGE, "value": 0}, "1..256 bytes"),
        ({"fault": Fault.STUCK, "metric": "rpm"}, "no metric 'rpm'"),
        ({"fault": Fault.OUT_OF_RANGE, "metric": "fuel_level", "value": -1.0}, "fuel_level"),
    ],
)
def test_meaningless_faults_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultSwitch(TRUCK_MAP).set(**kwargs)  # type: ignore[arg-type]


def test_clock_skew_needs_a_clock_register() -> None:
    with pytest.raises(ValueError, match="no controller_time register"):
        FaultSwitch(MACHINE_MAP).set(Fault.CLOCK_SKEW, value=60)


@pytest.mark.parametrize(
    ("spec", "asset", "setting"),
    [
        ("asset-003=timeout", "asset-003", FaultSetting(Fault.TIMEOUT)),
        ("asset-001=crc@0.2", "asset-001", FaultSetting(Fault.CRC, probability=0.2)),
        ("asset-002=garbage:8", "asset-002", FaultSetting(Fault.GARBAGE, value=8)),
        ("a=illegal-address", "a", FaultSetting(Fault.ILLEGAL_ADDRESS)),
        ("a=stuck", "a", FaultSetting(Fault.STUCK)),
        ("a=stuck:coolant_temp", "a", FaultSetting(Fault.STUCK, metric="coolant_temp")),
        (
            "a=out-of-range:coolant_temp:-40",
            "a",
            FaultSetting(Fault.OUT_OF_RANGE, metric="coolant_temp", value=-40.0),
        ),
        ("a=clock-skew:-300", "a", FaultSetting(Fault.CLOCK_SKEW, value=-300.0)),
    ],
)
def test_fault_specs_parse(spec: str, asset: str, setting: FaultSetting) -> None:
    assert parse_fault(spec) == (asset, setting)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timeout", "expected ASSET=FAULT"),
        ("asset-001=", "expected ASSET=FAULT"),
        ("asset-001=flood", "unknown fault 'flood'; known: timeout, illegal-address"),
        ("asset-001=crc@often", "probability 'often'"),
        ("asset-001=clock-skew:soon", "'soon' is not a number"),
        ("asset-001=clock-skew", "skew in seconds"),
        ("asset-001=out-of-range", "needs a metric"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(spec)
