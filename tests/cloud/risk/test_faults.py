"""Fault burden in the backtest: fault episodes by severity, counted as live scoring counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.risk.backtest import SIGNALS, BacktestConfig, run_backtest
from cloud.risk.faults import cache_path, fault_episodes
from cloud.risk.rules import ScoringRules

MISSING = """
name = "overload"
description = "2 assets, 21 days: one CNC's temperature sensor missing on days 10-13"
seed = 3
start = 2025-05-05
days = 21
speed = 86400
sample_s = 60
batch_s = 600

[regions.ruhr]
center = [51.45, 7.0]
radius_km = 120

[sites.essen-works]
position = [51.455, 7.011]
region = "ruhr"

[[assets]]
id = "cnc-1"
type = "cnc"
site = "essen-works"
lease = "L-1"

[[assets]]
id = "cnc-2"
type = "cnc"
site = "essen-works"
lease = "L-2"

[[events]]
kind = "fault"
fault = "sensor_failure"
asset = "cnc-1"
start_day = 10
days = 4
metric = "temperature"
mode = "missing"
"""


START = datetime(2025, 5, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "missing.toml"
    path.write_text(MISSING, encoding="utf-8")
    return path


def test_episodes_open_on_the_faulty_asset_only(scenario: Path, tmp_path: Path) -> None:
    found = fault_episodes(str(scenario), None, 1, tmp_path, lambda _: None)
    warning, critical = found["cnc-1"]
    assert warning and not critical  # a missing sensor is a warning
    assert 10 <= (warning[0].reported - START).days <= 11
    assert found["cnc-2"] == ((), ())
    assert cache_path(tmp_path, str(scenario), None).exists()
    assert fault_episodes(str(scenario), None, 1, tmp_path, lambda _: None) == found


def test_fault_burden_scores_while_the_fault_is_open(
    scenario: Path, tmp_path: Path, rules: ScoringRules
) -> None:
    config = BacktestConfig(
        scenario=str(scenario), first_day=7, step_days=1, workers=1, cache_dir=tmp_path,
        faults=True,
    )  # fmt: skip
    run = run_backtest(config, rules)
    index = SIGNALS.index("fault_burden")
    obs = run.observations
    burden = {
        (lease, day): points[index]
        for lease, day, points in zip(obs.leases, obs.days, obs.points, strict=True)
    }
    (warning, _), _ = fault_episodes(str(scenario), None, 1, tmp_path, lambda _: None).values()
    for day in range(7, 21):  # points exactly when an episode is open at the as-of midnight
        open_now = any(e.open_at(START + timedelta(days=day)) for e in warning)
        assert (burden[("L-1", day)] > 0) == open_now
        assert burden[("L-2", day)] == 0
    assert sum(burden[("L-1", day)] > 0 for day in range(7, 21)) >= 3
    without = run_backtest(BacktestConfig(scenario=str(scenario), first_day=7, workers=1), rules)
    assert not any(points[index] for points in without.observations.points)
