"""Declarative Modbus register maps: engineering values <-> 16-bit holding registers.

Pure functions, no I/O. A field's engineering value is `raw * scale`; encoding rounds to the
register's resolution and refuses values the register cannot hold (ValueError names the field).
`MACHINE_MAP` is the generic machine; the asset types' maps follow it (see `asset_types`).
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal


class Kind(enum.StrEnum):
    """How a field's raw value is stored in registers."""

    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    F32 = "f32"


class WordOrder(enum.StrEnum):
    """Order of the two 16-bit words of a 32-bit value."""

    BIG = "big"  # high word first (Modbus convention, mbpoll -B)
    LITTLE = "little"  # low word first


_F32_MAX = 3.4028234663852886e38

#: struct format (big-endian bytes) and register count per kind.
_FORMATS: dict[Kind, tuple[str, int]] = {
    Kind.U16: (">H", 1),
    Kind.I16: (">h", 1),
    Kind.U32: (">I", 2),
    Kind.I32: (">i", 2),
    Kind.F32: (">f", 2),
}


@dataclass(frozen=True, slots=True)
class RegisterField:
    """One metric held in one or two holding registers."""

    metric: str
    address: int  # 0-based protocol (PDU) address of the first register
    kind: Kind
    scale: float = 1.0
    unit: str = ""
    word_order: WordOrder = WordOrder.BIG

    def __post_init__(self) -> None:
        """Reject a field that cannot exist on a Modbus device."""
        if not 0 <= self.address <= 0xFFFF - (self.width - 1):
            raise ValueError(f"{self.metric}: address {self.address} is outside 0..65535")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"{self.metric}: scale must be a positive number")

    @property
    def width(self) -> int:
        """Number of 16-bit registers the field occupies."""
        return _FORMATS[self.kind][1]

    @property
    def decimals(self) -> int:
        """Decimal places of the register resolution (scale 0.01 -> 2)."""
        exponent = Decimal(repr(self.scale)).normalize().as_tuple().exponent
        return max(0, -exponent) if isinstance(exponent, int) else 0

    @property
    def full_scale(self) -> float:
        """Largest engineering value the field can hold (what a shorted sensor reads)."""
        if self.kind is Kind.F32:
            return _F32_MAX * self.scale
        bits = 16 * self.width
        signed = self.kind in {Kind.I16, Kind.I32}
        raw_max = (1 << (bits - 1 if signed else bits)) - 1
        return round(raw_max * self.scale, self.decimals)

    def encode(self, value: float) -> list[int]:
        """Registers holding `value`, rounded to the field's resolution."""
        if not math.isfinite(value):
            raise ValueError(f"{self.metric}: {value!r} is not a finite number")
        fmt, _ = _FORMATS[self.kind]
        raw: float = value / self.scale
        if self.kind is not Kind.F32:
            raw = round(raw)
        try:
            data = struct.pack(fmt, raw)
        except (struct.error, OverflowError) as err:
            raise ValueError(
                f"{self.metric}: {value!r} {self.unit} does not fit a {self.kind} register"
                f" with scale {self.scale}"
            ) from err
        words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        return words if self.word_order is WordOrder.BIG else words[::-1]

    def decode(self, words: Sequence[int]) -> float:
        """Engineering value held in `words` (the field's registers, in address order)."""
        if len(words) != self.width:
            raise ValueError(f"{self.metric}: needs {self.width} registers, got {len(words)}")
        if any(not 0 <= w <= 0xFFFF for w in words):
            raise ValueError(f"{self.metric}: registers must be 0..65535, got {list(words)}")
        ordered = list(words) if self.word_order is WordOrder.BIG else list(words)[::-1]
        data = b"".join(w.to_bytes(2, "big") for w in ordered)
        raw: int | float = struct.unpack(_FORMATS[self.kind][0], data)[0]
        if self.kind is Kind.F32:
            return float(raw) * self.scale
        return round(raw * self.scale, self.decimals)


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A device's holding-register layout: fields over one contiguous address range."""

    name: str
    fields: tuple[RegisterField, ...]
    function_code: int = 3  # read holding registers

    def __post_init__(self) -> None:
        """Reject an empty map, duplicate metrics and overlapping fields."""
        if not self.fields:
            raise ValueError(f"register map {self.name}: no fields")
        metrics = [f.metric for f in self.fields]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"register map {self.name}: duplicate metric names")
        taken: set[int] = set()
        for f in self.fields:
            span = set(range(f.address, f.address + f.width))
            if span & taken:
                raise ValueError(f"register map {self.name}: {f.metric} overlaps another field")
            taken |= span

    @property
    def start(self) -> int:
        """Address of the first register."""
        return min(f.address for f in self.fields)

    @property
    def count(self) -> int:
        """Number of registers from `start` to the end of the last field."""
        return max(f.address + f.width for f in self.fields) - self.start

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names in map order."""
        return tuple(f.metric for f in self.fields)

    def field(self, metric: str) -> RegisterField:
        """The field for `metric`."""
        for f in self.fields:
            if f.metric == metric:
                return f
        raise KeyError(metric)


#: Metric of the controller's real-time clock (unix seconds), where a map has one.
CLOCK_METRIC = "controller_time"

#: The generic simulated machine: holding registers 0..6, read with function code 3.
MACHINE_MAP = RegisterMap(
    name="machine",
    fields=(
        RegisterField("running", 0, Kind.U16),
        RegisterField("motor_current", 1, Kind.U16, scale=0.01, unit="A"),
        RegisterField("temperature", 2, Kind.I16, scale=0.1, unit="degC"),
        RegisterField("vibration_rms", 3, Kind.U16, scale=0.01, unit="mm/s"),
        RegisterField("run_hours", 4, Kind.U32, scale=0.001, unit="h"),
        RegisterField("fault_code", 6, Kind.U16),
    ),
)


_U16, _I16, _U32, _F32 = Kind.U16, Kind.I16, Kind.U32, Kind.F32

#: Truck / tractor unit: a CAN (J1939) to Modbus telematics gateway, registers 0..10.
TRUCK_MAP = RegisterMap(
    name="truck",
    fields=(
        RegisterField("engine_rpm", 0, _U16, scale=0.125, unit="rpm"),  # J1939 SPN 190
        RegisterField("vehicle_speed", 1, _U16, scale=0.01, unit="km/h"),
        RegisterField("coolant_temp", 2, _I16, scale=0.1, unit="degC"),
        RegisterField("fuel_level", 3, _U16, scale=0.1, unit="%"),
        RegisterField("engine_hours", 4, _U32, scale=0.05, unit="h"),  # J1939 SPN 247
        RegisterField("odometer", 6, _U32, scale=0.005, unit="km"),  # J1939 SPN 917
        RegisterField("fault_code", 8, _U16),  # SPN of the active trouble code, 0 = none
        RegisterField(CLOCK_METRIC, 9, _U32, unit="s"),
    ),
)

#: Excavator: the machine controller's Modbus block at 100..108.
EXCAVATOR_MAP = RegisterMap(
    name="excavator",
    fields=(
        RegisterField("running", 100, _U16),
        RegisterField("engine_load", 101, _U16, unit="%"),
        RegisterField("hydraulic_pressure", 102, _U16, scale=0.1, unit="bar"),
        RegisterField("coolant_temp", 103, _I16, scale=0.1, unit="degC"),
        RegisterField("engine_hours", 104, _U32, scale=0.1, unit="h"),
        RegisterField("fault_code", 106, _U16),
        RegisterField(CLOCK_METRIC, 107, _U32, unit="s"),
    ),
)

#: CNC machining centre: the controller's data block at 200..210, vibration as a float.
CNC_MAP = RegisterMap(
    name="cnc",
    fields=(
        RegisterField("program_running", 200, _U16),
        RegisterField("spindle_speed", 201, _U16, unit="rpm"),
        RegisterField("spindle_current", 202, _U16, scale=0.01, unit="A"),
        RegisterField("spindle_temp", 203, _I16, scale=0.1, unit="degC"),
        RegisterField("vibration_rms", 204, _F32, unit="mm/s"),
        RegisterField("run_hours", 206, _U32, scale=0.01, unit="h"),
        RegisterField("fault_code", 208, _U16),
        RegisterField(CLOCK_METRIC, 209, _U32, unit="s"),
    ),
)

_LOW = WordOrder.LITTLE

#: Screw compressor: its controller's block at 1000..1011, 32-bit values low word first.
COMPRESSOR_MAP = RegisterMap(
    name="compressor",
    fields=(
        RegisterField("load_state", 1000, _U16),  # 0 stopped, 1 running unloaded, 2 loaded
        RegisterField("motor_current", 1001, _U16, scale=0.1, unit="A"),
        RegisterField("discharge_pressure", 1002, _U16, scale=0.01, unit="bar"),
        RegisterField("discharge_temp", 1003, _I16, scale=0.1, unit="degC"),
        RegisterField("vibration_rms", 1004, _U16, scale=0.01, unit="mm/s"),
        RegisterField("run_hours", 1005, _U32, scale=0.01, unit="h", word_order=_LOW),
        RegisterField("loaded_hours", 1007, _U32, scale=0.01, unit="h", word_order=_LOW),
        RegisterField("fault_code", 1009, _U16),
        RegisterField(CLOCK_METRIC, 1010, _U32, unit="s", word_order=_LOW),
    ),
)


def encode_registers(
    values: Mapping[str, float], register_map: RegisterMap = MACHINE_MAP
) -> list[int]:
    """Registers `start .. start+count-1` holding `values` (one per metric; gaps are 0)."""
    missing = set(register_map.metrics) - values.keys()
    unknown = values.keys() - set(register_map.metrics)
    if missing or unknown:
        raise ValueError(
            f"register map {register_map.name}: missing metrics {sorted(missing)},"
            f" unknown metrics {sorted(unknown)}"
        )
    registers = [0] * register_map.count
    for f in register_map.fields:
        offset = f.address - register_map.start
        registers[offset : offset + f.width] = f.encode(values[f.metric])
    return registers


def held_values(
    registers: Sequence[int], register_map: RegisterMap = MACHINE_MAP
) -> dict[str, float]:
    """Engineering values held in registers `start .. start+count-1` (what a master must read)."""
    if len(registers) != register_map.count:
        raise ValueError(
            f"register map {register_map.name}: needs {register_map.count} registers,"
            f" got {len(registers)}"
        )
    values: dict[str, float] = {}
    for f in register_map.fields:
        offset = f.address - register_map.start
        values[f.metric] = f.decode(registers[offset : offset + f.width])
    return values
