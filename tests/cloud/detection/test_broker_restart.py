"""The broker-restart window: only ingestors subscribe to gateway telemetry, so nothing else can
make the broker acknowledge a gateway's message as delivered while no ingestor is back.

Mosquitto 2.0.11 restores no shared subscription after a restart. When the detection worker
had its own (`$share/detect/...`) and came back first, the gateway got PUBACK 0x00, dropped the
message, and no ingestor ever stored it. Now detection runs inside the ingestors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest

from cloud.state import StateStore
from edge.puback import NO_MATCHING_SUBSCRIBERS, track_reason_codes
from leasewatch.services.cloud_worker import CloudEndpoints, CloudWorker
from leasewatch.wire import TELEMETRY_FILTER, TelemetryBatch, encode, telemetry_topic
from tests.cloud.detection.gateways import Gateway, minute_start
from tests.cloud.detection.test_streaming import ingest_worker
from tests.services.ingest_workers import RestartableMosquitto
from tests.services.mosquitto import INGESTOR, default_principals
from tests.services.victoria import VictoriaMetricsServer
from tests.slice import eventually

pytestmark = pytest.mark.integration
DELIVERED = 0x00


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableMosquitto]:
    """A Mosquitto that restarts with its config and persistence file."""
    (tmp_path / "mosquitto").mkdir()
    server = RestartableMosquitto(tmp_path / "mosquitto", default_principals())
    server.start()
    yield server
    server.stop()


async def reason_codes(
    broker: RestartableMosquitto, batches: Sequence[TelemetryBatch]
) -> list[int]:
    """Publish as the gateway, QoS 1, MQTT 5; the PUBACK reason code of each message."""
    device = batches[0].device
    answers: list[int] = []
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=device, password=broker.password(device),
        identifier=f"{device}-test", protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:  # fmt: skip
        codes = track_reason_codes(client)
        for batch in batches:
            await client.publish(telemetry_topic(device), encode(batch), qos=1)
            answers += codes.values()
            codes.clear()
    return answers


def stored(state_url: str, batches: Sequence[TelemetryBatch]) -> set[tuple[str, str, int]]:
    """Which of these messages the ledger holds."""
    state = StateStore(state_url)
    try:
        return set(state.known_keys([b.key for b in batches]))
    finally:
        state.close()


async def test_a_gateway_keeps_its_message_until_an_ingestor_is_back(
    broker: RestartableMosquitto,
    victoria_metrics: VictoriaMetricsServer,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    StateStore(postgres_url).close()
    telemetry_url = victoria_metrics.url.replace("http://", "victoriametrics://")
    ingestor = ingest_worker(broker, victoria_metrics, postgres_url, tmp_path, "ingest-a")
    endpoints = CloudEndpoints(
        "127.0.0.1", broker.port, INGESTOR, broker.password(INGESTOR), telemetry_url,
        postgres_url, extra={"DETECT_SWEEP_S": "1"},
    )  # fmt: skip
    sweeper = CloudWorker(endpoints, tmp_path, client_id="detect-1", role="detect")
    gw = Gateway("gw-0001")
    start = minute_start() - timedelta(minutes=2)
    first, kept = gw.batch(start), gw.batch(start + timedelta(seconds=10))
    try:
        await asyncio.to_thread(ingestor.start)
        await asyncio.to_thread(sweeper.start)  # `cloud detect`: the sweep, healthy, running
        assert await reason_codes(broker, [first]) == [DELIVERED]
        await asyncio.to_thread(ingestor.stop)
        await asyncio.to_thread(broker.restart)
        # the sweep-only detection process is up; no ingestor is: the gateway keeps it
        assert await reason_codes(broker, [kept]) == [NO_MATCHING_SUBSCRIBERS]
        # what the old detection worker did: any other subscriber turns that into "delivered"
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username=INGESTOR, password=broker.password(INGESTOR),
            identifier="not-an-ingestor", protocol=aiomqtt.ProtocolVersion.V5,
        ) as other:  # fmt: skip
            await other.subscribe(f"$share/detect/{TELEMETRY_FILTER}", qos=1)
            assert await reason_codes(broker, [kept]) == [DELIVERED]
        await asyncio.to_thread(ingestor.start)
        assert await reason_codes(broker, [kept]) == [DELIVERED]  # the gateway sends it again
        await eventually(
            lambda: asyncio.to_thread(stored, postgres_url, [first, kept]),
            lambda found: found == {first.key, kept.key},
            timeout=60,
        )
    finally:
        await asyncio.to_thread(sweeper.stop)
        await asyncio.to_thread(ingestor.stop)
