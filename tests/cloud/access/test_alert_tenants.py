"""A lessor's users see, read and act on their own gateways' alerts only."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud.access.roles import Role
from cloud.alerts.signals import Finding, Severity
from cloud.alerts.store import AlertStore
from tests.cloud.access.conftest import BOOTSTRAP_KEY, AccessApp

BOOT = {"X-API-Key": BOOTSTRAP_KEY}


def _open(store: AlertStore, device: str) -> int:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    finding = Finding(
        device=device, detector="faults", key="temperature", state="open",
        severity=Severity.WARNING, since=at, evaluated_at=at, summary=f"hot {device}",
    )  # fmt: skip
    store.apply([finding], at)
    (alert,) = store.query(device=device)
    return alert.id


def test_a_tenants_user_sees_and_acts_on_its_own_alerts_only(access_app: AccessApp) -> None:
    client = access_app.client
    for tenant in ("lessor-a", "lessor-b"):
        assert client.post(
            "/v1/tenants", headers=BOOT, json={"id": tenant, "name": tenant}
        ).is_success
    for device, tenant in (("gw-a1", "lessor-a"), ("gw-b1", "lessor-b")):
        made = client.post("/v1/devices", headers=BOOT, json={"device": device, "tenant": tenant})
        assert made.status_code == 201
    store = AlertStore(access_app.services.state.engine)
    mine, theirs = _open(store, "gw-a1"), _open(store, "gw-b1")
    a_am = {"X-API-Key": access_app.new_key("am-a", Role.ASSET_MANAGER, "lessor-a")}

    listed = client.get("/v1/alerts", headers=a_am).json()["alerts"]
    assert [a["id"] for a in listed] == [mine]
    assert client.get(f"/v1/alerts/{mine}", headers=a_am).status_code == 200
    for path in (f"/v1/alerts/{theirs}", f"/v1/alerts/{theirs}/deliveries"):
        answer = client.get(path, headers=a_am)
        assert (answer.status_code, answer.json()["code"]) == (404, "alert_not_found")
    for action in ("acknowledge", "resolve"):
        answer = client.post(f"/v1/alerts/{theirs}/{action}", headers=a_am, json={"by": "x"})
        assert (answer.status_code, answer.json()["code"]) == (404, "alert_not_found")
    assert store.get(theirs).status == "open", "another lessor's alert was not touched"
    everyone = client.get("/v1/alerts", headers=BOOT).json()["alerts"]
    assert sorted(a["id"] for a in everyone) == sorted([mine, theirs])
