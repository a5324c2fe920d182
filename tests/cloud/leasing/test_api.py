"""The leasing API: import report, CRUD, credit checks, audit trail, watchlist, problems."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from cloud.alerts.signals import Severity
from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.leasing.rescore import Rescorer
from cloud.leasing.store import LeasingStore
from cloud.leasing.tables import risk_scores
from cloud.metrics import IngestMetrics
from cloud.risk.rules import load_rules
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry.sqlite import SqliteTelemetryStore
from tests.cloud.leasing.conftest import AS_OF, days_before, feed, make_lease, open_alert

KEY = "api-key-for-leasing-tests"
AUTH = {"X-API-Key": KEY}
CSV = """lease_id,lessee_id,lessee_name,starts_on,ends_on,region_center_lat,region_center_lon,\
region_radius_km,expected_hours_per_day,asset_value,payment_schedule,assets
LS-1,L-1,Acme,2026-01-01,2029-01-01,48.1,11.5,50,8,250000,monthly,A-1/excavator/gw-0001
LS-2,L-2,,2026-01-01,2029-01-01,,,,8,90000,monthly,
LS-3,L-1,Acme,2026-01-01,2025-01-01,,,,30,90000,weekly,
LS-4,L-1,Acme,2026-01-01,2029-01-01,48.1,,,8,90000,monthly,A-9/truck/gw-0001
LS-1,L-1,Acme,2026-01-01,2029-01-01,,,,8,90000,monthly,
"""


@pytest.fixture
def client(tmp_path: Path, state: StateStore) -> Iterator[TestClient]:
    """The API on a migrated state store (each backend)."""
    settings = CloudSettings(mode="demo", api_key=SecretStr(KEY))
    telemetry = SqliteTelemetryStore(tmp_path / "t.sqlite")
    services = Services(settings, telemetry, state, IngestMetrics())
    with TestClient(create_app(services), headers=AUTH) as test:
        yield test


def _problem(response: object, status: int, code: str) -> dict[str, object]:
    assert getattr(response, "status_code", None) == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    document: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert document["code"] == code
    return document


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/leases"), ("GET", "/v1/lessees"), ("POST", "/v1/credit-checks"),
     ("GET", "/v1/risk/watchlist"), ("POST", "/v1/leases/import")],
)  # fmt: skip
def test_every_route_needs_the_api_key(client: TestClient, method: str, path: str) -> None:
    _problem(client.request(method, path, headers={"X-API-Key": "wrong"}), 401, "unauthenticated")


def test_a_csv_import_reports_each_rejected_row_with_its_field(client: TestClient) -> None:
    response = client.post("/v1/leases/import", content=CSV, headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows"], report["created"], report["updated"]) == (5, 1, 0)
    assert report["rejected_rows"] == 4
    found = {(r["row"], r["field"]) for r in report["rejections"]}
    assert (2, "lessee_id") in found  # unknown lessee and no name to create it
    assert {(3, "ends_on"), (3, "expected_hours_per_day"), (3, "payment_schedule")} <= found
    assert (4, "region_center_lon") in found  # a centre without its longitude
    assert (5, "lease_id") in found  # the same lease twice in one file
    reason = next(r["reason"] for r in report["rejections"] if r["field"] == "ends_on")
    assert "after starts_on" in reason
    lease = client.get("/v1/leases/LS-1").json()
    assert lease["region"] == {"center": [48.1, 11.5], "radius_km": 50.0, "polygon": None}
    assert [a["device"] for a in lease["assets"]] == ["gw-0001"]
    _problem(client.get("/v1/leases/LS-3"), 404, "lease_not_found")


def test_a_json_import_updates_and_refuses_a_gateway_mounted_elsewhere(client: TestClient) -> None:
    client.post("/v1/leases/import", content=CSV, headers={"content-type": "text/csv"})
    rows = [
        {"lease_id": "LS-1", "lessee_id": "L-1", "starts_on": "2026-01-01",
         "ends_on": "2030-01-01", "asset_value": 1.0, "status": "active",
         "region": {"polygon": [[48, 11], [48, 12], [49, 12]]}},
        {"lease_id": "LS-7", "lessee_id": "L-1", "starts_on": "2026-01-01",
         "ends_on": "2030-01-01", "asset_value": 1.0,
         "assets": [{"asset_id": "A-7", "asset_type": "truck", "device": "gw-0001"}]},
        "not an object",
    ]  # fmt: skip
    report = client.post("/v1/leases/import?format=json", content=json.dumps(rows)).json()
    assert (report["created"], report["updated"], report["rejected_rows"]) == (0, 1, 2)
    assert [(r["row"], r["field"]) for r in report["rejections"]] == [(2, "assets"), (3, "row")]
    assert "mounted on asset 'A-1'" in report["rejections"][0]["reason"]
    assert client.get("/v1/leases/LS-1").json()["ends_on"] == "2030-01-01"
    _problem(client.get("/v1/leases/LS-7"), 404, "lease_not_found")
    bad = client.post("/v1/leases/import", content=b"{", headers={"content-type": "text/plain"})
    _problem(bad, 415, "unsupported_import_format")
    _problem(client.post("/v1/leases/import?format=json", content=b"{"), 422, "invalid_import_file")


def test_leases_are_created_changed_and_listed(client: TestClient) -> None:
    client.post("/v1/lessees", json={"lessee_id": "L-1", "name": "Acme"})
    body = {
        "lease_id": "LS-1", "lessee_id": "L-1", "starts_on": "2026-01-01",
        "ends_on": "2029-01-01", "asset_value": 100000, "expected_hours_per_month": 160,
    }  # fmt: skip
    assert client.post("/v1/leases", json=body).status_code == 201
    _problem(client.post("/v1/leases", json=body), 409, "lease_exists")
    orphan = body | {"lease_id": "LS-9", "lessee_id": "L-9"}
    _problem(client.post("/v1/leases", json=orphan), 404, "lessee_not_found")
    changed = client.patch("/v1/leases/LS-1", json={"hours_cap_per_month": 200})
    assert changed.json()["hours_cap_per_month"] == 200
    _problem(client.patch("/v1/leases/LS-1", json={"ends_on": "2020-01-01"}), 422, "invalid_lease")
    asset = {"asset_id": "A-1", "asset_type": "truck", "device": "gw-0001"}
    assert client.put("/v1/leases/LS-1/assets/A-1", json=asset).status_code == 200
    assert [a["asset_id"] for a in client.get("/v1/leases/LS-1/assets").json()] == ["A-1"]
    assert [x["lease_id"] for x in client.get("/v1/lessees/L-1/leases").json()] == ["LS-1"]
    assert [x["lease_id"] for x in client.get("/v1/leases?status=active").json()] == ["LS-1"]


def test_a_credit_check_answers_the_contract_and_is_audited(
    client: TestClient, state: StateStore
) -> None:
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    days = days_before(AS_OF, 42)
    feed(state, "gw-0001", [(d, 8.0 if i < 28 else 1.0) for i, d in enumerate(days)])
    as_of = AS_OF.isoformat()
    response = client.post("/v1/credit-checks", json={"lease_id": "LS-1", "as_of": as_of})
    assert response.status_code == 200, response.text
    check = response.json()
    assert set(check) >= {"score", "band", "reasons", "data_completeness", "model_version",
                          "leases", "as_of", "subject", "audit_id"}  # fmt: skip
    assert check["subject"] == "lease:LS-1"
    assert check["model_version"] == load_rules().version
    assert check["reasons"][0]["code"] == "utilization_below_baseline"
    (lease,) = check["leases"]
    assert lease["signals"]["utilization_vs_baseline"] == pytest.approx(0.125, abs=0.01)
    (asset,) = lease["assets"]  # each gateway's own figures
    assert (asset["device"], asset["window_days"], asset["open_alerts"]) == ("gw-0001", 30, [])
    assert asset["data_completeness"] == pytest.approx(1.0)
    assert check["data_completeness"] == pytest.approx(1.0)
    lessee = client.post("/v1/credit-checks", json={"lessee_id": "L-1", "as_of": as_of}).json()
    assert lessee["subject"] == "lessee:L-1"
    assert lessee["reasons"][0]["code"] == "worst_lease"
    history = client.get("/v1/risk/leases/LS-1/history").json()
    assert [h["id"] for h in history] == [check["audit_id"]]
    assert (history[0]["caller"], history[0]["purpose"]) == (
        "bootstrap-admin (credit-check)",
        "credit_check",
    ), "the audit names the authenticated caller and whom it acts for"
    assert history[0]["inputs"]["leases"][0]["devices"] == ["gw-0001"]
    assert history[0]["inputs"]["leases"][0]["assets"][0]["device"] == "gw-0001"
    assert history[0]["score"] == check["score"]
    with state.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(risk_scores)).scalar_one() == 2


def test_credit_check_problems_name_what_is_wrong(client: TestClient) -> None:
    _problem(client.post("/v1/credit-checks", json={"lease_id": "LS-404"}), 404, "lease_not_found")
    _problem(client.post("/v1/credit-checks", json={"lessee_id": "X"}), 404, "lessee_not_found")
    spaced = client.post("/v1/credit-checks", json={"lease_id": "LS 1"})
    bad = _problem(spaced, 422, "invalid_request")
    assert bad["errors"][0]["field"] == "body.lease_id"  # type: ignore[index]
    both = _problem(
        client.post("/v1/credit-checks", json={"lease_id": "a", "lessee_id": "b"}),
        422, "invalid_request",
    )  # fmt: skip
    assert "exactly one of lease_id and lessee_id" in str(both["errors"])
    late = {"lease_id": "a", "as_of": "2999-01-01T00:00:00Z"}
    _problem(client.post("/v1/credit-checks", json=late), 422, "invalid_as_of")
    naive = client.post("/v1/credit-checks", json={"lease_id": "a", "as_of": "2026-01-01T00:00"})
    assert _problem(naive, 422, "invalid_request")["errors"][0]["field"] == "body.as_of"  # type: ignore[index]


def test_the_watchlist_shows_a_lease_whose_band_worsened_and_why(
    client: TestClient, state: StateStore
) -> None:
    leasing = LeasingStore(state.engine)
    make_lease(leasing, "LS-1", ["gw-0001"])
    make_lease(leasing, "LS-2", ["gw-0002"])
    for device in ("gw-0001", "gw-0002"):
        feed(state, device, [(d, 8.0) for d in days_before(AS_OF, 42)])
    rescorer = Rescorer(state.engine, load_rules(), [])
    first = AS_OF - timedelta(days=1)
    assert rescorer.rescore(rescorer.due(None, first), first).changed == 0  # first bands: silent
    later = AS_OF + timedelta(hours=1)  # the fleet's data was received at AS_OF
    open_alert(state, "gw-0001", "silence", "sensors_removed", severity=Severity.CRITICAL,
               at=AS_OF + timedelta(minutes=1))  # fmt: skip
    assert rescorer.due(AS_OF, first - timedelta(days=1)) == ["LS-1"]
    counts = rescorer.rescore(["LS-1", "LS-2"], later)
    assert (counts.scored, counts.changed, counts.worsened) == (2, 1, 1)
    (entry,) = client.get("/v1/risk/watchlist").json()
    assert (entry["lease_id"], entry["from_band"], entry["worsened"]) == ("LS-1", "low", True)
    assert entry["to_band"] in {"medium", "high", "critical"}
    assert entry["current_band"] == entry["to_band"]
    assert entry["reasons"][0]["code"] == "tamper"
    assert entry["as_of"].startswith(AS_OF.date().isoformat())
    assert client.get("/v1/risk/leases/LS-1/bands").json()[0]["id"] == entry["id"]
    assert rescorer.rescore(["LS-1"], later).changed == 0  # the same band again: no new change


def test_the_rules_file_in_the_settings_scores_without_code_changes(
    tmp_path: Path, state: StateStore
) -> None:
    """LEASEWATCH_RISK_RULES_FILE: another version, another weight, another band."""
    text = (Path(__file__).parents[3] / "cloud" / "risk" / "rules.toml").read_text("utf-8")
    text = text.replace('version = "lw-risk-2.3"', 'version = "lessor-7"')
    text = text.replace("points_per_breach = 45.0", "points_per_breach = 20.0")
    path = tmp_path / "lessor.toml"
    path.write_text(text, encoding="utf-8")
    make_lease(LeasingStore(state.engine), "LS-1", ["gw-0001"])
    feed(state, "gw-0001", [(d, 8.0) for d in days_before(AS_OF, 42)])
    open_alert(state, "gw-0001", "geofence", "region", severity=Severity.CRITICAL)
    body = {"lease_id": "LS-1", "as_of": AS_OF.isoformat()}
    bands = {}
    for rules_file in (None, path):
        settings = CloudSettings(mode="demo", api_key=SecretStr(KEY), risk_rules_file=rules_file)
        services = Services(settings, SqliteTelemetryStore(tmp_path / "t.sqlite"), state,
                            IngestMetrics())  # fmt: skip
        with TestClient(create_app(services), headers=AUTH) as test:
            check = test.post("/v1/credit-checks", json=body).json()
        bands[check["model_version"]] = (check["score"], check["band"])
    assert bands == {"lw-risk-2.3": (45.0, "high"), "lessor-7": (20.0, "low")}
