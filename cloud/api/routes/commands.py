"""Commands to gateways and their acknowledgements (docs/commands.md)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cloud.access.roles import Permission
from cloud.api.deps import (
    CallerDep,
    CommandGatewaysDep,
    DeviceScope,
    ReadTelemetry,
    ServicesDep,
    access_store,
    require_permission,
)
from cloud.api.problems import Problem
from cloud.commands.link import why_undeliverable
from cloud.commands.store import CommandRecord, CommandStore
from leasewatch.wire import ArgValue, Command, CommandId, CommandName, DeviceId

router = APIRouter(tags=["commands"])
log = structlog.get_logger(__name__)

#: Commands that stop or free a leased machine: they need `immobilize_assets` too.
SENSITIVE_COMMANDS = frozenset({"immobilize", "release"})
HISTORY_LIMIT = 500


class CommandCreate(BaseModel):
    """A command to send: a name of the wire contract, its arguments and how long it is valid."""

    name: CommandName
    args: dict[str, ArgValue] = {}
    ttl_s: Annotated[
        int | None,
        Field(ge=5, le=7 * 86_400, description="Default: LEASEWATCH_COMMAND_TTL_S"),
    ] = None


@router.post(
    "/v1/devices/{device}/commands",
    response_model=CommandRecord,
    status_code=202,
    dependencies=[DeviceScope],
)
def send_command(
    services: ServicesDep, caller: CommandGatewaysDep, device: DeviceId, body: CommandCreate
) -> CommandRecord:
    """Queue a command for a gateway; the API's command link publishes it (QoS 1)."""
    if body.name in SENSITIVE_COMMANDS:
        require_permission(Permission.IMMOBILIZE_ASSETS)(caller)
    if not services.state.is_registered(device):
        raise Problem(404, "device_not_found", f"no device {device!r} is registered")
    if (why := why_undeliverable(services.settings)) is not None:
        raise Problem(503, "commands_unavailable", why)
    now = datetime.now(UTC)
    ttl = timedelta(seconds=body.ttl_s or services.settings.command_ttl_s)
    command = Command(
        id=secrets.token_urlsafe(16), name=body.name, args=body.args,
        issued_at=now, expires_at=now + ttl,
    )  # fmt: skip
    record = CommandStore(services.state.engine).create(device, command, caller.user)
    log.info(
        "command queued", id=record.id, device=device, name=body.name, requested_by=caller.user,
        via=caller.via,
    )  # fmt: skip
    return record


@router.get(
    "/v1/devices/{device}/commands",
    response_model=list[CommandRecord],
    dependencies=[DeviceScope, ReadTelemetry],
)
def command_history(
    services: ServicesDep,
    device: DeviceId,
    limit: Annotated[int, Query(ge=1, le=HISTORY_LIMIT)] = 50,
) -> list[CommandRecord]:
    """A gateway's newest commands first, with their acknowledgements."""
    return CommandStore(services.state.engine).history(device, limit)


@router.get("/v1/commands/{command_id}", response_model=CommandRecord, dependencies=[ReadTelemetry])
def get_command(services: ServicesDep, caller: CallerDep, command_id: CommandId) -> CommandRecord:
    """One command by id (404 command_not_found for another tenant's gateway)."""
    record = CommandStore(services.state.engine).get(command_id)
    hidden = record is not None and caller.tenant is not None and (
        access_store(services).device_tenant(record.device) != caller.tenant
    )  # fmt: skip
    if record is None or hidden:
        raise Problem(404, "command_not_found", f"no command {command_id!r}")
    return record
