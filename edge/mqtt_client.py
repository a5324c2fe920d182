"""The gateway's MQTT client and what it sends: connection options (TLS, last will, persistent
session), reconnect back-off, the backlog's pace, and the payloads of status and telemetry."""

from __future__ import annotations

import json
import random
import ssl
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.buffer import OutboxMessage
from edge.clock import gateway_now
from edge.config import MqttConfig
from leasewatch.readings import SCHEMA_VERSION
from leasewatch.wire import GatewayStatus, device_topic, encode


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(cap, base * 2 ** min(attempt, 30)))


class TokenBucket:
    """Paces the backlog in readings per second, with a one-second burst."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._last = clock()

    def delay(self) -> float:
        """Seconds to wait before the next message may go (0 when it may go now)."""
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def spend(self, readings: int) -> None:
        """Take the tokens of a message just sent (the bucket may go into debt)."""
        self._tokens -= readings


def status_payload(device: str, boot: str, state: str) -> bytes:
    """The retained online/offline status of this gateway's boot, stamped now."""
    status = GatewayStatus.model_validate(
        {"device": device, "boot": boot, "state": state, "ts": gateway_now()}
    )
    return encode(status)


def encode_message(
    message: OutboxMessage, device: str, *, historical: bool, sent_at: datetime, compress: bool
) -> bytes:
    """A TelemetryBatch payload from a sealed message (its readings are stored wire-ready)."""
    head = {
        "v": SCHEMA_VERSION,
        "device": device,
        "boot": message.boot,
        "seq": message.seq,
        "sent_at": sent_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "historical": historical,
    }
    text = (
        f"{json.dumps(head, separators=(',', ':'))[:-1]},"
        f'"readings":{message.readings_json},"events":{message.events_json}}}'
    ).encode()
    return zlib.compress(text, 6) if compress else text


def _tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if config.client_cert is not None:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


def make_client(config: MqttConfig, device: str, boot: str) -> aiomqtt.Client:
    """An aiomqtt client for this gateway, with its last will and persistent session."""
    will = aiomqtt.Will(
        device_topic(device, "status"), status_payload(device, boot, "offline"), qos=1, retain=True
    )
    v5 = config.protocol == 5
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = config.session_expiry
    return aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=config.password.get_secret_value(),
        identifier=device,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else False,
        clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
        will=will,
        keepalive=config.keepalive,
        tls_context=_tls_context(config),
        timeout=config.publish_timeout,
    )
