"""`leasewatch cloud ...` as operators run it: settings from the environment, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services.mosquitto import MosquittoBroker
from tests.services.ports import free_port

LEASEWATCH = str(Path(sys.executable).parent / "leasewatch")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEWATCH_")}
    env.update({f"LEASEWATCH_{k.upper()}": v for k, v in values.items()})
    return env


def test_weak_secrets_stop_each_role_with_a_sentence(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 's.sqlite'}"
    ingest = subprocess.run(
        [LEASEWATCH, "cloud", "ingest"],
        env=_env(mqtt_password="changeme", state_url=state),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ingest.returncode == 2
    assert "LEASEWATCH_MQTT_PASSWORD must be set to a secret" in ingest.stderr
    assert "API_KEY" not in ingest.stderr, "an ingestor does not need the API key"
    bad = subprocess.run(
        [LEASEWATCH, "cloud", "api"],
        env=_env(api_key="x" * 20, mqtt_protocol="4"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "mqtt_protocol" in bad.stderr


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 's.sqlite'}"
    done = subprocess.run(
        [LEASEWATCH, "cloud", "migrate"],
        env=_env(state_url=state),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "newest schema" in done.stdout


@pytest.fixture
def ingest_process(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`leasewatch cloud ingest` with MQTT 3.1.1 from the environment and an ops port."""
    ops_port = free_port()
    env = _env(
        mqtt_host="127.0.0.1",
        mqtt_port=str(mosquitto_broker.port),
        mqtt_tls="false",
        mqtt_protocol="311",
        mqtt_username="ingestor",
        mqtt_password=mosquitto_broker.password("ingestor"),
        telemetry_url=f"sqlite:///{tmp_path / 't.sqlite'}",
        state_url=f"sqlite:///{tmp_path / 's.sqlite'}",
        ops_port=str(ops_port),
    )
    process = subprocess.Popen(
        [LEASEWATCH, "cloud", "ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, ops_port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_an_ingest_process_reports_health_and_metrics_and_stops_on_sigterm(
    ingest_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = ingest_process
    deadline = time.monotonic() + 30
    health = None
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if health.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert health is not None and health.json()["broker_connected"] is True, (
        process.stdout.read() if process.poll() is not None and process.stdout else "still running"
    )
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    assert "lw_ingest_messages_stored_total" in metrics
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    output = process.stdout.read() if process.stdout else ""
    assert "Traceback" not in output
