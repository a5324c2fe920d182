"""Fleet mode: thousands of simulated gateways publishing straight to MQTT, and a report of it.

Each gateway is a scenario asset (`firmware_sim.scenarios`): its batches follow the wire contract
(device, boot, per-boot seq, per-reading timestamps in simulated time, `historical` on replays)
and the scenario's silences and data faults (duplicates, late, out of order, malformed) are
applied to what it publishes. A handful of MQTT connections (aiomqtt, QoS 1) carry all gateways,
each a slice of them, with `window` publishes awaiting their PUBACK at a time.

Credentials: Mosquitto's ACL is per username and one connection has one username, so per-device
credentials would need one connection per device. Fleet mode logs in instead as a *simulator*
principal (`cloud.broker_access.Role.SIMULATOR`: may write every device's telemetry and status
topics, nothing else). It exists for load tests and must never be provisioned in production.
Per-connection last wills cannot stand for one device, so the gateway stream publishes the
offline status the broker would have published for it.

Time: window k (`batch_s` simulated seconds) is published when `start + (k+1) * batch_s / speed`
real seconds have passed; `speed=None` publishes as fast as the broker acknowledges.

Report (`--report FILE`): one JSON line per publish that got its PUBACK, e.g.
    {"device":"gw-00001","boot":"r1a2b-0","seq":3,"kind":"telemetry","copy":0,"fault":"",
     "detail":"","historical":false,"readings":32,"sim_at":"2025-10-06T00:20:00.000Z",
     "sent_at":"2026-01-05T10:00:01.234Z","puback_ms":1.87}
(`seq` is null for status messages; `fault` is duplicate | late | out_of_order | malformed), and
next to it `FILE.devices.csv` (per-device totals) and `FILE.summary.json`.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import statistics
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiomqtt
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from firmware_sim.scenarios.encoding import iso
from firmware_sim.scenarios.expand import ResolvedScenario
from firmware_sim.scenarios.gateway import GatewayStream, Outgoing
from firmware_sim.scenarios.run import simulated_assets, windows

_QUIET = logging.getLogger("firmware_sim.fleet.mqtt")
_QUIET.setLevel(logging.ERROR)  # aiomqtt warns about many pending publishes: that is the point
_DEVICE_COLUMNS = (
    "telemetry", "unique_keys", "duplicate", "late", "out_of_order", "malformed", "historical",
    "readings", "status", "boots",
)  # fmt: skip


class FleetError(Exception):
    """Fleet mode could not run or lost its broker connection."""


@dataclass(frozen=True)
class BrokerTarget:
    """Where fleet mode publishes and as whom."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    protocol: int = 5  # 5 or 4 (MQTT 3.1.1)


@dataclass(frozen=True)
class FleetPlan:
    """How fleet mode runs: pace, length, connections, report."""

    speed: float | None  # simulated seconds per real second; None = as fast as acknowledged
    duration_s: float | None = None  # real seconds; None = the whole scenario
    connections: int = 4
    window: int = 64  # publishes awaiting PUBACK per connection
    boot_tag: str = "fleet"
    report: Path | None = None
    client_prefix: str = "lw-fleet"


@dataclass
class FleetStats:
    """Running totals of a fleet run (what the progress bar and the summary show)."""

    messages: int = 0
    telemetry: int = 0
    readings: int = 0
    bytes: int = 0
    windows_done: int = 0
    max_lag_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    unsent: int = 0  # held back by the gateways at the end (an outage or late past the end)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        """Real seconds since the start (to the end once finished)."""
        return (self.finished or time.monotonic()) - self.started

    def percentile_ms(self, q: float) -> float:
        """PUBACK latency percentile in milliseconds (0 when nothing was acknowledged)."""
        if len(self.latencies_s) < 2:
            return 1000 * (self.latencies_s[0] if self.latencies_s else 0.0)
        cuts = statistics.quantiles(self.latencies_s, n=1000, method="inclusive")
        return 1000 * cuts[min(998, max(0, round(q * 1000) - 1))]

    def summary(self) -> dict[str, object]:
        """The headline figures of the run."""
        seconds = max(self.elapsed_s, 1e-9)
        return {
            "messages": self.messages,
            "telemetry_messages": self.telemetry,
            "readings": self.readings,
            "bytes": self.bytes,
            "elapsed_s": round(seconds, 3),
            "messages_per_s": round(self.messages / seconds, 1),
            "readings_per_s": round(self.readings / seconds, 1),
            "puback_p50_ms": round(self.percentile_ms(0.50), 3),
            "puback_p99_ms": round(self.percentile_ms(0.99), 3),
            "windows": self.windows_done,
            "max_lag_s": round(self.max_lag_s, 3),
            "unsent": self.unsent,
            "faults": dict(self.faults),
        }


class FleetReport:
    """Records every acknowledged publish: JSON lines, per-device totals, a summary."""

    def __init__(self, path: Path | None) -> None:
        """Open the report file (nothing is written when `path` is None)."""
        self.path = path
        self.stats = FleetStats()
        self._file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        self._devices: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._keys: defaultdict[str, set[tuple[str, int]]] = defaultdict(set)
        self._boots: defaultdict[str, set[str]] = defaultdict(set)

    def sent(self, message: Outgoing, latency_s: float) -> None:
        """Count one acknowledged publish and write its report line."""
        stats, counts = self.stats, self._devices[message.device]
        stats.messages += 1
        stats.bytes += len(message.payload)
        stats.latencies_s.append(latency_s)
        if message.kind == "telemetry":
            stats.telemetry += 1
            stats.readings += message.readings
            counts["telemetry"] += 1
            counts["readings"] += message.readings
            counts["historical"] += message.historical
            self._keys[message.device].add((message.boot, message.seq))
        else:
            counts["status"] += 1
        self._boots[message.device].add(message.boot)
        if message.fault:
            stats.faults[message.fault] += 1
            counts[message.fault] += 1
        if self._file is not None:
            self._file.write(_line(message, latency_s))

    def close(self) -> None:
        """Finish the run: write per-device totals and the summary next to the report."""
        self.stats.finished = self.stats.finished or time.monotonic()
        if self._file is None or self.path is None:
            return
        self._file.close()
        with self.path.with_suffix(".devices.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["device", *_DEVICE_COLUMNS])
            for device in sorted(self._devices):
                counts = self._devices[device]
                counts["unique_keys"] = len(self._keys[device])
                counts["boots"] = len(self._boots[device])
                writer.writerow([device, *(counts[c] for c in _DEVICE_COLUMNS)])
        summary = json.dumps(self.stats.summary(), indent=2)
        self.path.with_suffix(".summary.json").write_text(summary + "\n")


def _line(message: Outgoing, latency_s: float) -> str:
    """One report line (written by hand: thousands a second)."""
    seq = "null" if message.seq < 0 else str(message.seq)
    return (
        f'{{"device":"{message.device}","boot":"{message.boot}","seq":{seq},'
        f'"kind":"{message.kind}","copy":{message.copy},"fault":"{message.fault}",'
        f'"detail":"{message.detail}","historical":{"true" if message.historical else "false"},'
        f'"readings":{message.readings},"sim_at":"{iso(message.due)}",'
        f'"sent_at":"{iso(time.time())}","puback_ms":{latency_s * 1000:.3f}}}\n'
    )


class _Pace:
    """When each window may be published, and when the run must stop."""

    def __init__(self, resolved: ResolvedScenario, plan: FleetPlan, stats: FleetStats) -> None:
        self.batch_s = resolved.scenario.batch_s
        self.plan = plan
        self.stats = stats
        self.start = time.monotonic()

    def expired(self) -> bool:
        """Whether the run has used up its duration."""
        limit = self.plan.duration_s
        return limit is not None and time.monotonic() - self.start >= limit

    async def wait_for(self, index: int) -> None:
        """Sleep until window `index` is due (its simulated end reached), noting any lag."""
        if self.plan.speed is None:
            return
        due = self.start + (index + 1) * self.batch_s / self.plan.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self.stats.max_lag_s = max(self.stats.max_lag_s, -delay)


def _client(target: BrokerTarget, identifier: str, window: int) -> aiomqtt.Client:
    """One long-lived publishing connection."""
    protocol = aiomqtt.ProtocolVersion.V5 if target.protocol == 5 else aiomqtt.ProtocolVersion.V311
    client = aiomqtt.Client(
        target.host,
        target.port,
        username=target.username,
        password=target.password,
        identifier=identifier,
        protocol=protocol,
        max_inflight_messages=window,
        timeout=30.0,
        logger=_QUIET,
    )
    client.pending_calls_threshold = window + 1
    return client


async def _publish(
    client: aiomqtt.Client, queue: asyncio.Queue[Outgoing | None], report: FleetReport
) -> None:
    """Publish queued messages one at a time, each until its PUBACK."""
    while (message := await queue.get()) is not None:
        started = time.perf_counter()
        try:
            await client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        except aiomqtt.MqttError as err:
            raise FleetError(f"publish to {message.topic} failed: {err}") from err
        report.sent(message, time.perf_counter() - started)


async def _produce(
    streams: Sequence[GatewayStream],
    queue: asyncio.Queue[Outgoing | None],
    count: int,
    pace: _Pace,
    on_window: Callable[[], None],
) -> None:
    """Generate each window of every gateway in the slice and queue its messages."""
    for index in range(count):
        if pace.expired():
            return
        await pace.wait_for(index)
        for stream in streams:
            for message in stream.window(index):
                await queue.put(message)
        on_window()


async def _connection(
    number: int,
    *,
    streams: Sequence[GatewayStream],
    target: BrokerTarget,
    pace: _Pace,
    report: FleetReport,
    count: int,
) -> None:
    """One connection publishing for a slice of the gateways until the run ends."""
    plan = pace.plan
    queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(maxsize=plan.window * 4)
    done = [0]

    def on_window() -> None:
        """Count a finished window (connection 0 speaks for the progress bar)."""
        done[0] += 1
        if number == 0:
            report.stats.windows_done = done[0]

    try:
        identifier = f"{plan.client_prefix}-{number}"
        async with _client(target, identifier, plan.window) as client, asyncio.TaskGroup() as group:
            workers = [
                group.create_task(_publish(client, queue, report)) for _ in range(plan.window)
            ]
            await _produce(streams, queue, count, pace, on_window)
            for _ in workers:
                await queue.put(None)
    except aiomqtt.MqttError as err:
        raise FleetError(f"connection {number} to {target.host}:{target.port}: {err}") from err


async def run_fleet(
    resolved: ResolvedScenario, target: BrokerTarget, plan: FleetPlan, report: FleetReport
) -> FleetStats:
    """Run the fleet until the scenario ends or the duration is up; returns the totals."""
    if plan.connections < 1 or plan.window < 1:
        raise FleetError("connections and window must be at least 1")
    gateways = [a.gateway for a in simulated_assets(resolved, boot_tag=plan.boot_tag)]
    slices = [gateways[n :: plan.connections] for n in range(plan.connections)]
    pace = _Pace(resolved, plan, report.stats)
    report.stats.started = pace.start
    count = windows(resolved)
    try:
        async with asyncio.TaskGroup() as group:
            for number, part in enumerate(slices):
                if part:
                    group.create_task(
                        _connection(
                            number,
                            streams=part,
                            target=target,
                            pace=pace,
                            report=report,
                            count=count,
                        )
                    )
    except* FleetError as errors:
        raise FleetError("; ".join(str(e) for e in _leaves(errors))) from errors
    finally:
        report.stats.unsent = sum(g.pending for g in gateways)
        report.close()
    return report.stats


def _leaves(group: BaseExceptionGroup[FleetError]) -> list[BaseException]:
    """The exceptions inside nested exception groups."""
    found: list[BaseException] = []
    for error in group.exceptions:
        found += _leaves(error) if isinstance(error, BaseExceptionGroup) else [error]
    return found


async def run_fleet_with_progress(
    resolved: ResolvedScenario,
    target: BrokerTarget,
    plan: FleetPlan,
    report: FleetReport,
    *,
    show: bool = True,
) -> FleetStats:
    """`run_fleet` with a progress bar on stderr: messages, rate and simulated time."""
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    total = plan.duration_s or float(windows(resolved))
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not show, auto_refresh=False) as bar:
        task = bar.add_task("fleet", total=total)
        runner = asyncio.create_task(run_fleet(resolved, target, plan, report))
        while not runner.done():
            await asyncio.wait({runner}, timeout=0.5)
            stats = report.stats
            sim_now = resolved.start_ts + stats.windows_done * resolved.scenario.batch_s
            rate = stats.messages / max(stats.elapsed_s, 1e-9)
            done = min(stats.elapsed_s, total) if plan.duration_s else stats.windows_done
            bar.update(
                task,
                completed=done,
                description=f"{stats.messages:,} msgs {rate:,.0f}/s  sim {iso(sim_now)[:16]}",
                refresh=True,  # no refresh thread: it would compete with the publishers
            )
        return runner.result()


def load_credentials(path: Path) -> tuple[str, str]:
    """(username, password) from a TOML file with those two keys (keep it mode 600)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise FleetError(f"{path}: cannot read credentials: {err}") from err
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise FleetError(f"{path}: needs string keys username and password")
    return username, password
