"""Scenario regions keep public holidays: an asset rests on its own region's, not another's."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from firmware_sim.calendar import year_holidays
from firmware_sim.scenarios import parse_scenario, resolve, run_scenario
from firmware_sim.scenarios.run import simulated_assets

CORPUS_CHRISTI = date(2026, 6, 4)  # a Thursday: a day off in Cologne (DE-NW), not in Hanover
START = date(2026, 5, 4)
DAYS = 60

SCENARIO = f"""
name = "holidays"
seed = 7
start = {START.isoformat()}
days = {DAYS}
sample_s = 300
batch_s = 3600

[regions.rhine-ruhr]
center = [50.94, 6.96]
radius_km = 150
calendar = "DE-NW"

[regions.lower-saxony]
center = [52.37, 9.73]
radius_km = 150
calendar = "DE-NI"

[regions.nowhere]
center = [52.37, 9.73]
radius_km = 150

[sites.cologne]
position = [50.94, 6.96]
region = "rhine-ruhr"

[sites.hanover]
position = [52.37, 9.73]
region = "lower-saxony"

[sites.hanover-plain]
position = [52.37, 9.73]
region = "nowhere"
"""


def _asset(asset_id: str, site: str) -> str:
    return f'\n[[assets]]\nid = "{asset_id}"\ntype = "cnc"\nsite = "{site}"\nlease = "L-1"\n'


def _scenario(text: str = "") -> str:
    body = SCENARIO + _asset("cnc-k", "cologne") + _asset("cnc-h", "hanover")
    return body + _asset("cnc-p", "hanover-plain") + text


def _run_hours(scenario_text: str) -> dict[str, dict[int, float]]:
    """Run seconds per asset per scenario day, straight from the timelines."""
    resolved = resolve(parse_scenario(scenario_text))
    return {
        a.timeline.spec.id: {day: a.timeline.plan(day).run_s for day in range(DAYS)}
        for a in simulated_assets(resolved)
    }


def test_a_region_calendar_is_validated_and_resolved_per_asset() -> None:
    resolved = resolve(parse_scenario(_scenario()))
    codes = {spec.id: resolved.calendar_of(spec) for spec in resolved.assets}
    assert codes == {"cnc-k": "DE-NW", "cnc-h": "DE-NI", "cnc-p": ""}


def test_an_asset_rests_on_its_regions_holiday_and_works_on_another_regions() -> None:
    hours = _run_hours(_scenario())
    day = (CORPUS_CHRISTI - START).days
    assert CORPUS_CHRISTI in year_holidays("DE-NW", 2026)
    assert CORPUS_CHRISTI not in year_holidays("DE-NI", 2026)
    assert hours["cnc-k"][day] == 0.0
    assert hours["cnc-h"][day] > 8 * 3600.0  # a cnc works a 16-hour day


def test_only_holidays_change_a_regions_day_plans() -> None:
    """The same asset with and without its region calendar: the plans differ on holidays only."""
    plain = _scenario().replace('calendar = "DE-NW"\n', "")
    with_calendar, without = _run_hours(_scenario()), _run_hours(plain)
    rested = {day for day in range(DAYS) if with_calendar["cnc-k"][day] != without["cnc-k"][day]}
    weekday_holidays = {
        (d - START).days for d in year_holidays("DE-NW", 2026) if d >= START and d.weekday() < 5
    }
    weekday_holidays = {n for n in weekday_holidays if n < DAYS}
    # Ascension, Whit Monday, Corpus Christi fall on workdays in May-June 2026
    assert rested == weekday_holidays
    assert len(rested) == 3
    assert all(with_calendar["cnc-k"][day] == 0.0 for day in rested)
    assert with_calendar["cnc-h"] != with_calendar["cnc-k"]


def test_a_public_holiday_is_no_utilization_label(tmp_path: Path) -> None:
    """The run writes the rest day into days.csv (0 hours, 0 nominal) and no label for it."""
    summary = run_scenario(resolve(parse_scenario(_scenario())), tmp_path)
    assert summary.labels == 0
    assert (tmp_path / "labels.jsonl").read_text(encoding="utf-8") == ""
    with (tmp_path / "days.csv").open(encoding="utf-8") as file:
        rows = {(r["asset"], r["date"]): r for r in csv.DictReader(file)}
    rest = rows[("cnc-k", CORPUS_CHRISTI.isoformat())]
    assert (float(rest["run_hours"]), float(rest["nominal_hours"])) == (0.0, 0.0)
    assert float(rows[("cnc-h", CORPUS_CHRISTI.isoformat())]["nominal_hours"]) > 8.0
