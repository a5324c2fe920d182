"""Rollup buckets on SQLite as epoch seconds (INTEGER) instead of datetime text.

The bucket is in the rollups' primary key: every reading's upsert compares it and every
batch's commit writes it. SQLAlchemy keeps SQLite datetimes as 26-character text
(`2026-12-06 02:00:00.000000`); an integer is a few bytes and compares as a number
(`cloud.schema.BucketStart`; docs/ingestion.md, ninth round). PostgreSQL keeps `timestamptz`:
nothing changes there.

SQLite rebuilds the table (rows copied once, converted; a large store takes a while and the
table's size again in free disk).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_OTHER = "device, sensor, metric, resolution_s, unit, count, sum, min, max"
_RUNNING_HOURLY = "metric = 'running' AND resolution_s = 3600"  # as cloud.leasing.tables
_KEY = "device, resolution_s, bucket, sensor, metric"  # time-major (migration 0010)
TO_EPOCH = "CAST(strftime('%s', bucket) AS INTEGER)"
TO_TEXT = "strftime('%Y-%m-%d %H:%M:%S.000000', bucket, 'unixepoch')"


def _rebuild(bucket_type: str, converted: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE rollups_rebuilt ("
        " device VARCHAR(64) NOT NULL, sensor VARCHAR(64) NOT NULL,"
        " metric VARCHAR(64) NOT NULL, resolution_s INTEGER NOT NULL,"
        f" bucket {bucket_type} NOT NULL,"
        " unit VARCHAR(16) NOT NULL, count INTEGER NOT NULL, sum FLOAT NOT NULL,"
        " min FLOAT NOT NULL, max FLOAT NOT NULL,"
        f" PRIMARY KEY ({_KEY})) WITHOUT ROWID"
    )
    op.execute(
        f"INSERT INTO rollups_rebuilt ({_OTHER}, bucket)"  # noqa: S608 - our own SQL
        f" SELECT {_OTHER}, {converted} FROM rollups"
    )
    op.execute("DROP TABLE rollups")
    op.execute("ALTER TABLE rollups_rebuilt RENAME TO rollups")
    op.execute(
        "CREATE INDEX ix_rollups_running_hourly ON rollups (device, bucket, count, sum)"
        f" WHERE {_RUNNING_HOURLY}"
    )


def upgrade() -> None:
    """SQLite: bucket as INTEGER epoch seconds."""
    _rebuild("INTEGER", TO_EPOCH)


def downgrade() -> None:
    """SQLite: bucket as SQLAlchemy's datetime text again."""
    _rebuild("DATETIME", TO_TEXT)
