"""The MQTT link: back-off, pacing, payloads, live data overtaking a backlog, the hold of this
boot's backlog until a live message went, TLS."""

from __future__ import annotations

import asyncio
import getpass
import random
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from pydantic import SecretStr

from edge.buffer import ReadingBuffer
from edge.config import DeliveryConfig, MqttConfig
from edge.link import MqttLink
from edge.mqtt_client import TokenBucket, backoff_delay, encode_message
from leasewatch.wire import MachineEvent, Reading, TelemetryBatch, decode_telemetry
from tests.edge.brokers import gateway_mqtt
from tests.edge.test_agent_outage import broker_down, monitoring, until
from tests.services.mosquitto import MosquittoBroker
from tests.services.ports import free_port, wait_for_port

DEVICE = "gw-0001"
TOPIC = f"lw/v1/{DEVICE}/telemetry"


@given(st.integers(0, 200), st.floats(0.01, 5), st.floats(5, 600), st.integers(0, 2**32))
def test_backoff_is_full_jitter_under_a_capped_exponential(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_backoff_spreads_and_grows_then_caps() -> None:
    rng = random.Random(1)
    means = [sum(backoff_delay(a, 0.5, 60, rng) for _ in range(2000)) / 2000 for a in (0, 3, 12)]
    assert means[0] == pytest.approx(0.25, rel=0.1)
    assert means[1] == pytest.approx(2.0, rel=0.1)
    assert means[2] == pytest.approx(30.0, rel=0.1)


def test_token_bucket_paces_readings_per_second() -> None:
    now = [0.0]
    bucket = TokenBucket(1000, clock=lambda: now[0])
    assert bucket.delay() == 0
    bucket.spend(1500)  # a burst of one second, and a message beyond it
    assert bucket.delay() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.delay() == 0


readings = st.lists(
    st.builds(
        Reading,
        sensor=st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True),
        metric=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
        ts=st.datetimes(
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
            max_value=datetime(2100, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        ),
        value=st.floats(allow_nan=False, allow_infinity=False, width=64),
        unit=st.sampled_from(["", "A", "degC", "mm/s", "h"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(readings, st.booleans(), st.booleans())
def test_stored_messages_encode_to_batches_the_cloud_accepts(
    tmp_path_factory: pytest.TempPathFactory, taken: list[Reading], compress: bool, historical: bool
) -> None:
    buffer = ReadingBuffer(tmp_path_factory.mktemp("b") / "b.sqlite", reserve_bytes=4096)
    event = MachineEvent(sensor="machine", kind="stop", ts=taken[0].ts, detail='say "hi"')
    buffer.add(taken, [event])
    buffer.seal("boot-1", 7, max_readings=100, now=datetime.now(UTC))
    (message,) = buffer.oldest(1)
    sent_at = datetime(2026, 12, 4, 8, 0, 0, 123456, tzinfo=UTC)
    payload = encode_message(
        message, DEVICE, historical=historical, sent_at=sent_at, compress=compress
    )
    batch = decode_telemetry(TOPIC, payload)
    assert (batch.device, batch.boot, batch.seq, batch.historical) == (
        DEVICE,
        "boot-1",
        7,
        historical,
    )
    assert batch.readings == taken
    assert batch.events == [event]
    assert batch.sent_at == sent_at.replace(microsecond=123000)
    assert (payload[:1] == b"\x78") is compress
    buffer.close()


def _mqtt(broker: MosquittoBroker, **update: object) -> MqttConfig:
    return gateway_mqtt(broker, DEVICE, **update)


@asynccontextmanager
async def _telemetry(broker: MosquittoBroker) -> AsyncIterator[asyncio.Queue[TelemetryBatch]]:
    """Batches as the ingestor would receive them, with their arrival times."""
    received: asyncio.Queue[TelemetryBatch] = asyncio.Queue()
    user, password = broker.credentials("ingestor")
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=password, identifier="test-sub"
    ) as client:
        await client.subscribe(TOPIC, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                received.put_nowait(decode_telemetry(TOPIC, message.payload))

        task = asyncio.create_task(pump())
        try:
            yield received
        finally:
            task.cancel()


@pytest.mark.integration
async def test_live_data_overtakes_a_paced_backlog(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", reserve_bytes=4096)
    day_ago = datetime.now(UTC) - timedelta(hours=24)
    _seal_taken_at(buffer, "earlier-boot", 60, 500, day_ago)  # 30 000 readings of yesterday
    delivery = DeliveryConfig(publish_interval=0.2, replay_readings_per_second=5000)
    link = MqttLink(_mqtt(mosquitto_broker), delivery, buffer, device=DEVICE, boot="this-boot")
    stop = asyncio.Event()
    async with _telemetry(mosquitto_broker) as received:
        started = time.monotonic()
        task = asyncio.create_task(link.run(stop))
        first = await asyncio.wait_for(received.get(), 10)
        assert first.historical and first.boot == "earlier-boot" and first.seq == 0
        await asyncio.sleep(1.0)
        buffer.add(_batch(5))
        buffer.seal("this-boot", 0, 500, datetime.now(UTC))
        sealed_at = time.monotonic()
        link.wake.set()
        history = [first]
        while (batch := await asyncio.wait_for(received.get(), 10)).historical:
            history.append(batch)
        latency = time.monotonic() - sealed_at
        stop.set()
        await asyncio.wait_for(task, 15)
    assert (batch.boot, batch.seq, batch.historical) == ("this-boot", 0, False)
    assert latency < 2.0, f"live message took {latency:.2f} s behind a backlog"
    assert len(history) < 40, "the backlog was still being replayed"
    assert [b.seq for b in history] == list(range(len(history))), "oldest first"
    allowed = 5000 * (1 + time.monotonic() - started) + 500  # a second of burst, then the pace
    assert link.health.replayed_readings <= allowed, "the backlog kept to its pace"


@pytest.mark.integration
async def test_after_an_outage_a_live_message_goes_before_this_boots_backlog(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", reserve_bytes=4096)
    delivery = DeliveryConfig(publish_interval=1.0, historical_after=600.0)  # hold: 3 s
    mqtt = _mqtt(mosquitto_broker, reconnect_min=0.2)
    link = MqttLink(mqtt, delivery, buffer, device=DEVICE, boot="this-boot")
    stop = asyncio.Event()
    async with monitoring(mosquitto_broker) as monitor:  # the cloud's persistent session
        with broker_down(mosquitto_broker):
            task = asyncio.create_task(link.run(stop))  # the boot's first connection fails
            await until(lambda: link.health.outages == 1, timeout=10)
            for seq in range(5):  # this boot's readings, buffered while the link is down
                buffer.add(_batch(50))
                buffer.seal("this-boot", seq, 500, datetime.now(UTC))
        await asyncio.wait_for(link.up.wait(), 10)
        up_at = time.monotonic()
        await asyncio.sleep(0.5)  # without the hold, the backlog would have gone by now
        buffer.add(_batch(5))
        buffer.seal("this-boot", 5, 500, datetime.now(UTC))
        link.wake.set()
        await until(lambda: len(monitor.messages()) == 6, timeout=15)
        drained = time.monotonic() - up_at
        stop.set()
        await asyncio.wait_for(task, 15)
    first, *backlog = monitor.messages()
    assert (first.boot, first.seq, first.historical) == ("this-boot", 5, False), "live first"
    assert [(b.seq, b.historical) for b in backlog] == [(seq, True) for seq in range(5)]
    assert drained < 2.5, f"the live message released the backlog before the hold ended: {drained}"
    assert link.health.connects == 1
    buffer.close()


@pytest.mark.integration
async def test_with_no_live_data_this_boots_backlog_goes_after_the_hold(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", reserve_bytes=4096)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for boot in ("earlier-boot", "this-boot"):  # both older than historical_after: backlog
        _seal_taken_at(buffer, boot, 3, 20, hour_ago)
    delivery = DeliveryConfig(publish_interval=0.5)  # hold: 2 x 0.5 + 1 = 2 s
    link = MqttLink(_mqtt(mosquitto_broker), delivery, buffer, device=DEVICE, boot="this-boot")
    stop = asyncio.Event()
    async with _telemetry(mosquitto_broker) as received:
        started = time.monotonic()
        task = asyncio.create_task(link.run(stop))
        arrivals = []
        for _ in range(6):
            batch = await asyncio.wait_for(received.get(), 10)
            arrivals.append((batch.boot, batch.seq, batch.historical, time.monotonic() - started))
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [a[:3] for a in arrivals] == [
        (boot, seq, True) for boot in ("earlier-boot", "this-boot") for seq in range(3)
    ]
    waited = [a[3] for a in arrivals]
    assert max(waited[:3]) < 1.5, f"earlier boots' backlog does not wait: {waited}"
    assert 2.0 <= waited[3] < 3.5, f"this boot's backlog goes when the hold ends: {waited}"
    assert link.health.published_historical == 6
    buffer.close()


def _seal_taken_at(
    buffer: ReadingBuffer, boot: str, messages: int, readings: int, taken: datetime
) -> None:
    """Seal `messages` messages (seq 0..) of `readings` readings, message seq taken seq s after."""
    for seq in range(messages):
        at = taken + timedelta(seconds=seq)
        buffer.add([replace(r, ts=at) for r in _batch(readings)])
        buffer.seal(boot, seq, readings, taken)


def _batch(n: int) -> list[Reading]:
    now = datetime.now(UTC)
    return [Reading(sensor="machine", metric=f"m{i % 16}", ts=now, value=i) for i in range(n)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(directory: Path) -> None:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)  # fmt: skip
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
        ext = directory / f"{name}.ext"
        ext.write_text(extra + "\n" if extra else "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext.name,
                 "-out", f"{name}.pem", cwd=directory)  # fmt: skip


@pytest.mark.integration
async def test_tls_with_a_private_ca_and_a_client_certificate(tmp_path: Path) -> None:
    _certificates(tmp_path)
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 (started once, waited for below)
        ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=10, host="127.0.0.1")
        mqtt = MqttConfig(
            host="127.0.0.1",
            port=port,
            username=DEVICE,
            password=SecretStr("unused-with-certificates"),
            ca_file=tmp_path / "ca.pem",
            client_cert=tmp_path / "client.pem",
            client_key=tmp_path / "client.key",
        )
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
        buffer = ReadingBuffer(tmp_path / "b.sqlite", reserve_bytes=4096)
        buffer.add(_batch(3))
        buffer.seal("boot", 0, 10, datetime.now(UTC))
        link = MqttLink(mqtt, DeliveryConfig(), buffer, device=DEVICE, boot="boot")
        stop = asyncio.Event()
        async with aiomqtt.Client("127.0.0.1", port, tls_context=context) as client:
            await client.subscribe(TOPIC, qos=1)
            task = asyncio.create_task(link.run(stop))
            message = await asyncio.wait_for(anext(aiter(client.messages)), 10)
            stop.set()
            await asyncio.wait_for(task, 10)
        assert isinstance(message.payload, bytes)
        assert len(decode_telemetry(TOPIC, message.payload).readings) == 3
        assert link.health.last_error == ""
    finally:
        process.terminate()
        process.wait(10)
