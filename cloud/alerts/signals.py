"""The interface between detectors and alerts: a detector reports findings, alerts keep them.

A detector never writes alerts itself. It returns `Finding`s: "this condition holds for this
asset since then, with this evidence" (open) or "it no longer holds" (cleared). The alert store
de-duplicates by (device, detector, key), opens, updates and resolves alerts accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal


class Severity(StrEnum):
    """How urgently a person should look."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


EvidenceValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's conclusion about one asset at one evaluation time.

    `key` separates independent conditions of one detector on one asset (e.g. the metric
    name for a fault rule); (device, detector, key) is the de-duplication key of the alert.
    `summary` is one sentence for people; `evidence` holds the numbers behind it (values,
    baseline, window, thresholds) so an alert always says why. A `historical` finding came
    from a replayed backlog: the alert store records it without delivering it.
    """

    device: str
    detector: str
    key: str
    state: Literal["open", "cleared"]
    severity: Severity
    since: datetime
    evaluated_at: datetime
    summary: str
    evidence: dict[str, EvidenceValue] = field(default_factory=dict)
    confidence: float = 1.0
    magnitude: float | None = None
    # found in replayed (historical) data: recorded, never announced as a live alarm
    historical: bool = False
