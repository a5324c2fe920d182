"""Alert events on the MQTT alert topic, through Mosquitto and the embedded broker's real ACLs."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from cloud.alerts.delivery import open_alert_delivery
from cloud.alerts.outbox import Outbox
from cloud.alerts.receivers import DeliveryError, MqttReceiver, receiver_ids
from cloud.alerts.signals import Severity
from cloud.alerts.store import AlertStore
from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from cloud.settings import CloudSettings
from tests.cloud.alerts.conftest import T0, finding
from tests.services.mosquitto import INGESTOR, MosquittoFactory, default_principals

V5, V311 = aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311
WAIT_S = 10.0


@dataclass(frozen=True)
class Broker:
    """A running broker with the default principals plus a read-only monitor."""

    host: str
    port: int
    protocol: aiomqtt.ProtocolVersion
    passwords: dict[str, str]

    def settings(self, username: str = INGESTOR) -> CloudSettings:
        """Cloud settings that publish alerts as `username`."""
        return CloudSettings(
            mode="demo",
            mqtt_host=self.host,
            mqtt_port=self.port,
            mqtt_username=username,
            mqtt_password=SecretStr(self.passwords[username]),
            mqtt_protocol=5 if self.protocol == V5 else 311,
            mqtt_tls=False,
            mqtt_client_id="ingestor-alert-test",
            alert_mqtt=True,
            alert_poll_s=0.05,
        )

    def monitor(self) -> aiomqtt.Client:
        """A subscriber with the monitor role (reads lw/v1/#)."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username="monitor",
            password=self.passwords["monitor"],
            protocol=self.protocol,
            timeout=WAIT_S,
        )


@pytest.fixture(
    params=[
        pytest.param(V5, id="mosquitto-mqtt5", marks=pytest.mark.integration),
        pytest.param(V311, id="mosquitto-mqtt311", marks=pytest.mark.integration),
        pytest.param(None, id="amqtt-mqtt311"),
    ]
)
async def broker(
    request: pytest.FixtureRequest, mosquitto_factory: MosquittoFactory
) -> AsyncIterator[Broker]:
    """Each broker in turn."""
    principals = [*default_principals(), Principal.monitor("monitor", secrets.token_urlsafe(16))]
    passwords = {p.username: p.password.get_secret_value() for p in principals}
    if request.param is None:
        async with EmbeddedBroker(principals) as embedded:
            yield Broker(embedded.host, embedded.port, V311, passwords)
        return
    mosquitto = mosquitto_factory(principals)
    yield Broker(mosquitto.host, mosquitto.port, request.param, passwords)


async def test_an_alert_is_published_on_its_severity_topic(
    broker: Broker, sqlite_engine: Engine
) -> None:
    settings = broker.settings()
    store = AlertStore(sqlite_engine, receiver_ids(settings))
    async with broker.monitor() as monitor:
        await monitor.subscribe("lw/v1/alerts/#", qos=1)
        (alert_id,) = store.apply([finding(0, severity=Severity.CRITICAL)], now=T0).opened
        async with open_alert_delivery(settings, sqlite_engine) as delivery:
            stop = asyncio.Event()
            task = asyncio.create_task(delivery.run(stop))
            async with asyncio.timeout(WAIT_S):
                message = await anext(monitor.messages)
            stop.set()
            await task
    assert str(message.topic) == "lw/v1/alerts/critical/gw-0001"
    assert isinstance(message.payload, bytes)
    document = json.loads(message.payload)
    assert (document["event"], document["alert"]["id"]) == ("opened", alert_id)
    assert document["alert"]["evidence"]["observed_h_per_day"] == 5.1
    (stored,) = Outbox(sqlite_engine).deliveries(alert_id)
    assert stored.status == "delivered"


@pytest.mark.integration
async def test_a_refused_publish_is_a_failure_not_a_silent_loss(
    mosquitto_factory: MosquittoFactory, sqlite_engine: Engine
) -> None:
    principals = [*default_principals(), Principal.monitor("monitor", secrets.token_urlsafe(16))]
    mosquitto = mosquitto_factory(principals)
    passwords = {p.username: p.password.get_secret_value() for p in principals}
    broker = Broker(mosquitto.host, mosquitto.port, V5, passwords)
    receiver = MqttReceiver(broker.settings(username="monitor"), timeout_s=WAIT_S)  # read-only
    AlertStore(sqlite_engine, [receiver.name]).apply([finding(0)], now=T0)
    (claimed,) = Outbox(sqlite_engine).claim_due([receiver.name], datetime.now(UTC))
    try:
        with pytest.raises(DeliveryError, match="refused the publish on lw/v1/alerts/warning"):
            await receiver.send(claimed)
    finally:
        await receiver.aclose()
