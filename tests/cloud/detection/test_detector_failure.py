"""A detector that raises on a gateway's data, on a real Mosquitto and real stores: the failure
is counted and logged, every message is stored and acknowledged exactly once, the other gateways
of the batch are detected, and the failing gateway's later data is detected again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from msgspec.structs import replace
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from cloud.alerts.signals import Finding
from cloud.alerts.store import AlertStore
from cloud.detection.context import FileContextSource
from cloud.detection.runner import LANE_DETECTORS, DetectionRunner, Timing
from cloud.detection.settings import DetectionSettings
from cloud.detection.worker import DetectionWorker
from cloud.detectors.base import DetectorDescription
from cloud.detectors.inputs import AssetData
from cloud.ingest import Ingestor
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry import TelemetryStore, open_telemetry_store
from leasewatch.wire import Reading, TelemetryBatch, encode, telemetry_topic
from tests.cloud.detection.gateways import Gateway, minute_start
from tests.services.mosquitto import MosquittoBroker
from tests.slice import cloud_settings, eventually
from tests.test_end_to_end import mosquitto_address

pytestmark = pytest.mark.integration

POISON = "poison_pill"  # a metric the failing detector cannot take


class DetectorBugError(RuntimeError):
    """What the failing detector raises."""


def _value_fn(data: AssetData) -> None:
    if any(POISON in minute.values for minute in data.minutes):
        raise DetectorBugError(f"{data.device}: cannot handle {POISON}")


class _Quiet:
    """A detector that finds nothing (the failure is in its value function)."""

    def update(self, inputs: None, now: datetime) -> list[Finding]:
        del inputs, now
        return []

    def to_json(self) -> str:
        return "{}"


FAILING: DetectorDescription[None, None] = DetectorDescription(
    key="failing", summary="raises on a poisoned minute", window=timedelta(minutes=1),
    thresholds=None, value_fn=_value_fn, create=lambda *_: _Quiet(), restore=lambda *_: _Quiet(),
)  # fmt: skip


@asynccontextmanager
async def _ingesting(
    settings: CloudSettings, telemetry: TelemetryStore, state: StateStore
) -> AsyncIterator[tuple[Ingestor, DetectionWorker]]:
    """An ingestor whose hook runs the lane detectors plus FAILING, until the block ends."""
    alerts = AlertStore(state.engine)
    detectors = (*LANE_DETECTORS, FAILING)
    runner = DetectionRunner(state.engine, alerts, FileContextSource(), Timing(), detectors)
    worker = DetectionWorker(DetectionSettings(_env_file=None), runner)  # type: ignore[call-arg]
    ingestor = Ingestor(settings, telemetry, state, on_stored=worker.on_stored)
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    try:
        await asyncio.wait_for(ingestor.connected.wait(), timeout=30)
        yield ingestor, worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _publish(broker: MosquittoBroker, batches: Sequence[TelemetryBatch]) -> None:
    clients: dict[str, aiomqtt.Client] = {}
    try:
        for batch in batches:
            if batch.device not in clients:
                user, password = broker.credentials(batch.device)
                clients[batch.device] = aiomqtt.Client(
                    "127.0.0.1", broker.port, username=user, password=password,
                    identifier=f"{batch.device}-failure-test",
                    protocol=aiomqtt.ProtocolVersion.V5,
                )  # fmt: skip
                await clients[batch.device].__aenter__()
            await clients[batch.device].publish(telemetry_topic(batch.device), encode(batch), qos=1)
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)


def _alerts(state: StateStore) -> set[tuple[str, str, str]]:
    with state.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT device, detector, key FROM alerts").all()
    return {(r[0], r[1], r[2]) for r in rows}


async def test_a_failing_detector_is_counted_and_its_message_stored_and_acknowledged_once(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    settings = cloud_settings(
        mosquitto_address(mosquitto_broker), f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path
    ).model_copy(update={"auto_register_devices": True})
    telemetry = await open_telemetry_store(settings.telemetry_url)
    state = StateStore(settings.state_url)
    start = minute_start() - timedelta(minutes=10)
    sick, healthy = Gateway("gw-0001"), Gateway("gw-0002", code=9.0)
    first = [*sick.stream(start, start + timedelta(minutes=3))]
    poisoned = first[8]  # in minute 1, closed by the batches of minute 2
    pill = Reading(sensor="plc", metric=POISON, ts=poisoned.readings[0].ts, value=1.0)
    poisoned = replace(poisoned, readings=[*poisoned.readings, pill])
    first[8] = sick.sent[8] = poisoned
    first += healthy.stream(start, start + timedelta(minutes=3))
    sick.code = 7.0
    later = sick.stream(start + timedelta(minutes=3), start + timedelta(minutes=6))

    with capture_logs() as logs:
        async with _ingesting(settings, telemetry, state) as (ingestor, worker):
            await _publish(mosquitto_broker, first)
            await eventually(_stored(state), lambda n: n == len(first), 60)
            await _publish(mosquitto_broker, later)
            everything = len(first) + len(later)
            await eventually(_stored(state), lambda n: n == everything, 60)
            await eventually(
                lambda: asyncio.to_thread(_alerts, state),
                lambda found: ("gw-0001", "faults", "code:7") in found,
                60,
            )
            acked = _samples(ingestor, "lw_ingest_messages_acknowledged")
            metrics = generate_latest(worker.metrics.registry).decode()
        # the same session again: the broker redelivers nothing (all was acknowledged)
        async with _ingesting(settings, telemetry, state) as (again, _):
            await asyncio.sleep(3)
            redelivered = sum(s.value for s in _samples(again, "lw_ingest_messages_received"))

    assert (worker.counts.failed_batches, worker.counts.failed_gateways) == (1, 1)
    assert worker.counts.skipped >= 1
    assert "lw_detect_failed_gateways_total 1.0" in metrics
    assert "lw_detect_failed_batches_total 1.0" in metrics
    failures = [e for e in logs if e["event"] == "detection failed for a gateway"]
    assert [(e["device"], e["log_level"]) for e in failures] == [("gw-0001", "error")]
    assert _alerts(state) >= {("gw-0002", "faults", "code:9"), ("gw-0001", "faults", "code:7")}
    for gateway in (sick, healthy):
        ledger = state.ledger(gateway.device)
        assert [r["seq"] for r in ledger] == [b.seq for b in gateway.sent]
    assert {d["device"]: d["duplicates"] for d in state.devices()} == {"gw-0001": 0, "gw-0002": 0}
    assert sum(sample.value for sample in acked) == everything
    assert redelivered == 0
    stored = await telemetry.query(
        "gw-0001", poisoned.readings[0].ts, poisoned.sent_at, metric=POISON
    )
    assert [(r.metric, r.value) for r in stored] == [(POISON, 1.0)]
    await telemetry.close()
    state.close()


def _stored(state: StateStore) -> Any:
    async def count() -> int:
        rows = await asyncio.to_thread(state.devices)
        return sum(int(r["messages"]) for r in rows)

    return count


def _samples(ingestor: Ingestor, name: str) -> list[Any]:
    return [
        sample
        for family in ingestor.metrics.registry.collect()
        if family.name == name
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
