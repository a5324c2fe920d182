"""Where alert notifications go: signed webhooks and the MQTT alert topic.

A receiver sends one outbox row and returns, or raises DeliveryError (the outbox retries it).
Receivers are named by a stable id stored with each outbox row: `webhook-<sha256(url)[:16]>`
(the URL itself may hold a token, so it is never stored) and `mqtt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import ssl
import time
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiomqtt
import httpx
from paho.mqtt.client import Client
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.alerts.records import Delivery
from cloud.alerts.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from cloud.settings import CloudSettings
from leasewatch.wire import TOPIC_ROOT

MQTT_RECEIVER = "mqtt"
ALERT_TOPIC_ROOT = f"{TOPIC_ROOT}/alerts"
ERROR_BODY_CHARS = 200
REFUSED = 0x80  # MQTT 5 reason codes from here on are failures


class DeliveryError(Exception):
    """A receiver did not accept a notification; `retry_after_s` is its own hint, if any."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Receiver(Protocol):
    """Something that accepts alert notifications."""

    @property
    def name(self) -> str:
        """The stable id stored with outbox rows."""

    @property
    def target(self) -> str:
        """Where it sends, for people (no secrets)."""

    async def send(self, delivery: Delivery) -> None:
        """Deliver one notification, or raise DeliveryError."""


def alert_topic(severity: str, device: str) -> str:
    """The MQTT topic of an alert event: `lw/v1/alerts/<severity>/<device>`."""
    return f"{ALERT_TOPIC_ROOT}/{severity}/{device}"


def webhook_id(url: str) -> str:
    """The receiver id of a webhook URL."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def redact(url: str) -> str:
    """A webhook URL without user info, query or fragment (they may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def receiver_ids(settings: CloudSettings) -> tuple[str, ...]:
    """Ids of the receivers these settings configure (outbox rows are written for each)."""
    webhooks = tuple(webhook_id(url) for url in dict.fromkeys(settings.alert_webhook_urls))
    return webhooks + ((MQTT_RECEIVER,) if settings.alert_mqtt else ())


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return max(
            0.0, (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        )
    return None


class WebhookReceiver:
    """POSTs the event JSON, signed with HMAC-SHA256 (see cloud.alerts.signing)."""

    def __init__(
        self, url: str, secret: bytes, client: httpx.AsyncClient, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.name = webhook_id(url)
        self.target = redact(url)
        self._secret = secret
        self._client = client
        self._timeout_s = timeout_s

    async def send(self, delivery: Delivery) -> None:
        """POST the stored body; any 2xx accepts it, anything else is retried."""
        body = delivery.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "LeaseWatch-Alerts/1",
            EVENT_HEADER: f"alert.{delivery.event}",
            DELIVERY_HEADER: delivery.idempotency_key,
            "Idempotency-Key": delivery.idempotency_key,
        }
        if self._secret:  # demo mode may run without one; settings refuse that elsewhere
            headers[SIGNATURE_HEADER] = sign(self._secret, int(time.time()), body)
        try:
            response = await self._client.post(
                self.url, content=body, headers=headers, timeout=self._timeout_s
            )
        except httpx.HTTPError as err:
            raise DeliveryError(f"{type(err).__name__}: {err}") from err
        if not response.is_success:
            text = response.text[:ERROR_BODY_CHARS]
            raise DeliveryError(
                f"HTTP {response.status_code} {response.reason_phrase}: {text}",
                _retry_after(response),
            )


class _PubackReasons:
    """PUBACK reason codes, which aiomqtt's publish() receives but never reports."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.codes: list[int] = []
        paho = client._client  # aiomqtt keeps the paho client private
        self._original = paho.on_publish
        paho.on_publish = self._on_publish

    def _on_publish(
        self, client: Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties
    ) -> None:
        self.codes.append(reason.value)
        if self._original is not None:
            self._original(client, userdata, mid, reason, props)  # type: ignore[call-arg]


class MqttReceiver:
    """Publishes the event JSON at QoS 1 on `lw/v1/alerts/<severity>/<device>`.

    One connection, opened on the first send and again after a failure; publishes go one at a
    time so each PUBACK's reason code is checked (MQTT 5 brokers refuse unauthorised publishes
    with 0x87; MQTT 3.1.1 brokers drop them silently). The broker's ACL must grant the ingestor
    write on `lw/v1/alerts/#` (cloud.broker_access).
    """

    name = MQTT_RECEIVER

    def __init__(self, settings: CloudSettings, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.target = f"mqtt://{settings.mqtt_host}:{settings.mqtt_port}/{ALERT_TOPIC_ROOT}/#"
        self._timeout_s = timeout_s
        self._client: aiomqtt.Client | None = None
        self._pubacks: _PubackReasons | None = None
        self._lock = asyncio.Lock()
        self._publishing = asyncio.Lock()

    def _new_client(self) -> aiomqtt.Client:
        s = self.settings
        tls = ssl.create_default_context(cafile=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        return aiomqtt.Client(
            s.mqtt_host,
            s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value(),
            identifier=f"{s.mqtt_client_id}-alerts",
            protocol=aiomqtt.ProtocolVersion.V5
            if s.mqtt_protocol == 5
            else aiomqtt.ProtocolVersion.V311,
            tls_context=tls if s.mqtt_tls else None,
            timeout=self._timeout_s,
        )

    async def _connected(self) -> tuple[aiomqtt.Client, _PubackReasons]:
        async with self._lock:
            if self._client is None or self._pubacks is None:
                client = self._new_client()
                pubacks = _PubackReasons(client)
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError as err:
                    raise DeliveryError(f"cannot connect to the broker: {err}") from err
                self._client, self._pubacks = client, pubacks
            return self._client, self._pubacks

    async def send(self, delivery: Delivery) -> None:
        """Publish the stored body; a broker that refuses it or does not answer in time fails it."""
        alert = json.loads(delivery.payload)["alert"]
        topic = alert_topic(alert["severity"], alert["device"])
        client, pubacks = await self._connected()
        async with self._publishing:
            pubacks.codes.clear()
            try:
                await client.publish(
                    topic, delivery.payload.encode(), qos=1, timeout=self._timeout_s
                )
            except aiomqtt.MqttError as err:
                await self._drop(client)
                raise DeliveryError(f"publish on {topic} failed: {err}") from err
            refused = [code for code in pubacks.codes if code >= REFUSED]
        if refused:
            raise DeliveryError(f"the broker refused the publish on {topic}: 0x{refused[0]:02x}")

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client, self._pubacks = None, None
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                await client.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Disconnect from the broker."""
        if self._client is not None:
            await self._drop(self._client)
