"""Typed dependencies of the API routes: stores, settings, the caller, its role and tenant.

Every route depends on `require_caller` (directly as `Authenticated`, or through a permission
or role check). Callers prove who they are with:

- the bootstrap admin key from settings (LEASEWATCH_API_KEY), or a user's API key
  (`lwk_...`), as `X-API-Key: KEY` or `Authorization: Bearer KEY`;
- a short-lived signed bearer token from `POST /v1/auth/token`;
- the dashboards' session cookie set by `POST /login`.

Which role may do what is `cloud.access.roles.ROLE_PERMISSIONS` (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cloud.access.broker_sync import GatewayBroker
from cloud.access.digests import derive
from cloud.access.roles import PERMISSION_MEANING, ROLE_PERMISSIONS, Permission, Role
from cloud.access.tokens import (
    BOOTSTRAP_SUBJECT,
    InvalidTokenError,
    TokenClaims,
    TokenKind,
    TokenSigner,
    expiry,
)
from cloud.access.users import AccessStore, ApiUser
from cloud.api.problems import Problem
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry import TelemetryStore

SESSION_COOKIE = "lw_session"
BOOTSTRAP_USER = "bootstrap-admin"


@dataclass(frozen=True)
class Services:
    """What the API reads from; built once at start and kept on app.state."""

    settings: CloudSettings
    telemetry: TelemetryStore
    state: StateStore
    metrics: IngestMetrics
    ## The broker gateway credentials are enforced on; None: from settings (Mosquitto files).
    gateway_broker: GatewayBroker | None = None


def get_services(request: Request) -> Services:
    """The services of this app instance."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

Via = Literal["bootstrap_key", "api_key", "bearer_token", "session"]


@dataclass(frozen=True)
class Caller:
    """Who is calling: user, role, tenant (None: every tenant) and how they proved it."""

    user: str
    user_id: int | None  # None: the bootstrap admin key from settings
    role: Role
    tenant: str | None
    key_id: str | None
    via: Via


def same_secret(offered: str | None, expected: str) -> bool:
    """Constant-time comparison that treats any text (non-ASCII included) as bytes."""
    return offered is not None and hmac.compare_digest(offered.encode(), expected.encode())


def _auth_secret(settings: CloudSettings) -> str:
    """LEASEWATCH_AUTH_SECRET, else the bootstrap key; 503 when neither is set."""
    secret = settings.auth_secret.get_secret_value() or settings.api_key.get_secret_value()
    if not secret:
        raise Problem(
            503, "api_key_unset", "The API has no key configured; set LEASEWATCH_API_KEY."
        )
    return secret


def access_store(services: Services) -> AccessStore:
    """Users, keys and tenants, with API-key digests under the configured pepper."""
    pepper = derive(_auth_secret(services.settings), "api-key-pepper")
    return AccessStore(services.state.engine, pepper)


def token_signer(services: Services) -> TokenSigner:
    """Signs and verifies bearer tokens and session cookies."""
    return TokenSigner(derive(_auth_secret(services.settings), "token-signing"))


def bootstrap_key_id(services: Services) -> str:
    """A fingerprint of the bootstrap key put in its tokens: changing the key ends them."""
    key = services.settings.api_key.get_secret_value().encode()
    return hmac.new(
        derive(_auth_secret(services.settings), "bootstrap"), key, hashlib.sha256
    ).hexdigest()[:16]


def _user_caller(user: ApiUser, key_id: str, via: Via) -> Caller:
    return Caller(user.name, user.id, user.role, user.tenant, key_id, via)


def caller_from_key(services: Services, key: str, now: datetime) -> Caller | None:
    """The caller an API key (bootstrap or user) stands for, or None."""
    bootstrap = services.settings.api_key.get_secret_value()
    if bootstrap and same_secret(key, bootstrap):
        return Caller(
            BOOTSTRAP_USER, None, Role.ADMIN, None, bootstrap_key_id(services), "bootstrap_key"
        )
    found = access_store(services).authenticate(key, now)
    return _user_caller(found[0], found[1], "api_key") if found is not None else None


def caller_from_token(
    services: Services, token: str, kind: TokenKind, now: datetime
) -> Caller | None:
    """The caller of a valid token whose key is still live (role re-read), or None."""
    try:
        claims = token_signer(services).verify(token, kind)
    except InvalidTokenError:
        return None
    via: Via = "session" if kind == "session" else "bearer_token"
    if claims.subject == BOOTSTRAP_SUBJECT:
        if claims.key_id != bootstrap_key_id(services):
            return None
        return Caller(BOOTSTRAP_USER, None, Role.ADMIN, None, claims.key_id, via)
    user = access_store(services).live_key_user(claims.key_id or "", now)
    if user is None or str(user.id) != claims.subject:
        return None
    return _user_caller(user, claims.key_id or "", via)


def require_caller(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Caller:
    """Accept an API key, a bearer token or a dashboard session cookie; 401 otherwise."""
    _auth_secret(services.settings)
    now = datetime.now(UTC)
    caller: Caller | None = None
    if api_key is not None:
        caller = caller_from_key(services, api_key, now)
    elif bearer is not None:
        credential = bearer.credentials
        caller = caller_from_key(services, credential, now) or caller_from_token(
            services, credential, "access", now
        )
    elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        caller = caller_from_token(services, cookie, "session", now)
    if caller is None:
        raise Problem(
            401,
            "unauthenticated",
            "Send an API key (X-API-Key or Authorization: Bearer) or a bearer token.",
        )
    return caller


Authenticated = Depends(require_caller)


def issue_token(services: Services, caller: Caller, kind: TokenKind, now: datetime) -> str:
    """A signed token for a caller who proved a key (access token or dashboard session)."""
    ttl = services.settings.token_ttl_s if kind == "access" else services.settings.session_ttl_s
    subject = BOOTSTRAP_SUBJECT if caller.user_id is None else str(caller.user_id)
    claims = TokenClaims(subject, caller.role, caller.tenant, caller.key_id, kind, expiry(now, ttl))
    return token_signer(services).issue(claims, now)


CallerDep = Annotated[Caller, Depends(require_caller)]


@dataclass(frozen=True)
class RoleCheck:
    """Dependency admitting callers whose role is in `roles`; 403 forbidden otherwise."""

    roles: frozenset[Role]
    what: str

    def __call__(self, caller: CallerDep) -> Caller:
        """The caller, if its role is admitted."""
        if caller.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise Problem(
                403,
                "forbidden",
                f"role {caller.role.value} may not {self.what} (allowed: {allowed})",
                role=caller.role.value,
                allowed_roles=sorted(r.value for r in self.roles),
            )
        return caller


def require_permission(permission: Permission) -> RoleCheck:
    """A check admitting the roles that hold `permission` in the role matrix."""
    return RoleCheck(ROLE_PERMISSIONS[permission], PERMISSION_MEANING[permission])


def require_role(*roles: Role) -> RoleCheck:
    """A check admitting the given roles and admin."""
    wanted = frozenset(roles) | {Role.ADMIN}
    return RoleCheck(wanted, "call this route")


def _permission(permission: Permission) -> DependsParam:
    dependency: DependsParam = Depends(require_permission(permission))
    return dependency


# Route dependencies, one per permission: `@router.get(..., dependencies=[ReadTelemetry])`.
ReadTelemetry = _permission(Permission.READ_TELEMETRY)
ReadAlerts = _permission(Permission.READ_ALERTS)
ActOnAlerts = _permission(Permission.ACT_ON_ALERTS)
PlanMaintenance = _permission(Permission.PLAN_MAINTENANCE)
ReadLeases = _permission(Permission.READ_LEASES)
ManageLeases = _permission(Permission.MANAGE_LEASES)
ReadRisk = _permission(Permission.READ_RISK)
ReadOperations = _permission(Permission.READ_OPERATIONS)
OperateDeliveries = _permission(Permission.OPERATE_DELIVERIES)
ProvisionDevices = _permission(Permission.PROVISION_DEVICES)
CommandGateways = _permission(Permission.COMMAND_GATEWAYS)
ManageUsers = _permission(Permission.MANAGE_USERS)

AnyRole = Depends(RoleCheck(frozenset(Role), "call this route"))
"""For routes every role may call (the caller's own token and profile)."""

# Typed caller parameters by role (admin is admitted everywhere).
AssetManagerDep = Annotated[Caller, Depends(require_role(Role.ASSET_MANAGER))]
RiskAnalystDep = Annotated[Caller, Depends(require_role(Role.RISK_ANALYST))]
OperatorDep = Annotated[Caller, Depends(require_role(Role.OPERATOR))]
AdminDep = Annotated[Caller, Depends(require_role(Role.ADMIN))]
ManageUsersDep = Annotated[Caller, ManageUsers]
ProvisionDevicesDep = Annotated[Caller, ProvisionDevices]
CommandGatewaysDep = Annotated[Caller, CommandGateways]


def visible_devices(services: Services, caller: Caller) -> set[str] | None:
    """The devices a caller may see: None means every device (no tenant)."""
    if caller.tenant is None:
        return None
    return access_store(services).tenant_devices(caller.tenant)


def device_in_scope(request: Request, services: ServicesDep, caller: CallerDep) -> None:
    """404 device_not_found for a `device` (path or query) outside the caller's tenant."""
    device = request.path_params.get("device") or request.query_params.get("device")
    if device is None or caller.tenant is None:
        return
    if access_store(services).device_tenant(device) != caller.tenant:
        raise Problem(404, "device_not_found", f"no device {device!r} in your tenant")


DeviceScope = Depends(device_in_scope)
