"""Many rows in a few statements on SQLite: multi-row `VALUES` instead of `executemany`.

Python's `sqlite3` gives up the interpreter lock for every row of an `executemany` (each
`sqlite3_step`) and must take it back before binding the next row. When another thread of the
process is running Python meanwhile (an ingest worker decodes its next batch while the current
one is written), each take-back waits for that thread to yield, up to the switch interval
(5 ms): a 39,000-row rollup upsert then crawls, holding SQLite's one write lock while the other
worker waits for it. Measured on a bare table with a busy Python thread beside the writer
(docs/ingestion.md, fifth round): `executemany` 414 us per row of wall time, one `VALUES` list
of up to 512 rows per statement 6 us, alone both 3-4 us. Each statement here is one step, so
the lock is given up and taken back once per 512 rows.

Statements are made in a few fixed sizes (512, 64, 8, 1 rows), so the connection's statement
cache keeps every shape compiled.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

#: Rows per statement, largest first; the rest of a call takes the smaller sizes.
SIZES = (512, 64, 8, 1)


class ValuesStatement:
    """An `INSERT ... VALUES` (with an optional `ON CONFLICT` tail) written for many rows."""

    def __init__(self, head: str, width: int, tail: str = "") -> None:
        """`head` up to `VALUES`, `width` values per row, `tail` after the values list."""
        row = "(" + ", ".join("?" * width) + ")"
        self._sql = {size: f"{head} VALUES {', '.join([row] * size)}{tail}" for size in SIZES}

    def statements(self, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(SQL, flat parameters) for every chunk of `rows`, in their order."""
        start = 0
        for size in SIZES:
            sql = self._sql[size]
            while len(rows) - start >= size:
                chunk = rows[start : start + size]
                yield sql, tuple(chain.from_iterable(chunk))
                start += size
