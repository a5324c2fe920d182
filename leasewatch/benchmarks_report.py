"""`leasewatch bench all`: run every benchmark and write BENCHMARKS.md with the figures.

Each benchmark is a command of its own that starts the services it needs and prints its figures
against the targets of its issue; this module runs them one after another as subprocesses (so
one failing or crashing benchmark cannot take the others with it), keeps what each printed, and
writes one Markdown file with the machine, the date, and every table as printed. The list of
benchmarks is data: adding one is adding a `Benchmark`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OUTPUT_TAIL = 12_000  # characters of a benchmark's output kept in the report


#: After its timeout a benchmark gets this long, interrupted, to stop what it started.
STOP_GRACE_S = 15.0


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One benchmark command, with the figure it answers for and the issue's target."""

    name: str
    issue: int
    measures: str
    target: str
    full: tuple[str, ...]  # `leasewatch` arguments for the reference run
    quick: tuple[str, ...]  # the same, shortened (minutes instead of tens of minutes)
    timeout_s: float = 1800.0


def _ingest(name: str, measures: str, target: str, flags: str, quick_s: int = 15) -> Benchmark:
    """A `bench ingest` run (issue 5) with `flags` (space-separated): 60 s of publishing for
    the reference run, `quick_s` for the quick one."""
    command = ("bench", "ingest", *flags.split(), "--duration")
    return Benchmark(name, 5, measures, target, (*command, "60"), (*command, str(quick_s)))


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "edge",
        3,
        "one gateway's agent: CPU, memory, backlog replay rate, live latency",
        "CPU < 15% of a core, RSS < 80 MB, replay >= 20,000 readings/s",
        ("edge", "bench"),
        ("edge", "bench", "--duration", "20"),
    ),
    Benchmark(
        "fleet",
        4,
        "fleet simulator publishing straight to Mosquitto",
        ">= 5,000 messages/s",
        ("sim", "bench", "--assets", "10000", "--duration", "60"),
        ("sim", "bench", "--assets", "2000", "--duration", "15"),
    ),
    Benchmark(
        "reference",
        5,
        "issue 5's reference figures on this machine: influxdb-client -> VictoriaMetrics, "
        "one paho QoS 1 subscriber (machines differ between sessions: read throughput as ratios)",
        "~1,000,000 field values/s, ~10,000 messages/s (the issue's machine)",
        ("bench", "reference"),
        ("bench", "reference", "--values", "1000000", "--messages", "30000"),
        timeout_s=600.0,
    ),
    _ingest(
        "ingest-sqlite",
        "fleet -> Mosquitto -> ingestors -> SQLite telemetry and state",
        ">= 50,000 readings/s, p99 < 2 s, nothing lost",
        "--backend sqlite",
    ),
    _ingest(
        "ingest-victoriametrics",
        "fleet -> Mosquitto -> ingestors -> VictoriaMetrics telemetry, SQLite state",
        ">= 100,000 readings/s, p99 < 2 s, nothing lost",
        "--backend victoriametrics",
    ),
    _ingest(
        "ingest-sqlite-no-detect",
        "the same with the detectors out of the ingest workers: storage, ledger, rollups only",
        ">= 50,000 readings/s, p99 < 2 s, nothing lost",
        "--backend sqlite --no-detect",
    ),
    _ingest(
        "ingest-victoriametrics-no-detect",
        "the same with the detectors out of the ingest workers: storage, ledger, rollups only",
        ">= 100,000 readings/s, p99 < 2 s, nothing lost",
        "--backend victoriametrics --no-detect",
    ),
    _ingest(
        "ingest-paced",
        "broker-to-stored latency at an offered rate the workers sustain (VictoriaMetrics)",
        "p99 < 2 s, nothing lost",
        "--backend victoriametrics --rate 60000",
        quick_s=20,
    ),
    Benchmark(
        "detect-latency",
        6,
        "a fault code at the broker -> the alert stored and published, with gateways publishing",
        "p99 < 2 s at 10,000 assets",
        ("bench", "detect", "--assets", "10000"),
        ("bench", "detect", "--assets", "2000", "--duration", "40"),
    ),
    Benchmark(
        "credit-check",
        7,
        "POST /v1/credit-checks through the HTTP API on a filled state store",
        "p99 < 50 ms at 10,000 leases",
        ("bench", "credit-check", "--leases", "10000"),
        ("bench", "credit-check", "--leases", "10000", "--checks", "500"),
    ),
    Benchmark(
        "dashboards",
        8,
        "every dashboard page through the HTTP API for a large fleet",
        "each page < 1.5 s at 10,000 assets",
        ("bench", "dashboards", "--assets", "10000"),
        ("bench", "dashboards", "--assets", "10000", "--days", "14", "--repeats", "3"),
    ),
    Benchmark(
        "detector-quality",
        6,
        "detectors scored on the simulator's labelled scenarios",
        "recall >= 0.95, precision >= 0.90, delay <= 3 d, silence accuracy >= 0.9",
        ("detect", "score", "--suite", "full"),
        ("detect", "score", "--suite", "quick"),
        timeout_s=3600.0,
    ),
)


@dataclass(frozen=True, slots=True)
class BenchmarkRun:
    """What one benchmark printed, how it ended and how long it took."""

    benchmark: Benchmark
    argv: tuple[str, ...]
    exit_code: int | None  # None: killed at its timeout
    seconds: float
    output: str
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after the run

    @property
    def status(self) -> str:
        """How the command ended: "finished" (its figures, met or not, are in its section),
        "failed (exit N)" or "timed out"; never a verdict on the target."""
        if self.exit_code is None:
            return f"timed out after {self.benchmark.timeout_s:.0f} s"
        return "finished" if self.exit_code == 0 else f"failed (exit {self.exit_code})"


def leasewatch_command() -> list[str]:
    """How to run `leasewatch` with this interpreter (works from a venv or a checkout)."""
    return [sys.executable, "-c", "from leasewatch.cli import app; app()"]


def run_benchmark(benchmark: Benchmark, *, quick: bool) -> BenchmarkRun:
    """Run one benchmark to its end (or its timeout) and keep what it printed."""
    argv = benchmark.quick if quick else benchmark.full
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb"}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 (our own CLI, arguments from the table above)
        [*leasewatch_command(), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the services it starts go with it
    )
    try:
        stdout, stderr = process.communicate(timeout=benchmark.timeout_s)
    except subprocess.TimeoutExpired:
        stdout, stderr = _stop_group(process)
        load = (load_before, os.getloadavg()[0])
        elapsed = time.monotonic() - started
        return BenchmarkRun(benchmark, argv, None, elapsed, stdout + stderr, load)
    output = stdout + (f"\n--- stderr ---\n{stderr}" if process.returncode else "")
    load = (load_before, os.getloadavg()[0])
    elapsed = time.monotonic() - started
    return BenchmarkRun(benchmark, argv, process.returncode, elapsed, output, load)


def _stop_group(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Interrupt a benchmark's process group (its cleanup stops what it started), then kill."""
    _signal_group(process, signal.SIGINT)
    try:
        printed = process.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        printed = None
    _signal_group(process, signal.SIGKILL)  # whatever of the group is still there
    return printed if printed is not None else process.communicate()


def _signal_group(process: subprocess.Popen[str], signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal_number)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def select(names: Sequence[str]) -> list[Benchmark]:
    """The benchmarks named (all when none are), refusing unknown names with the known ones."""
    if not names:
        return list(BENCHMARKS)
    known = {b.name: b for b in BENCHMARKS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def run_all(
    benchmarks: Sequence[Benchmark],
    *,
    quick: bool,
    progress: Callable[[Benchmark], None] = lambda _: None,
) -> list[BenchmarkRun]:
    """Run the benchmarks one after another (they share the machine's two cores)."""
    runs = []
    for benchmark in benchmarks:
        progress(benchmark)
        runs.append(run_benchmark(benchmark, quick=quick))
    return runs


def machine_facts() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        ("CPU", f"{_cpu_model()} ({os.cpu_count()} cores)"),
        ("memory", f"{memory:.1f} GiB"),
        ("system", f"{platform.system()} {platform.release()} ({_os_name()})"),
        ("Python", platform.python_version()),
        *((name, version) for name, version in _service_versions() if version),
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def _service_versions() -> list[tuple[str, str]]:
    probes = {
        "Mosquitto": (["mosquitto", "-h"], r"mosquitto version (\S+)"),
        "VictoriaMetrics": (["victoria-metrics", "-version"], r"(v\d[\w.\-]*)"),
        "PostgreSQL": (["psql", "--version"], r"(\d+(?:\.\d+)+)"),
    }
    found = []
    for name, (argv, pattern) in probes.items():
        binary = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin")
        if binary is None:
            continue
        done = subprocess.run(  # noqa: S603 (fixed probe commands)
            [binary, *argv[1:]], capture_output=True, text=True, timeout=10, check=False
        )
        match = re.search(pattern, done.stdout + done.stderr)
        found.append((name, match.group(1) if match else _package_version(argv[0])))
    return found


def _package_version(package: str) -> str:
    """The Debian package's version, for binaries that do not print theirs."""
    if shutil.which("dpkg-query") is None:
        return "unknown version"
    done = subprocess.run(  # noqa: S603 (fixed probe command)
        ["dpkg-query", "-W", "-f=${Version}", package],  # noqa: S607
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return f"{done.stdout.strip()} (Debian package)" if done.returncode == 0 else "unknown version"


def render_markdown(runs: Sequence[BenchmarkRun], *, quick: bool, now: datetime) -> str:
    """BENCHMARKS.md: machine, date, a summary, then every benchmark's figures as printed."""
    lines = [
        "# LeaseWatch benchmarks",
        "",
        f"Written by `leasewatch bench all{' --quick' if quick else ''}` on "
        f"{now.astimezone(UTC):%Y-%m-%d %H:%M} UTC. Every figure below is what the benchmark "
        "command printed on this machine; each table shows its figures against the issue's target. "
        "The machine's 1-minute load average before and after each run says how much of its "
        f"{os.cpu_count()} cores the benchmark had to itself.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in machine_facts()),
        "",
        "## Summary",
        "",
        "| benchmark | issue | measures | target | command | ended | took | load before / after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        b = run.benchmark
        command = "leasewatch " + " ".join(run.argv)
        lines.append(
            f"| {b.name} | #{b.issue} | {b.measures} | {b.target} | `{command}` | {run.status} "
            f"| {run.seconds:.0f} s | {run.load[0]:.1f} / {run.load[1]:.1f} |"
        )
    for run in runs:
        output = _ANSI.sub("", run.output).rstrip()
        if len(output) > _OUTPUT_TAIL:
            output = "[... earlier output cut ...]\n" + output[-_OUTPUT_TAIL:]
        lines += ["", f"## {run.benchmark.name}", "", f"`leasewatch {' '.join(run.argv)}` "
                  f"({run.status}, {run.seconds:.0f} s)", "", "```text", output, "```"]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(
    runs: Sequence[BenchmarkRun], out: Path, *, quick: bool, now: datetime | None = None
) -> Path:
    """Write the Markdown report and return its path."""
    out.write_text(render_markdown(runs, quick=quick, now=now or datetime.now(UTC)))
    return out
