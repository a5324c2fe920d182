"""Processes the ingestion fault tests drive: ingest workers, a broker and a store that restart.

`IngestWorker` is one `leasewatch cloud ingest` process, started as operators run it: settings
from LEASEWATCH_* variables (MQTT 5, shared group "ingest", auto-registered devices), /healthz
on its own ops port. It can be killed with SIGKILL and started again under the same MQTT client
id, so its persistent session gets back the messages it had not acknowledged. Logs go to
`<workdir>/<client id>.log`.

`RestartableMosquitto` and `RestartableVictoria` stop gracefully (SIGTERM) and start again on
the same port, config and data, where the workers expect them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.services.mosquitto import MosquittoBroker
from tests.services.ports import free_port
from tests.services.victoria import VictoriaMetricsServer, start_victoria_metrics

LEASEWATCH = str(Path(sys.executable).parent / "leasewatch")
START_TIMEOUT_S = 90.0  # a loaded 2-core CI machine took 33 s to start one
STOP_TIMEOUT_S = 30.0


def worker_env(
    broker: MosquittoBroker,
    *,
    username: str,
    client_id: str,
    telemetry_url: str,
    state_url: str,
    ops_port: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one worker: this process's, minus any LEASEWATCH_*, plus its settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEWATCH_")}
    values = {
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_TLS": "false",
        "MQTT_PROTOCOL": "5",
        "MQTT_USERNAME": username,
        "MQTT_PASSWORD": broker.password(username),
        "MQTT_CLIENT_ID": client_id,
        "MQTT_SHARED_GROUP": "ingest",
        "TELEMETRY_URL": telemetry_url,
        "STATE_URL": state_url,
        "OPS_PORT": str(ops_port),
        "AUTO_REGISTER_DEVICES": "true",
        **(extra or {}),
    }
    env.update({f"LEASEWATCH_{k}": v for k, v in values.items()})
    return env


class IngestWorker:
    """One `leasewatch cloud ingest` process that can be killed and started again."""

    def __init__(
        self,
        broker: MosquittoBroker,
        workdir: Path,
        *,
        client_id: str,
        username: str,
        telemetry_url: str,
        state_url: str,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Remember how to start the worker; `start()` launches it."""
        self.client_id = client_id
        self.log_path = workdir / f"{client_id}.log"
        self.ops_port = 0
        self.starts = 0
        self.username = username
        self.telemetry_url = telemetry_url
        self.state_url = state_url
        self._broker = broker
        self._extra = dict(extra or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, attempts: int = 3) -> None:
        """Launch the process and wait until it is subscribed; a fresh ops port each attempt."""
        # another process may take the chosen port before the worker binds it: try again
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"{self.client_id} is already running")
        for _ in range(attempts):
            self._launch()
            if self._wait_connected(START_TIMEOUT_S):
                return
            if "Address already in use" not in self.log_tail(5):
                break
        pytest.fail(f"{self.client_id} did not connect:\n{self.log_tail()}", pytrace=False)

    def _launch(self) -> None:
        self.ops_port = free_port()
        env = worker_env(
            self._broker,
            username=self.username,
            client_id=self.client_id,
            telemetry_url=self.telemetry_url,
            state_url=self.state_url,
            ops_port=self.ops_port,
            extra=self._extra,
        )
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [LEASEWATCH, "cloud", "ingest", "--log-level", "WARNING"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def _wait_connected(self, timeout: float) -> bool:
        """Whether /healthz said the worker is connected to the broker within `timeout`."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.ops_port}/healthz"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == httpx.codes.OK:
                    return True
            time.sleep(0.1)
        return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing acknowledged that was not already."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after the timeout); the exit code, None if never started."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the worker logged."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class RestartableMosquitto(MosquittoBroker):
    """The test broker, restartable on the same port with the same config and persistence."""

    def restart(self) -> int:
        """SIGTERM (Mosquitto saves its persistence file), wait, start again; old exit code."""
        process = self._process
        if process is None:
            raise RuntimeError("mosquitto is not running")
        process.terminate()
        code = process.wait(timeout=30)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self._binary, "-c", str(self.workdir / "mosquitto.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not self._wait_listening():
            pytest.fail(f"mosquitto did not come back:\n{self.log_tail()}", pytrace=False)
        return code

    def first_connect_after_restart(self, client_prefix: str) -> float | None:
        """When (to the second, from the log) a client id with this prefix came back, if it did."""
        lines = self._log_text().splitlines()
        starts = [
            i for i, line in enumerate(lines) if "mosquitto version" in line and "starting" in line
        ]
        for line in lines[starts[-1] :]:
            stamp, _, message = line.partition(": ")
            if message.startswith("New client connected") and f" as {client_prefix}" in message:
                return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
        return None


class RestartableVictoria:
    """The telemetry store's server across a stop and a start on the same port and data."""

    def __init__(self, data_dir: Path, flags: Sequence[str] = ()) -> None:
        """Start VictoriaMetrics (ms deduplication plus `flags`)."""
        self.data_dir = data_dir
        self.flags = tuple(flags)
        self.server: VictoriaMetricsServer = start_victoria_metrics(data_dir, self.flags)
        self.port = int(self.server.url.rsplit(":", 1)[1])
        self.exit_codes: list[int | None] = []

    def stop(self) -> None:
        """Graceful stop: SIGTERM, VM flushes what it holds and exits."""
        self.server.stop()
        self.exit_codes.append(self.server.exit_code)

    def start(self) -> None:
        """Start again where the workers expect it."""
        self.server = start_victoria_metrics(self.data_dir, self.flags, port=self.port)

    def close(self) -> None:
        """Stop whichever server runs now (teardown)."""
        self.server.stop()
