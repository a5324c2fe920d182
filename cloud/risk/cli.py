"""`leasewatch risk`: backtest the risk score on a simulated portfolio."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cloud.risk.backtest import BacktestConfig, run_backtest
from cloud.risk.metrics import BacktestReport, report
from cloud.risk.rules import RulesError, load_rules
from firmware_sim.scenarios.loader import ScenarioError

app = typer.Typer(help="Risk scores: backtest on simulated portfolios.", no_args_is_help=True)


def _fmt(value: float | None, pattern: str = ".3f") -> str:
    return "-" if value is None else format(value, pattern)


def _print(result: BacktestReport, console: Console) -> None:
    summary = Table(title=f"Risk backtest: {result.scenario}")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    causes = ", ".join(f"{k} {v}" for k, v in result.arrears_by_cause.items()) or "-"
    rows = [
        ("leases", str(result.leases)),
        ("leases in arrears", f"{result.leases_in_arrears} ({causes})"),
        ("lease-weeks scored (positives)", f"{result.observations} ({result.positives})"),
        ("ROC AUC", _fmt(result.auc)),
        ("median lead time", f"{_fmt(result.median_lead_days, '.0f')} days"),
        ("arrears leases caught at high+", f"{result.caught} of {result.leases_in_arrears}"),
        ("alerts per 100 leases", f"{result.alerts_per_100_leases:.1f} in {result.scored_days} d"),
        ("run time", f"{sum(result.timings_s.values()):.0f} s"),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)
    signals = Table(title="Per signal: which carry the ranking")
    for column in ("signal", "AUC alone", "AUC without it", "lease-weeks with points"):
        signals.add_column(column, justify="left" if column == "signal" else "right")
    for row in result.signals:
        signals.add_row(
            row.signal,
            _fmt(row.auc_alone),
            _fmt(row.auc_without),
            str(row.observations_with_points),
        )
    console.print(signals)


@app.command()
def backtest(
    scenario: Annotated[
        str, typer.Option(help="Shipped scenario name or TOML file.")
    ] = "portfolio",
    assets: Annotated[int | None, typer.Option(help="Subsample the scenario to N assets.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the repayment draws (default: the scenario's).")
    ] = None,
    horizon_days: Annotated[
        float, typer.Option(help="Arrears within this many days of an as-of day count.")
    ] = 90.0,
    step_days: Annotated[int, typer.Option(help="Score every N days.")] = 7,
    rules: Annotated[
        Path | None, typer.Option(help="Scoring rules TOML (default: the packaged rules).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Run a scenario through the detectors, score every lease weekly, rank against arrears."""
    try:
        chosen = load_rules(rules)
    except RulesError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    console = Console(stderr=True)
    config = BacktestConfig(scenario=scenario, assets=assets, seed=seed, step_days=step_days)
    try:
        run = run_backtest(config, chosen, progress=console.log)
    except (ScenarioError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    result = report(run, horizon_days=horizon_days)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
    else:
        _print(result, Console())
