"""Working calendars: the hours an asset is worked, by weekday, with public holidays and stops.

A `WorkCalendar` says when an asset is *scheduled* to work: shifts per weekday in a local time
zone, minus public holidays (a shift that starts on a holiday does not run) and planned stops
(maintenance, the asset parked). Random short stops inside a shift are the machine model's job.
Pure functions of the calendar and a time; no I/O.

Public holidays come from the `holidays` package by calendar code: an ISO 3166 country ("NL")
or a country and one of its subdivisions ("DE-NW": North Rhine-Westphalia). The simulator's
regions and the cloud's risk rules (cloud/risk/calendars.py) both read them here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

import holidays as holiday_data

WEEKDAYS = range(5)  # Monday..Friday
ALL_WEEK = range(7)
NO_CALENDAR = ""  # a calendar code for no public holidays


class CalendarError(ValueError):
    """A calendar code the `holidays` package does not know."""


def _parts(code: str) -> tuple[str, str | None]:
    country, _, subdiv = code.partition("-")
    return country, subdiv or None


@lru_cache(maxsize=512)
def calendar_problem(code: str) -> str | None:
    """Why `code` is no calendar (None when it is one, or is "" for none)."""
    if code == NO_CALENDAR:
        return None
    country, subdiv = _parts(code)
    if country not in holiday_data.list_supported_countries():
        return f"unknown country {country!r} (an ISO 3166 code the holidays package knows)"
    if subdiv is not None:
        known = holiday_data.country_holidays(country).subdivisions
        if subdiv not in known:
            return f"{country} has no subdivision {subdiv!r} (known: {', '.join(known[:40])})"
    return None


def checked_calendar(code: str) -> str:
    """`code` itself when it is a calendar (or ""); CalendarError saying why when it is not."""
    if (problem := calendar_problem(code)) is not None:
        raise CalendarError(f"holiday calendar {code!r}: {problem}")
    return code


@lru_cache(maxsize=1024)
def year_holidays(code: str, year: int) -> frozenset[date]:
    """The public holidays of one calendar in one year (empty for no calendar)."""
    if checked_calendar(code) == NO_CALENDAR:
        return frozenset()
    country, subdiv = _parts(code)
    return frozenset(holiday_data.country_holidays(country, subdiv=subdiv, years=year))


def public_holidays(code: str, first: date, last: date) -> frozenset[date]:
    """The public holidays of calendar `code` from `first` to `last` inclusive."""
    found = frozenset().union(*(year_holidays(code, y) for y in range(first.year, last.year + 1)))
    return frozenset(d for d in found if first <= d <= last)


@dataclass(frozen=True, slots=True)
class Shift:
    """A shift from `start` to `end`, local time; an end at or before the start is overnight."""

    start: time
    end: time

    def span(self, day: date, tz: tzinfo) -> tuple[float, float]:
        """Epoch seconds [start, end) of this shift when it starts on `day`."""
        end_day = day + timedelta(days=1) if self.end <= self.start else day
        start = datetime.combine(day, self.start, tzinfo=tz)
        end = datetime.combine(end_day, self.end, tzinfo=tz)
        return start.timestamp(), end.timestamp()


@dataclass(frozen=True, slots=True)
class PlannedStop:
    """A period the asset is not worked whatever the shifts say (service, parked, strike)."""

    start: datetime
    end: datetime
    reason: str = "planned stop"

    def __post_init__(self) -> None:
        """Refuse naive or empty periods."""
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"planned stop {self.reason!r}: times must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"planned stop {self.reason!r}: end must be after start")

    def covers(self, t: float) -> bool:
        """Whether epoch second `t` falls inside the stop."""
        return self.start.timestamp() <= t < self.end.timestamp()


#: One day shift, 06:00-14:00.
DAY_SHIFT = Shift(time(6), time(14))
#: Two shifts back to back, 06:00-22:00.
TWO_SHIFTS = (Shift(time(6), time(14)), Shift(time(14), time(22)))


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Shifts per weekday (Monday = 0), public holidays and planned stops, in one time zone."""

    week: tuple[tuple[Shift, ...], ...]
    holidays: frozenset[date] = frozenset()
    planned_stops: tuple[PlannedStop, ...] = ()
    tz: tzinfo = UTC
    _spans: dict[date, tuple[tuple[float, float], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        """Refuse a week that is not seven days long."""
        if len(self.week) != 7:
            raise ValueError(f"a work calendar needs 7 weekdays of shifts, got {len(self.week)}")

    @classmethod
    def weekly(
        cls,
        shifts: Iterable[Shift] = TWO_SHIFTS,
        workdays: Iterable[int] = WEEKDAYS,
        *,
        holidays: Iterable[date] = (),
        planned_stops: Iterable[PlannedStop] = (),
        tz: tzinfo = UTC,
    ) -> WorkCalendar:
        """The same shifts on every workday (Monday = 0)."""
        days = frozenset(workdays)
        if not days <= set(ALL_WEEK):
            raise ValueError(f"workdays are 0 (Monday) .. 6 (Sunday), got {sorted(days)}")
        plan = tuple(shifts)
        week = tuple(plan if d in days else () for d in ALL_WEEK)
        return cls(week, frozenset(holidays), tuple(planned_stops), tz)

    def is_working(self, at: datetime) -> bool:
        """Whether the asset is scheduled to work at `at` (timezone-aware)."""
        if at.tzinfo is None:
            raise ValueError("is_working() needs a timezone-aware datetime")
        return self.is_working_at(at.timestamp())

    def is_working_at(self, t: float) -> bool:
        """Whether the asset is scheduled to work at epoch second `t`."""
        day = datetime.fromtimestamp(t, self.tz).date()
        in_shift = any(
            start <= t < end for d in (day - timedelta(days=1), day) for start, end in self.spans(d)
        )
        return in_shift and not any(stop.covers(t) for stop in self.planned_stops)

    def spans(self, day: date) -> tuple[tuple[float, float], ...]:
        """Epoch-second spans of the shifts that start on `day` (none on a holiday)."""
        cached = self._spans.get(day)
        if cached is None:
            shifts = () if day in self.holidays else self.week[day.weekday()]
            cached = self._spans[day] = tuple(s.span(day, self.tz) for s in shifts)
        return cached

    def scheduled_hours(self, first: date, last: date) -> float:
        """Hours scheduled from `first` to `last` inclusive (shifts that start on those days)."""
        total = 0.0
        day = first
        while day <= last:
            for start, end in self.spans(day):
                stopped = sum(_overlap(start, end, s) for s in self.planned_stops)
                total += end - start - stopped
            day += timedelta(days=1)
        return total / 3600.0


def _overlap(start: float, end: float, stop: PlannedStop) -> float:
    """Seconds of [start, end) inside `stop`."""
    return max(0.0, min(end, stop.end.timestamp()) - max(start, stop.start.timestamp()))


#: Two shifts Monday to Friday, no holidays: the default for the simulated asset types.
DEFAULT_CALENDAR = WorkCalendar.weekly()
