"""Band-change webhooks to a real local HTTP receiver: signed, retried, one idempotency key."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from pydantic import SecretStr

from cloud.alerts.delivery import RetryPolicy
from cloud.alerts.outbox import Outbox
from cloud.alerts.signals import Severity
from cloud.alerts.signing import verify_signature
from cloud.leasing.assessment import score_history
from cloud.leasing.rescore import Rescorer
from cloud.leasing.store import LeasingStore
from cloud.leasing.webhooks import credit_receiver_ids, open_credit_delivery, outbox_alert_id
from cloud.risk.rules import load_rules
from cloud.settings import CloudSettings
from cloud.state import StateStore
from tests.cloud.alerts.receiver import SECRET, WebhookReceiver, serving
from tests.cloud.alerts.test_delivery import until
from tests.cloud.leasing.conftest import AS_OF, days_before, feed, make_lease, open_alert


async def test_a_band_change_is_signed_retried_and_keeps_its_key(state: StateStore) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    feed(state, "gw-0001", [(d, 8.0) for d in days_before(AS_OF, 42)])
    with serving(WebhookReceiver(fail_first=2)) as receiver:
        settings = CloudSettings(
            mode="demo", risk_webhook_urls=(receiver.url,),
            risk_webhook_secret=SecretStr(SECRET.decode()), alert_poll_s=0.02,
            alert_retry_base_s=0.02, alert_retry_cap_s=0.05,
        )  # fmt: skip
        rescorer = Rescorer(state.engine, load_rules(), credit_receiver_ids(settings))
        rescorer.rescore(["LS-1"], AS_OF)
        open_alert(state, "gw-0001", "silence", "sensors_removed", severity=Severity.CRITICAL,
                   at=AS_OF + timedelta(minutes=1))  # fmt: skip
        assert rescorer.rescore(["LS-1"], AS_OF + timedelta(hours=1)).changed == 1
        async with open_credit_delivery(settings, state.engine) as delivery:
            delivery.policy = RetryPolicy(max_attempts=5, base_s=0.02, cap_s=0.05)
            stop = asyncio.Event()
            task = asyncio.create_task(delivery.run(stop))
            await until(lambda: bool(receiver.accepted))
            stop.set()
            await asyncio.wait_for(task, timeout=10)
    assert [r.status for r in receiver.requests] == [503, 503, 204]
    assert len({r.key for r in receiver.requests}) == 1  # the same idempotency key each time
    assert len({r.body for r in receiver.requests}) == 1  # and the same body
    accepted = receiver.requests[-1]
    assert verify_signature(SECRET, accepted.headers["x-leasewatch-signature"], accepted.body,
                            time.time()) > 0  # fmt: skip
    assert accepted.headers["x-leasewatch-event"] == "alert.band_changed"
    document = accepted.document
    assert document["schema"] == "leasewatch.lease-band-event/v1"
    change = document["band_change"]
    assert (change["lease_id"], change["from_band"], change["worsened"]) == ("LS-1", "low", True)
    assert change["reasons"][0]["code"] == "tamper"
    assert document["idempotency_key"] == accepted.key
    (stored,) = Outbox(state.engine).deliveries(outbox_alert_id(change["id"]))
    assert (stored.status, stored.attempts) == ("delivered", 3)
    (audit,) = score_history(state.engine, "lease:LS-1", limit=1)  # the score the webhook served
    assert (audit["id"], audit["purpose"], audit["caller"]) == (
        change["audit_id"], "band_change", "rescoring",
    )  # fmt: skip
    assert (audit["score"], audit["band"]) == (change["to_score"], change["to_band"])
    assert audit["inputs"]["leases"][0]["signals"]["tamper_events"] == 1
