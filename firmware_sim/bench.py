"""`leasewatch sim bench`: how fast fleet mode publishes to Mosquitto from this machine.

Starts Mosquitto itself from the deployed configuration (`deploy/mosquitto/mosquitto.conf`,
with only listener, user and file paths replaced by `cloud.broker_access.mosquitto_conf`, as the
tests do) and a `simulator` principal with a fresh password, or publishes to a broker given with
--host. Fleet mode then runs unpaced (as fast as PUBACKs come back) for the duration, and the
bench prints messages/s, readings/s, PUBACK latency and the CPU each side used, which says what
limited the run.
"""

from __future__ import annotations

import asyncio
import getpass
import math
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from rich.table import Table

from cloud.broker_access import (
    Principal,
    mosquitto_conf,
    write_mosquitto_acl,
    write_mosquitto_passwords,
)
from firmware_sim.fleet import BrokerTarget, FleetPlan, FleetReport
from firmware_sim.fleet_processes import run_fleet_processes
from firmware_sim.scenarios.expand import ResolvedScenario
from leasewatch.services.process import free_port, listening, terminate, wait_until

DEPLOYED_CONF = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"
SIMULATOR_USER = "lw-bench-simulator"
INGESTOR_USER = "lw-bench-ingestor"
_START_TIMEOUT_S = 10.0
TARGET_MESSAGES_PER_S = 5000  # issue 4: fleet mode into Mosquitto from a 2-core machine


class BenchError(Exception):
    """The benchmark's broker could not be started."""


@dataclass(frozen=True)
class LocalBroker:
    """A Mosquitto the bench started: where it listens, how to log in, its process id."""

    target: BrokerTarget
    pid: int
    workdir: Path
    ingestor_password: str


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Return once the broker accepts connections; raise with its log if it does not."""
    if wait_until(lambda: listening(port), process, _START_TIMEOUT_S):
        return
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise BenchError(f"mosquitto did not start on port {port}:\n{tail}")


def _write_conf(workdir: Path, template: Path, port: int) -> Path:
    """The deployed config with this run's port and files (nothing else changed)."""
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        mosquitto_conf(
            template.read_text(),
            host="127.0.0.1",
            port=port,
            password_file=workdir / "passwd",
            acl_file=workdir / "acl",
            persistence_dir=workdir / "data",
            user=getpass.getuser(),
        )
    )
    return conf


@contextmanager
def local_mosquitto(template: Path = DEPLOYED_CONF) -> Iterator[LocalBroker]:
    """Run Mosquitto with the deployed config and a simulator principal until the block ends."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise BenchError("mosquitto not found: install it (Debian: apt-get install mosquitto)")
    password, ingestor = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    principals = [
        Principal.simulator(SIMULATOR_USER, password),
        Principal.ingestor(INGESTOR_USER, ingestor),
    ]
    with tempfile.TemporaryDirectory(prefix="lw-bench-") as work:
        workdir = Path(work)
        (workdir / "data").mkdir()
        write_mosquitto_passwords(principals, workdir / "passwd")
        write_mosquitto_acl(principals, workdir / "acl")
        port = free_port()
        conf = _write_conf(workdir, template, port)
        log = workdir / "mosquitto.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            _wait_listening(process, port, log)
            target = BrokerTarget("127.0.0.1", port, SIMULATOR_USER, password)
            yield LocalBroker(target, process.pid, workdir, ingestor)
        finally:
            terminate(process, timeout=5)


@dataclass
class Delivered:
    """What a counting subscriber received, and the CPU it used (% of one core)."""

    messages: int = 0
    cpu_percent: float = 0.0


@contextmanager
def counting_subscriber(broker: LocalBroker) -> Iterator[Delivered]:
    """`mosquitto_sub` at QoS 1 on every telemetry and status topic; counts on exit."""
    binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    config = broker.workdir / "xdg"
    config.mkdir(exist_ok=True)
    (config / "mosquitto_sub").write_text(f"-u {INGESTOR_USER}\n-P {broker.ingestor_password}\n")
    lines = broker.workdir / "delivered.txt"
    argv = [binary, "-h", broker.target.host, "-p", str(broker.target.port), "-q", "1"]
    argv += ["-i", "lw-bench-sub", "-t", "lw/v1/+/telemetry", "-t", "lw/v1/+/status", "-F", "%t"]
    environment = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    delivered = Delivered()
    with lines.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, env=environment)  # noqa: S603
    started = time.monotonic()
    time.sleep(0.5)  # subscribed before the first publish
    try:
        yield delivered
        _wait_stable(lines)
    finally:
        used = process_cpu_s(process.pid) or 0.0
        process.terminate()
        process.wait(timeout=5)
    delivered.messages = len(lines.read_bytes().splitlines())
    delivered.cpu_percent = round(100 * used / max(time.monotonic() - started, 1e-9), 1)


def _wait_stable(path: Path, timeout: float = 15.0) -> None:
    """Wait until a file stops growing for half a second (the subscriber has caught up)."""
    deadline, size = time.monotonic() + timeout, -1
    while time.monotonic() < deadline and path.stat().st_size != size:
        size = path.stat().st_size
        time.sleep(0.5)


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc; None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuUse:
    """CPU used by the publisher and (when local) the broker over a run, in % of one core."""

    publisher_percent: float  # all its processes together
    broker_percent: float | None
    load_average: float  # 1-minute load average at the end of the run
    cores: int
    processes: int = 1

    def limit(self) -> str:
        """A sentence on what limited the run."""
        if self.publisher_percent >= 85 * min(self.processes, self.cores):
            if self.processes == 1:
                return "the publisher's CPU (one Python process, one core)"
            return f"the publisher's CPU ({self.processes} Python processes, one core each)"
        if self.broker_percent is not None and self.broker_percent >= 85:
            return "the broker's CPU (Mosquitto is single-threaded)"
        if self.load_average >= self.cores:
            return (
                f"CPU taken by other processes (load {self.load_average:.1f} on"
                f" {self.cores} cores): the publisher got {self.publisher_percent:.0f}% of a core"
            )
        return "round trips to PUBACK (try a larger --window or more --connections)"


class CpuMeter:
    """Measures the CPU this process and a broker process use between start and stop."""

    def __init__(self, broker_pid: int | None) -> None:
        """Take the starting readings."""
        self.broker_pid = broker_pid
        self._wall = time.monotonic()
        self._own = time.process_time()
        self._broker = process_cpu_s(broker_pid) if broker_pid else None

    def stop(self, shares_cpu_s: float = 0.0, processes: int = 1, wall_s: float = 0.0) -> CpuUse:
        """CPU use since the meter was made (over `wall_s` if given), with the shares' CPU."""
        wall = max(wall_s or time.monotonic() - self._wall, 1e-9)
        own = 100 * (time.process_time() - self._own + shares_cpu_s) / wall
        broker = None
        if self.broker_pid and self._broker is not None:
            now = process_cpu_s(self.broker_pid)
            broker = None if now is None else 100 * (now - self._broker) / wall
        load = os.getloadavg()[0]
        cores = os.cpu_count() or 1
        broker = None if broker is None else round(broker, 1)
        return CpuUse(round(own, 1), broker, load, cores, processes)


@dataclass(frozen=True)
class BenchResult:
    """What a benchmark run measured."""

    summary: dict[str, object]
    cpu: CpuUse
    assets: int
    connections: int
    window: int
    broker: str
    delivered: Delivered | None = None  # with a counting subscriber
    processes: int = 1


def run_bench(
    resolved: ResolvedScenario,
    plan: FleetPlan,
    target: BrokerTarget | None = None,
    *,
    subscriber: bool = False,
    processes: int = 1,
) -> BenchResult:
    """Run fleet mode unpaced against `target`, or a Mosquitto started for the run."""
    unpaced = replace(plan, speed=None, keep_undelivered=False)  # the publish path, not delivery
    if target is not None:
        where = f"{target.host}:{target.port}"
        return asyncio.run(_measure(resolved, unpaced, (target, None, where), processes))
    with local_mosquitto() as broker:
        where = f"local mosquitto {broker.target.host}:{broker.target.port} (deployed config)"
        local = (broker.target, broker.pid, where)
        if not subscriber:
            return asyncio.run(_measure(resolved, unpaced, local, processes))
        with counting_subscriber(broker) as delivered:
            result = asyncio.run(_measure(resolved, unpaced, local, processes))
        return replace(result, delivered=delivered)


async def _measure(
    resolved: ResolvedScenario,
    plan: FleetPlan,
    broker: tuple[BrokerTarget, int | None, str],
    processes: int,
) -> BenchResult:
    """One unpaced fleet run with CPU metering (broker: target, its pid if local, a name)."""
    target, broker_pid, where = broker
    meter = CpuMeter(broker_pid)
    report = FleetReport(plan.report)
    stats = await run_fleet_processes(resolved, target, plan, report, processes)
    # processes: their start is not the run; its CPU is the shares' over the run's own seconds
    wall = stats.elapsed_s if processes > 1 else 0.0
    cpu = meter.stop(stats.shares_cpu_s, processes, wall)
    assets, connections = len(resolved.assets), plan.connections
    return BenchResult(
        stats.summary(), cpu, assets, connections, plan.window, where, processes=processes
    )


def figures(result: BenchResult) -> Table:
    """The benchmark's figures as a table."""
    s = result.summary
    table = Table("figure", "value", box=None, title="leasewatch sim bench")
    rows = [
        ("broker", result.broker),
        ("gateways", _gateways(result)),
        ("PUBACK window", f"{result.window} per connection (QoS 1)"),
        ("duration", f"{s['elapsed_s']} s"),
        ("messages", f"{s['messages']:,}"),
        ("messages/s", _against_target(float(str(s["messages_per_s"])))),
        ("readings/s", f"{s['readings_per_s']:,}"),
        ("MB/s", f"{int(str(s['bytes'])) / 1e6 / max(float(str(s['elapsed_s'])), 1e-9):.1f}"),
        ("PUBACK latency p50", f"{s['puback_p50_ms']} ms"),
        ("PUBACK latency p99", f"{s['puback_p99_ms']} ms"),
        ("acknowledged without delivery (0x10)", f"{s['not_delivered']:,} (not retried here)"),
        ("publisher CPU", f"{result.cpu.publisher_percent}% of one core"),
        ("messages per publisher CPU-second", _per_cpu_second(result)),
        ("broker CPU", _percent(result.cpu.broker_percent)),
        ("delivered to a QoS 1 subscriber", _delivered(result.delivered)),
        ("machine load", f"{result.cpu.load_average:.2f} (1 min) on {result.cpu.cores} cores"),
        ("limited by", result.cpu.limit()),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _gateways(result: BenchResult) -> str:
    """How the gateways were carried: connections, and processes when more than one."""
    carried = f"{result.assets:,} over {result.connections} connection(s)"
    if result.processes == 1:
        return carried
    return f"{carried} in each of {result.processes} processes"


def _against_target(rate: float) -> str:
    """Messages/s with the target and the ratio to it (rounded down: 4,980 is 0.99x, not 1.00x)."""
    ratio = math.floor(100 * rate / TARGET_MESSAGES_PER_S) / 100
    return f"{rate:,.1f} (target >= {TARGET_MESSAGES_PER_S:,}: {ratio:.2f}x)"


def _per_cpu_second(result: BenchResult) -> str:
    """Messages per CPU-second the publisher used: its speed whatever else runs on the machine."""
    cpu_s = result.cpu.publisher_percent / 100 * float(str(result.summary["elapsed_s"]))
    if cpu_s <= 0:
        return "n/a"
    rate = int(str(result.summary["messages"])) / cpu_s
    share = TARGET_MESSAGES_PER_S / rate
    return f"{rate:,.0f} ({TARGET_MESSAGES_PER_S:,} messages/s needs {share:.0%} of a core)"


def _delivered(delivered: Delivered | None) -> str:
    if delivered is None:
        return "no subscriber (--subscriber adds mosquitto_sub)"
    return f"{delivered.messages:,} messages (mosquitto_sub CPU {delivered.cpu_percent}%)"


def _percent(value: float | None) -> str:
    return "n/a (remote broker)" if value is None else f"{value}% of one core"
