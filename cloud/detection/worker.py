"""The detection worker: its own shared subscription on gateway messages, detectors per batch.

It subscribes `$share/<group>/lw/v1/+/{telemetry,status,health}` beside the ingestors (its own
group, so every message reaches one ingestor *and* one detection worker), collects a batch,
runs `DetectionRunner.process` in a thread and acknowledges the batch (manual PUBACK) only after
that transaction committed: a crash means redelivery, and the (boot, seq) ledger in each
gateway's stream state makes the replay change nothing. A sweep task runs beside it.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiomqtt
import structlog
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError

from cloud.alerts.store import AlertStore
from cloud.detection.context import AssetContextSource
from cloud.detection.metrics import DetectionMetrics
from cloud.detection.runner import DetectionRunner, Message, RunOutcome
from cloud.detection.settings import DetectionSettings
from cloud.detection.sweep import Sweep
from cloud.settings import CloudSettings
from leasewatch.wire import (
    HEALTH_FILTER,
    STATUS_FILTER,
    TELEMETRY_FILTER,
    RejectedMessageError,
    TelemetryBatch,
    decode_health,
    decode_status,
    decode_telemetry,
    parse_topic,
)

log = structlog.get_logger(__name__)
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
_T = TypeVar("_T")


@dataclass
class DetectionCounts:
    """What the worker did since it started (logged; read by tests and the bench)."""

    messages: int = 0
    duplicates: int = 0
    rejected: int = 0
    evaluations: int = 0
    findings: int = 0
    alerts_opened: int = 0
    store_errors: int = 0


def decode(topic: str, payload: bytes) -> Message:
    """A gateway message from its topic and payload; RejectedMessageError when invalid."""
    kind = parse_topic(topic)[1]
    if kind == "status":
        return decode_status(topic, payload)
    if kind == "health":
        return decode_health(topic, payload)
    return decode_telemetry(topic, payload)


class DetectionWorker:
    """Consumes gateway messages and runs the detectors on them, any number side by side."""

    def __init__(
        self,
        cloud: CloudSettings,
        settings: DetectionSettings,
        runner: DetectionRunner,
        metrics: DetectionMetrics | None = None,
    ) -> None:
        self.cloud = cloud
        self.settings = settings
        self.runner = runner
        self.sweep = Sweep(runner, timedelta(seconds=settings.sweep_s))
        self.counts = DetectionCounts()
        self.metrics = metrics or DetectionMetrics()
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and sweep until `stop` is set, reconnecting with jittered back-off."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._sweep_loop(stop))
            group.create_task(self._consume_loop(stop))

    async def _consume_loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await self._connection(stop)
                attempt = 0
            except aiomqtt.MqttError as err:
                self.connected.clear()
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("detection lost the broker", error=str(err), retry_in=round(delay, 2))
                await _sleep_or_stop(delay, stop)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_or_stop(self.settings.sweep_s, stop)
            if stop.is_set():
                return
            outcome = await self._in_store(stop, self.sweep.run_once)
            if outcome is not None:
                self._count(outcome)

    async def handle(self, topics_payloads: list[tuple[str, bytes]], stop: asyncio.Event) -> bool:
        """Decode and process one batch (in a thread); False when the store stayed down."""
        began = time.monotonic()
        messages = await asyncio.to_thread(self.decode_all, topics_payloads)
        if not messages:
            return True
        outcome = await self._in_store(stop, self.runner.process, messages)
        if outcome is None:
            return False
        self._count(outcome)
        m, committed = self.metrics, time.time()
        m.batch_size.observe(len(topics_payloads))
        m.batch_seconds.observe(time.monotonic() - began)
        for message in messages:
            if isinstance(message, TelemetryBatch) and not message.historical:
                m.lag.observe(max(0.0, committed - message.sent_at.timestamp()))
        return True

    def decode_all(self, topics_payloads: list[tuple[str, bytes]]) -> list[Message]:
        """The valid messages of a batch; invalid ones are counted (the ingestor keeps them)."""
        messages: list[Message] = []
        for topic, payload in topics_payloads:
            try:
                messages.append(decode(topic, payload))
            except RejectedMessageError as err:
                self.counts.rejected += 1
                self.metrics.rejected.inc()
                log.debug("detection skipped an invalid message", topic=topic, reason=err.reason)
        return messages

    def _count(self, outcome: RunOutcome) -> None:
        c, m = self.counts, self.metrics
        c.messages += outcome.messages
        c.duplicates += outcome.duplicates
        c.evaluations += outcome.evaluations
        c.findings += len(outcome.findings)
        c.alerts_opened += len(outcome.alerts.opened)
        m.messages.inc(outcome.messages)
        m.duplicates.inc(outcome.duplicates)
        m.evaluations.inc(outcome.evaluations)
        m.findings.inc(len(outcome.findings))
        m.alerts_opened.inc(len(outcome.alerts.opened))
        if outcome.alerts.opened:
            log.info("alerts opened", ids=outcome.alerts.opened)

    async def _in_store(
        self, stop: asyncio.Event, call: Callable[..., _T], *args: object
    ) -> _T | None:
        """Run a blocking store step in a thread, retrying while the database is unavailable."""
        attempt = 0
        while not stop.is_set():
            try:
                return await asyncio.to_thread(call, *args, datetime.now(UTC))
            except OperationalError as err:
                self.counts.store_errors += 1
                self.metrics.store_errors.inc()
                attempt += 1
                delay = min(10.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("state store unavailable, retrying", error=str(err), retry_in=delay)
                await _sleep_or_stop(delay, stop)
        return None

    def _client(self) -> aiomqtt.Client:
        c, v5 = self.cloud, self.cloud.mqtt_protocol == 5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
            properties.ReceiveMaximum = min(65535, 4 * self.settings.batch_max)
        tls = ssl.create_default_context(cafile=str(c.mqtt_ca_file) if c.mqtt_ca_file else None)
        client = aiomqtt.Client(
            c.mqtt_host,
            c.mqtt_port,
            username=c.mqtt_username,
            password=c.mqtt_password.get_secret_value(),
            identifier=self.settings.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            clean_start=False if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            tls_context=tls if c.mqtt_tls else None,
        )
        client._client.manual_ack_set(True)  # PUBACK only after the detection transaction
        return client

    def filters(self) -> list[str]:
        """The topic filters this worker subscribes (shared when a group is set)."""
        group = self.settings.shared_group
        prefix = f"$share/{group}/" if group else ""
        return [prefix + f for f in (TELEMETRY_FILTER, STATUS_FILTER, HEALTH_FILTER)]

    async def _connection(self, stop: asyncio.Event) -> None:
        async with self._client() as client:
            queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
            reader = asyncio.create_task(_read(client, queue, self.metrics))
            try:
                # One SUBSCRIBE for every filter: amqtt holds a later SUBACK behind the retained
                # statuses the first one delivers, which are acknowledged only once consuming.
                await client.subscribe([(f, 1) for f in self.filters()])
                self.connected.set()
                log.info("detection subscribed", filters=self.filters())
                await self._consume(client, queue, stop, reader)
            finally:
                self.connected.clear()
                self.metrics.pending.set(0)  # unacknowledged ones come again after a reconnect
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _consume(
        self,
        client: aiomqtt.Client,
        queue: asyncio.Queue[aiomqtt.Message],
        stop: asyncio.Event,
        reader: asyncio.Task[None],
    ) -> None:
        while not stop.is_set():
            if reader.done() and queue.empty():
                reader.result()
                raise aiomqtt.MqttError("the broker closed the message stream")
            batch = await self._collect(queue, stop)
            if not batch:
                continue
            pairs = [(str(m.topic), _payload(m.payload)) for m in batch]
            if not await self.handle(pairs, stop):
                return  # stopping during a store outage: leave the batch unacknowledged
            for message in batch:
                if message.qos > 0:
                    client._client.ack(message.mid, message.qos)
            self.metrics.pending.dec(len(batch))

    async def _collect(
        self, queue: asyncio.Queue[aiomqtt.Message], stop: asyncio.Event
    ) -> list[aiomqtt.Message]:
        """Up to batch_max messages, waiting at most batch_wait after the first."""
        try:
            batch = [await asyncio.wait_for(queue.get(), timeout=0.5)]
        except TimeoutError:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.batch_wait
        while len(batch) < self.settings.batch_max and not stop.is_set():
            while not queue.empty() and len(batch) < self.settings.batch_max:
                batch.append(queue.get_nowait())
            left = deadline - loop.time()
            if left <= 0 or len(batch) >= self.settings.batch_max:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=left))
            except TimeoutError:
                break
        return batch


async def _read(
    client: aiomqtt.Client, queue: asyncio.Queue[aiomqtt.Message], metrics: DetectionMetrics
) -> None:
    async for message in client.messages:
        metrics.pending.inc()
        await queue.put(message)


def _payload(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return payload.encode() if isinstance(payload, str) else b""


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return


def detection_worker(
    cloud: CloudSettings,
    settings: DetectionSettings,
    alerts: AlertStore,
    context: AssetContextSource | None = None,
    registry: CollectorRegistry | None = None,
) -> DetectionWorker:
    """A worker on the alert store's database, with the settings' (or the given) asset context.

    Its metrics go to `registry` (the process's /metrics) when given, else to one of its own.
    """
    source = context if context is not None else settings.context_source()
    runner = DetectionRunner(alerts.engine, alerts, source, settings.timing())
    return DetectionWorker(cloud, settings, runner, DetectionMetrics(registry))
