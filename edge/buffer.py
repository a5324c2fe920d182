"""Durable store-and-forward buffer of the edge agent (SQLite, survives kill -9 and power loss).

Readings and events land in `pending` as soon as they are taken, in one transaction with the
features' state. `seal()` moves them, in one transaction, into an `outbox` message numbered with
the boot's next sequence number. A message leaves the outbox only when the broker acknowledged
it (`accept`). WAL journal with `synchronous=FULL`: a committed transaction survives power loss.

The outbox is bounded in messages and in bytes: beyond either bound the oldest messages are
evicted and counted, never silently. The file is capped (`max_page_count`) below the bound's
reach of the disk. When the disk is full anyway (or the cap is reached), the buffer gives up a
ballast file it keeps for that moment, checkpoints the WAL, evicts the oldest tenth of the
outbox, hands the freed pages back to the file system (incremental vacuum) and tries again; when
nothing is left to evict, new readings are dropped and counted. The agent keeps running.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog

from edge.ballast import Ballast
from leasewatch.wire import MAX_EVENTS_PER_BATCH, MachineEvent, Reading

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2
#: Bytes of readings and events JSON per message: the wire's 256 KiB less room for the header.
MAX_BODY_BYTES = 240_000
_T = TypeVar("_T")
_ROOM_ATTEMPTS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, ts_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, boot TEXT NOT NULL, seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, oldest_ms INTEGER NOT NULL,
    readings TEXT NOT NULL, events TEXT NOT NULL, count INTEGER NOT NULL,
    event_count INTEGER NOT NULL, bytes INTEGER NOT NULL, UNIQUE (boot, seq));
CREATE INDEX IF NOT EXISTS outbox_oldest ON outbox (oldest_ms);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "id, boot, seq, created_ms, oldest_ms, readings, events, count, event_count"
_INSERT_OUTBOX = (
    "INSERT INTO outbox (boot, seq, created_ms, oldest_ms, readings, events, count, event_count,"
    " bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class BufferFullError(Exception):
    """The buffer's storage is full and nothing is left to evict."""


class BufferSchemaError(Exception):
    """The buffer file was written by an agent with another schema."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A sealed message waiting for the broker's acknowledgement."""

    id: int
    boot: str
    seq: int
    created: datetime
    oldest: datetime
    readings_json: str
    events_json: str
    count: int
    event_count: int

    @property
    def readings(self) -> tuple[Reading, ...]:
        """The message's readings, validated again (for tests and tools)."""
        return tuple(msgspec.json.decode(self.readings_json, type=list[Reading]))

    @property
    def events(self) -> tuple[MachineEvent, ...]:
        """The message's events, validated again (for tests and tools)."""
        return tuple(msgspec.json.decode(self.events_json, type=list[MachineEvent]))


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch."""
    return int(ts.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime from milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, UTC)


class ReadingBuffer:
    """The agent's durable buffer; thread-safe, every call is one transaction."""

    def __init__(
        self,
        path: Path,
        max_messages: int = 200_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_file_bytes: int | None = None,
        reserve_bytes: int | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.dropped_readings = 0  # lost for want of space; kept in memory, the disk is full
        self._ballast = Ballast(
            path.with_suffix(".ballast"),
            reserve_bytes or min(16 << 20, max(4 << 20, max_bytes // 64)),
        )
        self._lock = threading.Lock()
        try:
            self._db = self._open(max_file_bytes)
        except sqlite3.OperationalError as err:  # a full disk leaves no room for -wal and -shm
            if not self._ballast.release():
                raise
            log.warning("buffer opened on a full disk: ballast released", error=str(err))
            self._db = self._open(max_file_bytes)
        self._migrate()
        self._ballast.restore()

    def _open(self, max_file_bytes: int | None) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # a committed reading survives power loss
            db.execute("PRAGMA secure_delete = OFF")  # Debian's default ON rewrites what is freed
            db.execute("PRAGMA wal_autocheckpoint = 256")  # keep the WAL near 1 MiB
            db.execute(f"PRAGMA journal_size_limit = {2 << 20}")
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
            file_cap = max_file_bytes or self.max_bytes * 3 // 2 + (8 << 20)
            db.execute(f"PRAGMA max_page_count = {max(64, file_cap // page_size)}")
        except sqlite3.OperationalError:
            db.close()
            raise
        return db

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version != 0 or self._db.execute("SELECT 1 FROM sqlite_master").fetchone():
            raise BufferSchemaError(
                f"{self.path} has buffer schema {version}, this agent writes {SCHEMA_VERSION}: "
                "send or move its messages with the agent version that wrote it"
            )
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE .. COMMIT, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, work: Callable[[], _T]) -> _T:
        """Run `work` in a transaction; when storage is full make room and retry.

        The first retry always happens (another thread may have made room meanwhile); later
        ones only while making room still frees something.
        """
        for attempt in range(_ROOM_ATTEMPTS):
            try:
                with self._lock, self._transaction():
                    return work()
            except sqlite3.OperationalError as err:
                if err.sqlite_errorcode != sqlite3.SQLITE_FULL:
                    raise
                error = err
            if not any(self._make_room(str(error))) and attempt > 0:
                break
        raise BufferFullError(f"{self.path}: {error}") from error

    def add(
        self,
        readings: Sequence[Reading],
        events: Sequence[MachineEvent] = (),
        state: dict[str, str] | None = None,
    ) -> bool:
        """Keep freshly taken readings and events (and the features' state) until sealed.

        Returns False, after counting them as dropped, when storage is full and nothing is left
        to evict.
        """
        encode = msgspec.json.encode
        rows = [("r", to_ms(r.ts), encode(r).decode()) for r in readings]
        rows += [("e", to_ms(e.ts), encode(e).decode()) for e in events]

        def work() -> None:
            self._db.executemany("INSERT INTO pending (kind, ts_ms, body) VALUES (?, ?, ?)", rows)
            if state:
                self._db.executemany(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state.items()
                )

        try:
            self._write(work)
        except BufferFullError as err:
            error = str(err)
        else:
            return True
        self.dropped_readings += len(readings)
        log.error("buffer full: readings dropped", dropped=len(readings), error=error)
        return False

    def seal(self, boot: str, seq: int, max_readings: int, now: datetime) -> int:
        """Move pending readings and events into outbox message (boot, seq); returns how many.

        Returns 0 when storage is too full to seal: the readings stay pending, nothing is lost.
        """
        try:
            return self._write(lambda: self._seal(boot, seq, max_readings, now))
        except BufferFullError as err:
            error = str(err)
        log.error("buffer full: cannot seal, readings stay pending", error=error)
        return 0

    def _seal(self, boot: str, seq: int, max_readings: int, now: datetime) -> int:
        rows = self._db.execute(
            "SELECT id, kind, ts_ms, body FROM pending ORDER BY id LIMIT ?",
            (max_readings + MAX_EVENTS_PER_BATCH,),
        ).fetchall()
        readings: list[str] = []
        events: list[str] = []
        size, last_id, oldest = 0, 0, None
        for row_id, kind, ts_ms, body in rows:
            bucket, limit = (
                (readings, max_readings) if kind == "r" else (events, MAX_EVENTS_PER_BATCH)
            )
            if len(bucket) >= limit or size + len(body) + 1 > MAX_BODY_BYTES:
                break
            bucket.append(body)
            size += len(body) + 1
            last_id = row_id
            oldest = ts_ms if oldest is None else min(oldest, ts_ms)
        if oldest is None:
            return 0
        body = (f"[{','.join(readings)}]", f"[{','.join(events)}]")
        counts = (len(readings), len(events), size)
        self._db.execute(_INSERT_OUTBOX, (boot, seq, to_ms(now), oldest, *body, *counts))
        self._db.execute("DELETE FROM pending WHERE id <= ?", (last_id,))
        self._evict_over_bound()
        return len(readings) + len(events)

    def _totals(self) -> tuple[int, int]:
        """Messages and bytes in the outbox."""
        messages, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
        ).fetchone()
        return int(messages), int(size)

    def _oldest_ids(self, enough: Callable[[int, int], bool]) -> list[int]:
        """Ids of the oldest messages, taken until enough(messages taken, bytes taken)."""
        ids: list[int] = []
        freed = 0
        for row_id, row_bytes in self._db.execute("SELECT id, bytes FROM outbox ORDER BY id"):
            if enough(len(ids), freed):
                break
            ids.append(row_id)
            freed += row_bytes
        return ids

    def _evict_over_bound(self) -> None:
        messages, size = self._totals()
        ids = self._oldest_ids(
            lambda n, freed: messages - n <= self.max_messages and size - freed <= self.max_bytes
        )
        self._evict(ids, "buffer bound reached")

    def _evict(self, ids: list[int], reason: str) -> None:
        """Delete outbox messages by id, counting what they held."""
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        readings, events = self._db.execute(
            f"SELECT COALESCE(SUM(count), 0), COALESCE(SUM(event_count), 0) FROM outbox "  # noqa: S608
            f"WHERE id IN ({marks})",
            ids,
        ).fetchone()
        self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", ids)  # noqa: S608
        self._bump("evicted_messages", len(ids))
        self._bump("evicted_readings", readings)
        self._bump("evicted_events", events)
        log.warning(
            "buffer evicted oldest messages", reason=reason, messages=len(ids), readings=readings
        )

    def _make_room(self, error: str) -> tuple[bool, bool]:
        """Free storage: ballast, WAL, the oldest outbox messages; says (evicted, released)."""
        log.error("buffer storage full: making room", path=str(self.path), error=error)
        with self._lock:
            released = self._ballast.release()
            self._checkpoint()
            evicted = self._evict_for_space()
            self._db.execute("PRAGMA incremental_vacuum")  # hand freed pages to the disk
            self._checkpoint()
            self._ballast.restore()
        return evicted, released

    def _evict_for_space(self) -> bool:
        """Evict the oldest tenth of the outbox, and at least twice the ballast's size."""
        messages, size = self._totals()
        wanted = max(size // 10, 2 * self._ballast.size)
        ids = self._oldest_ids(lambda _, freed: freed >= wanted)
        if not ids:
            return False
        try:
            with self._transaction():
                self._evict(ids, "storage full")
                self._bump("disk_full_evictions", 1)
        except sqlite3.OperationalError as err:
            if err.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise
            error = str(err)
        else:
            return True
        log.error("buffer storage full: cannot even evict", error=error, messages=messages)
        return False

    def _checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it (best effort while the disk is full)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as err:
            log.warning("buffer checkpoint failed", error=str(err))

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def oldest(self, limit: int) -> list[OutboxMessage]:
        """The oldest sealed messages, to be sent in this order."""
        return self._select("1 = 1", (), limit)

    def live(self, boot: str, since: datetime, limit: int) -> list[OutboxMessage]:
        """This boot's messages whose oldest reading was taken at or after `since`, in order."""
        return self._select("boot = ? AND oldest_ms >= ?", (boot, to_ms(since)), limit)

    def backlog(self, boot: str, since: datetime, limit: int) -> list[OutboxMessage]:
        """Every message `live()` leaves out (other boots, older readings), oldest first."""
        return self._select("NOT (boot = ? AND oldest_ms >= ?)", (boot, to_ms(since)), limit)

    def _select(self, where: str, args: tuple[object, ...], limit: int) -> list[OutboxMessage]:
        query = f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY id LIMIT ?"  # noqa: S608
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [
            OutboxMessage(i, b, s, from_ms(c), from_ms(o), r, e, n, ne)
            for i, b, s, c, o, r, e, n, ne in rows
        ]

    def accept(self, message_ids: list[int]) -> None:
        """Forget messages the broker acknowledged."""

        def work() -> None:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in message_ids])
            self._bump("sent_messages", len(message_ids))

        self._write(work)

    def load_state(self) -> dict[str, str]:
        """Durable key/value state saved with readings (the features' counters)."""
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM state").fetchall())

    def oldest_taken(self) -> datetime | None:
        """When the oldest reading or event still in the buffer was taken."""
        with self._lock:
            (outbox,) = self._db.execute("SELECT MIN(oldest_ms) FROM outbox").fetchone()
            (pending,) = self._db.execute("SELECT MIN(ts_ms) FROM pending").fetchone()
        found = [ms for ms in (outbox, pending) if ms is not None]
        return from_ms(min(found)) if found else None

    def stats(self) -> dict[str, int]:
        """Backlog sizes and lifetime counters (sent, evicted, dropped)."""
        with self._lock:
            (pending,) = self._db.execute(
                "SELECT COUNT(*) FROM pending WHERE kind = 'r'"
            ).fetchone()
            messages, readings, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0) FROM outbox"
            ).fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {
            "evicted_messages": 0,
            "evicted_readings": 0,
            **counters,
            "pending_readings": pending,
            "outbox_messages": messages,
            "outbox_readings": readings,
            "outbox_bytes": size,
            "dropped_readings": self.dropped_readings,
        }

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
