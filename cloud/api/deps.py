"""Typed dependencies of the API routes: stores, settings and authentication."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cloud.api.problems import Problem
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry import TelemetryStore

SESSION_COOKIE = "lw_session"


@dataclass(frozen=True)
class Services:
    """What the API reads from; built once at start and kept on app.state."""

    settings: CloudSettings
    telemetry: TelemetryStore
    state: StateStore
    metrics: IngestMetrics


def get_services(request: Request) -> Services:
    """The services of this app instance."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def same_secret(offered: str | None, expected: str) -> bool:
    """Constant-time comparison that treats any text (non-ASCII included) as bytes."""
    return offered is not None and hmac.compare_digest(offered.encode(), expected.encode())


def session_token(api_key: str) -> str:
    """Cookie value proving the browser logged in with the API key, without holding the key."""
    return hmac.new(api_key.encode(), b"leasewatch-dashboard-session", hashlib.sha256).hexdigest()


def require_caller(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Accept a bearer token, an X-API-Key header or a dashboard session cookie."""
    expected = services.settings.api_key.get_secret_value()
    if not expected:
        raise Problem(
            503, "api_key_unset", "The API has no key configured; set LEASEWATCH_API_KEY."
        )
    offered = [bearer.credentials if bearer else None, api_key]
    if any(same_secret(o, expected) for o in offered):
        return
    if same_secret(request.cookies.get(SESSION_COOKIE), session_token(expected)):
        return
    raise Problem(401, "unauthenticated", "Send the API key as a bearer token or X-API-Key header.")


Authenticated = Depends(require_caller)
