"""The faults, each a coroutine that injects one kind of failure into a running stack.

Every fault runs inside a `Phase`: the readings a gateway took during the phase (by the true
time it read them) are the phase's, and so are the alerts opened during it. Each fault ends by
undoing itself and letting the system settle for `settle_s` before the next one starts.
The target gateway is the first one; the second runs untouched beside it as the control.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from leasewatch.chaos.stack import Gateway, Stack


class Fault(StrEnum):
    """The faults of the suite (issue 9), by their option names."""

    BROKER_RESTART = "broker-restart"
    INGESTOR_KILL = "ingestor-kill"
    EDGE_KILL = "edge-kill"
    STORE_DOWN = "store-down"
    NETWORK_CUT = "network-cut"
    DISK_FULL = "disk-full"
    CLOCK_JUMP = "clock-jump"


@dataclass(frozen=True)
class ChaosOptions:
    """Which faults, how often and for how long (defaults: the issue's values)."""

    faults: tuple[Fault, ...] = tuple(Fault)
    repetitions: int = 3
    store_down_s: float = 60.0
    cut_s: float = 600.0
    disk_full_s: float = 60.0
    clock_jump_s: float = 3600.0  # the step; the gateway stays on it for clock_hold_s
    clock_hold_s: float = 60.0
    down_s: float = 3.0  # how long a killed process stays down
    settle_s: float = 15.0
    poll_s: float = 0.5
    drain_timeout_s: float = 120.0


@dataclass
class Phase:
    """One fault's window and what happened in it, for attributing readings and alerts."""

    fault: str
    started: datetime
    ended: datetime | None = None
    edge_kills: list[tuple[str, datetime]] = field(default_factory=list)
    broker_back: list[datetime] = field(default_factory=list)  # listening again
    clock_steps: list[tuple[str, datetime, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def now() -> datetime:
    """Wall-clock time (the true one: the chaos process runs on the machine's clock)."""
    return datetime.now(UTC)


async def broker_restarts(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """Mosquitto stopped (SIGTERM, persistence saved) and started on the same port, N times."""
    for _ in range(options.repetitions):
        await asyncio.to_thread(stack.broker.restart)
        phase.broker_back.append(now())
        await asyncio.sleep(options.settle_s)
    phase.notes.append(f"{options.repetitions} graceful restarts")


async def ingestor_kills(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """kill -9 of one ingest worker (alternating), restarted after `down_s`, N times."""
    for n in range(options.repetitions):
        worker = stack.ingestors[n % len(stack.ingestors)]
        worker.kill()
        await asyncio.sleep(options.down_s)
        await asyncio.to_thread(worker.start)
        await asyncio.sleep(options.settle_s)
    phase.notes.append(f"{options.repetitions} x kill -9, {options.down_s:g} s down")


async def edge_kills(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """kill -9 of the target gateway's agent, restarted after `down_s`, N times."""
    gateway = stack.gateways[0]
    for _ in range(options.repetitions):
        await asyncio.sleep(options.settle_s / 3)  # mid-stream: readings in hand
        gateway.agent.kill()
        phase.edge_kills.append((gateway.device, now()))
        await asyncio.sleep(options.down_s)
        gateway.agent.start()
        await asyncio.sleep(options.settle_s)
    phase.notes.append(f"{options.repetitions} x kill -9, {options.down_s:g} s down")


async def store_down(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """VictoriaMetrics killed (-9) for `store_down_s`, then started on the same port and data.

    A crash, not a stop: what VM acknowledged must already be on disk (the store's durable
    writes, cloud/telemetry/victoria.py); a graceful stop would flush it and prove nothing.
    """
    await asyncio.to_thread(stack.victoria.kill)
    await asyncio.sleep(options.store_down_s)
    await asyncio.to_thread(stack.victoria.start)
    await asyncio.sleep(options.settle_s)
    phase.notes.append(f"kill -9, down {options.store_down_s:g} s")


async def network_cut(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """The target gateway's link to the broker black-holed for `cut_s`."""
    gateway = stack.gateways[0]
    gateway.relay.cut()
    await asyncio.sleep(options.cut_s)
    gateway.relay.restore()
    await asyncio.sleep(options.settle_s + options.cut_s / 20)  # the backlog replays
    phase.notes.append(f"cut {options.cut_s:g} s (black hole)")


async def disk_full(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """The target gateway's disk filled to the last byte for `disk_full_s`, then freed."""
    gateway = stack.gateways[0]
    filler = gateway.disk / "filler"
    free_kb = await _fill(gateway, filler)
    phase.notes.append(f"full {options.disk_full_s:g} s (free after filling: {free_kb} kB)")
    await asyncio.sleep(options.disk_full_s)
    gateway.disk_path(filler).unlink()
    await asyncio.sleep(options.settle_s)


async def _fill(gateway: Gateway, filler: object) -> str:
    """Fill the gateway's disk from inside its mount namespace; the kB left free."""
    command = f"dd if=/dev/zero of={filler} bs=64k 2>/dev/null; df -k {gateway.disk} | tail -1"
    argv = ["nsenter", "-t", str(gateway.namespace.pid), "-m", "--", "sh", "-c", command]
    result = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, check=False
    )
    fields = result.stdout.split()
    return fields[3] if len(fields) > 3 else "unknown"


async def clock_jump(stack: Stack, options: ChaosOptions, phase: Phase) -> None:
    """The target gateway's wall clock stepped by `clock_jump_s`, held, then stepped back."""
    gateway = stack.gateways[0]
    gateway.clock.step(options.clock_jump_s)
    phase.clock_steps.append((gateway.device, now(), options.clock_jump_s))
    await asyncio.sleep(options.clock_hold_s)
    gateway.clock.step(0.0)
    phase.clock_steps.append((gateway.device, now(), 0.0))
    await asyncio.sleep(options.settle_s)
    phase.notes.append(f"step {options.clock_jump_s:+g} s for {options.clock_hold_s:g} s, back")


FAULTS: dict[Fault, Callable[[Stack, ChaosOptions, Phase], Awaitable[None]]] = {
    Fault.BROKER_RESTART: broker_restarts,
    Fault.INGESTOR_KILL: ingestor_kills,
    Fault.EDGE_KILL: edge_kills,
    Fault.STORE_DOWN: store_down,
    Fault.NETWORK_CUT: network_cut,
    Fault.DISK_FULL: disk_full,
    Fault.CLOCK_JUMP: clock_jump,
}
