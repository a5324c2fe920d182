"""Multi-row VALUES statements: every row once, in order, in the fixed statement sizes."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from cloud.sqlite_rows import SIZES, ValuesStatement

_UPSERT = ValuesStatement(
    "INSERT INTO t (k, n)", 2, " ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n"
)


@given(st.integers(min_value=0, max_value=2_000))
def test_every_row_once_in_order_in_the_fixed_sizes(count: int) -> None:
    rows = [(f"k{i}", i) for i in range(count)]
    statements = list(_UPSERT.statements(rows))
    flat = [value for _, params in statements for value in params]
    assert flat == [value for row in rows for value in row]
    for sql, params in statements:
        assert sql.count("?") == len(params) and len(params) // 2 in SIZES
    assert len(statements) <= count // SIZES[0] + 3 * 7, "the rest takes at most 7 of each size"


def test_an_upsert_in_chunks_equals_row_by_row() -> None:
    rows = [(f"k{i % 700}", i) for i in range(1_500)]  # keys repeat across and inside chunks
    chunked, single = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    for conn in (chunked, single):
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    for sql, params in _UPSERT.statements(rows):
        chunked.execute(sql, params)
    single.executemany(
        "INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n",
        rows,
    )
    table = "SELECT k, n FROM t ORDER BY k"
    assert chunked.execute(table).fetchall() == single.execute(table).fetchall()
    assert chunked.execute("SELECT COUNT(*), SUM(n) FROM t").fetchone() == (700, sum(range(1_500)))
