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
) -> list[DayCompleteness]:
    """Per-day completeness; a gap is counted on the day of the first message after it.

    Every boot numbers its messages from 0, so a boot whose first stored message is seq 5
    is missing 0-4. A gap at the very end of a boot cannot be seen until a later message shows it.
    """
    days: dict[date, DayCompleteness] = {}

    def day_of(when: datetime) -> DayCompleteness:
        key = when.date()
        return days.setdefault(key, DayCompleteness(key))

    by_boot: dict[str, list[LedgerRow]] = defaultdict(list)
    for row in rows:
        by_boot[row.boot].append(row)
    for boot, boot_rows in by_boot.items():
        expected_next = 0
        for row in sorted(boot_rows, key=lambda r: r.seq):
            day = day_of(row.sent_at)
            if row.seq > expected_next:
                gap = Gap(boot, expected_next, row.seq - 1)
                day.gaps.append(gap)
                day.missing_messages += gap.size
            expected_next = row.seq + 1
            day.received_messages += 1
            day.received_readings += row.readings
            day.historical += int(row.historical)
            day.late += int(not row.historical and row.received_at - row.sent_at > late_after)
    for when, count in duplicates.items():
        days.setdefault(when, DayCompleteness(when)).duplicates += count
    return [days[d] for d in sorted(days)]
