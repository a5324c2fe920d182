"""Scenario runs: the same seed gives the same files, and the labels say what the assets did."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.machine import MachineState
from firmware_sim.scenarios import ResolvedScenario, load_scenario, resolve, run_scenario
from firmware_sim.scenarios.labels import Label, read_labels
from firmware_sim.scenarios.run import simulated_assets
from firmware_sim.scenarios.timeline import distance_km

Days = dict[str, dict[date, float]]
TEMPERATURE, CURRENT, VIBRATION, FAULT_CODE = 2, 1, 3, 5


def _days(path: Path) -> Days:
    """Run hours per asset per day from days.csv."""
    found: Days = defaultdict(dict)
    with path.open() as file:
        for row in csv.DictReader(file):
            found[row["asset"]][date.fromisoformat(row["date"])] = float(row["run_hours"])
    return found


def _day(stamp: object) -> date:
    return datetime.fromisoformat(str(stamp)).date()


@pytest.fixture(scope="module")
def utilization(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Label], Days]:
    """Labels and day summary of the utilization scenario."""
    out = tmp_path_factory.mktemp("utilization")
    run_scenario(resolve(load_scenario("utilization")), out)
    return read_labels(out / "labels.jsonl"), _days(out / "days.csv")


def _busy_days(labels: list[Label], asset: str, skip: Label) -> set[date]:
    """Days another use-changing label of the asset covers (excluded from comparisons)."""
    busy: set[date] = set()
    for label in labels:
        if label is skip or label["asset"] != asset:
            continue
        if label["category"] in ("utilization", "seasonal") or label["kind"] == "parked":
            first, last = _day(label["start"]), _day(label["end"])
            busy |= set(_all_days(first, last))
    return busy


def _all_days(first: date, last: date) -> list[date]:
    return [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal())]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_same_seed_same_files_and_another_seed_other_days(tmp_path: Path) -> None:
    smoke = load_scenario("smoke")
    for name in ("a", "b"):
        run_scenario(resolve(smoke), tmp_path / name, telemetry=True)
    for produced in ("labels.jsonl", "days.csv", "assets.csv", "telemetry.jsonl"):
        assert (tmp_path / "a" / produced).read_bytes() == (tmp_path / "b" / produced).read_bytes()
    run_scenario(resolve(smoke.model_copy(update={"seed": 8})), tmp_path / "c")
    assert (tmp_path / "c" / "days.csv").read_bytes() != (tmp_path / "a" / "days.csv").read_bytes()


def test_the_portfolio_runs_a_year_the_same_way_each_time_with_every_kind(tmp_path: Path) -> None:
    """The 2,000 x 365 portfolio scaled to 200 assets (the same events, 1/10 of the fleet)."""
    portfolio = load_scenario("portfolio").with_asset_count(200)
    for name in ("a", "b"):
        summary = run_scenario(resolve(portfolio), tmp_path / name)
    assert (summary.assets, summary.days) == (200, 365)
    for produced in ("labels.jsonl", "days.csv", "assets.csv"):
        assert (tmp_path / "a" / produced).read_bytes() == (tmp_path / "b" / produced).read_bytes()
    days = _days(tmp_path / "a" / "days.csv")
    assert len(days) == 200 and {len(per_day) for per_day in days.values()} == {365}
    labels = read_labels(tmp_path / "a" / "labels.jsonl")
    assert {x["category"] for x in labels} >= {
        "utilization", "seasonal", "fault", "silence", "relocation", "data_fault"
    }  # fmt: skip
    assert {x["kind"] for x in labels} >= {
        "utilization_decline", "seasonal_dip", "bearing_wear", "overheating", "motor_overload",
        "sensor_failure", "network_outage", "power_cut", "tamper", "parked", "relocation",
        "duplicates", "late", "malformed",
    }  # fmt: skip
    measured = _measured_drops(labels, days)
    assert len(measured) >= 5
    for label, observed in measured:
        assert observed == pytest.approx(float(str(label["magnitude"])), abs=0.1), label


def _measured_drops(labels: list[Label], days: Days) -> list[tuple[Label, float]]:
    """Each decline with its observed drop, where ten clean days lie before and after it."""
    measured = []
    for label in (x for x in labels if x["kind"] == "utilization_decline"):
        try:
            measured.append((label, _observed_drop(labels, days, label)))
        except AssertionError:
            continue  # a window too short once other labels are taken out
    return measured


def test_a_labelled_40_percent_drop_is_a_40_percent_drop_in_run_hours(
    utilization: tuple[list[Label], Days],
) -> None:
    labels, days = utilization
    (label,) = [x for x in labels if x["asset"] == "exc-040" and x["kind"] == "utilization_decline"]
    assert (label["magnitude"], label["shape"]) == (0.4, "sudden")
    observed = _observed_drop(labels, days, label)
    assert observed == pytest.approx(0.4, abs=0.05)


def _observed_drop(labels: list[Label], days: Days, label: Label) -> float:
    """1 - mean run hours per day in the labelled window / mean before it (other labels out)."""
    asset = str(label["asset"])
    busy = _busy_days(labels, asset, label)
    start, settled, end = _day(label["start"]), _day(label["ramp_end"]), _day(label["end"])
    before = [h for d, h in days[asset].items() if d < start and d not in busy]
    after = [h for d, h in days[asset].items() if settled <= d < end and d not in busy]
    assert len(before) >= 10 and len(after) >= 10, label
    return 1 - _mean(after) / _mean(before)


def test_every_labelled_decline_shows_its_magnitude(utilization: tuple[list[Label], Days]) -> None:
    labels, days = utilization
    assert {x["shape"] for x in labels if x["kind"] == "utilization_decline"} == {
        "sudden",
        "gradual",
    }
    measured = _measured_drops(labels, days)
    for label, observed in measured:
        assert observed == pytest.approx(float(str(label["magnitude"])), abs=0.1), label
    assert len(measured) >= 8


def test_declines_span_20_to_80_percent_sudden_and_gradual(
    utilization: tuple[list[Label], Days],
) -> None:
    labels, _ = utilization
    declines = [x for x in labels if x["kind"] == "utilization_decline"]
    magnitudes = sorted(float(str(x["magnitude"])) for x in declines)
    assert 0.2 <= magnitudes[0] <= 0.3 and 0.7 <= magnitudes[-1] <= 0.8, magnitudes
    for label in declines:
        ramp = (_day(label["ramp_end"]) - _day(label["start"])).days
        assert (label["shape"], label["ramp_days"]) == (
            ("sudden", 0.0) if ramp == 0 else ("gradual", float(ramp))
        ), label


def _drop(days: Days, asset: str, busy: set[date], window: tuple[date, date]) -> float | None:
    """1 - mean run hours in `window` / mean over the 5 weeks before `start`; None if too few."""
    start, end = window
    before = [h for d, h in days[asset].items() if d not in busy and start - WEEKS_5 <= d < start]
    after = [h for d, h in days[asset].items() if d not in busy and start <= d < end]
    if len(before) < 20 or len(after) < 5:
        return None
    return 1 - _mean(after) / _mean(before)


WEEKS_5 = timedelta(days=35)


def test_a_sudden_decline_drops_at_once_and_a_gradual_one_ramps(
    utilization: tuple[list[Label], Days],
) -> None:
    labels, days = utilization
    checked: Counter[str] = Counter()
    for label in (x for x in labels if x["kind"] == "utilization_decline"):
        asset, magnitude = str(label["asset"]), float(str(label["magnitude"]))
        busy, start = _busy_days(labels, asset, label), _day(label["start"])
        if label["shape"] == "sudden":  # the first two weeks already show the whole drop
            first = _drop(days, asset, busy, (start, start + timedelta(days=14)))
            if first is not None:
                assert first == pytest.approx(magnitude, abs=0.1), label
                checked["sudden"] += 1
            continue
        third = timedelta(days=float(str(label["ramp_days"])) / 3)
        ramp_end = _day(label["ramp_end"])
        early = _drop(days, asset, busy, (start, start + third))
        late = _drop(days, asset, busy, (ramp_end - third, ramp_end))
        if early is not None and late is not None:
            assert early < magnitude / 2 and late > early + 0.1, (label, early, late)
            checked["gradual"] += 1
    assert checked["sudden"] >= 4 and checked["gradual"] >= 3, checked


def test_a_seasonal_dip_ends_and_use_comes_back(utilization: tuple[list[Label], Days]) -> None:
    """The frost pause halves excavator use for its window; the weeks after it are as before."""
    labels, days = utilization
    before: list[float] = []
    during: list[float] = []
    after: list[float] = []
    for label in (x for x in labels if x.get("name") == "frost"):
        asset, start, end = str(label["asset"]), _day(label["start"]), _day(label["end"])
        around = set(_all_days(start - WEEKS_5, end + timedelta(days=14)))
        if around & _busy_days(labels, asset, label):
            continue  # another label changes this asset's use around the dip
        for d, hours in days[asset].items():
            if d in around:
                (before if d < start else during if d < end else after).append(hours)
    assert len(during) >= 5 * 10
    assert 1 - _mean(during) / _mean(before) == pytest.approx(0.5, abs=0.1)
    assert _mean(after) / _mean(before) == pytest.approx(1.0, abs=0.1)


def test_a_seasonal_dip_is_labelled_seasonal_and_not_as_a_decline(
    utilization: tuple[list[Label], Days],
) -> None:
    labels, days = utilization
    christmas = [x for x in labels if x.get("name") == "christmas"]
    assert len(christmas) == 40
    assert {(x["kind"], x["category"], x["not_a_decline"]) for x in christmas} == {
        ("seasonal_dip", "seasonal", True)
    }
    quiet = [x for x in christmas if not _busy_days(labels, str(x["asset"]), x)]
    assert len(quiet) >= 5
    for label in quiet:
        asset, start = str(label["asset"]), _day(label["start"])
        during = [h for d, h in days[asset].items() if d >= start]
        before = [h for d, h in days[asset].items() if d < start]
        assert 1 - _mean(during) / _mean(before) == pytest.approx(0.85, abs=0.1)


def test_parked_assets_do_not_run(utilization: tuple[list[Label], Days]) -> None:
    labels, days = utilization
    parked = [x for x in labels if x["kind"] == "parked"]
    assert parked
    for label in parked:
        window = _all_days(_day(label["start"]), _day(label["end"]))
        assert all(days[str(label["asset"])][d] == 0.0 for d in window)


@pytest.fixture(scope="module")
def faults() -> ResolvedScenario:
    """The faults scenario, resolved."""
    return resolve(load_scenario("faults"))


def _samples(
    resolved: ResolvedScenario, asset: str, first_day: float, last_day: float
) -> list[tuple[float | None, ...]]:
    """What the gateway reads from an asset every 5 minutes over a span of scenario days."""
    (machine,) = [a.machine for a in simulated_assets(resolved) if a.timeline.spec.id == asset]
    start = resolved.start_ts + first_day * 86_400
    steps = int((last_day - first_day) * 86_400 // 300)
    return [machine.values(start + n * 300) for n in range(steps)]


def _running(samples: list[tuple[float | None, ...]], index: int) -> list[float]:
    return [float(s[index] or 0.0) for s in samples if s[0] == 1.0 and s[index] is not None]


def test_bearing_wear_trends_then_spikes_with_its_fault_code(faults: ResolvedScenario) -> None:
    healthy = _running(_samples(faults, "cnc-101", 3, 10), VIBRATION)
    worn = _running(_samples(faults, "cnc-101", 36, 38.9), VIBRATION)
    spike = _samples(faults, "cnc-101", 39, 40)
    assert _mean(worn) > 2.2 * _mean(healthy)
    assert {s[FAULT_CODE] for s in spike if s[0] == 1.0} == {31.0}
    assert _mean(_running(spike, VIBRATION)) > 5 * _mean(healthy)


def test_overheating_and_overload_change_temperature_and_current(faults: ResolvedScenario) -> None:
    normal = _samples(faults, "cmp-102", 10, 20)
    hot = _samples(faults, "cmp-102", 25, 30)
    assert max(_running(hot, TEMPERATURE)) > max(_running(normal, TEMPERATURE)) + 25
    assert 21.0 in {s[FAULT_CODE] for s in hot}
    overloaded = _samples(faults, "exc-103", 15, 20)
    healthy = _samples(_moved_overload(faults), "exc-103", 15, 20)
    ratios = {
        round(float(sick[CURRENT] or 0) / float(well[CURRENT] or 1), 2)
        for sick, well in zip(overloaded, healthy, strict=True)
        if sick[0] == 1.0
    }
    assert ratios == {1.6}
    assert 11.0 in {s[FAULT_CODE] for s in overloaded}


def _moved_overload(resolved: ResolvedScenario) -> ResolvedScenario:
    """The same scenario with exc-103's motor overload moved to day 55 (the counterfactual)."""
    events = list(resolved.scenario.events)
    (index,) = [
        n
        for n, e in enumerate(events)
        if e.kind == "fault" and e.asset == "exc-103" and e.fault == "motor_overload"
    ]
    events[index] = events[index].model_copy(update={"start_day": 55.0, "days": 1.0})
    return resolve(resolved.scenario.model_copy(update={"events": events}))


def test_failed_sensors_go_missing_stick_or_read_out_of_range(faults: ResolvedScenario) -> None:
    missing = _samples(faults, "cnc-101", 45, 50)
    assert {s[TEMPERATURE] for s in missing} == {None}
    assert None not in {s[TEMPERATURE] for s in _samples(faults, "cnc-101", 50.1, 52)}
    stuck = _samples(faults, "cmp-102", 40, 47)
    assert len({s[VIBRATION] for s in stuck}) == 1
    out_of_range = _samples(faults, "exc-103", 30, 34)
    assert {s[CURRENT] for s in out_of_range} == {655.35}


def test_a_scenario_asset_is_a_machine(faults: ResolvedScenario) -> None:
    (asset,) = [a for a in simulated_assets(faults) if a.timeline.spec.id == "exc-103"]
    at = datetime.fromtimestamp(faults.start_ts + 15.5 * 86_400, tz=None).astimezone()
    state = asset.machine.advance(at)
    assert isinstance(state, MachineState)
    values = asset.machine.values(at.timestamp())
    assert (state.motor_current, state.run_hours) == (values[CURRENT], values[4])


def test_relocation_labels_start_when_the_asset_leaves_its_region(tmp_path: Path) -> None:
    resolved = resolve(load_scenario("relocation"))
    run_scenario(resolved, tmp_path)
    labels = read_labels(tmp_path / "labels.jsonl")
    timelines = {a.timeline.spec.id: a.timeline for a in simulated_assets(resolved)}
    regions = resolved.scenario.regions
    outside = [x for x in labels if x["kind"] == "relocation"]
    benign = [x for x in labels if x["kind"] == "move_within_region"]
    assert len(outside) == 3 and len(benign) >= 2
    assert {x["asset"] for x in outside} == {"trk-301", "exc-302", "trk-303"}
    for label in outside:
        timeline = timelines[str(label["asset"])]
        region = regions[str(label["permitted_region"])]
        start = datetime.fromisoformat(str(label["start"])).timestamp()
        assert distance_km(timeline.position(start - 60), region.center) <= region.radius_km
        assert distance_km(timeline.position(start), region.center) > region.radius_km
    (returned,) = [x for x in outside if x["asset"] == "trk-301"]
    back = datetime.fromisoformat(str(returned["end"])).timestamp()
    assert back < resolved.end_ts  # driven back to Brussels: the window closes
    assert distance_km(timelines["trk-301"].position(back), regions["benelux"].center) <= 200
    for label in benign:
        timeline, region = timelines[str(label["asset"])], regions[str(label["permitted_region"])]
        start = datetime.fromisoformat(str(label["start"])).timestamp()
        end = datetime.fromisoformat(str(label["end"])).timestamp()
        track = [start + n * (end - start) / 50 for n in range(51)]
        assert all(
            distance_km(timeline.position(t), region.center) <= region.radius_km for t in track
        )
