"""`leasewatch detect`: detectors offline on CSV files, and their scores on simulator scenarios."""

from __future__ import annotations

import csv
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cloud.detectors.offline import OfflineInputError, UsageRun, fault_scores, read_rows

app = typer.Typer(
    help="Run the detectors offline on CSV files, or score them on simulator scenarios.",
    no_args_is_help=True,
)

CsvArg = Annotated[Path, typer.Option("--csv", help="Input CSV file with a header row.")]
TimeCol = Annotated[str, typer.Option("--time-col", help="Column with ISO 8601 or epoch times.")]
ValueCols = Annotated[str, typer.Option("--value-cols", help="Comma-separated value columns.")]
OutArg = Annotated[Path, typer.Option("--out", help="Output CSV: one row per input row.")]


class Granularity(StrEnum):
    """What one input row of `detect utilization` is."""

    DAILY = "daily"
    SAMPLES = "samples"


def _columns(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise typer.BadParameter("give at least one column", param_hint="--value-cols")
    return columns


def _fail(err: OfflineInputError) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@app.command()
def faults(csv_path: CsvArg, time_col: TimeCol, value_cols: ValueCols, out: OutArg) -> None:
    """Fault scores: time, score in [0, 1], alert (0/1) for every input row."""
    columns = _columns(value_cols)
    try:
        with out.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow([time_col, "score", "alert"])
            for row, result in fault_scores(read_rows(csv_path, time_col, columns), columns):
                writer.writerow([row.time_text, f"{result.score:.6f}", int(result.alert)])
    except OfflineInputError as err:
        raise _fail(err) from err


def _holidays(text: str) -> frozenset[date]:
    items = Path(text[1:]).read_text().split() if text.startswith("@") else text.split(",")
    try:
        return frozenset(date.fromisoformat(d.strip()) for d in items if d.strip())
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--holidays") from err


@app.command()
def utilization(  # noqa: PLR0917 - typer options are parameters
    csv_path: CsvArg,
    time_col: TimeCol,
    value_cols: ValueCols,
    out: OutArg,
    granularity: Annotated[
        Granularity,
        typer.Option(help="daily: a row is one day's use; samples: rows add up per day."),
    ] = Granularity.DAILY,
    holidays: Annotated[
        str, typer.Option(help="Known holidays: comma-separated dates, or @FILE with one a line.")
    ] = "",
    episodes_out: Annotated[
        Path | None, typer.Option(help="Episodes CSV (default: OUT with .episodes.csv).")
    ] = None,
) -> None:
    """Utilization decline scores per row (plus baseline and open episode) and the episodes."""
    columns = _columns(value_cols)
    run = UsageRun(holidays=_holidays(holidays))
    rows = read_rows(csv_path, time_col, columns)
    header = [time_col, "score", "alert", "usage", "baseline", "episode_start", "magnitude"]
    try:
        with out.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            for row, v in run.scores(rows, daily=granularity is Granularity.DAILY):
                start = "" if v.episode_start is None else v.episode_start.isoformat()
                writer.writerow([
                    row.time_text, f"{v.score:.6f}", int(v.alert), _number(v.usage),
                    _number(v.baseline), start, _number(v.magnitude),
                ])  # fmt: skip
    except OfflineInputError as err:
        raise _fail(err) from err
    _write_episodes(episodes_out or out.with_suffix(".episodes.csv"), run)


def _write_episodes(path: Path, run: UsageRun) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["state", "start", "reported_at", "magnitude", "confidence", "summary"])
        for f in run.findings:
            writer.writerow([
                f.state, f.since.date().isoformat(), f.evaluated_at.isoformat(),
                _number(f.magnitude), _number(f.confidence), f.summary,
            ])  # fmt: skip


@app.command()
def score(
    suite: Annotated[
        str, typer.Option(help="quick (minutes) or full (tens of minutes).")
    ] = "quick",
    out: Annotated[Path | None, typer.Option(help="Also write the table to this file.")] = None,
) -> None:
    """Score every detector on the simulator's scenarios and print the table."""
    from cloud.detectors.suite import SUITES, run_suite  # noqa: PLC0415 - heavy, only here

    if suite not in SUITES:
        raise typer.BadParameter(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    table = run_suite(SUITES[suite], progress=lambda line: typer.echo(line, err=True))
    typer.echo(table)
    if out is not None:
        out.write_text(table + "\n", encoding="utf-8")
