"""What the stores hold after a run: ledger, duplicates, rejections, alerts, stored readings.

Read straight from PostgreSQL (SQLAlchemy Core on the cloud's own tables) and VictoriaMetrics
(raw samples from /api/v1/export), plus what each gateway's buffer still holds at the end.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from cloud.schema import alerts, dead_letters, duplicate_counts, message_ledger, rejection_counts
from cloud.state import state_engine
from leasewatch.chaos.stack import Stack
from leasewatch.chaos.wire_record import MessageKey, ReadingKey
from leasewatch.wire import RejectedMessageError, decode_telemetry

METRIC_PREFIX = "lw_"


@dataclass(frozen=True)
class OpenedAlert:
    """An alert the detection worker opened."""

    device: str
    detector: str
    key: str
    opened_at: datetime


@dataclass
class StoredState:
    """The cloud's and the gateways' view at the end of a run."""

    ledger: dict[MessageKey, int] = field(default_factory=dict)  # -> readings
    redeliveries: int = 0  # duplicates the ledger recognised and dropped
    rejections: dict[str, int] = field(default_factory=dict)
    alerts: list[OpenedAlert] = field(default_factory=list)
    readings: set[ReadingKey] = field(default_factory=set)
    held_at_end: dict[str, int] = field(default_factory=dict)  # device -> readings
    dead_lettered: dict[MessageKey, str] = field(default_factory=dict)  # -> reject reason
    unreadable_dead_letters: int = 0  # cut short (payload limit) or not telemetry


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def read_state_store(state_url: str, into: StoredState) -> None:
    """Ledger, duplicate counts, rejections and alerts."""
    engine = state_engine(state_url)
    try:
        with engine.connect() as conn:
            c = message_ledger.c
            for device, boot, seq, readings in conn.execute(
                select(c.device, c.boot, c.seq, c.readings)
            ):
                into.ledger[(device, boot, seq)] = int(readings)
            redelivered = conn.execute(select(func.sum(duplicate_counts.c.count))).scalar_one()
            into.redeliveries = int(redelivered or 0)
            r = rejection_counts.c
            into.rejections = {
                reason: int(n) for reason, n in conn.execute(select(r.reason, r.count))
            }
            a = alerts.c
            rows = conn.execute(select(a.device, a.detector, a.key, a.opened_at))
            into.alerts = [OpenedAlert(d, det, k, _utc(at)) for d, det, k, at in rows]
            dead = dead_letters.c
            for reason, topic, payload in conn.execute(
                select(dead.reason, dead.topic, dead.payload)
            ):
                _dead_letter(into, reason, topic, bytes(payload))
    finally:
        engine.dispose()


def _dead_letter(into: StoredState, reason: str, topic: str, payload: bytes) -> None:
    """Which message a dead letter was, when it can be read back."""
    try:
        batch = decode_telemetry(topic, payload)
    except (RejectedMessageError, ValueError):
        into.unreadable_dead_letters += 1
        return
    into.dead_lettered[(batch.device, batch.boot, batch.seq)] = reason


def read_telemetry(stack: Stack, devices: list[str], into: StoredState) -> None:
    """Every stored sample of the gateways, as reading keys."""
    stack.victoria.force_flush()
    selector = '{__name__=~"lw_.*",device=~"' + "|".join(devices) + '"}'
    for series in stack.victoria.export(selector):
        labels = series["metric"]
        if not isinstance(labels, dict):
            raise TypeError(f"VictoriaMetrics export without labels: {series!r:.200}")
        metric = str(labels["__name__"]).removeprefix(METRIC_PREFIX)
        timestamps = series["timestamps"]
        if not isinstance(timestamps, list):
            raise TypeError(f"VictoriaMetrics export without timestamps: {series!r:.200}")
        for ts in timestamps:
            into.readings.add((str(labels["device"]), str(labels["sensor"]), metric, int(ts)))


def held_in_buffer(path: Path, scratch: Path) -> int:
    """Readings a stopped agent's buffer file still holds (pending and sealed), read on a copy."""
    if not path.exists():
        return 0
    scratch.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        if (source := Path(f"{path}{suffix}")).exists():
            shutil.copy(source, scratch / f"buffer.sqlite{suffix}")
    with closing(sqlite3.connect(scratch / "buffer.sqlite")) as db:
        (pending,) = db.execute("SELECT COUNT(*) FROM pending WHERE kind = 'r'").fetchone()
        (sealed,) = db.execute("SELECT COALESCE(SUM(count), 0) FROM outbox").fetchone()
    return int(pending) + int(sealed)
