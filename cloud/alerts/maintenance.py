"""Planned maintenance windows: findings inside one are recorded as suppressed, not delivered."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update

from cloud.alerts.records import MaintenanceWindow, utc, window_from_row
from cloud.schema import maintenance_windows

MAX_WINDOW = timedelta(days=366)


class MaintenanceWindowNotFoundError(LookupError):
    """No maintenance window has this id."""


class InvalidWindowError(ValueError):
    """A window that ends before it starts, or lasts longer than MAX_WINDOW."""


def _check(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise InvalidWindowError("a maintenance window must end after it starts")
    if ends_at - starts_at > MAX_WINDOW:
        raise InvalidWindowError(f"a maintenance window lasts at most {MAX_WINDOW.days} days")


def windows_between(
    conn: Connection, devices: Collection[str], start: datetime, end: datetime
) -> list[MaintenanceWindow]:
    """Windows for these devices (or all devices) overlapping [start, end]."""
    m = maintenance_windows
    query = (
        select(m)
        .where(m.c.starts_at <= utc(end), m.c.ends_at > utc(start))
        .where(or_(m.c.device.is_(None), m.c.device.in_(sorted(devices))))
        .order_by(m.c.id)
    )
    return [window_from_row(r) for r in conn.execute(query).mappings()]


class MaintenanceCalendar:
    """Create, read, change and delete maintenance windows (blocking)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        device: str | None,
        *,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
        created_by: str,
        now: datetime,
    ) -> MaintenanceWindow:
        """Plan a window for one device, or for every device when `device` is None."""
        _check(starts_at, ends_at)
        m = maintenance_windows
        stmt = (
            insert(m)
            .values(
                device=device,
                starts_at=utc(starts_at),
                ends_at=utc(ends_at),
                reason=reason,
                created_by=created_by,
                created_at=utc(now),
            )
            .returning(*m.c)
        )
        with self.engine.begin() as conn:
            return window_from_row(conn.execute(stmt).mappings().one())

    def get(self, window_id: int) -> MaintenanceWindow:
        """One window, or MaintenanceWindowNotFoundError."""
        m = maintenance_windows
        with self.engine.connect() as conn:
            row = conn.execute(select(m).where(m.c.id == window_id)).mappings().first()
        if row is None:
            raise MaintenanceWindowNotFoundError(f"no maintenance window {window_id}")
        return window_from_row(row)

    def windows(
        self, *, device: str | None = None, ending_after: datetime | None = None
    ) -> list[MaintenanceWindow]:
        """Windows by start time; only those covering `device` / ending after a time if given."""
        m = maintenance_windows
        query = select(m).order_by(m.c.starts_at, m.c.id)
        if device is not None:
            query = query.where(or_(m.c.device.is_(None), m.c.device == device))
        if ending_after is not None:
            query = query.where(m.c.ends_at > utc(ending_after))
        with self.engine.connect() as conn:
            return [window_from_row(r) for r in conn.execute(query).mappings()]

    def replace(
        self,
        window_id: int,
        device: str | None,
        *,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
    ) -> MaintenanceWindow:
        """Change a window's scope, times and reason (who created it stays)."""
        _check(starts_at, ends_at)
        m = maintenance_windows
        stmt = (
            update(m)
            .where(m.c.id == window_id)
            .values(device=device, starts_at=utc(starts_at), ends_at=utc(ends_at), reason=reason)
            .returning(*m.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            raise MaintenanceWindowNotFoundError(f"no maintenance window {window_id}")
        return window_from_row(row)

    def delete(self, window_id: int) -> None:
        """Remove a window; alerts it already suppressed keep saying so."""
        m = maintenance_windows
        with self.engine.begin() as conn:
            gone = conn.execute(delete(m).where(m.c.id == window_id).returning(m.c.id)).first()
        if gone is None:
            raise MaintenanceWindowNotFoundError(f"no maintenance window {window_id}")
