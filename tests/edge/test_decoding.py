"""Register decoding and request planning: golden cases, no I/O."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.decoding import RegisterField, decode_field, decode_request, plan_requests


def _words(fmt: str, value: float) -> list[int]:
    raw = struct.pack(fmt, value)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


@pytest.mark.parametrize(
    ("field", "registers", "expected"),
    [
        (RegisterField(metric="running", address=0), [1], 1.0),
        (RegisterField(metric="current", address=1, scale=0.01), [1234], 12.34),
        (RegisterField(metric="temp", address=2, kind="i16", scale=0.1), [0xFF9C], -10.0),
        (
            RegisterField(metric="hours", address=4, kind="u32", scale=0.001),
            [0x0001, 0x0000],
            65.536,
        ),
        (
            RegisterField(metric="hours", address=4, kind="u32", word_order="little"),
            [0x0000, 0x0001],
            65536.0,
        ),
        (RegisterField(metric="t", address=0, kind="i32"), [0xFFFF, 0xFFFE], -2.0),
        (RegisterField(metric="t", address=0, kind="f32"), _words(">f", 21.5), 21.5),
        (RegisterField(metric="t", address=0, kind="u16", byte_order="little"), [0x3412], 0x1234),
        (RegisterField(metric="t", address=0, scale=2.0, offset=-40.0), [30], 20.0),
    ],
)
def test_golden_decodings(field: RegisterField, registers: list[int], expected: float) -> None:
    assert decode_field(field, registers) == pytest.approx(expected)


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float32_round_trips(value: float) -> None:
    field = RegisterField(metric="x", address=0, kind="f32")
    assert decode_field(field, _words(">f", value)) == value


def test_wrong_register_count_is_an_error_not_a_value() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_field(RegisterField(metric="x", address=0, kind="u32"), [1])


def test_contiguous_fields_are_read_in_one_request() -> None:
    fields = [
        RegisterField(metric="a", address=0),
        RegisterField(metric="b", address=1),
        RegisterField(metric="c", address=4, kind="u32"),
        RegisterField(metric="d", address=6),
    ]
    (request,) = plan_requests(fields)
    assert (request.table, request.start, request.count) == ("holding", 0, 7)
    values = decode_request(request, [1, 2, 0, 0, 0, 5, 9])
    assert values == {"a": 1.0, "b": 2.0, "c": 5.0, "d": 9.0}


def test_requests_split_on_gaps_tables_and_size() -> None:
    fields = [
        RegisterField(metric="a", address=0),
        RegisterField(metric="b", address=100),
        RegisterField(metric="c", address=0, table="input"),
        RegisterField(metric="d", address=200),
        RegisterField(metric="e", address=320),
    ]
    plan = [(r.table, r.start, r.count) for r in plan_requests(fields, max_gap=8)]
    assert plan == [
        ("holding", 0, 1),
        ("holding", 100, 1),
        ("holding", 200, 1),
        ("holding", 320, 1),
        ("input", 0, 1),
    ]
    wide = [RegisterField(metric="x", address=0), RegisterField(metric="y", address=124)]
    assert len(plan_requests(wide, max_gap=200)) == 1
    wider = [RegisterField(metric="x", address=0), RegisterField(metric="y", address=125)]
    assert len(plan_requests(wider, max_gap=200)) == 2


@given(st.integers(min_value=0, max_value=65535))
def test_scaled_integers_come_out_at_register_resolution(raw: int) -> None:
    field = RegisterField(metric="current", address=0, scale=0.01)
    assert decode_field(field, [raw]) == int(raw) / 100
    assert repr(decode_field(field, [1234])) == "12.34"


def test_coils_and_discrete_inputs_are_bits() -> None:
    coil = RegisterField.model_validate({"metric": "pump", "address": 3, "table": "coil"})
    assert (coil.kind, coil.width) == ("bit", 1)
    assert decode_field(coil, [1]) == 1.0
    assert decode_field(coil, [0]) == 0.0
    inverted = RegisterField(metric="closed", address=0, table="discrete", scale=-1, offset=1)
    assert decode_field(inverted, [1]) == 0.0


def test_bit_requests_span_up_to_2000_bits_and_never_mix_tables() -> None:
    fields = [
        RegisterField.model_validate({"metric": "a", "address": 0, "table": "coil"}),
        RegisterField.model_validate({"metric": "b", "address": 1999, "table": "coil"}),
        RegisterField.model_validate({"metric": "c", "address": 2000, "table": "coil"}),
        RegisterField.model_validate({"metric": "d", "address": 0, "table": "discrete"}),
    ]
    plan = [(r.table, r.start, r.count, r.function_code) for r in plan_requests(fields, 5000)]
    assert plan == [("coil", 0, 2000, 1), ("coil", 2000, 1, 1), ("discrete", 0, 1, 2)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"table": "holding", "kind": "bit"}, 'kind "bit" goes with tables coil and discrete'),
        ({"table": "coil", "kind": "u16"}, 'kind "bit" goes with tables coil and discrete'),
        ({"address": 65535, "kind": "f32"}, "ends past 65535"),
        ({"scale": 0.0}, "scale must be finite and non-zero"),
        ({"offset": float("inf")}, "offset finite"),
    ],
)
def test_impossible_fields_are_refused(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegisterField.model_validate({"metric": "x", "address": 0, **spec})
