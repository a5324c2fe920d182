"""Format 1 of the stream state (the pydantic model with ISO times): read, never written.

Rows written before format 2 (`cloud.detection.stream`) load through `StreamV1` and are
written back in format 2.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cloud.detection.stream import Lane, Partial, StreamState, Sums, to_us


class PartialV1(BaseModel):
    """One open minute in format 1."""

    touched: datetime
    metrics: dict[str, tuple[int, float, float]] = Field(default_factory=dict)


class StreamV1(BaseModel):
    """Format 1 (rows written before format 2): read, never written."""

    version: Literal[1] = 1
    seen: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)
    boots: list[str] = Field(default_factory=list)
    open: dict[Lane, dict[str, PartialV1]] = Field(default_factory=dict)
    high: dict[Lane, datetime] = Field(default_factory=dict)
    closed: dict[Lane, datetime] = Field(default_factory=dict)
    status: tuple[Literal["online", "offline"], datetime, str] | None = None
    last_live_at: datetime | None = None
    boot: str | None = None
    health_at: datetime | None = None
    duplicates: int = 0
    late: int = 0
    sweep_day: str | None = None

    def upgraded(self) -> StreamState:
        """The same state in format 2."""
        state = StreamState()
        state.seen = {boot: [[lo, hi] for lo, hi in r] for boot, r in self.seen.items()}
        state.boots = list(self.boots)
        state.open = {
            lane: {
                _minute(datetime.fromisoformat(key)): Partial(
                    to_us(p.touched),
                    {m: _compact([c, total, peak]) for m, (c, total, peak) in p.metrics.items()},
                )
                for key, p in minutes.items()
            }
            for lane, minutes in self.open.items()
        }
        state.high = {lane: to_us(ts) for lane, ts in self.high.items()}
        state.closed = {lane: _minute(ts) for lane, ts in self.closed.items()}
        if self.status is not None:
            state.status = (self.status[0], to_us(self.status[1]), self.status[2])
        state.last_live_at = None if self.last_live_at is None else to_us(self.last_live_at)
        state.boot = self.boot
        state.health_at = None if self.health_at is None else to_us(self.health_at)
        state.duplicates, state.late, state.sweep_day = self.duplicates, self.late, self.sweep_day
        return state


def _minute(ts: datetime) -> int:
    """Epoch seconds of a minute start (format 1 kept them as datetimes)."""
    return to_us(ts) // 1_000_000


def _compact(acc: list[float]) -> Sums:
    """[count, sum, max] of a metric's readings; one reading's value alone."""
    return acc[1] if acc[0] == 1 else acc
