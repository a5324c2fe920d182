"""Commands from the cloud and their acknowledgements.

A command arrives on `lw/v1/{device}/cmd`. Only the cloud may publish there: the broker's ACL
gives each gateway read access to its own command topic and the ingestor alone write access,
so a command is authenticated to this gateway by the broker. Every command is answered on
`lw/v1/{device}/ack`: `accepted`, then `done` or `failed`; a command the gateway cannot run is
`rejected`, and one that arrives after its expiry (or `command_ttl` after it was issued) is
`expired` and never run.

Commands are idempotent by id: the final acknowledgement of the last `remember_commands`
commands is kept in SQLite, and a command seen again gets the same answer without running again.
A command interrupted by a crash (accepted, never finished) runs again when it is redelivered:
every command sets a state (an interval, a configuration, a coil) rather than toggling one.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from edge.clock import gateway_now
from edge.config import ControlConfig
from leasewatch.wire import (
    ArgValue,
    Command,
    CommandAck,
    RejectedMessageError,
    decode_command,
)

log = structlog.get_logger(__name__)

AckStatus = Literal["accepted", "done", "failed", "rejected", "expired"]
Result = dict[str, ArgValue]


class CommandRejectedError(Exception):
    """The command cannot be run as asked (bad or missing arguments, nothing to drive)."""


class CommandFailedError(Exception):
    """The command was tried and did not succeed; the message says why."""


class CommandTarget(Protocol):
    """What commands act on: the running agent."""

    device: str
    boot: str

    async def read_now(self, sensor: str | None) -> int:
        """Poll a sensor (or every polled sensor) at once; returns the readings taken."""
        ...

    async def set_poll_interval(self, sensor: str, seconds: float) -> None:
        """Change and persist one sensor's poll interval."""
        ...

    async def push_config(self, text: str) -> str:
        """Validate, apply atomically (rolling back on failure) and persist pushed sections."""
        ...

    async def set_immobilized(self, immobilized: bool) -> Result:
        """Write the immobilizer coil; returns what the device answered."""
        ...


class CommandLedger:
    """The final acknowledgement of recent commands, kept in SQLite across restarts."""

    def __init__(self, path: Path, remember: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.remember = remember
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS commands ("
            " id TEXT PRIMARY KEY, status TEXT NOT NULL, ack TEXT NOT NULL, seen INTEGER NOT NULL)"
        )

    def final_ack(self, command_id: str) -> CommandAck | None:
        """The final acknowledgement given to a command, if it finished."""
        with self._lock:
            row = self._db.execute(
                "SELECT ack FROM commands WHERE id = ? AND status != 'accepted'", (command_id,)
            ).fetchone()
        return None if row is None else CommandAck.model_validate_json(row[0])

    def record(self, ack: CommandAck) -> None:
        """Remember the latest acknowledgement of a command; forget the oldest beyond the bound."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO commands (id, status, ack, seen) VALUES (?, ?, ?, "
                    " (SELECT COALESCE(MAX(seen), 0) + 1 FROM commands))"
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, ack = excluded.ack",
                    (ack.id, ack.status, ack.model_dump_json()),
                )
                self._db.execute(
                    "DELETE FROM commands WHERE seen <= (SELECT MAX(seen) FROM commands) - ?",
                    (self.remember,),
                )
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def salvage_id(payload: bytes) -> str | None:
    """The id of a command that failed validation, when it has a usable one."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        return None
    candidate: str = document["id"]
    ok = 8 <= len(candidate) <= 64 and all(
        c.isascii() and (c.isalnum() or c in "_-") for c in candidate
    )
    return candidate if ok else None


class CommandProcessor:
    """Runs commands one at a time and acknowledges each step."""

    def __init__(
        self,
        target: CommandTarget,
        ledger: CommandLedger,
        control: ControlConfig,
        send_ack: Callable[[CommandAck], None],
    ) -> None:
        self.target = target
        self.ledger = ledger
        self.control = control
        self._send_ack = send_ack
        self.handled = 0

    def _ack(
        self, command_id: str, status: AckStatus, detail: str = "", result: Result | None = None
    ) -> CommandAck:
        ack = CommandAck(
            device=self.target.device,
            boot=self.target.boot,
            id=command_id,
            status=status,
            detail=detail[:500],
            result=result or {},
            ts=gateway_now(),
        )
        self._send_ack(ack)
        return ack

    async def handle(self, payload: bytes) -> None:
        """Decode, deduplicate, check expiry, run and acknowledge one command."""
        self.handled += 1
        try:
            command = decode_command(payload)
        except RejectedMessageError as err:
            command_id = salvage_id(payload)
            log.warning(
                "command rejected", id=command_id, reason=err.reason.value, detail=err.detail
            )
            if command_id is not None:
                self._ack(command_id, "rejected", f"{err.reason.value}: {err.detail}")
            return
        if (previous := self.ledger.final_ack(command.id)) is not None:
            log.info(
                "command seen before: same answer again", id=command.id, status=previous.status
            )
            self._send_ack(previous)
            return
        if self._expired(command):
            self.ledger.record(self._ack(command.id, "expired", "arrived after it expired"))
            return
        self.ledger.record(self._ack(command.id, "accepted"))
        self.ledger.record(await self._run(command))

    def _expired(self, command: Command) -> bool:
        now = gateway_now()
        if command.expires_at is not None:
            return now >= command.expires_at
        return now >= command.issued_at + timedelta(seconds=self.control.command_ttl)

    async def _run(self, command: Command) -> CommandAck:
        log.info("command running", id=command.id, name=command.name)
        try:
            result = await self._dispatch(command)
        except CommandRejectedError as err:
            return self._ack(command.id, "rejected", str(err))
        except CommandFailedError as err:
            log.warning("command failed", id=command.id, name=command.name, detail=str(err))
            return self._ack(command.id, "failed", str(err))
        return self._ack(command.id, "done", result=result)

    async def _dispatch(self, command: Command) -> Result:
        args = command.args
        match command.name:
            case "ping":
                return {"boot": self.target.boot}
            case "read_now":
                sensor = _optional_str(args, "sensor")
                return {"readings": await self.target.read_now(sensor)}
            case "set_poll_interval":
                sensor = _required_str(args, "sensor")
                seconds = _required_seconds(args, "interval")
                await self.target.set_poll_interval(sensor, seconds)
                return {"sensor": sensor, "interval": seconds}
            case "push_config":
                return {"applied": await self.target.push_config(_required_str(args, "config"))}
            case "immobilize" | "release":
                return await self.target.set_immobilized(command.name == "immobilize")
        raise CommandRejectedError(f"unknown command {command.name!r}")  # pragma: no cover


def _optional_str(args: Result, key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise CommandRejectedError(f"argument {key!r} must be a string")
    return value


def _required_str(args: Result, key: str) -> str:
    value = _optional_str(args, key)
    if not value:
        raise CommandRejectedError(f"argument {key!r} is required")
    return value


def _required_seconds(args: Result, key: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRejectedError(f"argument {key!r} must be a number of seconds")
    if not math.isfinite(value) or not 0 < value <= 86_400:
        raise CommandRejectedError(f"argument {key!r} must be in (0, 86400] seconds")
    return float(value)


class PushedSections:
    """Configuration sections pushed by the cloud, persisted atomically next to the buffer."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The sections pushed so far (empty when none)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        sections: dict[str, Any] = json.loads(text)
        return sections

    def save(self, sections: dict[str, Any]) -> None:
        """Replace the persisted sections: write a temporary file, fsync, rename, fsync the dir."""
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(sections, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def set_aside(self, reason: str) -> None:
        """Keep a file that no longer applies as `.rejected`, for people to look at."""
        log.error("pushed configuration set aside", path=str(self.path), reason=reason)
        self.path.replace(self.path.with_suffix(".rejected"))
