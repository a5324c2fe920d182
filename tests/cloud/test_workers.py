"""Two ingestor workers on one shared subscription: every message stored once, none lost."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from sqlalchemy import func, select

from cloud.bench import IngestBenchOptions, run_ingest_bench
from cloud.runtime import CloudRuntime
from cloud.schema import detector_state
from cloud.state import state_engine
from leasewatch.wire import Reading, TelemetryBatch, encode, telemetry_topic
from tests.services.mosquitto import MosquittoBroker
from tests.slice import api_get, cloud_settings, eventually, running_cloud
from tests.test_end_to_end import mosquitto_address

pytestmark = pytest.mark.integration

DEVICES = ("gw-0001", "gw-0002", "gw-0003")
PER_DEVICE = 60


def _batch(device: str, seq: int, start: datetime) -> TelemetryBatch:
    readings = [
        Reading(
            sensor="machine", metric=metric, ts=start + timedelta(seconds=seq), value=seq + i / 10
        )
        for i, metric in enumerate(("motor_current", "temperature"))
    ]
    return TelemetryBatch(device=device, boot="b1", seq=seq, sent_at=start, readings=readings)


async def _publish_all(broker: MosquittoBroker, start: datetime) -> None:
    async def one_device(device: str) -> None:
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            username=device,
            password=broker.password(device),
            identifier=f"{device}-load",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            for seq in range(PER_DEVICE):
                await client.publish(
                    telemetry_topic(device), encode(_batch(device, seq, start)), qos=1
                )

    async with asyncio.TaskGroup() as group:
        for device in DEVICES:
            group.create_task(one_device(device))


async def test_two_workers_share_the_load_and_store_everything_once(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    address = mosquitto_address(mosquitto_broker)
    telemetry_url = f"sqlite:///{tmp_path / 'telemetry.sqlite'}"
    first = cloud_settings(address, telemetry_url, tmp_path)
    second = first.model_copy(update={"mqtt_client_id": "ingestor-2"})
    start = datetime.now(UTC).replace(microsecond=0)
    async with AsyncExitStack() as stack:
        runtime_1, api_url = await stack.enter_async_context(running_cloud(first))
        runtime_2, _ = await stack.enter_async_context(running_cloud(second))
        await _publish_all(mosquitto_broker, start)
        devices = await eventually(
            lambda: api_get(api_url, "/v1/devices"),
            lambda rows: sum(r["messages"] for r in rows) == PER_DEVICE * len(DEVICES),
        )
        ledgers = {d: await api_get(api_url, f"/v1/devices/{d}/ledger") for d in DEVICES}
    shares = [_stored(runtime_1), _stored(runtime_2)]
    assert sum(shares) == PER_DEVICE * len(DEVICES)
    assert min(shares) > 0, f"both workers took messages: {shares}"
    for device in devices:
        assert (device["readings"], device["duplicates"]) == (2 * PER_DEVICE, 0)
    for ledger in ledgers.values():
        assert [row["seq"] for row in ledger] == list(range(PER_DEVICE))


def _stored(runtime: CloudRuntime) -> int:
    return int(runtime.services.metrics.stored_messages._value.get())


def _detector_rows(state_url: str) -> int:
    engine = state_engine(state_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(detector_state)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("detect", [True, False])
def test_the_ingest_benchmark_paces_the_fleet_and_accounts_for_every_message(
    tmp_path: Path, detect: bool
) -> None:
    """Paced, every message accounted for; `detect` off leaves the detectors out of the workers."""
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    options = IngestBenchOptions(
        backend="sqlite", duration_s=4.0, workers=1, assets=50, rate=2000.0, drain_timeout_s=30,
        state_url=state_url, detect=detect,
    )  # fmt: skip
    result = run_ingest_bench(options)
    assert result.sent_messages > 0 and result.missing == 0 and result.unexpected == 0
    assert result.stored_readings == result.sent_readings
    # paced at the offered 2,000 readings/s, timed from the first PUBACK (a paced fleet sends
    # nothing in its first window period), and the workers keep up with it
    assert 1800 < result.offered_per_s < 2200
    assert result.readings_per_s > 1500
    # the workers' own count of their batches: at 62 messages/s, a batch is what arrives in a
    # cycle, never the 5,000 a backlog would make
    assert 1 <= result.mean_batch_messages < 100
    assert 0 < result.latency_p50_s <= result.latency_p99_s
    cores = result.cpu_cores  # where the machine's CPU went: each part measured, none negative
    assert cores["workers"] > 0 and cores["simulator (this process)"] > 0 and "broker" in cores
    assert cores["store server"] == 0  # SQLite runs inside the workers
    assert all(v >= 0 for v in cores.values())
    assert cores["machine busy"] >= cores["workers"] + cores["broker"] - 0.05
    rows = _detector_rows(state_url)
    assert (rows > 0) if detect else (rows == 0), f"{rows} detector state rows"


def test_the_ingest_benchmark_runs_on_a_postgresql_state_store(postgres_url: str) -> None:
    """`--state-url` with the driver named (as the team's URLs are): the bench reads that ledger."""
    options = IngestBenchOptions(
        backend="sqlite", duration_s=3.0, workers=2, assets=50, rate=2000.0, drain_timeout_s=30,
        state_url=postgres_url,
    )  # fmt: skip
    result = run_ingest_bench(options)
    assert postgres_url.startswith("postgresql+psycopg://")
    assert result.sent_messages > 0 and result.missing == 0 and result.unexpected == 0
    assert result.stored_readings == result.sent_readings
    assert _detector_rows(postgres_url) > 0
