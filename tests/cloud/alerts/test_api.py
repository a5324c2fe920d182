"""The alert and maintenance API: authentication, filters, lifecycle, problems, dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud.alerts.outbox import Outbox
from cloud.alerts.receivers import webhook_id
from cloud.alerts.signals import Severity
from cloud.alerts.store import AlertStore
from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry.sqlite import SqliteTelemetryStore
from tests.cloud.alerts.conftest import T0, finding

KEY = "api-key-for-alert-tests"
AUTH = {"X-API-Key": KEY}
HOOK = "http://127.0.0.1:9/hooks/lw?token=not-for-display"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    """A migrated SQLite state store."""
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield store
    store.close()


@pytest.fixture
def client(tmp_path: Path, state: StateStore) -> Iterator[TestClient]:
    """The API with one webhook receiver configured."""
    settings = CloudSettings(mode="demo", api_key=SecretStr(KEY), alert_webhook_urls=(HOOK,))
    telemetry = SqliteTelemetryStore(tmp_path / "t.sqlite")
    services = Services(settings, telemetry, state, IngestMetrics())
    with TestClient(create_app(services)) as test:
        yield test


def _problem(response: object, status: int, code: str) -> None:
    assert getattr(response, "status_code", None) == status
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    assert response.json()["code"] == code  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/v1/alerts", "/v1/alerts/deliveries/failed", "/v1/maintenance"])
def test_every_route_needs_the_api_key(client: TestClient, path: str) -> None:
    _problem(client.get(path), 401, "unauthenticated")


def test_alerts_are_listed_newest_first_with_filters_and_pages(
    client: TestClient, state: StateStore
) -> None:
    store = AlertStore(state.engine, [webhook_id(HOOK)])
    store.apply(
        [finding(0, device=f"gw-{n:04d}") for n in range(3)]
        + [finding(0, detector="faults", key="bearing_temp", severity=Severity.CRITICAL)],
        now=T0,
    )
    page = client.get("/v1/alerts?limit=3", headers=AUTH).json()
    assert [a["id"] for a in page["alerts"]] == [4, 3, 2]
    rest = client.get(f"/v1/alerts?limit=3&before={page['next_before']}", headers=AUTH).json()
    assert ([a["id"] for a in rest["alerts"]], rest["next_before"]) == ([1], None)
    critical = client.get("/v1/alerts?severity=critical", headers=AUTH).json()["alerts"]
    assert [(a["detector"], a["key"]) for a in critical] == [("faults", "bearing_temp")]
    by_device = client.get("/v1/alerts?device=gw-0002&status=open", headers=AUTH).json()
    assert [a["device"] for a in by_device["alerts"]] == ["gw-0002"]
    one = client.get("/v1/alerts/2", headers=AUTH).json()
    assert one["summary"].startswith("Running hours fell")
    assert one["evidence"] == {
        "baseline_h_per_day": 7.5,
        "observed_h_per_day": 5.1,
        "window_days": 7,
    }
    assert "Evidence: baseline_h_per_day=7.5" in one["explanation"]
    _problem(client.get("/v1/alerts/99", headers=AUTH), 404, "alert_not_found")
    _problem(client.get("/v1/alerts?severity=loud", headers=AUTH), 422, "invalid_request")


def test_acknowledge_and_resolve_record_who_and_refuse_repeats(
    client: TestClient, state: StateStore
) -> None:
    (alert_id,) = AlertStore(state.engine, [webhook_id(HOOK)]).apply([finding(0)], now=T0).opened
    url = f"/v1/alerts/{alert_id}"
    _problem(client.post(f"{url}/acknowledge", json={}, headers=AUTH), 422, "invalid_request")
    acked = client.post(f"{url}/acknowledge", json={"by": "alice"}, headers=AUTH).json()
    assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", "alice")
    again = client.post(f"{url}/acknowledge", json={"by": "bob"}, headers=AUTH)
    _problem(again, 409, "alert_already_acknowledged")
    body = {"by": "alice", "note": "lessee confirmed a strike"}
    done = client.post(f"{url}/resolve", json=body, headers=AUTH).json()
    assert (done["status"], done["resolved_by"], done["resolve_note"]) == (
        "resolved",
        "alice",
        "lessee confirmed a strike",
    )
    _problem(client.post(f"{url}/resolve", json=body, headers=AUTH), 409, "alert_already_resolved")
    deliveries = client.get(f"{url}/deliveries", headers=AUTH).json()
    assert [d["event"] for d in deliveries] == ["opened", "acknowledged", "resolved"]
    assert {d["receiver"] for d in deliveries} == {"http://127.0.0.1:9/hooks/lw"}


def test_maintenance_windows_crud_and_suppression_shown_on_the_alert(
    client: TestClient, state: StateStore
) -> None:
    now = datetime.now(UTC)
    window = {
        "device": "gw-0001",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "reason": "hydraulic pump swap",
        "created_by": "ops-bob",
    }
    created = client.post("/v1/maintenance", json=window, headers=AUTH)
    assert created.status_code == 201
    window_id = created.json()["id"]
    assert created.json()["active"] is True
    assert [w["id"] for w in client.get("/v1/maintenance", headers=AUTH).json()] == [window_id]
    live = replace(finding(0), evaluated_at=now)
    (alert_id,) = AlertStore(state.engine).apply([live], now=now).opened
    alert = client.get(f"/v1/alerts/{alert_id}", headers=AUTH).json()
    assert alert["suppressed"] is True and alert["suppressed_by_window"] == window_id
    assert "hydraulic pump swap" in alert["suppression"]
    change = {**window, "device": None, "reason": "whole yard closed"}
    del change["created_by"]
    replaced = client.put(f"/v1/maintenance/{window_id}", json=change, headers=AUTH).json()
    assert (replaced["device"], replaced["created_by"]) == (None, "ops-bob")
    backwards = {**change, "ends_at": window["starts_at"]}
    _problem(
        client.put(f"/v1/maintenance/{window_id}", json=backwards, headers=AUTH),
        422,
        "invalid_range",
    )
    assert client.delete(f"/v1/maintenance/{window_id}", headers=AUTH).status_code == 204
    _problem(
        client.get(f"/v1/maintenance/{window_id}", headers=AUTH),
        404,
        "maintenance_window_not_found",
    )


def test_failed_deliveries_are_listed_and_can_be_retried(
    client: TestClient, state: StateStore
) -> None:
    AlertStore(state.engine, [webhook_id(HOOK)]).apply([finding(0)], now=T0)
    outbox = Outbox(state.engine)
    (claimed,) = outbox.claim_due([webhook_id(HOOK)], datetime.now(UTC))
    outbox.failed(claimed, "HTTP 500 Internal Server Error: boom", None, datetime.now(UTC))
    (letter,) = client.get("/v1/alerts/deliveries/failed", headers=AUTH).json()
    assert (letter["event"], letter["receiver"], letter["attempts"]) == (
        "opened",
        "http://127.0.0.1:9/hooks/lw",
        1,
    )
    assert "token" not in str(letter)
    retried = client.post(f"/v1/alerts/deliveries/failed/{letter['id']}/retry", headers=AUTH)
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    assert client.get("/v1/alerts/deliveries/failed", headers=AUTH).json() == []
    _problem(
        client.post(f"/v1/alerts/deliveries/failed/{letter['id']}/retry", headers=AUTH),
        404,
        "dead_letter_not_found",
    )
