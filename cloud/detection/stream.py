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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from cloud.detectors.inputs import EventInput, MinuteSample, StatusInput
from leasewatch.wire import GatewayStatus, TelemetryBatch

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


def _minute(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def fold_batch(state: StreamState, batch: TelemetryBatch, wall: datetime) -> list[EventInput]:
    """Add a batch's readings to its lane's open minutes; returns its events."""
    lane: Lane = "replay" if batch.historical else "live"
    minutes = state.open.setdefault(lane, {})
    closed = state.closed.get(lane)
    for reading in batch.readings:
        minute = _minute(reading.ts)
        if closed is not None and minute <= closed:
            state.late += 1
            continue
        partial = minutes.setdefault(minute.isoformat(), Partial(touched=wall))
        partial.touched = wall
        count, total, peak = partial.metrics.get(reading.metric, (0, 0.0, reading.value))
        partial.metrics[reading.metric] = (count + 1, total + reading.value,
                                           max(peak, reading.value))  # fmt: skip
        if lane not in state.high or reading.ts > state.high[lane]:
            state.high[lane] = reading.ts
    if lane == "live" and batch.readings:
        newest = max(r.ts for r in batch.readings)
        if state.last_live_at is None or newest > state.last_live_at:
            state.last_live_at, state.boot = newest, batch.boot
    return [EventInput(e.ts, e.kind, e.sensor, e.detail) for e in batch.events]


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
