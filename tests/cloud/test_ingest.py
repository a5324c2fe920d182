"""The ingestor on a real Mosquitto: bad input is rejected and counted, duplicates are dropped."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from cloud.ingest import Inbound, PreparedBatch
from cloud.runtime import CloudRuntime
from leasewatch.wire import Reading, TelemetryBatch, encode, telemetry_topic
from tests.services.mosquitto import MosquittoBroker
from tests.services.victoria import start_victoria_metrics
from tests.slice import (
    BrokerAddress,
    api_get,
    api_post,
    cloud_settings,
    eventually,
    running_cloud,
)
from tests.test_end_to_end import mosquitto_address

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def _batch(seq: int, device: str = "gw-0001", value: float = 12.5) -> TelemetryBatch:
    ts = NOW + timedelta(seconds=seq)
    reading = Reading(sensor="machine", metric="motor_current", ts=ts, value=value, unit="A")
    return TelemetryBatch(device=device, boot="boot-a", seq=seq, sent_at=NOW, readings=[reading])


def _bad_payloads() -> dict[str, bytes]:
    valid = json.loads(encode(_batch(seq=99)))
    return {
        "malformed_json": b'{"v": 1, "device": ',
        "unsupported_schema_version": json.dumps(valid | {"v": 2}).encode(),
        "topic_device_mismatch": encode(_batch(seq=98, device="gw-0002")),
        "invalid_payload": json.dumps(valid).replace("12.5", "NaN").encode(),
    }


async def _publish(broker: MosquittoBroker, payloads: list[bytes]) -> None:
    user, password = broker.credentials("gw-0001")
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=user,
        password=password,
        identifier="gw-0001-test",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        for payload in payloads:
            await client.publish(telemetry_topic("gw-0001"), payload, qos=1)


async def test_bad_input_is_rejected_with_a_counted_reason_and_ingestion_goes_on(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    address = mosquitto_address(mosquitto_broker)
    settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    bad = _bad_payloads()
    async with running_cloud(settings) as (runtime, api_url):
        await _publish(mosquitto_broker, [*bad.values(), encode(_batch(seq=0))])
        ledger = await eventually(
            lambda: api_get(api_url, "/v1/devices/gw-0001/ledger"), lambda rows: len(rows) == 1
        )
        rejections = await api_get(api_url, "/v1/ingest/rejections")
        metrics = await _metrics_text(api_url)
        assert runtime.ingestor.connected.is_set()

    assert ledger[0]["seq"] == 0
    assert rejections["counts"] == dict.fromkeys(bad, 1)
    by_reason = {r["reason"]: r for r in rejections["recent"]}
    assert by_reason["malformed_json"]["payload"] == bad["malformed_json"].decode()
    assert "gw-0002" in by_reason["topic_device_mismatch"]["detail"]
    assert "finite" in by_reason["invalid_payload"]["detail"]
    for reason in bad:
        assert f'lw_ingest_rejected_total{{reason="{reason}"}} 1.0' in metrics
    for exposed in (  # lag in the worker, state-store latency, what went back to the broker
        "lw_ingest_messages_pending ",
        "lw_ingest_state_write_seconds_count ",
        "lw_ingest_messages_acknowledged_total ",
    ):
        assert exposed in metrics


async def _metrics_text(api_url: str) -> str:
    import httpx  # noqa: PLC0415 - only this helper needs the raw text

    from tests.slice import API_KEY  # noqa: PLC0415

    async with httpx.AsyncClient(base_url=api_url) as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
        response.raise_for_status()
        return response.text


async def test_a_message_delivered_twice_is_stored_once_and_counted(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    address = mosquitto_address(mosquitto_broker)
    settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    async with running_cloud(settings) as (_, api_url):
        await _publish(mosquitto_broker, [encode(_batch(seq=0)), encode(_batch(seq=1))])
        await eventually(
            lambda: api_get(api_url, "/v1/devices/gw-0001/ledger"), lambda rows: len(rows) == 2
        )
        await _publish(mosquitto_broker, [encode(_batch(seq=1)), encode(_batch(seq=0))])
        devices = await eventually(
            lambda: api_get(api_url, "/v1/devices"), lambda d: d and d[0]["duplicates"] == 2
        )
        since = (NOW - timedelta(seconds=1)).isoformat()
        readings = await api_get(api_url, "/v1/devices/gw-0001/readings", start=since)
    assert (devices[0]["messages"], devices[0]["readings"]) == (2, 2)
    assert [r["value"] for r in readings["readings"]] == [12.5, 12.5]  # each stored once


async def test_a_reading_the_store_refuses_for_good_is_dead_lettered_not_retried_forever(
    mosquitto_broker: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """VictoriaMetrics drops samples outside its retention; the ingestor must say so and go on."""
    victoria = request.getfixturevalue("victoria_metrics")
    address = mosquitto_address(mosquitto_broker)
    settings = cloud_settings(address, victoria.url.replace("http", "victoriametrics"), tmp_path)
    old = Reading(
        sensor="machine", metric="motor_current", ts=NOW - timedelta(days=40), value=1.0, unit="A"
    )
    fresh = _batch(seq=0).readings[0]
    batch = TelemetryBatch(
        device="gw-0001", boot="boot-a", seq=0, sent_at=NOW, readings=[old, fresh]
    )
    async with running_cloud(settings) as (_, api_url):
        await _publish(mosquitto_broker, [encode(batch)])
        rejections = await eventually(
            lambda: api_get(api_url, "/v1/ingest/rejections"), lambda r: r["counts"] != {}
        )
        ledger = await api_get(api_url, "/v1/devices/gw-0001/ledger")
    assert rejections["counts"] == {"store_refused_reading": 1}
    assert json.loads(rejections["recent"][0]["payload"])["value"] == 1.0
    assert [row["seq"] for row in ledger] == [0]


async def test_nothing_is_lost_while_the_telemetry_store_is_down(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Store down: no acknowledgement, the broker keeps the messages; store back: all land."""
    victoria = start_victoria_metrics(tmp_path / "vm")
    port = int(victoria.url.rsplit(":", 1)[1])
    address = mosquitto_address(mosquitto_broker)
    settings = cloud_settings(address, victoria.url.replace("http", "victoriametrics"), tmp_path)
    try:
        async with running_cloud(settings) as (runtime, api_url):
            await _publish(mosquitto_broker, [encode(_batch(seq=0, value=0.5))])
            await eventually(lambda: _ledger(api_url), lambda rows: len(rows) == 1)
            victoria.stop()
            later = [_batch(seq=s, value=s + 0.5) for s in range(1, 6)]
            await _publish(mosquitto_broker, [encode(b) for b in later])
            await eventually(lambda: _store_errors(runtime), lambda errors: errors >= 2)
            assert len(await _ledger(api_url)) == 1, "nothing is ledgered while the store is down"
            victoria = start_victoria_metrics(tmp_path / "vm", port=port)
            ledger = await eventually(lambda: _ledger(api_url), lambda rows: len(rows) == 6, 60)
            since = (NOW - timedelta(seconds=1)).isoformat()
            stored = await eventually(
                lambda: api_get(api_url, "/v1/devices/gw-0001/readings", start=since),
                lambda body: body["count"] == 6,
                30,
            )
        assert [row["seq"] for row in ledger] == list(range(6))
        assert [r["value"] for r in stored["readings"]] == [s + 0.5 for s in range(6)]
    finally:
        victoria.stop()


async def _ledger(api_url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = await api_get(api_url, "/v1/devices/gw-0001/ledger")
    return rows


async def _store_errors(runtime: CloudRuntime) -> float:
    return runtime.services.metrics.store_errors._value.get()


async def test_unknown_devices_and_impossible_timestamps_are_rejected(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Only registered devices, only readings near the present; the rest is counted."""
    address = mosquitto_address(mosquitto_broker)
    settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    future = Reading(
        sensor="machine", metric="motor_current", ts=NOW + timedelta(days=2), value=1.0
    )
    ahead = TelemetryBatch(device="gw-0001", boot="boot-a", seq=7, sent_at=NOW, readings=[future])
    async with running_cloud(settings, devices=("gw-0002",)) as (_, api_url):
        await _publish(mosquitto_broker, [encode(_batch(seq=0)), encode(ahead)])
        rejections = await eventually(
            lambda: api_get(api_url, "/v1/ingest/rejections"),
            lambda r: sum(r["counts"].values()) == 2,
        )
        await api_post(api_url, "/v1/devices", {"device": "gw-0001"})
        await _publish(mosquitto_broker, [encode(_batch(seq=1)), encode(ahead)])
        ledger = await eventually(lambda: _ledger(api_url), lambda rows: len(rows) == 1)
        rejections = await eventually(
            lambda: api_get(api_url, "/v1/ingest/rejections"),
            lambda r: sum(r["counts"].values()) == 3,
        )
        completeness = await api_get(api_url, "/v1/devices/gw-0001/completeness")
    assert rejections["counts"] == {"unknown_device": 2, "timestamp_out_of_range": 1}
    assert [row["seq"] for row in ledger] == [1]
    (today,) = completeness
    assert (today["received_messages"], today["missing_messages"]) == (1, 1)
    assert today["gaps"] == [{"boot": "boot-a", "first_seq": 0, "last_seq": 0}]


@pytest.mark.parametrize("state", ["sqlite", "postgresql"])
async def test_overlapping_batches_store_a_shared_message_once(
    state: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two batches prepared before either completes (as a worker overlaps them), both carrying
    seq 1: the ledger insert of the second finds it taken, so it is stored once and counted
    once as a duplicate, and detection sees it as a repeat."""
    state_url = (
        request.getfixturevalue("postgres_url")
        if state == "postgresql"
        else f"sqlite:///{tmp_path / 's.sqlite'}"
    )
    nowhere = BrokerAddress("127.0.0.1", 1, 5, "", "no-broker-needed", {})  # never dialled
    settings = cloud_settings(nowhere, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    settings = settings.model_copy(update={"state_url": state_url})
    runtime = CloudRuntime(settings)
    await runtime.open()
    try:
        ingestor = runtime.ingestor
        runtime.services.state.register_device("gw-0001", datetime.now(UTC))
        seen: list[list[object]] = []

        def hook(messages: Sequence[object]) -> None:
            seen.append(list(messages))
            sum(i * i for i in range(100_000))  # some CPU, as the detectors use

        ingestor.on_stored = hook
        inbound = [
            [Inbound(telemetry_topic("gw-0001"), encode(_batch(seq))) for seq in seqs]
            for seqs in ((0, 1), (1, 2))
        ]
        first = await ingestor.prepare(inbound[0])
        second = await ingestor.prepare(inbound[1])
        outcomes = [await ingestor.complete(first), await ingestor.complete(second)]
        since = NOW - timedelta(seconds=1)
        stored = await runtime.services.telemetry.query("gw-0001", since, NOW + timedelta(hours=1))
        device = next(d for d in runtime.services.state.devices() if d["device"] == "gw-0001")
        sample = ingestor.metrics.registry.get_sample_value
    finally:
        await runtime.close()
    # CPU and wall time of the state transactions and of the hook: wall minus CPU is waiting
    state_cpu, state_wall = (sample("lw_ingest_state_cpu_seconds_total"),
                             sample("lw_ingest_state_write_seconds_sum"))  # fmt: skip
    hook_cpu, hook_wall = (sample("lw_ingest_hook_cpu_seconds_total"),
                           sample("lw_ingest_hook_seconds_total"))  # fmt: skip
    assert state_cpu is not None and state_wall is not None and 0 < state_cpu <= state_wall
    assert hook_cpu is not None and hook_wall is not None and 0 < hook_cpu <= hook_wall + 0.01
    assert [(o.stored, o.duplicates) for o in outcomes] == [(2, 0), (1, 1)]
    assert [r.ts for r in stored] == [_batch(seq).readings[0].ts for seq in (0, 1, 2)]  # once each
    assert (device["messages"], device["readings"], device["duplicates"]) == (3, 3, 1)
    assert [len(batch) for batch in seen] == [2, 2]


async def test_a_batch_is_recorded_while_the_one_before_is_in_detection(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The link's pipeline (`IngestLink._consume`): batch N+1's state transaction runs while
    batch N is in detection; recording and detection each take the batches in order; a batch
    is acknowledged only after detection ran on it and on every batch before it."""
    address = mosquitto_address(mosquitto_broker)
    settings = cloud_settings(address, f"sqlite:///{tmp_path / 't.sqlite'}", tmp_path)
    settings = settings.model_copy(update={"ingest_batch_max": 2, "ingest_batch_wait": 0.05})
    events: list[tuple[str, tuple[int, ...], float]] = []
    async with running_cloud(settings) as (runtime, api_url):
        ingestor = runtime.ingestor
        acknowledged = ingestor.metrics.acknowledged
        record = ingestor.record

        async def timed_record(prepared: PreparedBatch, stop: asyncio.Event | None = None) -> Any:
            key = tuple(sorted(b.seq for b in prepared.fresh))
            events.append(("recording", key, acknowledged._value.get()))
            try:
                return await record(prepared, stop)
            finally:
                events.append(("recorded", key, acknowledged._value.get()))

        def slow_detection(messages: Sequence[object]) -> None:
            key = tuple(sorted(m.seq for m in messages if isinstance(m, TelemetryBatch)))
            events.append(("detecting", key, acknowledged._value.get()))
            time.sleep(0.3)  # slower than a state transaction: the next batch records meanwhile
            events.append(("detected", key, acknowledged._value.get()))

        ingestor.record = timed_record  # type: ignore[method-assign]
        ingestor.on_stored = slow_detection
        await _publish(mosquitto_broker, [encode(_batch(seq)) for seq in range(8)])
        await eventually(
            lambda: api_get(api_url, "/v1/devices/gw-0001/ledger"), lambda rows: len(rows) == 8
        )
        await eventually(_value_of(acknowledged), lambda n: n == 8)
    steps = [(step, key, acked) for step, key, acked in events if key]
    order = {step: [key for s, key, _ in steps if s == step] for step, _, _ in steps}
    batches = order["recording"]
    assert sorted(seq for key in batches for seq in key) == list(range(8)) and len(batches) >= 3
    assert order["recorded"] == order["detecting"] == order["detected"] == batches
    at = {(step, key): i for i, (step, key, _) in enumerate(steps)}
    for earlier, later in itertools.pairwise(batches):
        assert at["recorded", earlier] < at["recording", later]  # one transaction at a time
        assert at["detected", earlier] < at["detecting", later]
    assert all(at["recorded", key] < at["detecting", key] for key in batches)
    overlapped = [
        later
        for earlier, later in itertools.pairwise(batches)
        if at["recording", later] < at["detected", earlier]
    ]
    assert overlapped, f"no batch was recorded while the one before was in detection: {steps}"
    for i, key in enumerate(batches):  # acknowledged: exactly the batches before, detected
        before = sum(len(k) for k in batches[:i])
        assert next(a for s, k, a in steps if (s, k) == ("detecting", key)) == before


def _value_of(counter: Any) -> Callable[[], Awaitable[float]]:
    async def probe() -> float:
        return float(counter._value.get())

    return probe
