"""Simulated Modbus devices the edge tests talk to over a pty."""

from __future__ import annotations

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer

from firmware_sim.modbus_tcp import MachineUnits
from firmware_sim.pty_pair import PtyPair


async def serve_units(
    pair: PtyPair, units: MachineUnits, framer: FramerType = FramerType.RTU
) -> ModbusSerialServer:
    """Serve `units` (faults and all) on the pair's device side, in the background."""
    server = ModbusSerialServer(
        units.sim_devices(),
        framer=framer,
        port=pair.device_path,
        baudrate=19200,
        trace_pdu=units.trace_pdu,  # type: ignore[arg-type]
        trace_packet=units.trace_packet(framer),
    )
    await server.serve_forever(background=True)
    return server
