"""Public holidays per region, from the `holidays` package, keyed by the asset's region.

An asset's `region` is free text ("benelux", "south", "DE-BY"). The scoring rules' `[holidays]`
section says which calendar each region keeps: a calendar code is an ISO 3166 country ("NL")
or a country and one of its subdivisions ("DE-NW": North Rhine-Westphalia), as the `holidays`
package knows them. A region is resolved by the rules' `regions` table first, then by its own
name when that is a valid code, then by `default` ("" for no public holidays). A public
holiday is a day the utilization baseline does not judge: Corpus Christi is a day off in
Cologne (DE-NW) and a working day in Hanover (DE-NI).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import holidays as holiday_data

NO_CALENDAR = ""


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


@lru_cache(maxsize=1024)
def year_holidays(code: str, year: int) -> frozenset[date]:
    """The public holidays of one calendar in one year (empty for no calendar)."""
    if code == NO_CALENDAR:
        return frozenset()
    if (problem := calendar_problem(code)) is not None:
        raise CalendarError(f"holiday calendar {code!r}: {problem}")
    country, subdiv = _parts(code)
    return frozenset(holiday_data.country_holidays(country, subdiv=subdiv, years=year))


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
        code = self.code(region)
        found = frozenset().union(
            *(year_holidays(code, year) for year in range(first.year, last.year + 1))
        )
        return frozenset(d for d in found if first <= d <= last)

    def calendars(
        self, regions: Iterable[str], first: date, last: date
    ) -> dict[str, frozenset[date]]:
        """Each region's public holidays from `first` to `last` inclusive."""
        return {region: self.dates(region, first, last) for region in set(regions)}
