"""Every route in the OpenAPI schema x every role: allowed, or 401/403 problem details.

A route added without a role check fails here, naming the route: pick the permission from
cloud.access.roles (docs/security.md) and add its dependency from cloud.api.deps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts

from cloud.access.roles import Role, matrix_markdown
from cloud.api.deps import RoleCheck
from tests.cloud.access.conftest import AccessApp

PUBLIC = {("GET", "/healthz")}
"""Routes anyone may call."""

PATH_VALUES = {"device": "gw-0001", "key_id": "0123456789abcdef"}


def _checks(dependant: Dependant) -> list[RoleCheck]:
    found = [dependant.call] if isinstance(dependant.call, RoleCheck) else []
    for sub in dependant.dependencies:
        found += _checks(sub)
    return found


def schema_routes(app: FastAPI) -> list[tuple[str, str, RouteContext]]:
    """(method, path, route) of every operation in the OpenAPI schema."""
    by_key = {
        (method, route.path): route
        for route in iter_route_contexts(app.routes)
        for method in route.methods or ()
    }
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return [
        (method.upper(), path, by_key[(method.upper(), path)])
        for path, operations in paths.items()
        for method in operations
    ]


def allowed_roles(route: RouteContext) -> frozenset[Role]:
    """Roles every role check of the route admits (empty set: no check at all)."""
    checks = _checks(route.dependant)
    if not checks:
        return frozenset()
    allowed = frozenset(Role)
    for check in checks:
        allowed &= check.roles
    return allowed


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)


def _call(app: AccessApp, method: str, path: str, headers: dict[str, str]) -> Any:
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return app.client.request(method, _url(path), headers=headers, **body)


def _is_problem(response: Any, status: int, code: str) -> bool:
    return bool(
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
        and response.json()["code"] == code
    )


def test_every_route_has_a_role_check(access_app: AccessApp) -> None:
    unprotected = [
        f"{method} {path}"
        for method, path, route in schema_routes(access_app.client.app)  # type: ignore[arg-type]
        if (method, path) not in PUBLIC and not allowed_roles(route)
    ]
    assert unprotected == [], "routes without a role check (see cloud.access.roles)"


def test_every_route_refuses_anonymous_callers(access_app: AccessApp) -> None:
    wrong = []
    for method, path, _ in schema_routes(access_app.client.app):  # type: ignore[arg-type]
        if (method, path) in PUBLIC:
            continue
        response = _call(access_app, method, path, {})
        if not _is_problem(response, 401, "unauthenticated"):
            wrong.append(f"{method} {path}: {response.status_code}")
    assert wrong == []


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_each_role_reaches_exactly_its_routes(access_app: AccessApp, role: Role) -> None:
    wrong, denied, reached = [], 0, 0
    for method, path, route in schema_routes(access_app.client.app):  # type: ignore[arg-type]
        if (method, path) in PUBLIC or not allowed_roles(route):
            continue  # an unchecked route fails test_every_route_has_a_role_check
        response = _call(access_app, method, path, access_app.auth(role))
        if role in allowed_roles(route):
            reached += 1
            if response.status_code in (401, 403):
                wrong.append(f"{method} {path}: allowed but {response.status_code}")
        else:
            denied += 1
            if not _is_problem(response, 403, "forbidden"):
                wrong.append(f"{method} {path}: denied but {response.status_code}")
    assert wrong == []
    assert reached > 0
    assert (denied == 0) == (role is Role.ADMIN)


def test_the_documented_matrix_is_the_one_in_code() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "security.md"
    assert matrix_markdown() in doc.read_text(encoding="utf-8")
