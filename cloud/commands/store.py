"""Stored gateway commands: requested, sent, answered by the gateway, or expired.

Statuses (docs/commands.md): `queued` (stored, not yet on the broker), `sent` (the broker took
it, QoS 1), `acknowledged` (the gateway ran it: `done`), `failed` (the gateway answered
`failed` or `rejected`, or the broker refused it), `expired` (no final answer before
`expires_at`, or the gateway said it arrived too late). The gateway's final answer is the
truth: it wins over a cloud-side expiry. Every write is a compare-and-set, so several API
processes may share the table, and a repeated acknowledgement changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, RowMapping, insert, select, update

from cloud.commands.tables import gateway_commands as t
from cloud.stored_time import utc
from leasewatch.wire import ArgValue, Command, CommandAck, CommandName

#: What the gateway's final answer makes of a command.
FINAL_STATUS = {"done": "acknowledged", "failed": "failed", "rejected": "failed",
                "expired": "expired"}  # fmt: skip
OPEN = ("queued", "sent")


class CommandStatus(StrEnum):
    """Where a command is."""

    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    EXPIRED = "expired"


class AckOutcome(StrEnum):
    """What recording an acknowledgement did."""

    RECORDED = "recorded"
    REPEATED = "repeated"  # already known: nothing changed
    UNKNOWN = "unknown"  # no such command for this gateway: dead-lettered by the caller


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One stored command and what became of it."""

    id: str
    device: str
    name: CommandName
    args: dict[str, ArgValue]
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    status: CommandStatus
    sent_at: datetime | None
    acked_at: datetime | None
    ack_status: str | None
    ack_detail: str | None
    ack_result: dict[str, ArgValue] | None
    detail: str | None

    def to_wire(self) -> Command:
        """The command as the gateway receives it."""
        return Command(
            id=self.id,
            name=self.name,
            args=self.args,
            issued_at=self.requested_at,
            expires_at=self.expires_at,
        )


def _record(row: RowMapping) -> CommandRecord:
    result = row["ack_result"]
    return CommandRecord(
        id=row["id"],
        device=row["device"],
        name=row["name"],
        args=json.loads(row["args"]),
        requested_by=row["requested_by"],
        requested_at=utc(row["requested_at"]),
        expires_at=utc(row["expires_at"]),
        status=CommandStatus(row["status"]),
        sent_at=utc(row["sent_at"]),
        acked_at=utc(row["acked_at"]),
        ack_status=row["ack_status"],
        ack_detail=row["ack_detail"],
        ack_result=None if result is None else json.loads(result),
        detail=row["detail"],
    )


class CommandStore:
    """Blocking reads and compare-and-set writes of the gateway_commands table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, device: str, command: Command, requested_by: str) -> CommandRecord:
        """Store a new command as queued."""
        expires_at = command.expires_at or command.issued_at
        values: dict[str, Any] = {
            "id": command.id, "device": device, "name": command.name,
            "args": json.dumps(command.args, sort_keys=True), "requested_by": requested_by[:128],
            "requested_at": command.issued_at, "expires_at": expires_at,
            "status": CommandStatus.QUEUED.value,
        }  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(insert(t).values(**values))
        found = self.get(command.id)
        assert found is not None  # noqa: S101 - inserted just above
        return found

    def get(self, command_id: str) -> CommandRecord | None:
        """One command by id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == command_id)).mappings().first()
        return None if row is None else _record(row)

    def history(self, device: str, limit: int = 50) -> list[CommandRecord]:
        """A gateway's newest commands first."""
        query = (
            select(t)
            .where(t.c.device == device)
            .order_by(t.c.requested_at.desc(), t.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def due(self, now: datetime, limit: int = 100) -> list[CommandRecord]:
        """Queued commands that have not expired, oldest first."""
        query = (
            select(t)
            .where(t.c.status == CommandStatus.QUEUED.value, t.c.expires_at > now)
            .order_by(t.c.requested_at, t.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def mark_sent(self, command_id: str, now: datetime) -> bool:
        """Queued -> sent once the broker took it; False when something else moved it first."""
        return self._move(command_id, (CommandStatus.QUEUED,), CommandStatus.SENT, sent_at=now)

    def mark_refused(self, command_id: str, detail: str) -> bool:
        """Queued -> failed: the broker would not take or route the command."""
        return self._move(
            command_id, (CommandStatus.QUEUED,), CommandStatus.FAILED, detail=detail[:500]
        )

    def _move(
        self, command_id: str, sources: tuple[CommandStatus, ...], to: CommandStatus, **values: Any
    ) -> bool:
        stmt = (
            update(t)
            .where(t.c.id == command_id, t.c.status.in_([s.value for s in sources]))
            .values(status=to.value, **values)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def expire(self, now: datetime) -> int:
        """Queued or sent commands past their expiry without a final answer become expired."""
        stmt = (
            update(t)
            .where(t.c.status.in_(OPEN), t.c.expires_at <= now)
            .values(status=CommandStatus.EXPIRED.value, detail="no final answer before it expired")
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def record_ack(self, ack: CommandAck, now: datetime) -> AckOutcome:
        """Record a gateway's answer; unknown ids and other gateways' commands are UNKNOWN."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(t.c.device, t.c.status, t.c.ack_status).where(t.c.id == ack.id)
            ).first()
            if row is None or row.device != ack.device:
                return AckOutcome.UNKNOWN
            if row.ack_status in FINAL_STATUS or row.ack_status == ack.status:
                return AckOutcome.REPEATED  # the first final answer stays; repeats change nothing
            values: dict[str, Any] = {
                "ack_status": ack.status, "ack_detail": ack.detail[:500],
                "ack_result": json.dumps(ack.result, sort_keys=True), "acked_at": now,
            }  # fmt: skip
            if row.status == CommandStatus.QUEUED:  # answered before it was marked sent
                values.update(status=CommandStatus.SENT.value, sent_at=now)
            if ack.status in FINAL_STATUS:
                values["status"] = FINAL_STATUS[ack.status]
            stmt = update(t).where(t.c.id == ack.id, t.c.ack_status.is_not_distinct_from(
                row.ack_status)).values(**values)  # fmt: skip
            changed = conn.execute(stmt).rowcount == 1
        return AckOutcome.RECORDED if changed else AckOutcome.REPEATED
