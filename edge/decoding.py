"""Register decoding: Modbus registers to engineering values, pure and I/O free."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from leasewatch.wire import MetricName, Unit

RegisterKind = Literal["u16", "i16", "u32", "i32", "f32"]
RegisterTable = Literal["holding", "input"]
MAX_REGISTERS_PER_REQUEST = 125  # Modbus limit for function codes 3 and 4

_STRUCT = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f"}


class RegisterField(BaseModel):
    """Where one measure lives in a device's registers and how to turn it into a value."""

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

    @property
    def decimals(self) -> int:
        """Decimal places an integer register scaled by `scale`, shifted by `offset`, carries."""
        exponents = [Decimal(repr(x)).as_tuple().exponent for x in (self.scale, self.offset)]
        return max(0, *(-int(e) for e in exponents))

    @property
    def width(self) -> int:
        """Number of 16-bit registers the field occupies."""
        return 1 if self.kind.endswith("16") else 2


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """One read request covering contiguous registers of one table."""

    table: RegisterTable
    start: int
    count: int
    fields: tuple[RegisterField, ...]


def decode_field(field: RegisterField, registers: Sequence[int]) -> float:
    """Engineering value of a field from its own registers (high word first unless told)."""
    if len(registers) != field.width:
        raise ValueError(f"{field.metric}: needs {field.width} registers, got {len(registers)}")
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
            fits = field.address + field.width - start <= max_count
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
    """Values of every field of a request from the registers it returned."""
    if len(registers) != request.count:
        raise ValueError(f"expected {request.count} registers, got {len(registers)}")
    values: dict[str, float] = {}
    for field in request.fields:
        offset = field.address - request.start
        values[field.metric] = decode_field(field, registers[offset : offset + field.width])
    return values
