"""The gateway's MQTT link: one long-lived client in a reconnect loop, draining the buffer.

A message leaves the buffer only after the broker's PUBACK. Two lanes share the connection:
live messages (this boot, readings younger than `historical_after`, taken since the link came
back) always go first; the backlog (older readings, earlier boots, and every reading taken while
the link was down) follows oldest first, marked historical and paced by a token bucket in
readings per second, and it yields to live messages as soon as they are sealed.

On each new connection the backlog of THIS boot waits until one live message has been
delivered, or until `2 * publish_interval + 1` s have passed (a gateway whose sensors are all
dead still drains it). The cloud learns a boot's clock lead only from a live message of that
boot and refuses a backlog of a boot it never saw live; a boot that started with its clock
ahead and its link down would otherwise lose that whole backlog. Earlier boots' backlog goes at
once: no live message of this boot can vouch for their clocks.

The gateway announces itself with a retained "online" status and leaves a retained "offline"
last will. It subscribes to its command topic; commands go to `commands` for the agent, and
health reports and command acks queued with `publish_soon` go out while connected.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiomqtt
import structlog

from edge.buffer import OutboxMessage, ReadingBuffer
from edge.clock import gateway_now
from edge.config import DeliveryConfig, MqttConfig
from edge.mqtt_client import TokenBucket, backoff_delay, encode_message, make_client, status_payload
from edge.puback import NotDeliveredError, check_delivered, track_reason_codes
from leasewatch.wire import device_topic

log = structlog.get_logger(__name__)

_LANE_BATCH = 20  # messages fetched from the buffer per lane query
_OUTGOING_LIMIT = 1000  # health reports and acks held while disconnected
_COMMAND_LIMIT = 100  # commands received and not yet handled


@dataclass
class LinkHealth:
    """What the link did so far; read by the agent's health report."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    published_messages: int = 0
    published_historical: int = 0
    published_readings: int = 0
    replayed_readings: int = 0
    publish_failures: int = 0
    dropped_outgoing: int = 0
    dropped_commands: int = 0
    last_error: str = ""
    outages: int = 0
    since: datetime = field(default_factory=gateway_now)


class MqttLink:
    """Publishes the buffer's messages, live first, and keeps the gateway's status current."""

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
        self._reason_codes: dict[int, int] = {}
        self.device = device
        self.boot = boot
        self.health = LinkHealth()
        self.wake = asyncio.Event()
        self.up = asyncio.Event()  # set while connected
        self.commands: asyncio.Queue[bytes] = asyncio.Queue(_COMMAND_LIMIT)
        self._outgoing: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(_OUTGOING_LIMIT)
        self.client_factory = client_factory  # replaceable: tests hold the link back with it
        self._bucket = TokenBucket(delivery.replay_readings_per_second)
        self._rng = random.Random()
        self._down_since: datetime | None = None  # set by a failed connect or a lost link
        self._live_floor: datetime | None = None  # readings taken before it are historical
        self._held_until = 0.0  # monotonic: this boot's backlog waits for a live message till then

    def set_delivery(self, delivery: DeliveryConfig) -> None:
        """Adopt new delivery settings (pace of the backlog, intervals, compression)."""
        if delivery.replay_readings_per_second != self.delivery.replay_readings_per_second:
            self._bucket = TokenBucket(delivery.replay_readings_per_second)
        self.delivery = delivery

    def publish_soon(self, kind: str, payload: bytes) -> None:
        """Queue a health report or command ack; the oldest is dropped (counted) when full."""
        if self._outgoing.full():
            self._outgoing.get_nowait()
            self.health.dropped_outgoing += 1
        self._outgoing.put_nowait((device_topic(self.device, kind), payload))

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set; back off exponentially with full jitter."""
        attempt = 0
        while not stop.is_set():
            error: aiomqtt.MqttError | None = None
            try:
                async with self.client_factory(self.config, self.device, self.boot) as client:
                    attempt = 0
                    await self._session(client, stop)
            except* aiomqtt.MqttError as group:
                error = _first(group)
            finally:
                self.health.connected = False
                self.up.clear()
            if error is not None:
                self._on_link_error(error)
                delay = backoff_delay(
                    attempt, self.config.reconnect_min, self.config.reconnect_max, self._rng
                )
                attempt += 1
                await _wait_any(stop, asyncio.Event(), delay)

    def _on_link_error(self, err: aiomqtt.MqttError) -> None:
        if self.health.connects > self.health.disconnects:
            self.health.disconnects += 1
        if self._down_since is None:
            self._down_since = gateway_now()
            self.health.outages += 1
        self.health.last_error = str(err)
        log.warning("mqtt link down", device=self.device, error=str(err))

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        self._reason_codes = track_reason_codes(client)
        self.health.connected = True
        self.health.connects += 1
        if self._down_since is not None:  # what was taken while down is history now
            self._live_floor = gateway_now()
            log.info("mqtt link back", device=self.device, down_since=self._down_since.isoformat())
            self._down_since = None
        self._held_until = time.monotonic() + 2 * self.delivery.publish_interval + 1.0
        topic = device_topic(self.device, "status")
        await client.publish(
            topic, status_payload(self.device, self.boot, "online"), qos=1, retain=True
        )
        await client.subscribe(device_topic(self.device, "cmd"), qos=1)
        self.up.set()
        log.info("mqtt link up", device=self.device, host=self.config.host, port=self.config.port)
        async with asyncio.TaskGroup() as group:
            helpers = [
                group.create_task(self._send_outgoing(client)),
                group.create_task(self._receive_commands(client)),
            ]
            await self._send_telemetry(client, stop)
            await self._flush_outgoing(client)
            for helper in helpers:
                helper.cancel()
        await client.publish(
            topic, status_payload(self.device, self.boot, "offline"), qos=1, retain=True
        )

    async def _send_telemetry(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Live lane first, then the paced backlog; at stop, what is live goes out once more."""
        while not stop.is_set():
            try:
                sent = await self._send_live(client)
                if not sent:
                    sent = await self._send_backlog(client, stop)
            except NotDeliveredError as err:
                self._not_delivered(err)
                await _wait_any(stop, asyncio.Event(), self.delivery.publish_interval)
                continue
            if not sent:  # _send_live cleared `wake` before it looked: nothing sealed is missed
                await _wait_any(self.wake, stop, self._idle_wait())
        try:
            await self._send_live(client)  # sealed at shutdown, within publish timeouts
        except NotDeliveredError as err:
            self._not_delivered(err)  # it stays in the buffer for the next start

    def _not_delivered(self, err: NotDeliveredError) -> None:
        """The broker kept nothing (no cloud subscription yet, or refused): retry later."""
        self.health.publish_failures += 1
        self.health.last_error = str(err)
        log.warning(
            "telemetry not delivered, kept in the buffer", device=self.device, error=str(err)
        )

    def _hold_left(self) -> float:
        """Seconds this boot's backlog still waits for a live message (0 when released)."""
        return max(0.0, self._held_until - time.monotonic())

    def _idle_wait(self) -> float:
        """How long the telemetry loop sleeps with nothing to send: to the hold's end at most."""
        held = self._hold_left()
        return min(held, self.delivery.publish_interval) if held else self.delivery.publish_interval

    def _live_since(self) -> datetime:
        """Messages whose oldest reading is older than this go as historical backlog."""
        by_age = gateway_now() - timedelta(seconds=self.delivery.historical_after)
        return by_age if self._live_floor is None else max(by_age, self._live_floor)

    async def _send_live(self, client: aiomqtt.Client) -> int:
        """Send every live message, oldest first; returns how many went."""
        sent = 0
        while True:
            self.wake.clear()
            batch = await asyncio.to_thread(
                self.buffer.live, self.boot, self._live_since(), _LANE_BATCH
            )
            for message in batch:
                await self._publish(client, message, historical=False)
                self._held_until = 0.0  # the cloud has seen this boot live: release its backlog
            sent += len(batch)
            if len(batch) < _LANE_BATCH:
                return sent

    async def _send_backlog(self, client: aiomqtt.Client, stop: asyncio.Event) -> int:
        """Send backlog messages at the configured pace until live data is waiting."""
        batch = await asyncio.to_thread(
            self.buffer.backlog, self.boot, self._live_since(), _LANE_BATCH
        )
        held = self._hold_left() > 0
        sent = 0
        for message in batch:
            if held and message.boot == self.boot:
                break  # oldest first: earlier boots' backlog went before, this boot's waits
            delay = self._bucket.delay()
            if delay > 0:
                await _wait_any(self.wake, stop, delay)
            if self.wake.is_set() or stop.is_set():
                break  # live data first
            await self._publish(client, message, historical=True)
            self._bucket.spend(message.count)
            sent += 1
        return sent

    async def _publish(
        self, client: aiomqtt.Client, message: OutboxMessage, *, historical: bool
    ) -> None:
        payload = encode_message(
            message,
            self.device,
            historical=historical,
            sent_at=gateway_now(),
            compress=self.delivery.compress,
        )
        try:
            await client.publish(
                device_topic(self.device, "telemetry"),
                payload,
                qos=1,
                timeout=self.config.publish_timeout,
            )
            check_delivered(self._reason_codes)
        except aiomqtt.MqttError:
            self.health.publish_failures += 1
            raise
        await asyncio.to_thread(self.buffer.accept, [message.id])
        self.health.published_messages += 1
        self.health.published_readings += message.count
        if historical:
            self.health.published_historical += 1
            self.health.replayed_readings += message.count

    async def _send_outgoing(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload = await self._outgoing.get()
            await client.publish(topic, payload, qos=1, timeout=self.config.publish_timeout)

    async def _flush_outgoing(self, client: aiomqtt.Client) -> None:
        while not self._outgoing.empty():
            topic, payload = self._outgoing.get_nowait()
            await client.publish(topic, payload, qos=1, timeout=self.config.publish_timeout)

    async def _receive_commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not isinstance(message.payload, bytes):
                continue
            if self.commands.full():
                self.health.dropped_commands += 1
                log.warning("command dropped: too many waiting", device=self.device)
                continue
            self.commands.put_nowait(message.payload)


def _first(group: BaseExceptionGroup[aiomqtt.MqttError]) -> aiomqtt.MqttError:
    """The first leaf error of an exception group."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, aiomqtt.MqttError)  # noqa: S101 (except* matched only these)
    return leaf


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Wait until either event is set or `seconds` pass."""
    waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
