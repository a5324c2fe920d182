"""Writers of one SQLite state file take turns through a file lock, handed over within 1 ms.

SQLite lets one connection write at a time. A second writer waits in SQLite's busy handler,
which sleeps in growing steps (1, 2, 5, 10 ... up to 100 ms) and tries again: when the holder
commits, the waiter sleeps on, and the holder (an ingest worker whose next batch is already
prepared) often takes the lock again before it wakes. Two ingest workers on one state file
then leave the lock idle between turns and one of them starves.

Here every connection of a state store on a SQLite file takes an exclusive `flock` on a sidecar
file (`<database>.writer`) before the first write statement of a transaction, and lets go after
its commit or rollback. A waiting connection tries again every millisecond, so it takes the turn
within about a millisecond of the holder letting go (and gives up, like SQLite, after 30 s).
Reads take no turn (WAL: readers never wait for the writer). SQLite's own locking is unchanged,
so a program that does not take turns (the sqlite3 shell) stays safe; it just competes the old
way.

No deadlock: a connection takes its turn before SQLite's write lock (the turn is taken before
the statement that begins the transaction runs) and lets go after it, always in that order,
and nothing waits for anything else while holding a turn. A bug that did (a second write
transaction opened inside a first, in the same thread) fails after 30 s with "database is
locked", as it did with SQLite's own lock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Engine, event

#: As the state store's SQLite busy_timeout: how long a writer waits for its turn.
TURN_TIMEOUT_S = 30.0
#: Statements that do not write: they never need the writer's turn.
_READS = ("SELECT", "PRAGMA", "WITH", "EXPLAIN")


class TurnTakingConnection(sqlite3.Connection):
    """A sqlite3 connection that holds the file's writer turn from its first write to its end."""

    lock_path: str = ""  # set on the per-database subclass (`turn_taking_factory`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.holding_turn = False

    def take_turn(self) -> None:
        """Wait for the writer turn unless this connection already holds it.

        Tries every millisecond (a holder's turn is handed over within about 1 ms, where
        SQLite's busy handler sleeps up to 100 ms) and gives up after TURN_TIMEOUT_S like
        SQLite's busy timeout: "database is locked", which callers retry.
        """
        if self.holding_turn:
            return
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._turn_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: no writer turn on {self.lock_path} for "
                        f"{TURN_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.001)
                continue
            self.holding_turn = True
            return

    def _end_turn(self) -> None:
        if self.holding_turn:
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)
            self.holding_turn = False

    def commit(self) -> None:
        """Commit, then hand the turn over."""
        try:
            super().commit()
        finally:
            self._end_turn()

    def rollback(self) -> None:
        """Roll back, then hand the turn over."""
        try:
            super().rollback()
        finally:
            self._end_turn()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
        /,
    ) -> Literal[False]:
        """End of `with connection:` (a commit or a rollback in C, not through the methods
        above), then hand the turn over."""
        try:
            return super().__exit__(kind, error, trace)
        finally:
            self._end_turn()

    def close(self) -> None:
        """Close the database connection and the lock file (which ends any turn held)."""
        try:
            super().close()
        finally:
            self._end_turn()
            os.close(self._turn_fd)


def turn_taking_factory(database: str) -> type[TurnTakingConnection]:
    """The connection class for one database file (`sqlite3.connect(factory=...)`)."""
    return type(
        "TurnTakingConnection",
        (TurnTakingConnection,),
        {"lock_path": f"{os.path.abspath(database)}.writer"},
    )


def take_turns(engine: Engine) -> None:
    """Make the engine's write statements wait for the writer turn first (see module doc).

    The engine must have been created with `connect_args={"factory": turn_taking_factory(db)}`.
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _before_write(
        conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip()[:7].upper().startswith(_READS):
            return
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, TurnTakingConnection):
            dbapi.take_turn()
