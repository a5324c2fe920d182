"""One chaos run: start the stack, run the chosen faults in phases, drain, count, stop."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from leasewatch.chaos.accounting import FaultOutcome, Poll, match_polls, outcomes, stored_twice
from leasewatch.chaos.collect import (
    StoredState,
    held_in_buffer,
    read_state_store,
    read_telemetry,
)
from leasewatch.chaos.faults import FAULTS, ChaosOptions, Phase, now
from leasewatch.chaos.stack import Stack, running_stack

log = structlog.get_logger(__name__)
DEVICES = ["chaos-gw-1", "chaos-gw-2"]
FIELDS_PER_POLL = 6  # the simulated machine's register map: one reading per field
_STABLE_S = 20.0  # the ledger stopped growing: the drain is over


@dataclass
class ChaosReport:
    """Everything a run measured."""

    options: dict[str, object]
    started: datetime
    run_s: float
    rows: list[FaultOutcome]
    held_at_end: dict[str, int]
    redeliveries: int
    rejections: dict[str, int]
    stored_twice: int
    unmatched_readings: int
    undecodable: int
    tap_errors: int
    unreadable_dead_letters: int
    evicted_or_dropped: dict[str, int] = field(default_factory=dict)
    stepped_readings: int = 0  # sent readings stamped on a stepped clock
    clock_steps: dict[str, tuple[int, float]] = field(default_factory=dict)  # newest health report
    alerts_measured: bool = True

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["started"] = self.started.isoformat()
        return data


async def run_chaos(options: ChaosOptions, workdir: Path) -> ChaosReport:
    """Run the suite in `workdir` (its logs stay there); the report."""
    began, started = time.monotonic(), now()
    async with running_stack(workdir, DEVICES, options.poll_s) as stack:
        await _wait_flowing(stack)
        phases = [Phase("steady (no fault)", now())]
        await asyncio.sleep(options.settle_s)
        for fault in options.faults:
            phases[-1].ended = now()
            phases.append(Phase(fault.value, now()))
            log.info("fault", fault=fault.value)
            await FAULTS[fault](stack, options, phases[-1])
        phases[-1].ended = now()
        await _drain(stack, options)
        state = await asyncio.to_thread(_collect, stack)
        polls = _polls(stack)
    steps = {
        d: [(when, off) for p in phases for dev, when, off in p.clock_steps if dev == d]
        for d in DEVICES
    }
    match = match_polls(polls, stack.wire, steps)
    rows = outcomes(phases, polls, stack.wire, state, alerts_measured=True)
    return ChaosReport(
        options=_options_json(options),
        started=started,
        run_s=round(time.monotonic() - began, 1),
        rows=rows,
        held_at_end=state.held_at_end,
        redeliveries=state.redeliveries,
        rejections=state.rejections,
        stored_twice=stored_twice(state),
        unmatched_readings=len(match.unmatched),
        stepped_readings=match.stepped,
        clock_steps={d: (h.clock_steps, h.clock_held_s) for d, h in stack.wire.health.items()},
        undecodable=stack.wire.undecodable,
        tap_errors=sum(g.relay.tap_errors for g in stack.gateways),
        unreadable_dead_letters=state.unreadable_dead_letters,
        evicted_or_dropped={d: h.evicted_readings for d, h in stack.wire.health.items()},
    )


def _options_json(options: ChaosOptions) -> dict[str, object]:
    data = asdict(options)
    data["faults"] = [f.value for f in options.faults]
    return data


async def _wait_flowing(stack: Stack, within_s: float = 60.0) -> None:
    """Until every gateway has a message stored: the stack works before any fault."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        state = StoredState()
        await asyncio.to_thread(read_state_store, stack.state_url, state)
        if {device for device, _, _ in state.ledger} >= set(DEVICES):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"no reading stored for every gateway within {within_s:g} s")


async def _drain(stack: Stack, options: ChaosOptions) -> None:
    """Stop the agents (they flush and send), then wait until the ledger has every message."""
    for gateway in stack.gateways:
        code = await asyncio.to_thread(gateway.agent.stop)
        if code != 0:
            log.warning("agent stop", device=gateway.device, code=code)
    wanted = len(stack.wire.messages)
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + options.drain_timeout_s
    while time.monotonic() < deadline and time.monotonic() - since < _STABLE_S:
        state = StoredState()
        await asyncio.to_thread(read_state_store, stack.state_url, state)
        done = len(state.ledger) + sum(state.rejections.values())  # rejected: answered too
        if done >= wanted:
            break
        if done != last:
            last, since = done, time.monotonic()
        await asyncio.sleep(0.5)
    await asyncio.sleep(min(options.settle_s, 10.0))  # telemetry writes and detection settle


def _collect(stack: Stack) -> StoredState:
    state = StoredState()
    read_state_store(stack.state_url, state)
    read_telemetry(stack, DEVICES, state)
    for gateway in stack.gateways:
        path = gateway.disk_path(gateway.agent.settings.data_dir / "buffer.sqlite")
        scratch = stack.workdir / gateway.device / "buffer-at-end"
        state.held_at_end[gateway.device] = held_in_buffer(path, scratch)
    return state


def _polls(stack: Stack) -> dict[str, list[Poll]]:
    return {
        g.device: [Poll(g.device, s.at, FIELDS_PER_POLL) for s in g.slave.served if s.unit_id == 1]
        for g in stack.gateways
    }
