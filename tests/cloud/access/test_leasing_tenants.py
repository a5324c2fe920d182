"""Tenant scoping of the leasing domain: lessor A's users never see lessor B's rows.

Lessees carry a tenant (set from the creating caller's); leases, assets, risk scores, credit
checks, score history, band changes and the watchlist follow their lessee. Another tenant's
subject answers 404 like an unknown one; lists leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import insert

from cloud.access.roles import Role
from cloud.api.main import create_app
from cloud.leasing.tables import band_changes, lease_bands
from tests.cloud.access.conftest import BOOTSTRAP_KEY, AccessApp, make_services

ADMIN = {"X-API-Key": BOOTSTRAP_KEY}
NOW = datetime(2026, 11, 30, tzinfo=UTC)
TERMS = {"starts_on": "2026-01-01", "ends_on": "2029-01-01", "asset_value": 100000}


@dataclass
class Lessors:
    """Keys of lessor A's and B's asset managers and risk analysts."""

    app: AccessApp
    keys: dict[str, dict[str, str]]

    def get(self, who: str, path: str, **params: str) -> Response:
        """GET as one of the users ("manager-a", "analyst-b", "admin")."""
        response: Response = self.app.client.get(path, params=params, headers=self.keys[who])
        return response

    def send(self, who: str, method: str, path: str, body: object) -> Response:
        """POST, PUT or PATCH a JSON body as one of the users."""
        response: Response = self.app.client.request(
            method, path, json=body, headers=self.keys[who]
        )
        return response


def problem(response: Response, status: int, code: str) -> None:
    """Assert a problem document with this status and code."""
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def tenant_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccessApp]:
    """The API on a SQLite or PostgreSQL state store (no users yet)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    services = make_services(tmp_path, state_url=url)
    with TestClient(create_app(services)) as client:
        yield AccessApp(client, services, {})
    services.state.close()


@pytest.fixture
def lessors(tenant_app: AccessApp) -> Lessors:
    """Tenants lessor-a and lessor-b, each with a gateway, a lessee, a lease and an asset."""
    access_app = tenant_app
    store = access_app.store
    keys = {"admin": ADMIN}
    for t in ("a", "b"):
        store.create_tenant(f"lessor-{t}", f"Lessor {t.upper()}", NOW)
        store.assign_device(f"gw-{t}", f"lessor-{t}", NOW)
        for role, who in ((Role.ASSET_MANAGER, "manager"), (Role.RISK_ANALYST, "analyst")):
            keys[f"{who}-{t}"] = {
                "X-API-Key": access_app.new_key(f"{who}-{t}", role, f"lessor-{t}")
            }
    lessors = Lessors(access_app, keys)
    for t in ("a", "b"):
        who = f"manager-{t}"
        made = lessors.send(who, "POST", "/v1/lessees", {"lessee_id": f"L-{t}", "name": t})
        assert (made.status_code, made.json()["tenant"]) == (201, f"lessor-{t}")
        lease = TERMS | {"lease_id": f"LS-{t}", "lessee_id": f"L-{t}"}
        assert lessors.send(who, "POST", "/v1/leases", lease).status_code == 201
        asset = {"asset_id": f"AS-{t}", "asset_type": "excavator", "device": f"gw-{t}"}
        put = lessors.send(who, "PUT", f"/v1/leases/LS-{t}/assets/AS-{t}", asset)
        assert put.status_code == 200, put.text
    return lessors


def test_leases_lessees_and_assets_of_another_tenant_are_not_found(lessors: Lessors) -> None:
    for path, code in (
        ("/v1/lessees/L-b", "lessee_not_found"),
        ("/v1/lessees/L-b/leases", "lessee_not_found"),
        ("/v1/leases/LS-b", "lease_not_found"),
        ("/v1/leases/LS-b/assets", "lease_not_found"),
        ("/v1/assets/AS-b", "asset_not_found"),
    ):
        problem(lessors.get("manager-a", path), 404, code)
        assert lessors.get("manager-b", path).status_code == 200, path
    assert [x["lessee_id"] for x in lessors.get("manager-a", "/v1/lessees").json()] == ["L-a"]
    assert [x["lease_id"] for x in lessors.get("manager-a", "/v1/leases").json()] == ["LS-a"]
    assert lessors.get("manager-a", "/v1/leases", lessee_id="L-b").json() == []
    assert [x["asset_id"] for x in lessors.get("manager-a", "/v1/assets").json()] == ["AS-a"]
    assert lessors.get("manager-a", "/v1/assets", device="gw-b").json() == []
    assert lessors.get("manager-a", "/v1/assets", lease_id="LS-b").json() == []
    everything = lessors.get("admin", "/v1/lessees").json()
    assert [(x["lessee_id"], x["tenant"]) for x in everything] == [
        ("L-a", "lessor-a"),
        ("L-b", "lessor-b"),
    ]
    assert [x["asset_id"] for x in lessors.get("admin", "/v1/assets").json()] == ["AS-a", "AS-b"]


def test_a_tenant_user_creates_and_changes_only_in_its_own_tenant(lessors: Lessors) -> None:
    elsewhere = {"lessee_id": "L-c", "name": "c", "tenant": "lessor-b"}
    problem(lessors.send("manager-a", "POST", "/v1/lessees", elsewhere), 403, "tenant_mismatch")
    taken = {"lessee_id": "L-b", "name": "renamed by A"}
    problem(lessors.send("manager-a", "POST", "/v1/lessees", taken), 409, "lessee_id_taken")
    assert lessors.get("manager-b", "/v1/lessees/L-b").json()["name"] == "b"
    orphan = TERMS | {"lease_id": "LS-c", "lessee_id": "L-b"}
    problem(lessors.send("manager-a", "POST", "/v1/leases", orphan), 404, "lessee_not_found")
    change = {"hours_cap_per_month": 100}
    problem(lessors.send("manager-a", "PATCH", "/v1/leases/LS-b", change), 404, "lease_not_found")
    asset = {"asset_id": "AS-c", "asset_type": "truck", "device": "gw-b"}
    mount = lessors.send("manager-a", "PUT", "/v1/leases/LS-a/assets/AS-c", asset)
    problem(mount, 404, "device_not_found")  # B's gateway on A's asset: B's telemetry for A
    steal = {"asset_id": "AS-b", "asset_type": "truck"}
    problem(lessors.send("manager-a", "PUT", "/v1/leases/LS-a/assets/AS-b", steal), 409,
            "asset_id_taken")  # fmt: skip
    rows = [TERMS | {"lease_id": "LS-b", "lessee_id": "L-a"}]
    report = lessors.app.client.post(
        "/v1/leases/import?format=json", content=json.dumps(rows), headers=lessors.keys["manager-a"]
    ).json()
    assert (report["updated"], report["rejected_rows"]) == (0, 1)
    assert lessors.get("manager-b", "/v1/leases/LS-b").json()["lessee_id"] == "L-b"


def test_the_admin_without_tenant_places_lessees_in_a_known_tenant(lessors: Lessors) -> None:
    body = {"lessee_id": "L-c", "name": "c", "tenant": "lessor-b"}
    made = lessors.send("admin", "POST", "/v1/lessees", body)
    assert (made.status_code, made.json()["tenant"]) == (201, "lessor-b")
    assert lessors.get("manager-b", "/v1/lessees/L-c").status_code == 200
    problem(lessors.get("manager-a", "/v1/lessees/L-c"), 404, "lessee_not_found")
    unknown = body | {"lessee_id": "L-d", "tenant": "lessor-z"}
    problem(lessors.send("admin", "POST", "/v1/lessees", unknown), 404, "tenant_not_found")


def test_risk_scores_credit_checks_and_history_stay_in_the_tenant(lessors: Lessors) -> None:
    assert lessors.get("analyst-a", "/v1/risk/leases/LS-a").status_code == 200
    for path, code in (
        ("/v1/risk/leases/LS-b", "lease_not_found"),
        ("/v1/risk/lessees/L-b", "lessee_not_found"),
        ("/v1/risk/leases/LS-b/history", "lease_not_found"),
        ("/v1/risk/lessees/L-b/history", "lessee_not_found"),
        ("/v1/risk/leases/LS-b/bands", "lease_not_found"),
    ):
        problem(lessors.get("analyst-a", path), 404, code)
    for body, code in (({"lease_id": "LS-b"}, "lease_not_found"),
                       ({"lessee_id": "L-b"}, "lessee_not_found")):  # fmt: skip
        problem(lessors.send("analyst-a", "POST", "/v1/credit-checks", body), 404, code)
    own = lessors.send("analyst-a", "POST", "/v1/credit-checks", {"lease_id": "LS-a"})
    assert own.status_code == 200, own.text
    history = lessors.get("analyst-a", "/v1/risk/leases/LS-a/history").json()
    assert [h["purpose"] for h in history] == ["credit_check", "risk_api"]


def test_the_watchlist_shows_only_the_tenants_leases(lessors: Lessors) -> None:
    with lessors.app.services.state.engine.begin() as conn:
        for t in ("a", "b"):
            conn.execute(insert(band_changes).values(
                lease_id=f"LS-{t}", lessee_id=f"L-{t}", from_band="low", to_band="high",
                from_score=10.0, to_score=60.0, worsened=True, as_of=NOW, recorded_at=NOW,
                reasons=[], model_version="test",
            ))  # fmt: skip

    def watched(who: str) -> list[str]:
        return [x["lease_id"] for x in lessors.get(who, "/v1/risk/watchlist").json()]

    assert watched("analyst-a") == ["LS-a"]
    assert watched("analyst-b") == ["LS-b"]
    assert sorted(watched("admin")) == ["LS-a", "LS-b"]
    assert len(lessors.get("analyst-b", "/v1/risk/leases/LS-b/bands").json()) == 1


def test_the_risk_dashboard_shows_only_the_tenants_leases_and_lessees(lessors: Lessors) -> None:
    with lessors.app.services.state.engine.begin() as conn:
        for t, score in (("a", 20.0), ("b", 80.0)):
            conn.execute(insert(lease_bands).values(
                lease_id=f"LS-{t}", lessee_id=f"L-{t}", band="low" if t == "a" else "high",
                score=score, as_of=NOW, fingerprint=t, model_version="test", scored_at=NOW,
            ))  # fmt: skip
    for t in ("a", "b"):  # an audited lessee score each
        assert lessors.get(f"analyst-{t}", f"/v1/risk/lessees/L-{t}").status_code == 200

    page_a = lessors.get("analyst-a", "/dashboards/risk").text
    page_admin = lessors.get("admin", "/dashboards/risk").text

    assert "LS-a" in page_a
    assert "L-a" in page_a
    assert "LS-b" not in page_a
    assert "L-b" not in page_a
    assert "LS-b" in page_admin
    assert "L-b" in page_admin
