"""Faults a simulated device injects, switched on and off at run time and counted.

A `FaultSwitch` belongs to one device (one Modbus unit). The slave consults it on every request,
each fault at its own layer:

| fault             | layer                               | what a master sees                   |
| ----------------- | ----------------------------------- | ------------------------------------ |
| `timeout`         | request dropped before the datastore | no answer (minimalmodbus: NoResponse) |
| `illegal-address` | Modbus exception 02 from the device | IllegalRequestError                  |
| `crc`             | response frame, CRC inverted        | InvalidResponseError                 |
| `garbage`         | random bytes before the response    | InvalidResponseError                 |
| `stuck`           | values: metric(s) frozen            | the same value while time moves      |
| `out-of-range`    | values: metric at full scale        | e.g. 3276.7 degC                     |
| `clock-skew`      | values: controller clock shifted    | `controller_time` off by N seconds   |

A fault fires on each request with its probability (1.0: always), drawn from a seeded generator.
Clock skew needs a `controller_time` register; serial sensors that print timestamps take their
skew from the same `FaultSetting` (metric None, value = seconds).
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from firmware_sim.register_map import CLOCK_METRIC, RegisterMap


class Fault(enum.StrEnum):
    """A fault a simulated device can inject."""

    TIMEOUT = "timeout"
    ILLEGAL_ADDRESS = "illegal-address"
    CRC = "crc"
    GARBAGE = "garbage"
    STUCK = "stuck"
    OUT_OF_RANGE = "out-of-range"
    CLOCK_SKEW = "clock-skew"


#: Faults that corrupt the bytes of a response frame.
BYTE_FAULTS = (Fault.CRC, Fault.GARBAGE)
#: Faults that change the values a device reports.
VALUE_FAULTS = (Fault.STUCK, Fault.OUT_OF_RANGE, Fault.CLOCK_SKEW)
_NEEDS_METRIC = {Fault.OUT_OF_RANGE}
_TAKES_METRIC = {Fault.STUCK, Fault.OUT_OF_RANGE}
_ALWAYS = {Fault.STUCK, Fault.CLOCK_SKEW}  # a state, not an event: no probability


@dataclass(frozen=True, slots=True)
class FaultSetting:
    """One switched-on fault: which, on which metric, how often, and its value.

    `value` is the reported value for out-of-range (default: the register's full scale), the
    skew in seconds for clock-skew, the number of bytes for garbage (default: 4..12).
    """

    fault: Fault
    metric: str | None = None
    probability: float = 1.0
    value: float | None = None

    def __post_init__(self) -> None:
        """Refuse settings that mean nothing."""
        name = self.fault.value
        if not 0.0 < self.probability <= 1.0:
            raise ValueError(f"{name}: probability must be in (0, 1], got {self.probability}")
        if self.fault in _ALWAYS and self.probability != 1.0:
            raise ValueError(f"{name} is a state, not an event: it takes no probability")
        if self.metric is None and self.fault in _NEEDS_METRIC:
            raise ValueError(f"{name} needs a metric, e.g. {name}:coolant_temp")
        if self.metric is not None and self.fault not in _TAKES_METRIC:
            raise ValueError(f"{name} applies to the whole device, not to metric {self.metric}")
        if self.fault is Fault.CLOCK_SKEW and self.value is None:
            raise ValueError(f"{name} needs the skew in seconds, e.g. {name}:-300")
        if self.fault is Fault.GARBAGE and self.value is not None and not 1 <= self.value <= 256:
            raise ValueError(f"{name}: 1..256 bytes, got {self.value}")


class FaultSwitch:
    """The faults one device injects: switched on (`set`) and off (`clear`) at run time."""

    def __init__(self, register_map: RegisterMap, seed: int | str = 0) -> None:
        """Faults for a device with `register_map`; `seed` fixes probabilities and garbage."""
        self.register_map = register_map
        self._rng = random.Random(f"faults:{seed}")
        self._active: dict[Fault, FaultSetting] = {}
        self._frozen: dict[str, float] | None = None
        self._injected: Counter[Fault] = Counter()

    def set(
        self,
        fault: Fault | str,
        *,
        metric: str | None = None,
        probability: float = 1.0,
        value: float | None = None,
    ) -> FaultSetting:
        """Switch `fault` on (replacing an earlier setting of the same fault)."""
        return self.apply(FaultSetting(Fault(fault), metric, probability, value))

    def apply(self, setting: FaultSetting) -> FaultSetting:
        """Switch on the fault `setting` describes."""
        self._check_fits(setting)
        if setting.fault is Fault.STUCK:
            self._frozen = None  # freeze what the next read holds
        self._active[setting.fault] = setting
        return setting

    def clear(self, fault: Fault | str | None = None) -> None:
        """Switch `fault` off, or every fault when None; the counts stay."""
        if fault is None:
            self._active.clear()
        else:
            self._active.pop(Fault(fault), None)
        if Fault.STUCK not in self._active:
            self._frozen = None

    @property
    def active(self) -> dict[Fault, FaultSetting]:
        """The faults switched on now."""
        return dict(self._active)

    @property
    def injected(self) -> dict[Fault, int]:
        """How many requests each fault has affected since the device started."""
        return dict(self._injected)

    def fires(self, fault: Fault) -> bool:
        """Whether `fault` affects the current request (counted when it does)."""
        setting = self._active.get(fault)
        if setting is None:
            return False
        if setting.probability < 1.0 and self._rng.random() >= setting.probability:
            return False
        self._injected[fault] += 1
        return True

    def distort(self, values: Mapping[str, float]) -> tuple[dict[str, float], tuple[Fault, ...]]:
        """The values a faulty device reports instead of `values`, and the faults applied."""
        out = dict(values)
        applied: list[Fault] = []
        if self.fires(Fault.STUCK):
            metric = self._active[Fault.STUCK].metric
            if self._frozen is None:
                self._frozen = dict(out) if metric is None else {metric: out[metric]}
            out |= self._frozen
            applied.append(Fault.STUCK)
        if self.fires(Fault.OUT_OF_RANGE):
            setting = self._active[Fault.OUT_OF_RANGE]
            metric = str(setting.metric)
            full_scale = self.register_map.field(metric).full_scale
            out[metric] = full_scale if setting.value is None else setting.value
            applied.append(Fault.OUT_OF_RANGE)
        if self.fires(Fault.CLOCK_SKEW):
            out[CLOCK_METRIC] += float(self._active[Fault.CLOCK_SKEW].value or 0.0)
            applied.append(Fault.CLOCK_SKEW)
        return out, tuple(applied)

    def corrupt(self, frame: bytes) -> tuple[bytes, tuple[Fault, ...]]:
        """The bytes a faulty line delivers instead of `frame`, and the faults applied."""
        applied: list[Fault] = []
        if self.fires(Fault.CRC):
            frame = frame[:-2] + bytes(b ^ 0xFF for b in frame[-2:])
            applied.append(Fault.CRC)
        if self.fires(Fault.GARBAGE):
            size = self._active[Fault.GARBAGE].value
            count = int(size) if size is not None else self._rng.randint(4, 12)
            frame = self._rng.randbytes(count) + frame
            applied.append(Fault.GARBAGE)
        return frame, tuple(applied)

    def _check_fits(self, setting: FaultSetting) -> None:
        """Refuse a setting this device's register map cannot express."""
        rmap = self.register_map
        if setting.metric is not None and setting.metric not in rmap.metrics:
            raise ValueError(
                f"{setting.fault}: register map {rmap.name} has no metric {setting.metric!r};"
                f" it has {', '.join(rmap.metrics)}"
            )
        if setting.fault is Fault.CLOCK_SKEW and CLOCK_METRIC not in rmap.metrics:
            raise ValueError(f"clock-skew: register map {rmap.name} has no {CLOCK_METRIC} register")
        if setting.fault is Fault.OUT_OF_RANGE and setting.value is not None:
            rmap.field(str(setting.metric)).encode(setting.value)  # ValueError if it cannot


def parse_fault(spec: str) -> tuple[str, FaultSetting]:
    """`ASSET=FAULT[:ARG][@PROBABILITY]` -> (asset, setting).

    ARG is a metric (stuck, out-of-range: `METRIC[:VALUE]`) or a number (clock-skew seconds,
    garbage bytes). Examples: `asset-003=timeout`, `asset-001=crc@0.2`, `asset-002=stuck`,
    `asset-002=stuck:coolant_temp`, `asset-004=out-of-range:vibration_rms:-1`,
    `asset-001=clock-skew:-300`, `asset-002=garbage:8`.
    """
    asset, sep, rest = spec.partition("=")
    if not sep or not asset or not rest:
        raise ValueError(f"fault {spec!r}: expected ASSET=FAULT, e.g. asset-003=timeout")
    rest, at, probability = rest.partition("@")
    name, _, arg = rest.partition(":")
    try:
        fault = Fault(name)
    except ValueError as err:
        known = ", ".join(f.value for f in Fault)
        raise ValueError(f"fault {spec!r}: unknown fault {name!r}; known: {known}") from err
    try:
        chance = float(probability) if at else 1.0
    except ValueError as err:
        raise ValueError(f"fault {spec!r}: probability {probability!r} is not a number") from err
    if fault in _TAKES_METRIC:
        metric, _, number = arg.partition(":")
        return asset, FaultSetting(fault, metric or None, chance, _number(spec, number))
    return asset, FaultSetting(fault, None, chance, _number(spec, arg))


def _number(spec: str, arg: str) -> float | None:
    """`arg` as a number, None when empty."""
    if not arg:
        return None
    try:
        return float(arg)
    except ValueError as err:
        raise ValueError(f"fault {spec!r}: {arg!r} is not a number") from err
