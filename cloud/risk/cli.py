"""`leasewatch risk`: backtest the risk score on a simulated portfolio."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cloud.risk import cache
from cloud.risk.backtest import BacktestConfig, run_backtest
from cloud.risk.cache import CacheError
from cloud.risk.metrics import BacktestReport, report
from cloud.risk.pipeline import default_workers
from cloud.risk.rules import RulesError, load_rules
from firmware_sim.scenarios.loader import ScenarioError

app = typer.Typer(help="Risk scores: backtest on simulated portfolios.", no_args_is_help=True)


def _fmt(value: float | None, pattern: str = ".3f") -> str:
    return "-" if value is None else format(value, pattern)


def _table(title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _ceiling(result: BacktestReport) -> list[tuple[str, str]]:
    """The oracles' AUCs next to the signals' (what of the gap to the target is reachable)."""
    ceiling = result.ceiling
    if ceiling is None:
        return []
    lead = next(iter(result.lease_auc), 0)
    return [
        ("  ceiling: oracle knowing incidents begun by the as-of day", _fmt(ceiling.auc)),
        ("  ceiling: oracle knowing every incident (also future ones)", _fmt(ceiling.full_auc)),
        (f"  ceiling: lease-level AUC, {lead} d, as-of oracle", _fmt(ceiling.lease_auc)),
    ]


def _summary(result: BacktestReport) -> list[tuple[str, str]]:
    causes = ", ".join(f"{k} {v}" for k, v in result.arrears_by_cause.items()) or "-"
    timings = list(result.timings_s.items())
    leads = [
        (f"lease-level AUC, {lead} d before arrears", f"{_fmt(value)} ({cases} leases)")
        for (lead, value), cases in zip(
            result.lease_auc.items(), result.lease_auc_cases.values(), strict=True
        )
    ]
    alerts = [
        (f"alerts at {a.band}+ per 100 leases a year", f"{a.per_100_leases_per_year:.1f}")
        for a in result.alerts
    ]
    return [
        ("leases", str(result.leases)),
        ("leases in arrears", f"{result.leases_in_arrears} ({causes})"),
        ("lease-weeks scored (positives)", f"{result.observations} ({result.positives})"),
        ("lease-week ROC AUC", _fmt(result.auc)),
        *_ceiling(result),
        *leads,
        ("median lead time", f"{_fmt(result.median_lead_days, '.0f')} days"),
        ("arrears leases caught at high+", f"{result.caught} of {result.leases_in_arrears}"),
        *alerts,
        ("run time (wall)", f"{sum(v for k, v in timings if not k.startswith('cpu')):.0f} s"),
        *((k, f"{v:.1f} s") for k, v in timings),
    ]


def _print(result: BacktestReport, console: Console) -> None:
    console.print(
        _table(f"Risk backtest: {result.scenario}", ("figure", "value"), _summary(result))
    )
    console.print(_table("Per cause", (
        "cause", "leases", "lease-week AUC", "oracle (as of)", "lease AUC", "caught",
        "median lead d"
    ), [
        (c.cause, str(c.leases), _fmt(c.lease_week_auc), _fmt(c.oracle_auc), _fmt(c.lease_auc),
         str(c.caught), _fmt(c.median_lead_days, ".0f"))
        for c in result.causes
    ]))  # fmt: skip
    console.print(_table("Alerts (entries while paying)", (
        "band", "alerts", "per 100 leases a year", "followed by arrears"
    ), [
        (a.band, str(a.alerts), f"{a.per_100_leases_per_year:.1f}",
         _fmt(a.followed_by_arrears, ".2f"))
        for a in result.alerts
    ]))  # fmt: skip
    console.print(_table("Per signal: which carry the ranking", (
        "signal", "AUC alone", "AUC without it", "lease AUC without", "lease-weeks with points"
    ), [
        ("all signals (the score)", _fmt(result.auc), "-", "-", "-"),
        *_oracle_rows(result),
        *((r.signal, _fmt(r.auc_alone), _fmt(r.auc_without), _fmt(r.lease_auc_without),
           str(r.observations_with_points))
          for r in result.signals),
    ]))  # fmt: skip


def _oracle_rows(result: BacktestReport) -> list[tuple[str, ...]]:
    """The ceiling as rows of the per-signal table."""
    if result.ceiling is None:
        return []
    ceiling = result.ceiling
    return [
        ("oracle: hazard of incidents begun by as-of", _fmt(ceiling.auc), "-", "-", "-"),
        ("oracle: hazard of every incident", _fmt(ceiling.full_auc), "-", "-", "-"),
    ]


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
    workers: Annotated[
        int, typer.Option(min=1, help="Processes for the per-asset detectors.")
    ] = default_workers(),
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Keep detector histories here [default: ~/.cache/leasewatch/risk]."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute every run.")] = False,
    faults: Annotated[
        bool,
        typer.Option(
            "--faults", help="Run the fault detector too (~37 ms CPU per asset-day: subsample)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Run a scenario through the detectors, score every lease weekly, rank against arrears."""
    try:
        chosen = load_rules(rules)
    except RulesError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    console = Console(stderr=True)
    config = BacktestConfig(
        scenario=scenario, assets=assets, seed=seed, step_days=step_days, workers=workers,
        cache_dir=None if no_cache else (cache_dir or cache.default_dir()), faults=faults,
    )  # fmt: skip
    try:
        run = run_backtest(config, chosen, progress=console.log)
    except (ScenarioError, ValueError, CacheError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    result = report(run, horizon_days=horizon_days)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
    else:
        _print(result, Console())
