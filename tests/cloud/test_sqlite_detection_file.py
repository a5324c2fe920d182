"""A file-backed SQLite state store keeps detection's tables in a second file (cloud.sqlite_files).

The point is a second write lock: a detection transaction must commit while an ingest
transaction holds the main file's lock, and the reverse. Rows written before the split (a
store made by an older release, all in one file) must arrive in the detection file intact.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cloud import sqlite_files
from cloud.detector_state import load_detector_state, save_detector_state
from cloud.state import StateStore
from tests.cloud.test_sqlite_state_file import migrate_to

T0 = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def _tables(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_detection_path_sits_beside_the_state_file() -> None:
    assert sqlite_files.detection_path("/srv/lw/state.sqlite") == Path(
        "/srv/lw/state.detection.sqlite"
    )
    assert sqlite_files.detection_path("state.db").name == "state.detection.db"
    assert sqlite_files.detection_path("/data/state").name == "state.detection.sqlite"


def test_detection_tables_live_in_their_own_file(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{database}")
    try:
        main, detection = _tables(database), _tables(tmp_path / "state.detection.sqlite")
        assert set(sqlite_files.TABLES) <= detection
        assert not set(sqlite_files.TABLES) & main
        assert {"devices", "message_ledger", "rollups"} <= main
        with store.engine.begin() as conn:  # unqualified names reach both files
            save_detector_state(conn, "gw-1", "silence", {"seen": 3}, T0)
        with store.engine.connect() as conn:
            assert load_detector_state(conn, "gw-1", "silence") == {"seen": 3}
            joined = conn.execute(
                text(
                    "SELECT count(*) FROM detector_state s"
                    " LEFT JOIN devices d ON d.device = s.device"
                )
            ).scalar_one()
            assert joined == 1
    finally:
        store.close()
    again = StateStore(f"sqlite:///{database}")  # reopening moves nothing, loses nothing
    try:
        with again.engine.connect() as conn:
            assert load_detector_state(conn, "gw-1", "silence") == {"seen": 3}
    finally:
        again.close()


def test_detection_commits_while_ingest_holds_the_main_lock(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{database}")
    ingest = sqlite3.connect(database, timeout=0.05, isolation_level=None)
    try:
        ingest.execute("BEGIN IMMEDIATE")  # the main file's write lock, held
        ingest.execute(
            "INSERT INTO devices (device, first_seen, status, messages, readings, duplicates)"
            " VALUES ('gw-9', '2026-12-06 02:00:00.000000', 'unknown', 0, 0, 0)"
        )
        with store.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
            save_detector_state(conn, "gw-9", "stream", {"seq": 1}, T0)  # no wait for the lock
        with store.engine.begin() as conn:  # a second main-file writer does wait
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
            with pytest.raises(OperationalError, match="database is locked"):
                conn.exec_driver_sql("UPDATE devices SET messages = 1")
        ingest.execute("COMMIT")
    finally:
        ingest.close()
        store.close()


def test_a_one_file_store_is_split_with_every_row_kept(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    migrate_to(f"sqlite:///{database}", "head")  # an older release's single file
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "INSERT INTO detector_state (device, detector, state, updated_at)"
            " VALUES ('gw-1', 'faults', '{\"open\": 2}', '2026-12-06 01:00:00.000000')"
        )
        db.execute(
            "INSERT INTO alert_dead_letters (delivery_id, alert_id, event, receiver,"
            " idempotency_key, attempts, last_error, failed_at) VALUES (7, 3, 'opened',"
            " 'webhook', 'k-7', 5, 'HTTP 500', '2026-12-06 01:00:00.000000')"
        )
    before = {t: _dump(database, "main", t) for t in sqlite_files.TABLES}
    store = StateStore(f"sqlite:///{database}")
    try:
        assert not set(sqlite_files.TABLES) & _tables(database)
        detection = tmp_path / "state.detection.sqlite"
        assert {t: _dump(detection, "main", t) for t in sqlite_files.TABLES} == before
        with closing(sqlite3.connect(detection)) as db:
            indexes = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
        assert {"ux_alerts_active", "ix_alerts_status", "ix_alert_deliveries_due"} <= indexes
    finally:
        store.close()


def test_a_move_cut_short_between_the_files_is_finished_on_the_next_open(
    tmp_path: Path,
) -> None:
    database = tmp_path / "state.sqlite"
    migrate_to(f"sqlite:///{database}", "head")
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "INSERT INTO detector_state VALUES ('gw-1', 'faults', '{}', '2026-12-06 01:00:00')"
        )
        db.execute(
            "INSERT INTO detector_state VALUES ('gw-2', 'faults', '{}', '2026-12-06 01:00:00')"
        )
    # The detection file committed its copy (gw-1 only, then a newer state), the main file
    # did not drop its own: both files hold the table.
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            f"ATTACH DATABASE ? AS {sqlite_files.SCHEMA}",
            (str(sqlite_files.detection_path(str(database))),),
        )
        (sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'detector_state'"
        ).fetchone()
        db.execute(sqlite_files._in_schema(sql, "TABLE", "detector_state"))
        db.execute(
            "INSERT INTO detection.detector_state VALUES"
            " ('gw-1', 'faults', '{\"newer\": true}', '2026-12-06 01:05:00')"
        )
    store = StateStore(f"sqlite:///{database}")
    try:
        assert "detector_state" not in _tables(database)
        with store.engine.connect() as conn:
            assert load_detector_state(conn, "gw-1", "faults") == {"newer": True}
            assert load_detector_state(conn, "gw-2", "faults") == {}
    finally:
        store.close()


def test_an_in_memory_store_stays_one_database() -> None:
    store = StateStore("sqlite://")
    try:
        with store.engine.connect() as conn:
            names = {row[1] for row in conn.exec_driver_sql("PRAGMA database_list")}
            assert sqlite_files.SCHEMA not in names
            assert conn.exec_driver_sql("SELECT count(*) FROM main.alerts").scalar_one() == 0
    finally:
        store.close()


def _dump(database: Path, schema: str, table: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return sorted(conn.execute(f"SELECT * FROM {schema}.{table}").fetchall())  # noqa: S608
