"""The delivery outbox: notifications written with the alert change, sent later, never lost.

An alert event is written to `alert_deliveries` (one row per receiver) in the same transaction
that changed the alert, so a crash can lose neither. Delivery tasks (any number, in any worker)
claim due rows with a conditional UPDATE ... RETURNING and a lease: one claimant sends a row at a
time. A row is marked delivered only after its receiver accepted it; a crash in between sends it
again after the lease, with the same idempotency key and body. Events of one alert reach one
receiver in order: a row waits while an earlier row for the same (alert, receiver) is pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, exists, func, insert, or_, select, update

from cloud.alerts.records import (
    Alert,
    AlertEvent,
    DeadLetter,
    Delivery,
    dead_letter_from_row,
    delivery_from_row,
    event_payload,
    utc,
)
from cloud.schema import alert_dead_letters, alert_deliveries

ERROR_CHARS = 1000


class DeadLetterNotFoundError(LookupError):
    """No dead letter has this id."""


def enqueue(
    conn: Connection, alert: Alert, event: AlertEvent, receivers: Sequence[str], now: datetime
) -> int:
    """Write one pending delivery of `event` per receiver, in the caller's transaction."""
    for receiver in receivers:
        key = uuid.uuid4().hex
        conn.execute(
            insert(alert_deliveries).values(
                alert_id=alert.id,
                event=event,
                receiver=receiver,
                idempotency_key=key,
                payload=event_payload(alert, event, key, now),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(receivers)


class Outbox:
    """Claims, completes and dead-letters deliveries (blocking; call from a worker thread)."""

    def __init__(self, engine: Engine, lease_s: float = 60.0) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_s)

    def claim_due(
        self, receivers: Collection[str], now: datetime, limit: int = 50
    ) -> list[Delivery]:
        """Claim up to `limit` due deliveries for these receivers; counts one attempt each."""
        if not receivers:
            return []
        d = alert_deliveries
        due, earlier = d.alias("due"), d.alias("earlier")
        waits = exists().where(
            earlier.c.alert_id == due.c.alert_id,
            earlier.c.receiver == due.c.receiver,
            earlier.c.status == "pending",
            earlier.c.id < due.c.id,
        )
        candidates = (
            select(due.c.id)
            .where(due.c.status == "pending", due.c.next_attempt_at <= now)
            .where(or_(due.c.claimed_until.is_(None), due.c.claimed_until < now))
            .where(due.c.receiver.in_(sorted(receivers)), ~waits)
            .order_by(due.c.id)
            .limit(limit)
        )
        claim = (
            update(d)
            .where(d.c.id.in_(candidates), d.c.status == "pending")
            .where(or_(d.c.claimed_until.is_(None), d.c.claimed_until < now))
            .values(claimed_until=now + self.lease, attempts=d.c.attempts + 1)
            .returning(*d.c)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(claim).mappings().all()
        return sorted((delivery_from_row(r) for r in rows), key=lambda x: x.id)

    def delivered(self, delivery_id: int, now: datetime) -> None:
        """Mark a claimed delivery as accepted by its receiver."""
        d = alert_deliveries
        with self.engine.begin() as conn:
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status == "pending")
                .values(status="delivered", delivered_at=now, claimed_until=None, last_error=None)
            )

    def failed(
        self, delivery: Delivery, error: str, retry_at: datetime | None, now: datetime
    ) -> bool:
        """Schedule a retry at `retry_at`, or (None) dead-letter it; True when dead-lettered."""
        d = alert_deliveries
        error = error[:ERROR_CHARS]
        pending = (d.c.id == delivery.id) & (d.c.status == "pending")
        with self.engine.begin() as conn:
            if retry_at is not None:
                conn.execute(
                    update(d)
                    .where(pending)
                    .values(next_attempt_at=retry_at, claimed_until=None, last_error=error)
                )
                return False
            dead = conn.execute(
                update(d)
                .where(pending)
                .values(status="dead", claimed_until=None, last_error=error)
                .returning(d.c.attempts)
            ).first()
            if dead is None:  # another claimant finished it first
                return False
            conn.execute(
                insert(alert_dead_letters).values(
                    delivery_id=delivery.id,
                    alert_id=delivery.alert_id,
                    event=delivery.event,
                    receiver=delivery.receiver,
                    idempotency_key=delivery.idempotency_key,
                    attempts=dead.attempts,
                    last_error=error,
                    failed_at=now,
                )
            )
            return True

    def deliveries(self, alert_id: int) -> list[Delivery]:
        """Every delivery of one alert, oldest first."""
        d = alert_deliveries
        query = select(d).where(d.c.alert_id == alert_id).order_by(d.c.id)
        with self.engine.connect() as conn:
            return [delivery_from_row(r) for r in conn.execute(query).mappings()]

    def pending(self) -> int:
        """How many deliveries are waiting to be sent."""
        d = alert_deliveries
        query = select(func.count()).select_from(d).where(d.c.status == "pending")
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def dead_letters(self, *, before_id: int | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; `before_id` pages on."""
        q = alert_dead_letters
        query = select(q).order_by(q.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(q.c.id < before_id)
        with self.engine.connect() as conn:
            return [dead_letter_from_row(r) for r in conn.execute(query).mappings()]

    def retry_dead_letter(self, dead_letter_id: int, now: datetime) -> Delivery:
        """Put a dead-lettered delivery back in the outbox (same idempotency key and body)."""
        d, q = alert_deliveries, alert_dead_letters
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(q).where(q.c.id == dead_letter_id).returning(q.c.delivery_id)
            ).first()
            if gone is None:
                raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id}")
            row = (
                conn.execute(
                    update(d)
                    .where(d.c.id == gone.delivery_id)
                    .values(status="pending", attempts=0, next_attempt_at=utc(now))
                    .returning(*d.c)
                )
                .mappings()
                .one()
            )
        return delivery_from_row(row)
