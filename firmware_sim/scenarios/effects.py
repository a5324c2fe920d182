"""What machine faults do to an asset's signals, declared as one function per fault.

A fault is active over its incident's window. Bearing wear makes vibration trend up (quadratic in
time) and spike at the end with fault code 31; overheating raises the temperature the machine
settles at; motor overload multiplies the motor current; a sensor failure makes one metric
missing, stuck at its value when it failed, or out of range (the register's all-ones value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from firmware_sim.scenarios.expand import Incident

BEARING_SPIKE_CODE = 31
OVERHEAT_CODE = 21
OVERLOAD_CODE = 11
#: What a failed sensor's register reads as: the all-ones raw value times the scale.
OUT_OF_RANGE = {"motor_current": 655.35, "temperature": 3276.7, "vibration_rms": 655.35}


@dataclass(frozen=True, slots=True)
class SignalShift:
    """How the active faults change the signals at one instant."""

    current_factor: float = 1.0
    heat_offset_c: float = 0.0
    vibration_factor: float = 1.0
    fault_code: int = 0


NO_SHIFT = SignalShift()


def _progress(incident: Incident, t: float, span: float) -> float:
    """How far into `span` seconds from the incident start `t` is, clamped to 0..1."""
    return min(1.0, max(0.0, (t - incident.start) / max(span, 1.0)))


def bearing_wear(incident: Incident, t: float) -> SignalShift:
    """Vibration rises to `magnitude` x over the window, then spikes to twice that."""
    magnitude = incident.magnitude or 1.0
    spike_at = incident.end - incident.spike_s
    if t >= spike_at:
        return SignalShift(vibration_factor=2.0 * magnitude, fault_code=BEARING_SPIKE_CODE)
    progress = _progress(incident, t, spike_at - incident.start)
    return SignalShift(vibration_factor=1.0 + (magnitude - 1.0) * progress**2)


def overheating(incident: Incident, t: float) -> SignalShift:
    """The running temperature rises by up to `magnitude` degC over the first half."""
    progress = _progress(incident, t, (incident.end - incident.start) / 2)
    return SignalShift(heat_offset_c=(incident.magnitude or 0.0) * progress)


def motor_overload(incident: Incident, t: float) -> SignalShift:
    """The motor draws `magnitude` x its normal current while it runs."""
    return SignalShift(current_factor=incident.magnitude or 1.0)


FAULT_SHIFTS: dict[str, Callable[[Incident, float], SignalShift]] = {
    "bearing_wear": bearing_wear,
    "overheating": overheating,
    "motor_overload": motor_overload,
}


def shift_at(faults: Iterable[Incident], t: float) -> SignalShift:
    """The combined shift of the faults active at `t`."""
    current, heat, vibration, code = 1.0, 0.0, 1.0, 0
    for incident in faults:
        if not incident.start <= t < incident.end:
            continue
        shift = FAULT_SHIFTS[incident.kind](incident, t)
        current *= shift.current_factor
        heat += shift.heat_offset_c
        vibration *= shift.vibration_factor
        code = max(code, shift.fault_code)
    if (current, heat, vibration, code) == (1.0, 0.0, 1.0, 0):
        return NO_SHIFT
    return SignalShift(current, heat, vibration, code)


def failed_value(incident: Incident, value: float | None, stuck: float) -> float | None:
    """A failed sensor's reading: missing (None), stuck, or the out-of-range value."""
    match incident.mode:
        case "missing":
            return None
        case "stuck":
            return stuck
        case "out_of_range":
            return OUT_OF_RANGE.get(incident.metric, 655.35)
    return value
