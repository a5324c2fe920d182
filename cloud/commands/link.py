"""The command link: one MQTT client that publishes queued commands and records the answers.

It runs in the API process (cloud/runtime.py). Each pass it expires unanswered commands, then
publishes the due ones on `lw/v1/{device}/cmd` at QoS 1 and marks them `sent` once the broker
took them (a PUBACK refusal, or MQTT 5's "no matching subscribers", fails the command with the
reason). Acknowledgements arrive on `lw/v1/+/ack` through its own shared group
(`$share/commands/...`; a plain filter on brokers without shared subscriptions) and a
persistent session, and are acknowledged to the broker only after the state store recorded
them. Invalid acks and acks for commands the gateway was never sent are counted and kept as
dead letters (`GET /v1/ingest/rejections`). Publishing is at least once: gateways run a
command id once (edge/commands.py).
"""

from __future__ import annotations

import asyncio
import random
import ssl
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from cloud.commands.store import AckOutcome, CommandRecord, CommandStore
from cloud.metrics import IngestMetrics
from cloud.settings import INGEST_SECRETS, CloudSettings
from cloud.state import Rejection, StateStore
from leasewatch.wire import (
    ACK_FILTER,
    RejectedMessageError,
    RejectReason,
    decode_ack,
    device_topic,
    encode,
)

log = structlog.get_logger(__name__)

COMMAND_GROUP = "commands"
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
PUBLISH_TIMEOUT_S = 10.0
NO_MATCHING_SUBSCRIBERS = 0x10
REFUSED = 0x80


def why_undeliverable(settings: CloudSettings) -> str | None:
    """Why this process cannot deliver commands (no usable broker password), or None."""
    weak = settings.weak_secrets(INGEST_SECRETS)
    if not weak:
        return None
    return (
        f"gateway commands need the broker account of the cloud: set {', '.join(weak)} "
        "(12+ characters) for the API process"
    )


def ack_filter(settings: CloudSettings) -> str:
    """`$share/commands/lw/v1/+/ack`, or the plain filter where the broker has no $share."""
    return f"$share/{COMMAND_GROUP}/{ACK_FILTER}" if settings.mqtt_shared_group else ACK_FILTER


class CommandMetrics:
    """Counters of the command link, on the process registry."""

    def __init__(self, metrics: IngestMetrics) -> None:
        registry = metrics.registry
        self.rejected = metrics.rejected  # counted with every other rejected message
        self.published = Counter("lw_commands_published", "Commands the broker took",
                                 registry=registry)  # fmt: skip
        self.refused = Counter("lw_commands_refused", "Commands the broker refused or could "
                               "not route", registry=registry)  # fmt: skip
        self.expired = Counter("lw_commands_expired", "Commands expired unanswered",
                               registry=registry)  # fmt: skip
        self.acks = Counter("lw_command_acks", "Gateway acknowledgements by outcome",
                            ["outcome"], registry=registry)  # fmt: skip


def _puback_codes(client: aiomqtt.Client) -> list[int]:
    """A list the client appends each PUBACK's reason code to (aiomqtt does not report them)."""
    codes: list[int] = []
    paho = client._client  # aiomqtt keeps the paho client private
    forward: Any = paho.on_publish

    def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        codes.append(int(getattr(reason, "value", 0) or 0))
        forward(c, userdata, mid, reason, props)

    paho.on_publish = on_publish
    return codes


class CommandLink:
    """Publishes queued commands and records acknowledgements until stopped, reconnecting."""

    def __init__(self, settings: CloudSettings, state: StateStore, metrics: IngestMetrics) -> None:
        self.settings = settings
        self.state = state
        self.store = CommandStore(state.engine)
        self.metrics = CommandMetrics(metrics)
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set, with capped, jittered back-off."""
        attempt = 0
        while not stop.is_set():
            try:
                await self._connection(stop)
                attempt = 0
            except (aiomqtt.MqttError, SQLAlchemyError) as err:
                self.connected.clear()
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("command link down", error=str(err), retry_in=round(delay, 2))
                await _sleep_or_stop(delay, stop)

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        v5 = s.mqtt_protocol == 5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS  # acks wait for us
        tls = ssl.create_default_context(cafile=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        client = aiomqtt.Client(
            s.mqtt_host, s.mqtt_port, username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value(), identifier=f"{s.mqtt_client_id}-commands",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            clean_start=False if v5 else MQTT_CLEAN_START_FIRST_ONLY, properties=properties,
            tls_context=tls if s.mqtt_tls else None, timeout=PUBLISH_TIMEOUT_S,
        )  # fmt: skip
        client._client.manual_ack_set(True)  # PUBACK an ack only once it is recorded
        return client

    async def _connection(self, stop: asyncio.Event) -> None:
        client = self._client()
        async with client:
            codes = _puback_codes(client)
            reader = asyncio.create_task(self._receive_acks(client))
            try:
                await client.subscribe(ack_filter(self.settings), qos=1)
                self.connected.set()
                log.info("command link up", acks=ack_filter(self.settings))
                while not stop.is_set():
                    if reader.done():
                        reader.result()  # re-raises what ended the stream
                        raise aiomqtt.MqttError("the broker closed the message stream")
                    await self._deliver_due(client, codes)
                    await _sleep_or_stop(self.settings.command_poll_s, stop)
            finally:
                self.connected.clear()
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _receive_acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            await asyncio.to_thread(self.record_ack, str(message.topic), payload)
            if message.qos > 0:
                client._client.ack(message.mid, message.qos)

    def record_ack(self, topic: str, payload: bytes) -> AckOutcome | None:
        """Record one acknowledgement message; None when it was invalid (dead-lettered)."""
        now = datetime.now(UTC)
        try:
            ack = decode_ack(topic, payload)
        except RejectedMessageError as err:
            self._reject(err.reason, topic, err.detail, payload, now)
            return None
        outcome = self.store.record_ack(ack, now)
        self.metrics.acks.labels(outcome.value).inc()
        if outcome is AckOutcome.UNKNOWN:
            why = f"no command {ack.id!r} was sent to {ack.device}"
            self._reject(RejectReason.UNKNOWN_COMMAND, topic, why, payload, now)
        else:
            log.info("command answered", id=ack.id, device=ack.device, status=ack.status,
                     outcome=outcome.value)  # fmt: skip
        return outcome

    def _reject(
        self, reason: RejectReason, topic: str, detail: str, payload: bytes, now: datetime
    ) -> None:
        self.metrics.rejected.labels(reason.value).inc()
        log.warning("acknowledgement rejected", topic=topic, reason=reason.value, detail=detail)
        self.state.record_rejections([Rejection(now, reason, topic, detail, payload)])

    async def _deliver_due(self, client: aiomqtt.Client, codes: list[int]) -> None:
        now = datetime.now(UTC)
        if expired := await asyncio.to_thread(self.store.expire, now):
            self.metrics.expired.inc(expired)
            log.info("commands expired unanswered", count=expired)
        for record in await asyncio.to_thread(self.store.due, now):
            codes.clear()
            await client.publish(
                device_topic(record.device, "cmd"), encode(record.to_wire()), qos=1,
                timeout=PUBLISH_TIMEOUT_S,
            )  # fmt: skip
            await self._settle(record, codes[-1] if codes else 0)

    async def _settle(self, record: CommandRecord, code: int) -> None:
        """Mark a published command sent, or failed when the broker did not keep it."""
        if code == NO_MATCHING_SUBSCRIBERS or code >= REFUSED:
            why = "the gateway has no session on the broker (never connected, or it expired)"
            detail = f"broker answered 0x{code:02x}: " + (
                why if code == NO_MATCHING_SUBSCRIBERS else "publish refused"
            )
            await asyncio.to_thread(self.store.mark_refused, record.id, detail)
            self.metrics.refused.inc()
            log.warning("command not delivered", id=record.id, device=record.device, why=detail)
            return
        await asyncio.to_thread(self.store.mark_sent, record.id, datetime.now(UTC))
        self.metrics.published.inc()
        log.info("command sent", id=record.id, device=record.device, name=record.name)


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
