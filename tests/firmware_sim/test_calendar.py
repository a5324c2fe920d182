"""Work calendars: shifts by weekday, overnight shifts, holidays, planned stops, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from firmware_sim.calendar import (
    DEFAULT_CALENDAR,
    PlannedStop,
    Shift,
    WorkCalendar,
)

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
NIGHTS = Shift(time(22), time(6))


def _at(day_offset: int, hour: float) -> datetime:
    """A time `day_offset` days after Monday 2026-01-05, at `hour` UTC."""
    return MONDAY + timedelta(days=day_offset, hours=hour)


@pytest.mark.parametrize(
    ("day", "hour", "working"),
    [
        (0, 5.99, False),  # before the first shift
        (0, 6.0, True),
        (0, 13.99, True),
        (0, 14.0, True),  # second shift starts as the first ends
        (0, 21.99, True),
        (0, 22.0, False),
        (4, 12.0, True),  # Friday
        (5, 12.0, False),  # Saturday
        (6, 12.0, False),  # Sunday
    ],
)
def test_default_calendar_is_two_shifts_on_weekdays(day: int, hour: float, working: bool) -> None:
    assert DEFAULT_CALENDAR.is_working(_at(day, hour)) is working


def test_an_overnight_shift_belongs_to_the_day_it_starts() -> None:
    nights = WorkCalendar.weekly([NIGHTS], workdays=range(5))
    assert nights.is_working(_at(0, 23))  # Monday night
    assert nights.is_working(_at(1, 5.5))  # ... into Tuesday morning
    assert not nights.is_working(_at(1, 6))
    assert nights.is_working(_at(5, 3))  # Friday's night shift ends on Saturday
    assert not nights.is_working(_at(5, 23))  # no Saturday night shift
    assert not nights.is_working(_at(0, 3))  # Sunday had no night shift


def test_holidays_cancel_the_shifts_that_start_on_them() -> None:
    holiday = date(2026, 1, 7)  # a Wednesday
    calendar = WorkCalendar.weekly([NIGHTS], holidays=[holiday])
    assert not calendar.is_working(_at(2, 23))  # Wednesday night: holiday
    assert not calendar.is_working(_at(3, 2))  # ... so Thursday 02:00 is idle too
    assert calendar.is_working(_at(1, 23))  # Tuesday night
    assert calendar.is_working(_at(2, 3))  # ... runs into the holiday morning
    assert calendar.is_working(_at(3, 23))  # Thursday night as usual


def test_planned_stops_win_over_shifts() -> None:
    service = PlannedStop(_at(1, 9), _at(1, 11), reason="service")
    calendar = WorkCalendar.weekly(planned_stops=[service])
    assert calendar.is_working(_at(1, 8.99))
    assert not calendar.is_working(_at(1, 9))
    assert not calendar.is_working(_at(1, 10.99))
    assert calendar.is_working(_at(1, 11))


def test_shifts_are_local_time_and_follow_daylight_saving() -> None:
    berlin = WorkCalendar.weekly([Shift(time(6), time(14))], tz=ZoneInfo("Europe/Berlin"))
    winter = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)  # 06:00 CET
    summer = datetime(2026, 7, 6, 4, 0, tzinfo=UTC)  # 06:00 CEST
    assert berlin.is_working(winter)
    assert not berlin.is_working(winter - timedelta(seconds=1))
    assert berlin.is_working(summer)
    assert not berlin.is_working(summer - timedelta(seconds=1))


def test_scheduled_hours_count_shifts_minus_holidays_and_stops() -> None:
    week = (date(2026, 1, 5), date(2026, 1, 11))
    assert DEFAULT_CALENDAR.scheduled_hours(*week) == 80.0
    holiday = WorkCalendar.weekly(holidays=[date(2026, 1, 6)])
    assert holiday.scheduled_hours(*week) == 64.0
    stop = PlannedStop(_at(2, 20), _at(3, 8))  # Wed 20:00 .. Thu 08:00: 2 h + 2 h of shifts
    assert WorkCalendar.weekly(planned_stops=[stop]).scheduled_hours(*week) == 76.0


def test_bad_calendars_are_refused() -> None:
    with pytest.raises(ValueError, match="7 weekdays"):
        WorkCalendar(week=((),) * 6)
    with pytest.raises(ValueError, match="workdays"):
        WorkCalendar.weekly(workdays=[7])
    with pytest.raises(ValueError, match="timezone-aware"):
        PlannedStop(datetime(2026, 1, 5), _at(1, 0))  # noqa: DTZ001
    with pytest.raises(ValueError, match="after start"):
        PlannedStop(_at(1, 0), _at(1, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        DEFAULT_CALENDAR.is_working(datetime(2026, 1, 5, 12))  # noqa: DTZ001


def test_a_calendar_is_a_frozen_hashable_value() -> None:
    first = WorkCalendar.weekly(holidays=[date(2026, 1, 6)])
    again = WorkCalendar.weekly(holidays=[date(2026, 1, 6)])
    first.is_working(_at(0, 12))  # fills its span cache; equality must not see it
    assert first == again
    assert hash(first) == hash(again)
