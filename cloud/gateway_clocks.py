"""Gateways whose clock runs ahead: their stamps are re-based, not refused.

The edge agent stamps a boot's readings and its messages' `sent_at` from one timeline
(edge/clock.py), so when that timeline is wrong, it is wrong by the same amount for all of
them. A live message whose `sent_at` is ahead of the cloud's receive time by more than
`max_clock_ahead_s` proves the timeline runs ahead: a delay on the way can make `sent_at` look
older, never newer. The ingestor keeps, per (device, boot), the largest such lead it has seen
(the least delayed message estimates it best), and shifts back by it the stamps of that boot's
messages that would otherwise be refused as lying in the future. Messages of a boot that never
showed a lead in a live message (a backlog of an earlier boot) cannot be re-based and are
refused as before (`timestamp_out_of_range`, kept as dead letters).

A clock that runs behind cannot be told from a delayed message here, so it is not corrected:
its readings are stored where it stamped them. The gateway's health report says how its stamps
stand (`clock_steps`, `clock_held_s`, and `clock_offset_s` with an NTP server configured).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from msgspec.structs import replace
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.schema import metadata
from cloud.stored_time import utc
from leasewatch.wire import TelemetryBatch

TZ = DateTime(timezone=True)

gateway_clock_leads = Table(
    "gateway_clock_leads",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("boot", String(64), primary_key=True),
    Column("lead_s", Float, nullable=False),  # how far the boot's stamps run ahead
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    Column("rebased_messages", Integer, nullable=False),  # re-deliveries counted too
)


@dataclass(frozen=True, slots=True)
class ClockLead:
    """How far one boot of a gateway stamps ahead of the cloud, and what was re-based."""

    device: str
    boot: str
    lead_s: float
    first_seen: datetime
    last_seen: datetime
    rebased_messages: int


class GatewayClocks:
    """Leads of gateway clocks, kept in the state store; re-bases what they would refuse."""

    def __init__(self, engine: Engine, tolerance_s: float) -> None:
        self.engine = engine
        self.tolerance_s = tolerance_s
        self._postgres = engine.dialect.name == "postgresql"

    def rebase(self, batch: TelemetryBatch, now: datetime) -> TelemetryBatch | None:
        """`batch` shifted back by its boot's lead, or None when no lead is known for it."""
        lead = (batch.sent_at - now).total_seconds()
        seen = lead if not batch.historical and lead > self.tolerance_s else None
        known = self._lead(batch.device, batch.boot, seen, now)
        if known is None:
            return None
        return shifted(batch, -known)

    def _lead(self, device: str, boot: str, seen: float | None, now: datetime) -> float | None:
        """Record a lead seen in a live message (the largest one is kept); the boot's lead."""
        table = gateway_clock_leads
        with self.engine.begin() as conn:
            if seen is not None:
                insert = pg_insert if self._postgres else sqlite_insert
                greatest = func.greatest if self._postgres else func.max
                stmt = insert(table).values(
                    device=device,
                    boot=boot,
                    lead_s=seen,
                    first_seen=now,
                    last_seen=now,
                    rebased_messages=1,
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=[table.c.device, table.c.boot],
                    set_={
                        "lead_s": greatest(table.c.lead_s, stmt.excluded.lead_s),
                        "last_seen": now,
                        "rebased_messages": table.c.rebased_messages + 1,
                    },
                )
                conn.execute(stmt)
            else:
                conn.execute(
                    table.update()
                    .where(table.c.device == device, table.c.boot == boot)
                    .values(rebased_messages=table.c.rebased_messages + 1, last_seen=now)
                )
            query = select(table.c.lead_s).where(table.c.device == device, table.c.boot == boot)
            lead: float | None = conn.execute(query).scalar_one_or_none()
        return lead

    def leads(self, device: str) -> list[ClockLead]:
        """Every boot of `device` whose stamps were found ahead, newest first."""
        table = gateway_clock_leads
        query = select(table).where(table.c.device == device).order_by(table.c.last_seen.desc())
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        return [
            ClockLead(
                **{
                    **row,
                    "first_seen": utc(row["first_seen"]),
                    "last_seen": utc(row["last_seen"]),
                }
            )
            for row in rows
        ]


def shifted(batch: TelemetryBatch, seconds: float) -> TelemetryBatch:
    """The same message with every stamp moved by `seconds`."""
    delta = timedelta(seconds=seconds)
    return replace(
        batch,
        sent_at=batch.sent_at + delta,
        readings=[replace(r, ts=r.ts + delta) for r in batch.readings],
        events=[replace(e, ts=e.ts + delta) for e in batch.events],
    )
