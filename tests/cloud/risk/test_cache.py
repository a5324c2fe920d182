"""The detector-history cache: same histories back, keyed by scenario, refused when damaged."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cloud.risk import cache
from cloud.risk.backtest import BacktestConfig, run_backtest
from cloud.risk.metrics import report
from cloud.risk.rules import ScoringRules
from leasewatch.cli import app


def test_a_second_run_reads_the_same_histories_from_the_cache(
    tmp_path: Path, rules: ScoringRules
) -> None:
    config = BacktestConfig(scenario="utilization", assets=8, cache_dir=tmp_path, workers=2)
    first = run_backtest(config, rules)
    files = list(tmp_path.glob("*.npz"))
    assert [f.stem for f in files] == [cache.cache_key("utilization", 8)]
    second = run_backtest(config, rules)
    assert "cached detector histories" in second.timings
    assert "cached detector histories" not in first.timings
    assert first.observations == second.observations
    assert asdict(report(first))["signals"] == asdict(report(second))["signals"]
    histories = cache.load(files[0])
    assert len(histories) == 8
    assert all(h.asset_type and h.region for h in histories)
    assert all(len(h.hours) == len(h.covered) == 150 for h in histories)
    assert np.isfinite(np.stack([h.hours for h in histories])).all()


def test_the_key_follows_the_scenario_and_its_file(tmp_path: Path) -> None:
    assert cache.cache_key("utilization", 8) == cache.cache_key("utilization", 8)
    assert cache.cache_key("utilization", 8) != cache.cache_key("utilization", 9)
    scenario = tmp_path / "mine.toml"
    scenario.write_text('name = "a"\n', encoding="utf-8")
    before = cache.cache_key(str(scenario), None)
    scenario.write_text('name = "b"\n', encoding="utf-8")
    assert cache.cache_key(str(scenario), None) != before


def test_a_damaged_cache_file_is_refused_with_its_name(tmp_path: Path) -> None:
    damaged = tmp_path / "broken.npz"
    damaged.write_bytes(b"not a numpy archive")
    with pytest.raises(cache.CacheError, match=r"broken\.npz: unreadable risk cache"):
        cache.load(damaged)


def test_the_command_prints_every_table_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["risk", "backtest", "--scenario", "utilization", "--assets", "8"]
    base += ["--cache-dir", str(tmp_path), "--workers", "1"]
    tables = runner.invoke(app, base, env={"COLUMNS": "200"})
    assert tables.exit_code == 0, tables.output
    for title in ("lease-week ROC AUC", "Per cause", "all but base_rate", "Alerts", "Per signal"):
        assert title in tables.output
    as_json = runner.invoke(app, [*base, "--json"])
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.stdout[as_json.stdout.index("{") :])
    assert figures["leases"] == 8
    assert set(figures["lease_auc"]) == {"30", "60"}
    assert "cached detector histories" in figures["timings_s"]


def test_a_damaged_cache_fails_the_command_with_a_sentence(tmp_path: Path) -> None:
    (tmp_path / f"{cache.cache_key('utilization', 8)}.npz").write_bytes(b"junk")
    args = ["risk", "backtest", "--scenario", "utilization", "--assets", "8"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unreadable risk cache" in result.output
