"""End to end on real parts: simulator -> pty -> edge agent -> broker -> ingestor -> store -> API.

The values read back over the API must equal what the simulated device held when it was read,
with timestamps and units, and the number stored must equal the number the edge agent sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ServedRead
from firmware_sim.register_map import MACHINE_MAP
from tests.services.mosquitto import MosquittoBroker
from tests.services.victoria import VictoriaMetricsServer
from tests.slice import (
    BrokerAddress,
    api_get,
    cloud_settings,
    eventually,
    running_cloud,
    running_gateway,
)

DEVICE = "gw-0001"
FIRST = {
    "running": 1.0,
    "motor_current": 12.34,
    "temperature": -3.5,
    "vibration_rms": 4.21,
    "run_hours": 1234.567,
    "fault_code": 0.0,
}
SECOND = {
    "running": 0.0,
    "motor_current": 0.2,
    "temperature": 41.7,
    "vibration_rms": 0.35,
    "run_hours": 1234.789,
    "fault_code": 17.0,
}
UNITS = {f.metric: f.unit for f in MACHINE_MAP.fields}


def _held(values: dict[str, float]) -> dict[str, object]:
    return {
        k: (bool(v) if k == "running" else int(v) if k == "fault_code" else v)
        for k, v in values.items()
    }


def mosquitto_address(broker: MosquittoBroker) -> BrokerAddress:
    """The test Mosquitto as the slice sees it: MQTT 5 with a shared subscription."""
    return BrokerAddress(
        host="127.0.0.1",
        port=broker.port,
        protocol=5,
        shared_group="ingest",
        ingestor_password=broker.password("ingestor"),
        device_passwords={d: broker.password(d) for d in ("gw-0001", "gw-0002", "gw-0003")},
    )


async def _stored(api_url: str) -> list[dict[str, object]]:
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = await api_get(api_url, f"/v1/devices/{DEVICE}/readings", start=start, end=end)
    readings: list[dict[str, object]] = body["readings"]
    return readings


def _served_for(reading_ts: datetime, served: list[ServedRead]) -> ServedRead:
    """The device's answer to the request the edge agent timestamped at reading_ts."""
    return next(s for s in served if s.at >= reading_ts - timedelta(milliseconds=1))


async def run_slice(broker: BrokerAddress, telemetry_url: str, tmp_path: Path) -> None:
    """Drive the whole path and check values, timestamps, units and counts."""
    machine = HeldMachine(**_held(FIRST))  # type: ignore[arg-type]
    settings = cloud_settings(broker, telemetry_url, tmp_path)
    async with running_cloud(settings) as (runtime, api_url):
        async with running_gateway(DEVICE, broker, tmp_path / "edge", machine) as gateway:
            await eventually(lambda: _stored(api_url), lambda r: len(r) >= 3 * len(FIRST))
            machine.set(**_held(SECOND))  # type: ignore[arg-type]
            changed_at = datetime.now(UTC)
            await eventually(
                lambda: _stored(api_url),
                lambda r: any(datetime.fromisoformat(str(x["ts"])) > changed_at for x in r),
            )
            await gateway.shutdown()
        taken = gateway.agent.health.readings_taken
        sent = gateway.agent.link.health.published_messages
        readings = await eventually(lambda: _stored(api_url), lambda r: len(r) >= taken)
        devices = await eventually(
            lambda: api_get(api_url, "/v1/devices"), lambda d: d[0]["status"] == "offline"
        )
        ledger = await api_get(api_url, f"/v1/devices/{DEVICE}/ledger")
        health = await api_get(api_url, f"/v1/devices/{DEVICE}/health")

    assert len(readings) == taken, "the cloud stored exactly what the edge agent took"
    assert health["device"] == DEVICE
    assert health["boot"] == gateway.agent.boot
    assert len(ledger) == sent == gateway.agent.health.messages_sealed
    assert [row["seq"] for row in ledger] == list(range(sent))
    device = next(d for d in devices if d["device"] == DEVICE)
    assert (device["readings"], device["duplicates"], device["status"]) == (taken, 0, "offline")

    served = list(gateway.slave.served)
    seen_first = seen_second = False
    for reading in readings:
        ts = datetime.fromisoformat(str(reading["ts"]))
        answer = _served_for(ts, served)
        assert answer.at - ts < timedelta(seconds=1)
        assert reading["value"] == answer.values[str(reading["metric"])], reading
        assert reading["unit"] == UNITS[str(reading["metric"])]
        assert reading["sensor"] == "machine"
        seen_first |= reading["value"] == FIRST[str(reading["metric"])]
        seen_second |= reading["value"] == SECOND[str(reading["metric"])]
    assert seen_first and seen_second
    assert runtime.services.metrics.rejected._metrics == {}  # nothing rejected


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "victoriametrics"])
async def test_slice_on_mosquitto(
    backend: str, mosquitto_broker: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Mosquitto (MQTT 5, shared subscription) with each telemetry backend."""
    if backend == "sqlite":
        telemetry_url = f"sqlite:///{tmp_path / 'telemetry.sqlite'}"
    else:
        victoria: VictoriaMetricsServer = request.getfixturevalue("victoria_metrics")
        telemetry_url = victoria.url.replace("http://", "victoriametrics://")
    await run_slice(mosquitto_address(mosquitto_broker), telemetry_url, tmp_path)


@pytest.fixture
async def embedded_broker() -> AsyncIterator[BrokerAddress]:
    """The demo's embedded amqtt broker (MQTT 3.1.1, no shared subscriptions)."""
    passwords = {"gw-0001": "gateway-pass-1", "ingestor": "ingestor-pass-1"}
    principals = [
        Principal.gateway("gw-0001", passwords["gw-0001"]),
        Principal.ingestor("ingestor", passwords["ingestor"]),
    ]
    async with EmbeddedBroker(principals) as broker:
        yield BrokerAddress("127.0.0.1", broker.port, 311, "", passwords["ingestor"], passwords)


async def test_slice_on_the_embedded_broker(embedded_broker: BrokerAddress, tmp_path: Path) -> None:
    """The same path on what `leasewatch demo` runs: amqtt and SQLite."""
    await run_slice(embedded_broker, f"sqlite:///{tmp_path / 'telemetry.sqlite'}", tmp_path)
    await asyncio.sleep(0)
