"""Times read back from the state store: SQLite returns naive datetimes, and every one is UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
@overload
def utc(value: datetime | None) -> datetime | None: ...
def utc(value: datetime | None) -> datetime | None:
    """`value` marked UTC when it came back naive; aware values and None as they are."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
