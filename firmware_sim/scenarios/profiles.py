"""How each type of leased asset is normally worked and how its signals behave, in scenarios.

Scenario assets are simulated in closed form (a day plan of running intervals, exact thermal lag
between them) so that 10,000 assets or 365 days cost seconds, not hours. The type names match
`firmware_sim.asset_types`; the values are what the gateway's local features report for every
type (running state, hour meter, motor current, temperature, vibration, fault code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AssetType = Literal["truck", "excavator", "cnc", "compressor"]
ASSET_TYPE_NAMES: tuple[AssetType, ...] = ("truck", "excavator", "cnc", "compressor")


@dataclass(frozen=True, slots=True)
class AssetProfile:
    """Normal use and signal behaviour of one asset type."""

    name: AssetType
    workdays: frozenset[int]  # Monday = 0
    shift_start_h: float  # UTC hour the working day starts
    shift_hours: float
    jitter_h: float  # the start moves by up to +- this much from day to day
    idle_day_probability: float  # a workday on which the asset is not used at all
    max_stops: int  # random stops within a working day: 0..max_stops
    stop_minutes: tuple[float, float]
    current_range: tuple[float, float]  # A while running, one load level per running interval
    idle_current: float  # A
    ambient_c: float
    heat_c_per_a: float  # steady-state rise above ambient per ampere
    thermal_tau_s: float
    vibration_base: float  # mm/s running at no load
    vibration_per_a: float  # mm/s per ampere
    overheat_alarm_c: float  # the controller raises fault code 21 above this
    overload_alarm_a: float  # ... and fault code 11 above this


def _days(*days: int) -> frozenset[int]:
    return frozenset(days)


PROFILES: dict[AssetType, AssetProfile] = {
    "truck": AssetProfile(
        "truck", _days(0, 1, 2, 3, 4, 5), 5.0, 11.0, 1.0, 0.04, 4, (10.0, 45.0),
        (40.0, 110.0), 2.0, 12.0, 0.5, 900.0, 1.2, 0.012, 95.0, 150.0,
    ),
    "excavator": AssetProfile(
        "excavator", _days(0, 1, 2, 3, 4), 7.0, 9.0, 0.75, 0.08, 3, (15.0, 60.0),
        (60.0, 160.0), 3.0, 12.0, 0.4, 1200.0, 2.0, 0.015, 95.0, 210.0,
    ),
    "cnc": AssetProfile(
        "cnc", _days(0, 1, 2, 3, 4), 6.0, 16.0, 0.25, 0.02, 3, (5.0, 30.0),
        (8.5, 24.5), 0.2, 20.0, 1.6, 900.0, 1.8, 0.1, 75.0, 32.0,
    ),
    "compressor": AssetProfile(
        "compressor", _days(0, 1, 2, 3, 4, 5, 6), 2.0, 20.0, 0.5, 0.0, 5, (5.0, 20.0),
        (30.0, 70.0), 0.5, 15.0, 1.0, 1500.0, 1.5, 0.03, 110.0, 95.0,
    ),
}  # fmt: skip
