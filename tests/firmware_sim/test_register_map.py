"""Register map: engineering values <-> registers, golden cases and round trips, no I/O."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.register_map import (
    CLOCK_METRIC,
    CNC_MAP,
    COMPRESSOR_MAP,
    EXCAVATOR_MAP,
    MACHINE_MAP,
    TRUCK_MAP,
    Kind,
    RegisterField,
    RegisterMap,
    WordOrder,
    encode_registers,
    held_values,
)

HELD = {
    "running": 1,
    "motor_current": 12.34,
    "temperature": -5.5,
    "vibration_rms": 3.21,
    "run_hours": 1234.567,
    "fault_code": 0,
}
HELD_REGISTERS = [1, 1234, 0xFFC9, 321, 0x0012, 0xD687, 0]  # 1234567 = 0x0012_D687


def test_machine_map_layout() -> None:
    assert MACHINE_MAP.function_code == 3
    assert (MACHINE_MAP.start, MACHINE_MAP.count) == (0, 7)
    assert MACHINE_MAP.metrics == (
        "running",
        "motor_current",
        "temperature",
        "vibration_rms",
        "run_hours",
        "fault_code",
    )
    run_hours = MACHINE_MAP.field("run_hours")
    assert (run_hours.address, run_hours.width, run_hours.word_order) == (4, 2, WordOrder.BIG)
    assert MACHINE_MAP.field("temperature").unit == "degC"


def test_encode_golden() -> None:
    assert encode_registers(HELD) == HELD_REGISTERS


def test_held_values_golden() -> None:
    assert held_values(HELD_REGISTERS) == HELD


@pytest.mark.parametrize(
    ("values", "registers"),
    [
        ({"motor_current": 0.0, "temperature": 0.0, "run_hours": 0.0}, [0, 0, 0, 0, 0, 0, 0]),
        ({"motor_current": 655.35, "temperature": 3276.7}, [0, 65535, 32767, 0, 0, 0, 0]),
        ({"temperature": -3276.8, "run_hours": 4294967.295}, [0, 0, 0x8000, 0, 65535, 65535, 0]),
        ({"motor_current": 0.204, "temperature": 21.96}, [0, 20, 220, 0, 0, 0, 0]),  # rounds
        ({"run_hours": 65.536, "fault_code": 7}, [0, 0, 0, 0, 1, 0, 7]),
    ],
)
def test_encode_edges_and_rounding(values: dict[str, float], registers: list[int]) -> None:
    complete = dict.fromkeys(MACHINE_MAP.metrics, 0.0) | values
    assert encode_registers(complete) == registers


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("motor_current", -0.01),
        ("motor_current", 655.36),
        ("temperature", 3276.8),
        ("temperature", -3276.9),
        ("run_hours", 4294967.296),
        ("running", 2**16),
        ("vibration_rms", math.nan),
        ("run_hours", math.inf),
    ],
)
def test_out_of_range_raises_with_field_name(metric: str, value: float) -> None:
    values = dict.fromkeys(MACHINE_MAP.metrics, 0.0) | {metric: value}
    with pytest.raises(ValueError, match=metric):
        encode_registers(values)


def test_missing_and_unknown_metrics_are_refused() -> None:
    with pytest.raises(ValueError, match=r"missing metrics \['fault_code'\]"):
        encode_registers({k: v for k, v in HELD.items() if k != "fault_code"})
    with pytest.raises(ValueError, match=r"unknown metrics \['rpm'\]"):
        encode_registers(HELD | {"rpm": 1500.0})


def test_wrong_register_count_and_values_are_refused() -> None:
    with pytest.raises(ValueError, match="needs 7 registers"):
        held_values(HELD_REGISTERS[:6])
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        held_values([*HELD_REGISTERS[:6], 65536])


@pytest.mark.parametrize(
    ("field", "value", "registers"),
    [
        (
            RegisterField("x", 0, Kind.U32, word_order=WordOrder.LITTLE),
            0x12345678,
            [0x5678, 0x1234],
        ),
        (RegisterField("x", 0, Kind.I32), -2, [0xFFFF, 0xFFFE]),
        (RegisterField("x", 0, Kind.I32, word_order=WordOrder.LITTLE), -2, [0xFFFE, 0xFFFF]),
        (RegisterField("x", 0, Kind.F32), 1.5, [0x3FC0, 0x0000]),
        (RegisterField("x", 0, Kind.F32, word_order=WordOrder.LITTLE), -2.0, [0x0000, 0xC000]),
        (RegisterField("x", 0, Kind.I16, scale=10.0), -120.0, [0xFFF4]),
    ],
)
def test_other_kinds_and_word_orders(
    field: RegisterField, value: float, registers: list[int]
) -> None:
    assert field.encode(value) == registers
    assert field.decode(registers) == value


def test_f32_overflow_raises() -> None:
    with pytest.raises(ValueError, match="pressure"):
        RegisterField("pressure", 0, Kind.F32).encode(1e39)


def test_invalid_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        RegisterMap("m", (RegisterField("a", 0, Kind.U32), RegisterField("b", 1, Kind.U16)))
    with pytest.raises(ValueError, match="duplicate"):
        RegisterMap("m", (RegisterField("a", 0, Kind.U16), RegisterField("a", 1, Kind.U16)))
    with pytest.raises(ValueError, match="address"):
        RegisterField("a", 65535, Kind.U32)
    with pytest.raises(ValueError, match="scale"):
        RegisterField("a", 0, Kind.U16, scale=0.0)


def test_gaps_in_a_map_hold_zero() -> None:
    sparse = RegisterMap(
        "sparse", (RegisterField("a", 10, Kind.U16), RegisterField("b", 13, Kind.I16))
    )
    assert (sparse.start, sparse.count) == (10, 4)
    assert encode_registers({"a": 5, "b": -1}, sparse) == [5, 0, 0, 0xFFFF]
    assert held_values([5, 9, 9, 0xFFFF], sparse) == {"a": 5, "b": -1}


@given(st.lists(st.integers(0, 0xFFFF), min_size=7, max_size=7))
def test_any_registers_round_trip_through_values(registers: list[int]) -> None:
    assert encode_registers(held_values(registers)) == registers


def _in_range(field: RegisterField) -> st.SearchStrategy[float]:
    """Engineering values the field can hold (raw range times scale)."""
    bits = 16 * field.width
    low, high = (
        (0, 2**bits - 1)
        if field.kind in {Kind.U16, Kind.U32}
        else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    return st.floats(low * field.scale, high * field.scale, allow_nan=False)


@given(st.fixed_dictionaries({f.metric: _in_range(f) for f in MACHINE_MAP.fields}))
def test_any_values_in_range_are_held_to_the_register_resolution(values: dict[str, float]) -> None:
    held = held_values(encode_registers(values))
    for f in MACHINE_MAP.fields:
        assert abs(held[f.metric] - values[f.metric]) <= f.scale / 2 + 1e-9 * abs(values[f.metric])
        assert f.decode(f.encode(held[f.metric])) == held[f.metric]


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from(WordOrder))
def test_f32_registers_round_trip(high: int, low: int, order: WordOrder) -> None:
    field = RegisterField("x", 0, Kind.F32, word_order=order)
    value = field.decode([high, low])
    if math.isfinite(value):
        assert field.encode(value) == [high, low]


ASSET_MAPS = [TRUCK_MAP, EXCAVATOR_MAP, CNC_MAP, COMPRESSOR_MAP]


@pytest.mark.parametrize(
    ("register_map", "start", "count"),
    [(TRUCK_MAP, 0, 11), (EXCAVATOR_MAP, 100, 9), (CNC_MAP, 200, 11), (COMPRESSOR_MAP, 1000, 12)],
)
def test_asset_maps_are_contiguous_blocks_with_a_fault_code_and_a_clock(
    register_map: RegisterMap, start: int, count: int
) -> None:
    assert (register_map.function_code, register_map.start, register_map.count) == (3, start, count)
    assert sum(f.width for f in register_map.fields) == count  # no gaps
    assert register_map.field("fault_code").kind is Kind.U16
    clock = register_map.field(CLOCK_METRIC)
    assert (clock.kind, clock.scale, clock.unit) == (Kind.U32, 1.0, "s")


@pytest.mark.parametrize(
    ("field", "full_scale"),
    [
        (RegisterField("x", 0, Kind.U16, scale=0.1), 6553.5),
        (RegisterField("x", 0, Kind.I16, scale=0.1), 3276.7),
        (RegisterField("x", 0, Kind.U32, scale=0.01), 42949672.95),
        (RegisterField("x", 0, Kind.I32), 2147483647),
        (RegisterField("x", 0, Kind.U16, scale=0.125), 8191.875),
    ],
)
def test_full_scale_is_the_largest_value_a_field_holds(
    field: RegisterField, full_scale: float
) -> None:
    assert field.full_scale == full_scale
    assert field.decode(field.encode(full_scale)) == full_scale


def test_f32_full_scale_is_the_largest_finite_float() -> None:
    field = RegisterField("x", 0, Kind.F32)
    assert field.encode(field.full_scale) == [0x7F7F, 0xFFFF]


@pytest.mark.parametrize("register_map", ASSET_MAPS, ids=lambda m: m.name)
@given(data=st.data())
def test_any_registers_of_an_asset_map_round_trip(
    register_map: RegisterMap, data: st.DataObject
) -> None:
    registers = data.draw(
        st.lists(st.integers(0, 0xFFFF), min_size=register_map.count, max_size=register_map.count)
    )
    values = held_values(registers, register_map)
    if all(math.isfinite(v) for v in values.values()):  # f32 NaN/inf patterns are not values
        assert encode_registers(values, register_map) == registers
