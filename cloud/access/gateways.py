"""Gateway MQTT credentials: issued once, kept as Mosquitto `$7$` hashes, rotated, revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloud.access.digests import mosquitto_hash, new_gateway_password
from cloud.access.tables import gateway_credentials
from cloud.access.users import AccessError
from cloud.stored_time import utc


@dataclass(frozen=True)
class CredentialStatus:
    """Public facts of a gateway's credentials (never the password or its hash)."""

    device: str
    generation: int
    issued_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the broker accepts these credentials."""
        return self.revoked_at is None


@dataclass(frozen=True)
class IssuedPassword:
    """A gateway's new MQTT password, returned to the caller once."""

    status: CredentialStatus
    username: str
    password: str


@dataclass(frozen=True)
class GatewayCredentialStore:
    """Gateway credentials on the state store's engine."""

    engine: Engine

    def status(self, device: str) -> CredentialStatus | None:
        """The device's credential facts, or None if it never had any."""
        query = select(gateway_credentials).where(gateway_credentials.c.device == device)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        issued = utc(row.issued_at) or row.issued_at
        return CredentialStatus(row.device, row.generation, issued, utc(row.revoked_at))

    def issue(self, device: str, now: datetime) -> IssuedPassword:
        """First credentials, or new ones after a revocation; AccessError if live ones exist."""
        current = self.status(device)
        if current is not None and current.active:
            raise AccessError(
                "credentials_exist",
                f"{device} already has live MQTT credentials; rotate or revoke them",
            )
        return self._store(device, now, 1 if current is None else current.generation + 1)

    def rotate(self, device: str, now: datetime) -> IssuedPassword:
        """Replace live credentials (the old password stops working); AccessError otherwise."""
        current = self.status(device)
        if current is None or not current.active:
            raise AccessError("no_credentials", f"{device} has no live MQTT credentials")
        return self._store(device, now, current.generation + 1)

    def revoke(self, device: str, now: datetime) -> CredentialStatus:
        """Stop accepting a device's credentials; AccessError if none are live."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(gateway_credentials)
                .where(
                    gateway_credentials.c.device == device,
                    gateway_credentials.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
        if done.rowcount != 1:
            raise AccessError("no_credentials", f"{device} has no live MQTT credentials")
        status = self.status(device)
        assert status is not None  # noqa: S101 - just updated
        return status

    def active_hashes(self) -> dict[str, str]:
        """Device -> `$7$` hash of every gateway with live credentials."""
        query = select(gateway_credentials.c.device, gateway_credentials.c.password_hash).where(
            gateway_credentials.c.revoked_at.is_(None)
        )
        with self.engine.connect() as conn:
            return {row.device: row.password_hash for row in conn.execute(query)}

    def _store(self, device: str, now: datetime, generation: int) -> IssuedPassword:
        password = new_gateway_password()
        values = {
            "password_hash": mosquitto_hash(password),
            "generation": generation,
            "issued_at": now,
            "revoked_at": None,
        }
        table = gateway_credentials
        try:
            with self.engine.begin() as conn:
                if generation == 1:
                    conn.execute(insert(table).values(device=device, **values))
                    changed = 1
                else:
                    mine = (table.c.device == device) & (table.c.generation == generation - 1)
                    changed = conn.execute(update(table).where(mine).values(**values)).rowcount
        except IntegrityError:
            changed = 0
        if changed != 1:
            raise AccessError("credentials_changed", f"{device}'s credentials changed meanwhile")
        status = CredentialStatus(device, generation, now, None)
        return IssuedPassword(status, device, password)
