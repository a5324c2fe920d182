"""The detection runner on a SQLite state store: fold, close minutes, evaluate, apply, replay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cloud.alerts.store import AlertStore
from cloud.detection.context import FileContextSource
from cloud.detection.runner import DetectionRunner, Timing
from cloud.detection.sweep import Sweep
from cloud.state import StateStore
from tests.cloud.detection.gateways import Gateway, minute_start


@pytest.fixture
def runner(tmp_path: Path) -> DetectionRunner:
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    source = FileContextSource.of_types({"gw-1": "truck"})
    return DetectionRunner(store.engine, AlertStore(store.engine), source, Timing())


def test_fault_code_opens_one_alert_when_its_minute_closes(runner: DetectionRunner) -> None:
    gw = Gateway("gw-1")
    start = minute_start() - timedelta(minutes=5)
    outcome = runner.process(
        gw.stream(start, start + timedelta(minutes=2)), start + timedelta(minutes=2)
    )
    assert outcome.alerts.opened == []
    gw.code = 7.0
    runner.process(gw.stream(start + timedelta(minutes=2), start + timedelta(minutes=3)))
    outcome = runner.process([gw.batch(start + timedelta(minutes=3), samples=5)])
    alerts = runner.alerts.query(device="gw-1")
    assert [(a.detector, a.key, a.status) for a in alerts] == [("faults", "code:7", "open")]
    assert outcome.alerts.opened == [alerts[0].id]
    assert alerts[0].suppression is None


def test_redelivered_batch_changes_nothing(runner: DetectionRunner) -> None:
    gw = Gateway("gw-1", code=3.0)
    start = minute_start() - timedelta(minutes=5)
    batches = gw.stream(start, start + timedelta(minutes=2))
    runner.process(batches)
    again = runner.process(batches)
    assert again.duplicates == len(batches)
    assert again.evaluations == 0
    assert len(runner.alerts.query(device="gw-1")) == 1


def test_replayed_backlog_is_recorded_not_announced(runner: DetectionRunner) -> None:
    gw = Gateway("gw-1", code=5.0)
    start = minute_start() - timedelta(hours=3)
    runner.process(gw.stream(start, start + timedelta(minutes=3), historical=True))
    (alert,) = runner.alerts.query(device="gw-1")
    assert alert.key == "code:5"
    assert alert.suppression is not None and "replayed" in alert.suppression
    assert not alert.delivered
    # the replay alone opens no silence, even though its data is hours old
    assert runner.alerts.query(detector="silence") == []


def test_sweep_opens_one_silence_per_gateway(runner: DetectionRunner) -> None:
    gw = Gateway("gw-1")
    start = minute_start() - timedelta(minutes=50)
    runner.process(gw.stream(start, start + timedelta(minutes=5)), start + timedelta(minutes=5))
    sweep = Sweep(runner, timedelta(seconds=30))
    sweep.run_once()
    sweep.run_once(minute_start() + timedelta(minutes=1))
    silences = runner.alerts.query(detector="silence")
    assert [(a.key, a.status, a.evidence["cause"]) for a in silences] == [
        ("gateway", "open", "power_cut")
    ]
