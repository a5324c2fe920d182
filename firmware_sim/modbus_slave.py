"""Simulated Modbus RTU slaves on a serial port (a pty from `PtyPair` or a real /dev/tty*).

Built on pymodbus's declarative simulator (`SimData`/`SimDevice`) and `ModbusSerialServer`.
Every read runs the device's `action` hook first, which refreshes the registers from
`device.advance(now)`, so a master always reads the current state. What was served is kept in a
bounded log. Each unit has a `FaultSwitch` consulted on every request: timeouts drop the request
(pymodbus `trace_pdu`), illegal-address and value faults act in the `action` hook, CRC and
garbage faults rewrite the response frame (pymodbus `trace_packet`), so they work on a pty and
on a real serial port alike.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.faults import Fault, FaultSwitch
from firmware_sim.machine import Device
from firmware_sim.register_map import MACHINE_MAP, RegisterMap, encode_registers, held_values
from leasewatch.lifecycle import StartStop

_LOGGER = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DEFAULT_LOG_SIZE = 10_000


def utc_now() -> datetime:
    """Current wall-clock time, timezone-aware (UTC)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServedRead:
    """One read request answered: when, by which unit, the values held then, faults applied."""

    at: datetime
    unit_id: int
    address: int
    count: int
    values: Mapping[str, float]
    faults: tuple[Fault, ...] = ()


class ModbusRtuBus(StartStop):
    """Several simulated slaves (one per unit id) sharing one serial line."""

    def __init__(
        self,
        port_path: str,
        machines: Mapping[int, Device],
        *,
        baudrate: int = 19200,
        register_map: RegisterMap = MACHINE_MAP,
        register_maps: Mapping[int, RegisterMap] | None = None,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
        fault_seed: int = 0,
    ) -> None:
        """Describe the bus; `register_maps` overrides `register_map` per unit id."""
        if not machines:
            raise ValueError("a bus needs at least one machine")
        if bad := [u for u in machines if not 1 <= u <= 247]:
            raise ValueError(f"Modbus RTU unit ids are 1..247, got {bad}")
        self.port_path = port_path
        self.machines = dict(machines)
        self.baudrate = baudrate
        self.register_map = register_map
        self.register_maps = {u: (register_maps or {}).get(u, register_map) for u in machines}
        self.unit_faults = {
            u: FaultSwitch(m, seed=f"{fault_seed}:{u}") for u, m in self.register_maps.items()
        }
        self.clock = clock
        self.served: deque[ServedRead] = deque(maxlen=log_size)
        self._server: ModbusSerialServer | None = None
        self._answering: int | None = None  # unit whose read the next frame answers

    def sim_devices(self) -> list[SimDevice]:
        """One pymodbus SimDevice per unit id, registers refreshed by the action hook."""
        return [
            SimDevice(
                id=unit_id,
                simdata=[
                    SimData(
                        address=rmap.start,
                        values=encode_registers(dict.fromkeys(rmap.metrics, 0.0), rmap),
                        datatype=DataType.REGISTERS,
                        readonly=True,
                    )
                ],
                action=functools.partial(self._refresh, unit_id),
            )
            for unit_id, rmap in sorted(self.register_maps.items())
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
            trace_pdu=cast(Callable[[bool, ModbusPDU], ModbusPDU], self._on_pdu),
            trace_packet=self._on_packet,
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

    def _on_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """Stay silent, like a real bus, for unknown unit ids and units with a timeout fault.

        pymodbus would answer unknown units with "device failure"; dropping the request here
        (the trace_pdu hook treats a falsy return as no request) lets the master time out.
        """
        if sending:
            return pdu
        faults = self.unit_faults.get(pdu.dev_id)
        if faults is None or faults.fires(Fault.TIMEOUT):
            return None
        return pdu

    def _on_packet(self, sending: bool, frame: bytes) -> bytes:
        """Corrupt an outgoing response frame per its unit's CRC and garbage faults."""
        answering, self._answering = self._answering, None
        faults = self.unit_faults.get(frame[0]) if sending and frame else None
        if faults is None:
            return frame
        corrupted, applied = faults.corrupt(frame)
        if applied and answering == frame[0] and self.served:
            last = self.served[-1]
            self.served[-1] = replace(last, faults=last.faults + applied)
        return corrupted

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
        """SimDevice action: load the device's current state into the registers before a read.

        Other function codes get "illegal function"; a state the register map cannot hold gets
        "device failure" (exception code 4), as a real controller with a broken sensor might.
        """
        rmap = self.register_maps[unit_id]
        faults = self.unit_faults[unit_id]
        if function_code != rmap.function_code or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        if faults.fires(Fault.ILLEGAL_ADDRESS):
            return ExcCodes.ILLEGAL_ADDRESS
        state = self.machines[unit_id].advance(self.clock())
        values, applied = faults.distort(state.values())
        try:
            registers = encode_registers(values, rmap)
        except ValueError as err:  # the model holds what the registers cannot: a device fault
            _LOGGER.warning("unit %d cannot serve its state: %s", unit_id, err)
            return ExcCodes.DEVICE_FAILURE
        offset = rmap.start - start_address
        current_registers[offset : offset + len(registers)] = registers
        held = held_values(registers, rmap)
        self.served.append(ServedRead(state.at, unit_id, address, count, held, applied))
        self._answering = unit_id
        return None


class ModbusRtuSlave(ModbusRtuBus):
    """One simulated slave on a serial port."""

    def __init__(
        self,
        model: Device,
        port_path: str,
        unit_id: int = 1,
        baudrate: int = 19200,
        *,
        register_map: RegisterMap = MACHINE_MAP,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
        fault_seed: int = 0,
    ) -> None:
        """Serve `model` as unit `unit_id` on `port_path`."""
        super().__init__(
            port_path,
            {unit_id: model},
            baudrate=baudrate,
            register_map=register_map,
            log_size=log_size,
            clock=clock,
            fault_seed=fault_seed,
        )
        self.unit_id = unit_id
        self.model = model

    @property
    def faults(self) -> FaultSwitch:
        """This slave's faults: `slave.faults.set(Fault.TIMEOUT)`, `slave.faults.clear()`."""
        return self.unit_faults[self.unit_id]
