"""Telemetry stores: one small interface, an embedded SQLite backend and VictoriaMetrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from leasewatch.wire import Reading, TelemetryBatch


class TelemetryStoreError(Exception):
    """The store could not take or return data; the caller must not acknowledge what it sent."""


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as read back from a telemetry store."""

    device: str
    sensor: str
    metric: str
    ts: datetime
    value: float
    unit: str


MAX_BUCKETS = 10_000
"""The most buckets one downsampled query may span (per series)."""


@dataclass(frozen=True, slots=True)
class ReadingBucket:
    """Readings of one series (sensor, metric, unit) in one step: [bucket, bucket + step)."""

    device: str
    sensor: str
    metric: str
    unit: str
    bucket: datetime
    count: int
    mean: float
    min: float
    max: float


def bucket_span(start: datetime, end: datetime, step_s: int) -> tuple[datetime, datetime]:
    """start rounded down and end rounded up to whole steps since the epoch; ValueError if bad.

    Buckets are aligned on the epoch so that every backend (and every query) cuts them alike.
    """
    if step_s < 1:
        raise ValueError(f"step must be at least 1 second, got {step_s}")
    if start >= end:
        raise ValueError("start must be before end")
    step_ms = step_s * 1000
    first = epoch_ms(start) // step_ms
    last = -(-epoch_ms(end) // step_ms)
    if last - first > MAX_BUCKETS:
        raise ValueError(
            f"{last - first} buckets of {step_s} s: at most {MAX_BUCKETS}; choose a larger step"
        )
    return from_epoch_ms(first * step_ms), from_epoch_ms(last * step_ms)


class TelemetryStore(Protocol):
    """Where readings live. Writes are idempotent: the same reading written twice is stored once."""

    async def write(self, batches: Sequence[TelemetryBatch]) -> None:
        """Store every reading of the batches durably, or raise TelemetryStoreError."""

    async def query(
        self,
        device: str,
        start: datetime,
        end: datetime,
        metric: str | None = None,
        limit: int = 10_000,
    ) -> list[StoredReading]:
        """Readings of one device with start <= ts < end, oldest first."""

    async def downsample(
        self,
        device: str,
        start: datetime,
        end: datetime,
        step_s: int,
        metric: str | None = None,
    ) -> list[ReadingBucket]:
        """Count, mean, min, max per series and bucket over `bucket_span(start, end, step_s)`.

        Buckets are [b, b + step) with b a whole number of steps since the epoch; empty buckets
        are left out. Ordered by bucket, sensor, metric, unit.
        """

    async def prune(self, before: datetime) -> int:
        """Delete readings older than `before` (retention); returns how many were deleted."""

    async def close(self) -> None:
        """Flush and release connections."""


class ReadingsRejectedError(TelemetryStoreError):
    """The store refused some readings for good; every other reading of the call was stored.

    Retrying cannot succeed (e.g. a timestamp outside the store's retention): count the readings
    in `rejected`, dead-letter them and acknowledge the messages, or ingestion stalls on them.
    """

    def __init__(self, message: str, rejected: Sequence[tuple[str, Reading]]) -> None:
        super().__init__(message)
        self.rejected = list(rejected)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(ts: datetime) -> int:
    """Whole milliseconds since the Unix epoch, rounded up; exact for the wire's ms timestamps."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone")
    return -((_EPOCH - ts) // _MILLISECOND)


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of an epoch-millisecond timestamp."""
    return _EPOCH + ms * _MILLISECOND


async def open_telemetry_store(url: str) -> TelemetryStore:
    """Open the telemetry store a URL names, or raise ValueError / TelemetryStoreError.

    sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite (SQLAlchemy's convention,
    like the state store's URL); victoriametrics://host:8428 (plain HTTP) or http(s)://host:port,
    optionally with ?timeout=SECONDS&retention_days=DAYS (see cloud/telemetry/victoria.py).
    A VictoriaMetrics store is checked on opening: reachable, started with ms deduplication.
    """
    parts = urlsplit(url)
    # Imported here: each backend imports this module, and SQLite users skip influxdb-client.
    if parts.scheme == "sqlite":
        from cloud.telemetry.sqlite import SqliteTelemetryStore  # noqa: PLC0415

        if parts.netloc or parts.query or len(parts.path) < 2:
            raise ValueError(
                f"{url!r}: expected sqlite:///relative.sqlite or sqlite:////abs.sqlite"
            )
        return await asyncio.to_thread(SqliteTelemetryStore, parts.path[1:])
    if parts.scheme in ("victoriametrics", "http", "https"):
        from cloud.telemetry.victoria import VictoriaMetricsStore  # noqa: PLC0415

        return await VictoriaMetricsStore.connect(url)
    raise ValueError(
        f"{url!r}: telemetry URLs start with sqlite://, victoriametrics:// or http(s)://"
    )
