"""`leasewatch bench all`: runs each benchmark command for real and reports what it printed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from leasewatch import benchmarks_report as report
from leasewatch.cli import app

QUICK_REAL = report.Benchmark(
    "sample-config", 3, "prints the edge sample config", "exit 0",
    full=("edge", "sample-config"), quick=("edge", "sample-config"),
)  # fmt: skip
FAILING = report.Benchmark(
    "bad-config", 3, "an edge config that does not exist", "exit 0",
    full=("edge", "--config", "/nonexistent/edge.toml", "--check"),
    quick=("edge", "--config", "/nonexistent/edge.toml", "--check"),
)  # fmt: skip


def test_a_report_holds_machine_date_summary_and_what_each_command_printed(tmp_path: Path) -> None:
    runs = report.run_all([QUICK_REAL, FAILING], quick=True)
    assert runs[0].status == "finished", runs[0].output
    assert runs[1].status.startswith("failed (exit ")
    out = report.write_report(
        runs, tmp_path / "BENCHMARKS.md", quick=True, now=datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    )
    text = out.read_text()
    assert "2026-12-04 23:00 UTC" in text
    assert "| CPU |" in text and "cores)" in text and "| Python |" in text
    assert "| sample-config | #3 |" in text and "| finished |" in text
    assert "load average" in text and " / " in text
    assert "[gateway]" in text, "the sample config the command printed is in the report"
    assert "/nonexistent/edge.toml" in text, "a failure shows the command's own error"


def _bench_brokers() -> set[int]:
    """Mosquitto processes a benchmark started (their config lives in a lw-bench- directory)."""
    found = set()
    for process in psutil.process_iter(["name", "cmdline"]):
        words = process.info["cmdline"] or []
        if process.info["name"] == "mosquitto" and any("lw-bench-" in w for w in words):
            found.add(process.pid)
    return found


def test_a_benchmark_over_its_time_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    before = _bench_brokers()
    slow = report.Benchmark(
        "slow", 4, "a fleet that publishes longer than allowed", "-",
        full=("sim", "fleet", "--help"), quick=("sim", "bench", "--duration", "120"),
        timeout_s=8.0,
    )  # fmt: skip
    (run,) = report.run_all([slow], quick=True)
    assert run.exit_code is None and run.status == "timed out after 8 s"
    assert run.seconds < 30
    assert _bench_brokers() - before == set(), "the benchmark's Mosquitto was stopped with it"


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: edge, fleet"):
        report.select(["edge", "nope"])
    assert [b.name for b in report.select(["fleet"])] == ["fleet"]
    assert len(report.select([])) == len(report.BENCHMARKS)


def test_the_command_refuses_an_unknown_benchmark() -> None:
    result = CliRunner().invoke(app, ["bench", "all", "--only", "nope"])
    assert result.exit_code == 2
    assert "unknown benchmark(s) nope" in result.output


def test_every_listed_benchmark_is_a_real_command() -> None:
    runner = CliRunner()
    for benchmark in report.BENCHMARKS:
        for argv in {benchmark.full, benchmark.quick}:
            words = [w for w in argv if not w.startswith("-")][:2]
            result = runner.invoke(app, [*words, "--help"])
            assert result.exit_code == 0, (benchmark.name, argv, result.output)
            for option in (w for w in argv if w.startswith("--")):
                assert option in result.output, (benchmark.name, option)
