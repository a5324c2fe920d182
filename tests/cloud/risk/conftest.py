"""Shared fixtures for the risk engine tests: the packaged rules and healthy lease signals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from cloud.risk.model import LeaseSignals
from cloud.risk.rules import ScoringRules, load_rules

AS_OF = datetime(2025, 6, 2, tzinfo=UTC)

HEALTHY = LeaseSignals(
    lease_id="L-1",
    lessee_id="C-1",
    as_of=AS_OF,
    window_days=28,
    assets=1,
    utilization_vs_contract=1.02,
    utilization_vs_baseline=0.98,
    capacity_warnings=0,
    capacity_drop=None,
    faults_warning=0,
    faults_critical=0,
    silent_assets=0,
    tamper_events=0,
    days_silent=0.0,
    geofence_breaches=0,
    hours_cap_overrun=0.0,
    data_completeness=0.99,
    lease_age_days=400.0,
)


def signals(**changes: Any) -> LeaseSignals:
    """Healthy signals with some fields changed."""
    return replace(HEALTHY, **changes)


@pytest.fixture(scope="session")
def rules() -> ScoringRules:
    """The packaged default rules."""
    return load_rules()
