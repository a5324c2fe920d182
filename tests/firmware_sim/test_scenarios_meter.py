"""The asset model's per-day shortcuts give exactly what recomputing from the day plans gives."""

from __future__ import annotations

import pytest

from firmware_sim.scenarios import load_scenario, resolve
from firmware_sim.scenarios.asset import METRICS
from firmware_sim.scenarios.expand import DAY_S
from firmware_sim.scenarios.run import SimulatedAsset, simulated_assets
from firmware_sim.scenarios.timeline import AssetTimeline

RUN_HOURS = METRICS.index("run_hours")


def _assets(name: str, count: int) -> list[SimulatedAsset]:
    """The first `count` simulated assets of a named scenario."""
    return simulated_assets(resolve(load_scenario(name)))[:count]


def _resummed(timeline: AssetTimeline, t: float) -> float:
    """The run-hour meter summed from scratch: every earlier day, then the day's intervals."""
    day = timeline.day_of(t)
    if day < 0:
        return timeline.spec.initial_run_hours
    hours = timeline.spec.initial_run_hours
    for n in range(day):
        hours += sum(end - start for start, end, _ in timeline.plan(n).intervals) / 3600.0
    intervals = timeline.plan(day).intervals
    running = sum(min(end, t) - start for start, end, _ in intervals if start < t)
    return hours + running / 3600.0


@pytest.mark.parametrize("name", ["silence", "utilization"])
def test_the_run_hour_meter_is_the_sum_of_the_running_intervals(name: str) -> None:
    checked = 0
    for asset in _assets(name, 6):
        timeline = asset.timeline
        for day in (-1, 0, 3, 9):
            midnight = timeline.start_ts + day * DAY_S
            for t in (midnight + s * 97.5 for s in range(886)):
                expected = _resummed(timeline, t)
                assert timeline.run_hours_at(t) == expected
                assert asset.machine.values(t)[RUN_HOURS] == round(expected, 3)
                checked += 1
    assert checked == 6 * 4 * 886


def test_readings_over_a_window_are_the_readings_one_by_one() -> None:
    for asset in _assets("faults", 5):
        machine, start = asset.machine, asset.timeline.start_ts
        for day in range(0, 60, 3):
            midnight = int(start + day * DAY_S)
            for first in (midnight + 8 * 3600, midnight - 240):  # in the day, across midnight
                times = range(first, first + 600, 60)
                assert machine.values_over(times) == [machine.values(t) for t in times]
        assert machine.values_over(()) == []
