"""`leasewatch cloud ingest` and `cloud detect` worker processes, killable and restartable.

A worker is started as operators run it: settings from LEASEWATCH_* variables (MQTT 5 without
TLS on loopback, shared group, auto-registered devices), `/healthz` on its own ops port, log to
`<workdir>/<client id>.log`. `kill()` is SIGKILL; `start()` again reuses the MQTT client id, so
the worker's persistent session gets back what it had not acknowledged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from leasewatch.services.process import (
    ProcessHandle,
    ServiceError,
    free_port,
    http_ok,
    terminate,
    wait_until,
)

LEASEWATCH = str(Path(sys.executable).parent / "leasewatch")
START_TIMEOUT_S = 60.0
Role = Literal["ingest", "detect"]
_PORT_TAKEN = "Address already in use"


@dataclass(frozen=True)
class CloudEndpoints:
    """Where a cloud worker finds the broker and the stores, and who it is on the broker."""

    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    telemetry_url: str
    state_url: str
    extra: Mapping[str, str] = field(default_factory=dict)


def worker_env(
    endpoints: CloudEndpoints, role: Role, client_id: str, ops_port: int
) -> dict[str, str]:
    """This process's environment minus any LEASEWATCH_*, plus the worker's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEWATCH_")}
    values = {
        "MQTT_HOST": endpoints.mqtt_host,
        "MQTT_PORT": str(endpoints.mqtt_port),
        "MQTT_TLS": "false",
        "MQTT_PROTOCOL": "5",
        "MQTT_USERNAME": endpoints.mqtt_username,
        "MQTT_PASSWORD": endpoints.mqtt_password,
        "MQTT_CLIENT_ID": client_id,
        "MQTT_SHARED_GROUP": "ingest",
        "TELEMETRY_URL": endpoints.telemetry_url,
        "STATE_URL": endpoints.state_url,
        "OPS_PORT": str(ops_port),
        "AUTO_REGISTER_DEVICES": "true",
        **({"DETECT_CLIENT_ID": client_id} if role == "detect" else {}),
        **endpoints.extra,
    }
    env.update({f"LEASEWATCH_{k}": v for k, v in values.items()})
    return env


class CloudWorker(ProcessHandle):
    """One `leasewatch cloud ingest|detect` process that can be killed and started again."""

    def __init__(
        self, endpoints: CloudEndpoints, workdir: Path, *, client_id: str, role: Role = "ingest"
    ) -> None:
        """Remember how to start the worker; `start()` launches it."""
        self.endpoints = endpoints
        self.role = role
        self.client_id = client_id
        self.log_path = workdir / f"{client_id}.log"
        self.ops_port = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, attempts: int = 3) -> None:
        """Launch (a fresh ops port each time) and wait until /healthz says it is connected.

        A port taken by someone else between choosing and binding it means another attempt.
        """
        if self.running():
            raise ServiceError(f"{self.client_id} is already running")
        for _ in range(attempts):
            if self._launch():
                return
            self.stop()
            if _PORT_TAKEN not in self.log_tail():
                break
        raise ServiceError(f"{self.client_id} did not connect:\n{self.log_tail()}")

    def _launch(self) -> bool:
        """One start; whether /healthz answered in time."""
        self.ops_port = free_port()
        env = worker_env(self.endpoints, self.role, self.client_id, self.ops_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv
                [LEASEWATCH, "cloud", self.role, "--log-level", "WARNING"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        healthy = f"http://127.0.0.1:{self.ops_port}/healthz"
        return wait_until(lambda: http_ok(healthy), self._process, START_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after a timeout)."""
        terminate(self._process)
