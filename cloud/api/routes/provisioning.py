"""Gateway provisioning: register a gateway, issue its MQTT password once, rotate, revoke.

The broker enforces the result at once (see cloud.access.broker_sync): Mosquitto's password
file and ACL are rewritten and the broker reloaded, or the embedded demo broker's rules swapped.
Without a managed broker (no LEASEWATCH_BROKER_PASSWORD_FILE, not the demo) registration only
makes the device known, and its broker account is managed elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from cloud.access.broker_sync import BrokerSyncError, GatewayBroker, mosquitto_files
from cloud.access.gateways import CredentialStatus, GatewayCredentialStore, IssuedPassword
from cloud.access.users import AccessError
from cloud.api.deps import (
    Caller,
    DeviceScope,
    ProvisionDevices,
    ProvisionDevicesDep,
    Services,
    ServicesDep,
    access_store,
)
from cloud.api.problems import Problem
from leasewatch.wire import DeviceId

router = APIRouter(tags=["devices"], dependencies=[ProvisionDevices, DeviceScope])

BrokerOutcome = Literal["reloaded", "files_written", "unmanaged"]


def get_gateway_broker(services: ServicesDep) -> GatewayBroker | None:
    """The broker to provision on: the app's (demo), the configured Mosquitto files, or None."""
    return services.gateway_broker or mosquitto_files(services.settings)


GatewayBrokerDep = Annotated[GatewayBroker | None, Depends(get_gateway_broker)]

_STATUS = {"credentials_exist": 409, "no_credentials": 409, "credentials_changed": 409}


class DeviceCreate(BaseModel):
    """A gateway to register, optionally in a tenant (a tenant's operator: always theirs)."""

    device: DeviceId
    tenant: str | None = Field(default=None, description="Tenant (lessor) owning the device")


class CredentialsPublic(BaseModel):
    """A gateway's MQTT credentials; the password only in the answer that issued it."""

    device: str
    tenant: str | None = None
    mqtt_username: str
    mqtt_password: str | None = Field(
        default=None, description="Shown once: configure the gateway now"
    )
    generation: int | None = Field(
        default=None, description="1 at first issue, +1 at each rotation"
    )
    issued_at: datetime | None = None
    revoked_at: datetime | None = None
    broker: BrokerOutcome = Field(description="What the broker did with the change")


def _public(
    status: CredentialStatus, broker: BrokerOutcome, password: str | None = None
) -> CredentialsPublic:
    return CredentialsPublic(
        device=status.device,
        mqtt_username=status.device,
        mqtt_password=password,
        generation=status.generation,
        issued_at=status.issued_at,
        revoked_at=status.revoked_at,
        broker=broker,
    )


def _sync(services: Services, broker: GatewayBroker) -> BrokerOutcome:
    store = GatewayCredentialStore(services.state.engine)
    try:
        outcome = broker.sync(store.active_hashes)
    except BrokerSyncError as err:
        raise Problem(
            502,
            "broker_sync_failed",
            f"stored, but the broker was not updated: {err}; POST /v1/broker/sync retries",
        ) from err
    return "reloaded" if outcome == "reloaded" else "files_written"


def _managed(broker: GatewayBroker | None) -> GatewayBroker:
    if broker is None:
        raise Problem(
            409,
            "broker_unmanaged",
            "this API does not manage the broker (set LEASEWATCH_BROKER_PASSWORD_FILE and "
            "LEASEWATCH_BROKER_ACL_FILE); gateway accounts are configured on the broker",
        )
    return broker


def _tenant_for(services: Services, caller: Caller, body: DeviceCreate) -> str | None:
    """The tenant the new device goes to; refuses one device moving between tenants."""
    if caller.tenant is not None and body.tenant not in (None, caller.tenant):
        raise Problem(403, "forbidden", f"you provision devices of tenant {caller.tenant!r} only")
    tenant = caller.tenant or body.tenant
    current = access_store(services).device_tenant(body.device)
    if services.state.is_registered(body.device) and current != tenant:
        raise Problem(409, "device_exists", f"{body.device} is registered in another tenant")
    return tenant


@router.post("/v1/devices", status_code=201, response_model=CredentialsPublic)
def register_device(
    services: ServicesDep, caller: ProvisionDevicesDep, broker: GatewayBrokerDep, body: DeviceCreate
) -> CredentialsPublic:
    """Register a gateway and issue its MQTT password (in this answer only, stored hashed)."""
    tenant = _tenant_for(services, caller, body)
    now = datetime.now(UTC)
    if broker is not None and body.device in broker.static_usernames():
        raise Problem(409, "static_credentials", f"{body.device} has a broker account from files")
    issued: IssuedPassword | None = None
    if broker is not None:
        try:
            issued = GatewayCredentialStore(services.state.engine).issue(body.device, now)
        except AccessError as err:
            raise Problem(_STATUS.get(err.code, 409), err.code, str(err)) from err
    services.state.register_device(body.device, now)
    if tenant is not None:
        try:
            access_store(services).assign_device(body.device, tenant, now)
        except AccessError as err:
            raise Problem(422, err.code, str(err)) from err
    if broker is None or issued is None:
        return CredentialsPublic(
            device=body.device, tenant=tenant, mqtt_username=body.device, broker="unmanaged"
        )
    public = _public(issued.status, _sync(services, broker), issued.password)
    return public.model_copy(update={"tenant": tenant})


def _registered(services: Services, device: str) -> None:
    if not services.state.is_registered(device):
        raise Problem(404, "device_not_found", f"no device {device!r}")


@router.get("/v1/devices/{device}/credentials", response_model=CredentialsPublic)
def credentials(
    services: ServicesDep, broker: GatewayBrokerDep, device: DeviceId
) -> CredentialsPublic:
    """A gateway's credential facts (generation, issued, revoked); never the password."""
    _registered(services, device)
    status = GatewayCredentialStore(services.state.engine).status(device)
    if status is None:
        raise Problem(404, "no_credentials", f"{device} was never issued MQTT credentials here")
    return _public(status, "unmanaged" if broker is None else "reloaded")


def _change(
    services: Services, broker: GatewayBroker | None, device: str, action: str
) -> CredentialsPublic:
    """Rotate or revoke a gateway's live credentials and make the broker enforce it."""
    managed = _managed(broker)
    _registered(services, device)
    store = GatewayCredentialStore(services.state.engine)
    now = datetime.now(UTC)
    try:
        if action == "rotate":
            issued = store.rotate(device, now)
            return _public(issued.status, _sync(services, managed), issued.password)
        status = store.revoke(device, now)
    except AccessError as err:
        raise Problem(_STATUS.get(err.code, 409), err.code, str(err)) from err
    return _public(status, _sync(services, managed))


@router.post("/v1/devices/{device}/credentials/rotate", response_model=CredentialsPublic)
def rotate_credentials(
    services: ServicesDep, broker: GatewayBrokerDep, device: DeviceId
) -> CredentialsPublic:
    """Issue a new password (in this answer only); the old one stops working at once."""
    return _change(services, broker, device, "rotate")


@router.delete("/v1/devices/{device}/credentials", response_model=CredentialsPublic)
def revoke_credentials(
    services: ServicesDep, broker: GatewayBrokerDep, device: DeviceId
) -> CredentialsPublic:
    """Revoke a gateway: new connections are refused and its session is cut off."""
    return _change(services, broker, device, "revoke")


class SyncPublic(BaseModel):
    """What a broker sync did."""

    gateways: int
    broker: BrokerOutcome


@router.post("/v1/broker/sync", response_model=SyncPublic)
def sync_broker(services: ServicesDep, broker: GatewayBrokerDep) -> SyncPublic:
    """Rewrite the broker's gateway accounts from the store and reload it (after a failure)."""
    managed = _managed(broker)
    count = len(GatewayCredentialStore(services.state.engine).active_hashes())
    return SyncPublic(gateways=count, broker=_sync(services, managed))
