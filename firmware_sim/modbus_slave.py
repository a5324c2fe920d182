"""Simulated Modbus RTU slaves on a serial port (a pty from `PtyPair` or a real /dev/tty*).

Built on pymodbus's declarative simulator (`SimData`/`SimDevice`) and `ModbusSerialServer`.
Every read runs the device's `action` hook first, which refreshes the registers from
`machine.advance(now)`, so a master always reads the current state. What was served is kept in a
bounded log.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.machine import Machine
from firmware_sim.register_map import MACHINE_MAP, RegisterMap, encode_registers, held_values

_LOGGER = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DEFAULT_LOG_SIZE = 10_000


def utc_now() -> datetime:
    """Current wall-clock time, timezone-aware (UTC)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServedRead:
    """One read request answered: when, by which unit, and the engineering values held then."""

    at: datetime
    unit_id: int
    address: int
    count: int
    values: Mapping[str, float]


class ModbusRtuBus:
    """Several simulated slaves (one per unit id) sharing one serial line."""

    def __init__(
        self,
        port_path: str,
        machines: Mapping[int, Machine],
        *,
        baudrate: int = 19200,
        register_map: RegisterMap = MACHINE_MAP,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Describe the bus; nothing opens before `start()`."""
        if not machines:
            raise ValueError("a bus needs at least one machine")
        if bad := [u for u in machines if not 1 <= u <= 247]:
            raise ValueError(f"Modbus RTU unit ids are 1..247, got {bad}")
        self.port_path = port_path
        self.machines = dict(machines)
        self.baudrate = baudrate
        self.register_map = register_map
        self.clock = clock
        self.served: deque[ServedRead] = deque(maxlen=log_size)
        self._server: ModbusSerialServer | None = None

    def sim_devices(self) -> list[SimDevice]:
        """One pymodbus SimDevice per unit id, registers refreshed by the action hook."""
        rmap = self.register_map
        initial = encode_registers(dict.fromkeys(rmap.metrics, 0.0), rmap)
        return [
            SimDevice(
                id=unit_id,
                simdata=[
                    SimData(
                        address=rmap.start,
                        values=initial,
                        datatype=DataType.REGISTERS,
                        readonly=True,
                    )
                ],
                action=functools.partial(self._refresh, unit_id),
            )
            for unit_id in sorted(self.machines)
        ]

    async def start(self) -> None:
        """Open the serial port and serve requests in the background."""
        if self._server is not None:
            raise RuntimeError("bus is already serving")
        server = ModbusSerialServer(
            self.sim_devices(),
            framer=FramerType.RTU,
            port=self.port_path,
            baudrate=self.baudrate,
            trace_pdu=cast(Callable[[bool, ModbusPDU], ModbusPDU], self._only_our_units),
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"cannot open serial port {self.port_path}") from err
        self._server = server

    async def stop(self) -> None:
        """Close the serial port; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        """Start serving."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        await self.stop()

    def _only_our_units(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """Stay silent, like a real bus, for requests to unit ids nobody here answers.

        pymodbus would answer them with "device failure"; dropping the request here (the
        trace_pdu hook treats a falsy return as no request) lets the master time out instead.
        """
        if sending or pdu.dev_id in self.machines:
            return pdu
        return None

    async def _refresh(  # noqa: PLR0917 (pymodbus SimAction signature)
        self,
        unit_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """SimDevice action: load the machine's current state into the registers before a read.

        Other function codes get "illegal function"; a state the register map cannot hold gets
        "device failure" (exception code 4), as a real controller with a broken sensor might.
        """
        if function_code != self.register_map.function_code or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        state = self.machines[unit_id].advance(self.clock())
        try:
            registers = encode_registers(state.values(), self.register_map)
        except ValueError as err:  # the model holds what the registers cannot: a device fault
            _LOGGER.warning("unit %d cannot serve its state: %s", unit_id, err)
            return ExcCodes.DEVICE_FAILURE
        offset = self.register_map.start - start_address
        current_registers[offset : offset + len(registers)] = registers
        self.served.append(
            ServedRead(state.at, unit_id, address, count, held_values(registers, self.register_map))
        )
        return None


class ModbusRtuSlave(ModbusRtuBus):
    """One simulated slave on a serial port."""

    def __init__(
        self,
        model: Machine,
        port_path: str,
        unit_id: int = 1,
        baudrate: int = 19200,
        *,
        register_map: RegisterMap = MACHINE_MAP,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Serve `model` as unit `unit_id` on `port_path`."""
        super().__init__(
            port_path,
            {unit_id: model},
            baudrate=baudrate,
            register_map=register_map,
            log_size=log_size,
            clock=clock,
        )
        self.unit_id = unit_id
        self.model = model
