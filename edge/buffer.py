"""Durable store-and-forward buffer of the edge agent (SQLite, survives kill -9 and power loss).

Readings land in `pending` as soon as they are taken. `seal()` moves them, in one transaction,
into an `outbox` message numbered with the boot's next sequence number. A message leaves the
outbox only when the broker acknowledged it (`accept`). The outbox is bounded: beyond
`max_messages` the oldest messages are evicted and counted, never silently.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from leasewatch.wire import Reading

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, metric TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, boot TEXT NOT NULL, seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, readings TEXT NOT NULL, count INTEGER NOT NULL,
    UNIQUE (boot, seq));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A sealed message waiting for the broker's acknowledgement."""

    id: int
    boot: str
    seq: int
    created: datetime
    readings: tuple[Reading, ...]


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class ReadingBuffer:
    """The agent's durable buffer; thread-safe, every call is one transaction."""

    def __init__(self, path: Path, max_messages: int = 200_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a PUBACKed reading is gone: keep the rest
        self._db.executescript(_SCHEMA)

    def add(self, readings: list[Reading]) -> None:
        """Keep freshly taken readings until they are sealed into a message."""
        rows = [(r.sensor, r.metric, _ms(r.ts), r.value, r.unit) for r in readings]
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO pending (sensor, metric, ts_ms, value, unit) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def seal(self, boot: str, seq: int, max_readings: int, now: datetime) -> int:
        """Move up to max_readings pending readings into outbox message (boot, seq)."""
        with self._lock, self._db:
            rows = self._db.execute(
                "SELECT id, sensor, metric, ts_ms, value, unit FROM pending ORDER BY id LIMIT ?",
                (max_readings,),
            ).fetchall()
            if not rows:
                return 0
            body = json.dumps([list(row[1:]) for row in rows])
            self._db.execute(
                "INSERT INTO outbox (boot, seq, created_ms, readings, count) VALUES (?,?,?,?,?)",
                (boot, seq, _ms(now), body, len(rows)),
            )
            self._db.execute("DELETE FROM pending WHERE id <= ?", (rows[-1][0],))
            self._evict_over_bound()
            return len(rows)

    def _evict_over_bound(self) -> None:
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = count - self.max_messages
        if excess <= 0:
            return
        (readings,) = self._db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM (SELECT count FROM outbox ORDER BY id LIMIT ?)",
            (excess,),
        ).fetchone()
        self._db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
        )
        self._bump("evicted_messages", excess)
        self._bump("evicted_readings", readings)

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def oldest(self, limit: int) -> list[OutboxMessage]:
        """The oldest sealed messages, to be sent in this order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, boot, seq, created_ms, readings FROM outbox ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [_message(row) for row in rows]

    def accept(self, message_ids: list[int]) -> None:
        """Forget messages the broker acknowledged."""
        with self._lock, self._db:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in message_ids])
            self._bump("sent_messages", len(message_ids))

    def stats(self) -> dict[str, int]:
        """Backlog sizes and lifetime counters (sent, evicted)."""
        with self._lock:
            (pending,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
            messages, readings = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(count), 0) FROM outbox"
            ).fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {
            "pending_readings": pending,
            "outbox_messages": messages,
            "outbox_readings": readings,
            **counters,
        }

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _message(row: tuple[int, str, int, int, str]) -> OutboxMessage:
    message_id, boot, seq, created_ms, body = row
    readings = tuple(
        Reading(sensor=s, metric=m, ts=_from_ms(ts), value=v, unit=u)
        for s, m, ts, v, u in json.loads(body)
    )
    return OutboxMessage(message_id, boot, seq, _from_ms(created_ms), readings)
