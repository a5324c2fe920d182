"""Band-change webhooks to the credit system, through the alerts' outbox and delivery task.

A band change and its notifications (one outbox row per credit-system URL) commit in one
transaction. The rows live in `alert_deliveries` and go out through the same `AlertDelivery`
loop, `WebhookReceiver` (HMAC-SHA256 signature, idempotency key, retries with back-off, dead
letters) as alert events. To keep them apart from alerts: the receiver ids are
`credit-<sha256(url)[:16]>` (claimed only by the credit delivery task, signed with the risk
secret) and the row's `alert_id` is the band change id negated (alert ids are positive).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, insert

from cloud.alerts.delivery import AlertDelivery, retry_policy
from cloud.alerts.outbox import Outbox
from cloud.alerts.receivers import WebhookReceiver
from cloud.schema import alert_deliveries
from cloud.settings import CloudSettings

EVENT = "band_changed"
EVENT_SCHEMA = "leasewatch.lease-band-event/v1"
TOP_REASONS = 5


def credit_receiver_id(url: str) -> str:
    """The outbox receiver id of a credit-system webhook URL."""
    return "credit-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def credit_receiver_ids(settings: CloudSettings) -> tuple[str, ...]:
    """Receiver ids of the configured credit-system webhooks."""
    return tuple(credit_receiver_id(url) for url in dict.fromkeys(settings.risk_webhook_urls))


def outbox_alert_id(change_id: int) -> int:
    """The outbox's alert_id of a band change (negative: never an alert's id)."""
    return -change_id


def band_event_payload(change: dict[str, Any], idempotency_key: str, at: datetime) -> str:
    """The JSON body of one band-change notification (stored: every retry sends these bytes)."""
    worse = "worsened" if change["worsened"] else "improved"
    top = change["reasons"][0]["summary"] if change["reasons"] else "no reason recorded"
    text = (
        f"Lease {change['lease_id']} {worse} from {change['from_band']} to {change['to_band']} "
        f"(score {change['from_score']:.0f} -> {change['to_score']:.0f}): {top}"
    )
    document = {
        "schema": EVENT_SCHEMA,
        "event": EVENT,
        "idempotency_key": idempotency_key,
        "occurred_at": at.isoformat(),
        "text": text,
        "band_change": change | {"reasons": change["reasons"][:TOP_REASONS]},
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False)


def enqueue_band_change(
    conn: Connection, change: dict[str, Any], receivers: Sequence[str], now: datetime
) -> None:
    """One pending notification of a band change per receiver, in the caller's transaction."""
    for receiver in receivers:
        key = uuid.uuid4().hex
        conn.execute(
            insert(alert_deliveries).values(
                alert_id=outbox_alert_id(change["id"]),
                event=EVENT,
                receiver=receiver,
                idempotency_key=key,
                payload=band_event_payload(change, key, now),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


def credit_webhooks(settings: CloudSettings, client: httpx.AsyncClient) -> list[WebhookReceiver]:
    """Senders for the credit-system URLs, signed with the risk webhook secret."""
    secret = settings.risk_webhook_secret.get_secret_value().encode()
    senders = []
    for url in dict.fromkeys(settings.risk_webhook_urls):
        sender = WebhookReceiver(url, secret, client, settings.alert_webhook_timeout_s)
        sender.name = credit_receiver_id(url)
        senders.append(sender)
    return senders


@asynccontextmanager
async def open_credit_delivery(
    settings: CloudSettings, engine: Engine
) -> AsyncIterator[AlertDelivery]:
    """The alerts' delivery loop, for the credit-system webhooks only."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        timeout = settings.alert_webhook_timeout_s
        outbox = Outbox(engine, lease_s=3 * timeout + 30)
        yield AlertDelivery(
            outbox, credit_webhooks(settings, client), retry_policy(settings),
            poll_s=settings.alert_poll_s,
        )  # fmt: skip
