"""The delivery task: sends due outbox rows, retries with capped exponential back-off.

Run it in every ingestor process (or any one process): claims make concurrent tasks safe.
`run_alert_delivery(settings, engine, stop)` is the whole wiring; `AlertDelivery` is the loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cloud.alerts.outbox import Outbox
from cloud.alerts.receivers import DeliveryError, MqttReceiver, Receiver, WebhookReceiver
from cloud.alerts.records import Delivery
from cloud.settings import CloudSettings

log = structlog.get_logger(__name__)

CONCURRENCY = 16  # sends in flight per delivery task


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts before a dead letter, and the back-off between them (base doubling up to cap)."""

    max_attempts: int = 12
    base_s: float = 2.0
    cap_s: float = 600.0

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones; None: dead letter."""
        if attempts >= self.max_attempts:
            return None
        backoff = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        backoff *= random.uniform(0.75, 1.0)  # spread retries of many alerts apart
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s, self.cap_s))
        return backoff


@dataclass
class DeliveryCounts:
    """What this task did since it started."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0


class AlertDelivery:
    """Sends due notifications to their receivers until stopped.

    Up to `concurrency` sends run at once, each as its own task: a slow or dead receiver holds
    only its own slots, and free slots are refilled as soon as a send ends or `wake()` is called.
    """

    def __init__(
        self,
        outbox: Outbox,
        receivers: Sequence[Receiver],
        policy: RetryPolicy,
        *,
        poll_s: float = 0.5,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.outbox = outbox
        self.receivers = {receiver.name: receiver for receiver in receivers}
        self.policy = policy
        self.poll_s = poll_s
        self.concurrency = concurrency
        self.counts = DeliveryCounts()
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due notifications now (call from the event loop after applying findings)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; sends in flight then finish (bounded by their timeout)."""
        if not self.receivers:
            log.info("no alert receivers configured; alerts are only stored")
            return
        async with asyncio.TaskGroup() as group:
            while not stop.is_set():
                free = self.concurrency - len(self._inflight)
                claimed = await self._claim(free) if free > 0 else []
                for delivery in claimed:
                    task = group.create_task(self._deliver(delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
                if len(claimed) < free or free == 0:
                    await self._pause(stop)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _claim(self, limit: int) -> list[Delivery]:
        now = datetime.now(UTC)
        try:
            return await asyncio.to_thread(self.outbox.claim_due, self.receivers.keys(), now, limit)
        except SQLAlchemyError as err:
            log.warning("alert outbox unreachable, retrying", error=str(err))
            return []

    async def _pause(self, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._wake.clear()

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            await self.receivers[delivery.receiver].send(delivery)
        except DeliveryError as err:
            await self._failed(delivery, err)
            return
        try:
            await asyncio.to_thread(self.outbox.delivered, delivery.id, datetime.now(UTC))
        except SQLAlchemyError as err:
            # the claim lapses and the same body goes out again with the same idempotency key
            log.warning("sent but not recorded", delivery=delivery.id, error=str(err))
            return
        self.counts.delivered += 1

    async def _failed(self, delivery: Delivery, err: DeliveryError) -> None:
        now = datetime.now(UTC)
        delay = self.policy.delay(delivery.attempts, err.retry_after_s)
        retry_at = None if delay is None else now + timedelta(seconds=delay)
        try:
            dead = await asyncio.to_thread(self.outbox.failed, delivery, str(err), retry_at, now)
        except SQLAlchemyError as store_err:  # the claim lapses; the attempt is retried then
            log.warning("failure not recorded", delivery=delivery.id, error=str(store_err))
            return
        fields = {
            "alert": delivery.alert_id,
            "alert_event": delivery.event,
            "receiver": self.receivers[delivery.receiver].target,
            "attempts": delivery.attempts,
            "error": str(err),
        }
        if dead:
            self.counts.dead += 1
            log.error("alert notification dead-lettered", **fields)
        elif retry_at is not None:
            self.counts.retried += 1
            log.warning("alert notification failed, will retry", retry_at=retry_at, **fields)


def retry_policy(settings: CloudSettings) -> RetryPolicy:
    """The retry policy the settings describe."""
    return RetryPolicy(
        settings.alert_retry_max_attempts, settings.alert_retry_base_s, settings.alert_retry_cap_s
    )


@asynccontextmanager
async def open_alert_delivery(
    settings: CloudSettings, engine: Engine
) -> AsyncIterator[AlertDelivery]:
    """An AlertDelivery for the configured receivers; HTTP and MQTT connections closed after."""
    timeout = settings.alert_webhook_timeout_s
    async with AsyncExitStack() as stack:
        receivers: list[Receiver] = []
        if settings.alert_webhook_urls:
            client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
            secret = settings.alert_webhook_secret.get_secret_value().encode()
            receivers += [
                WebhookReceiver(url, secret, client, timeout)
                for url in dict.fromkeys(settings.alert_webhook_urls)
            ]
        if settings.alert_mqtt:
            mqtt = MqttReceiver(settings, timeout)
            stack.push_async_callback(mqtt.aclose)
            receivers.append(mqtt)
        outbox = Outbox(engine, lease_s=3 * timeout + 30)  # a claim outlives its one send
        yield AlertDelivery(outbox, receivers, retry_policy(settings), poll_s=settings.alert_poll_s)


async def run_alert_delivery(settings: CloudSettings, engine: Engine, stop: asyncio.Event) -> None:
    """Deliver alert notifications until `stop` is set (what cloud.runtime runs as a task)."""
    async with open_alert_delivery(settings, engine) as delivery:
        await delivery.run(stop)
