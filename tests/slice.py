"""The vertical slice assembled for tests: simulated device, edge agent, cloud, API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from cloud.runtime import CloudRuntime, bind_listener
from cloud.settings import CloudSettings
from edge.agent import EdgeAgent
from edge.config import DeliveryConfig, EdgeConfig, FeaturesConfig, HealthConfig
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.demo import edge_config

API_KEY = "test-api-key-0123456789"


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and how each side logs in."""

    host: str
    port: int
    protocol: int
    shared_group: str
    ingestor_password: str
    device_passwords: dict[str, str]


def cloud_settings(broker: BrokerAddress, telemetry_url: str, state_dir: Path) -> CloudSettings:
    """Cloud settings for a test broker (no TLS on loopback) and the given telemetry store."""
    return CloudSettings(
        mode="production",
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username="ingestor",
        mqtt_password=SecretStr(broker.ingestor_password),
        mqtt_protocol=broker.protocol,  # type: ignore[arg-type]
        mqtt_tls=False,
        mqtt_shared_group=broker.shared_group,
        telemetry_url=telemetry_url,
        state_url=f"sqlite:///{state_dir / 'state.sqlite'}",
        api_key=SecretStr(API_KEY),
        ingest_batch_wait=0.05,
    )


DEVICES = ("gw-0001", "gw-0002", "gw-0003")


@asynccontextmanager
async def running_cloud(
    settings: CloudSettings, devices: tuple[str, ...] = DEVICES
) -> AsyncIterator[tuple[CloudRuntime, str]]:
    """Ingestor and API (devices registered) until the block ends; yields runtime and API URL."""
    runtime = CloudRuntime(settings)
    await runtime.open()
    for device in devices:
        runtime.services.state.register_device(device, datetime.now(UTC))
    sock = bind_listener("127.0.0.1", 0, fall_back=False)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop, api_socket=sock))
    try:
        await asyncio.wait_for(runtime.ingestor.connected.wait(), timeout=15)
        yield runtime, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        await runtime.close()


def gateway_config(
    device: str,
    port_path: str,
    broker: BrokerAddress,
    data_dir: Path,
    delivery: DeliveryConfig | None = None,
) -> EdgeConfig:
    """A fast-polling gateway configuration for tests."""
    base = edge_config(
        device, port_path, broker.device_passwords[device], broker.port, data_dir, interval=0.5
    )
    bus = base.modbus_rtu[0]
    slave = bus.slaves[0].model_copy(update={"poll_interval": 0.25})
    return base.model_copy(
        update={
            "mqtt": base.mqtt.model_copy(
                update={"host": broker.host, "protocol": broker.protocol, "reconnect_max": 1.0}
            ),
            "delivery": delivery or DeliveryConfig(publish_interval=0.5),
            "features": FeaturesConfig(),  # plain register values, comparable with the device
            "health": HealthConfig(interval=0.5),
            "modbus_rtu": [bus.model_copy(update={"slaves": [slave]})],
        }
    )


@dataclass
class RunningGateway:
    """A simulated machine and the edge agent reading it."""

    machine: HeldMachine
    slave: ModbusRtuSlave
    agent: EdgeAgent
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def shutdown(self) -> None:
        """Stop the agent; it seals and sends what it holds before it returns."""
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=30)


@asynccontextmanager
async def running_gateway(
    device: str,
    broker: BrokerAddress,
    data_dir: Path,
    machine: HeldMachine,
    delivery: DeliveryConfig | None = None,
) -> AsyncIterator[RunningGateway]:
    """A Modbus RTU slave on a pty pair and a real edge agent polling it."""
    async with PtyPair() as pair, ModbusRtuSlave(machine, pair.device_path) as slave:
        agent = EdgeAgent(gateway_config(device, pair.client_path, broker, data_dir, delivery))
        stop = asyncio.Event()
        gateway = RunningGateway(machine, slave, agent, stop, asyncio.create_task(agent.run(stop)))
        try:
            yield gateway
        finally:
            if not gateway.task.done():
                await gateway.shutdown()


async def api_get(api_url: str, path: str, **params: Any) -> Any:
    """GET an API route with the test key; fail on any non-2xx answer."""
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        response = await client.get(path, params=params, headers={"X-API-Key": API_KEY})
        response.raise_for_status()
        return response.json()


async def api_post(api_url: str, path: str, body: dict[str, Any]) -> Any:
    """POST JSON to an API route with the test key; fail on any non-2xx answer."""
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        response = await client.post(path, json=body, headers={"X-API-Key": API_KEY})
        response.raise_for_status()
        return response.json()


async def eventually(
    probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 20.0
) -> Any:
    """Call an async probe until its result satisfies `done`; fail with the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s; last: {result!r}")
        await asyncio.sleep(0.2)


async def settled(probe: Callable[[], Any], quiet: float = 2.0, timeout: float = 30.0) -> Any:
    """Call an async probe until its result has not changed for `quiet` seconds.

    For a snapshot of what is still arriving: messages the broker accepted before a kill -9
    are stored a moment later, and a count taken at once would miss them.
    """
    deadline = time.monotonic() + timeout
    last = await probe()
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout} s; last: {last!r}")
        await asyncio.sleep(0.25)
        result = await probe()
        if result != last:
            last, since = result, time.monotonic()
    return last


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
