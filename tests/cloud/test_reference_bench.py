"""`leasewatch bench reference`: issue 5's references measured against real VictoriaMetrics and
Mosquitto, every value and message counted back."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.reference_bench import (
    ISSUE_INFLUX_VALUES_PER_S,
    influx_lines,
    measure_influx,
    run_reference_bench,
)
from leasewatch.cli import app

pytestmark = pytest.mark.integration


def test_line_protocol_holds_exactly_the_values_asked_for() -> None:
    for fields in (1, 8):
        bodies = influx_lines(48_000, start_ms=1_700_000_000_000, fields=fields)
        lines = [line for body in bodies for line in body.decode().split("\n")]
        assert len(lines) == 48_000 // fields
        assert sum(len(line.split(" ")[1].split(",")) for line in lines) == 48_000
        # each series gets one more timestamp per round: no two lines share series and stamp
        series_at = {(line.split(" ")[0], line.split(" ")[1].split("=")[0], line.split(" ")[2])
                     for line in lines}  # fmt: skip
        assert len(series_at) == len(lines)
        assert all(line.startswith("lw,device=gw-") and ",unit=u " in line for line in lines)


def test_influx_reference_counts_every_value_back(tmp_path: Path) -> None:
    figure = measure_influx(40_000, tmp_path, fields=1)
    assert figure.verified == figure.count == 40_000
    assert figure.rate > 0 and figure.server_cpu_s is not None and figure.server_cpu_s > 0
    assert figure.ratio == pytest.approx(figure.rate / ISSUE_INFLUX_VALUES_PER_S)


def test_the_command_measures_all_three_and_every_subscriber_message_arrives() -> None:
    figures = list(run_reference_bench(values=20_000, messages=2_000))
    assert [f.unit for f in figures] == ["field values", "field values", "messages"]
    assert all(f.verified == f.count for f in figures), figures
    subscriber = figures[2]
    assert subscriber.count == 2_000 and subscriber.client_cpu_s > 0


def test_the_cli_prints_each_reference_against_the_issue() -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "reference", "--values", "20000", "--messages", "1000"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "~1,000,000/s" in result.output and "~10,000/s" in result.output
    assert "1,000 of 1,000" in result.output and "20,000 of 20,000" in result.output
