"""A publish the broker acknowledges without keeping is not delivered: the gateway keeps it."""

from __future__ import annotations

import aiomqtt
import pytest

from edge.puback import NotDeliveredError, check_delivered, track_reason_codes
from leasewatch.wire import telemetry_topic
from tests.services.mosquitto import MosquittoBroker

pytestmark = pytest.mark.integration


def _client(broker: MosquittoBroker, user: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=broker.password(user),
        identifier=f"{user}-puback", protocol=aiomqtt.ProtocolVersion.V5,
    )  # fmt: skip


async def test_no_matching_subscribers_is_not_delivered(mosquitto_broker: MosquittoBroker) -> None:
    async with _client(mosquitto_broker, "gw-0001") as gateway:
        codes = track_reason_codes(gateway)
        await gateway.publish(telemetry_topic("gw-0001"), b"{}", qos=1)
        with pytest.raises(NotDeliveredError, match="0x10"):
            check_delivered(codes)
        async with _client(mosquitto_broker, "ingestor") as cloud:
            await cloud.subscribe("$share/ingest/lw/v1/+/telemetry", qos=1)
            await gateway.publish(telemetry_topic("gw-0001"), b"{}", qos=1)
            check_delivered(codes)  # a subscriber: delivered
        await gateway.publish(telemetry_topic("gw-0002"), b"{}", qos=1)  # not its topic
        with pytest.raises(NotDeliveredError, match="0x87"):
            check_delivered(codes)
