"""The real stack the faults run against, started and stopped as one async context manager.

Mosquitto (deployed config), VictoriaMetrics, a private PostgreSQL cluster, two ingest workers
and one detection worker; per gateway: a simulated Modbus RTU machine on a pty pair, a
cuttable relay to the broker, a wall clock the suite can step, a 64 MB tmpfs in a private
mount namespace as the agent's disk, and a real `leasewatch edge` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cloud.broker_access import Principal
from cloud.state import StateStore
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.chaos.clock import GatewayClock, build_clock_shim
from leasewatch.chaos.relay import CuttableRelay
from leasewatch.chaos.wire_record import WireRecord
from leasewatch.services.cloud_worker import CloudEndpoints, CloudWorker
from leasewatch.services.edge_agent import AgentSettings, EdgeAgentProcess
from leasewatch.services.mosquitto import MosquittoService
from leasewatch.services.postgres import PostgresService
from leasewatch.services.process import ServiceError, kill, wait_until
from leasewatch.services.victoria import VictoriaService

INGESTOR = "chaos-ingestor"
DISK_MB = 64
SERVED_LOG = 200_000


@dataclass
class Gateway:
    """One simulated asset with its gateway: machine, serial line, relay, clock, disk, agent."""

    device: str
    slave: ModbusRtuSlave
    relay: CuttableRelay
    clock: GatewayClock
    disk: Path
    namespace: subprocess.Popen[bytes]  # holds the mount namespace with the tmpfs
    agent: EdgeAgentProcess

    def disk_path(self, inside: Path) -> Path:
        """A path on the gateway's disk, as seen from outside its mount namespace."""
        return Path(f"/proc/{self.namespace.pid}/root") / inside.relative_to("/")


@dataclass(frozen=True)
class GatewaySpec:
    """What one gateway is started with."""

    device: str
    password: str
    broker_port: int
    library: Path  # the clock library
    poll_s: float


@dataclass
class Stack:
    """Every running part, for the faults and the accounting."""

    workdir: Path
    broker: MosquittoService
    victoria: VictoriaService
    postgres: PostgresService
    state_url: str
    ingestors: list[CloudWorker]
    detector: CloudWorker
    gateways: list[Gateway]
    wire: WireRecord


def _namespace_with_tmpfs(disk: Path) -> subprocess.Popen[bytes]:
    """A process holding a private mount namespace with a small tmpfs on `disk`."""
    disk.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={DISK_MB}m tmpfs {disk} && exec sleep infinity"
    holder = subprocess.Popen(["unshare", "-m", "sh", "-c", mount])  # noqa: S603, S607
    inside = Path(f"/proc/{holder.pid}/root") / disk.relative_to("/")
    probe = ["nsenter", "-t", str(holder.pid), "-m", "--", "mountpoint", "-q", str(disk)]

    def mounted() -> bool:
        return subprocess.run(probe, check=False).returncode == 0  # noqa: S603

    if not wait_until(mounted, holder, 10) or not inside.exists():
        holder.kill()
        raise ServiceError(f"could not mount a tmpfs on {disk} (needs root: unshare -m)")
    return holder


def _cloud(
    workdir: Path, broker: MosquittoService, victoria: VictoriaService, state_url: str
) -> tuple[list[CloudWorker], CloudWorker]:
    endpoints = CloudEndpoints(
        "127.0.0.1", broker.port, INGESTOR, broker.password(INGESTOR),
        victoria.telemetry_url, state_url,
        extra={"DETECT_SWEEP_S": "5", "DETECT_IDLE_CLOSE_S": "30"},
    )  # fmt: skip
    ingestors = [CloudWorker(endpoints, workdir, client_id=f"chaos-ingest-{n}") for n in (1, 2)]
    detector = CloudWorker(endpoints, workdir, client_id="chaos-detect-1", role="detect")
    return ingestors, detector


@contextlib.asynccontextmanager
async def running_stack(workdir: Path, devices: list[str], poll_s: float) -> AsyncIterator[Stack]:
    """Start everything (cloud first), yield it, stop everything (gateways first)."""
    passwords = {d: secrets.token_urlsafe(18) for d in [*devices, INGESTOR]}
    principals = [Principal.gateway(d, passwords[d]) for d in devices]
    principals.append(Principal.ingestor(INGESTOR, passwords[INGESTOR]))
    broker = MosquittoService(workdir / "mosquitto", principals)
    victoria = VictoriaService(workdir / "victoria")
    postgres = PostgresService()
    wire = WireRecord()
    async with contextlib.AsyncExitStack() as stack:
        for service in (broker, victoria, postgres):
            await asyncio.to_thread(service.start)
            stack.callback(service.stop)
        state_url = postgres.create_database("chaos")
        await asyncio.to_thread(lambda: StateStore(state_url).close())  # migrate once
        ingestors, detector = _cloud(workdir / "cloud", broker, victoria, state_url)
        for worker in [*ingestors, detector]:
            stack.callback(worker.stop)
        await asyncio.gather(*(asyncio.to_thread(w.start) for w in [*ingestors, detector]))
        library = await asyncio.to_thread(build_clock_shim, workdir)
        gateways = []
        for device in devices:
            spec = GatewaySpec(device, passwords[device], broker.port, library, poll_s)
            gateways.append(await _gateway(stack, workdir / device, spec, wire))
        yield Stack(
            workdir, broker, victoria, postgres, state_url, ingestors, detector, gateways, wire
        )


async def _gateway(
    stack: contextlib.AsyncExitStack, workdir: Path, spec: GatewaySpec, wire: WireRecord
) -> Gateway:
    """Start one gateway's parts; each is stopped by `stack` in reverse order."""
    device = spec.device
    await asyncio.to_thread(workdir.mkdir, parents=True)
    pair = await stack.enter_async_context(PtyPair())
    machine = HeldMachine(running=True, motor_current=10.0, temperature=30.0)
    slave = await stack.enter_async_context(
        ModbusRtuSlave(machine, pair.device_path, log_size=SERVED_LOG)
    )
    relay = CuttableRelay(spec.broker_port, wire.on_publish)
    await relay.start()
    stack.push_async_callback(relay.close)
    clock = GatewayClock(spec.library, workdir / "clock-offset")
    disk = workdir / "disk"
    namespace = await asyncio.to_thread(_namespace_with_tmpfs, disk)
    stack.callback(kill, namespace)
    settings = AgentSettings(
        device=device, password=spec.password, mqtt_port=relay.port, data_dir=disk / "edge",
        serial_port=pair.client_path, poll_interval=spec.poll_s,
    )  # fmt: skip
    prefix = ("nsenter", "-t", str(namespace.pid), "-m", "--")
    agent = EdgeAgentProcess(settings, workdir, prefix=prefix, env=clock.env())
    agent.start()
    stack.callback(agent.stop)
    return Gateway(device, slave, relay, clock, disk, namespace, agent)
