"""1-minute and 1-hour rollups per asset measure, maintained as messages are stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from leasewatch.wire import TelemetryBatch

RESOLUTIONS_S = (60, 3600)


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


@dataclass(slots=True)
class RollupAggregate:
    """Readings of a set of messages summed per bucket: [count, sum, min, max] by bucket key."""

    slots: dict[BucketKey, list[float]]
    units: dict[tuple[str, str, str], str]


def aggregate(batches: Iterable[TelemetryBatch]) -> RollupAggregate:
    """Sum the readings of newly stored messages per bucket (the hot path: no datetimes)."""
    acc: dict[BucketKey, list[float]] = {}
    units: dict[tuple[str, str, str], str] = {}
    for batch in batches:
        device = batch.device
        for reading in batch.readings:
            sensor, metric, value = reading.sensor, reading.metric, reading.value
            units[(device, sensor, metric)] = reading.unit
            epoch = int(reading.ts.timestamp())
            for resolution in RESOLUTIONS_S:
                key = (device, sensor, metric, resolution, epoch - epoch % resolution)
                slot = acc.get(key)
                if slot is None:
                    acc[key] = [1, value, value, value]
                    continue
                slot[0] += 1
                slot[1] += value
                if value < slot[2]:
                    slot[2] = value
                elif value > slot[3]:
                    slot[3] = value
    return RollupAggregate(acc, units)


def rollup_deltas(batches: Iterable[TelemetryBatch]) -> list[RollupDelta]:
    """Aggregate the readings of newly stored messages into per-bucket deltas."""
    found = aggregate(batches)
    return [
        RollupDelta(
            device,
            sensor,
            metric,
            resolution,
            datetime.fromtimestamp(bucket, UTC),
            found.units[(device, sensor, metric)],
            int(n),
            total,
            low,
            high,
        )
        for (device, sensor, metric, resolution, bucket), (
            n,
            total,
            low,
            high,
        ) in found.slots.items()
    ]
