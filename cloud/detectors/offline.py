"""Offline runners: feed CSV rows to the same detector objects the streaming runner uses.

Rows are read in file order and fed in chunks; a row's score depends only on the rows before it
and itself (the detectors are causal), so appending rows never changes earlier scores. Times are
ISO 8601 (UTC when no offset is given) or epoch seconds; a row whose time is not after the
previous one is treated as 1 microsecond after it (the detectors need strictly increasing time).
An empty or non-finite cell is a missing value, never zero.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path

from cloud.alerts.signals import Finding
from cloud.detectors.faults import FaultDetector, FaultInputs, FaultThresholds, SampleScore
from cloud.detectors.inputs import DayUsage, MinuteSample
from cloud.detectors.utilization import (
    UtilizationDetector,
    UtilizationInputs,
    UtilizationThresholds,
)

CHUNK = 1000


class OfflineInputError(ValueError):
    """A CSV file the offline runners cannot read; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row: its time as written and parsed, and its values (missing cells left out)."""

    time_text: str
    ts: datetime
    values: dict[str, float]


def parse_time(text: str) -> datetime:
    """ISO 8601 (naive means UTC) or epoch seconds."""
    value = text.strip()
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise OfflineInputError(f"time {text!r} is neither ISO 8601 nor epoch seconds") from err
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _value(text: str) -> float | None:
    if not text.strip():
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def read_rows(path: Path, time_col: str, value_cols: list[str]) -> Iterator[Row]:
    """The rows of a CSV file, in file order, with strictly increasing times."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        header = reader.fieldnames or []
        unknown = [c for c in (time_col, *value_cols) if c not in header]
        if unknown:
            raise OfflineInputError(f"{path}: no column {unknown[0]!r}; it has {', '.join(header)}")
        previous: datetime | None = None
        for line, record in enumerate(reader, start=2):
            try:
                ts = parse_time(record[time_col] or "")
                cells = {c: _value(record[c] or "") for c in value_cols}
            except ValueError as err:
                raise OfflineInputError(f"{path}:{line}: {err}") from err
            if previous is not None and ts <= previous:
                ts = previous + timedelta(microseconds=1)
            previous = ts
            values = {c: v for c, v in cells.items() if v is not None}
            yield Row(record[time_col] or "", ts, values)


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def fault_scores(rows: Iterable[Row], columns: list[str]) -> Iterator[tuple[Row, SampleScore]]:
    """Each row with the fault detector's score and alert (generic profile over `columns`)."""
    detector = FaultDetector.for_columns("offline", columns, FaultThresholds())
    for chunk in _chunks(rows, CHUNK):
        samples = tuple(MinuteSample(r.ts, r.values) for r in chunk)
        detector.update(FaultInputs(samples), samples[-1].ts)
        yield from zip(chunk, detector.trace, strict=True)


@dataclass(frozen=True, slots=True)
class UsageScore:
    """A row's utilization verdict: score, alert, the day's baseline and the open episode."""

    score: float
    alert: bool
    usage: float | None  # the last closed day's use (samples) or the row's day (daily)
    baseline: float | None
    episode_start: date | None
    magnitude: float | None


@dataclass(slots=True)
class UsageRun:
    """A utilization run over rows: the findings it produced, in order."""

    holidays: frozenset[date] = frozenset()
    findings: list[Finding] = field(default_factory=list)

    def scores(self, rows: Iterable[Row], *, daily: bool) -> Iterator[tuple[Row, UsageScore]]:
        """Each row with the utilization detector's state after the days closed by then."""
        detector = UtilizationDetector.create("offline", "", UtilizationThresholds())
        day: date | None = None
        total, hours, last_usage = 0.0, set[int](), None
        for row in rows:
            today = row.ts.date()
            if daily:
                last_usage = sum(row.values.values()) if row.values else None
                if last_usage is not None:
                    self._feed(detector, DayUsage(today, last_usage), row.ts)
            elif day is not None and today > day:
                last_usage = total
                self._feed(detector, DayUsage(day, total, float(len(hours))), row.ts)
                total, hours = 0.0, set()
            if not daily:
                day = today
                total += sum(row.values.values())
                if row.values:  # a row of missing cells covers nothing
                    hours.add(row.ts.hour)
            yield row, _verdict(detector, today, last_usage)

    def _feed(self, detector: UtilizationDetector, usage: DayUsage, now: datetime) -> None:
        self.findings += detector.update(UtilizationInputs((usage,), self.holidays), now)


def _verdict(detector: UtilizationDetector, day: date, usage: float | None) -> UsageScore:
    episode = detector.state.episode
    return UsageScore(
        score=detector.decline_evidence(),
        alert=episode is not None,
        usage=usage,
        baseline=detector.expected_hours(day),
        episode_start=None if episode is None else episode.start,
        magnitude=None if episode is None else episode.magnitude,
    )
