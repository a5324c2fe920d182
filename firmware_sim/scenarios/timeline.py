"""When one asset runs, day by day, and where it is: the ground truth of its use.

A day plan is a handful of running intervals: the type's working day (start jitter, idle days,
random stops; none on a public holiday of the asset's region calendar), cut to the day's
utilization factor (declines, seasonal dips, parking) and without the hours of a power cut.
Everything else (run-hour meter, temperature, labels' day summary) is computed from the plans
in closed form, so any instant costs the same.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from firmware_sim.calendar import NO_CALENDAR, year_holidays
from firmware_sim.scenarios.draws import Stream, draw_after, fold
from firmware_sim.scenarios.expand import DAY_S, AssetSpec, Incident
from firmware_sim.scenarios.profiles import PROFILES, AssetProfile

Interval = tuple[float, float, float]  # start, end (epoch s), load current (A)
_UTILIZATION = ("utilization_decline", "seasonal_dip", "parked")
_EARTH_KM = 6371.0


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One day of one asset: its running intervals and how much of its normal use it kept."""

    day: int
    intervals: tuple[Interval, ...]
    nominal_s: float  # running seconds the day would have had without any incident
    factor: float  # utilization factor applied (1 = normal)
    starts: tuple[float, ...]  # start of each interval
    run_before: tuple[float, ...]  # running seconds of the intervals before each one

    @classmethod
    def of(
        cls, day: int, intervals: tuple[Interval, ...], nominal_s: float, factor: float
    ) -> DayPlan:
        """A plan with its running-seconds accumulator (summed in interval order, once)."""
        run_before, total = [], 0.0
        for start, end, _ in intervals:
            run_before.append(total)
            total += end - start
        starts = tuple(start for start, _, _ in intervals)
        return cls(day, intervals, nominal_s, factor, starts, tuple(run_before))

    @property
    def run_s(self) -> float:
        """Running seconds in the day."""
        return sum(end - start for start, end, _ in self.intervals)

    def running_until(self, t: float) -> float:
        """Running seconds of the day before `t` (the same additions, in order, as summing)."""
        last = bisect_left(self.starts, t) - 1  # the last interval started before `t`
        if last < 0:
            return 0.0
        start, end, _ = self.intervals[last]
        return self.run_before[last] + (min(end, t) - start)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) positions."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2
    h += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


class AssetTimeline:
    """The day plans, run-hour meter and position of one asset over (and past) a scenario."""

    def __init__(
        self,
        spec: AssetSpec,
        incidents: tuple[Incident, ...],
        start_ts: float,
        seed: int,
        calendar: str = NO_CALENDAR,
    ) -> None:
        """Index the asset's incidents; plans are made on demand and cached.

        `calendar` is the holiday calendar code of the asset's region: it rests on those days.
        """
        self.spec = spec
        self.calendar = calendar
        self.profile: AssetProfile = PROFILES[spec.type]
        self.start_ts = start_ts
        self.seed = seed
        self._utilization = [i for i in incidents if i.kind in _UTILIZATION]
        self._power_cuts = [(i.start, i.end) for i in incidents if i.kind == "power_cut"]
        self._moves = sorted(
            (i for i in incidents if i.kind == "relocation"), key=lambda i: i.start
        )
        self._prefix = {
            s: fold(seed, s, spec.key)
            for s in (Stream.DAY, Stream.JITTER, Stream.STOP, Stream.LOAD)
        }
        self._plans: dict[int, DayPlan] = {}
        self._base_hours = [spec.initial_run_hours]
        self._date0 = datetime.fromtimestamp(start_ts, UTC).date()
        self._weekday0 = self._date0.weekday()

    def day_of(self, t: float) -> int:
        """Scenario day number of an instant (negative before the start)."""
        return math.floor((t - self.start_ts) / DAY_S)

    def is_holiday(self, day: int) -> bool:
        """Whether a scenario day is a public holiday of the asset's region calendar."""
        when = self._date0 + timedelta(days=day)
        return when in year_holidays(self.calendar, when.year)

    def factor(self, day: int) -> float:
        """Utilization factor of a day: 1 normally, lower in declines and dips, 0 when parked."""
        value = 1.0
        midnight = self.start_ts + day * DAY_S
        for incident in self._utilization:
            if midnight < incident.start or midnight >= incident.end:
                continue
            magnitude = incident.magnitude or 0.0
            if incident.kind == "parked":
                return 0.0
            if incident.kind == "utilization_decline" and incident.ramp_s > 0:
                elapsed_days = (midnight - incident.start) / DAY_S + 1
                magnitude *= min(1.0, elapsed_days / (incident.ramp_s / DAY_S))
            value *= 1.0 - magnitude
        return value

    def plan(self, day: int) -> DayPlan:
        """The plan of a day (cached; the cache keeps the last few days)."""
        found = self._plans.get(day)
        if found is None:
            if len(self._plans) > 8:
                self._plans.clear()
            found = self._plans[day] = self._make_plan(day)
        return found

    def _make_plan(self, day: int) -> DayPlan:
        """Working day, minus random stops, cut to the factor, minus power cuts, with loads."""
        nominal = self._nominal(day)
        nominal_s = sum(end - start for start, end in nominal)
        factor = self.factor(day)
        kept = _keep_first(nominal, factor * nominal_s)
        for cut in self._power_cuts:
            kept = _subtract(kept, cut)
        low, high = self.profile.current_range
        load = self._prefix[Stream.LOAD]
        intervals = tuple(
            (start, end, low + (high - low) * draw_after(load, day, n))
            for n, (start, end) in enumerate(kept)
        )
        return DayPlan.of(day, intervals, nominal_s, factor)

    def _nominal(self, day: int) -> list[tuple[float, float]]:
        """Running intervals of a normal day of this asset type (none on a public holiday)."""
        p, prefix = self.profile, self._prefix
        midnight = self.start_ts + day * DAY_S
        weekday = (self._weekday0 + day) % 7
        if (
            weekday not in p.workdays
            or draw_after(prefix[Stream.DAY], day) < p.idle_day_probability
            or self.is_holiday(day)
        ):
            return []
        jitter = (2 * draw_after(prefix[Stream.JITTER], day) - 1) * p.jitter_h * 3600.0
        start = max(midnight, midnight + p.shift_start_h * 3600.0 + jitter)
        stretch = 0.92 + 0.13 * draw_after(prefix[Stream.JITTER], day, 1)
        intervals = [(start, min(midnight + DAY_S, start + p.shift_hours * 3600.0 * stretch))]
        stop = prefix[Stream.STOP]
        short, long = p.stop_minutes
        for n in range(int(draw_after(stop, day) * (p.max_stops + 1))):
            first, last = intervals[0][0], intervals[-1][1]
            at = first + (last - first) * draw_after(stop, day, n, 1)
            minutes = short + (long - short) * draw_after(stop, day, n, 2)
            intervals = _subtract(intervals, (at, at + minutes * 60.0))
        return intervals

    def run_hours_at(self, t: float) -> float:
        """The run-hour meter at an instant: it counts only while the asset runs."""
        day = self.day_of(t)
        if day < 0:
            return self.spec.initial_run_hours
        return self.hours_before(day) + self.plan(day).running_until(t) / 3600.0

    def hours_before(self, day: int) -> float:
        """The run-hour meter at the start of a day (the initial hours before the scenario)."""
        base = self._base_hours
        while len(base) <= day:
            base.append(base[-1] + self.plan(len(base) - 1).run_s / 3600.0)
        return base[max(day, 0)]

    def position(self, t: float) -> tuple[float, float]:
        """Where the asset is: home, on its way, or at the destination of its last move."""
        here = self.spec.home
        for move in self._moves:
            if t < move.start or move.destination is None:
                break
            there = move.destination
            progress = min(1.0, (t - move.start) / max(move.travel_s, 1.0))
            here = (
                here[0] + (there[0] - here[0]) * progress,
                here[1] + (there[1] - here[1]) * progress,
            )
        return here


def _keep_first(intervals: list[tuple[float, float]], seconds: float) -> list[tuple[float, float]]:
    """The first `seconds` of running time of the intervals."""
    kept = []
    for start, end in intervals:
        if seconds <= 0:
            break
        kept.append((start, min(end, start + seconds)))
        seconds -= end - start
    return kept


def _subtract(
    intervals: list[tuple[float, float]], gap: tuple[float, float]
) -> list[tuple[float, float]]:
    """The intervals without the time in `gap`."""
    cut_start, cut_end = gap
    result = []
    for start, end in intervals:
        if end <= cut_start or start >= cut_end:
            result.append((start, end))
            continue
        if start < cut_start:
            result.append((start, cut_start))
        if end > cut_end:
            result.append((cut_end, end))
    return result
