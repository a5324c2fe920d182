"""The gateway's MQTT link: one long-lived client in a reconnect loop, draining the buffer.

A message leaves the buffer only after the broker's PUBACK. The gateway announces itself with
a retained "online" status and leaves a retained "offline" last will for the broker to publish
if the link dies without a goodbye.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
import structlog

from edge.buffer import OutboxMessage, ReadingBuffer
from edge.config import DeliveryConfig, MqttConfig
from leasewatch.wire import GatewayStatus, TelemetryBatch, encode, status_topic, telemetry_topic

log = structlog.get_logger(__name__)


@dataclass
class LinkHealth:
    """What the link did so far; read by the agent's health report."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    published_messages: int = 0
    published_historical: int = 0
    publish_failures: int = 0
    last_error: str = ""
    since: datetime = field(default_factory=lambda: datetime.now(UTC))


def _status(device: str, boot: str, state: str) -> bytes:
    status = GatewayStatus.model_validate(
        {"device": device, "boot": boot, "state": state, "ts": datetime.now(UTC)}
    )
    return encode(status)


def make_client(config: MqttConfig, device: str, boot: str) -> aiomqtt.Client:
    """An aiomqtt client for this gateway, with its last will and persistent session."""
    will = aiomqtt.Will(status_topic(device), _status(device, boot, "offline"), qos=1, retain=True)
    tls_context = None
    if config.tls:
        tls_context = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file else None
        )
    v5 = config.protocol == 5
    return aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=config.password.get_secret_value(),
        identifier=device,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else False,
        will=will,
        keepalive=config.keepalive,
        tls_context=tls_context,
        timeout=config.publish_timeout,
    )


class MqttLink:
    """Publishes the buffer's messages oldest first and keeps the gateway's status current."""

    def __init__(
        self,
        config: MqttConfig,
        delivery: DeliveryConfig,
        buffer: ReadingBuffer,
        *,
        device: str,
        boot: str,
        client_factory: Callable[[MqttConfig, str, str], aiomqtt.Client] = make_client,
    ) -> None:
        self.config = config
        self.delivery = delivery
        self.buffer = buffer
        self.device = device
        self.boot = boot
        self.health = LinkHealth()
        self.wake = asyncio.Event()
        self._client_factory = client_factory

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set; back off exponentially with jitter on failure."""
        attempt = 0
        while not stop.is_set():
            try:
                async with self._client_factory(self.config, self.device, self.boot) as client:
                    attempt = 0
                    await self._session(client, stop)
            except aiomqtt.MqttError as err:
                self._on_link_error(err)
                attempt += 1
                delay = min(self.config.reconnect_max, self.config.reconnect_min * 2**attempt)
                await _sleep_or_stop(random.uniform(0, delay), stop)
            finally:
                self.health.connected = False

    def _on_link_error(self, err: aiomqtt.MqttError) -> None:
        if self.health.connected:
            self.health.disconnects += 1
        self.health.last_error = str(err)
        log.warning("mqtt link down", device=self.device, error=str(err))

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        self.health.connected = True
        self.health.connects += 1
        topic = status_topic(self.device)
        await client.publish(topic, _status(self.device, self.boot, "online"), qos=1, retain=True)
        log.info("mqtt link up", device=self.device, host=self.config.host, port=self.config.port)
        while not stop.is_set():
            sent = await self._drain(client)
            if sent == 0:
                self.wake.clear()
                await _wait_any(self.wake, stop, self.delivery.publish_interval)
        await self._drain(client)  # what was sealed at shutdown, within publish timeouts
        await client.publish(topic, _status(self.device, self.boot, "offline"), qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> int:
        """Send what the buffer holds, oldest first, paced when replaying a backlog."""
        messages = self.buffer.oldest(limit=50)
        for message in messages:
            await self._publish(client, message)
            if self._is_historical(message):
                await asyncio.sleep(1 / self.delivery.replay_messages_per_second)
        return len(messages)

    def _is_historical(self, message: OutboxMessage) -> bool:
        age = (datetime.now(UTC) - message.created).total_seconds()
        return message.boot != self.boot or age > self.delivery.historical_after

    async def _publish(self, client: aiomqtt.Client, message: OutboxMessage) -> None:
        historical = self._is_historical(message)
        batch = TelemetryBatch(
            device=self.device,
            boot=message.boot,
            seq=message.seq,
            sent_at=datetime.now(UTC),
            historical=historical,
            readings=list(message.readings),
        )
        try:
            await client.publish(
                telemetry_topic(self.device),
                encode(batch),
                qos=1,
                timeout=self.config.publish_timeout,
            )
        except aiomqtt.MqttError:
            self.health.publish_failures += 1
            raise
        self.buffer.accept([message.id])
        self.health.published_messages += 1
        self.health.published_historical += int(historical)


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
