"""The state store on a SQLite file: rollups live in their primary key's B-tree (migration 0009)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from cloud.state import StateStore

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    """Run the state store's migrations up (or down) to `revision` on the database at `url`."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", "cloud:migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def _rollups(database: Path) -> tuple[str, list[tuple[object, ...]]]:
    with sqlite3.connect(database) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'rollups'").fetchone()
        rows = conn.execute("SELECT * FROM rollups ORDER BY device, metric").fetchall()
    return sql, rows


def test_migration_0009_keeps_every_rollup_row_without_rowid_and_back(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    migrate_to(f"sqlite:///{database}", "0008")
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO rollups VALUES (?, 'machine', ?, 3600, '2026-12-01 10:00:00.000000',"
            " '', 60, ?, 0, 1)",
            [("gw-1", "running", 42.0), ("gw-1", "temperature", 61.5), ("gw-2", "running", 3.0)],
        )
    before = _rollups(database)[1]
    migrate_to(f"sqlite:///{database}", "0010")
    sql, after = _rollups(database)
    assert sql.endswith("WITHOUT ROWID") and after == before
    store = StateStore(f"sqlite:///{database}")  # reads them back (0011: epoch buckets)
    try:
        (hour,) = store.rollups("gw-2", 3600, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        assert (hour["metric"], hour["sum"]) == ("running", 3.0)
    finally:
        store.close()
    migrate_to(f"sqlite:///{database}", "0008", down=True)
    sql, back = _rollups(database)
    assert "WITHOUT ROWID" not in sql and back == before
