"""Rollups and detection's open minutes sum readings exactly as the definitions say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.detection.stream import StreamState, fold_batch, to_us
from cloud.rollups import RESOLUTIONS_S, BucketKey, aggregate
from leasewatch.wire import Reading, TelemetryBatch

T0 = datetime(2026, 12, 1, 7, 58, 30, tzinfo=UTC)

readings_strategy = st.lists(
    st.tuples(
        st.sampled_from(["motor", "band"]),
        st.sampled_from(["current", "temp", "fault_code"]),
        st.integers(min_value=0, max_value=4 * 3600 * 1000),  # ms after T0
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


def _batches(raw: list[tuple[str, str, int, float]], per_message: int = 7) -> list[TelemetryBatch]:
    readings = [
        Reading(sensor=s, metric=m, ts=T0 + timedelta(milliseconds=ms), value=v, unit=m[:1])
        for s, m, ms, v in raw
    ]
    return [
        TelemetryBatch(
            device=f"gw-{i % 2}",
            boot="b",
            seq=i,
            sent_at=T0,
            readings=readings[j : j + per_message],
        )
        for i, j in enumerate(range(0, len(readings), per_message))
    ]


def _naive_rollups(batches: list[TelemetryBatch]) -> dict[BucketKey, list[float]]:
    """What each bucket holds, summing reading by reading (the definition)."""
    acc: dict[BucketKey, list[float]] = {}
    for batch in batches:
        for r in batch.readings:
            epoch = int(r.ts.timestamp())
            for res in RESOLUTIONS_S:
                key = (batch.device, r.sensor, r.metric, res, epoch - epoch % res)
                slot = acc.setdefault(key, [0, 0.0, r.value, r.value])
                slot[0] += 1
                slot[1] += r.value
                slot[2], slot[3] = min(slot[2], r.value), max(slot[3], r.value)
    return acc


@settings(max_examples=150, deadline=None)
@given(readings_strategy)
def test_rollups_equal_summing_reading_by_reading(
    raw: list[tuple[str, str, int, float]],
) -> None:
    batches = _batches(raw)
    found = aggregate(batches).slots
    expected = _naive_rollups(batches)
    assert found.keys() == expected.keys()
    for key, (n, total, low, high) in expected.items():
        got = found[key]
        assert (got[0], got[2], got[3]) == (n, low, high)
        assert abs(got[1] - total) <= 1e-6 * max(1.0, abs(total))


@settings(max_examples=150, deadline=None)
@given(readings_strategy, st.integers(min_value=-1, max_value=240))
def test_detection_fold_counts_late_and_sums_open_minutes(
    raw: list[tuple[str, str, int, float]], closed_minutes: int
) -> None:
    batch = _batches(raw, per_message=len(raw))[0]
    state = StreamState()
    floor = T0.replace(second=0) + timedelta(minutes=closed_minutes)
    if closed_minutes >= 0:
        state.closed["live"] = to_us(floor) // 1_000_000  # minute starts in epoch seconds
    fold_batch(state, batch, T0)

    late = [
        r for r in batch.readings if closed_minutes >= 0 and r.ts < floor + timedelta(minutes=1)
    ]
    taken = [r for r in batch.readings if r not in late]
    assert state.late == len(late)
    assert state.last_live_at == to_us(max(r.ts for r in batch.readings))
    newest_taken = max((r.ts for r in taken), default=None)
    assert state.high.get("live") == (None if newest_taken is None else to_us(newest_taken))
    open_counts = {
        (minute, metric): sums[0]
        for minute, partial in state.open.get("live", {}).items()
        for metric, sums in partial.sums().items()
    }
    expected: dict[tuple[int, str], int] = {}
    for r in taken:
        key = (to_us(r.ts.replace(second=0, microsecond=0)) // 1_000_000, r.metric)
        expected[key] = expected.get(key, 0) + 1
    assert open_counts == expected
