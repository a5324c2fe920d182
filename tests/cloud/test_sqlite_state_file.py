"""The state store on a SQLite file: writers take turns, rollups live in their key's B-tree."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from cloud import sqlite_turns
from cloud.state import StateStore
from leasewatch.wire import Reading, TelemetryBatch

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def _batch(device: str, seq: int) -> TelemetryBatch:
    reading = Reading(sensor="machine", metric="running", ts=T0 + timedelta(minutes=seq), value=1)
    return TelemetryBatch(device=device, boot="b1", seq=seq, sent_at=T0, readings=[reading])


def _turn_is_free(database: Path) -> bool:
    """Whether another open file description can take the writer turn right now."""
    fd = os.open(f"{database}.writer", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing ends a lock taken here
    return True


@contextmanager
def _held_turn(database: Path) -> Iterator[None]:
    fd = os.open(f"{database}.writer", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def test_a_write_transaction_holds_the_turn_until_commit_or_rollback(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{database}")
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM devices")).scalar_one()
            assert _turn_is_free(database), "a read takes no turn"
            conn.execute(text("INSERT INTO rejection_counts VALUES ('x', 1)"))
            assert not _turn_is_free(database), "a write holds the turn"
            conn.commit()
            assert _turn_is_free(database), "the commit hands it over"
            conn.execute(text("UPDATE rejection_counts SET count = 2"))
            assert not _turn_is_free(database)
            conn.rollback()
            assert _turn_is_free(database), "a rollback hands it over"
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count FROM rejection_counts")).scalar_one() == 1
    finally:
        store.close()


def test_a_writer_waits_for_the_turn_and_then_writes(tmp_path: Path) -> None:
    """While another process holds the turn nothing is written; once it lets go, all is."""
    database = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{database}")
    try:
        with _held_turn(database):
            writer = multiprocessing.get_context("spawn").Process(
                target=_record, args=(str(database), "gw-wait", 0, 5)
            )
            writer.start()
            writer.join(timeout=2.0)
            assert writer.is_alive(), "the writer waits while the turn is held"
            assert store.registered(["gw-wait"]) == set()
        writer.join(timeout=60.0)
        assert writer.exitcode == 0
        assert len(store.ledger("gw-wait")) == 5
    finally:
        store.close()


def test_a_writer_that_never_gets_its_turn_fails_like_a_locked_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{database}")
    monkeypatch.setattr(sqlite_turns, "TURN_TIMEOUT_S", 0.3)
    try:
        with _held_turn(database), pytest.raises(OperationalError, match="database is locked"):
            store.register_device("gw-late", T0)
        store.register_device("gw-late", T0)  # the turn is free again: it is written
        assert store.registered(["gw-late"]) == {"gw-late"}
    finally:
        store.close()


def _record(database: str, device: str, first: int, count: int) -> None:
    store = StateStore(f"sqlite:///{database}")
    try:
        for seq in range(first, first + count):
            store.record_stored([_batch(device, seq)], [], T0)
    finally:
        store.close()


def test_processes_taking_turns_lose_nothing(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    StateStore(f"sqlite:///{database}").close()
    spawn = multiprocessing.get_context("spawn")
    writers = [
        spawn.Process(target=_record, args=(str(database), f"gw-{n}", 0, 40)) for n in range(3)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120.0)
        assert writer.exitcode == 0
    store = StateStore(f"sqlite:///{database}")
    try:
        assert [d["messages"] for d in store.devices()] == [40, 40, 40]
        assert _turn_is_free(database)
    finally:
        store.close()


def _migrate(database: Path, revision: str, *, down: bool = False) -> None:
    engine = create_engine(f"sqlite:///{database}")
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
    _migrate(database, "0008")
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO rollups VALUES (?, 'machine', ?, 3600, '2026-12-01 10:00:00.000000',"
            " '', 60, ?, 0, 1)",
            [("gw-1", "running", 42.0), ("gw-1", "temperature", 61.5), ("gw-2", "running", 3.0)],
        )
    before = _rollups(database)[1]
    _migrate(database, "head")
    sql, after = _rollups(database)
    assert sql.endswith("WITHOUT ROWID") and after == before
    store = StateStore(f"sqlite:///{database}")  # the store reads them back, index in use
    try:
        (hour,) = store.rollups("gw-2", 3600, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        assert (hour["metric"], hour["sum"]) == ("running", 3.0)
    finally:
        store.close()
    _migrate(database, "0008", down=True)
    sql, back = _rollups(database)
    assert "WITHOUT ROWID" not in sql and back == before
