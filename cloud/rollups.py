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


def rollup_deltas(batches: Iterable[TelemetryBatch]) -> list[RollupDelta]:
    """Aggregate the readings of newly stored messages into per-bucket deltas."""
    acc: dict[tuple[str, str, str, int, int], list[float]] = {}
    units: dict[tuple[str, str, str], str] = {}
    for batch in batches:
        for reading in batch.readings:
            units[(batch.device, reading.sensor, reading.metric)] = reading.unit
            epoch = int(reading.ts.timestamp())
            value = reading.value
            for resolution in RESOLUTIONS_S:
                bucket = epoch - epoch % resolution
                key = (batch.device, reading.sensor, reading.metric, resolution, bucket)
                slot = acc.get(key)
                if slot is None:
                    acc[key] = [1, value, value, value]
                    continue
                slot[0] += 1
                slot[1] += value
                slot[2] = min(slot[2], value)
                slot[3] = max(slot[3], value)
    return [
        RollupDelta(
            device,
            sensor,
            metric,
            resolution,
            datetime.fromtimestamp(bucket, UTC),
            units[(device, sensor, metric)],
            int(n),
            total,
            low,
            high,
        )
        for (device, sensor, metric, resolution, bucket), (n, total, low, high) in acc.items()
    ]
