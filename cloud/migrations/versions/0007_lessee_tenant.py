"""Lessees belong to a tenant (a lessor): the leasing domain is scoped like devices.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add lessees.tenant (NULL: no tenant, seen only by users without one) and its index."""
    with op.batch_alter_table("lessees") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=True))
        batch.create_index("ix_lessees_tenant", ["tenant", "lessee_id"])


def downgrade() -> None:
    """Drop lessees.tenant."""
    with op.batch_alter_table("lessees") as batch:
        batch.drop_index("ix_lessees_tenant")
        batch.drop_column("tenant")
