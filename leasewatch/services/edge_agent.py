"""A real `leasewatch edge --config FILE` process reading a simulated Modbus RTU slave.

`agent_config_toml()` writes the configuration an installer would: one RTU bus (a pty the
simulator serves), the simulated machine's register map (`leasewatch.demo.machine_fields`),
MQTT without TLS on loopback. `EdgeAgentProcess` starts the agent (optionally behind a command
prefix, e.g. `nsenter` into a mount namespace, and with extra environment), kills it with
SIGKILL or stops it with SIGTERM (the agent flushes, seals and sends before it exits).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from leasewatch.demo import machine_fields
from leasewatch.services.cloud_worker import LEASEWATCH
from leasewatch.services.process import STOP_TIMEOUT_S, ProcessHandle


@dataclass(frozen=True)
class AgentSettings:
    """What differs between gateways, and the delivery timing."""

    device: str
    password: str
    mqtt_port: int
    data_dir: Path
    serial_port: str
    poll_interval: float = 0.5
    publish_interval: float = 1.0
    historical_after: float = 10.0
    health_interval: float = 5.0
    keepalive: int = 5
    publish_timeout: float = 5.0


def agent_config_toml(settings: AgentSettings) -> str:
    """The agent's configuration file for these settings."""
    s = settings
    fields = "".join(
        f'[[modbus_rtu.slaves.fields]]\nmetric = "{f.metric}"\naddress = {f.address}\n'
        f'kind = "{f.kind}"\nword_order = "{f.word_order}"\nscale = {f.scale}\n'
        f'unit = "{f.unit}"\n'
        for f in machine_fields()
    )
    return (
        f'[gateway]\ndevice = "{s.device}"\ndata_dir = "{s.data_dir}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {s.mqtt_port}\nusername = "{s.device}"\n'
        f'password = "{s.password}"\ntls = false\nkeepalive = {s.keepalive}\n'
        f"reconnect_max = 2.0\npublish_timeout = {s.publish_timeout}\n"
        f"[delivery]\npublish_interval = {s.publish_interval}\n"
        f"historical_after = {s.historical_after}\n"
        f"[health]\ninterval = {s.health_interval}\n"
        f'[[modbus_rtu]]\nport = "{s.serial_port}"\n[[modbus_rtu.slaves]]\nsensor = "machine"\n'
        f"unit_id = 1\npoll_interval = {s.poll_interval}\ntimeout = 0.5\n{fields}"
    )


class EdgeAgentProcess(ProcessHandle):
    """One gateway's agent process, restartable with the same configuration and data."""

    def __init__(
        self,
        settings: AgentSettings,
        workdir: Path,
        *,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Write the configuration file; `start()` launches the agent."""
        self.settings = settings
        self.config_path = workdir / f"{settings.device}.toml"
        self.log_path = workdir / f"{settings.device}.log"
        self.prefix = tuple(prefix)
        self.env = dict(env or {})
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(agent_config_toml(settings))
        self.config_path.chmod(0o600)  # it holds the gateway's password
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch the agent (it polls at once and connects in the background)."""
        argv = [*self.prefix, LEASEWATCH, "edge", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv
                argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait for the agent to flush and exit; its exit code (None: never ran)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
