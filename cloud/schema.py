"""Tables of the state store. Migrations in cloud/migrations create and evolve them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class BucketStart(TypeDecorator[datetime]):
    """A rollup bucket's start: an aware UTC datetime to Python, stored as the dialect does best.

    PostgreSQL: `timestamptz`. SQLite: whole seconds since the epoch (INTEGER), not
    SQLAlchemy's 26-character datetime text. The bucket is in the rollups' primary key, which
    every reading's upsert seeks and every batch's commit writes: integer keys cost about a
    fifth less CPU per upsert row (docs/ingestion.md, ninth round; migration 0011). Binds take
    datetimes (naive ones are UTC) or epoch seconds; SQL on SQLite reads the column with
    `'unixepoch'` (`date(bucket, 'unixepoch')`).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Integer())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite" or isinstance(value, int):
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or dialect.name != "sqlite":
            return cast("datetime | None", value)
        return datetime.fromtimestamp(int(value), UTC)


devices = Table(
    "devices",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_message_at", DateTime(timezone=True)),
    Column("latest_reading_at", DateTime(timezone=True)),
    Column("last_boot", String(64)),
    Column("status", String(16), nullable=False),
    Column("status_at", DateTime(timezone=True)),
    Column("messages", Integer, nullable=False),
    Column("readings", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
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
    Index("ix_ledger_device_sent", "device", "sent_at"),
)

duplicate_counts = Table(
    "duplicate_counts",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", Integer, nullable=False),
)

rollups = Table(
    "rollups",
    metadata,
    Column("device", String(64), nullable=False),
    Column("sensor", String(64), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("resolution_s", Integer, nullable=False),
    Column("bucket", BucketStart(), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("sum", Float, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    # time-major: a device's buckets of a time range are one key range (migration 0010)
    PrimaryKeyConstraint("device", "resolution_s", "bucket", "sensor", "metric"),
    sqlite_with_rowid=False,  # one B-tree: the rows in key order (migration 0009)
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

# --- alerts (migration 0002) -------------------------------------------------------------

## At most one unresolved alert per (device, detector, key): the de-duplication key. The same
## predicate text is the ON CONFLICT target of AlertStore.apply (PostgreSQL needs it literal).
ACTIVE_ALERT_PREDICATE = "status <> 'resolved'"

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(64), nullable=False),
    Column("detector", String(64), nullable=False),
    Column("key", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("severity_rank", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_evaluated_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_by", String(128)),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledge_note", String(1000)),
    Column("resolved_by", String(128)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolve_note", String(1000)),
    Column("summary", String(1000), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("magnitude", Float),
    Column("occurrences", Integer, nullable=False),
    Column("notified_rank", Integer, nullable=False),
    Column("suppressed_by", Integer),
    Column("suppression", String(1000)),
    Index(
        "ux_alerts_active",
        "device",
        "detector",
        "key",
        unique=True,
        sqlite_where=text(ACTIVE_ALERT_PREDICATE),
        postgresql_where=text(ACTIVE_ALERT_PREDICATE),
    ),
    Index("ix_alerts_status", "status", "id"),
    Index("ix_alerts_device", "device", "id"),
)

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(64)),  # NULL: every device
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_maintenance_ends", "ends_at"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, nullable=False),
    Column("event", String(16), nullable=False),
    Column("receiver", String(64), nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True)),
    Column("last_error", String(1000)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    Index("ix_alert_deliveries_alert", "alert_id", "receiver", "id"),
)

alert_dead_letters = Table(
    "alert_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, nullable=False, unique=True),
    Column("alert_id", Integer, nullable=False),
    Column("event", String(16), nullable=False),
    Column("receiver", String(64), nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(1000), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
)

detector_state = Table(
    "detector_state",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("detector", String(64), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

machine_events = Table(
    "machine_events",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("sensor", String(64), primary_key=True),
    Column("ts", DateTime(timezone=True), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("detail", String(200), nullable=False),
    Column("boot", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("historical", Boolean, nullable=False),
)

gateway_health = Table(
    "gateway_health",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("boot", String(64), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("report", Text, nullable=False),
)
