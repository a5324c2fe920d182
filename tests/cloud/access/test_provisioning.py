"""Gateway provisioning through the API, enforced by a real Mosquitto and by the demo's amqtt.

Mosquitto: the API rewrites its password file and ACL and SIGHUPs it (pid from a pid file); an
issued password works for the gateway's own topics only, another device's password is refused,
rotation retires the old password and revocation cuts off a live session, all without a
broker restart.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import psutil  # type: ignore[import-untyped]
import pytest
from aiomqtt.exceptions import MqttConnectError
from fastapi.testclient import TestClient

from cloud.access.broker_sync import EmbeddedGateways
from cloud.access.roles import Role
from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.broker_access import Principal, device_topic
from cloud.embedded_broker import EmbeddedBroker
from leasewatch.wire import telemetry_topic
from tests.cloud.access.conftest import AccessApp, make_services
from tests.services.mosquitto import INGESTOR, MosquittoBroker, MosquittoFactory

WAIT_S = 5.0
V5 = aiomqtt.ProtocolVersion.V5
V311 = aiomqtt.ProtocolVersion.V311


def _pid_of(broker: MosquittoBroker) -> int:
    """The pid of the Mosquitto process running this broker's config."""
    conf = str(broker.workdir / "mosquitto.conf")
    for process in psutil.process_iter(["cmdline"]):
        if conf in (process.info["cmdline"] or []):
            return int(process.pid)
    raise AssertionError(f"no mosquitto process runs {conf}")


def _reloads(broker: MosquittoBroker) -> int:
    return broker.log_path.read_text(errors="replace").count("Reloading config.")


def _wait_reload(broker: MosquittoBroker, before: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while _reloads(broker) == before:
        assert time.monotonic() < deadline, f"no reload:\n{broker.log_tail()}"
        time.sleep(0.02)


@pytest.fixture
def managed(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> Iterator[tuple[AccessApp, MosquittoBroker]]:
    """Mosquitto with only the ingestor account, and an API that provisions gateways on it."""
    broker = mosquitto_factory([Principal.ingestor(INGESTOR, "ingestor-password-0001")])
    base = tmp_path / "base"
    base.mkdir()
    shutil.copy(broker.workdir / "passwd", base / "passwd")
    shutil.copy(broker.workdir / "acl", base / "acl")
    (base / "mosquitto.pid").write_text(f"{_pid_of(broker)}\n")
    services = make_services(
        tmp_path,
        broker_password_file=broker.workdir / "passwd",
        broker_acl_file=broker.workdir / "acl",
        broker_base_password_file=base / "passwd",
        broker_base_acl_file=base / "acl",
        broker_pid_file=base / "mosquitto.pid",
    )
    with TestClient(create_app(services)) as client:
        app = AccessApp(client, services, {})
        app.keys = {Role.OPERATOR: app.new_key("ops", Role.OPERATOR)}
        yield app, broker
    services.state.close()


def _client(
    host: str, port: int, user: str, password: str, protocol: aiomqtt.ProtocolVersion = V5
) -> aiomqtt.Client:
    return aiomqtt.Client(
        host, port, username=user, password=password, protocol=protocol, timeout=WAIT_S
    )


def _provision(app: AccessApp, device: str) -> str:
    made = app.client.post("/v1/devices", headers=app.auth(Role.OPERATOR), json={"device": device})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["mqtt_username"], body["generation"], body["broker"]) == (device, 1, "reloaded")
    password: str = body["mqtt_password"]
    again = app.client.get(f"/v1/devices/{device}/credentials", headers=app.auth(Role.OPERATOR))
    assert again.json()["mqtt_password"] is None
    return password


async def _next(client: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(WAIT_S):
        return await anext(client.messages)


@pytest.mark.integration
async def test_mosquitto_enforces_issued_rotated_and_revoked_credentials(
    managed: tuple[AccessApp, MosquittoBroker],
) -> None:
    app, broker = managed
    host, port, ops = broker.host, broker.port, app.auth(Role.OPERATOR)
    before = _reloads(broker)
    first = _provision(app, "gw-0100")
    other = _provision(app, "gw-0200")
    _wait_reload(broker, before)
    stored = (broker.workdir / "passwd").read_text()
    assert first not in stored and other not in stored and "gw-0100:$7$" in stored
    with pytest.raises(MqttConnectError):
        async with _client(host, port, "gw-0100", other):
            pass
    async with (
        _client(host, port, INGESTOR, "ingestor-password-0001") as ingestor,
        _client(host, port, "gw-0100", first) as gateway,
    ):
        await ingestor.subscribe(device_topic("+", "telemetry"), qos=1)
        await gateway.subscribe(device_topic("gw-0200", "cmd/#"), qos=1)
        await gateway.subscribe(device_topic("gw-0100", "cmd/#"), qos=1)
        await ingestor.publish(device_topic("gw-0200", "cmd/reboot"), b"not yours", qos=1)
        await ingestor.publish(device_topic("gw-0100", "cmd/reboot"), b"yours", qos=1)
        assert (await _next(gateway)).payload == b"yours"  # read is enforced per delivery
        await gateway.publish(telemetry_topic("gw-0200"), b"forged", qos=1)
        await gateway.publish(telemetry_topic("gw-0100"), b"own", qos=1)
        assert (await _next(ingestor)).payload == b"own"
        before = _reloads(broker)
        rotated = app.client.post("/v1/devices/gw-0100/credentials/rotate", headers=ops).json()
        assert rotated["generation"] == 2 and rotated["mqtt_password"] != first
        _wait_reload(broker, before)
        with pytest.raises(MqttConnectError):
            async with _client(host, port, "gw-0100", first):
                pass
    async with _client(host, port, "gw-0100", rotated["mqtt_password"], V311) as live:
        await live.subscribe(device_topic("gw-0100", "cmd/#"), qos=1)
        before = _reloads(broker)
        revoked = app.client.delete("/v1/devices/gw-0100/credentials", headers=ops).json()
        assert revoked["revoked_at"] is not None
        _wait_reload(broker, before)
        with pytest.raises(aiomqtt.MqttError):
            await _next(live)  # Mosquitto closed the session on reload
    with pytest.raises(MqttConnectError):
        async with _client(host, port, "gw-0100", rotated["mqtt_password"]):
            pass
    async with _client(host, port, "gw-0200", other):
        pass  # the other gateway carries on


async def test_embedded_broker_enforces_provisioning_for_the_demo(tmp_path: Path) -> None:
    service = Principal.ingestor(INGESTOR, "ingestor-password-0001")
    async with EmbeddedBroker([service]) as embedded:
        services = make_services(tmp_path)
        services = Services(
            services.settings,
            services.telemetry,
            services.state,
            services.metrics,
            gateway_broker=EmbeddedGateways(embedded),
        )
        with TestClient(create_app(services)) as client:
            app = AccessApp(client, services, {})
            app.keys = {Role.OPERATOR: app.new_key("ops", Role.OPERATOR)}
            first, other = _provision(app, "gw-0100"), _provision(app, "gw-0200")
            host, port = embedded.host, embedded.port
            with pytest.raises(MqttConnectError):
                async with _client(host, port, "gw-0100", other, V311):
                    pass
            async with (
                _client(host, port, INGESTOR, "ingestor-password-0001", V311) as ingestor,
                _client(host, port, "gw-0100", first, V311) as revoked,
                _client(host, port, "gw-0200", other, V311) as kept,
            ):
                await ingestor.subscribe(device_topic("+", "telemetry"), qos=1)
                await revoked.publish(telemetry_topic("gw-0100"), b"before", qos=1)
                assert (await _next(ingestor)).payload == b"before"
                gone = client.delete(
                    "/v1/devices/gw-0100/credentials", headers=app.auth(Role.OPERATOR)
                )
                assert gone.status_code == 200
                await revoked.publish(telemetry_topic("gw-0100"), b"after revocation", qos=1)
                await kept.publish(telemetry_topic("gw-0200"), b"kept", qos=1)
                assert (await _next(ingestor)).payload == b"kept"
            with pytest.raises(MqttConnectError):
                async with _client(host, port, "gw-0100", first, V311):
                    pass
        services.state.close()


def test_without_a_managed_broker_registration_only_registers(access_app: AccessApp) -> None:
    ops = access_app.auth(Role.OPERATOR)
    made = access_app.client.post("/v1/devices", headers=ops, json={"device": "gw-0300"})
    assert (made.status_code, made.json()["broker"], made.json()["mqtt_password"]) == (
        201,
        "unmanaged",
        None,
    )
    rotate = access_app.client.post("/v1/devices/gw-0300/credentials/rotate", headers=ops)
    assert (rotate.status_code, rotate.json()["code"]) == (409, "broker_unmanaged")
