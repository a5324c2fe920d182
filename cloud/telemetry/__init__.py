"""Telemetry stores: one small interface, an embedded SQLite backend and VictoriaMetrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from leasewatch.wire import TelemetryBatch


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

    async def close(self) -> None:
        """Flush and release connections."""
