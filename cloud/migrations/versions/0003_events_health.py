"""Machine events (start, stop, fault, sensor lost) and each gateway's latest health report.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create machine_events and gateway_health."""
    op.create_table(
        "machine_events",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("sensor", sa.String(64), primary_key=True),
        sa.Column("ts", TZ, primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("boot", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("historical", sa.Boolean, nullable=False),
    )
    op.create_table(
        "gateway_health",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("boot", sa.String(64), nullable=False),
        sa.Column("ts", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop machine_events and gateway_health."""
    op.drop_table("gateway_health")
    op.drop_table("machine_events")
