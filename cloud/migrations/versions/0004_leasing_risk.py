"""Lessees, leases, assets and their contract terms; risk scores, their audit and the watchlist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
RUNNING_HOURLY = sa.text("metric = 'running' AND resolution_s = 3600")  # as cloud.leasing.tables


def _domain() -> None:
    op.create_table(
        "lessees",
        sa.Column("lessee_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("external_ref", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(64), primary_key=True),
        sa.Column("lessee_id", sa.String(64), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date, nullable=False),
        sa.Column("region", sa.JSON),
        sa.Column("expected_hours_per_day", sa.Float),
        sa.Column("expected_hours_per_month", sa.Float),
        sa.Column("hours_cap_per_month", sa.Float),
        sa.Column("payment_schedule", sa.String(16), nullable=False),
        sa.Column("payment_amount", sa.Float),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("asset_value", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_leases_lessee", "leases", ["lessee_id"])
    op.create_index("ix_leases_status", "leases", ["status", "lease_id"])
    op.create_table(
        "assets",
        sa.Column("asset_id", sa.String(64), primary_key=True),
        sa.Column("asset_type", sa.String(32), nullable=False),
        sa.Column("region", sa.String(64)),
        sa.Column("device", sa.String(64), unique=True),
        sa.Column("lease_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_assets_lease", "assets", ["lease_id"])


def _risk() -> None:
    op.create_table(
        "risk_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("lessee_id", sa.String(64), nullable=False),
        sa.Column("lease_id", sa.String(64)),
        sa.Column("as_of", TZ, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("band", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("data_completeness", sa.Float),
        sa.Column("served_at", TZ, nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
    )
    op.create_index("ix_risk_scores_subject", "risk_scores", ["subject", "id"])
    op.create_table(
        "lease_bands",
        sa.Column("lease_id", sa.String(64), primary_key=True),
        sa.Column("lessee_id", sa.String(64), nullable=False),
        sa.Column("band", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("as_of", TZ, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("scored_at", TZ, nullable=False),
    )
    op.create_index("ix_lease_bands_scored", "lease_bands", ["scored_at"])
    op.create_table(
        "band_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("lessee_id", sa.String(64), nullable=False),
        sa.Column("from_band", sa.String(16)),
        sa.Column("to_band", sa.String(16), nullable=False),
        sa.Column("from_score", sa.Float),
        sa.Column("to_score", sa.Float, nullable=False),
        sa.Column("worsened", sa.Boolean, nullable=False),
        sa.Column("as_of", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
    )
    op.create_index("ix_band_changes_lease", "band_changes", ["lease_id", "id"])
    op.create_index("ix_band_changes_worsened", "band_changes", ["worsened", "as_of"])


def upgrade() -> None:
    """Create the leasing and risk tables, and the rollup index the credit check reads by."""
    _domain()
    _risk()
    op.create_index(
        "ix_rollups_running_hourly",
        "rollups",
        ["device", "bucket", "count", "sum"],
        sqlite_where=RUNNING_HOURLY,
        postgresql_where=RUNNING_HOURLY,
    )


def downgrade() -> None:
    """Drop the leasing and risk tables."""
    op.drop_index("ix_rollups_running_hourly", table_name="rollups")
    for table in ("band_changes", "lease_bands", "risk_scores", "assets", "leases", "lessees"):
        op.drop_table(table)
