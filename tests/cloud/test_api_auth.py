"""API authentication: keys, session cookies and odd input answer 401, never 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud.api.deps import Services, session_token
from cloud.api.main import create_app
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry.sqlite import SqliteTelemetryStore

KEY = "api-key-for-tests-0001"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = CloudSettings(mode="demo", api_key=SecretStr(KEY))
    state = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    telemetry = SqliteTelemetryStore(tmp_path / "t.sqlite")
    with TestClient(create_app(Services(settings, telemetry, state, IngestMetrics()))) as test:
        yield test
    state.close()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": "caf\u00e9".encode()},
        {"Authorization": "Bearer wrong"},
        {"Cookie": "lw_session=caf\u00e9".encode()},
        {"Cookie": "lw_session=" + session_token("another-key")},
    ],
)
def test_bad_credentials_get_a_problem_401(
    client: TestClient, headers: dict[str, str | bytes]
) -> None:
    response = client.get("/v1/devices", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": KEY},
        {"Authorization": f"Bearer {KEY}"},
        {"Cookie": f"lw_session={session_token(KEY)}"},
    ],
)
def test_each_way_of_authenticating_works(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get("/v1/devices", headers=headers).json() == []


def test_health_needs_no_key_and_validation_errors_name_the_field(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/v1/devices/gw-0001/readings?limit=0", headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.limit"


def test_login_with_a_non_ascii_key_is_refused_not_crashed(client: TestClient) -> None:
    assert client.post("/login", data={"key": "caf\u00e9"}).status_code == 401
    ok = client.post("/login", data={"key": KEY}, follow_redirects=False)
    assert ok.status_code == 303
    assert "httponly" in ok.headers["set-cookie"].lower()
