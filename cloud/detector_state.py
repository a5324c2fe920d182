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
from cloud.sqlite_rows import ValuesStatement

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
    if conn.dialect.name == "postgresql":
        rows = [{"device": d, "detector": lease, "state": "{}", "updated_at": now} for d in devices]
        conn.execute(pg_insert(detector_state).on_conflict_do_nothing(), rows)
        return
    at = _stored_time(conn, now)
    for sql, params in _INSERT_SQLITE.statements([(d, lease, "{}", at) for d in devices]):
        conn.exec_driver_sql(sql, params)


def _select_leases(
    conn: Connection, devices: list[str], lease: str, *, skip_locked: bool
) -> dict[str, str]:
    lock = ""  # SQLite serialises writers: no row locks
    if conn.dialect.name == "postgresql":
        lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
    mark = placeholders(conn, 1)
    query = (  # placeholders only: the values are parameters
        f"SELECT device, state FROM detector_state WHERE detector = {mark}"  # noqa: S608
        f" AND device IN ({placeholders(conn, len(devices))}) ORDER BY device{lock}"
    )
    return dict(conn.exec_driver_sql(query, (lease, *devices)).all())


def load_state_texts(
    conn: Connection, devices: Sequence[str], *, but: str = ""
) -> dict[str, dict[str, str]]:
    """Saved detector states (JSON text) of these devices but `but`: {device: {name: text}}."""
    found: dict[str, dict[str, str]] = {d: {} for d in devices}
    if devices:
        query = (  # placeholders only: the values are parameters
            "SELECT device, detector, state FROM detector_state"  # noqa: S608
            f" WHERE detector != {placeholders(conn, 1)}"
            f" AND device IN ({placeholders(conn, len(devices))})"
        )
        for device, name, text in conn.exec_driver_sql(query, (but, *devices)).all():
            found[device][name] = text
    return found


def placeholders(conn: Connection, count: int) -> str:
    """`count` positional parameters in the driver's style, for plain SQL (`exec_driver_sql`).

    The batch queries here name up to a batch of devices: SQLAlchemy's expanding IN and row
    processing cost more than the database's own work for them.
    """
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ",".join([mark] * count)


_UPSERT_UNNEST = (
    "INSERT INTO detector_state (device, detector, state, updated_at)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[])"
    " ON CONFLICT (device, detector) DO UPDATE SET"
    " state = excluded.state, updated_at = excluded.updated_at"
)


def save_state_texts(conn: Connection, rows: Iterable[tuple[str, str, str]], now: datetime) -> None:
    """Insert or replace many (device, detector, state JSON text) rows.

    PostgreSQL: one INSERT ... SELECT FROM unnest(arrays) in key order (one round trip, and
    concurrent workers touch rows in the same order); SQLite: multi-row VALUES statements.
    """
    ordered = sorted(rows)
    if not ordered:
        return
    at = now.astimezone(UTC)
    if conn.dialect.name == "postgresql":
        devices, names, texts = (list(column) for column in zip(*ordered, strict=True))
        conn.exec_driver_sql(_UPSERT_UNNEST, (devices, names, texts, [at] * len(ordered)))
        return
    stored = _stored_time(conn, at)
    for sql, params in _UPSERT_SQLITE.statements([(d, n, t, stored) for d, n, t in ordered]):
        conn.exec_driver_sql(sql, params)


# multi-row VALUES, not executemany: see cloud.sqlite_rows
_INSERT_INTO = "INSERT INTO detector_state (device, detector, state, updated_at)"
_INSERT_SQLITE = ValuesStatement(_INSERT_INTO, 4, " ON CONFLICT (device, detector) DO NOTHING")
_UPSERT_SQLITE = ValuesStatement(
    _INSERT_INTO,
    4,
    " ON CONFLICT (device, detector) DO UPDATE SET"
    " state = excluded.state, updated_at = excluded.updated_at",
)


def _stored_time(conn: Connection, at: datetime) -> Any:
    """`at` as the column type stores it on this connection (bound once for many rows)."""
    column = _S.updated_at.type
    bind = column.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return at if bind is None else bind(at)


def _decode(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"detector state must be a JSON object, found {type(value).__name__}")
    return value
