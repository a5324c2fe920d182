"""Make the broker enforce the gateway credentials in the state store, without a restart.

Mosquitto: the password file and ACL are rewritten from the store (base files of the service
accounts first, then one line and one ACL block per gateway with live credentials) and the
broker is sent SIGHUP. On reload Mosquitto re-reads both files, refuses new connections with
revoked credentials and disconnects clients whose credentials are gone. The embedded demo
broker swaps its rules in memory: new connections are refused and each publish is checked
against the new rules.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cloud.broker_access import Role, acl_blocks, write_private
from cloud.embedded_broker import EmbeddedBroker, EmbeddedBrokerError
from cloud.settings import CloudSettings

_LOGGER = logging.getLogger(__name__)

Snapshot = Callable[[], Mapping[str, str]]
"""Reads device -> `$7$` hash of every gateway with live credentials."""


class BrokerSyncError(Exception):
    """The broker could not be brought in line with the store; the message says why."""


class GatewayBroker(Protocol):
    """A broker LeaseWatch provisions gateway accounts on."""

    def static_usernames(self) -> frozenset[str]:
        """Accounts configured outside the store (services, file-provisioned gateways)."""
        ...

    def sync(self, snapshot: Snapshot) -> str:
        """Enforce the store's gateways; a word saying what was done."""
        ...


@dataclass(frozen=True)
class MosquittoFiles:
    """Mosquitto's password and ACL files, rewritten from base files and the store; SIGHUP."""

    password_file: Path
    acl_file: Path
    base_password_file: Path | None = None
    base_acl_file: Path | None = None
    pid_file: Path | None = None

    def static_usernames(self) -> frozenset[str]:
        """Usernames in the base password file."""
        base = self._read(self.base_password_file)
        return frozenset(line.split(":", 1)[0] for line in base.splitlines() if ":" in line)

    def sync(self, snapshot: Snapshot) -> str:
        """Rewrite both files under a lock (so a stale writer never wins), then SIGHUP."""
        lock_path = self.password_file.with_name(f".{self.password_file.name}.lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            gateways = dict(snapshot())
            if clash := sorted(self.static_usernames() & set(gateways)):
                raise BrokerSyncError(f"usernames in the base password file: {', '.join(clash)}")
            self._write(gateways)
            return self._reload()

    def _write(self, gateways: Mapping[str, str]) -> None:
        passwd = _joined(self._read(self.base_password_file), "")
        passwd += "".join(f"{device}:{digest}\n" for device, digest in sorted(gateways.items()))
        acl = _joined(self._read(self.base_acl_file), "# no service accounts configured\n")
        acl += acl_blocks((device, Role.GATEWAY) for device in sorted(gateways))
        try:
            write_private(self.password_file, passwd)
            write_private(self.acl_file, acl)
        except OSError as err:
            raise BrokerSyncError(f"cannot write the broker's access files: {err}") from err

    def _reload(self) -> str:
        if self.pid_file is None:
            _LOGGER.warning("broker files rewritten; no pid file configured, reload the broker")
            return "files_written"
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as err:
            raise BrokerSyncError(f"cannot signal the broker from {self.pid_file}: {err}") from err
        return "reloaded"

    @staticmethod
    def _read(path: Path | None) -> str:
        if path is None:
            return ""
        try:
            return path.read_text(encoding="utf-8")
        except OSError as err:
            raise BrokerSyncError(f"cannot read {path}: {err}") from err


def _joined(text: str, empty: str) -> str:
    """Base file text ending in a newline, or `empty`."""
    if not text:
        return empty
    return text if text.endswith("\n") else text + "\n"


@dataclass(frozen=True)
class EmbeddedGateways:
    """The demo's in-process amqtt broker."""

    broker: EmbeddedBroker

    def static_usernames(self) -> frozenset[str]:
        """The principals the demo started the broker with."""
        return self.broker.static_usernames

    def sync(self, snapshot: Snapshot) -> str:
        """Swap the broker's rules for ones with exactly the store's gateways."""
        try:
            self.broker.set_gateway_hashes(snapshot())
        except EmbeddedBrokerError as err:
            raise BrokerSyncError(str(err)) from err
        return "reloaded"


def mosquitto_files(settings: CloudSettings) -> MosquittoFiles | None:
    """The Mosquitto files the settings name, or None when the broker is managed elsewhere."""
    if settings.broker_password_file is None or settings.broker_acl_file is None:
        return None
    return MosquittoFiles(
        settings.broker_password_file,
        settings.broker_acl_file,
        settings.broker_base_password_file,
        settings.broker_base_acl_file,
        settings.broker_pid_file,
    )
