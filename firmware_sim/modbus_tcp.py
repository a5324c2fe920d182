"""Simulated Modbus TCP slaves: a PLC or a TCP-to-RTU gateway serving machines by unit id.

Mirrors `firmware_sim.modbus_slave.ModbusRtuBus`: pymodbus's declarative simulator
(`SimData`/`SimDevice`) with an action hook that loads each machine's state before a read, and a
bounded log of what was served. `MachineUnits` holds the units and is framer-agnostic, so a test
can serve the same units on a serial port (RTU or ASCII) through `ModbusSerialServer`. Each unit
serves the register map as holding registers (fc 3) and as input registers (fc 4), and bits as
coils (fc 1) and discrete inputs (fc 2): 0 running, 1 fault (fault code not 0). Coil 8 is a
writable output (the immobilizer relay), kept per unit in `outputs`.

Fault switches, per unit id, changeable while serving: `silent` (requests get no answer, like a
dead slave), `garbled` (the response frame is corrupted: bad CRC/LRC on serial, a wrong
transaction id on TCP) and `failing` (exception 4, device failure).
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.machine import Device
from firmware_sim.modbus_slave import DEFAULT_LOG_SIZE, Clock, ServedRead, utc_now
from firmware_sim.register_map import MACHINE_MAP, RegisterMap, encode_registers, held_values
from leasewatch.lifecycle import StartStop

_LOGGER = logging.getLogger(__name__)

RUNNING_BIT = 0
FAULT_BIT = 1
OUTPUT_COIL = 8
_BIT_CODES = {1, 2}
_REGISTER_CODES = {3, 4}
_COIL_WRITES = {5, 15}

TracePdu = Callable[[bool, ModbusPDU], ModbusPDU]
TracePacket = Callable[[bool, bytes], bytes]


_RUNNING_METRICS = ("running", "program_running", "load_state", "engine_rpm")


def _running(values: Mapping[str, float]) -> bool:
    """Whether the asset runs, from whichever measure its register map has for it."""
    return any(values.get(metric, 0.0) != 0 for metric in _RUNNING_METRICS)


class MachineUnits:
    """Machines served by unit id, with fault switches; the part every framer shares."""

    def __init__(
        self,
        machines: Mapping[int, Device],
        *,
        register_map: RegisterMap = MACHINE_MAP,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Describe the units; they serve once a server uses `sim_devices()` and the traces."""
        if not machines:
            raise ValueError("at least one machine is needed")
        if bad := [u for u in machines if not 0 <= u <= 255]:
            raise ValueError(f"unit ids are 0..255, got {bad}")
        self.machines = dict(machines)
        self.register_map = register_map
        self.clock = clock
        self.served: deque[ServedRead] = deque(maxlen=log_size)
        self.silent: set[int] = set()
        self.garbled: set[int] = set()
        self.failing: set[int] = set()
        self.outputs: dict[int, bool] = dict.fromkeys(self.machines, False)
        self._responding_unit: int | None = None

    def sim_devices(self) -> list[SimDevice]:
        """One pymodbus SimDevice per unit: coils, discrete inputs, holding and input registers."""
        rmap = self.register_map
        initial = encode_registers(dict.fromkeys(rmap.metrics, 0.0), rmap)
        return [
            SimDevice(
                id=unit_id,
                simdata=(
                    [
                        SimData(address=0, values=[False] * 8, datatype=DataType.BITS),
                        SimData(address=OUTPUT_COIL, values=[False] * 8, datatype=DataType.BITS),
                    ],
                    [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)],
                    [SimData(address=rmap.start, values=initial, datatype=DataType.REGISTERS)],
                    [SimData(address=rmap.start, values=initial, datatype=DataType.REGISTERS)],
                ),
                action=functools.partial(self._serve, unit_id),
            )
            for unit_id in sorted(self.machines)
        ]

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """Drop requests for silent or unknown units (the master times out); note who answers."""
        if sending:
            self._responding_unit = pdu.dev_id
            return pdu
        if pdu.dev_id in self.silent or pdu.dev_id not in self.machines:
            return None
        return pdu

    def trace_packet(self, framer: FramerType) -> TracePacket:
        """A packet hook that corrupts the responses of garbled units, as `framer` frames them."""

        def trace(sending: bool, packet: bytes) -> bytes:
            """Corrupt an outgoing packet of a garbled unit; pass everything else."""
            if not sending or self._responding_unit not in self.garbled:
                return packet
            return _garble(framer, packet)

        return trace

    async def _serve(  # noqa: PLR0917 (pymodbus SimAction signature)
        self,
        unit_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """SimDevice action: refresh registers or bits from the machine's state before a read."""
        if unit_id in self.failing:
            return ExcCodes.DEVICE_FAILURE
        if function_code in _COIL_WRITES:  # the write, then pymodbus reads the coil back
            return None if set_values is None else self._write_output(unit_id, address, set_values)
        if set_values is not None or function_code not in _BIT_CODES | _REGISTER_CODES:
            return ExcCodes.ILLEGAL_FUNCTION
        state = self.machines[unit_id].advance(self.clock())
        values = state.values()
        if function_code in _BIT_CODES:  # both bit blocks hold bits 0..15 in register 0
            running = _running(values)
            fault = values.get("fault_code", 0.0) != 0
            word = current_registers[0] & ~(1 << RUNNING_BIT | 1 << FAULT_BIT)
            current_registers[0] = word | running << RUNNING_BIT | fault << FAULT_BIT
            return None
        try:
            registers = encode_registers(values, self.register_map)
        except ValueError as err:  # the model holds what the registers cannot: a device fault
            _LOGGER.warning("unit %d cannot serve its state: %s", unit_id, err)
            return ExcCodes.DEVICE_FAILURE
        offset = self.register_map.start - start_address
        current_registers[offset : offset + len(registers)] = registers
        held = held_values(registers, self.register_map)
        self.served.append(ServedRead(state.at, unit_id, address, count, held))
        return None

    def _write_output(
        self, unit_id: int, address: int, set_values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Accept a write of the output coil only."""
        if address != OUTPUT_COIL or len(set_values) != 1:
            return ExcCodes.ILLEGAL_ADDRESS
        self.outputs[unit_id] = bool(set_values[0])
        return None


def _garble(framer: FramerType, packet: bytes) -> bytes:
    """The packet with its check broken: CRC (RTU), LRC (ASCII) or transaction id (TCP)."""
    if framer is FramerType.ASCII:
        lrc = int(packet[-4:-2], 16) ^ 0xFF
        return packet[:-4] + f"{lrc:02X}".encode() + packet[-2:]
    if framer is FramerType.RTU:
        return packet[:-1] + bytes([packet[-1] ^ 0xFF])
    return bytes([packet[0] ^ 0xFF]) + packet[1:]


class ModbusTcpSlave(MachineUnits, StartStop):
    """Machines served over Modbus TCP on a loopback (or given) address; an async context."""

    def __init__(
        self,
        machines: Mapping[int, Device],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        register_map: RegisterMap = MACHINE_MAP,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Serve `machines` by unit id on `host:port` (port 0: any free port, see `port`)."""
        super().__init__(machines, register_map=register_map, log_size=log_size, clock=clock)
        self.host = host
        self._requested_port = port
        self._server: ModbusTcpServer | None = None

    @property
    def port(self) -> int:
        """The port being served."""
        if self._server is None:
            raise RuntimeError("the slave is not serving; use `async with ModbusTcpSlave(...)`")
        sockets = self._server.transport.sockets  # type: ignore[attr-defined]
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen and serve requests in the background."""
        if self._server is not None:
            raise RuntimeError("slave is already serving")
        server = ModbusTcpServer(
            self.sim_devices(),
            address=(self.host, self._requested_port),
            trace_pdu=cast(TracePdu, self.trace_pdu),
            trace_packet=self.trace_packet(FramerType.SOCKET),
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"cannot listen on {self.host}:{self._requested_port}") from err
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop the connections; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
