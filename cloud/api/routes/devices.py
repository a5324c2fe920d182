"""Devices (gateways), their readings and their message ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from cloud.api.deps import CallerDep, DeviceScope, ReadTelemetry, ServicesDep, visible_devices
from cloud.api.problems import Problem
from cloud.gateway_clocks import ClockLead, GatewayClocks
from cloud.telemetry import bucket_span
from leasewatch.wire import DeviceId, GatewayHealth, MetricName

router = APIRouter(prefix="/v1/devices", tags=["devices"], dependencies=[DeviceScope])


class DevicePublic(BaseModel):
    """A gateway as the registry knows it."""

    device: str
    status: str
    status_at: datetime | None
    first_seen: datetime
    last_message_at: datetime | None
    latest_reading_at: datetime | None
    last_boot: str | None
    messages: int
    readings: int
    duplicates: int


class ReadingPublic(BaseModel):
    """One stored reading."""

    sensor: str
    metric: str
    ts: datetime
    value: float
    unit: str


class ReadingsPublic(BaseModel):
    """Readings of one device over a time range."""

    device: str
    start: datetime
    end: datetime
    count: int
    readings: list[ReadingPublic]


class RollupPublic(BaseModel):
    """One bucket of one measure: a rollup, or readings in [bucket, bucket + step)."""

    sensor: str
    metric: str
    unit: str
    bucket: datetime
    count: int
    mean: float
    min: float
    max: float


class DownsampledReadingsPublic(BaseModel):
    """A device's readings in epoch-aligned buckets of `step` s (start, end rounded out)."""

    device: str
    start: datetime
    end: datetime
    step: int
    count: int
    buckets: list[RollupPublic]


@router.get("", response_model=list[DevicePublic], dependencies=[ReadTelemetry])
def list_devices(services: ServicesDep, caller: CallerDep) -> list[dict[str, object]]:
    """Every gateway the caller may see (its tenant's), with status and counters."""
    visible = visible_devices(services, caller)
    found = services.state.devices()
    return found if visible is None else [d for d in found if d["device"] in visible]


@router.get(
    "/{device}/readings",
    response_model=ReadingsPublic | DownsampledReadingsPublic,
    dependencies=[ReadTelemetry],
)
async def device_readings(
    services: ServicesDep,
    device: DeviceId,
    *,
    start: Annotated[AwareDatetime | None, Query(description="Default: end - 1 hour")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Default: now")] = None,
    metric: MetricName | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    step: Annotated[
        int | None,
        Query(ge=1, le=86_400, description="Seconds: count, mean, min, max per bucket instead"),
    ] = None,
) -> ReadingsPublic | DownsampledReadingsPublic:
    """Readings of a device with start <= ts < end, oldest first; with `step`, per bucket."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise Problem(422, "invalid_range", "start must be before end")
    if step is not None:
        return await _downsampled(
            services, device, start=start, end=end, step=step, metric=metric, limit=limit
        )
    rows = await services.telemetry.query(device, start, end, metric=metric, limit=limit)
    readings = [
        ReadingPublic(sensor=r.sensor, metric=r.metric, ts=r.ts, value=r.value, unit=r.unit)
        for r in rows
    ]
    return ReadingsPublic(
        device=device, start=start, end=end, count=len(readings), readings=readings
    )


async def _downsampled(
    services: ServicesDep,
    device: str,
    *,
    start: datetime,
    end: datetime,
    step: int,
    metric: str | None,
    limit: int,
) -> DownsampledReadingsPublic:
    """The store's buckets of a device's readings (422 too_many_buckets past MAX_BUCKETS)."""
    try:
        first, last = bucket_span(start, end, step)
    except ValueError as err:
        raise Problem(422, "too_many_buckets", str(err)) from err
    rows = await services.telemetry.downsample(device, first, last, step, metric=metric)
    buckets = [RollupPublic.model_validate(b, from_attributes=True) for b in rows[:limit]]
    return DownsampledReadingsPublic(
        device=device, start=first, end=last, step=step, count=len(buckets), buckets=buckets
    )


@router.get("/{device}/ledger", dependencies=[ReadTelemetry])
def device_ledger(services: ServicesDep, device: DeviceId) -> list[dict[str, object]]:
    """Every message of the device the cloud stored, by (boot, seq)."""
    return services.state.ledger(device)


class GapPublic(BaseModel):
    """Sequence numbers of one boot that never arrived."""

    boot: str
    first_seq: int
    last_seq: int


class DayCompletenessPublic(BaseModel):
    """Completeness of one device on one day (UTC, by send time)."""

    day: date
    expected_messages: int
    received_messages: int
    missing_messages: int
    received_readings: int
    duplicates: int
    late: int
    historical: int
    gaps: list[GapPublic]


@router.get(
    "/{device}/completeness",
    response_model=list[DayCompletenessPublic],
    dependencies=[ReadTelemetry],
)
def device_completeness(
    services: ServicesDep,
    device: DeviceId,
    first_day: Annotated[date | None, Query(description="Default: 6 days before last_day")] = None,
    last_day: Annotated[date | None, Query(description="Default: today (UTC)")] = None,
) -> list[DayCompletenessPublic]:
    """Expected vs received messages, gaps, duplicates, late and historical arrivals per day."""
    last = last_day or datetime.now(UTC).date()
    first = first_day or last - timedelta(days=6)
    if first > last or (last - first).days > 366:
        raise Problem(422, "invalid_range", "first_day must be at most 366 days before last_day")
    late_after = timedelta(seconds=services.settings.late_after_s)
    days = services.state.completeness(device, first, last, late_after)
    return [
        DayCompletenessPublic(
            day=d.day,
            expected_messages=d.expected_messages,
            received_messages=d.received_messages,
            missing_messages=d.missing_messages,
            received_readings=d.received_readings,
            duplicates=d.duplicates,
            late=d.late,
            historical=d.historical,
            gaps=[
                GapPublic(boot=g.boot, first_seq=g.first_seq, last_seq=g.last_seq) for g in d.gaps
            ],
        )
        for d in days
    ]


@router.get("/{device}/rollups", response_model=list[RollupPublic], dependencies=[ReadTelemetry])
def device_rollups(
    services: ServicesDep,
    device: DeviceId,
    resolution: Annotated[Literal["1m", "1h"], Query()] = "1m",
    start: Annotated[AwareDatetime | None, Query(description="Default: end - 1 day")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Default: now")] = None,
) -> list[RollupPublic]:
    """1-minute or 1-hour rollups (count, mean, min, max) of every measure of a device."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    rows = services.state.rollups(device, 60 if resolution == "1m" else 3600, start, end)
    return [
        RollupPublic(
            sensor=r["sensor"],
            metric=r["metric"],
            unit=r["unit"],
            bucket=r["bucket"],
            count=r["count"],
            mean=r["sum"] / r["count"],
            min=r["min"],
            max=r["max"],
        )
        for r in rows
    ]


class MachineEventPublic(BaseModel):
    """A start, stop, fault or sensor-lost event detected at the edge."""

    sensor: str
    kind: str
    ts: datetime
    detail: str
    historical: bool


@router.get(
    "/{device}/events", response_model=list[MachineEventPublic], dependencies=[ReadTelemetry]
)
def device_events(
    services: ServicesDep,
    device: DeviceId,
    start: Annotated[AwareDatetime | None, Query(description="Default: end - 7 days")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Default: now")] = None,
) -> list[dict[str, object]]:
    """Machine events of a gateway's sensors, oldest first."""
    end = end or datetime.now(UTC)
    return services.state.events(device, start or end - timedelta(days=7), end)


@router.get("/{device}/health", response_model=GatewayHealth, dependencies=[ReadTelemetry])
def device_health(services: ServicesDep, device: DeviceId) -> GatewayHealth:
    """The newest health report the gateway published (buffer, errors, CPU, memory, clock)."""
    health = services.state.health(device)
    if health is None:
        raise Problem(404, "no_health_report", f"{device} has not reported its health yet")
    return health


class ClockLeadPublic(BaseModel):
    """One boot of a gateway whose stamps ran ahead of the cloud, and were shifted back."""

    boot: str
    lead_s: float
    first_seen: datetime
    last_seen: datetime
    rebased_messages: int


@router.get(
    "/{device}/clock-leads", response_model=list[ClockLeadPublic], dependencies=[ReadTelemetry]
)
def device_clock_leads(services: ServicesDep, device: DeviceId) -> list[ClockLead]:
    """Boots whose stamps ran ahead by more than the tolerance, and the lead taken off them."""
    clocks = GatewayClocks(services.state.engine, services.settings.max_clock_ahead_s)
    return clocks.leads(device)
