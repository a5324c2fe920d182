"""Alerts: alerts, maintenance windows, delivery outbox and dead letters, detector state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
ACTIVE = sa.text("status <> 'resolved'")  # as cloud.schema.ACTIVE_ALERT_PREDICATE


def _alerts() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("severity_rank", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since", TZ, nullable=False),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("last_evaluated_at", TZ, nullable=False),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("acknowledged_at", TZ),
        sa.Column("acknowledge_note", sa.String(1000)),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("resolved_at", TZ),
        sa.Column("resolve_note", sa.String(1000)),
        sa.Column("summary", sa.String(1000), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("magnitude", sa.Float),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("notified_rank", sa.Integer, nullable=False),
        sa.Column("suppressed_by", sa.Integer),
        sa.Column("suppression", sa.String(1000)),
    )
    op.create_index(
        "ux_alerts_active",
        "alerts",
        ["device", "detector", "key"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index("ix_alerts_status", "alerts", ["status", "id"])
    op.create_index("ix_alerts_device", "alerts", ["device", "id"])


def _deliveries() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("receiver", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("claimed_until", TZ),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_alert_deliveries_alert", "alert_deliveries", ["alert_id", "receiver", "id"])
    op.create_table(
        "alert_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.Integer, nullable=False, unique=True),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("receiver", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(1000), nullable=False),
        sa.Column("failed_at", TZ, nullable=False),
    )


def upgrade() -> None:
    """Create the alert, maintenance, delivery and detector-state tables."""
    _alerts()
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(64)),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_maintenance_ends", "maintenance_windows", ["ends_at"])
    _deliveries()
    op.create_table(
        "detector_state",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("detector", sa.String(64), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    """Drop the tables of revision 0002."""
    for table in (
        "detector_state",
        "alert_dead_letters",
        "alert_deliveries",
        "maintenance_windows",
        "alerts",
    ):
        op.drop_table(table)
