"""Who may use the LeaseWatch MQTT broker, and what each principal may do on which topic.

One list of principals gives both brokers the same rules: a Mosquitto password file and ACL
file, and an `AmqttAcl` for the embedded demo broker. Topic rules (see `grants`):

    gateway <id>   write lw/v1/<id>/telemetry, lw/v1/<id>/status, lw/v1/<id>/ack
                   read  lw/v1/<id>/cmd/#
    ingestor       read  lw/v1/+/telemetry, lw/v1/+/status, lw/v1/+/ack (also as $share/<g>/...)
                   write lw/v1/+/cmd/#, lw/v1/alerts/# (alert events, cloud.alerts.receivers)
    monitor        read  lw/v1/#, $SYS/#
    simulator      write lw/v1/+/telemetry, lw/v1/+/status
                   LOAD TESTS ONLY (`leasewatch sim fleet` / `sim bench`): one connection
                   publishing for thousands of simulated gateways. Never provision it in
                   production: it may publish as any device.

The Mosquitto ACL uses one explicit `user` block per principal, never `pattern ... %u` lines:
a pattern would also give a service account named like a device that device's topics.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from cloud.broker_tls import (
    BrokerTlsError,
    TlsListener,
    render_tls_listener,
    split_tls_listener,
)
from leasewatch.wire import TOPIC_ROOT

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class BrokerAccessError(Exception):
    """Broker access files could not be produced."""


class Role(StrEnum):
    """What kind of client a principal is."""

    GATEWAY = "gateway"
    INGESTOR = "ingestor"
    MONITOR = "monitor"
    SIMULATOR = "simulator"  # load tests only: may publish as any device; never in production


class Access(StrEnum):
    """Mosquitto ACL access: read covers subscribe and receive, write covers publish."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Grant:
    """One topic pattern a principal may read from or write to."""

    access: Access
    pattern: str


class Principal(BaseModel):
    """A broker account: its username, its password (never shown) and its role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Username
    password: Annotated[SecretStr, Field(min_length=8, max_length=512)]
    role: Role

    @field_validator("password")
    @classmethod
    def _one_line(cls, value: SecretStr) -> SecretStr:
        """Refuse passwords that cannot be written to a line-based password file."""
        if any(char in value.get_secret_value() for char in "\r\n\0"):
            raise ValueError("password must not contain line breaks or NUL")
        return value

    @classmethod
    def gateway(cls, device: str, password: str) -> Self:
        """A gateway whose username is its device id."""
        return cls(username=device, password=SecretStr(password), role=Role.GATEWAY)

    @classmethod
    def ingestor(cls, username: str, password: str) -> Self:
        """The cloud ingestor service account (shared by all ingestor workers)."""
        return cls(username=username, password=SecretStr(password), role=Role.INGESTOR)

    @classmethod
    def monitor(cls, username: str, password: str) -> Self:
        """A read-only account for dashboards and broker statistics."""
        return cls(username=username, password=SecretStr(password), role=Role.MONITOR)

    @classmethod
    def simulator(cls, username: str, password: str) -> Self:
        """The fleet simulator's account, for load tests only: never provision it in production."""
        return cls(username=username, password=SecretStr(password), role=Role.SIMULATOR)


def device_topic(device: str, kind: str) -> str:
    """Topic (or filter) `lw/v1/<device>/<kind>`; `+` as device means every device."""
    return f"{TOPIC_ROOT}/{device}/{kind}"


def grants(principal: Principal) -> tuple[Grant, ...]:
    """The topic rules of one principal, derived from its role only."""
    return role_grants(principal.role, principal.username)


def role_grants(role: Role, username: str) -> tuple[Grant, ...]:
    """The topic rules of a principal with this role and username."""
    read, write = Access.READ, Access.WRITE
    match role:
        case Role.GATEWAY:
            me = username
            return (
                Grant(write, device_topic(me, "telemetry")),
                Grant(write, device_topic(me, "status")),
                Grant(write, device_topic(me, "health")),
                Grant(write, device_topic(me, "ack")),
                Grant(read, device_topic(me, "cmd/#")),
            )
        case Role.INGESTOR:
            return (
                Grant(read, device_topic("+", "telemetry")),
                Grant(read, device_topic("+", "status")),
                Grant(read, device_topic("+", "health")),
                Grant(read, device_topic("+", "ack")),
                Grant(write, device_topic("+", "cmd/#")),
                Grant(write, f"{TOPIC_ROOT}/alerts/#"),
            )
        case Role.MONITOR:
            return (Grant(read, f"{TOPIC_ROOT}/#"), Grant(read, "$SYS/#"))
        case Role.SIMULATOR:
            return (
                Grant(write, device_topic("+", "telemetry")),
                Grant(write, device_topic("+", "status")),
            )


def check_unique(principals: Iterable[Principal]) -> dict[str, Principal]:
    """Index principals by username, refusing duplicates."""
    index: dict[str, Principal] = {}
    for principal in principals:
        if principal.username in index:
            raise BrokerAccessError(f"username {principal.username!r} is listed twice")
        index[principal.username] = principal
    return index


def acl_covers(pattern: str, topic: str) -> bool:
    """Whether an ACL pattern covers a topic, or every topic a filter can match."""
    wanted = topic.split("/")
    for index, level in enumerate(pattern.split("/")):
        if level == "#":
            return True
        if index >= len(wanted) or wanted[index] == "#":
            return False
        if level != "+" and level != wanted[index]:
            return False
    return len(wanted) == len(pattern.split("/"))


def mosquitto_acl(principals: Iterable[Principal]) -> str:
    """The Mosquitto acl_file text: one explicit user block per principal."""
    lines = [
        "# LeaseWatch broker ACL, generated by cloud.broker_access: do not edit by hand.",
        "# No rules outside user blocks: anonymous clients get nothing.",
    ]
    accounts = ((p.username, p.role) for p in check_unique(principals).values())
    return "\n".join(lines) + "\n" + acl_blocks(accounts)


def acl_blocks(accounts: Iterable[tuple[str, Role]]) -> str:
    """Mosquitto ACL user blocks for (username, role) pairs."""
    lines: list[str] = []
    for username, role in accounts:
        lines += ["", f"# {role.value}", f"user {username}"]
        lines += [f"topic {g.access.value} {g.pattern}" for g in role_grants(role, username)]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with an owner-readable file holding `text`."""
    _write_private(path, text).replace(path)


def _write_private(path: Path, text: str) -> Path:
    """Write `text` to a new owner-readable file next to `path`; the caller moves it in place."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(temp)


def write_mosquitto_acl(principals: Iterable[Principal], path: Path) -> None:
    """Write the Mosquitto ACL file (owner-readable only)."""
    _write_private(path, mosquitto_acl(principals)).replace(path)


def write_mosquitto_passwords(
    principals: Iterable[Principal], path: Path, *, tool: str = "mosquitto_passwd"
) -> None:
    """Write a Mosquitto password file, hashed by `mosquitto_passwd -U` (owner-readable only)."""
    plain = "".join(
        f"{principal.username}:{principal.password.get_secret_value()}\n"
        for principal in check_unique(principals).values()
    )
    temp = _write_private(path, plain)
    try:
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [tool, "-U", str(temp)], check=True, capture_output=True, timeout=30
        )
    except FileNotFoundError as err:
        temp.unlink()
        raise BrokerAccessError(
            f"{tool!r} not found: install mosquitto (Debian: apt-get install mosquitto)"
        ) from err
    except subprocess.CalledProcessError as err:
        temp.unlink()
        detail = err.stderr.decode(errors="replace").strip()
        raise BrokerAccessError(f"mosquitto_passwd -U failed: {detail}") from err
    temp.replace(path)


_SUBSTITUTED = ("listener", "user", "password_file", "acl_file", "persistence_location")


def mosquitto_conf(
    template: str,
    *,
    host: str,
    port: int,
    password_file: Path,
    acl_file: Path,
    persistence_dir: Path,
    user: str,
    tls: TlsListener | None = None,
) -> str:
    """The deployed mosquitto.conf with listeners, user and file paths replaced, nothing else.

    The TLS listener gets `tls`'s port and files, or is left out when `tls` is None.
    """
    values = {
        "listener": f"{port} {host}",
        "user": user,
        "password_file": str(password_file),
        "acl_file": str(acl_file),
        "persistence_location": f"{str(persistence_dir).rstrip('/')}/",
    }
    for key, value in (("host", host), ("user", user), *list(values.items())[2:]):
        if not value or any(char.isspace() for char in value):
            raise BrokerAccessError(f"{key} {value!r} is empty or contains whitespace")
    seen = dict.fromkeys(_SUBSTITUTED, 0)
    try:
        head, tls_block, tail = split_tls_listener(template.splitlines())
    except BrokerTlsError as err:
        raise BrokerAccessError(str(err)) from err
    lines = head + tail
    for index, line in enumerate(lines):
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        if key in values:
            lines[index] = f"{key} {values[key]}"
            seen[key] += 1
    wrong = [key for key, count in seen.items() if count != 1]
    if wrong:
        raise BrokerAccessError(f"template must set each of {', '.join(wrong)} exactly once")
    lines[len(head) : len(head)] = render_tls_listener(tls_block, tls, host)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AmqttAcl:
    """The same per-username rules for amqtt: patterns each user may write and read."""

    write: Mapping[str, tuple[str, ...]]
    read: Mapping[str, tuple[str, ...]]

    def may_publish(self, username: str | None, topic: str) -> bool:
        """Whether `username` may publish to `topic`."""
        patterns = self.write.get(username or "", ())
        return any(acl_covers(pattern, topic) for pattern in patterns)

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        """Whether `username` may subscribe to `topic_filter` (no shared subscriptions)."""
        patterns = self.read.get(username or "", ())
        return any(acl_covers(pattern, topic_filter) for pattern in patterns)

    def may_receive(self, username: str | None, topic: str) -> bool:
        """Whether a message on `topic` may be delivered to `username`."""
        return self.may_subscribe(username, topic)


def amqtt_acl(principals: Iterable[Principal]) -> AmqttAcl:
    """The rules of `grants` as per-username pattern lists for the embedded broker."""
    accounts = [(name, p.role) for name, p in check_unique(principals).items()]
    return amqtt_acl_for(accounts)


def amqtt_acl_for(accounts: Iterable[tuple[str, Role]]) -> AmqttAcl:
    """Per-username pattern lists for (username, role) pairs."""
    write: dict[str, tuple[str, ...]] = {}
    read: dict[str, tuple[str, ...]] = {}
    for username, role in accounts:
        rules = role_grants(role, username)
        write[username] = tuple(g.pattern for g in rules if g.access is Access.WRITE)
        read[username] = tuple(g.pattern for g in rules if g.access is Access.READ)
    return AmqttAcl(write=write, read=read)


__all__ = [
    "Access",
    "AmqttAcl",
    "BrokerAccessError",
    "Grant",
    "Principal",
    "Role",
    "Username",
    "acl_blocks",
    "acl_covers",
    "amqtt_acl",
    "amqtt_acl_for",
    "check_unique",
    "device_topic",
    "grants",
    "mosquitto_acl",
    "mosquitto_conf",
    "role_grants",
    "write_mosquitto_acl",
    "write_mosquitto_passwords",
    "write_private",
]
