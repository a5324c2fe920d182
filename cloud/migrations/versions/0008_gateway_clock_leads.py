"""Leads of gateway clocks that run ahead, per (device, boot): their stamps are re-based.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create gateway_clock_leads (cloud/gateway_clocks.py)."""
    op.create_table(
        "gateway_clock_leads",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("boot", sa.String(64), primary_key=True),
        sa.Column("lead_s", sa.Float, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rebased_messages", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    """Drop gateway_clock_leads."""
    op.drop_table("gateway_clock_leads")
