"""What the asset page reads: measures (rollups or raw), running hours, alerts, health, commands."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, select

from cloud.alerts.records import Alert
from cloud.alerts.store import AlertStore
from cloud.commands.store import CommandRecord, CommandStore
from cloud.detector_state import load_detector_state
from cloud.detectors.utilization import (
    UtilizationDetector,
    UtilizationState,
    UtilizationThresholds,
)
from cloud.leasing.store import lease_from_row
from cloud.leasing.tables import assets as lease_assets
from cloud.leasing.tables import leases
from cloud.state import StateStore
from cloud.telemetry import StoredReading, TelemetryStore
from dashboards.fleet_data import SILENCE_DETECTOR, running_hours
from leasewatch.wire import GatewayHealth

RangeName = Literal["1h", "6h", "24h", "7d", "30d"]
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(days=1),
    "7d": timedelta(days=7), "30d": timedelta(days=30),
}  # fmt: skip
#: Up to this span the page reads 1-minute rollups, beyond it 1-hour ones.
MINUTE_ROLLUPS_UP_TO = timedelta(days=2)
#: Raw readings (drill-down) only for short spans: they come from the telemetry store.
RAW_UP_TO = timedelta(hours=6)
ALERT_LIMIT = 200
COMMAND_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Span:
    """The time range the page shows and how it reads it."""

    start: datetime
    end: datetime
    source: Literal["raw", "1m", "1h"]

    @property
    def label(self) -> str:
        """How the page names the range and where its numbers come from."""
        what = {"raw": "raw readings", "1m": "1-minute rollups", "1h": "1-hour rollups"}
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC, {what[self.source]}"


def span_for(range_name: str, end: datetime, *, raw: bool) -> Span:
    """The span of a named range ending at `end`; raw only where it is short enough."""
    length = RANGES[range_name]
    if raw and length <= RAW_UP_TO:
        return Span(end - length, end, "raw")
    return Span(end - length, end, "1m" if length <= MINUTE_ROLLUPS_UP_TO else "1h")


@dataclass(frozen=True, slots=True)
class Series:
    """One measure over the span: bucket means with min and max (raw: value = mean = min = max)."""

    sensor: str
    metric: str
    unit: str
    ts: list[datetime]
    mean: list[float]
    low: list[float]
    high: list[float]


@dataclass(frozen=True, slots=True)
class DayHours:
    """Running hours of one day against the asset's baseline and the contract's expectation."""

    day: date
    running: float | None
    baseline: float | None
    contract: float | None


@dataclass(frozen=True, slots=True)
class AssetView:
    """Everything the asset page draws."""

    device: str
    span: Span
    series: list[Series]
    days: list[DayHours]
    alerts: list[Alert]
    silences: list[tuple[datetime, datetime]]
    health: GatewayHealth | None
    contract_note: str
    commands: list[CommandRecord]  # newest first


def rollup_series(state: StateStore, device: str, span: Span) -> list[Series]:
    """Bucket means, minima and maxima per measure from the rollups of the span's resolution."""
    resolution = 60 if span.source == "1m" else 3600
    grouped: dict[tuple[str, str, str], Series] = {}
    for row in state.rollups(device, resolution, span.start, span.end):
        if int(row["count"]) <= 0:
            continue
        key = (row["sensor"], row["metric"], row["unit"])
        series = grouped.setdefault(key, Series(*key, [], [], [], []))
        series.ts.append(row["bucket"])
        series.mean.append(float(row["sum"]) / int(row["count"]))
        series.low.append(float(row["min"]))
        series.high.append(float(row["max"]))
    return [grouped[k] for k in sorted(grouped)]


def raw_series(readings: Sequence[StoredReading]) -> list[Series]:
    """Raw readings as series (drill-down): every reading is its own point."""
    grouped: dict[tuple[str, str, str], Series] = {}
    for r in readings:
        key = (r.sensor, r.metric, r.unit)
        series = grouped.setdefault(key, Series(*key, [], [], [], []))
        series.ts.append(r.ts)
        for values in (series.mean, series.low, series.high):
            values.append(r.value)
    return [grouped[k] for k in sorted(grouped)]


def baseline_hours(engine: Engine, device: str, days: list[date]) -> dict[date, float]:
    """The utilization detector's same-weekday median running hours, where it learned one."""
    with engine.connect() as conn:
        saved = load_detector_state(conn, device, "utilization")
    if saved is None:
        return {}
    detector = UtilizationDetector(UtilizationState.model_validate(saved), UtilizationThresholds())
    expected = {day: detector.expected_hours(day) for day in days}
    return {day: hours for day, hours in expected.items() if hours is not None}


def contract_hours(engine: Engine, device: str, days: list[date]) -> tuple[dict[date, float], str]:
    """Hours the lease of the asset carrying this gateway expects per day, and a sentence."""
    query = (
        select(leases)
        .join(lease_assets, lease_assets.c.lease_id == leases.c.lease_id)
        .where(lease_assets.c.device == device)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return {}, "No lease is recorded for the asset carrying this gateway."
    lease = lease_from_row(row)
    per_day = lease.expected_hours_per_asset_day()
    terms = (
        f"Lease {lease.lease_id} of lessee {lease.lessee_id}, {lease.starts_on} to {lease.ends_on}"
    )
    if per_day is None:
        return {}, f"{terms}: the contract sets no expected running hours."
    expected = {d: per_day for d in days if lease.starts_on <= d <= lease.ends_on}
    return expected, f"{terms}: {per_day:.1f} running hours expected per day."


def day_hours(engine: Engine, device: str, end: datetime, days: int) -> tuple[list[DayHours], str]:
    """Running hours of the last `days` UTC days with baseline and contract, and the lease."""
    last = end.date()
    wanted = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    running = running_hours(engine, [device], wanted[0], last).get(device, {})
    baseline = baseline_hours(engine, device, wanted)
    contract, note = contract_hours(engine, device, wanted)
    hours = [DayHours(d, running.get(d), baseline.get(d), contract.get(d)) for d in wanted]
    return hours, note


def silence_periods(alerts: list[Alert], now: datetime) -> list[tuple[datetime, datetime]]:
    """From each silence alert's start to its resolution (or now, while it is open)."""
    return [(a.since, a.resolved_at or now) for a in alerts if a.detector == SILENCE_DETECTOR]


async def asset_view(
    state: StateStore, telemetry: TelemetryStore, device: str, span: Span, days: int
) -> AssetView:
    """Read everything the asset page shows for one device (blocking reads in a worker thread)."""
    if span.source == "raw":
        series = raw_series(await telemetry.query(device, span.start, span.end))
    else:
        series = await asyncio.to_thread(rollup_series, state, device, span)
    return await asyncio.to_thread(_stored_view, state, device, span, days, series)


def _stored_view(
    state: StateStore, device: str, span: Span, days: int, series: list[Series]
) -> AssetView:
    found = AlertStore(state.engine).query(device=device, limit=ALERT_LIMIT)
    now = datetime.now(UTC)
    hours, contract_note = day_hours(state.engine, device, span.end, days)
    return AssetView(
        device=device,
        span=span,
        series=series,
        days=hours,
        alerts=found,
        silences=silence_periods(found, now),
        health=state.health(device),
        contract_note=contract_note,
        commands=CommandStore(state.engine).history(device, COMMAND_LIMIT),
    )
