"""Scoring against simulator ground truth: precision, recall and detection delay per kind.

Each `scoring_*` module runs one family of detectors over a shipped scenario (inputs from
`simulated`, never from labels) and matches its episodes to the scenario's labels. This module
holds what they share: the per-kind score and the table `leasewatch detect score` prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from firmware_sim.scenarios import ResolvedScenario, load_scenario, resolve
from firmware_sim.scenarios.labels import Label, labels_for
from firmware_sim.scenarios.run import simulated_assets

YEAR_DAYS = 365.0


@dataclass(slots=True)
class KindScore:
    """How one detector did on one kind of labelled incident."""

    scenario: str
    detector: str
    kind: str
    labels: int = 0
    detected: int = 0
    findings: int = 0  # episodes the detector raised that count for precision
    true_findings: int = 0
    delays_h: list[float] = field(default_factory=list)
    false_alarms: int = 0
    asset_years: float = 0.0
    note: str = ""

    @property
    def recall(self) -> float | None:
        """Detected labels / labels."""
        return self.detected / self.labels if self.labels else None

    @property
    def precision(self) -> float | None:
        """Findings that matched a label / findings."""
        return self.true_findings / self.findings if self.findings else None

    @property
    def median_delay_h(self) -> float | None:
        """Median hours from the labelled start to the first finding."""
        return statistics.median(self.delays_h) if self.delays_h else None


def parse_ts(text: object) -> datetime:
    """A label's RFC 3339 time."""
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def scenario_labels(resolved: ResolvedScenario) -> list[Label]:
    """The scenario's ground-truth labels, as `scenario run` writes them to labels.jsonl."""
    timelines = {a.timeline.spec.id: a.timeline for a in simulated_assets(resolved)}
    return labels_for(resolved, timelines)


def load(name: str, assets: int | None = None) -> ResolvedScenario:
    """A shipped scenario resolved (optionally scaled to `assets` assets)."""
    scenario = load_scenario(name)
    if assets is not None:
        scenario = scenario.with_asset_count(assets)
    return resolve(scenario)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table(scores: Iterable[KindScore]) -> str:
    """A markdown table of the scores."""
    lines = [
        "| scenario | detector | kind | labels | recall | precision | median delay | "
        "false alarms / asset-year | note |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in scores:
        rate = s.false_alarms / s.asset_years if s.asset_years else None
        delay = s.median_delay_h
        shown = (
            "-" if delay is None else (f"{delay / 24:.1f} d" if delay >= 48 else f"{delay:.1f} h")
        )
        lines.append(
            f"| {s.scenario} | {s.detector} | {s.kind} | {s.labels} | {_fmt(s.recall, '.2f')} | "
            f"{_fmt(s.precision, '.2f')} | {shown} | {_fmt(rate, '.3f')} | {s.note} |"
        )
    return "\n".join(lines)
