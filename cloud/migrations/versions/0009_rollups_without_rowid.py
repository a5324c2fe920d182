"""SQLite: the rollups table keeps its rows in its primary key's B-tree (WITHOUT ROWID).

A rowid table with a composite primary key is two B-trees: the rows by rowid and an index of
the key. Every rollup upsert (about one per stored reading at one-minute sampling) looked up and
wrote both. Kept in the key's B-tree, the table is one: about half the file (2.5 million rollup
rows: 294 -> 153 MB) and about 16% less CPU per upsert (docs/ingestion.md, "Rollups").
PostgreSQL is unchanged. The table is rebuilt (its rows copied once), so on a large SQLite
store this migration takes a while and needs the table's size again in free disk.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = "device, sensor, metric, resolution_s, bucket, unit, count, sum, min, max"
_COPY = f"INSERT INTO rollups_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM rollups"  # noqa: S608
_RUNNING_HOURLY = "metric = 'running' AND resolution_s = 3600"  # as cloud.leasing.tables


def _rebuild(without_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    suffix = " WITHOUT ROWID" if without_rowid else ""
    op.execute(
        "CREATE TABLE rollups_rebuilt ("
        " device VARCHAR(64) NOT NULL, sensor VARCHAR(64) NOT NULL,"
        " metric VARCHAR(64) NOT NULL, resolution_s INTEGER NOT NULL, bucket DATETIME NOT NULL,"
        " unit VARCHAR(16) NOT NULL, count INTEGER NOT NULL, sum FLOAT NOT NULL,"
        " min FLOAT NOT NULL, max FLOAT NOT NULL,"
        f" PRIMARY KEY (device, sensor, metric, resolution_s, bucket)){suffix}"
    )
    op.execute(_COPY)
    op.execute("DROP TABLE rollups")
    op.execute("ALTER TABLE rollups_rebuilt RENAME TO rollups")
    op.execute(
        "CREATE INDEX ix_rollups_running_hourly ON rollups (device, bucket, count, sum)"
        f" WHERE {_RUNNING_HOURLY}"
    )


def upgrade() -> None:
    """Rebuild rollups WITHOUT ROWID (SQLite only)."""
    _rebuild(without_rowid=True)


def downgrade() -> None:
    """Rebuild rollups as a rowid table (SQLite only)."""
    _rebuild(without_rowid=False)
