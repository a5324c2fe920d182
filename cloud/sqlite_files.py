"""A SQLite state store in two files: detection's tables under a write lock of their own.

SQLite has one write lock per database file. An ingest worker takes it twice a batch: for the
ingest transaction (ledger, registry, rollups) and for the detection transaction (each
gateway's stream state and detector states, the alerts it opens and their deliveries). With
every table in one file, the two workers' four kinds of transaction all wait for each other,
and a waiting writer sleeps in SQLite's busy handler (1, 2, 5 ... up to 100 ms between tries)
after the lock is free (docs/ingestion.md, ninth round).

So a file-backed SQLite store keeps detection's tables in a second file beside it
(`state.sqlite` -> `state.detection.sqlite`), attached to every connection as schema
`detection`. SQLite resolves a table name that no earlier schema has in the attached one, so
every query, join and statement names the tables as before. A transaction writes only one of
the two files (ingest: the main file; detection, alert changes and deliveries: the detection
file), so each commit is atomic as before; reads see both.

PostgreSQL (production) has row locks and keeps one database; an in-memory SQLite store stays
one database too. Migrations create the tables in the main file; `move_detection_tables`
then moves them (idempotently: a crash between the two files' commits is finished on the next
open). A later migration that changes one of these tables on SQLite must name its schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

SCHEMA = "detection"
#: Written only by detection, alert changes and alert delivery; read with everything else.
TABLES = ("detector_state", "alerts", "alert_deliveries", "alert_dead_letters")


def detection_path(database: str) -> Path:
    """The detection file of a state file: `state.sqlite` -> `state.detection.sqlite`."""
    path = Path(database)
    return path.with_name(f"{path.stem}.{SCHEMA}{path.suffix or '.sqlite'}")


def attach_detection(engine: Engine, database: str) -> None:
    """Attach the detection file to every connection the engine opens (WAL, durable commits)."""
    path = str(detection_path(database))

    def attach(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (path,))
        cursor.execute(f"PRAGMA {SCHEMA}.journal_mode=WAL")
        cursor.execute(f"PRAGMA {SCHEMA}.synchronous=FULL")
        cursor.close()

    event.listen(engine, "connect", attach)


def move_detection_tables(engine: Engine) -> list[str]:
    """Move detection's tables (rows and indexes) from the main file; the tables moved.

    One `BEGIN IMMEDIATE` takes both files' write locks, so two workers opening the store at
    once move each table once. SQLite commits attached WAL files one after the other: if a
    crash falls between, the tables are in both files and the next call copies again (rows
    the detection file has are kept) and drops the main file's copy.
    """
    raw = engine.raw_connection()
    moved: list[str] = []
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                if _move(cursor, table):
                    moved.append(table)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    finally:
        raw.close()
    return moved


def _move(cursor: Any, table: str) -> bool:
    master = "SELECT type, name, sql FROM {}.sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
    found = cursor.execute(master.format("main"), (table,)).fetchall()
    tables = [sql for kind, _name, sql in found if kind == "table"]
    if not tables:
        return False
    if not cursor.execute(master.format(SCHEMA), (table,)).fetchall():
        cursor.execute(_in_schema(tables[0], "TABLE", table))
        for kind, name, sql in found:
            if kind == "index":
                cursor.execute(_in_schema(sql, "INDEX", name))
    columns = ", ".join(
        f'"{row[1]}"' for row in cursor.execute(f"PRAGMA main.table_info({table})").fetchall()
    )
    cursor.execute(
        f"INSERT OR IGNORE INTO {SCHEMA}.{table} ({columns})"  # noqa: S608 - our own names
        f" SELECT {columns} FROM main.{table}"
    )
    cursor.execute(f"DROP TABLE main.{table}")
    return True


def _in_schema(sql: str, kind: str, name: str) -> str:
    """`CREATE [UNIQUE] TABLE|INDEX name ...` as the same statement in the detection schema."""
    pattern = rf'^(CREATE (?:UNIQUE )?{kind}) "?{re.escape(name)}"?'
    created, count = re.subn(pattern, rf"\1 {SCHEMA}.{name}", sql)
    if count != 1:
        raise ValueError(f"unexpected schema statement for {name}: {sql[:80]!r}")
    return created
