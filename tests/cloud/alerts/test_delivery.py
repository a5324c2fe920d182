"""Webhook delivery to a real HTTP receiver: signatures, retries, dead letters, restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from cloud.alerts.delivery import AlertDelivery, RetryPolicy
from cloud.alerts.outbox import Outbox
from cloud.alerts.receivers import WebhookReceiver as WebhookSender
from cloud.alerts.receivers import webhook_id
from cloud.alerts.signing import SignatureError, verify_signature
from cloud.alerts.store import AlertStore
from cloud.state import StateStore
from tests.cloud.alerts.conftest import T0, finding
from tests.cloud.alerts.receiver import SECRET, WebhookReceiver, serving
from tests.services.ports import free_port

FAST = RetryPolicy(max_attempts=4, base_s=0.02, cap_s=0.05)


@asynccontextmanager
async def delivering(
    engine: Engine, url: str, policy: RetryPolicy = FAST, lease_s: float = 5.0
) -> AsyncIterator[AlertDelivery]:
    """A running delivery task for one webhook URL; stopped when the block ends."""
    async with httpx.AsyncClient() as client:
        sender = WebhookSender(url, SECRET, client, timeout_s=2.0)
        delivery = AlertDelivery(Outbox(engine, lease_s=lease_s), [sender], policy, poll_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(delivery.run(stop))
        try:
            yield delivery
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until the condition holds, or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_webhook_is_signed_and_says_why(sqlite_engine: Engine) -> None:
    with serving(WebhookReceiver()) as receiver:
        store = AlertStore(sqlite_engine, [webhook_id(receiver.url)])
        (alert_id,) = store.apply([finding(0)], now=T0).opened
        async with delivering(sqlite_engine, receiver.url):
            await until(lambda: len(receiver.requests) == 1)
    (request,) = receiver.requests
    signature = request.headers["x-leasewatch-signature"]
    assert verify_signature(SECRET, signature, request.body, time.time()) > 0
    with pytest.raises(SignatureError):
        verify_signature(SECRET, signature, request.body + b" ", time.time())
    with pytest.raises(SignatureError):
        verify_signature(b"another-secret", signature, request.body, time.time())
    with pytest.raises(SignatureError):
        verify_signature(SECRET, signature, request.body, time.time() + 3600)
    document = request.document
    assert request.headers["x-leasewatch-event"] == "alert.opened"
    assert document["idempotency_key"] == request.key == request.headers["x-leasewatch-delivery"]
    assert document["alert"]["id"] == alert_id
    assert document["alert"]["summary"].startswith("Running hours fell 32%")
    assert document["alert"]["evidence"]["baseline_h_per_day"] == 7.5
    assert "observed_h_per_day=5.1" in document["text"]
    (stored,) = Outbox(sqlite_engine).deliveries(alert_id)
    assert (stored.status, stored.attempts) == ("delivered", 1)


async def test_failures_are_retried_with_the_same_key_and_body(sqlite_engine: Engine) -> None:
    with serving(WebhookReceiver(fail_first=3)) as receiver:
        store = AlertStore(sqlite_engine, [webhook_id(receiver.url)])
        (alert_id,) = store.apply([finding(0)], now=T0).opened
        async with delivering(sqlite_engine, receiver.url) as delivery:
            await until(lambda: len(receiver.accepted) == 1)
            await until(lambda: delivery.counts.delivered == 1)
    assert [r.status for r in receiver.requests] == [503, 503, 503, 204]
    assert len({r.key for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    (stored,) = Outbox(sqlite_engine).deliveries(alert_id)
    assert (stored.status, stored.attempts) == ("delivered", 4)


async def test_the_last_failure_leaves_a_dead_letter_that_can_be_retried(
    sqlite_engine: Engine,
) -> None:
    with serving(WebhookReceiver(fail_first=4, fail_status=500)) as receiver:
        store = AlertStore(sqlite_engine, [webhook_id(receiver.url)])
        (alert_id,) = store.apply([finding(0)], now=T0).opened
        outbox = Outbox(sqlite_engine)
        async with delivering(sqlite_engine, receiver.url) as delivery:
            await until(lambda: delivery.counts.dead == 1)
            assert len(receiver.requests) == FAST.max_attempts == 4
            (letter,) = outbox.dead_letters()
            assert (letter.alert_id, letter.attempts, letter.event) == (alert_id, 4, "opened")
            assert letter.last_error.startswith("HTTP 500")
            outbox.retry_dead_letter(letter.id, datetime.now(UTC))
            await until(lambda: len(receiver.accepted) == 1)
    assert outbox.dead_letters() == []
    assert len({r.key for r in receiver.requests}) == 1


async def test_events_of_one_alert_arrive_in_order(sqlite_engine: Engine) -> None:
    with serving(WebhookReceiver(fail_first=2)) as receiver:
        store = AlertStore(sqlite_engine, [webhook_id(receiver.url)])
        store.apply([finding(0)], now=T0)
        store.apply([finding(1, state="cleared")], now=T0)
        async with delivering(sqlite_engine, receiver.url):
            await until(lambda: len(receiver.accepted) == 2)
    events = [r.document["event"] for r in receiver.requests]
    assert events == ["opened", "opened", "opened", "resolved"]


async def test_the_outbox_survives_a_restart_without_loss_or_double_delivery(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    dead_end = f"http://127.0.0.1:{free_port()}/hooks"  # nobody listens: every attempt fails
    with serving(WebhookReceiver()) as receiver:
        first = StateStore(url)
        receivers = [webhook_id(receiver.url), webhook_id(dead_end)]
        store = AlertStore(first.engine, receivers)
        store.apply([finding(0, device=f"gw-{n:04d}") for n in range(5)], now=T0)
        # a worker claims two notifications, sends one, and dies before recording either
        crashed = Outbox(first.engine, lease_s=0.3)
        claimed = crashed.claim_due([webhook_id(receiver.url)], datetime.now(UTC), limit=2)
        async with httpx.AsyncClient() as client:
            await WebhookSender(receiver.url, SECRET, client).send(claimed[0])
        first.close()

        second = StateStore(url)  # the restarted process
        slow = RetryPolicy(max_attempts=50, base_s=30, cap_s=60)
        async with delivering(second.engine, receiver.url, slow) as delivery:
            await until(lambda: delivery.counts.delivered == 5)
            await asyncio.sleep(0.4)  # later passes find nothing more to send
        assert Outbox(second.engine).pending() == 5  # the dead-end receiver's, still kept
        second.close()
    keys = [r.key for r in receiver.requests]
    assert len(keys) == 6 and len(set(keys)) == 5
    assert keys.count(claimed[0].idempotency_key) == 2  # resent after the crash, same key


async def test_two_delivery_tasks_send_each_notification_once(engine: Engine) -> None:
    with serving(WebhookReceiver()) as receiver:
        store = AlertStore(engine, [webhook_id(receiver.url)])
        store.apply([finding(0, device=f"gw-{n:04d}") for n in range(20)], now=T0)
        async with delivering(engine, receiver.url), delivering(engine, receiver.url):
            await until(lambda: len(receiver.requests) >= 20)
            await asyncio.sleep(0.2)
    assert len(receiver.requests) == 20
    assert len({r.key for r in receiver.requests}) == 20


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=4.0)
    delays = [policy.delay(n) for n in range(1, 5)]
    for delay, ceiling in zip(delays, [1.0, 2.0, 4.0, 4.0], strict=True):
        assert delay is not None and 0.75 * ceiling <= delay <= ceiling
    assert policy.delay(5) is None
    assert policy.delay(1, retry_after_s=3.0) == 3.0
    assert policy.delay(1, retry_after_s=3600.0) == 4.0
