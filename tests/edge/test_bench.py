"""The bench command's parts (the bench itself prints figures; it is not a timed test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.bench import BenchOptions, Watcher, agent_config, bench_register_fields, preload_backlog
from edge.buffer import ReadingBuffer
from edge.config import parse_config
from edge.mqtt_client import encode_message
from edge.scheduler import bus_budgets
from leasewatch.wire import Reading


def test_the_bench_configuration_is_valid_and_fits_its_bus(tmp_path: Path) -> None:
    options = BenchOptions(workdir=tmp_path)
    config = parse_config(agent_config(options, 18830, "/dev/pts/9", tmp_path / "edge"))
    (bus,) = config.modbus_rtu
    assert len(bus.slaves) == 8
    assert {s.poll_interval for s in bus.slaves} == {0.1}
    widths = [2 if f.kind == "u32" else 1 for f in bus.slaves[0].fields]
    assert sum(widths) == 16 == len(bench_register_fields(16)) + 1
    (budget,) = bus_budgets(config)
    assert budget.fits, budget.describe()


def test_preloaded_backlog_replays_as_an_earlier_boot(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    preload_backlog(path, 1200, per_message=500)
    buffer = ReadingBuffer(path, reserve_bytes=4096)
    messages = buffer.oldest(10)
    assert [m.count for m in messages] == [500, 500, 200]
    assert {m.boot for m in messages} == {"before-the-outage"}
    oldest = messages[0].readings[0].ts
    assert datetime.now(UTC) - oldest > timedelta(hours=23)


def test_the_watcher_counts_history_and_live_latency(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", reserve_bytes=4096)
    taken = datetime.now(UTC) - timedelta(seconds=2)
    buffer.add([Reading(sensor="m", metric="x", ts=taken, value=1.0)] * 3)
    buffer.seal("boot", 0, 10, taken)
    (message,) = buffer.oldest(1)
    watcher = Watcher()
    now = datetime.now(UTC)
    for historical, compress in ((True, False), (False, True)):
        payload = encode_message(
            message, "gw-bench", historical=historical, sent_at=now, compress=compress
        )
        watcher.take("lw/v1/gw-bench/telemetry", payload)
    assert (watcher.readings, watcher.historical) == (6, 3)
    (latency,) = watcher.live_latencies
    assert 1.5 < latency < 10
