"""Sensor drivers of the edge agent; one driver per module, registered explicitly in DRIVERS.

Each config section kind (a `[[modbus_rtu]]` bus, a `[[modbus_tcp]]` endpoint, a `[[wristband]]`,
a `[[nmea_gps]]`) opens one `DriverGroup`: the transport it owns plus the drivers reading
through it. A group's drivers are either polled (`await read()` on a schedule) or streaming
(`await run(emit, stop)` for the agent's whole life). Constructing a group does no I/O: ports and
connections open on first use and reopen after failures.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from edge.drivers.modbus_rtu import ModbusBus, ModbusRtuBusConfig
from edge.drivers.modbus_tcp import ModbusTcpConfig, ModbusTcpEndpoint
from edge.drivers.nmea_gps import NmeaGpsConfig, NmeaGpsDriver
from edge.drivers.serial_lines import Emit
from edge.drivers.wristband import WristbandConfig, WristbandDriver
from leasewatch.wire import Reading

__all__ = [
    "DRIVERS",
    "DriverGroup",
    "DriverKind",
    "Emit",
    "PolledDriver",
    "StreamingDriver",
    "open_drivers",
]


class PolledDriver(Protocol):
    """A sensor read on a schedule: the agent awaits `read()` every `poll_interval` seconds."""

    @property
    def sensor(self) -> str:
        """Sensor name of the readings."""
        ...

    @property
    def poll_interval(self) -> float:
        """Seconds between polls."""
        ...

    @property
    def errors(self) -> Counter[str]:
        """Errors so far, by kind."""
        ...

    async def read(self) -> list[Reading]:
        """Readings of one poll; empty when the sensor did not answer (never zeros)."""
        ...


class StreamingDriver(Protocol):
    """A sensor that talks when it likes: `run()` emits readings as they arrive, until stopped."""

    @property
    def sensor(self) -> str:
        """Sensor name of the readings."""
        ...

    @property
    def errors(self) -> Counter[str]:
        """Errors so far, by kind."""
        ...

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        """Emit readings until `stop` is set; never raises for sensor or port trouble."""
        ...


class DriverGroup(Protocol):
    """What one config section opens: its drivers and the transport they share."""

    @property
    def polled(self) -> Sequence[PolledDriver]:
        """Drivers the agent polls."""
        ...

    @property
    def streaming(self) -> Sequence[StreamingDriver]:
        """Drivers the agent runs as tasks."""
        ...

    def close(self) -> None:
        """Release ports, threads and connections (after every task of the group ended)."""
        ...


SectionT = TypeVar("SectionT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DriverKind(Generic[SectionT]):
    """A config section kind: the pydantic model of one section and the group it opens."""

    config: type[SectionT]
    open: Callable[[SectionT], DriverGroup]
    summary: str


DRIVERS: Mapping[str, DriverKind[Any]] = MappingProxyType(
    {
        "modbus_rtu": DriverKind(
            ModbusRtuBusConfig, ModbusBus, "Modbus RTU/ASCII slaves on a serial bus"
        ),
        "modbus_tcp": DriverKind(
            ModbusTcpConfig, ModbusTcpEndpoint, "Modbus TCP units behind one endpoint"
        ),
        "wristband": DriverKind(WristbandConfig, WristbandDriver, "vibration wristband lines"),
        "nmea_gps": DriverKind(NmeaGpsConfig, NmeaGpsDriver, "NMEA 0183 GPS (RMC, GGA)"),
    }
)


def open_drivers(config: BaseModel) -> list[DriverGroup]:
    """One group per driver section of an edge configuration, in DRIVERS order (no I/O yet)."""
    groups: list[DriverGroup] = []
    for kind, entry in DRIVERS.items():
        sections: Sequence[BaseModel] = getattr(config, kind, ())
        for section in sections:
            if not isinstance(section, entry.config):
                raise TypeError(f"{kind} section is a {type(section).__name__}")
            group: DriverGroup = entry.open(section)
            groups.append(group)
    return groups
