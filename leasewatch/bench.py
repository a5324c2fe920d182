"""`leasewatch bench ...`: benchmark commands that print their figures against the targets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cloud.bench import IngestBenchError, IngestBenchOptions, IngestBenchResult, run_ingest_bench
from cloud.detection.bench import detect as detect_bench
from cloud.reference_bench import ReferenceBenchError, ReferenceFigure, run_reference_bench
from dashboards.bench_report import dashboards as dashboards_bench

app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (not tests).")
app.command(name="detect")(detect_bench)
app.command(name="dashboards")(dashboards_bench)

TARGET_READINGS_PER_S = {"victoriametrics": 100_000, "sqlite": 50_000}
TARGET_P99_S = 2.0


@app.command()
def ingest(
    backend: Annotated[str, typer.Option(help="sqlite or victoriametrics.")] = "sqlite",
    duration: Annotated[float, typer.Option(help="Seconds of publishing.")] = 60.0,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Ingestor processes.")] = 2,
    assets: Annotated[int, typer.Option(min=10, help="Simulated gateways.")] = 2000,
    batch_max: Annotated[
        int, typer.Option(min=1, help="Messages per ingest batch at most (default: as deployed).")
    ] = IngestBenchOptions.batch_max,
    state_url: Annotated[
        str | None, typer.Option(help="State store URL (an empty database); default SQLite.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=1, help="Offered readings/s (paced); default unpaced.")
    ] = None,
    detect: Annotated[
        bool,
        typer.Option(
            help="Run the detectors in the ingest workers, as deployed (--no-detect: the ingest "
            "path alone: storage, ledger, rollups)."
        ),
    ] = True,
) -> None:
    """Fleet simulator -> Mosquitto -> N ingestor processes -> store; readings/s, p50/p99, loss."""
    options = IngestBenchOptions(
        backend=backend,
        duration_s=duration,
        workers=workers,
        assets=assets,
        batch_max=batch_max,
        state_url=state_url,
        rate=rate,
        detect=detect,
    )
    try:
        result = run_ingest_bench(options)
    except IngestBenchError as err:
        typer.echo(f"benchmark failed: {err}", err=True)
        raise typer.Exit(1) from err
    Console().print(ingest_table(result))


def ingest_table(result: IngestBenchResult) -> Table:
    """The figures, each against its target where the issue sets one."""
    o = result.options
    target = TARGET_READINGS_PER_S.get(o.backend, 0)
    table = Table("figure", "value", "target", title=f"leasewatch bench ingest ({o.backend})")
    rate = result.readings_per_s
    paced = f"paced, {o.rate:,.0f} readings/s offered" if o.rate else "unpaced (maximum)"
    rows = [
        ("mode", paced, ""),
        ("workers / gateways / batch max", f"{o.workers} / {o.assets:,} / {o.batch_max:,} msgs",
         ""),
        ("state store", (o.state_url or "sqlite").split("://")[0], ""),
        ("detectors in the workers", "yes (as deployed)" if o.detect else "no (ingest path only)",
         ""),
        ("published", f"{result.sent_messages:,} msgs, {result.sent_readings:,} readings "
         f"in {result.publish_s:.1f} s", ""),
        ("stored", f"{result.stored_messages:,} msgs, {result.stored_readings:,} readings", ""),
        ("sustained readings/s (first PUBACK -> last store)", f"{rate:,.0f}",
         _rate_target(rate, target, o.rate)),
        ("missing (sent, never stored)", f"{result.missing}", "0"),
        ("stored but never sent", f"{result.unexpected}", "0"),
        ("PUBACK -> stored latency p50", f"{result.latency_p50_s:.2f} s", ""),
        ("PUBACK -> stored latency p99", f"{result.latency_p99_s:.2f} s",
         f"< {TARGET_P99_S} s ({result.latency_p99_s / TARGET_P99_S:.2f}x)"),
        ("published readings/s; drain after the last publish",
         f"{result.offered_per_s:,.0f}; {result.drain_s:.1f} s", ""),
        ("fleet retries (not delivered / no PUBACK)", f"{result.fleet_retries}", ""),
        ("messages per batch (mean; grows with a backlog)", f"{result.mean_batch_messages:,.0f}",
         ""),
        ("worker CPU (% of one core)", ", ".join(f"{c}%" for c in result.worker_cpu_percent), ""),
        ("readings per worker CPU-second", f"{result.readings_per_cpu_s:,.0f}", ""),
        ("cores busy over the run, by part", _cores(result.cpu_cores), f"{os.cpu_count()} cores"),
        ("machine load average (1 min, at the end)", f"{os.getloadavg()[0]:.1f}", ""),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def reference(
    values: Annotated[
        int, typer.Option(min=10_000, help="Field values posted to VictoriaMetrics.")
    ] = 2_000_000,
    messages: Annotated[
        int, typer.Option(min=1_000, help="Messages the subscriber drains.")
    ] = 60_000,
) -> None:
    """Issue 5's reference figures on this machine: influxdb-client -> VM, one paho subscriber."""
    table = Table(
        "reference", "measured", "issue's figure", "CPU", "complete",
        title="leasewatch bench reference (issue 5's references on this machine)",
    )  # fmt: skip
    try:
        for figure in run_reference_bench(values, messages):
            table.add_row(*reference_row(figure))
    except ReferenceBenchError as err:
        typer.echo(f"benchmark failed: {err}", err=True)
        raise typer.Exit(1) from err
    Console().print(table)
    typer.echo(
        "Issue 5's ingest targets assume the issue's machine: divide an ingest figure by these "
        f"ratios to compare across machines. Load average now {os.getloadavg()[0]:.1f}."
    )


def reference_row(figure: ReferenceFigure) -> tuple[str, str, str, str, str]:
    """One measured reference as a table row."""
    server = "" if figure.server_cpu_s is None else f", server {figure.server_cpu_s:.1f} s"
    return (
        figure.name,
        f"{figure.rate:,.0f} {figure.unit}/s ({figure.count:,} in {figure.seconds:.2f} s)",
        f"~{figure.issue_rate:,}/s ({figure.ratio:.2f}x)",
        f"client {figure.client_cpu_s:.1f} s{server}",
        f"{figure.verified:,} of {figure.count:,}",
    )


def _rate_target(rate: float, target: int, offered: float | None) -> str:
    """The throughput target and the ratio to it; a paced run is held to what it offered."""
    if offered:
        return f"the offered {offered:,.0f} ({rate / offered:.2f}x); max: see unpaced"
    return f"{target:,} ({rate / target:.2f}x)" if target else ""


def _cores(cores: dict[str, float]) -> str:
    """'workers 1.21, simulator 0.40, ...' (average cores kept busy by each part)."""
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items())


@app.command("all")
def all_benchmarks(
    out: Annotated[Path, typer.Option(help="Markdown report to write.")] = Path("BENCHMARKS.md"),
    quick: Annotated[bool, typer.Option(help="Shortened runs (minutes, not an hour).")] = False,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these benchmarks (repeatable).")
    ] = None,
) -> None:
    """Run every benchmark one after another and write their figures to BENCHMARKS.md."""
    from leasewatch import benchmarks_report as report  # noqa: PLC0415 (only this command)

    try:
        chosen = report.select(only or [])
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--only") from err
    console = Console()
    runs = report.run_all(
        chosen, quick=quick, progress=lambda b: console.print(f"running {b.name} ...")
    )
    for run in runs:
        console.print(f"{run.benchmark.name}: {run.status} in {run.seconds:.0f} s")
    console.print(f"wrote {report.write_report(runs, out, quick=quick)}")
    if any(run.exit_code != 0 for run in runs):
        raise typer.Exit(1)


@app.command("credit-check")
def credit_check(
    leases: Annotated[
        int, typer.Option(min=30, help="Leases (one asset and gateway each).")
    ] = 10_000,
    checks: Annotated[int, typer.Option(min=100, help="Timed lease credit checks.")] = 2000,
    state_url: Annotated[
        str | None, typer.Option(help="State store URL (an empty database); default SQLite.")
    ] = None,
) -> None:
    """POST /v1/credit-checks through uvicorn against a filled store: p50/p99 latency."""
    from cloud.leasing.bench import run_credit_bench  # noqa: PLC0415 (only this command)

    r = run_credit_bench(leases, checks, state_url)
    table = Table("figure", "value", "target", title=f"leasewatch bench credit-check ({r.backend})")
    table.add_row("leases / rows written", f"{r.leases:,} / {r.rows:,} in {r.fill_s:.0f} s", "")
    table.add_row("lease checks", f"{r.checks:,}", "")
    table.add_row("lease check p50", f"{r.p50_ms:.1f} ms", "")
    table.add_row("lease check p99", f"{r.p99_ms:.1f} ms", "< 50 ms")
    table.add_row("lease check max", f"{r.max_ms:.1f} ms", "")
    table.add_row("lessee check p99 (about 3 leases)", f"{r.lessee_p99_ms:.1f} ms", "")
    table.add_row(
        "load average (1 min) before / after", "{:.1f} / {:.1f}".format(*r.load_average), ""
    )
    Console().print(table)
