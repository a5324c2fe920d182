"""State store: device registry, message ledger, dead letters (SQLAlchemy 2; SQLite, PostgreSQL).

The ledger holds one row per (device, boot, seq) message ever stored; it is what makes ingestion
idempotent and what later answers "what did we never receive".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from leasewatch.wire import GatewayStatus, RejectReason, TelemetryBatch

metadata = MetaData()

devices = Table(
    "devices",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_message_at", DateTime(timezone=True)),
    Column("latest_reading_at", DateTime(timezone=True)),
    Column("last_boot", String(64)),
    Column("status", String(16), nullable=False, default="unknown"),
    Column("status_at", DateTime(timezone=True)),
    Column("messages", Integer, nullable=False, default=0),
    Column("readings", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
)

message_ledger = Table(
    "message_ledger",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("boot", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("readings", Integer, nullable=False),
    Column("historical", Boolean, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("reason", String(40), nullable=False, index=True),
    Column("topic", String(256), nullable=False),
    Column("detail", String(1000), nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

rejection_counts = Table(
    "rejection_counts",
    metadata,
    Column("reason", String(40), primary_key=True),
    Column("count", Integer, nullable=False),
)

DEAD_LETTER_PAYLOAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message the ingestor refused, kept for an operator to inspect."""

    received_at: datetime
    reason: RejectReason
    topic: str
    detail: str
    payload: bytes


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; everything we store is UTC."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


class StateStore:
    """Blocking state-store operations; the async ingestor calls them in a worker thread."""

    def __init__(self, url: str, dead_letter_max: int = 10_000) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername.startswith("sqlite") and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(parsed, pool_pre_ping=True)
        self.dead_letter_max = dead_letter_max
        self._insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        metadata.create_all(self.engine)

    def known_keys(self, keys: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Which (device, boot, seq) keys are already in the ledger."""
        wanted = list(keys)
        if not wanted:
            return set()
        key = tuple_(message_ledger.c.device, message_ledger.c.boot, message_ledger.c.seq)
        with self.engine.connect() as conn:
            columns = select(message_ledger.c.device, message_ledger.c.boot, message_ledger.c.seq)
            rows = conn.execute(columns.where(key.in_(wanted))).all()
        return {(r[0], r[1], r[2]) for r in rows}

    def record_stored(
        self, batches: Sequence[TelemetryBatch], duplicates: Sequence[TelemetryBatch], now: datetime
    ) -> None:
        """Ledger the stored messages and update each device's registry row, in one transaction."""
        with self.engine.begin() as conn:
            for batch in batches:
                stmt = self._insert(message_ledger).values(
                    device=batch.device,
                    boot=batch.boot,
                    seq=batch.seq,
                    sent_at=batch.sent_at,
                    received_at=now,
                    readings=len(batch.readings),
                    historical=batch.historical,
                )
                conn.execute(stmt.on_conflict_do_nothing())
                self._touch_device(conn, batch, now)
            for batch in duplicates:
                self._ensure_device(conn, batch.device, now)
                conn.execute(
                    update(devices)
                    .where(devices.c.device == batch.device)
                    .values(duplicates=devices.c.duplicates + 1)
                )

    def _ensure_device(self, conn: object, device: str, now: datetime) -> None:
        stmt = self._insert(devices).values(
            device=device, first_seen=now, status="unknown", messages=0, readings=0, duplicates=0
        )
        conn.execute(stmt.on_conflict_do_nothing())  # type: ignore[attr-defined]

    def _touch_device(self, conn: object, batch: TelemetryBatch, now: datetime) -> None:
        self._ensure_device(conn, batch.device, now)
        values: dict[str, object] = {
            "messages": devices.c.messages + 1,
            "readings": devices.c.readings + len(batch.readings),
        }
        if not batch.historical:  # a replayed backlog never overwrites the latest state
            newest = max(r.ts for r in batch.readings)
            values["last_message_at"] = now
            values["last_boot"] = batch.boot
            values["latest_reading_at"] = func.coalesce(
                func.max(devices.c.latest_reading_at, newest)
                if self.engine.dialect.name == "sqlite"
                else func.greatest(devices.c.latest_reading_at, newest),
                newest,
            )
        conn.execute(update(devices).where(devices.c.device == batch.device).values(**values))  # type: ignore[attr-defined]

    def record_status(self, status: GatewayStatus, now: datetime) -> None:
        """Remember a gateway's online/offline state unless a newer one is already known."""
        with self.engine.begin() as conn:
            self._ensure_device(conn, status.device, now)
            conn.execute(
                update(devices)
                .where(devices.c.device == status.device)
                .where((devices.c.status_at.is_(None)) | (devices.c.status_at <= status.ts))
                .values(status=status.state, status_at=status.ts)
            )

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

    def _trim_dead_letters(self, conn: object) -> None:
        newest_kept = (
            select(dead_letters.c.id)
            .order_by(dead_letters.c.id.desc())
            .offset(self.dead_letter_max)
            .limit(1)
            .scalar_subquery()
        )
        conn.execute(delete(dead_letters).where(dead_letters.c.id <= newest_kept))  # type: ignore[attr-defined]

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
            Rejection(
                _aware(r.received_at) or r.received_at,
                RejectReason(r.reason),
                r.topic,
                r.detail,
                r.payload,
            )
            for r in rows
        ]

    def devices(self) -> list[dict[str, object]]:
        """Registry rows of every device, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices).order_by(devices.c.device)).mappings().all()
        return [
            {k: _aware(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows
        ]

    def ledger(self, device: str) -> list[dict[str, object]]:
        """Every ledgered message of a device, in (boot, seq) order."""
        query = (
            select(message_ledger)
            .where(message_ledger.c.device == device)
            .order_by(message_ledger.c.boot, message_ledger.c.seq)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
