"""An ingest batch's ledger and registry writes on SQLite, made before its transaction.

SQLite has one write lock per file, taken by a transaction's first write and held to its
commit; the workers take turns on the main file's (ingest) lock, so the time it is held bounds
ingestion (docs/ingestion.md, seventh round). What runs under it should be SQLite's own work.
These rows are made before the transaction begins (Python: tuples, datetimes as SQLite's text),
and written as multi-row `VALUES` statements, one step per 512 rows (`cloud.sqlite_rows`),
where SQLAlchemy's `executemany` processed every parameter under the lock and (for the
registry's inserts and updates) stepped each row on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from cloud.sqlite_rows import ValuesStatement
from leasewatch.wire import TelemetryBatch

#: A datetime as the column stores it (SQLAlchemy's text for SQLite).
Stamp = Callable[[datetime], Any]
#: One device's counters and latest state from a batch: device, messages, readings, newest
#: reading, its boot, when (the last three None for a device with only backlog in the batch).
TouchRow = tuple[str, int, int, datetime | None, str | None, datetime | None]

_LEDGER = ValuesStatement(
    "INSERT INTO message_ledger (device, boot, seq, sent_at, received_at, readings, historical)",
    7,
    " ON CONFLICT DO NOTHING RETURNING device, boot, seq",
)
_DEVICES = ValuesStatement(
    "INSERT INTO devices (device, first_seen, status, messages, readings, duplicates)",
    6,
    " ON CONFLICT DO NOTHING",
)
# SQLite names a VALUES list's columns column1, column2, ...: device, messages, readings,
# newest, boot, at (a TouchRow). NULLs keep the latest state (max() of a NULL is NULL).
_TOUCH = ValuesStatement(
    "UPDATE devices SET messages = devices.messages + v.column2,"
    " readings = devices.readings + v.column3,"
    " last_message_at = coalesce(v.column6, devices.last_message_at),"
    " last_boot = coalesce(v.column5, devices.last_boot),"
    " latest_reading_at = coalesce(max(devices.latest_reading_at, v.column4), v.column4,"
    " devices.latest_reading_at)"
    " FROM (",
    6,
    ") AS v WHERE devices.device = v.column1",
)

Statements = list[tuple[str, tuple[Any, ...]]]


def touch_rows(stored: Sequence[TelemetryBatch], now: datetime) -> list[TouchRow]:
    """Per device, in device order: messages and readings stored, and the newest live reading.

    A backlog (historical messages) never moves a device's latest state.
    """
    counts: dict[str, list[int]] = {}
    latest: dict[str, tuple[datetime, str]] = {}
    for batch in stored:
        total = counts.setdefault(batch.device, [0, 0])
        total[0] += 1
        total[1] += len(batch.readings)
        if not batch.historical and batch.readings:
            newest = max(r.ts for r in batch.readings)
            if batch.device not in latest or newest > latest[batch.device][0]:
                latest[batch.device] = (newest, batch.boot)
    rows: list[TouchRow] = []
    for device, (messages, readings) in sorted(counts.items()):
        stamp, boot = latest.get(device, (None, None))
        rows.append((device, messages, readings, stamp, boot, None if stamp is None else now))
    return rows


@dataclass
class SqliteBatchWrites:
    """The statements of one batch's ledger insert and registry writes, ready to run."""

    ledger: Statements
    devices: Statements
    touch: Statements
    stamp: Stamp

    @classmethod
    def made(
        cls, batches: Sequence[TelemetryBatch], names: Iterable[str], now: datetime, stamp: Stamp
    ) -> SqliteBatchWrites:
        """Every row of the batch, as if each message is new (the usual case)."""
        at = stamp(now)
        ledger = [
            (b.device, b.boot, b.seq, stamp(b.sent_at), at, len(b.readings), int(b.historical))
            for b in batches
        ]
        devices = [(d, at, "unknown", 0, 0, 0) for d in sorted(names)]
        return cls(
            list(_LEDGER.statements(ledger)),
            list(_DEVICES.statements(devices)),
            _touch_statements(touch_rows(batches, now), stamp),
            stamp,
        )

    def insert_ledger(self, conn: Connection) -> set[tuple[str, str, int]]:
        """Insert the ledger rows; the keys this insert won (the others were stored before)."""
        won: set[tuple[str, str, int]] = set()
        for sql, params in self.ledger:
            won.update((r[0], r[1], r[2]) for r in conn.exec_driver_sql(sql, params))
        return won

    def write_devices(
        self, conn: Connection, stored: Sequence[TelemetryBatch] | None, now: datetime
    ) -> None:
        """Register unknown devices, then count what was stored (`stored`: when only part of
        the batch won the ledger; None: all of it)."""
        for sql, params in self.devices:
            conn.exec_driver_sql(sql, params)
        touch = self.touch
        if stored is not None:
            touch = _touch_statements(touch_rows(stored, now), self.stamp)
        for sql, params in touch:
            conn.exec_driver_sql(sql, params)


def _touch_statements(rows: list[TouchRow], stamp: Stamp) -> Statements:
    stamped = [
        (
            d,
            m,
            r,
            None if newest is None else stamp(newest),
            boot,
            None if at is None else stamp(at),
        )
        for d, m, r, newest, boot, at in rows
    ]
    return list(_TOUCH.statements(stamped))
