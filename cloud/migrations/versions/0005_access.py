"""API users, roles, hashed API keys and bearer tokens, tenants; gateway MQTT credentials.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the access tables (filled in as roles and provisioning land)."""


def downgrade() -> None:
    """Drop the access tables."""
