"""The brokers LeaseWatch runs on: authentication and per-device topic rules.

Every behaviour test runs against Mosquitto 2 with MQTT 5 and MQTT 3.1.1 clients (integration)
and against the embedded amqtt broker (MQTT 3.1.1 only, no shared subscriptions).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from cloud.broker_access import (
    BrokerAccessError,
    Principal,
    acl_covers,
    amqtt_acl,
    device_topic,
    mosquitto_acl,
    mosquitto_conf,
)
from cloud.broker_tls import TlsListener
from cloud.embedded_broker import EmbeddedBroker
from leasewatch.wire import (
    GatewayStatus,
    Reading,
    TelemetryBatch,
    decode_status,
    decode_telemetry,
    encode,
    status_topic,
    telemetry_topic,
)
from tests.services.mosquitto import (
    DEPLOYED_CONF,
    INGESTOR,
    MosquittoBroker,
    MosquittoFactory,
    default_principals,
)
from tests.services.ports import free_port

V5, V311 = aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311
NOT_AUTHORIZED = 0x87
WAIT_S = 5.0


@dataclass(frozen=True)
class Target:
    """A running broker as the tests see it, whichever implementation it is."""

    name: str
    host: str
    port: int
    protocol: aiomqtt.ProtocolVersion
    passwords: Mapping[str, str]
    ingest_filter: str

    def client(self, username: str | None, password: str | None = None) -> aiomqtt.Client:
        """An aiomqtt client for a principal (its own password unless one is given)."""
        if username is not None and password is None:
            password = self.passwords[username]
        return aiomqtt.Client(
            self.host,
            self.port,
            username=username,
            password=password,
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
) -> AsyncIterator[Target]:
    """Each broker in turn, with gateways gw-0001..gw-0003 and the ingestor."""
    principals = default_principals()
    passwords = {p.username: p.password.get_secret_value() for p in principals}
    if request.param is None:
        async with EmbeddedBroker(principals) as embedded:
            plain = device_topic("+", "telemetry")
            yield Target("amqtt", embedded.host, embedded.port, V311, passwords, plain)
        return
    mosquitto = mosquitto_factory(principals)
    shared = f"$share/ingest/{device_topic('+', 'telemetry')}"
    yield Target("mosquitto", mosquitto.host, mosquitto.port, request.param, passwords, shared)


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    """The next message the client receives, or fail after WAIT_S seconds."""
    async with asyncio.timeout(WAIT_S):
        return await anext(client.messages)


def record_puback_reasons(client: aiomqtt.Client) -> list[int]:
    """Collect PUBACK reason codes, which aiomqtt's publish() receives but never reports."""
    reasons: list[int] = []
    paho = client._client  # aiomqtt keeps the paho client private
    original = paho.on_publish
    assert original is not None

    def on_publish(*args: Any) -> None:
        reason: ReasonCode = args[3]
        reasons.append(reason.value)
        original(*args)

    paho.on_publish = on_publish
    return reasons


def refused(code: int | ReasonCode) -> bool:
    """Whether a SUBACK code (granted QoS or MQTT 5 reason) is a failure."""
    return (code.value if isinstance(code, ReasonCode) else code) >= 0x80


def batch(device: str, seq: int = 0) -> bytes:
    """An encoded one-reading telemetry batch."""
    now = datetime.now(UTC)
    reading = Reading(sensor="engine", metric="rpm", ts=now, value=1500.0)
    return encode(
        TelemetryBatch(device=device, boot="b1", seq=seq, sent_at=now, readings=[reading])
    )


def status(device: str, state: Literal["online", "offline"]) -> bytes:
    """An encoded gateway status message."""
    return encode(GatewayStatus(device=device, boot="b1", state=state, ts=datetime.now(UTC)))


# ---- pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic", "covered"),
    [
        ("lw/v1/gw-1/cmd/#", "lw/v1/gw-1/cmd/reboot", True),
        ("lw/v1/gw-1/cmd/#", "lw/v1/gw-1/cmd/#", True),
        ("lw/v1/gw-1/cmd/#", "lw/v1/gw-1/cmd", True),
        ("lw/v1/gw-1/cmd/#", "lw/v1/+/cmd/#", False),
        ("lw/v1/gw-1/cmd/#", "lw/v1/gw-2/cmd/reboot", False),
        ("lw/v1/+/telemetry", "lw/v1/+/telemetry", True),
        ("lw/v1/+/telemetry", "lw/v1/#", False),
        ("lw/v1/+/telemetry", "lw/v1/gw-1/telemetry/x", False),
        ("lw/v1/gw-1/telemetry", "lw/v1/+/telemetry", False),
    ],
)
def test_acl_covers_topics_and_filters(pattern: str, topic: str, covered: bool) -> None:
    """A filter is covered only if every topic it can match is."""
    assert acl_covers(pattern, topic) is covered


def test_secrets_stay_out_of_reprs() -> None:
    """Passwords never appear in a principal's or an ACL's text."""
    principal = Principal.gateway("gw-0001", "very-secret-password")
    shown = f"{principal!r} {principal} {mosquitto_acl([principal])} {amqtt_acl([principal])}"
    assert "very-secret-password" not in shown


def test_acl_has_explicit_user_blocks_only() -> None:
    """No `pattern` lines; a gateway's block names only its own topics."""
    acl = mosquitto_acl(default_principals())
    assert "pattern" not in acl
    block = acl.split("user gw-0002\n")[1].split("\n\n")[0].splitlines()
    assert block == [
        "topic write lw/v1/gw-0002/telemetry",
        "topic write lw/v1/gw-0002/status",
        "topic write lw/v1/gw-0002/health",
        "topic write lw/v1/gw-0002/ack",
        "topic read lw/v1/gw-0002/cmd/#",
    ]


def test_duplicate_usernames_are_refused() -> None:
    """Two principals with one username would make the rules ambiguous."""
    with pytest.raises(BrokerAccessError, match="listed twice"):
        mosquitto_acl(
            [Principal.gateway("gw-1", "pw123456"), Principal.ingestor("gw-1", "pw123456")]
        )


def test_test_config_differs_from_deployed_only_in_paths_and_listener(tmp_path: Path) -> None:
    """The tests run the deployed settings: only listeners, user and file paths are rewritten."""
    deployed = DEPLOYED_CONF.read_text().splitlines()
    rendered = mosquitto_conf(
        DEPLOYED_CONF.read_text(),
        host="127.0.0.1",
        port=12345,
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
        persistence_dir=tmp_path,
        user="nobody",
        tls=TlsListener(12346, tmp_path / "server.crt", tmp_path / "server.key"),
    ).splitlines()
    changed = {new.split()[0] for old, new in zip(deployed, rendered, strict=True) if old != new}
    assert changed == {
        "listener", "user", "password_file", "acl_file", "persistence_location", "certfile",
        "keyfile",
    }  # fmt: skip
    settings = dict(line.split(maxsplit=1) for line in rendered if line and line[0] != "#")
    assert settings["allow_anonymous"] == "false"
    assert int(settings["max_queued_messages"]) > 1000


# ---- both brokers -------------------------------------------------------------------------


async def test_device_telemetry_reaches_ingestor(broker: Target) -> None:
    """A gateway's QoS 1 telemetry reaches the ingestor's (shared) subscription intact."""
    async with broker.client(INGESTOR) as ingestor, broker.client("gw-0001") as gateway:
        await ingestor.subscribe(broker.ingest_filter, qos=1)
        await gateway.publish(telemetry_topic("gw-0001"), batch("gw-0001", seq=7), qos=1)
        message = await next_message(ingestor)
    assert message.qos == 1
    assert decode_telemetry(str(message.topic), bytes(message.payload)).key == ("gw-0001", "b1", 7)


@pytest.mark.parametrize(
    ("username", "password"), [("gw-0001", "not-the-password"), (None, None)], ids=["wrong", "anon"]
)
async def test_bad_or_missing_credentials_are_refused(
    broker: Target, username: str | None, password: str | None
) -> None:
    """A wrong password or no username at all is refused at CONNECT."""
    with pytest.raises(MqttConnectError, match="Not authorized") as refusal:
        async with broker.client(username, password):
            pass
    assert refusal.value.rc == NOT_AUTHORIZED  # also for 3.1.1: paho maps CONNACK 5 to 0x87


async def test_device_cannot_publish_for_another_device(broker: Target) -> None:
    """gw-0001 writing to gw-0002's topic reaches no one; its own next message does."""
    async with broker.client(INGESTOR) as ingestor, broker.client("gw-0001") as gateway:
        await ingestor.subscribe(device_topic("+", "telemetry"), qos=1)
        reasons = record_puback_reasons(gateway)
        await gateway.publish(telemetry_topic("gw-0002"), batch("gw-0002"), qos=1)
        await gateway.publish(telemetry_topic("gw-0001"), batch("gw-0001"), qos=1)
        message = await next_message(ingestor)
    assert str(message.topic) == telemetry_topic("gw-0001")
    if broker.name == "mosquitto" and broker.protocol is V5:
        assert reasons == [NOT_AUTHORIZED, 0]  # MQTT 5: PUBACK says "Not authorized"
    else:
        assert reasons == [0, 0]  # MQTT 3.1.1 has no way to say it: success, then dropped


async def test_device_cannot_read_another_devices_commands(broker: Target) -> None:
    """gw-0001 never receives gw-0002's commands; amqtt refuses the subscription outright."""
    async with broker.client("gw-0001") as gateway, broker.client(INGESTOR) as ingestor:
        (foreign,) = await gateway.subscribe(device_topic("gw-0002", "cmd/#"), qos=1)
        (own,) = await gateway.subscribe(device_topic("gw-0001", "cmd/#"), qos=1)
        await ingestor.publish(device_topic("gw-0002", "cmd/reboot"), b"other", qos=1)
        await ingestor.publish(device_topic("gw-0001", "cmd/reboot"), b"mine", qos=1)
        message = await next_message(gateway)
    assert message.payload == b"mine"
    assert not refused(own)
    if broker.name == "amqtt":
        assert refused(foreign)
    # Mosquitto 2.0's acl_file grants any SUBSCRIBE and enforces `read` per delivered message.


class RawGateway:
    """A gateway speaking bare MQTT 3.1.1 over a socket, so it can die without DISCONNECT."""

    def __init__(self, host: str, port: int, device: str, password: str) -> None:
        """Remember where and who to connect as."""
        self.address, self.device, self.password = (host, port), device, password
        self._reader: asyncio.StreamReader
        self._writer: asyncio.StreamWriter | None = None

    @staticmethod
    def _field(value: str | bytes) -> bytes:
        data = value.encode() if isinstance(value, str) else value
        return len(data).to_bytes(2, "big") + data

    @staticmethod
    def _packet(first_byte: int, body: bytes) -> bytes:
        length, encoded = len(body), bytearray()
        while True:
            length, digit = divmod(length, 128)
            encoded.append(digit | (0x80 if length else 0))
            if not length:
                return bytes([first_byte, *encoded]) + body

    async def connect(self, will: bytes, will_topic: str | None = None) -> int:
        """CONNECT with a retained QoS 1 last will (on its own status topic by default).

        Returns the CONNACK return code (0: accepted).
        """
        flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02  # user, pass, will retain+qos1, clean
        body = self._field("MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big")
        body += self._field(self.device) + self._field(will_topic or status_topic(self.device))
        body += self._field(will) + self._field(self.device) + self._field(self.password)
        self._reader, self._writer = await asyncio.open_connection(*self.address)
        self._writer.write(self._packet(0x10, body))
        async with asyncio.timeout(WAIT_S):
            connack = await self._reader.readexactly(4)
        assert connack[:3] == b"\x20\x02\x00"
        return connack[3]

    async def publish_retained(self, topic: str, payload: bytes) -> None:
        """PUBLISH QoS 1 retained and wait for the PUBACK."""
        assert self._writer is not None
        self._writer.write(self._packet(0x33, self._field(topic) + b"\x00\x01" + payload))
        async with asyncio.timeout(WAIT_S):
            assert await self._reader.readexactly(4) == b"\x40\x02\x00\x01"

    async def die(self) -> None:
        """Close the TCP connection without sending DISCONNECT."""
        assert self._writer is not None
        self._writer.close()
        await self._writer.wait_closed()


async def test_last_will_replaces_retained_birth_when_gateway_dies(broker: Target) -> None:
    """Retained "online" birth, then an unclean death: live and later subscribers see "offline"."""
    device = "gw-0003"
    gateway = RawGateway(broker.host, broker.port, device, broker.passwords[device])
    assert await gateway.connect(will=status(device, "offline")) == 0
    await gateway.publish_retained(status_topic(device), status(device, "online"))
    async with broker.client(INGESTOR) as live:
        await live.subscribe(device_topic("+", "status"), qos=1)
        birth = await next_message(live)
        await gateway.die()
        will = await next_message(live)
    async with broker.client(INGESTOR) as later:
        await later.subscribe(device_topic("+", "status"), qos=1)
        retained = await next_message(later)
    assert birth.retain
    assert decode_status(str(birth.topic), bytes(birth.payload)).state == "online"
    assert decode_status(str(will.topic), bytes(will.payload)).state == "offline"
    assert retained.retain
    assert decode_status(str(retained.topic), bytes(retained.payload)).state == "offline"


async def test_device_cannot_leave_a_last_will_for_another_device(broker: Target) -> None:
    """gw-0001's will on gw-0002's status never arrives; amqtt refuses such a CONNECT."""
    forger = RawGateway(broker.host, broker.port, "gw-0001", broker.passwords["gw-0001"])
    async with broker.client(INGESTOR) as live, broker.client("gw-0003") as honest:
        await live.subscribe(device_topic("+", "status"), qos=1)
        forged = status("gw-0002", "offline")
        connack = await forger.connect(will=forged, will_topic=status_topic("gw-0002"))
        await forger.die()
        await honest.publish(status_topic("gw-0003"), status("gw-0003", "online"), qos=1)
        message = await next_message(live)
    assert str(message.topic) == status_topic("gw-0003")
    assert connack == (5 if broker.name == "amqtt" else 0)  # 5: not authorised


# ---- Mosquitto only -----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
async def test_revoked_device_is_refused_after_reload(
    mosquitto_broker: MosquittoBroker, protocol: aiomqtt.ProtocolVersion
) -> None:
    """Revoke + SIGHUP: the live session is dropped, reconnects are refused, others carry on."""
    broker = mosquitto_broker

    def client(username: str) -> aiomqtt.Client:
        user, password = broker.credentials(username)
        return aiomqtt.Client(
            broker.host, broker.port, username=user, password=password, protocol=protocol
        )

    revoked = client("gw-0003")
    async with client("gw-0003") as connected:
        await connected.publish(telemetry_topic("gw-0003"), batch("gw-0003"), qos=1)
        broker.revoke("gw-0003")
        with pytest.raises(aiomqtt.MqttError):
            await next_message(connected)  # the broker closed this session on reload
    with pytest.raises(MqttConnectError):
        async with revoked:
            pass
    broker.add(Principal.gateway("gw-0004", "a-new-password"))
    async with client("gw-0001"), client("gw-0004"):
        pass


async def test_embedded_broker_refuses_another_principals_client_id() -> None:
    """On amqtt a session is found by client id alone, so gw-0002 may not claim "gw-0001"."""
    principals = default_principals()
    password = principals[1].password.get_secret_value()
    async with EmbeddedBroker(principals) as embedded:
        impostor = aiomqtt.Client(
            embedded.host,
            embedded.port,
            username="gw-0002",
            password=password,
            identifier="gw-0001",
        )
        with pytest.raises(MqttConnectError):
            async with impostor:
                pass


async def test_embedded_broker_takes_asked_port_or_falls_back() -> None:
    """The demo broker binds the port it asks for, or another one when that is taken."""
    principals = default_principals()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        async with EmbeddedBroker(principals, port=taken) as embedded:
            assert embedded.port != taken
            password = principals[0].password.get_secret_value()
            async with aiomqtt.Client(
                embedded.host, embedded.port, username="gw-0001", password=password
            ):
                pass
    wanted = free_port()
    async with EmbeddedBroker(principals, port=wanted) as embedded:
        assert embedded.port == wanted
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}, "the broker left tasks behind"
