"""The detection runner on a SQLite state store: fold, close minutes, evaluate, apply, replay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from cloud.alerts.store import AlertStore
from cloud.detection.context import FileContextSource
from cloud.detection.runner import DetectionRunner, Timing
from cloud.detection.sweep import Sweep
from cloud.detector_state import load_detector_state
from cloud.schema import rollups
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


def test_daily_utilization_pass_reads_each_gateways_rollups_once(runner: DetectionRunner) -> None:
    wall = minute_start().replace(hour=3, minute=0)  # past today's settle time
    midnight = wall.replace(hour=0)
    hours = {"gw-1": 8, "gw-2": 3}  # running hours on each of the last 7 days
    rows = [
        {"device": device, "sensor": "plc", "metric": "running", "resolution_s": 3600,
         "bucket": midnight - timedelta(days=day, hours=hour), "unit": "", "count": 60,
         "sum": 60.0 if hour <= ran else 0.0, "min": 0.0, "max": 1.0}
        for device, ran in hours.items()
        for day in range(7)
        for hour in range(1, 25)
    ]  # fmt: skip
    with runner.engine.begin() as conn:
        conn.execute(insert(rollups), rows)
    for device in hours:  # gateways the worker has seen
        gw = Gateway(device)
        runner.process(gw.stream(wall - timedelta(minutes=3), wall - timedelta(minutes=2)), wall)
    sweep = Sweep(runner, timedelta(seconds=30))
    first = sweep.run_once(wall)
    again = sweep.run_once(wall + timedelta(minutes=1))
    assert (first.evaluations, again.evaluations) == (len(hours), 0)  # once a day per gateway
    with runner.engine.connect() as conn:
        states = {d: load_detector_state(conn, d, "utilization") for d in hours}
    assert all(state is not None for state in states.values())
    assert states["gw-1"] != states["gw-2"]  # each took its own days
