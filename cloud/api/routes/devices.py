"""Devices (gateways), their readings and their message ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from cloud.api.deps import Authenticated, ServicesDep
from cloud.api.problems import Problem
from leasewatch.wire import DeviceId, MetricName

router = APIRouter(prefix="/v1/devices", tags=["devices"], dependencies=[Authenticated])


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


@router.get("", response_model=list[DevicePublic])
def list_devices(services: ServicesDep) -> list[dict[str, object]]:
    """Every known gateway with its status and counters."""
    return services.state.devices()


@router.get("/{device}/readings", response_model=ReadingsPublic)
async def device_readings(
    services: ServicesDep,
    device: DeviceId,
    *,
    start: Annotated[AwareDatetime | None, Query(description="Default: end - 1 hour")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Default: now")] = None,
    metric: MetricName | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> ReadingsPublic:
    """Readings of a device with start <= ts < end, oldest first."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise Problem(422, "invalid_range", "start must be before end")
    rows = await services.telemetry.query(device, start, end, metric=metric, limit=limit)
    readings = [
        ReadingPublic(sensor=r.sensor, metric=r.metric, ts=r.ts, value=r.value, unit=r.unit)
        for r in rows
    ]
    return ReadingsPublic(
        device=device, start=start, end=end, count=len(readings), readings=readings
    )


@router.get("/{device}/ledger")
def device_ledger(services: ServicesDep, device: DeviceId) -> list[dict[str, object]]:
    """Every message of the device the cloud stored, by (boot, seq)."""
    return services.state.ledger(device)
