"""The `leasewatch` command: one entry point, a subcommand per part of the system."""

from __future__ import annotations

import typer

from cloud.cli import app as cloud_app
from cloud.detect_cli import app as detect_app
from cloud.risk.cli import app as risk_app
from edge.cli import app as edge_app
from firmware_sim.cli import app as sim_app
from leasewatch.bench import app as bench_app
from leasewatch.chaos.cli import app as chaos_app
from leasewatch.demo import demo

app = typer.Typer(
    help="LeaseWatch: equipment monitoring for leasing companies.", no_args_is_help=True
)
app.add_typer(edge_app, name="edge", help="Run or check the gateway's edge agent.")
app.add_typer(cloud_app, name="cloud", help="Run the cloud ingestor and API.")
app.add_typer(sim_app, name="sim", help="Simulate devices and fleets.")
app.add_typer(
    detect_app, name="detect", help="Run the detectors offline on CSV files, or score them."
)
app.add_typer(risk_app, name="risk", help="Risk scores: backtest on simulated portfolios.")
app.add_typer(bench_app, name="bench", help="Benchmarks that print figures.")
app.add_typer(
    chaos_app, name="chaos", help="Faults against a real stack: readings lost or duplicated."
)
app.command(name="demo")(demo)
