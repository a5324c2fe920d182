"""A broker outage mid-stream on real parts: Mosquitto stopped and started again under a running
agent that polls two simulated Modbus slaves over a pty."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.agent import EdgeAgent
from edge.config import (
    DeliveryConfig,
    EdgeConfig,
    GatewayConfig,
    HealthConfig,
    ModbusRtuBusConfig,
    ModbusSlaveConfig,
)
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuBus
from firmware_sim.pty_pair import PtyPair
from leasewatch.demo import machine_fields
from leasewatch.wire import TelemetryBatch, decode_telemetry
from tests.edge.brokers import gateway_mqtt
from tests.services.mosquitto import MosquittoBroker
from tests.services.ports import wait_for_port

DEVICE = "gw-0001"
SENSORS = ("press", "pump")


def _config(broker: MosquittoBroker, port_path: str, data_dir: Path) -> EdgeConfig:
    slaves = [
        ModbusSlaveConfig(
            sensor=name, unit_id=unit, poll_interval=0.2, timeout=0.2, fields=machine_fields()
        )
        for unit, name in enumerate(SENSORS, start=1)
    ]
    return EdgeConfig(
        gateway=GatewayConfig(device=DEVICE, data_dir=data_dir),
        mqtt=gateway_mqtt(
            broker, DEVICE, reconnect_min=0.2, reconnect_max=1.0, publish_timeout=3.0
        ),
        # historical_after far beyond the outage: only the outage itself makes readings history
        delivery=DeliveryConfig(publish_interval=0.3, historical_after=600.0),
        health=HealthConfig(interval=1.0),
        modbus_rtu=[ModbusRtuBusConfig(port=port_path, slaves=slaves)],
    )


class Monitor:
    """The cloud's view: a persistent MQTT 5 session that reconnects after the broker restarts."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.arrived: list[tuple[datetime, TelemetryBatch]] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Collect every telemetry message, across broker restarts, until cancelled."""
        user, password = self.broker.credentials("ingestor")
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.broker.port, username=user, password=password,
                    identifier="outage-monitor", protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False, properties=properties,
                ) as client:  # fmt: skip
                    await client.subscribe(f"lw/v1/{DEVICE}/telemetry", qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        batch = decode_telemetry(str(message.topic), message.payload)
                        self.arrived.append((datetime.now(UTC), batch))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def messages(self) -> list[TelemetryBatch]:
        """Distinct messages by (boot, seq) in arrival order; a QoS 1 repeat must be identical."""
        seen: dict[tuple[str, int], TelemetryBatch] = {}
        for _, batch in self.arrived:
            key = (batch.boot, batch.seq)
            if key in seen:
                assert seen[key].readings == batch.readings, f"{key} came back different"
                continue
            seen[key] = batch
        return list(seen.values())


@contextlib.contextmanager
def broker_down(broker: MosquittoBroker) -> Iterator[None]:
    """Stop Mosquitto (it saves its sessions), then start it again on the same port and files."""
    broker.stop()
    try:
        yield
    finally:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with (broker.workdir / "mosquitto.log").open("ab") as log:
            broker._process = subprocess.Popen(  # the same broker, on its port
                [binary, "-c", str(broker.workdir / "mosquitto.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(broker.port, timeout=10, host="127.0.0.1")


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        assert time.monotonic() < deadline, f"not reached within {timeout} s"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def monitoring(broker: MosquittoBroker) -> AsyncIterator[Monitor]:
    monitor = Monitor(broker)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.wait_for(monitor.subscribed.wait(), 10)
        yield monitor
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.integration
async def test_a_broker_outage_mid_stream_every_reading_once_in_order_flagged_historical(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    machines = {unit: HeldMachine(running=True, motor_current=10.0 * unit) for unit in (1, 2)}
    async with PtyPair() as pair, ModbusRtuBus(pair.device_path, machines):
        agent = EdgeAgent(_config(mosquitto_broker, pair.client_path, tmp_path / "edge"))
        stop = asyncio.Event()
        async with monitoring(mosquitto_broker) as monitor:
            task = asyncio.create_task(agent.run(stop))
            try:
                await until(lambda: len(monitor.arrived) >= 5)  # live before the outage
                with broker_down(mosquitto_broker):
                    down_at = datetime.now(UTC)
                    await asyncio.sleep(5.0)
                    assert not agent.link.health.connected
                    held = agent.buffer.stats()
                    assert held["outbox_readings"] + held["pending_readings"] > 100
                    back_at = datetime.now(UTC)
                await until(  # caught up: nothing left, and the last message in is live
                    lambda: (
                        not agent.buffer.stats()["outbox_messages"]
                        and not monitor.messages()[-1].historical
                    )
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            taken = agent.health.readings_taken
            await until(lambda: sum(len(b.readings) for b in monitor.messages()) >= taken)
            await asyncio.sleep(0.5)  # anything more (a duplicate) would arrive now

    messages = monitor.messages()
    readings = [(b.historical, r) for b in messages for r in b.readings]
    keys = [(r.sensor, r.metric, r.ts) for _, r in readings]
    assert len(keys) == len(set(keys)) == taken, "every reading taken arrived, once"
    outage = [(h, r) for h, r in readings if down_at <= r.ts <= back_at]
    assert {r.sensor for _, r in outage} == set(SENSORS)
    assert len(outage) >= 2 * len(machine_fields()) * 15, "the agent polled through the outage"
    assert all(historical for historical, _ in outage), "taken during the outage: historical"
    for sensor in SENSORS:
        for metric in {r.metric for _, r in outage}:
            stamps = [r.ts for _, r in outage if (r.sensor, r.metric) == (sensor, metric)]
            assert stamps == sorted(stamps), f"{sensor}.{metric} arrived out of order"
    assert any(not b.historical and b.readings[0].ts > back_at for b in messages if b.readings), (
        "live again after the outage"
    )
    assert agent.link.health.outages == 1
    assert agent.link.health.connects == 2
