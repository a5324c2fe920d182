"""State-store table of gateway commands (created by migration 0006)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table, Text

from cloud.schema import metadata

TZ = DateTime(timezone=True)

gateway_commands = Table(
    "gateway_commands",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("device", String(64), nullable=False),
    Column("name", String(32), nullable=False),
    Column("args", Text, nullable=False),  # JSON object
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", TZ, nullable=False),
    Column("expires_at", TZ, nullable=False),
    Column("status", String(16), nullable=False),
    Column("sent_at", TZ),
    Column("acked_at", TZ),
    Column("ack_status", String(16)),  # the gateway's latest word: accepted, done, failed, ...
    Column("ack_detail", String(500)),
    Column("ack_result", Text),  # JSON object
    Column("detail", String(500)),  # the cloud's own note: refused publish, no answer in time
    Index("ix_gateway_commands_device_requested", "device", "requested_at"),
    Index("ix_gateway_commands_status_expires", "status", "expires_at"),
)
