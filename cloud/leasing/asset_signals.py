"""Per-asset figures behind a lease's signals: which asset ran, which is silent or alerting.

A lease's signals aggregate its assets (the busiest asset's hours for the cap, the longest
silence, the ledger summed); these figures keep each asset's own part, from the same reads
(`cloud.leasing.signals.read_lease_data`), so a credit analyst sees which machine it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cloud.leasing.signals import HOUR, WINDOW_DAYS, LeaseData


@dataclass(frozen=True, slots=True)
class AssetSignals:
    """One gateway's figures as of the score's time (None: not known)."""

    device: str
    #: Running hours and hours with data over the last `window_days`.
    running_hours: float
    hours_with_data: float
    window_days: int
    #: The end of the newest hour with data (None: none in the lookback).
    last_data_at: datetime | None
    #: Messages received over messages sent (the ledger's recent window).
    data_completeness: float | None
    #: Alerts open at the as-of time, as "detector/key (severity)".
    open_alerts: tuple[str, ...]


def asset_signals(data: LeaseData, as_of: datetime) -> tuple[AssetSignals, ...]:
    """Each of the lease's gateways' own figures, in device order (pure)."""
    found = []
    for device in data.devices:
        usage = data.usage.get(device)
        received, expected = data.ledger.get(device, (0, 0))
        alerts = sorted(
            f"{a.detector}/{a.key} ({a.severity})"
            for a in data.alerts
            if a.device == device and a.open_at(as_of)
        )
        found.append(
            AssetSignals(
                device=device,
                running_hours=round(usage.window_run, 2) if usage else 0.0,
                hours_with_data=round(usage.window_covered, 2) if usage else 0.0,
                window_days=WINDOW_DAYS,
                last_data_at=usage.last_hour + HOUR if usage and usage.last_hour else None,
                data_completeness=received / expected if expected > 0 else None,
                open_alerts=tuple(alerts),
            )
        )
    return tuple(found)
