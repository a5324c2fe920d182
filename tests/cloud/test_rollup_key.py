"""Migration 0010: rollups keyed time-major, rows kept both ways, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cloud.state import StateStore
from tests.cloud.test_sqlite_state_file import migrate_to

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
TIME_MAJOR = ["device", "resolution_s", "bucket", "sensor", "metric"]
MEASURE_MAJOR = ["device", "sensor", "metric", "resolution_s", "bucket"]
_KEY_SQL = {
    "sqlite": "SELECT name FROM pragma_index_info("
    "(SELECT name FROM pragma_index_list('rollups') WHERE origin = 'pk')) ORDER BY seqno",
    "postgresql": "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
    " WHERE i.indrelid = 'rollups'::regclass AND i.indisprimary"
    " ORDER BY array_position(i.indkey::int2[], a.attnum)",
}


COLUMNS = "device, sensor, metric, resolution_s, bucket, unit, count, sum, min, max"
PARAMS = ", ".join(f":{c.strip()}" for c in COLUMNS.split(","))


def _as_text(at: datetime) -> str:
    """A datetime as SQLAlchemy keeps it in SQLite's DATETIME columns."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _utc(bucket: object) -> datetime:
    if isinstance(bucket, datetime):
        return bucket.astimezone(UTC)
    return datetime.fromisoformat(str(bucket)).replace(tzinfo=UTC)


def _key_and_rows(url: str) -> tuple[list[str], list[tuple[object, ...]]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        key = [str(r[0]) for r in conn.execute(text(_KEY_SQL[engine.dialect.name]))]
        rows = [
            tuple(r)
            for r in conn.execute(text("SELECT * FROM rollups ORDER BY device, metric, bucket"))
        ]
    engine.dispose()
    return key, rows


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


def test_migration_0010_keys_rollups_time_major_and_keeps_every_row(state_url: str) -> None:
    migrate_to(state_url, "0009")
    engine = create_engine(state_url)
    rows = [
        {"device": device, "sensor": "machine", "metric": metric, "resolution_s": 60,
         "bucket": T0 + timedelta(minutes=minute), "unit": "", "count": 1, "sum": value,
         "min": value, "max": value}
        for device in ("gw-1", "gw-2")
        for metric, value in (("running", 1.0), ("temperature", 61.5))
        for minute in range(3)
    ]  # fmt: skip
    sqlite = engine.dialect.name == "sqlite"
    for row in rows:  # as the store wrote buckets at 0009: SQLAlchemy's datetime text on SQLite
        row["bucket"] = _as_text(row["bucket"]) if sqlite else row["bucket"]
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO rollups ({COLUMNS}) VALUES ({PARAMS})"), rows)  # noqa: S608
    engine.dispose()
    key, before = _key_and_rows(state_url)
    assert key == MEASURE_MAJOR and len(before) == 12

    migrate_to(state_url, "0010")
    key, after = _key_and_rows(state_url)
    assert key == TIME_MAJOR and after == before
    store = StateStore(state_url)  # migration 0011 on open: SQLite buckets as epoch seconds
    try:
        minutes = store.rollups("gw-2", 60, T0 + timedelta(minutes=1), T0 + timedelta(hours=1))
        assert [(m["metric"], m["bucket"]) for m in minutes] == [
            (metric, T0 + timedelta(minutes=n))
            for metric in ("running", "temperature")
            for n in (1, 2)
        ]
    finally:
        store.close()
    key, epochs = _key_and_rows(state_url)
    assert key == TIME_MAJOR
    if sqlite:
        assert sorted(r[4] for r in epochs) == sorted(int(_utc(r[4]).timestamp()) for r in before)
    else:
        assert epochs == before

    migrate_to(state_url, "0009", down=True)
    key, back = _key_and_rows(state_url)
    assert key == MEASURE_MAJOR and back == before


def test_a_devices_time_range_is_one_primary_key_range_on_sqlite(tmp_path: Path) -> None:
    """The asset page's and the detectors' read seeks device, resolution and bucket range."""
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    StateStore(url).close()
    engine = create_engine(url)
    with engine.connect() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT * FROM rollups WHERE device = 'gw-1'"
                    " AND resolution_s = 60 AND bucket >= '2026-12-01' AND bucket < '2026-12-02'"
                )
            )
        )
    engine.dispose()
    assert "PRIMARY KEY (device=? AND resolution_s=? AND bucket>? AND bucket<?)" in plan, plan
