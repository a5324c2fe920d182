"""One gateway's message stream as the detection worker sees it: seen messages, open minutes.

The state lives in the state store (detector_state row `_stream` of the device) and is changed
only under that row's lock, so any worker can take any message of any gateway:
- `seen`: per boot, the (boot, seq) ranges already taken; a redelivered message changes nothing.
- `open`: 1-minute partial sums per metric, per lane (live or replayed), exactly what the
  1-minute rollups would hold. A minute closes when a later reading of the same lane is at least
  `close_lag` past its end, or when nothing touched it for `idle_close` (the sweep); closed
  minutes become the detectors' `MinuteSample`s. A reading for a minute its lane already closed
  is late and counted, never fed twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from cloud.detectors.inputs import EventInput, MinuteSample, StatusInput
from leasewatch.wire import GatewayStatus, Reading, TelemetryBatch

STREAM = "_stream"  # detector_state row that is the gateway's lease and stream state
MAX_RANGES = 64  # seq ranges kept per boot; beyond, the closest ones merge (a gap counts seen)
MAX_BOOTS = 4
Lane = Literal["live", "replay"]


class Partial(BaseModel):
    """One open minute of one lane: count, sum and max per metric."""

    touched: datetime  # wall clock of the last contribution
    metrics: dict[str, tuple[int, float, float]] = Field(default_factory=dict)


class StreamState(BaseModel):
    """Everything the worker remembers about one gateway's stream."""

    version: Literal[1] = 1
    seen: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)  # boot -> ranges
    boots: list[str] = Field(default_factory=list)  # oldest first
    open: dict[Lane, dict[str, Partial]] = Field(default_factory=dict)  # lane -> minute -> sums
    high: dict[Lane, datetime] = Field(default_factory=dict)  # newest reading per lane
    closed: dict[Lane, datetime] = Field(default_factory=dict)  # newest closed minute per lane
    status: tuple[Literal["online", "offline"], datetime, str] | None = None
    last_live_at: datetime | None = None
    boot: str | None = None  # boot of the newest live message
    health_at: datetime | None = None
    duplicates: int = 0
    late: int = 0
    sweep_day: str | None = None  # the last UTC day utilization was evaluated for


@dataclass
class Closed:
    """What one fold closed: minutes and events per lane, ready for the detectors."""

    live: list[MinuteSample]
    replay: list[MinuteSample]
    live_events: list[EventInput]
    replay_events: list[EventInput]

    def __bool__(self) -> bool:
        """Whether anything is there for the detectors."""
        return bool(self.live or self.replay or self.live_events or self.replay_events)


def empty_closed() -> Closed:
    """Nothing closed."""
    return Closed([], [], [], [])


def take_seq(state: StreamState, boot: str, seq: int) -> bool:
    """Record (boot, seq); False when it was already taken (a redelivery or a duplicate)."""
    ranges = state.seen.setdefault(boot, [])
    for low, high in ranges:
        if low <= seq <= high:
            state.duplicates += 1
            return False
    ranges.append((seq, seq))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    while len(merged) > MAX_RANGES:
        gap = min(range(len(merged) - 1), key=lambda i: merged[i + 1][0] - merged[i][1])
        merged[gap : gap + 2] = [(merged[gap][0], merged[gap + 1][1])]
    state.seen[boot] = merged
    if boot not in state.boots:
        state.boots.append(boot)
        for old in state.boots[:-MAX_BOOTS]:
            state.seen.pop(old, None)
        state.boots = state.boots[-MAX_BOOTS:]
    return True


def fold_batch(state: StreamState, batch: TelemetryBatch, wall: datetime) -> list[EventInput]:
    """Add a batch's readings to its lane's open minutes; returns its events.

    The readings are summed per (minute, metric) in plain dicts first and merged into the
    state once per minute: the state model is touched per minute, not per reading.
    """
    lane: Lane = "replay" if batch.historical else "live"
    if batch.readings:
        sums, newest, accepted = _sum_minutes(state, lane, batch.readings)
        _merge_minutes(state, lane, sums, wall)
        if accepted is not None and (lane not in state.high or accepted > state.high[lane]):
            state.high[lane] = accepted
        if lane == "live" and (state.last_live_at is None or newest > state.last_live_at):
            state.last_live_at, state.boot = newest, batch.boot
    return [EventInput(e.ts, e.kind, e.sensor, e.detail) for e in batch.events]


_Sums = dict[int, dict[str, list[float]]]  # minute (epoch s) -> metric -> [count, sum, max]


def _sum_minutes(
    state: StreamState, lane: Lane, readings: Sequence[Reading]
) -> tuple[_Sums, datetime, datetime | None]:
    """Sums per minute of the readings its lane has not closed; newest reading, newest taken."""
    closed = state.closed.get(lane)
    floor = closed.timestamp() if closed is not None else -math.inf
    sums: _Sums = {}
    newest = readings[0].ts
    accepted: datetime | None = None
    for reading in readings:
        ts = reading.ts
        if ts > newest:  # noqa: PLR1730 - per reading: a max() call costs more
            newest = ts
        minute = int(ts.timestamp() // 60) * 60
        if minute <= floor:
            state.late += 1
            continue
        if accepted is None or ts > accepted:
            accepted = ts
        metrics = sums.setdefault(minute, {})
        value = reading.value
        acc = metrics.get(reading.metric)
        if acc is None:
            metrics[reading.metric] = [1, value, value]
        else:
            acc[0] += 1
            acc[1] += value
            if value > acc[2]:  # noqa: PLR1730 - per reading: a max() call costs more
                acc[2] = value
    return sums, newest, accepted


def _merge_minutes(state: StreamState, lane: Lane, sums: _Sums, wall: datetime) -> None:
    minutes = state.open.setdefault(lane, {})
    for minute, metrics in sums.items():
        key = datetime.fromtimestamp(minute, UTC).isoformat()
        partial = minutes.get(key)
        if partial is None:
            partial = minutes[key] = Partial(touched=wall)
        else:
            partial.touched = wall
        for metric, (count, total, peak) in metrics.items():
            old = partial.metrics.get(metric)
            partial.metrics[metric] = (
                (int(count), total, peak)
                if old is None
                else (old[0] + int(count), old[1] + total, max(old[2], peak))
            )


def fold_status(state: StreamState, status: GatewayStatus) -> None:
    """Keep the gateway's newest status (birth or last will) by its own timestamp."""
    if state.status is None or status.ts >= state.status[1]:
        state.status = (status.state, status.ts, status.boot)


def status_input(state: StreamState) -> StatusInput | None:
    """The retained status as the silence detector takes it."""
    if state.status is None:
        return None
    kind, ts, boot = state.status
    return StatusInput(kind, ts, boot)


def close_minutes(
    state: StreamState, lane: Lane, wall: datetime, close_lag: timedelta, idle_close: timedelta
) -> list[MinuteSample]:
    """Close the lane's minutes a later reading has passed, or that sat idle; oldest first."""
    minutes = state.open.get(lane, {})
    high = state.high.get(lane)
    done: list[MinuteSample] = []
    for key in sorted(minutes):
        start = datetime.fromisoformat(key)
        passed = high is not None and high >= start + timedelta(minutes=1) + close_lag
        if not passed and wall - minutes[key].touched < idle_close:
            continue
        partial = minutes.pop(key)
        values = {
            metric: (peak if metric == "fault_code" else total / count)
            for metric, (count, total, peak) in partial.metrics.items()
            if count > 0
        }
        done.append(MinuteSample(start, values))
        if lane not in state.closed or start > state.closed[lane]:
            state.closed[lane] = start
    return done
