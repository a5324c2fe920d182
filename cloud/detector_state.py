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


def lease_rows(
    conn: Connection,
    devices: Iterable[str],
    lease: str,
    now: datetime,
    *,
    skip_locked: bool = False,
) -> dict[str, str]:
    """Take the per-device lease rows (`lease` detector) in device order: {device: state text}.

    PostgreSQL: one SELECT ... FOR UPDATE of the rows in device order (with `skip_locked`,
    devices another worker holds are left out and no row is created); rows still missing are
    inserted (`{}`, in device order) and locked after. SQLite serialises writers: the missing
    rows are inserted first, which makes this transaction the writer at once.
    """
    wanted = sorted(set(devices))
    if not wanted:
        return {}
    if conn.dialect.name != "postgresql":
        _insert_missing(conn, wanted, lease, now)
        return _select_leases(conn, wanted, lease, skip_locked=skip_locked)
    held = _select_leases(conn, wanted, lease, skip_locked=skip_locked)
    missing = [d for d in wanted if d not in held]
    if missing and not skip_locked:
        _insert_missing(conn, missing, lease, now)
        held.update(_select_leases(conn, missing, lease, skip_locked=False))
    return held


def _insert_missing(conn: Connection, devices: list[str], lease: str, now: datetime) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    rows = [{"device": d, "detector": lease, "state": "{}", "updated_at": now} for d in devices]
    conn.execute(insert(detector_state).on_conflict_do_nothing(), rows)


def _select_leases(
    conn: Connection, devices: list[str], lease: str, *, skip_locked: bool
) -> dict[str, str]:
    query = (
        select(_S.device, _S.state)
        .where(_S.device.in_(devices), _S.detector == lease)
        .order_by(_S.device)
        .with_for_update(skip_locked=skip_locked)
    )
    return {str(device): str(text) for device, text in conn.execute(query)}


def load_state_texts(
    conn: Connection, devices: Sequence[str], *, but: str = ""
) -> dict[str, dict[str, str]]:
    """Saved detector states (JSON text) of these devices but `but`: {device: {name: text}}."""
    found: dict[str, dict[str, str]] = {d: {} for d in devices}
    if devices:
        query = select(_S.device, _S.detector, _S.state).where(
            _S.device.in_(list(devices)), _S.detector != but
        )
        for device, name, text in conn.execute(query):
            found[device][name] = text
    return found


_UPSERT_UNNEST = (
    "INSERT INTO detector_state (device, detector, state, updated_at)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[])"
    " ON CONFLICT (device, detector) DO UPDATE SET"
    " state = excluded.state, updated_at = excluded.updated_at"
)


def save_state_texts(conn: Connection, rows: Iterable[tuple[str, str, str]], now: datetime) -> None:
    """Insert or replace many (device, detector, state JSON text) rows.

    PostgreSQL: one INSERT ... SELECT FROM unnest(arrays) in key order (one round trip, and
    concurrent workers touch rows in the same order); SQLite: one executemany.
    """
    ordered = sorted(rows)
    if not ordered:
        return
    at = now.astimezone(UTC)
    if conn.dialect.name == "postgresql":
        devices, names, texts = (list(column) for column in zip(*ordered, strict=True))
        conn.exec_driver_sql(_UPSERT_UNNEST, (devices, names, texts, [at] * len(ordered)))
        return
    stmt = sqlite_insert(detector_state)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["device", "detector"],
            set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
        ),
        [{"device": d, "detector": n, "state": t, "updated_at": at} for d, n, t in ordered],
    )


def _decode(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"detector state must be a JSON object, found {type(value).__name__}")
    return value
