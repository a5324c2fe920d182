"""Scenarios with ground truth: assets, leases and what happens to them, and the labels to score.

load_scenario("smoke")          a shipped scenario by name, or a TOML file by path
resolve(scenario)               concrete assets and incidents, drawn from the seed
run_scenario(resolved, out)     labels.jsonl, days.csv, assets.csv (+ telemetry.jsonl)
simulated_assets(resolved)      timeline, machine (`Machine` protocol) and gateway per asset
"""

from firmware_sim.scenarios.expand import AssetSpec, Incident, ResolvedScenario, resolve
from firmware_sim.scenarios.loader import (
    ScenarioError,
    load_scenario,
    named_scenarios,
    parse_scenario,
)
from firmware_sim.scenarios.model import Scenario
from firmware_sim.scenarios.run import RunSummary, SimulatedAsset, run_scenario, simulated_assets

__all__ = [
    "AssetSpec",
    "Incident",
    "ResolvedScenario",
    "RunSummary",
    "Scenario",
    "ScenarioError",
    "SimulatedAsset",
    "load_scenario",
    "named_scenarios",
    "parse_scenario",
    "resolve",
    "run_scenario",
    "simulated_assets",
]
