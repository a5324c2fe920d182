"""Detection inside `leasewatch cloud ingest` processes, on real Mosquitto, VictoriaMetrics and
PostgreSQL: gateway messages in, stored, detected, alerts out."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from sqlalchemy import func, select

from cloud.alerts.store import AlertStore
from cloud.bench import ops_metrics
from cloud.schema import alert_deliveries
from cloud.state import StateStore
from leasewatch.wire import (
    GatewayStatus,
    Reading,
    TelemetryBatch,
    encode,
    status_topic,
    telemetry_topic,
)
from tests.cloud.detection.gateways import Gateway, minute_start
from tests.services.ingest_workers import IngestWorker
from tests.services.mosquitto import INGESTOR, MosquittoBroker
from tests.services.postgres import PostgresServer
from tests.services.victoria import VictoriaMetricsServer
from tests.slice import eventually

pytestmark = pytest.mark.integration

DEVICES = ("gw-0001", "gw-0002", "gw-0003")
CODES = {"gw-0001": 7.0, "gw-0002": 9.0, "gw-0003": 0.0}
EXPECTED = {("gw-0001", "faults", "code:7", "open"), ("gw-0002", "faults", "code:9", "open")}
Message = TelemetryBatch | GatewayStatus


def _database(server: PostgresServer) -> str:
    name = f"lw_{secrets.token_hex(6)}"
    with server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


@pytest.fixture
def databases(postgres_server: PostgresServer) -> Iterator[list[str]]:
    """Two empty PostgreSQL databases (one worker vs two)."""
    urls = [_database(postgres_server) for _ in range(2)]
    for url in urls:
        StateStore(url).close()  # migrated once, before workers race to do it
    yield urls
    with postgres_server.admin() as conn:
        for url in urls:
            name = url.rsplit("/", 1)[1]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def state_url(postgres_url: str) -> str:
    """The test's database, migrated."""
    StateStore(postgres_url).close()
    return postgres_url


def ingest_worker(
    broker: MosquittoBroker,
    victoria: VictoriaMetricsServer,
    state_url: str,
    workdir: Path,
    client_id: str,
    *,
    group: str = "ingest",
) -> IngestWorker:
    """A `cloud ingest` process that detects (the default), sweeping every second."""
    context = workdir / "assets.toml"
    context.write_text('[defaults]\nasset_type = "truck"\n', encoding="utf-8")
    return IngestWorker(
        broker, workdir, client_id=client_id, username=INGESTOR,
        telemetry_url=victoria.url.replace("http://", "victoriametrics://"), state_url=state_url,
        extra={"MQTT_SHARED_GROUP": group, "ALERT_MQTT": "true", "DETECT_SWEEP_S": "1",
               "DETECT_CONTEXT_FILE": str(context)},
    )  # fmt: skip


@asynccontextmanager
async def workers(
    broker: MosquittoBroker,
    victoria: VictoriaMetricsServer,
    state_url: str,
    workdir: Path,
    client_ids: Sequence[str],
    *,
    group: str = "ingest",
) -> AsyncIterator[list[IngestWorker]]:
    """Ingest workers side by side on one shared group, running until the block ends.

    A persistent session keeps its share of a group's messages while its worker is away, so
    workers that will not come back use a group of their own.
    """
    started = [
        ingest_worker(broker, victoria, state_url, workdir, c, group=group) for c in client_ids
    ]
    try:
        for worker in started:
            await asyncio.to_thread(worker.start)
        yield started
    finally:
        codes = [await asyncio.to_thread(w.stop) for w in started]
    assert codes == [0] * len(started), [w.log_tail() for w in started]


async def publish(broker: MosquittoBroker, messages: Sequence[Message]) -> None:
    """Each gateway publishes its messages in order, QoS 1, as itself."""
    by_device: dict[str, list[Message]] = {}
    for message in messages:
        by_device.setdefault(message.device, []).append(message)

    async def one(device: str, items: list[Message]) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username=device, password=broker.password(device),
            identifier=f"{device}-test", protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:  # fmt: skip
            for item in items:
                batch = isinstance(item, TelemetryBatch)
                topic = telemetry_topic(device) if batch else status_topic(device)
                await client.publish(topic, encode(item), qos=1)

    async with asyncio.TaskGroup() as group:
        for device, items in by_device.items():
            group.create_task(one(device, items))


def _fleet_stream(start: datetime, minutes: int) -> list[TelemetryBatch]:
    """Every gateway's batches for `minutes`; codes from minute 2 on; each batch sent twice."""
    out: list[TelemetryBatch] = []
    for device in DEVICES:
        gw = Gateway(device)
        out += gw.stream(start, start + timedelta(minutes=2))
        gw.code = CODES[device]
        out += gw.stream(start + timedelta(minutes=2), start + timedelta(minutes=minutes))
    return out + out  # redelivered copies must change nothing


def metric(worker: IngestWorker, name: str) -> float:
    """One sample of the worker's /metrics."""
    found = ops_metrics(worker.ops_port)
    if name not in found:
        raise AssertionError(f"{name} is not exposed")
    return found[name]


def _alerts(state_url: str) -> set[tuple[str, str, str, str]]:
    state = StateStore(state_url)
    try:
        found = AlertStore(state.engine).query(limit=1000)
    finally:
        state.close()
    return {(a.device, a.detector, a.key, a.status) for a in found}


async def settled(state_url: str, expected: set[tuple[str, str, str, str]]) -> None:
    """Until the alerts are exactly `expected` (60 s: worker processes on a busy machine)."""

    async def probe() -> set[tuple[str, str, str, str]]:
        return await asyncio.to_thread(_alerts, state_url)

    await eventually(probe, lambda found: found == expected, timeout=60)


async def test_two_workers_raise_the_same_alerts_as_one(
    mosquitto_broker: MosquittoBroker,
    victoria_metrics: VictoriaMetricsServer,
    databases: list[str],
    tmp_path: Path,
) -> None:
    start = minute_start() - timedelta(minutes=6)
    messages = _fleet_stream(start, 5)
    one, two = databases
    broker, vm = mosquitto_broker, victoria_metrics
    async with workers(broker, vm, one, tmp_path, ["ingest-a"], group="alone"):
        await publish(broker, messages)
        await settled(one, EXPECTED)
    async with workers(broker, vm, two, tmp_path, ["ingest-b", "ingest-c"]) as pair:
        await publish(broker, messages)
        await settled(two, EXPECTED)
        await asyncio.sleep(2)  # a sweep or a late duplicate must not add anything
        taken = [await asyncio.to_thread(metric, w, "lw_detect_messages_total") for w in pair]
        repeats = [await asyncio.to_thread(metric, w, "lw_detect_duplicates_total") for w in pair]
        assert all(t > 0 for t in taken), "both workers took a share"
        assert sum(taken) == len(messages), "detection saw every accepted message"
        assert sum(repeats) == len(messages) // 2, "and took each (boot, seq) once"
        for worker in pair:
            assert metric(worker, "lw_detect_lag_seconds_count") > 0
            assert metric(worker, "lw_detect_failed_batches_total") == 0
            assert metric(worker, "lw_ingest_messages_pending") == 0
    assert _alerts(one) == _alerts(two) == EXPECTED


async def test_a_restarted_worker_keeps_the_open_minute(
    mosquitto_broker: MosquittoBroker,
    victoria_metrics: VictoriaMetricsServer,
    state_url: str,
    tmp_path: Path,
) -> None:
    gw = Gateway("gw-0001", code=0.0)
    start = minute_start() - timedelta(minutes=4)
    before = gw.stream(start, start + timedelta(minutes=2))
    gw.code = 7.0
    before.append(gw.batch(start + timedelta(minutes=2), samples=10))  # code 7 opens minute 2
    gw.code = 0.0
    after = gw.stream(
        start + timedelta(minutes=2, seconds=10), start + timedelta(minutes=3, seconds=10)
    )
    args = (mosquitto_broker, victoria_metrics, state_url, tmp_path, ["ingest-a"])
    async with workers(*args) as (worker,):
        await publish(mosquitto_broker, before)
        await eventually(
            lambda: asyncio.to_thread(metric, worker, "lw_detect_messages_total"),
            lambda taken: taken == len(before),
            timeout=60,
        )
        assert _alerts(state_url) == set(), "minute 2 is still open"
    async with workers(*args):
        await publish(mosquitto_broker, after)
        await settled(state_url, {("gw-0001", "faults", "code:7", "open")})


async def test_backlog_replay_raises_no_live_alarm(
    mosquitto_broker: MosquittoBroker,
    victoria_metrics: VictoriaMetricsServer,
    state_url: str,
    tmp_path: Path,
) -> None:
    gw = Gateway("gw-0001", code=5.0)
    start = minute_start() - timedelta(hours=3)
    backlog = gw.stream(start, start + timedelta(minutes=4), historical=True)
    args = (mosquitto_broker, victoria_metrics, state_url, tmp_path, ["ingest-a"])
    async with workers(*args):
        await publish(mosquitto_broker, backlog)
        await settled(state_url, {("gw-0001", "faults", "code:5", "open")})
        await asyncio.sleep(2)  # sweeps ran: hours-old data is no silence either
        state = StateStore(state_url)
        (alert,) = AlertStore(state.engine).query()
        with state.engine.connect() as conn:
            queued = conn.execute(select(func.count()).select_from(alert_deliveries)).scalar()
        state.close()
    assert alert.suppression is not None and "replayed" in alert.suppression
    assert not alert.delivered and queued == 0


SENSORS = (
    ("plc", "running", 0.0),
    ("clamp", "motor_current", 60.0),
    ("band", "vibration_rms", 2.0),
    ("probe", "temperature", 50.0),
)


def _multi_sensor(gw: Gateway, start: datetime, end: datetime) -> list[TelemetryBatch]:
    """Batches with four sensors behind one gateway."""
    out = []
    at = start
    while at < end:
        readings = [
            Reading(
                sensor=sensor, metric=metric, ts=at + timedelta(seconds=i), value=value + i / 10
            )
            for i in range(10)
            for sensor, metric, value in SENSORS
        ]
        out.append(
            TelemetryBatch(
                device=gw.device, boot=gw.boot, seq=gw.seq, sent_at=at, readings=readings
            )
        )
        gw.seq += 1
        at += gw.step
    return out


async def test_gateway_death_is_one_alert(
    mosquitto_broker: MosquittoBroker,
    victoria_metrics: VictoriaMetricsServer,
    state_url: str,
    tmp_path: Path,
) -> None:
    gw = Gateway("gw-0002")
    start = minute_start() - timedelta(minutes=40)
    last = start + timedelta(minutes=4)
    # its birth, the last will the broker published at `last`, then what it sent before: the
    # data is 36-40 minutes old, so the gateway is silent as soon as the data is in
    statuses: list[Message] = [gw.status("online", start), gw.status("offline", last)]
    data: list[Message] = list(_multi_sensor(gw, start, last))
    args = (mosquitto_broker, victoria_metrics, state_url, tmp_path, ["ingest-a", "ingest-b"])
    async with workers(*args):
        await publish(mosquitto_broker, statuses)
        await asyncio.sleep(1)  # two workers: the will is in before the data that is old already
        await publish(mosquitto_broker, data)
        await settled(state_url, {("gw-0002", "silence", "gateway", "open")})
        await asyncio.sleep(3)  # more sweeps: still one alert
        state = StateStore(state_url)
        (alert,) = AlertStore(state.engine).query()
        state.close()
    assert alert.evidence["cause"] == "network_outage"
    assert alert.occurrences == 1
    assert datetime.now(UTC) - alert.since > timedelta(minutes=30)
