"""Rollups keyed (device, resolution_s, bucket, sensor, metric): time before measure.

With the old key (device, sensor, metric, resolution_s, bucket) a gateway's rollups lay in one
run per measure and resolution, so a batch's new buckets for one gateway landed in about 14
places of the B-tree (7 measures x 2 resolutions), each its own page to read, change and write
to the WAL at commit; and a device's buckets of a time range (the asset page, the detectors'
minutes, the API) were read by scanning every rollup the device ever had. Time-major, a
gateway's new buckets land in two places (its newest minutes and its newest hours) and a time
range is one key range. Measured on a bare SQLite table of the benchmark's shape with history:
5.2 -> 2.7 us of CPU per upsert row (docs/ingestion.md, fifth round).

SQLite rebuilds the table (rows copied once: on a large store this takes a while and the
table's size again in free disk); PostgreSQL rebuilds its primary-key index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = "device, sensor, metric, resolution_s, bucket, unit, count, sum, min, max"
_COPY = f"INSERT INTO rollups_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM rollups"  # noqa: S608
_RUNNING_HOURLY = "metric = 'running' AND resolution_s = 3600"  # as cloud.leasing.tables
TIME_MAJOR = "device, resolution_s, bucket, sensor, metric"
MEASURE_MAJOR = "device, sensor, metric, resolution_s, bucket"


def _rekey(key: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rollups DROP CONSTRAINT rollups_pkey")
        op.execute(f"ALTER TABLE rollups ADD CONSTRAINT rollups_pkey PRIMARY KEY ({key})")
        return
    op.execute(
        "CREATE TABLE rollups_rebuilt ("
        " device VARCHAR(64) NOT NULL, sensor VARCHAR(64) NOT NULL,"
        " metric VARCHAR(64) NOT NULL, resolution_s INTEGER NOT NULL, bucket DATETIME NOT NULL,"
        " unit VARCHAR(16) NOT NULL, count INTEGER NOT NULL, sum FLOAT NOT NULL,"
        " min FLOAT NOT NULL, max FLOAT NOT NULL,"
        f" PRIMARY KEY ({key})) WITHOUT ROWID"
    )
    op.execute(_COPY)
    op.execute("DROP TABLE rollups")
    op.execute("ALTER TABLE rollups_rebuilt RENAME TO rollups")
    op.execute(
        "CREATE INDEX ix_rollups_running_hourly ON rollups (device, bucket, count, sum)"
        f" WHERE {_RUNNING_HOURLY}"
    )


def upgrade() -> None:
    """Key rollups time-major."""
    _rekey(TIME_MAJOR)


def downgrade() -> None:
    """Key rollups measure-major again."""
    _rekey(MEASURE_MAJOR)
