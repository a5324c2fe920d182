"""1-minute and 1-hour rollups per asset measure, maintained as messages are stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leasewatch.wire import TelemetryBatch

MINUTE_S, HOUR_S = 60, 3600
RESOLUTIONS_S = (MINUTE_S, HOUR_S)


@dataclass(slots=True)
class RollupDelta:
    """What a set of readings adds to one rollup bucket."""

    device: str
    sensor: str
    metric: str
    resolution_s: int
    bucket: datetime
    unit: str
    count: int
    sum: float
    min: float
    max: float

    @property
    def key(self) -> tuple[str, str, str, int, datetime]:
        """Primary key of the bucket."""
        return (self.device, self.sensor, self.metric, self.resolution_s, self.bucket)


def bucket_start(ts: datetime, resolution_s: int) -> datetime:
    """Start of the bucket that holds ts (UTC, aligned to the epoch)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % resolution_s, UTC)


BucketKey = tuple[str, str, str, int, int]  # device, sensor, metric, resolution_s, bucket epoch
Series = tuple[str, str, str]  # device, sensor, metric
#: One upsert row: device, sensor, metric, resolution_s, bucket (as the store wants it), unit,
#: count, sum, min, max.
RollupRow = tuple[str, str, str, int, Any, str, int, float, float, float]


@dataclass(slots=True)
class RollupAggregate:
    """Readings of a set of messages summed per one-minute bucket of each series.

    The hour buckets are the sums of their minutes, made when rows are asked for: at
    one-minute sampling every reading is a minute bucket of its own, so summing the minutes
    into hours touches each reading once more instead of keying it twice.
    """

    minutes: dict[Series, dict[int, list[float]]]  # [count, sum, min, max] by minute epoch
    units: dict[Series, str]

    def rows(self, bucket: Callable[[int], Any] = int) -> list[RollupRow]:
        """Every minute and hour bucket as an upsert row, `bucket(epoch)` in the bucket column."""
        when: dict[int, Any] = {}
        plain = bucket is int  # the epoch itself (SQLite's column): nothing to convert
        rows: list[RollupRow] = []
        append = rows.append
        for series, per_minute in self.minutes.items():
            device, sensor, metric = series
            unit = self.units[series]
            hours: dict[int, list[float]] = {}
            for minute, (n, total, low, high) in per_minute.items():
                if plain:
                    at: Any = minute
                elif (at := when.get(minute)) is None:
                    at = when[minute] = bucket(minute)
                append((device, sensor, metric, MINUTE_S, at, unit, int(n), total, low, high))
                if (hour := hours.get(start := minute - minute % HOUR_S)) is None:
                    hours[start] = [n, total, low, high]
                    continue
                hour[0] += n
                hour[1] += total
                hour[2] = min(hour[2], low)
                hour[3] = max(hour[3], high)
            for start, (n, total, low, high) in hours.items():
                if (at := when.get(start)) is None:
                    at = when[start] = bucket(start)
                append((device, sensor, metric, HOUR_S, at, unit, int(n), total, low, high))
        return rows

    @property
    def slots(self) -> dict[BucketKey, list[float]]:
        """[count, sum, min, max] by bucket key, both resolutions."""
        return {row[:5]: list(row[6:]) for row in self.rows()}


def aggregate(batches: Iterable[TelemetryBatch]) -> RollupAggregate:
    """Sum the readings of newly stored messages per minute (the hot path: no datetimes)."""
    minutes: dict[Series, dict[int, list[float]]] = {}
    units: dict[Series, str] = {}
    last: datetime | None = None
    minute = 0
    for batch in batches:
        device = batch.device
        for reading in batch.readings:
            series = (device, reading.sensor, reading.metric)
            units[series] = reading.unit
            if (per_minute := minutes.get(series)) is None:
                per_minute = minutes[series] = {}
            if (ts := reading.ts) != last:  # a sample's measures share one time: convert once
                last, epoch = ts, int(ts.timestamp())
                minute = epoch - epoch % MINUTE_S
            value = reading.value
            if (slot := per_minute.get(minute)) is None:
                per_minute[minute] = [1, value, value, value]
                continue
            slot[0] += 1
            slot[1] += value
            if value < slot[2]:
                slot[2] = value
            elif value > slot[3]:
                slot[3] = value
    return RollupAggregate(minutes, units)


def rollup_deltas(batches: Iterable[TelemetryBatch]) -> list[RollupDelta]:
    """Aggregate the readings of newly stored messages into per-bucket deltas."""
    return [
        RollupDelta(device, sensor, metric, resolution, datetime.fromtimestamp(epoch, UTC), unit,
                    n, total, low, high)
        for device, sensor, metric, resolution, epoch, unit, n, total, low, high
        in aggregate(batches).rows()
    ]  # fmt: skip
