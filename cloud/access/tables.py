"""State-store tables of access control (created by migration 0005)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Table

from cloud.schema import metadata

TZ = DateTime(timezone=True)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", TZ, nullable=False),
)

api_users = Table(
    "api_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("tenant", String(64), ForeignKey("tenants.id"), nullable=True),
    Column("created_at", TZ, nullable=False),
    Column("disabled_at", TZ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Integer, ForeignKey("api_users.id"), nullable=False, index=True),
    Column("digest", String(64), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("expires_at", TZ),
    Column("revoked_at", TZ),
)

device_tenants = Table(
    "device_tenants",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("tenant", String(64), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("assigned_at", TZ, nullable=False),
)

gateway_credentials = Table(
    "gateway_credentials",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("issued_at", TZ, nullable=False),
    Column("revoked_at", TZ),
)
