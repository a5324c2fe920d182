"""Conditions with persistence: open after N consecutive observations, clear after M without.

Rule-like checks (a limit, a stuck sensor, a fault code) observe a condition once per sample;
a `ConditionBook` turns those observations into open and cleared events with hysteresis, and
keeps everything in JSON-able dataclasses so it lives in the detector's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloud.detectors.state_json import adopt


@dataclass(frozen=True, slots=True)
class Persistence:
    """How many consecutive observations open a condition, and how many clear it."""

    open_after: int = 1
    clear_after: int = 1


@dataclass
class ConditionState:
    """One condition's counters."""

    active_run: int = 0
    quiet_run: int = 0
    open: bool = False
    first: datetime | None = None  # first observation of the current active run
    worst: float | None = None


@dataclass
class ConditionBook:
    """The conditions of one detector, by key."""

    items: dict[str, ConditionState] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ConditionBook:
        """A book from its JSON object."""
        items = doc.get("items", {})
        for doc_item in items.values():
            first = doc_item.get("first")
            if first is not None:
                doc_item["first"] = datetime.fromisoformat(first)
        return cls({k: adopt(ConditionState, v) for k, v in items.items()})

    def observe(
        self, key: str, active: bool, at: datetime, persistence: Persistence, value: float = 0.0
    ) -> str | None:
        """Record one observation; "open" or "cleared" when the condition changes state."""
        item = self.items.get(key)
        if item is None:
            if not active:
                return None
            item = self.items[key] = ConditionState()
        if active:
            if item.active_run == 0 and not item.open:
                item.first, item.worst = at, value
            item.active_run += 1
            item.quiet_run = 0
            item.worst = value if item.worst is None else max(item.worst, value)
            if not item.open and item.active_run >= persistence.open_after:
                item.open = True
                return "open"
            return None
        item.active_run = 0
        item.quiet_run += 1
        if item.open and item.quiet_run >= persistence.clear_after:
            del self.items[key]
            return "cleared"
        if not item.open:
            del self.items[key]
        return None

    def open_keys(self) -> list[str]:
        """Keys of the open conditions."""
        return [k for k, v in self.items.items() if v.open]
