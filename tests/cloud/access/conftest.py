"""An API app on a SQLite state store with one user (and key) per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud.access.roles import Role
from cloud.access.users import AccessStore
from cloud.api.deps import Services, access_store
from cloud.api.main import create_app
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry.sqlite import SqliteTelemetryStore

BOOTSTRAP_KEY = "bootstrap-key-for-access-tests"
AUTH_SECRET = "auth-secret-for-access-tests"


@dataclass
class AccessApp:
    """A test client, its services, and an API key per role (no tenant)."""

    client: TestClient
    services: Services
    keys: dict[Role, str]

    @property
    def store(self) -> AccessStore:
        """Users, keys and tenants of this app."""
        return access_store(self.services)

    def auth(self, role: Role) -> dict[str, str]:
        """Headers authenticating as the user of a role."""
        return {"X-API-Key": self.keys[role]}

    def new_key(self, name: str, role: Role, tenant: str | None = None) -> str:
        """Create a user and return a fresh key of it."""
        now = datetime.now(UTC)
        user = self.store.create_user(name, role, tenant, now)
        return self.store.issue_key(user.id, "test", now).key


def make_services(tmp_path: Path, state_url: str | None = None, **settings: object) -> Services:
    """Production-mode settings with a bootstrap key and an auth secret (SQLite state default)."""
    config = CloudSettings(
        mode="production",
        api_key=SecretStr(BOOTSTRAP_KEY),
        auth_secret=SecretStr(AUTH_SECRET),
        state_url=state_url or f"sqlite:///{tmp_path / 'state.sqlite'}",
        **settings,  # type: ignore[arg-type]
    )
    state = StateStore(config.state_url)
    telemetry = SqliteTelemetryStore(tmp_path / "t.sqlite")
    return Services(config, telemetry, state, IngestMetrics())


@pytest.fixture
def access_app(tmp_path: Path) -> Iterator[AccessApp]:
    """The API with one user per role."""
    services = make_services(tmp_path)
    with TestClient(create_app(services)) as client:
        app = AccessApp(client, services, {})
        app.keys = {role: app.new_key(f"{role.value}-1", role) for role in Role}
        yield app
    services.state.close()
