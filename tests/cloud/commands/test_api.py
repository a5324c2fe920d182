"""The command routes: who may send what, validation by the wire model, history, tenants."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cloud.access.roles import Role
from cloud.api.main import create_app
from tests.cloud.access.conftest import AccessApp, make_services

DEVICE, OTHER = "gw-0001", "gw-0002"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AccessApp]:
    """The API with a broker password (commands deliverable), two gateways, a user per role."""
    services = make_services(tmp_path, mqtt_password="broker-password-for-tests")
    now = datetime.now(UTC)
    for device in (DEVICE, OTHER):
        services.state.register_device(device, now)
    with TestClient(create_app(services)) as client:
        access = AccessApp(client, services, {})
        access.keys = {role: access.new_key(f"{role.value}-1", role) for role in Role}
        yield access
    services.state.close()


def _send(
    app: AccessApp, role: Role | str, body: Mapping[str, object], device: str = DEVICE
) -> httpx.Response:
    headers = app.auth(role) if isinstance(role, Role) else {"X-API-Key": role}
    response: httpx.Response = app.client.post(
        f"/v1/devices/{device}/commands", json=body, headers=headers
    )
    return response


def test_an_operator_queues_a_command_and_reads_it_back(app: AccessApp) -> None:
    body = {"name": "set_poll_interval", "args": {"sensor": "machine", "interval": 2.5}}
    response = _send(app, Role.OPERATOR, body)
    assert response.status_code == 202, response.text
    command = response.json()
    assert (command["status"], command["requested_by"], command["device"]) == (
        "queued",
        "operator-1",
        DEVICE,
    )
    assert command["args"] == {"sensor": "machine", "interval": 2.5}
    assert command["ack_status"] is None and command["sent_at"] is None
    requested = datetime.fromisoformat(command["requested_at"])
    expires = datetime.fromisoformat(command["expires_at"])
    assert (expires - requested).total_seconds() == app.services.settings.command_ttl_s

    for role in Role:  # every role reads the history (the asset page shows it)
        history = app.client.get(f"/v1/devices/{DEVICE}/commands", headers=app.auth(role))
        assert [c["id"] for c in history.json()] == [command["id"]], role
    one = app.client.get(f"/v1/commands/{command['id']}", headers=app.auth(Role.RISK_ANALYST))
    assert one.json() == command
    ttl = _send(app, Role.ADMIN, {"name": "ping", "ttl_s": 30}).json()
    assert (datetime.fromisoformat(ttl["expires_at"]) - datetime.fromisoformat(
        ttl["requested_at"])).total_seconds() == 30  # fmt: skip


def test_immobilize_and_release_are_for_admins_only(app: AccessApp) -> None:
    for role in (Role.ASSET_MANAGER, Role.RISK_ANALYST, Role.OPERATOR):
        for name in ("immobilize", "release"):
            response = _send(app, role, {"name": name})
            assert response.status_code == 403, (role, name)
            assert response.json()["code"] == "forbidden"
    refused = _send(app, Role.OPERATOR, {"name": "immobilize"}).json()
    assert refused["allowed_roles"] == ["admin"]
    assert "immobilize" in refused["detail"]
    assert _send(app, Role.ASSET_MANAGER, {"name": "ping"}).status_code == 403

    done = _send(app, Role.ADMIN, {"name": "immobilize"})
    assert done.status_code == 202
    assert done.json()["requested_by"] == "admin-1"
    history = app.client.get(f"/v1/devices/{DEVICE}/commands", headers=app.auth(Role.ADMIN))
    assert [c["name"] for c in history.json()] == ["immobilize"], "refused ones are not stored"


def test_requests_are_validated_by_the_wire_model(app: AccessApp) -> None:
    unknown = _send(app, Role.OPERATOR, {"name": "self_destruct"})
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "invalid_request"
    assert unknown.json()["errors"][0]["field"] == "body.name"
    nested = _send(app, Role.OPERATOR, {"name": "ping", "args": {"x": [1, 2]}})
    assert nested.json()["errors"][0]["field"].startswith("body.args.x")
    short = _send(app, Role.OPERATOR, {"name": "ping", "ttl_s": 1})
    assert short.json()["errors"][0]["field"] == "body.ttl_s"
    missing = _send(app, Role.OPERATOR, {"name": "ping"}, device="gw-9999")
    assert (missing.status_code, missing.json()["code"]) == (404, "device_not_found")
    bad_id = app.client.get("/v1/commands/x", headers=app.auth(Role.OPERATOR))
    assert bad_id.json()["errors"][0]["field"] == "path.command_id"
    absent = app.client.get("/v1/commands/no-such-command", headers=app.auth(Role.OPERATOR))
    assert (absent.status_code, absent.json()["code"]) == (404, "command_not_found")


def test_a_tenant_commands_and_sees_only_its_own_gateways(app: AccessApp) -> None:
    now = datetime.now(UTC)
    app.store.create_tenant("lessor-a", "Lessor A", now)
    app.store.assign_device(DEVICE, "lessor-a", now)
    tenant_operator = app.new_key("ops-a", Role.OPERATOR, "lessor-a")
    other = _send(app, Role.OPERATOR, {"name": "ping"}, device=OTHER).json()

    assert _send(app, tenant_operator, {"name": "ping"}).status_code == 202
    refused = _send(app, tenant_operator, {"name": "ping"}, device=OTHER)
    assert (refused.status_code, refused.json()["code"]) == (404, "device_not_found")
    hidden = app.client.get(f"/v1/commands/{other['id']}", headers={"X-API-Key": tenant_operator})
    assert (hidden.status_code, hidden.json()["code"]) == (404, "command_not_found")
    listing = app.client.get(
        f"/v1/devices/{OTHER}/commands", headers={"X-API-Key": tenant_operator}
    )
    assert listing.status_code == 404


def test_without_a_broker_password_commands_are_refused_with_the_reason(tmp_path: Path) -> None:
    services = make_services(tmp_path)  # production settings, no LEASEWATCH_MQTT_PASSWORD
    services.state.register_device(DEVICE, datetime.now(UTC))
    with TestClient(create_app(services)) as client:
        response = client.post(
            f"/v1/devices/{DEVICE}/commands",
            json={"name": "ping"},
            headers={"X-API-Key": services.settings.api_key.get_secret_value()},
        )
    services.state.close()
    assert (response.status_code, response.json()["code"]) == (503, "commands_unavailable")
    assert "LEASEWATCH_MQTT_PASSWORD" in response.json()["detail"]
