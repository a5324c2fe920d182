"""`leasewatch demo`: the whole system in one process, on embedded defaults.

An amqtt broker with per-device credentials, N simulated machines on pty pairs, N real edge
agents reading them over Modbus RTU, the cloud ingestor, SQLite stores and the API.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from cloud.access.broker_sync import EmbeddedGateways
from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from cloud.runtime import CloudRuntime, bind_listener
from cloud.settings import CloudSettings
from edge.agent import EdgeAgent
from edge.config import (
    DeliveryConfig,
    EdgeConfig,
    FeaturesConfig,
    GatewayConfig,
    HealthConfig,
    MachineStateConfig,
    ModbusRtuBusConfig,
    ModbusSlaveConfig,
    MqttConfig,
)
from edge.decoding import RegisterField
from firmware_sim.cli import SimulatedAsset, fleet
from firmware_sim.machine import MachineModel
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from firmware_sim.register_map import MACHINE_MAP
from leasewatch.logs import configure_logging

INGESTOR = "ingestor"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs and where."""

    assets: int = 20
    seed: int = 1
    data_dir: Path = Path("var/demo")
    mqtt_port: int = 1883
    api_port: int = 8000
    publish_interval: float = 2.0


def machine_fields() -> list[RegisterField]:
    """Edge field specs for the simulated machine's register map (what an installer writes)."""
    return [
        RegisterField(
            metric=f.metric,
            address=f.address,
            kind=f.kind.value,
            word_order=f.word_order.value,
            scale=f.scale,
            unit=f.unit,
        )
        for f in MACHINE_MAP.fields
    ]


def gateway_id(index: int) -> str:
    """Device id of the demo's n-th gateway."""
    return f"gw-{index:04d}"


def edge_config(
    device: str, port_path: str, password: str, mqtt_port: int, data_dir: Path, interval: float
) -> EdgeConfig:
    """Configuration of one demo gateway: one Modbus RTU bus with the machine on unit 1."""
    slave = ModbusSlaveConfig(
        sensor="machine", unit_id=1, poll_interval=1.0, fields=machine_fields()
    )
    return EdgeConfig(
        gateway=GatewayConfig(device=device, data_dir=data_dir / "edge" / device),
        mqtt=MqttConfig(
            host="127.0.0.1",
            port=mqtt_port,
            username=device,
            password=SecretStr(password),
            protocol=311,
            tls=False,
        ),
        delivery=DeliveryConfig(publish_interval=interval),
        modbus_rtu=[ModbusRtuBusConfig(port=port_path, slaves=[slave])],
        features=FeaturesConfig(
            machine_state=[
                MachineStateConfig(
                    sensor="machine",
                    metric="motor_current",
                    idle_above=0.5,
                    running_above=2.0,
                    hysteresis=0.2,
                    min_dwell=5.0,
                )
            ]
        ),
        health=HealthConfig(interval=30.0),
    )


class Demo:
    """Everything the demo runs, started in dependency order and stopped in reverse."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.api_key = secrets.token_urlsafe(18)
        self.passwords = {
            gateway_id(i): secrets.token_urlsafe(12) for i in range(1, options.assets + 1)
        }
        self.passwords[INGESTOR] = secrets.token_urlsafe(12)
        self.runtime: CloudRuntime | None = None
        self.api_url = ""

    def principals(self) -> list[Principal]:
        """Broker accounts: one per gateway, one for the ingestor."""
        gateways = [Principal.gateway(d, p) for d, p in self.passwords.items() if d != INGESTOR]
        return [*gateways, Principal.ingestor(INGESTOR, self.passwords[INGESTOR])]

    def cloud_settings(self, mqtt_port: int) -> CloudSettings:
        """Demo-mode settings: embedded broker without TLS or shared subscriptions, SQLite."""
        data = self.options.data_dir.resolve()
        return CloudSettings(
            mode="demo",
            mqtt_host="127.0.0.1",
            mqtt_port=mqtt_port,
            mqtt_username=INGESTOR,
            mqtt_password=SecretStr(self.passwords[INGESTOR]),
            mqtt_protocol=311,
            mqtt_tls=False,
            mqtt_shared_group="",
            telemetry_url=f"sqlite:///{data / 'telemetry.sqlite'}",
            state_url=f"sqlite:///{data / 'state.sqlite'}",
            api_key=SecretStr(self.api_key),
        )

    async def run(self, stop: asyncio.Event, on_ready: asyncio.Event | None = None) -> None:
        """Start everything, serve until `stop` is set, then stop everything cleanly."""
        prepare_data_dir(self.options.data_dir)
        async with AsyncExitStack() as stack:
            broker = await stack.enter_async_context(
                EmbeddedBroker(self.principals(), port=self.options.mqtt_port)
            )
            runtime = CloudRuntime(self.cloud_settings(broker.port))
            await runtime.open()
            stack.push_async_callback(runtime.close)
            for device in self.passwords:
                if device != INGESTOR:
                    runtime.services.state.register_device(device, datetime.now(UTC))
            # gateways registered through the API get accounts on this broker at once
            gateways = EmbeddedGateways(broker)
            runtime.services = replace(runtime.services, gateway_broker=gateways)
            self.runtime = runtime
            sock = bind_listener("127.0.0.1", self.options.api_port, fall_back=True)
            self.api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            agents = await self._start_fleet(stack, broker.port)
            # The cloud subscribes before the gateways publish and stops after they have
            # stopped: amqtt loses a message it fans out while subscriptions change.
            cloud_stop = asyncio.Event()
            async with asyncio.TaskGroup() as group:
                group.create_task(runtime.run(cloud_stop, api_socket=sock, detect=True))
                await asyncio.wait_for(runtime.wait_subscribed(), SUBSCRIBE_TIMEOUT_S)
                gateways_running = [group.create_task(agent.run(stop)) for agent in agents]
                if on_ready is not None:
                    on_ready.set()
                await asyncio.gather(*gateways_running)
                cloud_stop.set()

    async def _start_fleet(self, stack: AsyncExitStack, mqtt_port: int) -> list[EdgeAgent]:
        agents = []
        for index, asset in enumerate(fleet(self.options.assets, self.options.seed), start=1):
            pair = await stack.enter_async_context(PtyPair())
            await stack.enter_async_context(ModbusRtuSlave(_model(asset), pair.device_path))
            device = gateway_id(index)
            config = edge_config(
                device,
                pair.client_path,
                self.passwords[device],
                mqtt_port,
                self.options.data_dir,
                self.options.publish_interval,
            )
            agents.append(EdgeAgent(config))
        return agents

    def stored_readings(self) -> int:
        """Readings the cloud has stored so far (from the registry)."""
        if self.runtime is None:
            return 0
        return sum(int(str(d["readings"])) for d in self.runtime.services.state.devices())


DEMO_MARKER = ".leasewatch-demo"
SUBSCRIBE_TIMEOUT_S = 30.0


class DemoDataDirError(Exception):
    """The demo's data directory holds something that is not an earlier demo's data."""


def prepare_data_dir(path: Path) -> None:
    """Empty an earlier demo's data directory; refuse to wipe anything else."""
    if path.exists() and any(path.iterdir()):
        if not (path / DEMO_MARKER).exists():
            raise DemoDataDirError(
                f"{path} is not empty and was not made by `leasewatch demo`; "
                "choose another --data-dir (the demo wipes its data directory at start)"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARKER).write_text("data of `leasewatch demo`; wiped at every start\n")


def _model(asset: SimulatedAsset) -> MachineModel:
    return MachineModel(asset.seed, initial_run_hours=asset.initial_run_hours)


async def _announce(demo: Demo, ready: asyncio.Event, started: float, stop: asyncio.Event) -> None:
    await ready.wait()
    typer.echo(f"Dashboards: {demo.api_url}/login   (API key for this run: {demo.api_key})")
    typer.echo(f"API docs:   {demo.api_url}/docs")
    while not stop.is_set() and demo.stored_readings() == 0:  # noqa: ASYNC110 - polls a store
        await asyncio.sleep(0.25)
    if not stop.is_set():
        typer.echo(f"First reading stored {time.monotonic() - started:.1f} s after start.")
        typer.echo("Running; Ctrl-C stops it.")


async def _main(options: DemoOptions) -> None:
    started = time.monotonic()
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    # Every gateway's buffer and the cloud's stores do blocking I/O in worker threads; with the
    # default pool (cores + 4) the ingestor's writes queue behind 20 gateways' fsyncs.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=2 * options.assets + 16))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = Demo(options)
    typer.echo(f"Starting LeaseWatch demo: {options.assets} assets, data in {options.data_dir}/")
    async with asyncio.TaskGroup() as group:
        group.create_task(_announce(demo, ready, started, stop))
        group.create_task(demo.run(stop, ready))
    typer.echo("Stopped cleanly.")


def demo(
    assets: Annotated[int, typer.Option(min=1, max=200, help="Simulated assets.")] = 20,
    seed: Annotated[int, typer.Option(help="Fleet seed.")] = 1,
    data_dir: Annotated[Path, typer.Option(help="Demo data (wiped at start).")] = Path("var/demo"),
    mqtt_port: Annotated[int, typer.Option(help="Preferred MQTT port.")] = 1883,
    api_port: Annotated[int, typer.Option(help="Preferred API port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING",
) -> None:
    """Run the whole system on embedded defaults until Ctrl-C."""
    configure_logging(log_level)
    try:
        prepare_data_dir(data_dir)
    except DemoDataDirError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    asyncio.run(_main(DemoOptions(assets, seed, data_dir, mqtt_port, api_port)))
