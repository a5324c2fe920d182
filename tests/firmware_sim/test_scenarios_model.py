"""Scenario files: the shipped ones load, and a broken one says which key is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.scenarios import (
    ScenarioError,
    load_scenario,
    named_scenarios,
    parse_scenario,
    resolve,
)

BASE = """
name = "t"
seed = 1
start = 2025-03-03
days = 10

[regions.home]
center = [51.5, 4.9]
radius_km = 100

[sites.yard]
position = [51.9, 4.3]
region = "home"

[[assets]]
id = "a-1"
type = "truck"
site = "yard"
lease = "L-1"
"""


def _with_event(event: str) -> str:
    return BASE + "\n[[events]]\n" + event


def test_at_least_six_scenarios_ship_from_smoke_to_portfolio() -> None:
    names = named_scenarios()
    assert len(names) >= 6
    smoke, portfolio = load_scenario("smoke"), load_scenario("portfolio")
    assert len(smoke.asset_ids()) == 5
    assert (len(portfolio.asset_ids()), portfolio.days) == (2000, 365)
    for name in names:
        assert load_scenario(name).description


def test_the_portfolio_resolves_to_every_kind_of_incident() -> None:
    resolved = resolve(load_scenario("portfolio"))
    categories = {i.category for i in resolved.incidents}
    assert categories == {"utilization", "seasonal", "fault", "silence", "relocation", "data_fault"}
    kinds = {i.kind for i in resolved.incidents}
    assert {"network_outage", "power_cut", "tamper", "parked", "bearing_wear"} <= kinds


def test_a_scenario_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(BASE)
    assert load_scenario(path).asset_ids() == ["a-1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            _with_event(
                'kind = "utilization_decline"\nasset = "a-1"\nstart_day = 2\nmagnitude = 0.9'
            ),
            "events[0].magnitude: 0.9 is out of range: must be >= 0.2 and <= 0.8",
            id="decline-magnitude",
        ),
        pytest.param(
            _with_event(
                'kind = "utilization_decline"\nasset = "a-1"\nstart_day = 2\nmagnitude = [0.6, 0.3]'
            ),
            "events[0].magnitude: range [0.6, 0.3] has low above high",
            id="range-order",
        ),
        pytest.param(
            _with_event('kind = "silence"\ncause = "parked"\nasset = "b-9"\nstart_day = 1'),
            "events[0].asset: unknown asset 'b-9'",
            id="unknown-asset",
        ),
        pytest.param(
            _with_event('kind = "silence"\ncause = "nap"\nasset = "a-1"\nstart_day = 1'),
            "events[0].cause: Input should be 'network_outage', 'power_cut', 'tamper' or 'parked'",
            id="unknown-cause",
        ),
        pytest.param(
            _with_event('kind = "silence"\ncause = "parked"\nasset = "a-1"\nstart_day = 12'),
            "events[0].start_day: day 12 is not within the scenario's 10 days",
            id="past-the-end",
        ),
        pytest.param(
            _with_event(
                'kind = "silence"\ncause = "parked"\nshare = 0.5\nasset = "a-1"\nstart_day = 1'
            ),
            "events[0]: give exactly one of asset, assets or share",
            id="two-selectors",
        ),
        pytest.param(
            _with_event('kind = "meteor"\nasset = "a-1"\nstart_day = 1'),
            "events[0]: Input tag 'meteor' found using 'kind' does not match",
            id="unknown-kind",
        ),
        pytest.param(
            _with_event(
                'kind = "silence"\ncause = "parked"\nasset = "a-1"\nstart_day = 1\ncolour = 1'
            ),
            "events[0].colour: Extra inputs are not permitted",
            id="unknown-key",
        ),
        pytest.param(
            BASE.replace('site = "yard"', 'site = "moon"'),
            "assets[0].site: unknown site 'moon'",
            id="site",
        ),
        pytest.param(
            BASE.replace('type = "truck"', 'type = "tank"'),
            "assets[0].type: Input should be",
            id="type",
        ),
        pytest.param(
            BASE.replace('id = "a-1"', 'id = "A 1"'), "assets[0].id: String should match", id="id"
        ),
        pytest.param(BASE.replace("seed = 1\n", ""), "seed: Field required", id="missing-seed"),
        pytest.param(
            BASE.replace("days = 10", "days = 10\nbatch_s = 90"),
            "batch_s: 90 is not a multiple of sample_s",
            id="batch",
        ),
        pytest.param(BASE.replace("days = 10", "days = 10 10"), "not valid TOML", id="toml"),
        pytest.param(
            BASE.replace("radius_km = 100", 'radius_km = 100\ncalendar = "DE-XX"'),
            "regions.home.calendar: holiday calendar 'DE-XX': DE has no subdivision 'XX'",
            id="calendar",
        ),
    ],
)
def test_errors_name_the_key(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "mine.toml")
    assert str(caught.value).startswith("mine.toml: ")
    assert expected in str(caught.value)


def test_an_unknown_name_lists_the_shipped_scenarios() -> None:
    with pytest.raises(
        ScenarioError, match=r"no scenario named 'nope'; shipped scenarios: .*smoke"
    ):
        load_scenario("nope")


def test_a_share_picks_that_many_assets_and_types_narrow_it() -> None:
    scenario = load_scenario("utilization")
    resolved = resolve(scenario)
    frost = [i for i in resolved.incidents if i.name == "frost"]
    excavators = [a for a in resolved.assets if a.type == "excavator"]
    assert {i.asset for i in frost} == {a.id for a in excavators}
    christmas = [i for i in resolved.incidents if i.name == "christmas"]
    assert len(christmas) == len(resolved.assets) == 40


def test_the_fleet_scales_to_a_given_number_of_assets() -> None:
    scaled = load_scenario("fleet-load").with_asset_count(1234)
    assert len(scaled.asset_ids()) == 1234
    with pytest.raises(ValueError, match="no populations"):
        load_scenario("smoke").with_asset_count(50)
