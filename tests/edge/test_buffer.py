"""The durable buffer: sealing, acknowledgement, bounds and survival across reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.buffer import ReadingBuffer
from leasewatch.wire import Reading

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def _readings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading(
            sensor="machine",
            metric="motor_current",
            ts=T0 + timedelta(seconds=i),
            value=i / 10,
            unit="A",
        )
        for i in range(start, start + n)
    ]


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


def test_eviction_beyond_the_bound_is_counted(tmp_path: Path) -> None:
    buffer = ReadingBuffer(tmp_path / "b.sqlite", max_messages=10)
    for seq in range(15):
        buffer.add(_readings(2, start=seq * 2))
        buffer.seal("boot1", seq, max_readings=100, now=T0)
    stats = buffer.stats()
    assert stats["outbox_messages"] == 10
    assert (stats["evicted_messages"], stats["evicted_readings"]) == (5, 10)
    assert [m.seq for m in buffer.oldest(100)] == list(range(5, 15))
