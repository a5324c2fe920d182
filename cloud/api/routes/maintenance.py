"""Planned maintenance windows: alerts raised inside one are recorded but not delivered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from cloud.alerts.maintenance import (
    InvalidWindowError,
    MaintenanceCalendar,
    MaintenanceWindowNotFoundError,
)
from cloud.alerts.records import MaintenanceWindow
from cloud.api.deps import DeviceScope, PlanMaintenance, ReadAlerts, ServicesDep
from cloud.api.problems import Problem
from leasewatch.wire import DeviceId

router = APIRouter(prefix="/v1/maintenance", tags=["maintenance"], dependencies=[DeviceScope])

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Person = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


def get_calendar(services: ServicesDep) -> MaintenanceCalendar:
    """Maintenance windows on the state store's engine."""
    return MaintenanceCalendar(services.state.engine)


CalendarDep = Annotated[MaintenanceCalendar, Depends(get_calendar)]


class WindowChange(BaseModel):
    """A window's scope, times and reason."""

    device: DeviceId | None = Field(None, description="null: every device")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: Reason


class WindowCreate(WindowChange):
    """A window to plan, and who plans it."""

    created_by: Person


class WindowPublic(BaseModel):
    """A planned maintenance window."""

    id: int
    device: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    active: bool


def _public(window: MaintenanceWindow, now: datetime) -> WindowPublic:
    return WindowPublic(
        id=window.id,
        device=window.device,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        reason=window.reason,
        created_by=window.created_by,
        created_at=window.created_at,
        active=window.starts_at <= now < window.ends_at,
    )


def _not_found(err: MaintenanceWindowNotFoundError) -> Problem:
    return Problem(404, "maintenance_window_not_found", str(err))


@router.post("", status_code=201, response_model=WindowPublic, dependencies=[PlanMaintenance])
def create_window(calendar: CalendarDep, body: WindowCreate) -> WindowPublic:
    """Plan a maintenance window for one device, or every device (device null)."""
    now = datetime.now(UTC)
    try:
        window = calendar.create(
            body.device,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            reason=body.reason,
            created_by=body.created_by,
            now=now,
        )
    except InvalidWindowError as err:
        raise Problem(422, "invalid_range", str(err)) from err
    return _public(window, now)


@router.get("", response_model=list[WindowPublic], dependencies=[ReadAlerts])
def list_windows(
    calendar: CalendarDep,
    device: Annotated[DeviceId | None, Query(description="Windows covering it")] = None,
    include_past: bool = False,
) -> list[WindowPublic]:
    """Windows by start time: current and future ones unless include_past."""
    now = datetime.now(UTC)
    found = calendar.windows(device=device, ending_after=None if include_past else now)
    return [_public(w, now) for w in found]


@router.get("/{window_id}", response_model=WindowPublic, dependencies=[ReadAlerts])
def get_window(calendar: CalendarDep, window_id: int) -> WindowPublic:
    """One maintenance window."""
    try:
        return _public(calendar.get(window_id), datetime.now(UTC))
    except MaintenanceWindowNotFoundError as err:
        raise _not_found(err) from err


@router.put("/{window_id}", response_model=WindowPublic, dependencies=[PlanMaintenance])
def replace_window(calendar: CalendarDep, window_id: int, body: WindowChange) -> WindowPublic:
    """Change a window's device, times and reason."""
    try:
        window = calendar.replace(
            window_id,
            body.device,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            reason=body.reason,
        )
    except MaintenanceWindowNotFoundError as err:
        raise _not_found(err) from err
    except InvalidWindowError as err:
        raise Problem(422, "invalid_range", str(err)) from err
    return _public(window, datetime.now(UTC))


@router.delete("/{window_id}", status_code=204, dependencies=[PlanMaintenance])
def delete_window(calendar: CalendarDep, window_id: int) -> Response:
    """Remove a window; alerts it suppressed keep saying so."""
    try:
        calendar.delete(window_id)
    except MaintenanceWindowNotFoundError as err:
        raise _not_found(err) from err
    return Response(status_code=204)
