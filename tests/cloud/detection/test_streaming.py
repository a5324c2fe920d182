"""Detection workers on real Mosquitto and PostgreSQL: gateway messages in, alerts out."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select

from cloud.alerts.store import AlertStore
from cloud.detection.context import FileContextSource
from cloud.detection.settings import DetectionSettings
from cloud.detection.worker import DetectionWorker, detection_worker
from cloud.schema import alert_deliveries
from cloud.settings import CloudSettings
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
from tests.services.mosquitto import MosquittoBroker
from tests.services.postgres import PostgresServer
from tests.slice import eventually

pytestmark = pytest.mark.integration

DEVICES = ("gw-0001", "gw-0002", "gw-0003")
CODES = {"gw-0001": 7.0, "gw-0002": 9.0, "gw-0003": 0.0}
EXPECTED = {("gw-0001", "faults", "code:7", "open"), ("gw-0002", "faults", "code:9", "open")}


def _database(server: PostgresServer) -> str:
    name = f"lw_{secrets.token_hex(6)}"
    with server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


@pytest.fixture
def databases(postgres_server: PostgresServer) -> Iterator[list[str]]:
    """Two empty PostgreSQL databases (one worker vs two)."""
    urls = [_database(postgres_server) for _ in range(2)]
    yield urls
    with postgres_server.admin() as conn:
        for url in urls:
            name = url.rsplit("/", 1)[1]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cloud(broker: MosquittoBroker, state_url: str) -> CloudSettings:
    return CloudSettings(
        mqtt_host="127.0.0.1", mqtt_port=broker.port, mqtt_username="ingestor",
        mqtt_password=SecretStr(broker.password("ingestor")), mqtt_tls=False, mqtt_protocol=5,
        state_url=state_url, alert_mqtt=True,
    )  # fmt: skip


@asynccontextmanager
async def workers(
    broker: MosquittoBroker, state_url: str, client_ids: Sequence[str], group: str = "detect"
) -> AsyncIterator[list[DetectionWorker]]:
    """Detection workers side by side on one shared group, running until the block ends.

    A persistent session keeps its share of a group's messages while its worker is away, so
    workers that will not come back use a group of their own.
    """
    state = StateStore(state_url)
    cloud = _cloud(broker, state_url)
    alerts = AlertStore(state.engine, ("mqtt",))
    context = FileContextSource.of_types(dict.fromkeys(DEVICES, "truck"))
    started = [
        detection_worker(
            cloud, DetectionSettings(client_id=c, shared_group=group, sweep_s=1.0), alerts, context
        )
        for c in client_ids
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in started]
    try:
        for worker in started:
            await asyncio.wait_for(worker.connected.wait(), timeout=10)
        yield started
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        state.close()


async def _publish(
    broker: MosquittoBroker, messages: Sequence[TelemetryBatch | GatewayStatus]
) -> None:
    by_device: dict[str, list[TelemetryBatch | GatewayStatus]] = {}
    for message in messages:
        by_device.setdefault(message.device, []).append(message)

    async def one(device: str, items: list[TelemetryBatch | GatewayStatus]) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username=device, password=broker.password(device),
            identifier=f"{device}-test", protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:  # fmt: skip
            for item in items:
                topic = (
                    telemetry_topic(device)
                    if isinstance(item, TelemetryBatch)
                    else status_topic(device)
                )
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


def _metric(worker: DetectionWorker, name: str) -> float:
    """One sample of the worker's metrics as Prometheus would scrape it."""
    text = generate_latest(worker.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not exposed")


def _alerts(state_url: str) -> set[tuple[str, str, str, str]]:
    state = StateStore(state_url)
    try:
        found = AlertStore(state.engine).query(limit=1000)
    finally:
        state.close()
    return {(a.device, a.detector, a.key, a.status) for a in found}


async def _settled(state_url: str, expected: set[tuple[str, str, str, str]]) -> None:
    async def probe() -> set[tuple[str, str, str, str]]:
        return await asyncio.to_thread(_alerts, state_url)

    await eventually(probe, lambda found: found == expected, timeout=30)


async def test_two_workers_raise_the_same_alerts_as_one(
    mosquitto_broker: MosquittoBroker, databases: list[str]
) -> None:
    start = minute_start() - timedelta(minutes=6)
    messages = _fleet_stream(start, 5)
    one, two = databases
    async with workers(mosquitto_broker, one, ["detector-a"], group="alone"):
        await _publish(mosquitto_broker, messages)
        await _settled(one, EXPECTED)
    async with workers(mosquitto_broker, two, ["detector-b", "detector-c"]) as pair:
        await _publish(mosquitto_broker, messages)
        await _settled(two, EXPECTED)
        await asyncio.sleep(2)  # a sweep or a late duplicate must not add anything
        assert all(w.counts.messages > 0 for w in pair), "both workers took a share"
        assert sum(w.counts.duplicates for w in pair) == len(messages) // 2
        for worker in pair:  # the same counts on /metrics, and nothing left unacknowledged
            assert _metric(worker, "lw_detect_messages_total") == worker.counts.messages
            assert _metric(worker, "lw_detect_duplicates_total") == worker.counts.duplicates
            assert _metric(worker, "lw_detect_messages_pending") == 0
            assert _metric(worker, "lw_detect_lag_seconds_count") > 0
    assert _alerts(one) == _alerts(two) == EXPECTED


async def test_a_restarted_worker_keeps_the_open_minute(
    mosquitto_broker: MosquittoBroker, postgres_url: str
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
    async with workers(mosquitto_broker, postgres_url, ["detector-a"]):
        await _publish(mosquitto_broker, before)
        await _settled(postgres_url, set())
        await asyncio.sleep(1)
    async with workers(mosquitto_broker, postgres_url, ["detector-a"]):
        await _publish(mosquitto_broker, after)
        await _settled(postgres_url, {("gw-0001", "faults", "code:7", "open")})


async def test_backlog_replay_raises_no_live_alarm(
    mosquitto_broker: MosquittoBroker, postgres_url: str
) -> None:
    gw = Gateway("gw-0001", code=5.0)
    start = minute_start() - timedelta(hours=3)
    backlog = gw.stream(start, start + timedelta(minutes=4), historical=True)
    async with workers(mosquitto_broker, postgres_url, ["detector-a"]):
        await _publish(mosquitto_broker, backlog)
        await _settled(postgres_url, {("gw-0001", "faults", "code:5", "open")})
        await asyncio.sleep(2)  # sweeps ran: hours-old data is no silence either
        state = StateStore(postgres_url)
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
    mosquitto_broker: MosquittoBroker, postgres_url: str
) -> None:
    gw = Gateway("gw-0002")
    start = minute_start() - timedelta(minutes=40)
    last = start + timedelta(minutes=4)
    # its birth, the last will the broker published at `last`, then what it sent before: the
    # data is 36-40 minutes old, so the gateway is silent as soon as the data is in
    statuses: list[TelemetryBatch | GatewayStatus] = [gw.status("online", start)]
    statuses.append(gw.status("offline", last))
    data: list[TelemetryBatch | GatewayStatus] = list(_multi_sensor(gw, start, last))
    async with workers(mosquitto_broker, postgres_url, ["detector-a", "detector-b"]):
        await _publish(mosquitto_broker, statuses)
        await asyncio.sleep(1)  # two workers: the will is in before the data that is old already
        await _publish(mosquitto_broker, data)
        await _settled(postgres_url, {("gw-0002", "silence", "gateway", "open")})
        await asyncio.sleep(3)  # more sweeps: still one alert
        state = StateStore(postgres_url)
        (alert,) = AlertStore(state.engine).query()
        state.close()
    assert alert.evidence["cause"] == "network_outage"
    assert alert.occurrences == 1
    assert datetime.now(UTC) - alert.since > timedelta(minutes=30)
