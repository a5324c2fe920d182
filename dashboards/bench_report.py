"""The `leasewatch bench dashboards` command and its table (registered in leasewatch/bench.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from dashboards.bench import (
    TARGET_S,
    DashboardBenchOptions,
    DashboardBenchResult,
    run_dashboard_bench,
)


def dashboards(
    assets: Annotated[int, typer.Option(min=10, help="Assets in the fleet.")] = 10_000,
    days: Annotated[int, typer.Option(min=1, max=90, help="Days of hourly rollups.")] = 14,
    repeats: Annotated[int, typer.Option(min=1, help="Timed fetches per page.")] = 5,
    state_url: Annotated[
        str | None, typer.Option(help="State store URL (an empty database); default SQLite.")
    ] = None,
) -> None:
    """Fill a state store with a fleet, time every dashboard page through the HTTP API."""
    options = DashboardBenchOptions(assets, days, repeats, state_url)
    try:
        result = run_dashboard_bench(options)
    except (RuntimeError, SQLAlchemyError) as err:
        typer.echo(f"benchmark failed: {err}", err=True)
        raise typer.Exit(1) from err
    Console().print(dashboards_table(result))


def dashboards_table(result: DashboardBenchResult) -> Table:
    """Median and worst time per page against the 1.5 s target, and bytes sent."""
    o = result.options
    store = (o.state_url or "sqlite").split("://")[0].split("+")[0]
    table = Table(
        "page", "median", "worst", "ratio to 1.5 s", "bytes",
        title=(
            f"leasewatch bench dashboards: {o.assets:,} assets, {o.days} days, {store}; "
            f"{result.rollup_rows:,} rollup rows and {result.alerts:,} alerts filled in "
            f"{result.fill_s:.0f} s; {o.repeats} fetches per page over loopback HTTP"
        ),
    )  # fmt: skip
    for page in result.pages:
        worst = max(page.seconds)
        table.add_row(
            f"{page.page} ({page.path})", f"{page.median_s * 1000:.0f} ms",
            f"{worst * 1000:.0f} ms", f"{worst / TARGET_S:.2f}", f"{page.bytes:,}",
        )  # fmt: skip
    return table
