"""Public holidays per region, from the `holidays` package, keyed by the asset's region.

An asset's `region` is free text ("benelux", "south", "DE-BY"). The scoring rules' `[holidays]`
section says which calendar each region keeps: a calendar code is an ISO 3166 country ("NL")
or a country and one of its subdivisions ("DE-NW": North Rhine-Westphalia), as the `holidays`
package knows them. A region is resolved by the rules' `regions` table first, then by its own
name when that is a valid code, then by `default` ("" for no public holidays). A public
holiday is a day the utilization baseline does not judge: Corpus Christi is a day off in
Cologne (DE-NW) and a working day in Hanover (DE-NI). The codes themselves are read in
`firmware_sim.calendar`, which the scenario simulator's regions share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from firmware_sim.calendar import (
    NO_CALENDAR,
    CalendarError,
    calendar_problem,
    checked_calendar,
    public_holidays,
    year_holidays,
)

__all__ = [
    "NO_CALENDAR",
    "CalendarError",
    "RegionHolidays",
    "calendar_problem",
    "checked_calendar",
    "public_holidays",
    "year_holidays",
]


@dataclass(frozen=True, slots=True)
class RegionHolidays:
    """Which calendar each region keeps: a table, codes as region names, and a default."""

    regions: tuple[tuple[str, str], ...] = ()
    default: str = NO_CALENDAR

    def code(self, region: str) -> str:
        """The calendar code of a region."""
        for name, code in self.regions:
            if name == region:
                return code
        if region and calendar_problem(region) is None:
            return region
        return self.default

    def dates(self, region: str, first: date, last: date) -> frozenset[date]:
        """The region's public holidays from `first` to `last` inclusive."""
        return public_holidays(self.code(region), first, last)

    def around(self, region: str, day: date) -> frozenset[date]:
        """The region's public holidays in the year of `day` and the years either side.

        The one lookup the live detectors use: an asset's context carries these, so a day
        judged late (replays, January's look back at December) still finds its holidays.
        """
        return _three_years(self.code(region), day.year)

    def calendars(
        self, regions: Iterable[str], first: date, last: date
    ) -> dict[str, frozenset[date]]:
        """Each region's public holidays from `first` to `last` inclusive."""
        return {region: self.dates(region, first, last) for region in set(regions)}


@lru_cache(maxsize=1024)
def _three_years(code: str, year: int) -> frozenset[date]:
    """A calendar's public holidays from the year before `year` to the year after (cached: the
    detectors ask for every gateway of every batch)."""
    return public_holidays(code, date(year - 1, 1, 1), date(year + 1, 12, 31))
