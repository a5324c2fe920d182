"""The fault detector's state: what it remembers about one asset between evaluations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cloud.detectors.anomaly import ScorerState
from cloud.detectors.conditions import ConditionBook
from cloud.detectors.state_json import adopt, build, loads
from cloud.detectors.wear import HealthyLines, WearState


@dataclass(kw_only=True)
class FaultState:
    """Everything the fault detector remembers about one asset."""

    version: Literal[1] = 1
    device: str
    profile: str
    columns: list[str] = field(default_factory=list)  # generic profile: features and watched
    watermark: datetime | None = None
    book: ConditionBook = field(default_factory=ConditionBook)
    last: dict[str, float] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    moving: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    block_id: int | None = None
    block_sums: list[float] = field(default_factory=list)
    block_used: int = 0
    block_total: int = 0
    running_minutes: float = 0.0
    streak: int = 0  # running minutes in a row
    last_score: float = 0.0
    scorer: ScorerState = field(default_factory=ScorerState)
    lines: HealthyLines = field(default_factory=HealthyLines)
    wear: WearState = field(default_factory=WearState)

    @classmethod
    def from_json(cls, text: str) -> FaultState:
        """A state from its JSON text (`state_json`: the shape the pydantic model wrote)."""
        return build(cls, loads(text), times=("watermark",), nested=_NESTED)


def _scorer_state(doc: dict[str, Any]) -> ScorerState:
    return adopt(ScorerState, doc)


_NESTED = {
    "book": ConditionBook.from_doc,
    "scorer": _scorer_state,
    "lines": HealthyLines.from_doc,
    "wear": WearState.from_doc,
}
