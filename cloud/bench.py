"""`leasewatch bench ingest`: the fleet simulator against Mosquitto and real ingestor processes.

It starts a Mosquitto with the deployed config, the telemetry store (a SQLite file or a private
VictoriaMetrics), N `leasewatch cloud ingest` worker processes on one shared subscription, and
publishes the `fleet-load` scenario for the given duration, unpaced or at an offered rate. Then
it waits until the workers have stored everything and compares the stored set with the sent set
by (device, boot, seq). Figures: sustained readings/s, broker-to-stored latency p50/p99, loss and
duplicates, CPU of each process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from cloud.schema import message_ledger
from cloud.settings import CloudSettings
from cloud.state import StateStore, state_engine
from firmware_sim.bench import LocalBroker, local_mosquitto, process_cpu_s
from firmware_sim.fleet import BrokerTarget, FleetPlan, FleetReport, FleetStats, run_fleet
from firmware_sim.scenarios.expand import ResolvedScenario, resolve
from firmware_sim.scenarios.loader import load_scenario
from firmware_sim.scenarios.run import simulated_assets
from leasewatch.services.process import ServiceError, free_port
from leasewatch.services.victoria import VictoriaService

LEASEWATCH = str(Path(sys.executable).parent / "leasewatch")
Key = tuple[str, str, int]
_WORKER_START_S = 90.0  # a worker took over 30 s to start on a loaded 2-core machine


class IngestBenchError(Exception):
    """The benchmark could not run; the message says which part failed."""


@dataclass(frozen=True)
class IngestBenchOptions:
    """What to run."""

    backend: str = "sqlite"  # or "victoriametrics"
    duration_s: float = 60.0
    workers: int = 2
    assets: int = 2000
    connections: int = 4
    window: int = 32
    batch_max: int = CloudSettings.model_fields["ingest_batch_max"].default  # as deployed
    drain_timeout_s: float = 120.0
    state_url: str | None = None  # an empty database; default: a SQLite file
    rate: float | None = None  # offered readings/s; None = unpaced
    detect: bool = True  # detectors in the ingest workers (their hook), as deployed


@dataclass(frozen=True)
class IngestBenchResult:
    """What was measured."""

    options: IngestBenchOptions
    sent_messages: int
    sent_readings: int
    publish_s: float
    stored_messages: int
    stored_readings: int
    ingest_s: float
    missing: int
    unexpected: int
    latency_p50_s: float
    latency_p99_s: float
    worker_cpu_percent: list[float]
    fleet_retries: int = 0
    #: Messages per batch the workers processed, on average (batches grow under backlog).
    mean_batch_messages: float = 0.0
    #: Cores used over the run (CPU-seconds / wall seconds) by part: workers, simulator,
    #: broker, store server, the rest of the machine; and the machine's busy cores in all.
    cpu_cores: dict[str, float] = field(default_factory=dict)

    @property
    def readings_per_s(self) -> float:
        """Readings stored per second, first acknowledged publish to last store."""
        return self.stored_readings / self.ingest_s if self.ingest_s else 0.0

    @property
    def offered_per_s(self) -> float:
        """Readings published per second (the offered load actually achieved)."""
        return self.sent_readings / self.publish_s if self.publish_s else 0.0

    @property
    def readings_per_cpu_s(self) -> float:
        """Readings stored per CPU-second of all workers (comparable on a shared machine)."""
        cpu_s = sum(self.worker_cpu_percent) / 100 * self.ingest_s
        return self.stored_readings / cpu_s if cpu_s else 0.0

    @property
    def drain_s(self) -> float:
        """Seconds the workers needed after the last publish to store everything."""
        return max(0.0, self.ingest_s - self.publish_s)


@contextmanager
def _victoria(workdir: Path) -> Iterator[tuple[str, int | None]]:
    try:
        server = VictoriaService(workdir / "vm")
        server.start()
    except ServiceError as err:
        raise IngestBenchError(str(err)) from err
    try:
        yield server.telemetry_url, server.pid
    finally:
        server.stop()


@dataclass(frozen=True)
class BenchWorker:
    """One `leasewatch cloud ingest` process the bench started, and its ops port."""

    process: subprocess.Popen[bytes]
    ops_port: int

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def batch_messages(self) -> tuple[float, float]:
        """(messages, batches) the worker has processed, from its /metrics."""
        found = ops_metrics(self.ops_port)
        return (
            found.get("lw_ingest_batch_messages_sum", 0.0),
            found.get("lw_ingest_batch_messages_count", 0.0),
        )


def ops_metrics(port: int) -> dict[str, float]:
    """A worker's /metrics on its ops port: sample name -> value (the first of a labelled one)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, float(sample.value))
    return found


@contextmanager
def ingest_workers(
    broker: LocalBroker,
    *,
    count: int,
    telemetry: str,
    state: str,
    workdir: Path,
    settings: Mapping[str, str] = {},
) -> Iterator[list[BenchWorker]]:
    """`count` `leasewatch cloud ingest` processes on the bench broker, subscribed when this yields.

    Each gets the bench's service account, its own client id and ops port, and `settings`
    (LEASEWATCH_ names without the prefix); it logs to workdir/worker-N.log and is stopped
    (SIGTERM, then SIGKILL after 30 s) when the block ends.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEWATCH_")}
    values = {
        "MQTT_HOST": broker.target.host, "MQTT_PORT": str(broker.target.port),
        "MQTT_TLS": "false", "MQTT_PROTOCOL": "5", "MQTT_USERNAME": "lw-bench-ingestor",
        "MQTT_PASSWORD": broker.ingestor_password, "TELEMETRY_URL": telemetry,
        "STATE_URL": state, "AUTO_REGISTER_DEVICES": "true", **settings,
    }  # fmt: skip
    env.update({f"LEASEWATCH_{k}": v for k, v in values.items()})
    workers: list[BenchWorker] = []
    try:
        for number in range(1, count + 1):
            port = free_port()
            own = {"LEASEWATCH_MQTT_CLIENT_ID": f"bench-ingestor-{number}",
                   "LEASEWATCH_OPS_PORT": str(port)}  # fmt: skip
            with (workdir / f"worker-{number}.log").open("wb") as log:
                process = subprocess.Popen(  # noqa: S603 - fixed argv
                    [LEASEWATCH, "cloud", "ingest", "--log-level", "WARNING"],
                    env=env | own, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            workers.append(BenchWorker(process, port))
            if not _subscribed(process, port, _WORKER_START_S):
                raise IngestBenchError(f"ingest worker {number} did not subscribe; see {workdir}")
        yield workers
    finally:
        for worker in workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.process.kill()


def _subscribed(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """Whether the worker's /healthz said it is subscribed before it exited or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                return True
        time.sleep(0.2)
    return False


def _sent(report: Path) -> tuple[dict[Key, tuple[int, float]], int]:
    """Unique telemetry keys sent (valid payloads) -> (readings, PUBACK time); message count."""
    sent: dict[Key, tuple[int, float]] = {}
    messages = 0
    with report.open() as lines:
        for line in lines:
            row = json.loads(line)
            if row["kind"] != "telemetry" or row["fault"] == "malformed":
                continue
            messages += 1
            at = datetime.fromisoformat(row["sent_at"]).timestamp()
            sent.setdefault((row["device"], row["boot"], int(row["seq"])), (row["readings"], at))
    return sent, messages


def _ledger(state_url: str) -> dict[Key, tuple[int, float]]:
    engine = state_engine(state_url)
    c = message_ledger.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.device, c.boot, c.seq, c.readings, c.received_at)).all()
    engine.dispose()
    return {
        (d, b, s): (n, (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())
        for d, b, s, n, at in rows
    }


def _ledger_count(state_url: str) -> int:
    engine = state_engine(state_url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(message_ledger)).scalar_one()
    engine.dispose()
    return int(count)


def _drain(state_url: str, expected: int, timeout: float) -> None:
    """Wait until the ledger holds `expected` messages or stops growing for `timeout` s."""
    last, since = -1, time.monotonic()
    while True:
        count = _ledger_count(state_url)
        if count >= expected:
            return
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > timeout:
            return
        time.sleep(0.5)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """Where the machine's CPU went during a run: per worker, simulator, broker, store, rest."""

    def __init__(self, pids: dict[str, int]) -> None:
        """Take the starting readings of these named processes, this process and the machine."""
        self.pids = pids
        self.began = self._readings()
        self.used: dict[str, float] = {}  # CPU-seconds by part, and "wall", once stopped

    @classmethod
    def start(cls, workers: list[BenchWorker], broker_pid: int, store_pid: int | None) -> CpuSplit:
        """A split over the bench's workers, broker and (when it runs one) store server."""
        pids = {f"worker-{n}": w.pid for n, w in enumerate(workers)} | {"broker": broker_pid}
        return cls(pids | ({"store": store_pid} if store_pid else {}))

    def _readings(self) -> dict[str, float]:
        found = {name: process_cpu_s(pid) or 0.0 for name, pid in self.pids.items()}
        return found | {"simulator": time.process_time(), "machine": machine_busy_s(),
                        "wall": time.monotonic()}  # fmt: skip

    def stop(self) -> None:
        """Take the final readings."""
        ended = self._readings()
        self.used = {name: ended[name] - self.began[name] for name in ended}

    @property
    def workers_s(self) -> list[float]:
        """CPU-seconds of each worker, in start order."""
        return [seconds for name, seconds in self.used.items() if name.startswith("worker-")]

    def cores_by_part(self) -> dict[str, float]:
        """Cores each part kept busy on average over the run (the rest: everything else)."""
        wall = self.used.get("wall", 0.0)
        if wall <= 0:
            return {}
        parts = {
            "workers": sum(self.workers_s),
            "simulator (this process)": self.used["simulator"],
            "broker": self.used["broker"],
            "store server": self.used.get("store", 0.0),
        }
        parts["rest of the machine"] = max(0.0, self.used["machine"] - sum(parts.values()))
        parts["machine busy"] = self.used["machine"]
        return {name: round(seconds / wall, 2) for name, seconds in parts.items()}


def run_ingest_bench(options: IngestBenchOptions) -> IngestBenchResult:
    """Run the whole benchmark; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="lw-ingest-bench-") as tmp, local_mosquitto() as broker:
        workdir = Path(tmp)
        state_url = options.state_url or f"sqlite:///{workdir / 'state.sqlite'}"
        StateStore(state_url).close()  # migrate once, before the workers race for it
        with (
            _telemetry(options, workdir) as (telemetry, store_pid),
            ingest_workers(
                broker,
                count=options.workers,
                telemetry=telemetry,
                state=state_url,
                workdir=workdir,
                settings={
                    "INGEST_BATCH_MAX": str(options.batch_max),
                    "DETECT_ENABLED": str(options.detect).lower(),
                },
            ) as workers,
        ):
            meter = CpuSplit.start(workers, broker.pid, store_pid)
            report_path, fleet = _publish(broker.target, options, workdir)
            sent, sent_messages = _sent(report_path)
            _drain(state_url, len(sent), options.drain_timeout_s)
            meter.stop()
            counts = [w.batch_messages() for w in workers]  # (messages, batches) of each
        ledger = _ledger(state_url)
    return _result(
        options,
        sent=sent,
        sent_messages=sent_messages,
        ledger=ledger,
        cpu=meter,
        fleet_retries=fleet.retries,
        mean_batch=sum(m for m, _ in counts) / max(1.0, sum(b for _, b in counts)),
    )


@contextmanager
def _telemetry(options: IngestBenchOptions, workdir: Path) -> Iterator[tuple[str, int | None]]:
    """The telemetry store's URL, and its server's process id when it has one."""
    if options.backend == "sqlite":
        yield f"sqlite:///{workdir / 'telemetry.sqlite'}", None
    elif options.backend == "victoriametrics":
        with _victoria(workdir) as found:
            yield found
    else:
        raise IngestBenchError(f"unknown backend {options.backend!r}: sqlite or victoriametrics")


def _publish(
    target: BrokerTarget, options: IngestBenchOptions, workdir: Path
) -> tuple[Path, FleetStats]:
    scenario = load_scenario("fleet-load").with_asset_count(options.assets)
    # start the scenario in the recent past: readings are neither too old nor in the future
    recent: date = (datetime.now(UTC) - timedelta(days=scenario.days + 1)).date()
    resolved = resolve(scenario.model_copy(update={"start": recent}))
    report_path = workdir / "sent.jsonl"
    plan = FleetPlan(
        speed=_speed(resolved, options.rate), duration_s=options.duration_s,
        connections=options.connections, window=options.window, boot_tag="bench",
        report=report_path,
    )  # fmt: skip
    report = FleetReport(report_path)
    stats = asyncio.run(run_fleet(resolved, target, plan, report))
    return report_path, stats


def _speed(resolved: ResolvedScenario, rate: float | None) -> float | None:
    """Simulated seconds per real second that offer `rate` readings/s (None: unpaced)."""
    if rate is None:
        return None
    sample = simulated_assets(resolved, boot_tag="probe")[:50]
    messages = [m for a in sample for m in a.gateway.window(0) if m.kind == "telemetry"]
    per_window = sum(m.readings for m in messages) / len(sample)
    if per_window <= 0:
        raise IngestBenchError("the scenario's first window has no readings to pace by")
    return rate * resolved.scenario.batch_s / (per_window * len(resolved.assets))


def _result(
    options: IngestBenchOptions,
    *,
    sent: dict[Key, tuple[int, float]],
    sent_messages: int,
    ledger: dict[Key, tuple[int, float]],
    cpu: CpuSplit,
    fleet_retries: int,
    mean_batch: float,
) -> IngestBenchResult:
    """The figures, timed from the first acknowledged publish.

    Not from the start of the fleet: a paced fleet publishes window k only once its simulated
    time has passed ((k + 1) window periods in), so the first period sends nothing.
    """
    latencies = [ledger[k][1] - at for k, (_, at) in sent.items() if k in ledger]
    acked = [at for _, at in sent.values()]
    first, last_sent = (min(acked), max(acked)) if acked else (0.0, 0.0)
    last_stored = max((at for _, at in ledger.values()), default=first)
    ingest_s = max(last_stored - first, 1e-9)
    publish_s = last_sent - first
    return IngestBenchResult(
        options=options,
        sent_messages=sent_messages,
        sent_readings=sum(n for n, _ in sent.values()),
        publish_s=publish_s,
        stored_messages=len(ledger),
        stored_readings=sum(n for n, _ in ledger.values()),
        ingest_s=ingest_s,
        missing=len(sent.keys() - ledger.keys()),
        unexpected=len(ledger.keys() - sent.keys()),
        latency_p50_s=_percentile(latencies, 0.50),
        latency_p99_s=_percentile(latencies, 0.99),
        worker_cpu_percent=[round(100 * used / ingest_s, 1) for used in cpu.workers_s],
        fleet_retries=fleet_retries,
        mean_batch_messages=mean_batch,
        cpu_cores=cpu.cores_by_part(),
    )
