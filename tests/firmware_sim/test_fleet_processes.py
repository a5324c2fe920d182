"""Fleet mode over several processes: every gateway published once, one report that adds up."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from firmware_sim.bench import figures, run_bench
from firmware_sim.fleet import FleetError, FleetPlan, FleetReport
from firmware_sim.fleet_processes import run_fleet_processes, run_fleet_with_progress
from firmware_sim.scenarios import load_scenario, resolve
from firmware_sim.scenarios.run import messages_of, simulated_assets, windows
from tests.firmware_sim.test_fleet import Key, _key, _principals, _sent, _sent_keys, _target
from tests.firmware_sim.test_fleet import subscribed as subscribed_to
from tests.services.mosquitto import MosquittoFactory


def _scenario_keys(name: str, boot_tag: str) -> Counter[Key]:
    """(kind, device, boot, seq) of every publish the scenario's gateways make, offline."""
    resolved = resolve(load_scenario(name))
    return Counter(
        (m.kind, m.device, m.boot, None if m.seq < 0 else m.seq)
        for asset in simulated_assets(resolved, boot_tag=boot_tag)
        for m in messages_of(asset, windows(resolved))
    )


def _devices(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.integration
async def test_three_processes_publish_every_gateway_once_into_one_report(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(_principals())
    resolved = resolve(load_scenario("data-faults"))
    path = tmp_path / "sent.jsonl"
    plan = FleetPlan(speed=None, connections=2, window=16, boot_tag="mp", report=path)
    async with subscribed_to(broker) as subscriber:
        stats = await run_fleet_with_progress(
            resolved, _target(broker), plan, FleetReport(path), show=False, processes=3
        )
        await subscriber.until(stats.messages)
    sent = _sent(path)
    expected = _scenario_keys("data-faults", "mp")
    assert _sent_keys(sent) == expected == Counter(_key(t, p) for t, p in subscriber.received)
    assert stats.messages == len(sent) == expected.total() > 10_000
    assert stats.readings == sum(int(str(s["readings"])) for s in sent)
    assert stats.faults == Counter(str(s["fault"]) for s in sent if s["fault"])
    assert stats.retries == stats.abandoned == stats.reconnects == 0
    devices = _devices(tmp_path / "sent.devices.csv")
    assert [d["device"] for d in devices] == sorted({str(s["device"]) for s in sent})
    assert sum(int(d["telemetry"]) + int(d["status"]) for d in devices) == stats.messages
    summary = json.loads((tmp_path / "sent.summary.json").read_text())
    assert summary["messages"] == stats.messages and summary["readings"] == stats.readings
    assert _files(tmp_path) == [
        "mosquitto-0",
        "sent.devices.csv",
        "sent.jsonl",
        "sent.summary.json",
    ]  # the processes' parts were merged and removed


@pytest.mark.integration
def test_the_benchmark_with_two_processes_counts_both_and_all_arrive() -> None:
    resolved = resolve(load_scenario("fleet-load").with_asset_count(200))
    plan = FleetPlan(speed=None, duration_s=1.5, window=8)
    result = run_bench(resolved, plan, subscriber=True, processes=2)
    sent = int(str(result.summary["messages"]))
    assert sent > 500
    assert result.delivered is not None and result.delivered.messages == sent
    assert result.cpu.processes == 2 and result.cpu.publisher_percent > 0
    rows = dict(zip(*(column.cells for column in figures(result).columns), strict=True))
    assert rows["gateways"] == "200 over 4 connection(s) in each of 2 processes"


@pytest.mark.integration
async def test_a_wrong_password_stops_every_process_with_one_sentence(
    mosquitto_factory: MosquittoFactory,
) -> None:
    broker = mosquitto_factory(_principals())
    target = _target(broker)
    wrong = type(target)(target.host, target.port, target.username, "not-the-password")
    resolved = resolve(load_scenario("smoke"))
    plan = FleetPlan(speed=None, duration_s=1, connections=1)
    with pytest.raises(FleetError, match=r"^connection 0 to 127\.0\.0\.1:\d+: [^;]+$"):
        await run_fleet_processes(resolved, wrong, plan, FleetReport(None), processes=2)
