"""`leasewatch edge bench`: the agent's figures on this machine (a command, not a timed test).

Three processes besides this one: Mosquitto, a simulator serving N Modbus RTU slaves of R
registers on one pty bus, and a real agent (`leasewatch edge --config ...`). Phase 1 polls every
slave at the given rate and measures the agent's CPU (share of one core) and RSS. Phase 2 stops
the agent, loads a backlog of earlier-boot readings spread over the last 24 hours into its
buffer, starts it again and measures the replay rate at the broker and how late live readings
arrive meanwhile (arrival minus the time the newest reading of each live message was taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import sys
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import psutil  # type: ignore[import-untyped]

from edge.buffer import ReadingBuffer
from leasewatch.wire import Reading

_SPARE_FROM = 6  # registers 6 .. R-2 are spare u16 fields; the fault code sits in the last one


@dataclass(frozen=True)
class BenchOptions:
    """What the benchmark runs."""

    workdir: Path
    slaves: int = 8
    registers: int = 16
    rate_hz: float = 10.0
    baudrate: int = 115_200
    duration_s: float = 30.0
    backlog_readings: int = 1_000_000
    replay_readings_per_second: float = 100_000.0
    compress: bool = False


@dataclass
class Figures:
    """What was measured."""

    poll_cpu_percent: float = 0.0
    poll_rss_max_mb: float = 0.0
    readings_per_s_expected: float = 0.0
    readings_per_s_arrived: float = 0.0
    overruns: int = 0
    sensor_errors: int = 0
    replay_readings: int = 0
    replay_seconds: float = 0.0
    replay_cpu_percent: float = 0.0
    replay_rss_max_mb: float = 0.0
    live_latency_max_s: float = 0.0
    live_latency_p95_s: float = 0.0
    live_messages_during_replay: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class Watcher:
    """Counts what reaches the broker: readings, historical ones, live latency, last health."""

    readings: int = 0
    historical: int = 0
    first_historical_at: float | None = None
    last_historical_at: float = 0.0
    live_latencies: list[float] = field(default_factory=list)
    health: dict[str, object] = field(default_factory=dict)

    def take(self, topic: str, payload: bytes) -> None:
        """Account for one message."""
        document = json.loads(zlib.decompress(payload) if payload[:1] == b"\x78" else payload)
        if topic.endswith("/health"):
            self.health = document
            return
        count = len(document["readings"])
        self.readings += count
        now = time.monotonic()
        if document["historical"]:
            self.historical += count
            self.first_historical_at = self.first_historical_at or now
            self.last_historical_at = now
        elif count:
            newest = max(datetime.fromisoformat(r["ts"]) for r in document["readings"])
            self.live_latencies.append((datetime.now(UTC) - newest).total_seconds())


def bench_register_fields(registers: int) -> list[dict[str, object]]:
    """Edge field specs of the bench slave: the machine map spread over `registers` registers."""
    fields: list[dict[str, object]] = [
        {"metric": "running", "address": 0},
        {"metric": "motor_current", "address": 1, "scale": 0.01, "unit": "A"},
        {"metric": "temperature", "address": 2, "kind": "i16", "scale": 0.1, "unit": "degC"},
        {"metric": "vibration_rms", "address": 3, "scale": 0.01, "unit": "mm/s"},
        {"metric": "run_hours", "address": 4, "kind": "u32", "scale": 0.001, "unit": "h"},
    ]
    fields += [{"metric": f"spare_{a}", "address": a} for a in range(_SPARE_FROM, registers - 1)]
    return [*fields, {"metric": "fault_code", "address": registers - 1}]


def agent_config(options: BenchOptions, port: int, pty: str, data_dir: Path) -> str:
    """The agent's TOML configuration for the bench."""
    lines = [
        f'[gateway]\ndevice = "gw-bench"\ndata_dir = "{data_dir}"',
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nusername = "gw-bench"\npassword = "bench"',
        "tls = false\nreconnect_max = 1.0",
        "[delivery]\npublish_interval = 1.0\nhistorical_after = 30.0",
        f"compress = {str(options.compress).lower()}",
        f"replay_readings_per_second = {options.replay_readings_per_second}",
        "[health]\ninterval = 5.0",
        f'[[modbus_rtu]]\nport = "{pty}"\nbaudrate = {options.baudrate}',
    ]
    for unit in range(1, options.slaves + 1):
        lines.append(
            f'[[modbus_rtu.slaves]]\nsensor = "machine-{unit}"\nunit_id = {unit}\n'
            f"poll_interval = {1 / options.rate_hz}\ntimeout = 0.1"
        )
        for spec in bench_register_fields(options.registers):
            pairs = [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
            lines.append("[[modbus_rtu.slaves.fields]]\n" + "\n".join(pairs))
    return "\n".join(lines) + "\n"


def serve_simulator(slaves: int, registers: int, baudrate: int) -> None:
    """Child process: serve `slaves` simulated machines on one pty bus until SIGTERM."""
    from firmware_sim.machine import MachineModel  # noqa: PLC0415 (child process only)
    from firmware_sim.modbus_slave import ModbusRtuBus  # noqa: PLC0415
    from firmware_sim.pty_pair import PtyPair  # noqa: PLC0415
    from firmware_sim.register_map import MACHINE_MAP, RegisterMap  # noqa: PLC0415

    fields = [
        replace(f, address=registers - 1) if f.metric == "fault_code" else f
        for f in MACHINE_MAP.fields
    ]
    register_map = RegisterMap(name="bench", fields=tuple(fields))

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        machines = {unit: MachineModel(seed=unit) for unit in range(1, slaves + 1)}
        async with (
            PtyPair() as pair,
            ModbusRtuBus(pair.device_path, machines, baudrate=baudrate, register_map=register_map),
        ):
            print(pair.client_path, flush=True)  # read by the parent
            await stop.wait()

    asyncio.run(serve())


async def _spawn(*args: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(*args, stdout=sink, stderr=sink)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)


@contextlib.asynccontextmanager
async def _mosquitto(workdir: Path, port: int) -> AsyncIterator[None]:
    binary = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        raise RuntimeError("the bench needs Mosquitto 2: `apt-get install mosquitto`")
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 0\nmax_inflight_messages 100\npersistence false\n"
    )
    broker = await _spawn(binary, "-c", str(conf), log=workdir / "mosquitto.log")
    try:
        await asyncio.sleep(0.5)
        yield
    finally:
        await _stop(broker)


@contextlib.asynccontextmanager
async def _simulator(options: BenchOptions) -> AsyncIterator[str]:
    code = (
        "from edge.bench import serve_simulator; "
        f"serve_simulator({options.slaves}, {options.registers}, {options.baudrate})"
    )
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert sim.stdout is not None  # noqa: S101 (PIPE was asked for)
        line = await asyncio.wait_for(sim.stdout.readline(), 30)
        yield line.decode().strip()
    finally:
        await _stop(sim)


@contextlib.asynccontextmanager
async def _watching(port: int) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-watcher") as client:
        await client.subscribe("lw/v1/+/telemetry", qos=1)
        await client.subscribe("lw/v1/+/health", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                if isinstance(message.payload, bytes):
                    watcher.take(str(message.topic), message.payload)

        task = asyncio.create_task(pump())
        try:
            yield watcher
        finally:
            task.cancel()


class ProcessWatch:
    """CPU (percent of one core) and largest RSS of a process from now on."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.started = time.monotonic()
        self.before = self.process.cpu_times()
        self.rss = 0

    def sample(self) -> None:
        """Note the current RSS."""
        self.rss = max(self.rss, self.process.memory_info().rss)

    def result(self) -> tuple[float, float]:
        """(CPU percent of one core since the start, largest RSS in MB)."""
        after = self.process.cpu_times()
        used = (after.user - self.before.user) + (after.system - self.before.system)
        return 100 * used / (time.monotonic() - self.started), self.rss / 2**20


def preload_backlog(path: Path, readings: int, per_message: int = 500) -> None:
    """Fill a buffer with `readings` of an earlier boot, spread over the last 24 hours."""
    buffer = ReadingBuffer(path)
    start = datetime.now(UTC) - timedelta(hours=24)
    step = timedelta(hours=24) / max(1, readings)
    for seq in range(0, readings, per_message):
        at = start + step * seq
        count = min(per_message, readings - seq)
        batch = [
            Reading(sensor=f"machine-{i % 8 + 1}", metric="current", ts=at + step * i, value=i)
            for i in range(count)
        ]
        buffer.add(batch)
        buffer.seal("before-the-outage", seq // per_message, per_message, at)
    buffer.close()


async def _start_agent(options: BenchOptions, config: Path) -> asyncio.subprocess.Process:
    return await _spawn(
        sys.executable, "-m", "edge.cli", "--config", str(config),
        "--log-level", "WARNING", log=options.workdir / "agent.log",
    )  # fmt: skip


async def _phase_poll(options: BenchOptions, config: Path, port: int, figures: Figures) -> None:
    """Steady polling: CPU, RSS and readings per second at the broker."""
    async with _watching(port) as watcher:
        agent = await _start_agent(options, config)
        await asyncio.sleep(5.0)  # start, connect, warm up
        before, watch = watcher.readings, ProcessWatch(agent.pid)
        while time.monotonic() - watch.started < options.duration_s:
            watch.sample()
            await asyncio.sleep(0.5)
        figures.poll_cpu_percent, figures.poll_rss_max_mb = watch.result()
        figures.readings_per_s_arrived = (watcher.readings - before) / options.duration_s
        await asyncio.sleep(5.5)  # one more health report
        await _stop(agent)
        figures.overruns = sum(_counts(watcher.health, "overruns"))
        figures.sensor_errors = sum(_counts(watcher.health, "sensor_errors"))
    per_poll = len(bench_register_fields(options.registers))
    figures.readings_per_s_expected = options.slaves * options.rate_hz * per_poll


async def _phase_replay(options: BenchOptions, config: Path, port: int, figures: Figures) -> None:
    """Backlog replay while polling goes on: rate at the broker and live latency meanwhile."""
    buffer = options.workdir / "edge" / "buffer.sqlite"
    await asyncio.to_thread(preload_backlog, buffer, options.backlog_readings)
    async with _watching(port) as watcher:
        agent = await _start_agent(options, config)
        watch = ProcessWatch(agent.pid)
        deadline = time.monotonic() + 900
        while watcher.historical < options.backlog_readings and time.monotonic() < deadline:
            watch.sample()
            await asyncio.sleep(0.2)
        figures.replay_cpu_percent, figures.replay_rss_max_mb = watch.result()
        await _stop(agent)
    first = watcher.first_historical_at or watcher.last_historical_at
    figures.replay_readings = watcher.historical
    figures.replay_seconds = watcher.last_historical_at - first
    latencies = sorted(watcher.live_latencies) or [0.0]
    figures.live_messages_during_replay = len(watcher.live_latencies)
    figures.live_latency_max_s = latencies[-1]
    figures.live_latency_p95_s = latencies[int(0.95 * (len(latencies) - 1))]


def _counts(health: dict[str, object], key: str) -> list[int]:
    counts = health.get(key, {})
    return [int(v) for v in counts.values()] if isinstance(counts, dict) else []


async def run_bench(options: BenchOptions, port: int) -> Figures:
    """Run both phases and return the figures."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(options.workdir / "edge", ignore_errors=True)
    figures = Figures(load_before=os.getloadavg())
    async with _mosquitto(options.workdir, port), _simulator(options) as pty:
        config = options.workdir / "edge.toml"
        config.write_text(agent_config(options, port, pty, options.workdir / "edge"))
        await _phase_poll(options, config, port, figures)
        await _phase_replay(options, config, port, figures)
    figures.load_after = os.getloadavg()
    return figures


def report(options: BenchOptions, figures: Figures) -> str:
    """The figures against the targets, as text for people."""
    rate = figures.replay_readings / max(figures.replay_seconds, 1e-9)
    rows = [
        f"poll: {options.slaves} slaves x {options.registers} registers at {options.rate_hz:g} Hz",
        f"  agent CPU        {figures.poll_cpu_percent:6.1f} % of one core   (target < 15 %: "
        f"{figures.poll_cpu_percent / 15:.2f} of budget)",
        f"  agent RSS        {figures.poll_rss_max_mb:6.1f} MB               (target < 80 MB: "
        f"{figures.poll_rss_max_mb / 80:.2f} of budget)",
        f"  readings/s       {figures.readings_per_s_arrived:8.0f} arrived of "
        f"{figures.readings_per_s_expected:.0f} expected; overruns {figures.overruns}, "
        f"sensor errors {figures.sensor_errors}",
        f"replay: {figures.replay_readings} backlog readings in {figures.replay_seconds:.1f} s",
        f"  replay rate      {rate:8.0f} readings/s     (target >= 20000: {rate / 20000:.2f}x)",
        f"  live latency     max {figures.live_latency_max_s:.2f} s, p95 "
        f"{figures.live_latency_p95_s:.2f} s over {figures.live_messages_during_replay} live "
        f"messages (target < 5 s: {figures.live_latency_max_s / 5:.2f} of budget)",
        f"  agent CPU/RSS    {figures.replay_cpu_percent:.1f} % / {figures.replay_rss_max_mb:.1f}"
        " MB at the end of the replay",
        "machine load (1/5/15 min) before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
            *figures.load_before, *figures.load_after
        ),
    ]
    return "\n".join(rows)
