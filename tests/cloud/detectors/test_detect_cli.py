"""The offline contract: one row per input row, scores in [0, 1], alerts 0/1, causal scores."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cloud.detect_cli import app

runner = CliRunner()


def write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def sensor_rows(count: int) -> list[list[object]]:
    rng = np.random.default_rng(11)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows: list[list[object]] = []
    for n in range(count):
        a = float(rng.standard_normal())
        b = 3 * a + 0.05 * float(rng.standard_normal()) + (1.5 if 700 <= n < 706 else 0.0)
        cell_b: object = "" if n == 300 else round(b, 4)
        rows.append([(start + timedelta(minutes=n)).isoformat(), round(a, 4), cell_b])
    return rows


def usage_rows(days: int, drop_day: int) -> list[list[object]]:
    rng = np.random.default_rng(4)
    start = date(2025, 1, 6)
    rows: list[list[object]] = []
    for n in range(days):
        day = start + timedelta(days=n)
        hours = 0.0 if day.weekday() >= 5 else 8 * (1 + 0.05 * float(rng.standard_normal()))
        rows.append([day.isoformat(), round(hours * (0.6 if n >= drop_day else 1.0), 3)])
    return rows


def run_faults(tmp_path: Path, rows: list[list[object]], name: str) -> list[dict[str, str]]:
    src = write(tmp_path / f"{name}.csv", ["time", "a", "b"], rows)
    out = tmp_path / f"{name}.out.csv"
    args = [
        "faults",
        "--csv",
        str(src),
        "--time-col",
        "time",
        "--value-cols",
        "a,b",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return read(out)


def test_faults_contract_columns_rows_and_ranges(tmp_path: Path) -> None:
    rows = sensor_rows(900)
    out = run_faults(tmp_path, rows, "all")
    assert list(out[0]) == ["time", "score", "alert"]
    assert len(out) == len(rows)
    assert [r["time"] for r in out] == [str(r[0]) for r in rows]
    assert all(0.0 <= float(r["score"]) <= 1.0 and r["alert"] in ("0", "1") for r in out)
    alerts = [n for n, r in enumerate(out) if r["alert"] == "1"]
    assert alerts and all(700 <= n < 706 for n in alerts)


def test_faults_scores_are_causal_appending_rows_changes_nothing_before(tmp_path: Path) -> None:
    rows = sensor_rows(900)
    short = run_faults(tmp_path, rows[:650], "short")
    full = run_faults(tmp_path, rows, "full")
    assert full[:650] == short


def run_usage(
    tmp_path: Path, rows: list[list[object]], name: str
) -> tuple[list[dict[str, str]], Path]:
    src = write(tmp_path / f"{name}.csv", ["day", "hours"], rows)
    out = tmp_path / f"{name}.out.csv"
    args = [
        "utilization",
        "--csv",
        str(src),
        "--time-col",
        "day",
        "--value-cols",
        "hours",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return read(out), out.with_suffix(".episodes.csv")


def test_utilization_contract_and_episodes_file(tmp_path: Path) -> None:
    rows = usage_rows(120, drop_day=70)
    out, episodes = run_usage(tmp_path, rows, "usage")
    assert list(out[0])[:3] == ["day", "score", "alert"]
    assert len(out) == len(rows)
    first_alert = next(n for n, r in enumerate(out) if r["alert"] == "1")
    assert 70 <= first_alert <= 74
    assert abs(float(out[first_alert]["magnitude"]) - 0.4) < 0.08
    found = read(episodes)
    assert found[0]["state"] == "open" and found[0]["start"] >= "2025-03-14"


def test_utilization_scores_are_causal(tmp_path: Path) -> None:
    rows = usage_rows(120, drop_day=70)
    short, _ = run_usage(tmp_path, rows[:90], "short")
    full, _ = run_usage(tmp_path, rows, "full")
    assert full[:90] == short


def test_utilization_from_samples_sums_each_day(tmp_path: Path) -> None:
    rows: list[list[object]] = []
    for day in usage_rows(100, drop_day=70):
        for hour in range(24):
            share = float(day[1]) / 24  # type: ignore[arg-type]
            rows.append([f"{day[0]}T{hour:02d}:00:00Z", round(share, 4)])
    src = write(tmp_path / "s.csv", ["t", "running_h"], rows)
    out = tmp_path / "s.out.csv"
    args = ["utilization", "--csv", str(src), "--time-col", "t", "--value-cols", "running_h",
            "--out", str(out), "--granularity", "samples"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    alerts = [n // 24 for n, r in enumerate(read(out)) if r["alert"] == "1"]
    assert alerts and 70 <= alerts[0] <= 75


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["t", "x"], ["2025-01-01", "1"], "no column 'a'"),
        (["t", "a"], ["yesterday", "1"], "neither ISO 8601"),
        (["t", "a"], ["2025-01-01", "abc"], "s.csv:2"),
    ],
)
def test_bad_input_fails_with_a_sentence(
    tmp_path: Path, header: list[str], row: list[object], message: str
) -> None:
    src = write(tmp_path / "s.csv", header, [row])
    args = [
        "faults",
        "--csv",
        str(src),
        "--time-col",
        "t",
        "--value-cols",
        "a",
        "--out",
        str(tmp_path / "o.csv"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
