"""Register decoding: Modbus registers and bits to engineering values, pure and I/O free."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from leasewatch.wire import MetricName, Unit

RegisterKind = Literal["u16", "i16", "u32", "i32", "f32", "bit"]
RegisterTable = Literal["holding", "input", "coil", "discrete"]
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
MAX_REGISTERS_PER_REQUEST = 125  # Modbus limit for function codes 3 and 4
MAX_BITS_PER_REQUEST = 2000  # Modbus limit for function codes 1 and 2
FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}

_STRUCT = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f"}


class RegisterField(BaseModel):
    """Where one measure lives in a device's registers (or bits) and how to make it a value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: MetricName
    address: Annotated[int, Field(ge=0, le=65535)]
    kind: RegisterKind = "u16"
    table: RegisterTable = "holding"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: Unit = ""

    @model_validator(mode="before")
    @classmethod
    def _bits_default_to_bit_kind(cls, data: Any) -> Any:
        """A coil or discrete-input field is a bit unless the config says otherwise."""
        if isinstance(data, dict) and data.get("table") in BIT_TABLES and "kind" not in data:
            return {**data, "kind": "bit"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RegisterField:
        """Reject fields no device can hold: bits in registers, values past the address space."""
        if (self.table in BIT_TABLES) != (self.kind == "bit"):
            raise ValueError(
                f'{self.metric}: kind "bit" goes with tables coil and discrete, and only with them'
                f" (table {self.table!r}, kind {self.kind!r})"
            )
        if self.address + self.width - 1 > 65535:
            raise ValueError(f"{self.metric}: a {self.kind} at {self.address} ends past 65535")
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ValueError(f"{self.metric}: scale must be finite and non-zero, offset finite")
        return self

    @property
    def decimals(self) -> int:
        """Decimal places an integer register scaled by `scale`, shifted by `offset`, carries."""
        exponents = [Decimal(repr(x)).as_tuple().exponent for x in (self.scale, self.offset)]
        return max(0, *(-int(e) for e in exponents))

    @property
    def width(self) -> int:
        """Number of 16-bit registers (or bits) the field occupies."""
        return 2 if self.kind in {"u32", "i32", "f32"} else 1


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """One read request covering contiguous registers (or bits) of one table."""

    table: RegisterTable
    start: int
    count: int
    fields: tuple[RegisterField, ...]

    @property
    def function_code(self) -> int:
        """Modbus function code that reads this request's table."""
        return FUNCTION_CODES[self.table]


def decode_field(field: RegisterField, registers: Sequence[int]) -> float:
    """Engineering value of a field from its own registers (high word first unless told)."""
    if len(registers) != field.width:
        raise ValueError(f"{field.metric}: needs {field.width} registers, got {len(registers)}")
    if field.kind == "bit":
        return round((1.0 if registers[0] else 0.0) * field.scale + field.offset, field.decimals)
    words = list(registers) if field.word_order == "big" else list(reversed(registers))
    raw_bytes = b"".join(word.to_bytes(2, "big") for word in words)
    if field.byte_order == "little":
        raw_bytes = b"".join(raw_bytes[i : i + 2][::-1] for i in range(0, len(raw_bytes), 2))
    (raw,) = struct.unpack(_STRUCT[field.kind], raw_bytes)
    value = float(raw) * field.scale + field.offset
    if field.kind == "f32":
        return value
    # Integers scaled by 0.01 are exact to 2 decimals: drop the binary noise (12.340000000000002).
    return round(value, field.decimals)


def plan_requests(
    fields: Iterable[RegisterField], max_gap: int = 8, max_count: int = MAX_REGISTERS_PER_REQUEST
) -> list[RegisterRequest]:
    """Group fields into as few contiguous read requests as the gap and size limits allow."""
    requests: list[RegisterRequest] = []
    ordered = sorted(fields, key=lambda f: (f.table, f.address))
    current: list[RegisterField] = []
    for field in ordered:
        if current:
            start = current[0].address
            end = max(f.address + f.width for f in current)
            same_table = field.table == current[0].table
            limit = MAX_BITS_PER_REQUEST if field.table in BIT_TABLES else max_count
            fits = field.address + field.width - start <= limit
            if same_table and fits and field.address - end <= max_gap:
                current.append(field)
                continue
            requests.append(_request(current))
        current = [field]
    if current:
        requests.append(_request(current))
    return requests


def _request(fields: list[RegisterField]) -> RegisterRequest:
    start = fields[0].address
    end = max(f.address + f.width for f in fields)
    return RegisterRequest(fields[0].table, start, end - start, tuple(fields))


def decode_request(request: RegisterRequest, registers: Sequence[int]) -> dict[str, float]:
    """Values of every field of a request from the registers (or bits) it returned."""
    if len(registers) != request.count:
        raise ValueError(f"expected {request.count} registers, got {len(registers)}")
    values: dict[str, float] = {}
    for field in request.fields:
        offset = field.address - request.start
        values[field.metric] = decode_field(field, registers[offset : offset + field.width])
    return values
