"""Per-asset-type fault profiles: limits, anomaly features and the wear limit, declared as data.

The numbers follow each type's normal operating envelope (the simulator's types in
`firmware_sim.scenarios.profiles` and the controller alarms of `firmware_sim.asset_types`): a
warning a little past the normal maximum, before the controller's own alarm. In production they
come from the maker's data sheet. Metric names are the gateway's canonical ones (`running`,
`motor_current`, `temperature`, `vibration_rms`, `fault_code`) plus the controller registers of
the Modbus asset types (`coolant_temp`, `spindle_temp`, `discharge_temp`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: Physically possible values; a reading outside is a failed sensor (a register's all-ones value
#: reads 655.35 A or 3276.7 degC), never a machine condition.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "motor_current": (0.0, 600.0),
    "temperature": (-50.0, 300.0),
    "vibration_rms": (0.0, 100.0),
    "coolant_temp": (-50.0, 300.0),
    "spindle_temp": (-50.0, 300.0),
    "discharge_temp": (-50.0, 300.0),
}
_RANGES = tuple(VALID_RANGES.items())


@dataclass(frozen=True, slots=True)
class MetricLimit:
    """A machine limit on one metric: a warning above `high` (or below `low`)."""

    metric: str
    high: float | None = None
    low: float | None = None


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """What normal looks like for one asset type."""

    name: str
    limits: tuple[MetricLimit, ...] = ()
    features: tuple[str, ...] = ("motor_current", "temperature", "vibration_rms")
    watched: tuple[str, ...] = ("motor_current", "temperature", "vibration_rms")  # stuck/missing
    vibration_metric: str | None = "vibration_rms"
    load_metric: str | None = "motor_current"
    wear_ratio_limit: float = 2.0  # vibration at this multiple of its healthy level is worn out
    block_minutes: int = (
        10  # anomaly features are means over blocks of this many minutes (0: per sample)
    )
    anomaly_blocks: int = 2  # consecutive anomalous blocks that open an anomaly finding
    anomaly_clear_blocks: int = 6  # consecutive normal blocks that clear it
    warmup_minutes: int = 90  # running minutes after a start before blocks count (thermal lag)
    residual_floor: tuple[tuple[str, float], ...] = (("temperature", 1.5), ("vibration_rms", 0.1))


def _limits(temperature: float, current: float, vibration: float) -> tuple[MetricLimit, ...]:
    return (
        MetricLimit("temperature", high=temperature),
        MetricLimit("motor_current", high=current),
        MetricLimit("vibration_rms", high=vibration),
    )


FAULT_PROFILES: dict[str, FaultProfile] = {
    p.name: p
    for p in (
        FaultProfile(
            "truck", (*_limits(75.0, 116.0, 5.0), MetricLimit("coolant_temp", high=105.0))
        ),
        FaultProfile(
            "excavator", (*_limits(84.0, 168.0, 9.0), MetricLimit("coolant_temp", high=105.0))
        ),
        FaultProfile(
            "cnc",
            (*_limits(67.0, 26.0, 7.1), MetricLimit("spindle_temp", high=60.0)),
        ),
        FaultProfile(
            "compressor", (*_limits(93.0, 74.0, 7.1), MetricLimit("discharge_temp", high=110.0))
        ),
    )
}
#: Unknown asset types and offline CSV files: no limits, statistics and sensor checks only.
GENERIC = FaultProfile(
    "generic",
    features=(),
    watched=(),
    vibration_metric=None,
    load_metric=None,
    block_minutes=0,
    anomaly_blocks=1,
    anomaly_clear_blocks=1,
    warmup_minutes=0,
)


def fault_profile(asset_type: str) -> FaultProfile:
    """The profile of an asset type; the generic one for types without a profile."""
    return FAULT_PROFILES.get(asset_type, GENERIC)


def in_range(values: Mapping[str, float]) -> tuple[Mapping[str, float], dict[str, float]]:
    """The values within their sensors' ranges, and `out_of_range:<metric>` for the others.

    All in range (nearly always): the values themselves, not copied. NaN is in no range.
    """
    for metric, (low, high) in _RANGES:
        value = values.get(metric)
        if value is not None and not low <= value <= high:
            break
    else:
        total = sum(values.values())
        if total == total:  # noqa: PLR0124 - no NaN (a NaN, or inf - inf, takes the long way)
            return values, {}
    valid: dict[str, float] = {}
    active: dict[str, float] = {}
    for metric, value in values.items():
        low, high = VALID_RANGES.get(metric, (-math.inf, math.inf))
        if low <= value <= high:
            valid[metric] = value
        else:
            active[f"out_of_range:{metric}"] = value
    return valid, active
