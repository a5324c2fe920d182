"""Public holidays by region: a regional holiday is no drop where it is kept, a drop elsewhere."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from cloud.risk.calendars import CalendarError, RegionHolidays, year_holidays
from cloud.risk.history import AssetHistory
from cloud.risk.portfolio import Portfolio
from cloud.risk.rules import RulesError, ScoringRules, load_rules
from cloud.risk.scoring import score_lease

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAYS = 160
AS_OF = 154  # Monday 8 June 2026: the recent 14 days hold two Thursdays, 28 May and 4 June
CORPUS_CHRISTI = date(2026, 6, 4)  # a public holiday in North Rhine-Westphalia, not in Lower Saxony


def _thursdays_in_cologne() -> np.ndarray:
    """Eight hours every Thursday, none on North Rhine-Westphalia's public holidays."""
    kept = year_holidays("DE-NW", 2026)
    days = [START.date() + timedelta(days=d) for d in range(DAYS)]
    return np.array([8.0 if d.weekday() == 3 and d not in kept else 0.0 for d in days])


def _history(region: str) -> AssetHistory:
    return AssetHistory(asset=f"a-{region}", lease=f"L-{region}", start=START,
                        hours=_thursdays_in_cologne(), covered=np.full(DAYS, 24.0),
                        expected_per_day=0.0, asset_type="crane", region=region)  # fmt: skip


def test_a_regional_holiday_is_no_drop_there_but_would_be_elsewhere(rules: ScoringRules) -> None:
    histories = [_history("DE-NW"), _history("DE-NI")]
    first = START.date()
    calendars = RegionHolidays().calendars(["DE-NW", "DE-NI"], first, first + timedelta(DAYS))
    assert CORPUS_CHRISTI in calendars["DE-NW"]
    assert CORPUS_CHRISTI not in calendars["DE-NI"]
    found = {s.lease_id: s for s in Portfolio(histories, calendars).signals(AS_OF)}
    kept, elsewhere = found["L-DE-NW"], found["L-DE-NI"]
    assert kept.utilization_vs_baseline == pytest.approx(1.0)  # 28 May only: as usual
    assert elsewhere.utilization_vs_baseline == pytest.approx(0.5)  # 4 June judged: idle
    assert score_lease(kept, rules).reasons == ()
    flagged = score_lease(elsewhere, rules)
    assert flagged.reasons[0].code == "utilization_below_baseline"
    assert flagged.reasons[0].points > 0.0


def test_regions_resolve_through_the_rules_then_their_own_name_then_the_default() -> None:
    holidays = load_rules().holidays.resolver()
    assert holidays.code("rhine-ruhr") == "DE-NW"  # the rules' table
    assert holidays.code("DE-BY") == "DE-BY"  # a region named by its calendar code
    assert holidays.code("south") == ""  # neither: the default, no public holidays
    spring = (date(2026, 4, 1), date(2026, 6, 30))
    assert holidays.dates("rhine-ruhr", *spring) == holidays.dates("DE-NW", *spring)
    assert holidays.dates("south", *spring) == frozenset()
    assert date(2026, 4, 27) in holidays.dates("benelux", *spring)  # King's Day: NL only
    assert date(2026, 4, 27) not in holidays.dates("rhine-ruhr", *spring)
    with_default = RegionHolidays(default="FR")
    assert date(2026, 5, 8) in with_default.dates("south", *spring)  # Victory Day


def test_an_unknown_calendar_in_the_rules_names_its_key(tmp_path: Path) -> None:
    text = resources.files("cloud.risk").joinpath("rules.toml").read_text(encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(text.replace('rhine-ruhr = "DE-NW"', 'rhine-ruhr = "DE-XX"'), "utf-8")
    with pytest.raises(RulesError, match=r"holidays: regions.rhine-ruhr: DE has no subdivision"):
        load_rules(path)
    path.write_text(text.replace('default = ""', 'default = "QQ"'), "utf-8")
    with pytest.raises(RulesError, match=r"default: unknown country 'QQ'"):
        load_rules(path)
    with pytest.raises(CalendarError, match="'QQ'"):
        year_holidays("QQ", 2026)
