"""API users, their keys and tenants in the state store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloud.access.digests import key_digest, new_api_key, parse_api_key, same_digest
from cloud.access.roles import Role
from cloud.access.tables import api_keys, api_users, device_tenants, tenants
from cloud.stored_time import utc


class AccessError(Exception):
    """An access change cannot be made; `code` is the stable problem code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class ApiUser:
    """A person or system that calls the API with a role, optionally inside one tenant."""

    id: int
    name: str
    role: Role
    tenant: str | None
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key's public facts (never the key)."""

    id: str
    user_id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """A new key: shown to its owner once, then only its digest is kept."""

    info: ApiKeyInfo
    key: str


def _user(row: Row[tuple[object, ...]]) -> ApiUser:
    m = row._mapping
    return ApiUser(
        m["id"], m["name"], Role(m["role"]), m["tenant"], m["created_at"], m["disabled_at"]
    )


def _key(row: Row[tuple[object, ...]]) -> ApiKeyInfo:
    m = row._mapping
    return ApiKeyInfo(
        m["id"],
        m["user_id"],
        m["label"],
        utc(m["created_at"]) or m["created_at"],
        utc(m["expires_at"]),
        utc(m["revoked_at"]),
    )


@dataclass(frozen=True)
class AccessStore:
    """Users, keys and tenants on the state store's engine; keys checked under a pepper."""

    engine: Engine
    pepper: bytes

    def create_tenant(self, tenant: str, name: str, now: datetime) -> None:
        """Add a lessor (tenant); AccessError tenant_exists if the id is taken."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tenants).values(id=tenant, name=name, created_at=now))
        except IntegrityError as err:
            raise AccessError("tenant_exists", f"tenant {tenant!r} exists already") from err

    def tenant_ids(self) -> list[str]:
        """Every tenant id."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(tenants.c.id).order_by(tenants.c.id)).scalars())

    def create_user(self, name: str, role: Role, tenant: str | None, now: datetime) -> ApiUser:
        """Add a user; AccessError user_exists or unknown_tenant."""
        if tenant is not None and tenant not in self.tenant_ids():
            raise AccessError("unknown_tenant", f"tenant {tenant!r} does not exist")
        values = {"name": name, "role": role.value, "tenant": tenant, "created_at": now}
        try:
            with self.engine.begin() as conn:
                new_id = conn.execute(insert(api_users).values(**values)).inserted_primary_key
        except IntegrityError as err:
            raise AccessError("user_exists", f"a user named {name!r} exists already") from err
        assert new_id is not None  # noqa: S101 - an insert always has a key
        return ApiUser(int(new_id[0]), name, role, tenant, now, None)

    def users(self) -> list[ApiUser]:
        """Every user by id."""
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(api_users).order_by(api_users.c.id))]

    def user(self, user_id: int) -> ApiUser | None:
        """One user, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(api_users).where(api_users.c.id == user_id)).first()
        return _user(row) if row is not None else None

    def user_named(self, name: str) -> ApiUser | None:
        """One user by name, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(api_users).where(api_users.c.name == name)).first()
        return _user(row) if row is not None else None

    def issue_key(
        self, user_id: int, label: str, now: datetime, expires_at: datetime | None = None
    ) -> IssuedKey:
        """A new key for a user; AccessError user_not_found."""
        if self.user(user_id) is None:
            raise AccessError("user_not_found", f"user {user_id} does not exist")
        key_id, key = new_api_key()
        values = {
            "id": key_id,
            "user_id": user_id,
            "digest": key_digest(self.pepper, key),
            "label": label,
            "created_at": now,
            "expires_at": expires_at,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(**values))
        return IssuedKey(ApiKeyInfo(key_id, user_id, label, now, expires_at, None), key)

    def keys(self, user_id: int) -> list[ApiKeyInfo]:
        """A user's keys, revoked ones included, oldest first."""
        query = select(api_keys).where(api_keys.c.user_id == user_id)
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(query.order_by(api_keys.c.created_at))]

    def revoke_key(self, key_id: str, now: datetime) -> None:
        """Revoke a key at once (tokens issued from it stop working too); AccessError otherwise."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        if done.rowcount != 1:
            raise AccessError("key_not_found", f"no live key with id {key_id!r}")

    def authenticate(self, key: str, now: datetime) -> tuple[ApiUser, str] | None:
        """(user, key id) of a live key of an enabled user, or None."""
        parsed = parse_api_key(key)
        if parsed is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == parsed[0])).first()
        if row is None or not same_digest(row.digest, key_digest(self.pepper, key)):
            return None
        return self._live_user(_key(row), now)

    def live_key_user(self, key_id: str, now: datetime) -> ApiUser | None:
        """The user of a key that is still live (for tokens issued from that key), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        found = self._live_user(_key(row), now) if row is not None else None
        return found[0] if found is not None else None

    def _live_user(self, info: ApiKeyInfo, now: datetime) -> tuple[ApiUser, str] | None:
        if info.revoked_at is not None or (info.expires_at and info.expires_at <= now):
            return None
        user = self.user(info.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return user, info.id

    def assign_device(self, device: str, tenant: str, now: datetime) -> None:
        """Put a device into a tenant (replacing any earlier tenant)."""
        if tenant not in self.tenant_ids():
            raise AccessError("unknown_tenant", f"tenant {tenant!r} does not exist")
        with self.engine.begin() as conn:
            conn.execute(device_tenants.delete().where(device_tenants.c.device == device))
            conn.execute(
                insert(device_tenants).values(device=device, tenant=tenant, assigned_at=now)
            )

    def tenant_devices(self, tenant: str) -> set[str]:
        """Devices of one tenant."""
        query = select(device_tenants.c.device).where(device_tenants.c.tenant == tenant)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def device_tenant(self, device: str) -> str | None:
        """The tenant a device belongs to, or None."""
        query = select(device_tenants.c.tenant).where(device_tenants.c.device == device)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()
