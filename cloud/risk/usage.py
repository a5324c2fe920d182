"""Use against the asset's own weekly pattern, its peer group and the holiday calendar.

Pure numpy over a matrix of daily running hours (assets x days), so one call serves a whole
portfolio (the backtest) or one peer group (a credit check). The definitions:
- A day is *judged* when it had at least `MIN_COVERED_HOURS` of data (a day without data is
  unknown, never idle) and is not a public holiday in the asset's region.
- Use of a window against a baseline window: the running hours of the window's judged days over
  what the asset's own weekly pattern expects of them (the mean hours of the same weekday over
  the baseline's judged days). A Saturday counts against Saturdays, a holiday against nothing.
- Coverage: a judged day with hours missing (a lossy link) expects only its share of the day
  with data (`DailyUse.coverage`): hours nobody saw are unknown, never idle. The weekday
  pattern is per full day (hours run over the days' coverage), and a day's expectation is the
  pattern times that day's coverage; the contract's expectation is scaled the same way.
- Peer level: the median of that ratio over the peer group (same asset type and region), with
  at least `MIN_PEERS` members known. When the whole group dips, it is the season, not the
  lessee: the season-adjusted ratio is the asset's over `min(1, peer level)`, and a week whose
  peer level is below `PEER_PAUSE` (the group laid up) is not judged at all.
- Sustained drop: the full weeks before the as-of day, newest first, in which the lease's
  season-adjusted use stayed below `SUSTAINED_SHARE` of its baseline (the `BASELINE_DAYS` before
  the last `LOOKBACK_WEEKS`, so the drop is not in its own baseline); weeks not judged neither
  count nor break the run. The last two weeks against the same baseline are the use "vs
  prior": a drop the 56-day baseline has absorbed still shows there.
- Abrupt drop: the working days of the last `ABRUPT_DAYS`, newest first, each below
  `ABRUPT_SHARE` of what the weekly pattern expects of it, season-adjusted with each day's
  peer level; days off and days the group paused neither count nor break the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

MIN_COVERED_HOURS = 12.0
RECENT_DAYS = 14
BASELINE_DAYS = 56
MIN_BASELINE_DAYS = 28
MIN_PEERS = 5
PEER_PAUSE = 0.5
SUSTAINED_SHARE = 0.8
LOOKBACK_WEEKS = 13
RECENT_WEEKS = 2  # the use ratios' recent window (`RECENT_DAYS`) in weeks
ABRUPT_DAYS = 7  # days looked at for an abrupt drop
ABRUPT_SHARE = 0.5  # a working day below this share of its expected hours is a day down
WORKING_HOURS = 1.0  # a day the weekly pattern expects fewer hours of is no working day


@dataclass(frozen=True, slots=True)
class DailyUse:
    """Running hours and judged days of some assets, day 0 being weekday `weekday0`."""

    hours: FloatArray  # (assets, days)
    judged: BoolArray  # (assets, days)
    weekday0: int  # Monday = 0
    coverage: FloatArray  # (assets, days): share of the day with data, 0..1

    @classmethod
    def of(
        cls, hours: FloatArray, covered: FloatArray, holidays: BoolArray, weekday0: int
    ) -> DailyUse:
        """From running hours, hours with data and holiday flags (all assets x days)."""
        judged = (covered >= MIN_COVERED_HOURS) & ~holidays
        return cls(hours, judged, weekday0, np.clip(covered / 24.0, 0.0, 1.0))

    def _weekdays(self, first: int, last: int) -> FloatArray:
        """One-hot weekdays of days [first, last): (days, 7)."""
        days = (self.weekday0 + np.arange(first, last)) % 7
        onehot: FloatArray = (days[:, None] == np.arange(7)).astype(np.float64)
        return onehot

    def day_use(self, base: tuple[int, int], window: tuple[int, int]) -> tuple[FloatArray, ...]:
        """Per asset and day of the window: (hours run, hours its weekly pattern expects).

        Only judged days count (0 otherwise); expected is 0 for an asset with fewer than
        `MIN_BASELINE_DAYS` judged baseline days.
        """
        b0, b1 = max(0, base[0]), max(0, base[1])
        w0, w1 = max(0, window[0]), window[1]
        judged_base = self.judged[:, b0:b1].astype(np.float64)
        onehot = self._weekdays(b0, b1)
        counts = judged_base @ onehot
        sums = (self.hours[:, b0:b1] * judged_base) @ onehot
        seen = (self.coverage[:, b0:b1] * judged_base) @ onehot  # full days of data
        means = np.divide(sums, seen, out=np.zeros_like(sums), where=seen > 0)
        target = self._weekdays(w0, w1)
        known = self.judged[:, w0:w1] & ((counts > 0).astype(np.float64) @ target.T > 0)
        expected = (means @ target.T) * known * self.coverage[:, w0:w1]
        enough = counts.sum(axis=1) >= MIN_BASELINE_DAYS
        return self.hours[:, w0:w1] * known, np.where(enough[:, None], expected, 0.0)

    def window_use(self, base: tuple[int, int], window: tuple[int, int]) -> tuple[FloatArray, ...]:
        """Per asset: (hours run, hours its weekly pattern expects) over the window's days."""
        actual, expected = self.day_use(base, window)
        return actual.sum(axis=1), expected.sum(axis=1)


def ratio(actual: FloatArray, expected: FloatArray) -> FloatArray:
    """actual / expected, NaN where nothing was expected."""
    return np.divide(actual, expected, out=np.full_like(actual, np.nan), where=expected > 0)


def peer_levels(ratios: FloatArray, groups: IntArray) -> tuple[FloatArray, IntArray]:
    """Per asset: its group's median ratio (NaN under `MIN_PEERS` known) and the group's size.

    `ratios` may be (assets,) or (assets, k): medians are taken per column.
    """
    levels = np.full_like(ratios, np.nan)
    sizes = np.zeros(len(groups), dtype=np.int64)
    for group in np.unique(groups):
        members = groups == group
        block = ratios[members]
        known = np.isfinite(block).sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no level
            median = np.nanmedian(np.where(np.isfinite(block), block, np.nan), axis=0)
        levels[members] = np.where(known >= MIN_PEERS, median, np.nan)
        sizes[members] = int(members.sum())
    return levels, sizes


def lease_sum(values: FloatArray, leases: IntArray, count: int) -> FloatArray:
    """Per lease: the sum of its assets' values (rows), for (assets,) or (assets, k)."""
    out = np.zeros((count, *values.shape[1:]))
    np.add.at(out, leases, values)
    return out


def season_adjusted(expected: FloatArray, level: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Expected hours scaled by `min(1, peer level)`, and where the peer group paused."""
    known = np.isfinite(level)
    paused = known & (level < PEER_PAUSE)
    scale = np.where(known, np.minimum(level, 1.0), 1.0)
    return np.where(paused, 0.0, expected * scale), paused


@dataclass(frozen=True, slots=True)
class Sustained:
    """Per lease, against the baseline before the quarter (season-adjusted), newest weeks first.

    `weeks`: the run of weeks below `SUSTAINED_SHARE`, and `ratio` the use over them; `recent`:
    the use of the last `RECENT_WEEKS` (a drop the 56-day baseline has absorbed still shows).
    """

    weeks: IntArray
    ratio: FloatArray  # NaN where no week counted
    recent: FloatArray  # NaN where the recent weeks were not judged


def weekly_use(use: DailyUse, day: int) -> tuple[FloatArray, FloatArray]:
    """Per asset and full week before `day`, newest first: (hours run, hours expected).

    Expected is against the baseline before the lookback (so a drop is not in its own
    baseline); (assets, 0) arrays when there is no room for a week yet.
    """
    weeks = min(LOOKBACK_WEEKS, (day - MIN_BASELINE_DAYS) // 7)
    if weeks < 1:
        empty = np.zeros((use.hours.shape[0], 0))
        return empty, empty.copy()
    base = (day - 7 * weeks - BASELINE_DAYS, day - 7 * weeks)
    parts = [use.window_use(base, (day - 7 * k, day - 7 * k + 7)) for k in range(1, weeks + 1)]
    return np.stack([p[0] for p in parts], axis=1), np.stack([p[1] for p in parts], axis=1)


def sustained_drop(
    use: DailyUse, groups: IntArray, leases: IntArray, count: int, day: int, *,
    levels: FloatArray | None = None,
) -> Sustained:  # fmt: skip
    """The lease's run of full weeks below `SUSTAINED_SHARE` of baseline, up to `day`.

    `levels` (assets x weeks, as `weekly_use`): the peer levels to season-adjust with, when the
    peer group is not among `use`'s assets (a credit check's cached group figures).
    """
    actual, expected = weekly_use(use, day)
    if actual.shape[1] == 0:
        none = np.zeros(count, dtype=np.int64)
        return Sustained(none, np.full(count, np.nan), np.full(count, np.nan))
    if levels is None:
        levels, _ = peer_levels(ratio(actual, expected), groups)
    adjusted, _ = season_adjusted(expected, levels)
    run_actual = lease_sum(np.where(adjusted > 0, actual, 0.0), leases, count)
    run_expected = lease_sum(adjusted, leases, count)
    weeks, run_ratio = _runs(run_actual, run_expected)
    recent = ratio(
        run_actual[:, :RECENT_WEEKS].sum(axis=1), run_expected[:, :RECENT_WEEKS].sum(axis=1)
    )
    return Sustained(weeks, run_ratio, recent)


def _runs(actual: FloatArray, expected: FloatArray) -> tuple[IntArray, FloatArray]:
    """Count weeks newest first while below the share; weeks without expectation are skipped."""
    count = len(actual)
    weeks = np.zeros(count, dtype=np.int64)
    got = np.zeros(count)
    want = np.zeros(count)
    going = np.ones(count, dtype=bool)
    for k in range(actual.shape[1]):
        judged = expected[:, k] > 0
        below = judged & (actual[:, k] < SUSTAINED_SHARE * expected[:, k])
        going &= below | ~judged
        counted = going & below
        weeks += counted
        got += np.where(counted, actual[:, k], 0.0)
        want += np.where(counted, expected[:, k], 0.0)
    return weeks, ratio(got, want)


def holiday_flags(
    regions: Sequence[str], dates: Sequence[object], calendars: dict[str, frozenset[object]]
) -> BoolArray:
    """(assets, days): whether each day is a public holiday in the asset's region."""
    flags = np.zeros((len(regions), len(dates)), dtype=bool)
    for region in set(regions):
        holidays = calendars.get(region, frozenset())
        row = np.array([d in holidays for d in dates], dtype=bool)
        flags[np.array([r == region for r in regions])] = row
    return flags


def recent_days(use: DailyUse, day: int) -> tuple[FloatArray, FloatArray]:
    """Per asset and day of the last `ABRUPT_DAYS`, newest first: (hours run, hours expected).

    Expected is against the same 56-day baseline as the use ratio's (before the last 14 days).
    """
    base = (day - RECENT_DAYS - BASELINE_DAYS, day - RECENT_DAYS)
    actual, expected = use.day_use(base, (day - ABRUPT_DAYS, day))
    return actual[:, ::-1].copy(), expected[:, ::-1].copy()


def abrupt_drop(
    use: DailyUse, groups: IntArray, leases: IntArray, count: int, day: int, *,
    levels: FloatArray | None = None,
) -> IntArray:  # fmt: skip
    """Per lease: working days, newest first, each below `ABRUPT_SHARE` of its expected hours.

    Season-adjusted with each day's peer level (`levels`: assets x days, as `recent_days`);
    days the group paused, or that are no working day for the lease, neither count nor break
    the run. A business losing its work shows in days; a dip of one day is noise.
    """
    actual, expected = recent_days(use, day)
    if levels is None:
        levels, _ = peer_levels(ratio(actual, expected), groups)
    adjusted, _ = season_adjusted(expected, levels)
    got = lease_sum(np.where(adjusted > 0, actual, 0.0), leases, count)
    want = lease_sum(adjusted, leases, count)
    days = np.zeros(count, dtype=np.int64)
    going = np.ones(count, dtype=bool)
    for k in range(got.shape[1]):
        working = want[:, k] >= WORKING_HOURS
        down = working & (got[:, k] < ABRUPT_SHARE * want[:, k])
        going &= down | ~working
        days += going & down
    return days
