"""The durable buffer: sealing, acknowledgement, bounds, a full disk and kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.buffer import MAX_BODY_BYTES, BufferSchemaError, ReadingBuffer
from leasewatch.wire import MachineEvent, Reading

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _readings(n: int, start: int = 0, sensor: str = "machine") -> list[Reading]:
    return [
        Reading(
            sensor=sensor,
            metric="motor_current",
            ts=T0 + timedelta(seconds=i),
            value=i / 10,
            unit="A",
        )
        for i in range(start, start + n)
    ]


def _fill(buffer: ReadingBuffer, messages: int, per_message: int, boot: str = "boot1") -> None:
    for seq in range(messages):
        buffer.add(_readings(per_message, start=seq * per_message))
        buffer.seal(boot, seq, max_readings=per_message, now=T0)


def test_sealed_messages_keep_readings_in_order_until_accepted(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    buffer.add(_readings(5))
    assert buffer.seal("boot1", 0, max_readings=3, now=T0) == 3
    assert buffer.seal("boot1", 1, max_readings=3, now=T0) == 2
    assert buffer.seal("boot1", 2, max_readings=3, now=T0) == 0
    first, second = buffer.oldest(10)
    assert (first.boot, first.seq, second.seq) == ("boot1", 0, 1)
    assert [r.value for r in first.readings + second.readings] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert first.readings[0].unit == "A"
    buffer.accept([first.id])
    assert [m.seq for m in buffer.oldest(10)] == [1]
    assert buffer.stats()["sent_messages"] == 1


def test_buffer_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buffer = ReadingBuffer(path)
    buffer.add(_readings(4))
    buffer.seal("boot1", 0, max_readings=2, now=T0)
    buffer.close()
    reopened = ReadingBuffer(path)
    stats = reopened.stats()
    assert (stats["pending_readings"], stats["outbox_messages"], stats["outbox_readings"]) == (
        2,
        1,
        2,
    )
    assert reopened.oldest(1)[0].readings == tuple(_readings(2))


def test_events_and_feature_state_are_kept_with_the_readings(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    start = MachineEvent(sensor="machine", kind="start", ts=T0, detail="current says running")
    assert buffer.add(_readings(2), [start], state={"feature:x": '{"run_hours": 1.5}'})
    assert buffer.seal("boot1", 0, max_readings=10, now=T0) == 3
    (message,) = buffer.oldest(10)
    assert message.events == (start,)
    assert (message.count, message.event_count) == (2, 1)
    assert buffer.load_state() == {"feature:x": '{"run_hours": 1.5}'}


def test_eviction_beyond_the_message_bound_is_counted(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", max_messages=10)
    _fill(buffer, messages=15, per_message=2)
    stats = buffer.stats()
    assert stats["outbox_messages"] == 10
    assert (stats["evicted_messages"], stats["evicted_readings"]) == (5, 10)
    assert [m.seq for m in buffer.oldest(100)] == list(range(5, 15))


def test_eviction_beyond_the_byte_bound_is_counted(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", max_bytes=30_000)
    _fill(buffer, messages=20, per_message=50)  # about 5.6 kB per message
    stats = buffer.stats()
    assert stats["outbox_bytes"] <= 30_000
    assert stats["evicted_messages"] == 20 - stats["outbox_messages"] > 0
    assert stats["evicted_readings"] == 50 * stats["evicted_messages"]
    assert buffer.oldest(1)[0].seq == stats["evicted_messages"]


def test_a_message_stays_under_the_wire_payload_limit(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    long_sensor = "s" * 64
    buffer.add(_readings(5000, sensor=long_sensor))
    sealed = buffer.seal("boot1", 0, max_readings=5000, now=T0)
    (message,) = buffer.oldest(10)
    assert 0 < sealed < 5000
    assert len(message.readings_json) + len(message.events_json) <= MAX_BODY_BYTES + 2


def test_live_and_backlog_partition_the_outbox(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite")
    buffer.add(_readings(1, start=0))  # taken at T0
    buffer.seal("old-boot", 0, 10, T0)
    buffer.add(_readings(1, start=0))
    buffer.seal("boot", 0, 10, T0)
    buffer.add(_readings(1, start=600))  # taken at T0 + 10 min
    buffer.seal("boot", 1, 10, T0)
    since = T0 + timedelta(minutes=5)
    assert [(m.boot, m.seq) for m in buffer.live("boot", since, 10)] == [("boot", 1)]
    assert [(m.boot, m.seq) for m in buffer.backlog("boot", since, 10)] == [
        ("old-boot", 0),
        ("boot", 0),
    ]


def test_a_full_file_cap_evicts_the_oldest_and_keeps_taking_readings(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", max_file_bytes=400_000, reserve_bytes=4096)
    _fill(buffer, messages=60, per_message=100)  # about 6.6 MB of readings in a 400 kB file
    stats = buffer.stats()
    assert stats["disk_full_evictions"] > 0
    assert stats["evicted_readings"] == 100 * stats["evicted_messages"] > 0
    assert stats["dropped_readings"] == 0
    assert buffer.oldest(100)[-1].seq == 59, "the newest message is kept"


def test_when_nothing_is_left_to_evict_readings_are_dropped_and_counted(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", max_file_bytes=200_000, reserve_bytes=4096)
    results = [buffer.add(_readings(200, start=i * 200)) for i in range(40)]  # never sealed
    assert results[0] and not results[-1]
    assert buffer.dropped_readings == 200 * results.count(False)
    assert buffer.seal("boot1", 0, max_readings=500, now=T0) >= 0  # no exception


def test_a_buffer_of_another_schema_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE pending (id INTEGER PRIMARY KEY, sensor TEXT)")
    with pytest.raises(BufferSchemaError, match="buffer schema 0"):
        ReadingBuffer(path)


_FILL_UNTIL_FULL = """
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from edge.buffer import ReadingBuffer
from leasewatch.wire import Reading
buffer = ReadingBuffer(Path(sys.argv[1]) / "buffer.sqlite")
t0 = datetime(2026, 1, 1, tzinfo=UTC)
added = []
for seq in range(300):
    at = t0 + timedelta(seconds=seq * 500)
    readings = [Reading(sensor="machine", metric=f"m{i % 16}", ts=at + timedelta(seconds=i),
                        value=i, unit="A") for i in range(500)]
    added.append(buffer.add(readings))
    buffer.seal("boot", seq, 500, t0)
print(json.dumps({"stats": buffer.stats(), "added": added.count(True),
                  "newest": buffer.oldest(1000)[-1].seq}))
"""


def test_a_really_full_disk_evicts_counts_and_keeps_running(tmp_path: Path) -> None:
    """ENOSPC from an 8 MiB tmpfs (mounted in a user namespace) while 150k readings arrive."""
    unshare = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    assert unshare.returncode == 0, (
        "this test mounts a small tmpfs in a user namespace: it needs `unshare -rm` "
        f"(util-linux, unprivileged user namespaces enabled): {unshare.stderr!r}"
    )
    mount = tmp_path / "small-disk"
    mount.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_FILL_UNTIL_FULL)
    shell = (
        f"mount -t tmpfs -o size=8m tmpfs {mount} && {sys.executable} {script} {mount}"
        f" && df -k {mount} | tail -1"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=True,
    )
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    stats = report["stats"]
    assert report["added"] == 300, "every add succeeded: room was made each time"
    assert report["newest"] == 299
    assert stats["disk_full_evictions"] > 0
    assert stats["evicted_readings"] == 500 * stats["evicted_messages"] > 0
    assert "buffer storage full" in done.stdout


_WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from edge.buffer import ReadingBuffer
from leasewatch.wire import Reading
buffer = ReadingBuffer(Path(sys.argv[1]))
t0 = datetime(2026, 1, 1, tzinfo=UTC)
for n in range(1_000_000):
    buffer.add([Reading(sensor="machine", metric="n", ts=t0 + timedelta(seconds=n), value=n)])
    print(n, flush=True)
    if n % 7 == 6:
        buffer.seal("boot", n // 7, 100, t0)
"""


def start_writer(path: Path) -> subprocess.Popen[str]:
    """A process adding one reading per transaction to a buffer, printing each committed one."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert writer.stdout is not None
    return writer


def test_kill_9_mid_write_loses_no_committed_reading_and_duplicates_none(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    writer = start_writer(path)
    assert writer.stdout is not None
    committed = -1
    for line in writer.stdout:
        committed = int(line)
        if committed >= 300:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    buffer = ReadingBuffer(path)
    buffer.seal("after", 0, max_readings=5000, now=T0)
    values = [r.value for m in buffer.oldest(10_000) for r in m.readings]
    assert len(values) == len(set(values)), "no reading twice"
    assert set(range(committed + 1)) <= set(values), "every committed reading is there"
    assert values == sorted(values)
