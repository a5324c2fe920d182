"""API authentication: keys (bootstrap and users'), bearer tokens, sessions, tenants, problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select

from cloud.access.digests import derive
from cloud.access.roles import Role
from cloud.access.tables import api_keys
from cloud.access.tokens import TokenClaims, TokenSigner
from cloud.api.deps import SESSION_COOKIE
from tests.cloud.access.conftest import AUTH_SECRET, BOOTSTRAP_KEY, AccessApp

BOOT = {"X-API-Key": BOOTSTRAP_KEY}


def _is_problem(response: object, status: int, code: str) -> None:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", "")
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    assert response.json()["code"] == code  # type: ignore[attr-defined]


def _forged(role: Role, key: bytes, *, seconds: int = 60, kind: str = "access") -> str:
    now = datetime.now(UTC)
    claims = TokenClaims("1", role, None, "x", kind, now + timedelta(seconds=seconds))  # type: ignore[arg-type]
    return TokenSigner(key).issue(claims, now)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": "caf\u00e9".encode()},
        {"X-API-Key": "lwk_0123456789abcdef_" + "x" * 43},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer " + _forged(Role.ADMIN, b"not-the-server-key".ljust(32, b"!"))},
        {"Authorization": "Bearer " + _forged(Role.ADMIN, derive(AUTH_SECRET, "token-signing"))},
        {"Authorization": "Bearer " + jwt.encode({"sub": "bootstrap"}, None, algorithm="none")},
        {"Cookie": f"{SESSION_COOKIE}=caf\u00e9".encode()},
        {"Cookie": f"{SESSION_COOKIE}=abc.def.ghi"},
    ],
)
def test_bad_credentials_get_a_problem_401(
    access_app: AccessApp, headers: dict[str, str | bytes]
) -> None:
    response = access_app.client.get("/v1/devices", headers=headers)
    _is_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def test_bootstrap_key_user_keys_tokens_and_sessions_carry_user_and_role(
    access_app: AccessApp,
) -> None:
    client = access_app.client
    assert client.get("/v1/auth/me", headers=BOOT).json()["role"] == "admin"
    bearer = {"Authorization": f"Bearer {access_app.keys[Role.RISK_ANALYST]}"}
    assert client.get("/v1/auth/me", headers=bearer).json()["user"] == "risk_analyst-1"
    token = client.post("/v1/auth/token", headers=bearer).json()
    assert token["role"] == "risk_analyst"
    with_token = {"Authorization": f"Bearer {token['access_token']}"}
    me = client.get("/v1/auth/me", headers=with_token).json()
    assert (me["user"], me["via"]) == ("risk_analyst-1", "bearer_token")
    _is_problem(client.post("/v1/auth/token", headers=with_token), 403, "api_key_required")
    login = client.post(
        "/login", data={"key": access_app.keys[Role.OPERATOR]}, follow_redirects=False
    )
    assert login.status_code == 303
    assert "httponly" in login.headers["set-cookie"].lower()
    session = {"Cookie": f"{SESSION_COOKIE}={login.cookies[SESSION_COOKIE]}"}
    me = client.get("/v1/auth/me", headers=session).json()
    assert (me["role"], me["via"]) == ("operator", "session")
    session_as_bearer = {"Authorization": f"Bearer {login.cookies[SESSION_COOKIE]}"}
    _is_problem(client.get("/v1/auth/me", headers=session_as_bearer), 401, "unauthenticated")


def test_login_with_a_non_ascii_or_wrong_key_is_refused_not_crashed(access_app: AccessApp) -> None:
    assert access_app.client.post("/login", data={"key": "caf\u00e9"}).status_code == 401
    assert access_app.client.post("/login", data={"key": "lwk_x_y"}).status_code == 401


def test_keys_are_stored_as_digests_and_revocation_ends_keys_tokens_and_sessions(
    access_app: AccessApp,
) -> None:
    client = access_app.client
    user = client.post("/v1/users", headers=BOOT, json={"name": "ann", "role": "asset_manager"})
    user_id = user.json()["id"]
    issued = client.post(f"/v1/users/{user_id}/keys", headers=BOOT, json={"label": "laptop"})
    key, key_id = issued.json()["key"], issued.json()["id"]
    with access_app.services.state.engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
    assert key not in {str(v) for v in row} and len(row.digest) == 64
    listed = client.get(f"/v1/users/{user_id}/keys", headers=BOOT).json()
    assert [k["key"] for k in listed] == [None]
    token = client.post("/v1/auth/token", headers={"X-API-Key": key}).json()["access_token"]
    session = client.post("/login", data={"key": key}, follow_redirects=False).cookies
    gone = client.delete(f"/v1/users/{user_id}/keys/{key_id}", headers=BOOT)
    assert gone.status_code == 204
    for headers in (
        {"X-API-Key": key},
        {"Authorization": f"Bearer {token}"},
        {"Cookie": f"{SESSION_COOKIE}={session[SESSION_COOKIE]}"},
    ):
        _is_problem(client.get("/v1/auth/me", headers=headers), 401, "unauthenticated")


def test_tenant_users_see_only_their_tenants_devices(access_app: AccessApp) -> None:
    client = access_app.client
    for tenant in ("lessor-a", "lessor-b"):
        created = client.post("/v1/tenants", headers=BOOT, json={"id": tenant, "name": tenant})
        assert created.status_code == 201
    a_ops = {"X-API-Key": access_app.new_key("ops-a", Role.OPERATOR, "lessor-a")}
    b_view = {"X-API-Key": access_app.new_key("am-b", Role.ASSET_MANAGER, "lessor-b")}
    made = client.post("/v1/devices", headers=a_ops, json={"device": "gw-a1"})
    assert (made.status_code, made.json()["tenant"]) == (201, "lessor-a")
    stolen = client.post(
        "/v1/devices", headers=a_ops, json={"device": "gw-b1", "tenant": "lessor-b"}
    )
    _is_problem(stolen, 403, "forbidden")
    assert [d["device"] for d in client.get("/v1/devices", headers=a_ops).json()] == ["gw-a1"]
    assert client.get("/v1/devices", headers=b_view).json() == []
    _is_problem(client.get("/v1/devices/gw-a1/ledger", headers=b_view), 404, "device_not_found")
    _is_problem(client.get("/v1/alerts?device=gw-a1", headers=b_view), 404, "device_not_found")
    assert client.get("/v1/devices/gw-a1/ledger", headers=a_ops).json() == []
    assert [d["device"] for d in client.get("/v1/devices", headers=BOOT).json()] == ["gw-a1"]


def test_errors_are_problems_and_validation_names_the_field(access_app: AccessApp) -> None:
    client = access_app.client
    assert client.get("/healthz").json() == {"status": "ok"}
    bad_limit = client.get("/v1/devices/gw-0001/readings?limit=0", headers=BOOT)
    _is_problem(bad_limit, 422, "invalid_request")
    assert bad_limit.json()["errors"][0]["field"] == "query.limit"
    bad_body = client.post("/v1/devices", headers=BOOT, json={"device": "Not A Device"})
    _is_problem(bad_body, 422, "invalid_request")
    assert "body.device" in bad_body.json()["detail"]
    _is_problem(client.get("/v1/nothing-here", headers=BOOT), 404, "not_found")
    _is_problem(client.put("/healthz"), 405, "method_not_allowed")
    no_such_role = client.post("/v1/users", headers=BOOT, json={"name": "x", "role": "boss"})
    _is_problem(no_such_role, 422, "invalid_request")
