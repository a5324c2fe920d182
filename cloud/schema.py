"""Tables of the state store. Migrations in cloud/migrations create and evolve them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

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
    Column("device", String(64), primary_key=True),
    Column("sensor", String(64), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("resolution_s", Integer, primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("unit", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("sum", Float, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
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
