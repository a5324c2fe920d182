"""The demo's amqtt broker delivers every message while other clients subscribe and leave.

amqtt 0.12.1 dropped the message it was fanning out when a client subscribed to a new filter
(or left) at that moment ("dictionary changed size during iteration"): in the demo, gateways
connecting and subscribing to their command topics while others published lost telemetry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import aiomqtt
import pytest

from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from leasewatch.wire import device_topic, telemetry_topic
from tests.services.mosquitto import INGESTOR

PUBLISHED = 400
CHURNING_GATEWAYS = 40


async def test_every_message_reaches_the_subscriber_while_gateways_come_and_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateways = [Principal.gateway(f"gw-{i:04d}", secrets.token_urlsafe(16)) for i in range(1, 42)]
    ingestor = Principal.ingestor(INGESTOR, secrets.token_urlsafe(16))
    password = {p.username: p.password.get_secret_value() for p in [*gateways, ingestor]}
    caplog.set_level(logging.ERROR)
    async with (
        EmbeddedBroker([*gateways, ingestor]) as broker,
        aiomqtt.Client(
            broker.host, broker.port, username=INGESTOR, password=password[INGESTOR]
        ) as subscriber,
    ):
        await subscriber.subscribe(telemetry_topic("+"), qos=1)

        async def publish() -> None:
            async with aiomqtt.Client(
                broker.host, broker.port, username="gw-0001", password=password["gw-0001"]
            ) as publisher:
                for seq in range(PUBLISHED):
                    await publisher.publish(telemetry_topic("gw-0001"), str(seq).encode(), qos=1)
            published.set()

        published = asyncio.Event()

        async def churn(device: str) -> None:
            """A gateway connects, subscribes to its own command topic, and leaves, again."""
            while not published.is_set():
                async with aiomqtt.Client(
                    broker.host, broker.port, username=device, password=password[device]
                ) as client:
                    await client.subscribe(device_topic(device, "cmd"), qos=1)

        async def receive() -> set[int]:
            got: set[int] = set()
            async with asyncio.timeout(60):
                async for message in subscriber.messages:
                    assert isinstance(message.payload, bytes)
                    got.add(int(message.payload))
                    if len(got) == PUBLISHED:
                        return got
            return got

        receiving = asyncio.create_task(receive())
        churners = [p.username for p in gateways[1 : 1 + CHURNING_GATEWAYS]]
        await asyncio.gather(publish(), *(churn(device) for device in churners))
        got = await receiving
    assert got == set(range(PUBLISHED))
    assert "dictionary changed size" not in caplog.text
