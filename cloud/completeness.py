"""The completeness ledger: per device and day, what was expected, received, missing, late."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One stored message as the ledger knows it."""

    boot: str
    seq: int
    sent_at: datetime
    received_at: datetime
    readings: int
    historical: bool


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers of one boot that never arrived."""

    boot: str
    first_seq: int
    last_seq: int

    @property
    def size(self) -> int:
        """Number of missing messages."""
        return self.last_seq - self.first_seq + 1


@dataclass(slots=True)
class DayCompleteness:
    """Completeness of one device on one day (by the messages' send time, UTC)."""

    day: date
    received_messages: int = 0
    received_readings: int = 0
    missing_messages: int = 0
    duplicates: int = 0
    late: int = 0
    historical: int = 0
    gaps: list[Gap] = field(default_factory=list)

    @property
    def expected_messages(self) -> int:
        """Messages the device sent that day as far as sequence numbers tell."""
        return self.received_messages + self.missing_messages


def completeness(
    rows: Iterable[LedgerRow],
    duplicates: Mapping[date, int],
    late_after: timedelta,
    days: tuple[date, date] | None = None,
) -> list[DayCompleteness]:
    """Per-day completeness; a gap is counted on the day of the first message after it.

    Every boot numbers its messages from 0, so a boot whose first stored message is seq 5
    is missing 0-4. A gap at the very end of a boot cannot be seen until a later message shows it.
    With `days` (first, last, inclusive) only messages sent on those days are counted; the other
    rows only bound gaps, so a day's figures need just its messages, the rows between them by
    seq and each boot's message just before them (see `StateStore.completeness`).
    """
    report: dict[date, DayCompleteness] = {}
    by_boot: dict[str, list[LedgerRow]] = defaultdict(list)
    for row in rows:
        by_boot[row.boot].append(row)
    for boot in sorted(by_boot):
        expected_next = 0
        for row in sorted(by_boot[boot], key=lambda r: r.seq):
            gap = Gap(boot, expected_next, row.seq - 1) if row.seq > expected_next else None
            expected_next = row.seq + 1
            key = row.sent_at.date()
            if days is None or days[0] <= key <= days[1]:
                _count(report.setdefault(key, DayCompleteness(key)), row, gap, late_after)
    for when, count in duplicates.items():
        if days is None or days[0] <= when <= days[1]:
            report.setdefault(when, DayCompleteness(when)).duplicates += count
    return [report[d] for d in sorted(report)]


def _count(day: DayCompleteness, row: LedgerRow, gap: Gap | None, late_after: timedelta) -> None:
    """Add one message, and the gap it closes, to its day."""
    if gap is not None:
        day.gaps.append(gap)
        day.missing_messages += gap.size
    day.received_messages += 1
    day.received_readings += row.readings
    day.historical += int(row.historical)
    day.late += int(not row.historical and row.received_at - row.sent_at > late_after)
