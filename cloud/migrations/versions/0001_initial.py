"""Initial state store: registry, ledger, duplicates, rollups, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of schema v1."""
    op.create_table(
        "devices",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_message_at", TZ),
        sa.Column("latest_reading_at", TZ),
        sa.Column("last_boot", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_at", TZ),
        sa.Column("messages", sa.Integer, nullable=False),
        sa.Column("readings", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
    )
    op.create_table(
        "message_ledger",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("boot", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("sent_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("readings", sa.Integer, nullable=False),
        sa.Column("historical", sa.Boolean, nullable=False),
    )
    op.create_index("ix_ledger_device_sent", "message_ledger", ["device", "sent_at"])
    op.create_table(
        "duplicate_counts",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "rollups",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("sensor", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("resolution_s", sa.Integer, primary_key=True),
        sa.Column("bucket", TZ, primary_key=True),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("sum", sa.Float, nullable=False),
        sa.Column("min", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])
    op.create_table(
        "rejection_counts",
        sa.Column("reason", sa.String(40), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    """Drop every table of schema v1."""
    for table in (
        "rejection_counts",
        "dead_letters",
        "rollups",
        "duplicate_counts",
        "message_ledger",
        "devices",
    ):
        op.drop_table(table)
