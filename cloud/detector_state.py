"""Per-asset detector state kept in the state store, so any ingestor worker can run a detector.

One row per (device, detector) holds the detector's state as JSON text (plain JSON values only:
numbers, strings, booleans, None, lists and dicts; NaN and infinities round-trip). Call these in
the transaction that also applies the detector's findings (`AlertStore.apply_in`), so state and
alerts move together; `for_update=True` locks the row on PostgreSQL (SQLite serialises writers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.schema import detector_state

_S = detector_state.c


def load_detector_state(
    conn: Connection, device: str, detector: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    """The saved state of one detector on one device, or None when it never saved any."""
    query = select(_S.state).where(_S.device == device, _S.detector == detector)
    if for_update:
        query = query.with_for_update()
    text = conn.execute(query).scalar_one_or_none()
    return None if text is None else _decode(text)


def load_detector_states(conn: Connection, device: str) -> dict[str, dict[str, Any]]:
    """The saved state of every detector on one device, by detector name."""
    query = select(_S.detector, _S.state).where(_S.device == device)
    return {name: _decode(text) for name, text in conn.execute(query)}


def save_detector_state(
    conn: Connection,
    device: str,
    detector: str,
    state: Mapping[str, Any],
    now: datetime | None = None,
) -> None:
    """Insert or replace the state of one detector on one device."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values = {
        "device": device,
        "detector": detector,
        "state": json.dumps(state, sort_keys=True, separators=(",", ":")),
        "updated_at": (now or datetime.now(UTC)).astimezone(UTC),
    }
    stmt = insert(detector_state).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["device", "detector"],
            set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
        )
    )


def lock_devices(
    conn: Connection,
    devices: Iterable[str],
    lease: str,
    now: datetime,
    *,
    skip_locked: bool = False,
) -> list[str]:
    """Take the per-device lease rows (`lease` detector) in device order; the devices now held.

    Missing rows are inserted first (`{}`), so a new device has a row to lock. On PostgreSQL
    the rows are locked FOR UPDATE (with `skip_locked`, devices another worker holds are left
    out); SQLite serialises writers, and the insert makes this transaction the writer at once.
    """
    wanted = sorted(set(devices))
    if not wanted:
        return []
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    rows = [{"device": d, "detector": lease, "state": "{}", "updated_at": now} for d in wanted]
    conn.execute(insert(detector_state).on_conflict_do_nothing(), rows)
    query = (
        select(_S.device)
        .where(_S.device.in_(wanted), _S.detector == lease)
        .order_by(_S.device)
        .with_for_update(skip_locked=skip_locked)
    )
    return [str(r[0]) for r in conn.execute(query)]


def load_states_of(conn: Connection, devices: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every saved detector state of these devices, as {device: {detector: state}}."""
    found: dict[str, dict[str, Any]] = {d: {} for d in devices}
    if devices:
        query = select(_S.device, _S.detector, _S.state).where(_S.device.in_(list(devices)))
        for device, name, text in conn.execute(query):
            found[device][name] = _decode(text)
    return found


def save_states(
    conn: Connection, rows: Iterable[tuple[str, str, Mapping[str, Any]]], now: datetime
) -> None:
    """Insert or replace many (device, detector, state) rows in one statement."""
    values = [
        {"device": d, "detector": name, "updated_at": now.astimezone(UTC),
         "state": json.dumps(state, sort_keys=True, separators=(",", ":"))}
        for d, name, state in rows
    ]  # fmt: skip
    if not values:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(detector_state)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["device", "detector"],
            set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
        ),
        values,
    )


def _decode(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"detector state must be a JSON object, found {type(value).__name__}")
    return value
