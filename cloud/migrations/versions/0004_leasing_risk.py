"""Lessees, leases, assets and their contract terms; risk scores, their audit and the watchlist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the leasing and risk tables (filled in as the leasing domain lands)."""


def downgrade() -> None:
    """Drop the leasing and risk tables."""
