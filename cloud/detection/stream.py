"""One gateway's message stream as the detection worker sees it: seen messages, open minutes.

The state lives in the state store (detector_state row `_stream` of the device) and is changed
only under that row's lock, so any worker can take any message of any gateway:
- `seen`: per boot, the (boot, seq) ranges already taken; a redelivered message changes nothing.
- `open`: 1-minute partial sums per metric, per lane (live or replayed), exactly what the
  1-minute rollups would hold. A minute closes when a later reading of the same lane is at least
  `close_lag` past its end, or when nothing touched it for `idle_close` (the sweep); closed
  minutes become the detectors' `MinuteSample`s. A reading for a minute its lane already closed
  is late and counted, never fed twice.

It is read and written for every gateway of every batch, so it is plain objects and stdlib JSON
(format 2): instants are integer microseconds since the Unix epoch, minutes their start in epoch
seconds, compared as integers (exact, like the datetimes they stand for). Rows written in
format 1 (the pydantic model, ISO times) still load (`StreamState.from_json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import orjson

from cloud.detectors.inputs import EventInput, MinuteSample, StatusInput
from leasewatch.wire import GatewayStatus, Reading, TelemetryBatch

STREAM = "_stream"  # detector_state row that is the gateway's lease and stream state
MAX_RANGES = 64  # seq ranges kept per boot; beyond, the closest ones merge (a gap counts seen)
MAX_BOOTS = 4
FORMAT = 2  # the "v" of the JSON text; format 1 had "version": 1
Lane = Literal["live", "replay"]
Status = tuple[Literal["online", "offline"], int, str]  # state, at (epoch us), boot

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = EPOCH.toordinal()
_US = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact)."""
    return (ts - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The UTC datetime of epoch microseconds."""
    return EPOCH + timedelta(microseconds=us)


Sums = float | list[float]  # one reading's value, or [count, sum, max] of several


class Partial:
    """One open minute of one lane: when last touched (epoch us), its readings per metric.

    Per metric the value of its one reading, or [count, sum, max] of several: a minute holds
    one reading per metric in the common case, and the state's JSON keeps this form as it is.
    """

    __slots__ = ("metrics", "touched")

    def __init__(self, touched: int, metrics: dict[str, Sums]) -> None:
        """A minute with these readings (the dict is taken, not copied)."""
        self.touched = touched
        self.metrics = metrics

    def sums(self) -> dict[str, tuple[int, float, float]]:
        """(count, sum, max) per metric."""
        return {
            m: (1, acc, acc) if isinstance(acc, float) else (int(acc[0]), acc[1], acc[2])
            for m, acc in self.metrics.items()
        }


class StreamState:
    """Everything the worker remembers about one gateway's stream (instants in epoch us)."""

    __slots__ = (
        "boot",
        "boots",
        "closed",
        "duplicates",
        "health_at",
        "high",
        "last_live_at",
        "late",
        "open",
        "seen",
        "status",
        "sweep_day",
    )

    def __init__(self) -> None:
        """The state of a gateway never seen."""
        self.seen: dict[str, list[list[int]]] = {}  # boot -> [low, high] ranges
        self.boots: list[str] = []  # oldest first
        self.open: dict[Lane, dict[int, Partial]] = {}  # lane -> minute (epoch s) -> sums
        self.high: dict[Lane, int] = {}  # newest reading per lane (epoch us)
        self.closed: dict[Lane, int] = {}  # newest closed minute per lane (epoch s)
        self.status: Status | None = None
        self.last_live_at: int | None = None  # epoch us
        self.boot: str | None = None  # boot of the newest live message
        self.health_at: int | None = None  # epoch us
        self.duplicates = 0
        self.late = 0
        self.sweep_day: str | None = None  # the last UTC day utilization was evaluated for

    def to_json(self) -> str:
        """The state as JSON text (format 2)."""
        opened = _open_doc(self.open)
        open_text = orjson.dumps(opened)
        doc: dict[str, Any] = {
            "v": FORMAT,
            "seen": self.seen,
            "boots": self.boots,
            "open": orjson.Fragment(open_text),
            "high": self.high,
            "closed": self.closed,
            "status": self.status,
            "last_live_at": self.last_live_at,
            "boot": self.boot,
            "health_at": self.health_at,
            "duplicates": self.duplicates,
            "late": self.late,
            "sweep_day": self.sweep_day,
        }
        if b"null" in open_text:  # a sum overflowed: orjson writes inf as null, json Infinity
            doc["open"] = opened
            return json.dumps(doc, separators=(",", ":"))
        return orjson.dumps(doc).decode()

    @classmethod
    def from_json(cls, text: str) -> StreamState:
        """A state from its JSON text: format 2, format 1, or `{}` (a lease row just made)."""
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:  # Infinity: a sum that overflowed (`to_json`)
            raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError(f"stream state must be a JSON object, found {type(raw).__name__}")
        if raw.get("v") == FORMAT:
            return _from_v2(raw)
        from cloud.detection.stream_v1 import StreamV1  # noqa: PLC0415 - it imports this module

        return StreamV1.model_validate(raw).upgraded()


def _from_v2(raw: dict[str, Any]) -> StreamState:
    state = StreamState()
    state.seen = raw["seen"]
    state.boots = raw["boots"]
    state.open = {
        lane: {int(m): Partial(touched, sums) for m, (touched, sums) in minutes.items()}
        for lane, minutes in raw["open"].items()
    }
    state.high = raw["high"]
    state.closed = raw["closed"]
    status = raw["status"]
    state.status = None if status is None else (status[0], status[1], status[2])
    state.last_live_at = raw["last_live_at"]
    state.boot = raw["boot"]
    state.health_at = raw["health_at"]
    state.duplicates = raw["duplicates"]
    state.late = raw["late"]
    state.sweep_day = raw["sweep_day"]
    return state


def _open_doc(lanes: dict[Lane, dict[int, Partial]]) -> dict[str, dict[str, list[Any]]]:
    return {
        lane: {str(m): [p.touched, p.metrics] for m, p in minutes.items()}
        for lane, minutes in lanes.items()
    }


@lru_cache(maxsize=4096)
def _minute_start(minute: int) -> datetime:
    """The datetime of a minute start (epoch s); a fleet closes the same minutes."""
    return datetime.fromtimestamp(minute, UTC)


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
    if ranges and ranges[-1][1] + 1 == seq:  # the next message of the boot (kept merged)
        ranges[-1][1] = seq
        return True
    for low, high in ranges:
        if low <= seq <= high:
            state.duplicates += 1
            return False
    ranges.append([seq, seq])
    ranges.sort()
    merged: list[list[int]] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(high, merged[-1][1])
        else:
            merged.append([low, high])
    while len(merged) > MAX_RANGES:
        gap = min(range(len(merged) - 1), key=lambda i: merged[i + 1][0] - merged[i][1])
        merged[gap : gap + 2] = [[merged[gap][0], merged[gap + 1][1]]]
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
    state once per minute.
    """
    lane: Lane = "replay" if batch.historical else "live"
    if batch.readings:
        sums, newest, accepted = _sum_minutes(state, lane, batch.readings)
        _merge_minutes(state, lane, sums, to_us(wall))
        if accepted is not None:
            taken = to_us(accepted)
            if lane not in state.high or taken > state.high[lane]:
                state.high[lane] = taken
        if lane == "live":
            last = to_us(newest)
            if state.last_live_at is None or last > state.last_live_at:
                state.last_live_at, state.boot = last, batch.boot
    return [EventInput(e.ts, e.kind, e.sensor, e.detail) for e in batch.events]


_Sums = dict[int, dict[str, Sums]]  # minute (epoch s) -> metric -> value or [count, sum, max]


def _sum_minutes(
    state: StreamState, lane: Lane, readings: Sequence[Reading]
) -> tuple[_Sums, datetime, datetime | None]:
    """Sums per minute of the readings its lane has not closed; newest reading, newest taken.

    Readings of one sample share their instant: the minute is worked out once per instant.
    """
    closed = state.closed.get(lane)
    floor = closed if closed is not None else -math.inf
    sums: _Sums = {}
    newest = readings[0].ts
    accepted: datetime | None = None
    instant: datetime | None = None
    metrics: dict[str, Sums] = {}
    late = False
    for reading in readings:
        ts = reading.ts
        if ts != instant:
            instant = ts
            if ts > newest:  # noqa: PLR1730 - per instant: a max() call costs more
                newest = ts
            minute = _minute_of(ts)
            late = minute <= floor
            if not late:
                if accepted is None or ts > accepted:
                    accepted = ts
                metrics = sums.setdefault(minute, {})
        if late:
            state.late += 1
            continue
        value, metric = reading.value, reading.metric
        acc = metrics.get(metric)
        if acc is None:  # one reading: its value (`Sums`), the common case
            metrics[metric] = value
        elif isinstance(acc, float):
            metrics[metric] = [2, acc + value, value if value > acc else acc]
        else:
            acc[0] += 1
            acc[1] += value
            if value > acc[2]:  # noqa: PLR1730 - per reading: a max() call costs more
                acc[2] = value
    return sums, newest, accepted


def _minute_of(ts: datetime) -> int:
    """Epoch seconds of the start of the minute of `ts` (from its fields when it is in UTC)."""
    if ts.tzinfo is UTC:  # what the wire decoder gives: no utcoffset call, no timedelta
        return (ts.toordinal() - _EPOCH_DAY) * 86400 + ts.hour * 3600 + ts.minute * 60
    return int(ts.timestamp() // 60) * 60


def _merge_minutes(state: StreamState, lane: Lane, sums: _Sums, wall: int) -> None:
    minutes = state.open.setdefault(lane, {})
    for minute, metrics in sums.items():
        partial = minutes.get(minute)
        if partial is None:
            minutes[minute] = Partial(wall, metrics)
            continue
        partial.touched = wall
        have = partial.metrics
        for metric, acc in metrics.items():
            old = have.get(metric)
            if old is None:
                have[metric] = acc
            else:
                have[metric] = _added(old, acc)


def _added(old: Sums, new: Sums) -> Sums:
    """Two partial sums of a metric's readings as one (a float is one reading's value)."""
    count, total, peak = (1, new, new) if isinstance(new, float) else new
    if isinstance(old, float):  # one reading so far: its value is sum and max
        return [1 + count, old + total, peak if peak > old else old]
    old[0] += count
    old[1] += total
    old[2] = max(old[2], peak)
    return old


def fold_status(state: StreamState, status: GatewayStatus) -> None:
    """Keep the gateway's newest status (birth or last will) by its own timestamp."""
    at = to_us(status.ts)
    if state.status is None or at >= state.status[1]:
        state.status = (status.state, at, status.boot)


def status_input(state: StreamState) -> StatusInput | None:
    """The retained status as the silence detector takes it."""
    if state.status is None:
        return None
    kind, at, boot = state.status
    return StatusInput(kind, from_us(at), boot)


def _means(metrics: dict[str, Sums]) -> dict[str, float]:
    """A closed minute's mean per metric (`fault_code` its max); one reading each: the dict."""
    for acc in metrics.values():
        if not isinstance(acc, float):
            break
    else:
        return metrics  # type: ignore[return-value]  # every value is a float
    values = {m: acc if isinstance(acc, float) else acc[1] / acc[0] for m, acc in metrics.items()}
    peak = metrics.get("fault_code")
    if isinstance(peak, list):  # its max: a code raised for a moment is not averaged away
        values["fault_code"] = peak[2]
    return values


def close_minutes(
    state: StreamState, lane: Lane, wall: datetime, close_lag: timedelta, idle_close: timedelta
) -> list[MinuteSample]:
    """Close the lane's minutes a later reading has passed, or that sat idle; oldest first."""
    minutes = state.open.get(lane)
    if not minutes:
        return []
    high = state.high.get(lane)
    passed_at = -1 if high is None else high - close_lag // _US  # a minute ending by then
    idle_before = to_us(wall) - idle_close // _US  # touched before then: idle
    done: list[MinuteSample] = []
    for minute in sorted(minutes):
        partial = minutes[minute]
        end = (minute + 60) * 1_000_000
        if not (high is not None and end <= passed_at) and partial.touched > idle_before:
            continue
        del minutes[minute]
        done.append(MinuteSample(_minute_start(minute), _means(partial.metrics)))
        if lane not in state.closed or minute > state.closed[lane]:
            state.closed[lane] = minute
    return done
