"""`leasewatch cloud create-tenant | create-user | create-key | sync-broker`: access admin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from cloud.access.broker_sync import BrokerSyncError, mosquitto_files
from cloud.access.digests import derive
from cloud.access.gateways import GatewayCredentialStore
from cloud.access.roles import Role
from cloud.access.users import AccessError, AccessStore
from cloud.settings import API_SECRETS, CloudSettings, SettingsError, load_settings
from cloud.state import StateStore


def _load(needed: tuple[str, ...]) -> CloudSettings:
    try:
        return load_settings(needed)
    except SettingsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err


def _store(settings: CloudSettings) -> tuple[StateStore, AccessStore]:
    secret = settings.auth_secret.get_secret_value() or settings.api_key.get_secret_value()
    state = StateStore(settings.state_url)
    return state, AccessStore(state.engine, derive(secret, "api-key-pepper"))


def create_tenant(tenant: str, name: str) -> None:
    """Add a tenant (a lessor whose users see only its devices)."""
    state, store = _store(_load(API_SECRETS))
    try:
        store.create_tenant(tenant, name, datetime.now(UTC))
    except AccessError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    finally:
        state.close()
    typer.echo(f"tenant {tenant} created")


def create_user(
    name: str,
    role: Annotated[Role, typer.Option(help="asset_manager, risk_analyst, operator, admin")],
    tenant: Annotated[str | None, typer.Option(help="Tenant id; none: every tenant")] = None,
) -> None:
    """Add an API user with a role."""
    state, store = _store(_load(API_SECRETS))
    try:
        user = store.create_user(name, role, tenant, datetime.now(UTC))
    except AccessError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    finally:
        state.close()
    typer.echo(f"user {user.name} (id {user.id}, {user.role.value}) created")


def create_key(name: str, label: str = "cli") -> None:
    """Issue an API key for a user; the key is printed once (only its digest is stored)."""
    state, store = _store(_load(API_SECRETS))
    try:
        user = store.user_named(name)
        if user is None:
            typer.echo(f"no user named {name!r}; create it with create-user", err=True)
            raise typer.Exit(1)
        issued = store.issue_key(user.id, label, datetime.now(UTC))
    finally:
        state.close()
    typer.echo(issued.key)


def sync_broker() -> None:
    """Rewrite Mosquitto's gateway accounts from the state store and reload it."""
    settings = _load(())
    files = mosquitto_files(settings)
    if files is None:
        typer.echo("LEASEWATCH_BROKER_PASSWORD_FILE and _ACL_FILE are not set", err=True)
        raise typer.Exit(2)
    state = StateStore(settings.state_url)
    try:
        outcome = files.sync(GatewayCredentialStore(state.engine).active_hashes)
    except BrokerSyncError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    finally:
        state.close()
    typer.echo(f"broker {outcome}")


def register(app: typer.Typer) -> None:
    """Add the access commands to `leasewatch cloud`."""
    app.command("create-tenant")(create_tenant)
    app.command("create-user")(create_user)
    app.command("create-key")(create_key)
    app.command("sync-broker")(sync_broker)
