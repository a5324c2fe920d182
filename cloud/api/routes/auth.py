"""Bearer tokens, the caller's profile, and (admin) users, API keys and tenants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from cloud.access.roles import Role
from cloud.access.tokens import expiry
from cloud.access.users import AccessError, ApiKeyInfo, ApiUser
from cloud.api.deps import (
    AnyRole,
    Caller,
    CallerDep,
    ManageUsers,
    ManageUsersDep,
    Services,
    ServicesDep,
    access_store,
    caller_from_key,
    issue_token,
)
from cloud.api.problems import Problem

router = APIRouter(tags=["auth"])

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")]
TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]

_STATUS = {
    "user_exists": 409,
    "tenant_exists": 409,
    "unknown_tenant": 422,
    "user_not_found": 404,
    "key_not_found": 404,
}


def _problem(err: AccessError) -> Problem:
    return Problem(_STATUS.get(err.code, 409), err.code, str(err))


class TokenPublic(BaseModel):
    """A short-lived bearer token: send it as `Authorization: Bearer TOKEN`."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
    user: str
    role: Role
    tenant: str | None


class CallerPublic(BaseModel):
    """Who the API thinks you are."""

    user: str
    role: Role
    tenant: str | None
    via: str


def session_for_key(services: Services, key: str) -> str | None:
    """The dashboards' session cookie value for a valid API key, or None."""
    now = datetime.now(UTC)
    caller = caller_from_key(services, key, now)
    return issue_token(services, caller, "session", now) if caller is not None else None


@router.post("/v1/auth/token", response_model=TokenPublic, dependencies=[AnyRole])
def create_token(services: ServicesDep, caller: CallerDep) -> TokenPublic:
    """Trade an API key for a bearer token (LEASEWATCH_TOKEN_TTL_S, default 15 minutes)."""
    if caller.via not in ("api_key", "bootstrap_key"):
        raise Problem(403, "api_key_required", "Tokens are issued for an API key, not a token.")
    now = datetime.now(UTC)
    token = issue_token(services, caller, "access", now)
    expires_at = expiry(now, services.settings.token_ttl_s)
    return TokenPublic(
        access_token=token,
        expires_at=expires_at,
        user=caller.user,
        role=caller.role,
        tenant=caller.tenant,
    )


@router.get("/v1/auth/me", response_model=CallerPublic, dependencies=[AnyRole])
def whoami(caller: CallerDep) -> CallerPublic:
    """The calling user, role and tenant."""
    return CallerPublic(user=caller.user, role=caller.role, tenant=caller.tenant, via=caller.via)


class TenantCreate(BaseModel):
    """A lessor whose users see only its own devices."""

    id: TenantId
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class UserCreate(BaseModel):
    """A user: a name, a role and optionally a tenant."""

    name: Name
    role: Role
    tenant: TenantId | None = Field(default=None, description="null: sees every tenant")


class UserPublic(BaseModel):
    """A user (never their keys)."""

    id: int
    name: str
    role: Role
    tenant: str | None
    created_at: datetime
    disabled_at: datetime | None


class KeyCreate(BaseModel):
    """A label for the new key and an optional expiry."""

    label: Label = ""
    expires_at: AwareDatetime | None = None


class KeyPublic(BaseModel):
    """An API key's facts; `key` is only present in the answer that issued it."""

    id: str
    user_id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    key: str | None = Field(default=None, description="The key itself: shown once, store it now")


def _user(user: ApiUser) -> UserPublic:
    return UserPublic(**user.__dict__)


def _key(info: ApiKeyInfo, key: str | None = None) -> KeyPublic:
    return KeyPublic(**info.__dict__, key=key)


def _own_tenant(caller: Caller, tenant: str | None) -> None:
    """A tenant-scoped admin manages only its own tenant."""
    if caller.tenant is not None and tenant != caller.tenant:
        raise Problem(403, "forbidden", f"you manage tenant {caller.tenant!r} only")


@router.post("/v1/tenants", status_code=201, response_model=TenantCreate)
def create_tenant(
    services: ServicesDep, caller: ManageUsersDep, body: TenantCreate
) -> TenantCreate:
    """Add a tenant (admins without a tenant only)."""
    _own_tenant(caller, None)
    try:
        access_store(services).create_tenant(body.id, body.name, datetime.now(UTC))
    except AccessError as err:
        raise _problem(err) from err
    return body


@router.get("/v1/users", response_model=list[UserPublic], dependencies=[ManageUsers])
def list_users(services: ServicesDep, caller: CallerDep) -> list[UserPublic]:
    """Users by id (a tenant's admin sees its tenant's users)."""
    users = access_store(services).users()
    return [_user(u) for u in users if caller.tenant is None or u.tenant == caller.tenant]


@router.post("/v1/users", status_code=201, response_model=UserPublic)
def create_user(services: ServicesDep, caller: ManageUsersDep, body: UserCreate) -> UserPublic:
    """Add a user with a role, in a tenant or across tenants."""
    _own_tenant(caller, body.tenant)
    try:
        user = access_store(services).create_user(
            body.name, body.role, body.tenant, datetime.now(UTC)
        )
    except AccessError as err:
        raise _problem(err) from err
    return _user(user)


def _managed_user(services: Services, caller: Caller, user_id: int) -> ApiUser:
    user = access_store(services).user(user_id)
    if user is None or (caller.tenant is not None and user.tenant != caller.tenant):
        raise Problem(404, "user_not_found", f"user {user_id} does not exist")
    return user


@router.post("/v1/users/{user_id}/keys", status_code=201, response_model=KeyPublic)
def create_key(
    services: ServicesDep, caller: ManageUsersDep, user_id: int, body: KeyCreate
) -> KeyPublic:
    """Issue an API key for a user; the key is in this answer only (stored as a digest)."""
    user = _managed_user(services, caller, user_id)
    issued = access_store(services).issue_key(
        user.id, body.label, datetime.now(UTC), body.expires_at
    )
    return _key(issued.info, issued.key)


@router.get("/v1/users/{user_id}/keys", response_model=list[KeyPublic])
def list_keys(services: ServicesDep, caller: ManageUsersDep, user_id: int) -> list[KeyPublic]:
    """A user's keys (never the keys themselves)."""
    user = _managed_user(services, caller, user_id)
    return [_key(info) for info in access_store(services).keys(user.id)]


@router.delete("/v1/users/{user_id}/keys/{key_id}", status_code=204)
def revoke_key(
    services: ServicesDep, caller: ManageUsersDep, user_id: int, key_id: str
) -> Response:
    """Revoke a key at once: it and the tokens and sessions issued from it stop working."""
    user = _managed_user(services, caller, user_id)
    store = access_store(services)
    if key_id not in {k.id for k in store.keys(user.id)}:
        raise Problem(404, "key_not_found", f"user {user_id} has no key {key_id!r}")
    try:
        store.revoke_key(key_id, datetime.now(UTC))
    except AccessError as err:
        raise _problem(err) from err
    return Response(status_code=204)
