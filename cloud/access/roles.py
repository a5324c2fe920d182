"""API roles and the permission matrix: which role may do what, kept as data.

docs/security.md shows the same matrix as a table; tests/cloud/access/test_roles.py checks that
the table matches `ROLE_PERMISSIONS`, and tests/cloud/test_api_auth.py checks every route
against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Role(StrEnum):
    """What an API user is there to do."""

    ASSET_MANAGER = "asset_manager"
    RISK_ANALYST = "risk_analyst"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    """One kind of action a route performs; each route requires exactly one."""

    READ_TELEMETRY = "read_telemetry"
    READ_ALERTS = "read_alerts"
    ACT_ON_ALERTS = "act_on_alerts"
    PLAN_MAINTENANCE = "plan_maintenance"
    READ_LEASES = "read_leases"
    MANAGE_LEASES = "manage_leases"
    READ_RISK = "read_risk"
    READ_OPERATIONS = "read_operations"
    OPERATE_DELIVERIES = "operate_deliveries"
    PROVISION_DEVICES = "provision_devices"
    COMMAND_GATEWAYS = "command_gateways"
    IMMOBILIZE_ASSETS = "immobilize_assets"
    MANAGE_USERS = "manage_users"


_AM, _RA, _OP, _AD = Role.ASSET_MANAGER, Role.RISK_ANALYST, Role.OPERATOR, Role.ADMIN

ROLE_PERMISSIONS: Mapping[Permission, frozenset[Role]] = {
    Permission.READ_TELEMETRY: frozenset({_AM, _RA, _OP, _AD}),
    Permission.READ_ALERTS: frozenset({_AM, _RA, _OP, _AD}),
    Permission.ACT_ON_ALERTS: frozenset({_AM, _OP, _AD}),
    Permission.PLAN_MAINTENANCE: frozenset({_AM, _OP, _AD}),
    Permission.READ_LEASES: frozenset({_AM, _RA, _AD}),
    Permission.MANAGE_LEASES: frozenset({_AM, _AD}),
    Permission.READ_RISK: frozenset({_RA, _AD}),
    Permission.READ_OPERATIONS: frozenset({_OP, _AD}),
    Permission.OPERATE_DELIVERIES: frozenset({_OP, _AD}),
    Permission.PROVISION_DEVICES: frozenset({_OP, _AD}),
    Permission.COMMAND_GATEWAYS: frozenset({_OP, _AD}),
    # Stopping a lessee's machine is a contractual remedy, not operations (docs/security.md).
    Permission.IMMOBILIZE_ASSETS: frozenset({_AD}),
    Permission.MANAGE_USERS: frozenset({_AD}),
}
"""Which roles hold each permission (admin holds all)."""

PERMISSION_MEANING: Mapping[Permission, str] = {
    Permission.READ_TELEMETRY: "devices, readings, rollups, ledger, completeness, events, "
    "health, command history, dashboards",
    Permission.READ_ALERTS: "list and read alerts and their deliveries",
    Permission.ACT_ON_ALERTS: "acknowledge and resolve alerts",
    Permission.PLAN_MAINTENANCE: "plan, change and delete maintenance windows",
    Permission.READ_LEASES: "read leases, lessees and assets' contract terms",
    Permission.MANAGE_LEASES: "create and change leases, lessees and assets",
    Permission.READ_RISK: "read risk scores, the watchlist and credit checks",
    Permission.READ_OPERATIONS: "Prometheus metrics, ingest rejections, delivery dead letters",
    Permission.OPERATE_DELIVERIES: "retry dead-lettered notifications",
    Permission.PROVISION_DEVICES: "register gateways, issue, rotate and revoke MQTT credentials",
    Permission.COMMAND_GATEWAYS: "send ping, read_now, set_poll_interval and push_config to "
    "gateways",
    Permission.IMMOBILIZE_ASSETS: "send immobilize and release (stop or free a leased machine)",
    Permission.MANAGE_USERS: "create users and API keys, revoke keys, see every tenant",
}
"""What each permission covers, for the docs and error messages."""


def allows(role: Role, permission: Permission) -> bool:
    """Whether a role holds a permission."""
    return role in ROLE_PERMISSIONS[permission]


def matrix_markdown() -> str:
    """The role matrix as the Markdown table docs/security.md shows."""
    roles = list(Role)
    lines = [
        "| permission | what | " + " | ".join(r.value for r in roles) + " |",
        "| --- | --- | " + " | ".join("---" for _ in roles) + " |",
    ]
    for permission in Permission:
        marks = " | ".join("yes" if allows(r, permission) else "-" for r in roles)
        lines.append(f"| `{permission.value}` | {PERMISSION_MEANING[permission]} | {marks} |")
    return "\n".join(lines) + "\n"
