"""Commands to gateways with their acknowledgements (cloud/commands).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create gateway_commands."""
    op.create_table(
        "gateway_commands",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent_at", TZ),
        sa.Column("acked_at", TZ),
        sa.Column("ack_status", sa.String(16)),
        sa.Column("ack_detail", sa.String(500)),
        sa.Column("ack_result", sa.Text),
        sa.Column("detail", sa.String(500)),
    )
    op.create_index(
        "ix_gateway_commands_device_requested", "gateway_commands", ["device", "requested_at"]
    )
    op.create_index(
        "ix_gateway_commands_status_expires", "gateway_commands", ["status", "expires_at"]
    )


def downgrade() -> None:
    """Drop gateway_commands."""
    op.drop_index("ix_gateway_commands_status_expires", "gateway_commands")
    op.drop_index("ix_gateway_commands_device_requested", "gateway_commands")
    op.drop_table("gateway_commands")
