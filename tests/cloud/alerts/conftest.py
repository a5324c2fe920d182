"""Fixtures of the alert tests: a migrated state store on SQLite and PostgreSQL, and findings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cloud.alerts.signals import Finding, Severity
from cloud.state import StateStore

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
RECEIVER = "webhook-test"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The engine of a migrated state store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    state = StateStore(url)
    yield state.engine
    state.close()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite state store only (delivery tests that do not depend on the backend)."""
    state = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield state.engine
    state.close()


def finding(
    minutes: float = 0,
    *,
    state: str = "open",
    device: str = "gw-0001",
    detector: str = "utilization",
    key: str = "running_hours",
    severity: Severity = Severity.WARNING,
    **extra: Any,
) -> Finding:
    """A finding evaluated `minutes` after T0 (the condition holds since T0 - 3 days)."""
    values: dict[str, Any] = {
        "summary": "Running hours fell 32% below the asset's own baseline for 7 days.",
        "evidence": {"baseline_h_per_day": 7.5, "observed_h_per_day": 5.1, "window_days": 7},
        "confidence": 0.9,
        "magnitude": -0.32,
        **extra,
    }
    return Finding(
        device=device,
        detector=detector,
        key=key,
        state=state,  # type: ignore[arg-type]
        severity=severity,
        since=T0 - timedelta(days=3),
        evaluated_at=T0 + timedelta(minutes=minutes),
        **values,
    )
