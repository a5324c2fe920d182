"""The stream state's JSON (format 2): exact round trips, format 1 rows, (boot, seq) ranges."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.detection.stream import (
    MAX_BOOTS,
    MAX_RANGES,
    StreamState,
    close_minutes,
    fold_batch,
    fold_status,
    take_seq,
    to_us,
)
from cloud.detectors.inputs import MinuteSample
from leasewatch.wire import GatewayStatus, Reading, TelemetryBatch

T0 = datetime(2026, 12, 1, 7, 58, 30, tzinfo=UTC)
LAG, IDLE = timedelta(seconds=2), timedelta(seconds=90)


def _batch(
    seq: int, readings: list[tuple[str, int, float]], *, historical: bool = False
) -> TelemetryBatch:
    return TelemetryBatch(
        device="gw-1", boot="b", seq=seq, sent_at=T0, historical=historical,
        readings=[
            Reading(sensor="plc", metric=m, ts=T0 + timedelta(milliseconds=ms), value=v)
            for m, ms, v in readings
        ],
    )  # fmt: skip


def _closed_all(state: StreamState) -> list[MinuteSample]:
    wall = T0 + timedelta(days=1)  # everything idle by then
    return [
        *close_minutes(state, "replay", wall, LAG, IDLE),
        *close_minutes(state, "live", wall, LAG, IDLE),
    ]


def _fields(state: StreamState) -> dict[str, object]:
    found: dict[str, object] = {name: getattr(state, name) for name in StreamState.__slots__}
    found["open"] = {
        lane: {m: (p.touched, p.metrics) for m, p in minutes.items()}
        for lane, minutes in state.open.items()
    }
    return found


readings_strategy = st.lists(
    st.tuples(
        st.sampled_from(["running", "temp", "fault_code", "lat"]),
        st.integers(min_value=0, max_value=3 * 60 * 1000),  # ms after T0
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(readings_strategy, min_size=1, max_size=4), st.booleans())
def test_a_state_read_back_from_its_json_folds_and_closes_the_same(
    batches: list[list[tuple[str, int, float]]], historical: bool
) -> None:
    state = StreamState()
    fold_status(state, GatewayStatus(device="gw-1", boot="b", state="online", ts=T0))
    for seq, readings in enumerate(batches[:-1]):
        take_seq(state, "b", seq)
        fold_batch(state, _batch(seq, readings, historical=historical), T0 + timedelta(seconds=seq))
    text = state.to_json()
    again = StreamState.from_json(text)
    assert again.to_json() == text
    assert _fields(again) == _fields(state)
    last = _batch(len(batches), batches[-1], historical=historical)
    for s in (state, again):
        fold_batch(s, last, T0 + timedelta(minutes=1))
    assert _closed_all(again) == _closed_all(state)


def test_format_1_rows_load_as_the_same_state() -> None:
    """A row written before format 2 (the pydantic model: ISO times, minutes as ISO keys)."""
    text = (
        '{"version":1,"seen":{"b-0":[[0,11],[13,13]]},"boots":["b-0"],'
        '"open":{"live":{"2026-11-04T00:59:00+00:00":{"touched":"2026-11-04T01:00:01.500000Z",'
        '"metrics":{"temperature":[2,24.5,12.5],"fault_code":[2,3.0,3.0]}}}},'
        '"high":{"live":"2026-11-04T00:59:30.250Z"},"closed":{"live":"2026-11-04T00:58:00Z"},'
        '"status":["online","2026-11-04T00:00:00Z","b-0"],"last_live_at":"2026-11-04T00:59:30.250Z",'
        '"boot":"b-0","health_at":null,"duplicates":2,"late":1,"sweep_day":"2026-11-03"}'
    )
    state = StreamState.from_json(text)
    minute = datetime(2026, 11, 4, 0, 59, tzinfo=UTC)
    assert state.seen == {"b-0": [[0, 11], [13, 13]]}
    assert state.boots == ["b-0"]
    assert state.high == {"live": to_us(datetime(2026, 11, 4, 0, 59, 30, 250000, tzinfo=UTC))}
    assert state.closed == {"live": to_us(minute - timedelta(minutes=1)) // 1_000_000}
    assert state.status == ("online", to_us(datetime(2026, 11, 4, tzinfo=UTC)), "b-0")
    assert (state.duplicates, state.late, state.sweep_day) == (2, 1, "2026-11-03")
    assert take_seq(state, "b-0", 12) and not take_seq(state, "b-0", 5)
    assert state.seen == {"b-0": [[0, 13]]}
    # idle 90 s after it was last touched, and not before
    assert close_minutes(state, "live", minute + timedelta(seconds=151), LAG, IDLE) == []
    (sample,) = close_minutes(state, "live", minute + timedelta(seconds=151.5), LAG, IDLE)
    assert sample == MinuteSample(minute, {"temperature": 12.25, "fault_code": 3.0})
    assert StreamState.from_json("{}").to_json() == StreamState().to_json()


def test_a_sum_that_overflows_survives_the_round_trip() -> None:
    state = StreamState()
    fold_batch(state, _batch(0, [("temp", 0, 1.5e308), ("temp", 10, 1.5e308)]), T0)
    again = StreamState.from_json(state.to_json())
    (sample,) = _closed_all(again)
    assert sample.values["temp"] == math.inf


def _ranges_by_the_definition(seqs: list[int]) -> list[list[int]]:
    """Sort, merge adjacent ones, and merge the closest pair while there are too many."""
    merged: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if merged and seq <= merged[-1][1] + 1:
            merged[-1][1] = seq
        else:
            merged.append([seq, seq])
    return merged


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_seq_ranges_are_what_was_taken(seqs: list[int]) -> None:
    state = StreamState()
    seen: set[int] = set()
    for seq in seqs:
        assert take_seq(state, "b", seq) == (seq not in seen)
        seen.add(seq)
    assert state.seen.get("b", []) == _ranges_by_the_definition(seqs)
    assert state.duplicates == len(seqs) - len(seen)


def test_ranges_and_boots_stay_bounded() -> None:
    state = StreamState()
    for seq in range(0, 4 * MAX_RANGES, 2):  # every other seq: a gap after each
        take_seq(state, "b0", seq)
    assert len(state.seen["b0"]) == MAX_RANGES
    assert state.seen["b0"][0][0] == 0 and state.seen["b0"][-1][1] == 4 * MAX_RANGES - 2
    for boot in range(1, MAX_BOOTS + 2):
        take_seq(state, f"b{boot}", 0)
    assert state.boots == [f"b{b}" for b in range(2, MAX_BOOTS + 2)] == list(state.seen)
