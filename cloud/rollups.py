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
    deltas: dict[tuple[str, str, str, int, datetime], RollupDelta] = {}
    for batch in batches:
        for reading in batch.readings:
            for resolution in RESOLUTIONS_S:
                bucket = bucket_start(reading.ts, resolution)
                key = (batch.device, reading.sensor, reading.metric, resolution, bucket)
                delta = deltas.get(key)
                if delta is None:
                    deltas[key] = RollupDelta(
                        *key, reading.unit, 1, reading.value, reading.value, reading.value
                    )
                    continue
                delta.count += 1
                delta.sum += reading.value
                delta.min = min(delta.min, reading.value)
                delta.max = max(delta.max, reading.value)
    return list(deltas.values())
