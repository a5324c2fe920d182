"""State store: device registry, message ledger, rollups, dead letters (SQLAlchemy 2).

SQLite by default, PostgreSQL in production. The ledger holds one row per (device, boot, seq)
message ever stored: the insert that wins the primary key is the one that counts, so two
ingestor workers handed the same message never count it, nor roll it up, twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Select,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from cloud.completeness import DayCompleteness, LedgerRow, completeness
from cloud.rollups import RollupRow, aggregate
from cloud.schema import (
    dead_letters,
    devices,
    duplicate_counts,
    gateway_health,
    machine_events,
    message_ledger,
    rejection_counts,
    rollups,
)
from cloud.sqlite_batch import SqliteBatchWrites, Stamp, touch_rows
from cloud.sqlite_files import attach_detection, move_detection_tables
from cloud.sqlite_rows import ValuesStatement
from leasewatch.wire import GatewayHealth, GatewayStatus, RejectReason, TelemetryBatch

DEAD_LETTER_PAYLOAD_BYTES = 4096
#: A stored status or health report stamped further than this ahead of the cloud's clock yields
#: to any later one (see `StateStore._health_statement`).
STAMP_AHEAD_SLACK = timedelta(minutes=5)
_ROLLUP_COLUMNS = "device, sensor, metric, resolution_s, bucket, unit, count, sum, min, max"
_ROLLUP_SQLITE = ValuesStatement(
    f"INSERT INTO rollups ({_ROLLUP_COLUMNS})",
    10,
    " ON CONFLICT (device, sensor, metric, resolution_s, bucket) DO UPDATE SET"
    " count = rollups.count + excluded.count, sum = rollups.sum + excluded.sum,"
    " min = MIN(rollups.min, excluded.min), max = MAX(rollups.max, excluded.max)",
)
_ROLLUP_UNNEST = (
    "INSERT INTO rollups (device, sensor, metric, resolution_s, bucket, unit, count, sum, min, max)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::int[], %b::timestamptz[],"
    " %b::text[], %b::int[], %b::float8[], %b::float8[], %b::float8[])"
    " ON CONFLICT (device, sensor, metric, resolution_s, bucket) DO UPDATE SET"
    " count = rollups.count + excluded.count, sum = rollups.sum + excluded.sum,"
    " min = LEAST(rollups.min, excluded.min), max = GREATEST(rollups.max, excluded.max)"
)
_KNOWN_UNNEST = (
    "SELECT l.device, l.boot, l.seq FROM message_ledger AS l"
    " JOIN unnest(%b::text[], %b::text[], %b::int[]) AS k(device, boot, seq)"
    " ON l.device = k.device AND l.boot = k.boot AND l.seq = k.seq"
)
_CHUNK = 500  # rows per multi-row statement (SQLite's bound-parameter limit is far above)
_MIGRATION_LOCK = 72_450_001  # pg_advisory_lock key: one worker migrates at a time


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message the ingestor refused, kept for an operator to inspect."""

    received_at: datetime
    reason: RejectReason
    topic: str
    detail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """What record_stored did: messages that counted, and those another worker already had."""

    stored: list[TelemetryBatch]
    duplicates: list[TelemetryBatch]


def _aware(ts: Any) -> Any:
    """SQLite gives naive datetimes back; everything we store is UTC."""
    if isinstance(ts, datetime) and ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts


def _is_file(database: str | None) -> bool:
    """A SQLite database on disk (not in memory)."""
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


def _as_is(ts: datetime) -> datetime:
    return ts


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL (readers never block the writer), waits for a busy writer, durable commits."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _status_update() -> Any:
    """A gateway's status, kept unless a newer one is stored (see `_health_statement`)."""
    d, at = devices.c, bindparam("at", type_=DateTime(timezone=True))
    return (
        update(devices)
        .where(d.device == bindparam("d"))
        .where(
            d.status_at.is_(None)
            | (d.status_at <= at)
            | (d.status_at > bindparam("ahead", type_=DateTime(timezone=True)))
        )
        .values(status=bindparam("state"), status_at=at)
    )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (serialised across workers on PostgreSQL)."""
    config = Config()
    config.set_main_option("script_location", "cloud:migrations")
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def state_engine(url: str) -> Engine:
    """An engine on the state store at `url`, as its every reader and writer must open it.

    PostgreSQL URLs without a driver get psycopg 3. A SQLite file gets WAL and durable commits,
    and its detection file attached (`cloud.sqlite_files`): an engine made otherwise does
    not see the detection tables (detector states, alerts and their deliveries).
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite") and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if _is_file(parsed.database):
            attach_detection(engine, str(parsed.database))
    return engine


def _two_files(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and _is_file(engine.url.database)


class StateStore:
    """Blocking state-store operations; the async ingestor calls them in a worker thread."""

    def __init__(self, url: str, dead_letter_max: int = 10_000) -> None:
        self.engine: Engine = state_engine(url)
        self.dead_letter_max = dead_letter_max
        self._postgres = self.engine.dialect.name == "postgresql"
        self._insert = pg_insert if self._postgres else sqlite_insert
        self._status_update = _status_update()
        self._health_upsert = self._health_statement()
        self._touch_statement = self._touch_update()
        # a datetime as the dialect stores it (SQLite: text), for statements made beforehand
        stored = DateTime(timezone=True).dialect_impl(self.engine.dialect)
        self._stamp: Stamp = stored.bind_processor(self.engine.dialect) or _as_is
        migrate(self.engine)
        if _two_files(self.engine):
            move_detection_tables(self.engine)

    def _health_statement(self) -> Any:
        """Upsert of a gateway's health report, kept only when newer than the stored one.

        A report stamped ahead of the cloud (a gateway clock running ahead) must not hide the
        reports after it (from the same gateway once its clock is right): a stored report
        stamped past `ahead` (now + STAMP_AHEAD_SLACK) yields to any later one.
        """
        stmt = self._insert(gateway_health)
        h = gateway_health.c
        newer = (stmt.excluded.ts > h.ts) | (h.ts > bindparam("ahead", type_=h.ts.type))
        updated = {name: stmt.excluded[name] for name in ("boot", "ts", "received_at", "report")}
        return stmt.on_conflict_do_update(index_elements=["device"], set_=updated, where=newer)

    def _least(self, a: Any, b: Any) -> Any:
        return func.least(a, b) if self._postgres else func.min(a, b)

    def _touch_update(self) -> Any:
        """Counters, and for live data the latest state, of one device (`_touch_devices`)."""
        stamp = DateTime(timezone=True)
        newest, at = bindparam("newest", type_=stamp), bindparam("at", type_=stamp)
        c = devices.c
        return (
            update(devices)
            .where(c.device == bindparam("d"))
            .values(
                messages=c.messages + bindparam("m"),
                readings=c.readings + bindparam("r"),
                last_message_at=func.coalesce(at, c.last_message_at),
                last_boot=func.coalesce(bindparam("boot"), c.last_boot),
                latest_reading_at=func.coalesce(
                    self._greatest(c.latest_reading_at, newest), newest, c.latest_reading_at
                ),
            )
        )

    def _greatest(self, a: Any, b: Any) -> Any:
        return func.greatest(a, b) if self._postgres else func.max(a, b)

    # --- registry -------------------------------------------------------------------------

    def register_device(self, device: str, now: datetime) -> None:
        """Make a device known (provisioning); a no-op when it already is."""
        with self.engine.begin() as conn:
            self._ensure_devices(conn, {device}, now)

    def is_registered(self, device: str) -> bool:
        """Whether the registry knows this device."""
        with self.engine.connect() as conn:
            found = conn.execute(select(devices.c.device).where(devices.c.device == device))
            return found.first() is not None

    def registered(self, candidates: Iterable[str]) -> set[str]:
        """The subset of candidate device ids the registry knows."""
        wanted = sorted(set(candidates))
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices.c.device).where(devices.c.device.in_(wanted)))
            return {r[0] for r in rows}

    # --- ledger ---------------------------------------------------------------------------

    def known_keys(self, keys: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Which (device, boot, seq) keys are already in the ledger.

        PostgreSQL: one join with `unnest` of the keys, which probes the primary key per key.
        A row-value `IN` list let the planner match on the one value the keys shared (the
        boot of a whole fleet run) and test every ledger row of it against 500 alternatives:
        445 ms per chunk on a 60,000-message ledger, growing with it; the join took 4-15 ms.
        """
        wanted = list(keys)
        if self._postgres:
            return self._known_keys_postgres(wanted)
        c = message_ledger.c
        found: set[tuple[str, str, int]] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                query = select(c.device, c.boot, c.seq).where(
                    tuple_(c.device, c.boot, c.seq).in_(chunk)
                )
                found |= {(r[0], r[1], r[2]) for r in conn.execute(query)}
        return found

    def _known_keys_postgres(
        self, wanted: Sequence[tuple[str, str, int]]
    ) -> set[tuple[str, str, int]]:
        if not wanted:
            return set()
        columns = tuple(list(column) for column in zip(*wanted, strict=True))
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(_KNOWN_UNNEST, columns)
            return {(r[0], r[1], r[2]) for r in rows}

    def record_stored(
        self,
        batches: Sequence[TelemetryBatch],
        duplicates: Sequence[TelemetryBatch],
        now: datetime,
        reports: Sequence[GatewayStatus | GatewayHealth] = (),
        rollups: list[RollupRow] | None = None,
    ) -> StoredOutcome:
        """Ledger stored messages, roll them up, update the registry: one transaction.

        Statements are batched (one per table and chunk, not per message): the ledger insert
        returns the keys it won, and only those messages are counted and rolled up. The
        batch's status and health `reports` go in the same transaction (one commit, one
        fsync on SQLite, per batch instead of one more per report). `rollups`: the rows of
        `rollup_rows(batches)` if the caller made them beforehand (the ingestor does, while
        its previous batch is recorded).
        """
        # Made before the transaction: on SQLite it holds the main file's write lock from its
        # first write; redone inside only if another worker won some of these messages.
        if rollups is None:
            rollups = self.rollup_rows(batches)
        names = {b.device for b in [*batches, *duplicates]}
        writes = (
            None if self._postgres else SqliteBatchWrites.made(batches, names, now, self._stamp)
        )
        with self.engine.begin() as conn:
            self._statuses_in(conn, [r for r in reports if isinstance(r, GatewayStatus)], now)
            self._healths_in(conn, [r for r in reports if isinstance(r, GatewayHealth)], now)
            if writes is None:
                won = self._ledger_insert(conn, batches, now)
            else:
                won = writes.insert_ledger(conn)
            stored = [b for b in batches if b.key in won]
            lost = [b for b in batches if b.key not in won]
            if writes is None:
                self._ensure_devices(conn, names, now)
                self._touch_devices(conn, stored, now)
            else:
                writes.write_devices(conn, stored if lost else None, now)
            self._count_duplicates(conn, [*duplicates, *lost])
            self._apply_rollups(conn, self.rollup_rows(stored) if lost else rollups)
            self._insert_events(conn, stored)
        return StoredOutcome(stored, lost)

    def _insert_events(self, conn: Connection, stored: Sequence[TelemetryBatch]) -> None:
        rows = [
            {"device": b.device, "sensor": e.sensor, "ts": e.ts, "kind": e.kind,
             "detail": e.detail, "boot": b.boot, "seq": b.seq, "historical": b.historical}
            for b in stored
            for e in b.events
        ]  # fmt: skip
        if rows:
            conn.execute(self._insert(machine_events).on_conflict_do_nothing(), rows)

    def record_health(self, health: GatewayHealth, now: datetime) -> None:
        """Keep a gateway's newest health report (an older one arriving late is ignored)."""
        with self.engine.begin() as conn:
            self._healths_in(conn, [health], now)

    def _healths_in(
        self, conn: Connection, healths: Sequence[GatewayHealth], now: datetime
    ) -> None:
        """Upsert health reports (one statement, row by row: the newest report wins)."""
        if not healths:
            return
        self._ensure_devices(conn, {h.device for h in healths}, now)
        rows = [
            {"device": h.device, "boot": h.boot, "ts": h.ts, "received_at": now,
             "report": h.model_dump_json(), "ahead": now + STAMP_AHEAD_SLACK}
            for h in healths
        ]  # fmt: skip
        conn.execute(self._health_upsert, rows)

    def events(self, device: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Machine events of a device with start <= ts < end, oldest first."""
        e = machine_events.c
        query = (
            select(machine_events)
            .where(e.device == device, e.ts >= start, e.ts < end)
            .order_by(e.ts, e.sensor, e.kind)
        )
        with self.engine.connect() as conn:
            return [{k: _aware(v) for k, v in r.items()} for r in conn.execute(query).mappings()]

    def health(self, device: str) -> GatewayHealth | None:
        """The newest health report of a gateway, if any arrived."""
        query = select(gateway_health.c.report).where(gateway_health.c.device == device)
        with self.engine.connect() as conn:
            report = conn.execute(query).scalar_one_or_none()
        return None if report is None else GatewayHealth.model_validate_json(report)

    def _ledger_insert(
        self, conn: Connection, batches: Sequence[TelemetryBatch], now: datetime
    ) -> set[tuple[str, str, int]]:
        """Insert the ledger rows; the keys this insert won (executemany with RETURNING:
        SQLAlchemy packs the rows into multi-row statements it compiles once)."""
        if not batches:
            return set()
        c = message_ledger.c
        rows = [
            {
                "device": b.device, "boot": b.boot, "seq": b.seq, "sent_at": b.sent_at,
                "received_at": now, "readings": len(b.readings), "historical": b.historical,
            }
            for b in batches
        ]  # fmt: skip
        stmt = self._insert(message_ledger).on_conflict_do_nothing()
        # rowcount is -1 on psycopg 3: the returned rows say which inserts won
        found = conn.execute(stmt.returning(c.device, c.boot, c.seq), rows)
        return {(r[0], r[1], r[2]) for r in found}

    def _ensure_devices(self, conn: Connection, names: set[str], now: datetime) -> None:
        if not names:
            return
        rows = [
            {"device": d, "first_seen": now, "status": "unknown", "messages": 0, "readings": 0,
             "duplicates": 0}
            for d in sorted(names)
        ]  # fmt: skip
        conn.execute(self._insert(devices).on_conflict_do_nothing(), rows)

    def _touch_devices(
        self, conn: Connection, stored: Sequence[TelemetryBatch], now: datetime
    ) -> None:
        # One statement for every device, in device order like the rollups (two workers lock
        # shared gateways' rows alike); a device with only backlog in the batch passes NULLs,
        # which leave its latest state as it was.
        rows = [
            {"d": device, "m": messages, "r": readings, "newest": newest, "boot": boot, "at": at}
            for device, messages, readings, newest, boot, at in touch_rows(stored, now)
        ]
        if rows:
            conn.execute(self._touch_statement, rows)

    def _count_duplicates(self, conn: Connection, repeated: Sequence[TelemetryBatch]) -> None:
        if not repeated:
            return
        per_device = Counter(b.device for b in repeated)
        per_day = Counter((b.device, b.sent_at.date()) for b in repeated)
        conn.execute(
            update(devices)
            .where(devices.c.device == bindparam("d"))
            .values(duplicates=devices.c.duplicates + bindparam("n")),
            [{"d": d, "n": n} for d, n in sorted(per_device.items())],
        )
        stmt = self._insert(duplicate_counts)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["device", "day"],
                set_={"count": duplicate_counts.c.count + stmt.excluded.count},
            ),
            [{"device": d, "day": day, "count": n} for (d, day), n in per_day.items()],
        )

    def rollup_rows(self, stored: Sequence[TelemetryBatch]) -> list[RollupRow]:
        """The rollup deltas of stored messages as upsert rows (sorted on PostgreSQL)."""
        rows = aggregate(stored).rows(self._bucket_param if self._postgres else int)
        return sorted(rows) if self._postgres else rows

    def _apply_rollups(self, conn: Connection, rows: list[RollupRow]) -> None:
        """Upsert rollup rows.

        PostgreSQL: every row in one INSERT ... SELECT FROM unnest(arrays), sorted, so
        concurrent workers lock shared buckets in one fixed order (no deadlocks). SQLite (one
        writer at a time, in-process): multi-row VALUES statements in any order (not an
        executemany: see `cloud.sqlite_rows`).
        """
        if not rows:
            return
        if self._postgres:
            columns = tuple(list(column) for column in zip(*rows, strict=True))
            conn.exec_driver_sql(_ROLLUP_UNNEST, columns)
        else:
            for sql, params in _ROLLUP_SQLITE.statements(rows):
                conn.exec_driver_sql(sql, params)

    @staticmethod
    def _bucket_param(epoch: int) -> Any:
        """A bucket's start as PostgreSQL's column takes it (SQLite's takes the epoch seconds
        themselves: `cloud.schema.BucketStart`)."""
        return datetime.fromtimestamp(epoch, UTC)

    def record_status(self, status: GatewayStatus, now: datetime) -> None:
        """Remember a gateway's online/offline state unless a newer one is already known."""
        with self.engine.begin() as conn:
            self._statuses_in(conn, [status], now)

    def _statuses_in(
        self, conn: Connection, statuses: Sequence[GatewayStatus], now: datetime
    ) -> None:
        """Keep each status unless a newer one is stored (one statement, row by row)."""
        if not statuses:
            return
        self._ensure_devices(conn, {s.device for s in statuses}, now)
        rows = [
            {"d": s.device, "state": s.state, "at": s.ts, "ahead": now + STAMP_AHEAD_SLACK}
            for s in statuses
        ]
        conn.execute(self._status_update, rows)

    # --- rejections -----------------------------------------------------------------------

    def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Count rejections by reason and keep them as bounded dead letters."""
        if not rejections:
            return
        with self.engine.begin() as conn:
            for item in rejections:
                conn.execute(
                    dead_letters.insert().values(
                        received_at=item.received_at,
                        reason=item.reason.value,
                        topic=item.topic[:256],
                        detail=item.detail[:1000],
                        payload=item.payload[:DEAD_LETTER_PAYLOAD_BYTES],
                    )
                )
                stmt = self._insert(rejection_counts).values(reason=item.reason.value, count=1)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["reason"], set_={"count": rejection_counts.c.count + 1}
                    )
                )
            self._trim_dead_letters(conn)

    def _trim_dead_letters(self, conn: Connection) -> None:
        newest_kept = (
            select(dead_letters.c.id)
            .order_by(dead_letters.c.id.desc())
            .offset(self.dead_letter_max)
            .limit(1)
            .scalar_subquery()
        )
        conn.execute(delete(dead_letters).where(dead_letters.c.id <= newest_kept))

    def rejection_counts(self) -> dict[str, int]:
        """Lifetime count of rejected messages by reason."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(rejection_counts.c.reason, rejection_counts.c.count)).all()
        return {str(reason): int(count) for reason, count in rows}

    def recent_rejections(self, limit: int = 100) -> list[Rejection]:
        """Newest dead letters first."""
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Rejection(_aware(r.received_at), RejectReason(r.reason), r.topic, r.detail, r.payload)
            for r in rows
        ]

    # --- reads ----------------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """Registry rows of every device, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices).order_by(devices.c.device)).mappings().all()
        return [{k: _aware(v) for k, v in r.items()} for r in rows]

    def ledger(self, device: str) -> list[dict[str, Any]]:
        """Every ledgered message of a device, in (boot, seq) order."""
        query = (
            select(message_ledger)
            .where(message_ledger.c.device == device)
            .order_by(message_ledger.c.boot, message_ledger.c.seq)
        )
        with self.engine.connect() as conn:
            return [{k: _aware(v) for k, v in r.items()} for r in conn.execute(query).mappings()]

    def completeness(
        self, device: str, first_day: date, last_day: date, late_after: timedelta
    ) -> list[DayCompleteness]:
        """Per-day completeness of a device between two days (inclusive)."""
        start = datetime.combine(first_day, datetime.min.time(), UTC)
        end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
        dup_query = select(duplicate_counts.c.day, duplicate_counts.c.count).where(
            duplicate_counts.c.device == device,
            duplicate_counts.c.day.between(first_day, last_day),
        )
        with self.engine.connect() as conn:
            rows = [
                LedgerRow(
                    r.boot,
                    r.seq,
                    _aware(r.sent_at),
                    _aware(r.received_at),
                    r.readings,
                    r.historical,
                )
                for r in conn.execute(self._completeness_rows(device, start, end))
            ]
            dups: dict[date, int] = {row[0]: row[1] for row in conn.execute(dup_query)}
        return completeness(rows, dups, late_after, (first_day, last_day))

    @staticmethod
    def _completeness_rows(device: str, start: datetime, end: datetime) -> Select[Any]:
        """The ledger rows that decide the completeness of messages sent in [start, end).

        Per boot with messages sent then: its rows from the message just before the smallest
        seq sent then up to the largest (primary key range scans); the rows sent at other times
        only bound gaps. Never the device's whole ledger.
        """
        ledger = message_ledger.c
        sent = (
            select(ledger.boot, func.min(ledger.seq).label("lo"), func.max(ledger.seq).label("hi"))
            .where(ledger.device == device, ledger.sent_at >= start, ledger.sent_at < end)
            .group_by(ledger.boot)
            .cte("sent")
        )
        before = message_ledger.alias("before")
        previous = (
            select(func.max(before.c.seq))
            .where(before.c.device == device, before.c.boot == sent.c.boot)
            .where(before.c.seq < sent.c.lo)
            .scalar_subquery()
        )
        lo = func.coalesce(previous, sent.c.lo).label("lo")
        span = select(sent.c.boot, lo, sent.c.hi).cte("span")
        return select(message_ledger).join(
            span,
            (ledger.device == device)
            & (ledger.boot == span.c.boot)
            & (ledger.seq >= span.c.lo)
            & (ledger.seq <= span.c.hi),
        )

    def rollups(
        self, device: str, resolution_s: int, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Rollup buckets of a device with start <= bucket < end, by measure and time."""
        r = rollups.c
        query = (
            select(rollups)
            .where(r.device == device, r.resolution_s == resolution_s)
            .where(r.bucket >= start, r.bucket < end)
            .order_by(r.sensor, r.metric, r.bucket)
        )
        with self.engine.connect() as conn:
            return [
                {k: _aware(v) for k, v in row.items()} for row in conn.execute(query).mappings()
            ]

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
