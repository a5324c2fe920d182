"""The scoring suites `leasewatch detect score` runs: which scenarios, at which scale."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cloud.detectors import scoring_faults, scoring_silence, scoring_usage
from cloud.detectors.scoring import KindScore, load, table
from firmware_sim.scenarios import ResolvedScenario


@dataclass(frozen=True, slots=True)
class Run:
    """One detector family on one scenario (optionally scaled to `assets` assets)."""

    scenario: str
    scorer: Callable[[ResolvedScenario], list[KindScore]]
    assets: int | None = None


SUITES: dict[str, tuple[Run, ...]] = {
    "quick": (
        Run("utilization", scoring_usage.score),
        Run("faults", scoring_faults.score),
        Run("silence", scoring_silence.score_silence),
        Run("relocation", scoring_silence.score_geofence),
    ),
    "full": (
        Run("portfolio", scoring_usage.score),
        Run("utilization", scoring_usage.score, assets=200),
        Run("faults", scoring_faults.score, assets=60),
        Run("silence", scoring_silence.score_silence, assets=150),
        Run("utilization", scoring_silence.score_silence, assets=200),
        Run("relocation", scoring_silence.score_geofence, assets=60),
    ),
}


def run_suite(runs: tuple[Run, ...], progress: Callable[[str], None]) -> str:
    """Run every scorer of a suite; the markdown table of all their scores."""
    scores: list[KindScore] = []
    for item in runs:
        started = time.monotonic()
        resolved = load(item.scenario, item.assets)
        found = item.scorer(resolved)
        if item.assets is not None:
            for s in found:
                s.scenario = f"{s.scenario} x{item.assets}"
        scores += found
        progress(
            f"{item.scenario}: {len(resolved.assets)} assets, {time.monotonic() - started:.0f} s"
        )
    return table(scores)
