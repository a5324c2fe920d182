"""Scenario-driven commands: `leasewatch sim scenario ...`, `sim fleet` and `sim bench`.

`fleet_command` and `bench_command` are registered on `sim` itself (`firmware_sim.cli`), not
under `scenario`: one name per command.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from firmware_sim.bench import BenchError, figures, run_bench
from firmware_sim.fleet import (
    BrokerTarget,
    FleetError,
    FleetPlan,
    FleetReport,
    FleetStats,
    load_credentials,
)
from firmware_sim.fleet_processes import run_fleet_with_progress
from firmware_sim.scenarios.expand import ResolvedScenario, resolve
from firmware_sim.scenarios.loader import ScenarioError, load_scenario, named_scenarios
from firmware_sim.scenarios.run import run_scenario
from leasewatch.logs import configure_logging

app = typer.Typer(no_args_is_help=True)

ScenarioArg = Annotated[
    str, typer.Argument(help="A shipped scenario's name (see `scenario list`) or a TOML file.")
]
AssetsOption = Annotated[
    int | None,
    typer.Option(min=1, max=100_000, help="Number of assets (scales the scenario's fleet)."),
]


@app.callback()
def scenario() -> None:
    """Scenarios with ground truth: assets, leases, what happens to them, and the labels."""


def load_resolved(source: str, assets: int | None = None) -> ResolvedScenario:
    """Load and resolve a scenario, or exit with the problems (status 2)."""
    try:
        loaded = load_scenario(source)
        if assets is not None:
            loaded = loaded.with_asset_count(assets)
    except (ScenarioError, ValueError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    return resolve(loaded)


@app.command("list")
def list_scenarios() -> None:
    """List the shipped scenarios: name, assets, days, what each contains."""
    table = Table("name", "assets", "days", "description", box=None)
    for name, description in named_scenarios().items():
        loaded = load_scenario(name)
        table.add_row(name, f"{len(loaded.asset_ids()):,}", str(loaded.days), description)
    Console().print(table)


@app.command("check")
def check(source: ScenarioArg) -> None:
    """Validate a scenario file; print its problems (exit 2) or what it resolves to."""
    resolved = load_resolved(source)
    kinds: dict[str, int] = {}
    for incident in resolved.incidents:
        kinds[incident.kind] = kinds.get(incident.kind, 0) + 1
    listed = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
    typer.echo(
        f"{resolved.scenario.name}: valid; {len(resolved.assets)} assets,"
        f" {resolved.scenario.days} days, {len(resolved.incidents)} incidents ({listed or 'none'})"
    )


@app.command("run")
def run(
    source: ScenarioArg,
    out: Annotated[Path, typer.Option(help="Directory for labels.jsonl, days.csv, assets.csv.")],
    telemetry: Annotated[
        bool, typer.Option(help="Also write every message the gateways publish (small runs).")
    ] = False,
    assets: AssetsOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Simulate a scenario offline and write its ground truth (same seed, same files).

    Writes to --out: labels.jsonl (one JSON line per incident: asset, device,
    lease, kind, category, start, end, magnitude and what a detector needs),
    days.csv (run hours per asset and day, and the nominal hours without
    incidents), assets.csv (type, site, lease, initial run hours) and
    scenario.json (the scenario as run). --telemetry adds telemetry.jsonl,
    every message the gateways would publish.

    Example: leasewatch sim scenario run smoke --out runs/smoke
    """
    resolved = load_resolved(source, assets)
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task(f"{resolved.scenario.name}: assets", total=len(resolved.assets))
        summary = run_scenario(
            resolved, out, telemetry=telemetry, progress=lambda n: bar.advance(task, n)
        )
    typer.echo(
        f"{resolved.scenario.name}: {summary.assets} assets x {summary.days} days,"
        f" {summary.labels} labels"
        + (f", {summary.messages} messages" if telemetry else "")
        + f" -> {out}"
    )


ScenarioOption = Annotated[
    str, typer.Option(help="Scenario (name or TOML file) whose assets and incidents to simulate.")
]
HostOption = Annotated[str, typer.Option(help="MQTT broker host.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="MQTT broker port.")]
UserOption = Annotated[
    str | None, typer.Option(help="Broker username: a simulator principal (load tests only).")
]
PasswordOption = Annotated[
    str | None, typer.Option(envvar="LEASEWATCH_SIM_PASSWORD", help="Broker password.")
]
CredentialsOption = Annotated[
    Path | None, typer.Option(help="TOML file with username and password (instead of options).")
]
ProtocolOption = Annotated[int, typer.Option(min=4, max=5, help="MQTT 5, or 4 for 3.1.1.")]
ConnectionsOption = Annotated[
    int,
    typer.Option(
        min=1, max=256, help="MQTT connections per process; each has a slice of gateways."
    ),
]
ProcessesOption = Annotated[
    int,
    typer.Option(min=1, max=64, help="OS processes sharing the gateways (one core each at most)."),
]
WindowOption = Annotated[
    int, typer.Option(min=1, max=10_000, help="Publishes awaiting PUBACK per connection.")
]
ReportOption = Annotated[
    Path | None,
    typer.Option(help="Write one JSON line per publish here (+ .devices.csv, .summary.json)."),
]


def _target(
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    credentials: Path | None,
    protocol: int,
) -> BrokerTarget:
    """The broker to publish to, with credentials from options or a file."""
    if credentials is not None:
        try:
            username, password = load_credentials(credentials)
        except FleetError as err:
            raise typer.BadParameter(str(err), param_hint="--credentials") from err
    return BrokerTarget(host, port, username, password, protocol)


def _speed(
    resolved: ResolvedScenario, speed: float | None, rate: float | None, unpaced: bool
) -> float | None:
    """Simulated seconds per real second: given, from a message rate, or the scenario's."""
    if unpaced:
        return None
    if rate is not None and speed is not None:
        raise typer.BadParameter("give --rate or --speed, not both", param_hint="--rate")
    if rate is not None:
        return rate * resolved.scenario.batch_s / len(resolved.assets)
    return speed or resolved.scenario.speed


def _describe(stats: FleetStats, report: Path | None) -> str:
    """What a fleet run sent, in a few lines."""
    s = stats.summary()
    faults = ", ".join(f"{k} {v}" for k, v in stats.faults.items()) or "none"
    lines = [
        f"sent {stats.messages:,} messages ({stats.telemetry:,} telemetry,"
        f" {stats.readings:,} readings) in {s['elapsed_s']} s: {s['messages_per_s']:,} msg/s,"
        f" {s['readings_per_s']:,} readings/s",
        f"PUBACK p50 {s['puback_p50_ms']} ms, p99 {s['puback_p99_ms']} ms;"
        f" max lag behind schedule {s['max_lag_s']} s",
        f"data faults injected: {faults}; held back unsent at the end: {stats.unsent}",
    ]
    if report is not None:
        lines.append(f"report: {report} (+ .devices.csv, .summary.json)")
    return "\n".join(lines)


def fleet_command(  # noqa: PLR0917 - typer options are parameters
    scenario: ScenarioOption = "fleet-load",
    assets: AssetsOption = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Messages/s over the fleet (sets the speed).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(min=0.001, help="Simulated s per real s (default: scenario's).")
    ] = None,
    unpaced: Annotated[
        bool, typer.Option(help="Publish as fast as the broker acknowledges.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many real seconds.")
    ] = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1883,
    username: UserOption = None,
    password: PasswordOption = None,
    credentials: CredentialsOption = None,
    protocol: ProtocolOption = 5,
    connections: ConnectionsOption = 4,
    processes: ProcessesOption = 1,
    window: WindowOption = 32,
    boot_tag: Annotated[
        str | None, typer.Option(help="Prefix of boot ids (default: from the clock).")
    ] = None,
    report: ReportOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING",
) -> None:
    """Publish a scenario's gateways straight to MQTT (no serial) and report what was sent.

    Each gateway sends TelemetryBatch messages at QoS 1 like the edge agent
    (device, boot, per-boot seq, readings stamped in simulated time,
    historical replays after outages), with the scenario's outages, power
    cuts, duplicates, late and malformed messages.

    A few connections carry all gateways, so log in as a simulator principal
    (load tests only; never provision one in production).

    Pace: --rate (messages/s over the fleet) or --speed (simulated s per real
    s), or --unpaced. Runs to the scenario's end or for --duration.

    --report sent.jsonl lists every acknowledged publish (device, boot, seq,
    fault), one JSON line each, next to sent.devices.csv (per device) and
    sent.summary.json, so a test can check what the cloud stored.

    Example:
    leasewatch sim fleet --assets 10000 --rate 5000 --duration 60
    --host broker --credentials sim.toml --report sent.jsonl
    """
    configure_logging(log_level)
    resolved = load_resolved(scenario, assets)
    plan = FleetPlan(
        speed=_speed(resolved, speed, rate, unpaced),
        duration_s=duration,
        connections=connections,
        window=window,
        boot_tag=boot_tag or f"r{int(time.time()):x}",
        report=report,
    )
    target = _target(
        host=host,
        port=port,
        username=username,
        password=password,
        credentials=credentials,
        protocol=protocol,
    )
    try:
        stats = asyncio.run(
            run_fleet_with_progress(
                resolved, target, plan, FleetReport(report), show=progress, processes=processes
            )
        )
    except FleetError as err:
        typer.echo(f"fleet mode stopped: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(_describe(stats, report))


def bench_command(  # noqa: PLR0917 - typer options are parameters
    assets: Annotated[int, typer.Option(min=1, max=100_000, help="Number of gateways.")] = 2000,
    duration: Annotated[float, typer.Option(min=1.0, help="Real seconds to publish.")] = 20.0,
    scenario: ScenarioOption = "fleet-load",
    host: Annotated[
        str | None, typer.Option(help="Benchmark this broker instead of starting Mosquitto.")
    ] = None,
    port: PortOption = 1883,
    username: UserOption = None,
    password: PasswordOption = None,
    credentials: CredentialsOption = None,
    protocol: ProtocolOption = 5,
    connections: ConnectionsOption = 4,
    processes: ProcessesOption = 1,
    window: WindowOption = 32,
    report: ReportOption = None,
    subscriber: Annotated[
        bool, typer.Option(help="Also count deliveries to a QoS 1 mosquitto_sub (local broker).")
    ] = False,
) -> None:
    """Measure fleet mode: messages/s, readings/s and PUBACK latency, publishing unpaced.

    Starts Mosquitto with the deployed configuration on a free port (unless
    --host is given), runs the fleet as fast as PUBACKs return for --duration,
    and prints the figures with the CPU each side used and the machine's load,
    which tell what limited the run. The target is 5,000 messages/s; the
    messages per publisher CPU-second say how fast the publisher is whatever
    else the machine runs.

    --subscriber also counts what a QoS 1 mosquitto_sub received (each
    publish then costs the broker a delivery too).
    """
    configure_logging("WARNING")
    resolved = load_resolved(scenario, assets)
    plan = FleetPlan(
        speed=None,
        duration_s=duration,
        connections=connections,
        window=window,
        boot_tag=f"bench{int(time.time()):x}",
        report=report,
    )
    target = None
    if host is not None:
        target = _target(
            host=host,
            port=port,
            username=username,
            password=password,
            credentials=credentials,
            protocol=protocol,
        )
    try:
        result = run_bench(resolved, plan, target, subscriber=subscriber, processes=processes)
    except (BenchError, FleetError) as err:
        typer.echo(f"bench failed: {err}", err=True)
        raise typer.Exit(1) from err
    Console().print(figures(result))
