"""What every detector is: a description declared as data, and a small object with JSON state.

A `DetectorDescription` names a detector (key), says how much stored history its inputs need
(window), holds its thresholds (a frozen dataclass) and its value function (`AssetData` -> the
detector's typed inputs). A detector object is pure: it updates from one asset's inputs in time
order and returns `Finding`s; `to_json` gives its whole state, which the runner keeps in the state
store between evaluations (no per-asset state inside a worker).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from cloud.alerts.signals import EvidenceValue, Finding, Severity
from cloud.detectors.inputs import AssetData

InputsT = TypeVar("InputsT")
InputsT_contra = TypeVar("InputsT_contra", contravariant=True)
ThresholdsT = TypeVar("ThresholdsT")


class Detector(Protocol[InputsT_contra]):
    """One asset's detector: updates in time order, reports findings, serialises its state."""

    def update(self, inputs: InputsT_contra, now: datetime) -> list[Finding]:
        """Consume inputs newer than the state's watermark; findings that opened or cleared."""
        ...

    def to_json(self) -> str:
        """The whole state as JSON text."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorDescription(Generic[InputsT, ThresholdsT]):
    """A detector declared as data: adding one is adding a description and its functions."""

    key: str
    summary: str
    window: timedelta  # how far back the runner reads stored data for the inputs
    thresholds: ThresholdsT
    value_fn: Callable[[AssetData], InputsT]
    create: Callable[[str, str, ThresholdsT], Detector[InputsT]]  # device, asset type
    restore: Callable[[str, ThresholdsT], Detector[InputsT]]  # state JSON


def evaluate(
    description: DetectorDescription[Any, Any], state_json: str | None, data: AssetData
) -> tuple[str, list[Finding]]:
    """One evaluation: restore (or create) the detector, feed it, return its state and findings."""
    if state_json is None:
        detector = description.create(data.device, data.asset_type, description.thresholds)
    else:
        detector = description.restore(state_json, description.thresholds)
    findings = detector.update(description.value_fn(data), data.now)
    return detector.to_json(), findings


def evaluate_state(
    description: DetectorDescription[Any, Any], state: Mapping[str, Any] | None, data: AssetData
) -> tuple[dict[str, Any], list[Finding]]:
    """`evaluate` on a state as a JSON object: what `cloud.detector_state` loads and saves."""
    text = None if state is None else json.dumps(state)
    new_state, findings = evaluate(description, text, data)
    loaded: dict[str, Any] = json.loads(new_state)
    return loaded, findings


def finding(
    device: str,
    detector: str,
    key: str,
    *,
    open_: bool,
    severity: Severity,
    since: datetime,
    at: datetime,
    summary: str,
    evidence: dict[str, EvidenceValue] | None = None,
    confidence: float = 1.0,
    magnitude: float | None = None,
) -> Finding:
    """A `Finding` with rounded evidence numbers and a confidence clamped to [0, 1]."""
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in (evidence or {}).items()}
    return Finding(
        device=device,
        detector=detector,
        key=key,
        state="open" if open_ else "cleared",
        severity=severity,
        since=since,
        evaluated_at=at,
        summary=summary,
        evidence=rounded,
        confidence=round(min(1.0, max(0.0, confidence)), 4),
        magnitude=None if magnitude is None else round(magnitude, 4),
    )
