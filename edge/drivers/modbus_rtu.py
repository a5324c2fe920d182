"""Modbus RTU over a serial bus, read with minimalmodbus and pyserial.

Each bus gets its own worker thread: requests on one bus are serialised (RS-485 is half
duplex) while other buses carry on. A slave that does not answer yields no reading and a
counted error, never a zero.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import cast

import minimalmodbus
import serial
import structlog

from edge.config import ModbusRtuBusConfig, ModbusSlaveConfig
from edge.decoding import RegisterRequest, decode_request, plan_requests
from leasewatch.wire import Reading

log = structlog.get_logger(__name__)

_FUNCTION_CODES = {"holding": 3, "input": 4}


class ModbusBus:
    """One serial port shared by the slaves on it, with a dedicated I/O thread."""

    def __init__(self, config: ModbusRtuBusConfig) -> None:
        self.config = config
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"modbus:{config.port}"
        )
        self._instruments: dict[int, minimalmodbus.Instrument] = {}
        self._port: serial.Serial | None = None

    def _open_port(self) -> serial.Serial:
        if self._port is None or not self._port.is_open:
            self._port = serial.Serial(
                port=self.config.port,
                baudrate=self.config.baudrate,
                parity=self.config.parity,
                bytesize=self.config.bytesize,
                stopbits=self.config.stopbits,
                timeout=0.3,
                write_timeout=2.0,
            )
            self._instruments.clear()
        return self._port

    def instrument(self, slave: ModbusSlaveConfig) -> minimalmodbus.Instrument:
        """The minimalmodbus instrument for a slave, opening the port on first use."""
        port = self._open_port()
        if slave.unit_id not in self._instruments:
            instrument = minimalmodbus.Instrument(port, slave.unit_id, mode=minimalmodbus.MODE_RTU)
            instrument.clear_buffers_before_each_transaction = True
            self._instruments[slave.unit_id] = instrument
        port.timeout = slave.timeout
        return self._instruments[slave.unit_id]

    async def run(self, call: object) -> object:
        """Run a blocking call on this bus's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the serial port and stop the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._port is not None:
            self._port.close()
        self._instruments.clear()


class ModbusSlaveDriver:
    """Polled driver for one slave: `read()` returns the readings of one poll."""

    def __init__(self, bus: ModbusBus, slave: ModbusSlaveConfig) -> None:
        self.bus = bus
        self.slave = slave
        self.requests = plan_requests(slave.fields)
        self.errors: Counter[str] = Counter()

    @property
    def sensor(self) -> str:
        """Sensor name of every reading this driver produces."""
        return self.slave.sensor

    def _read_blocking(self, request: RegisterRequest) -> list[int]:
        instrument = self.bus.instrument(self.slave)
        registers: list[int] = instrument.read_registers(
            request.start, request.count, functioncode=_FUNCTION_CODES[request.table]
        )
        return registers

    async def _read_request(self, request: RegisterRequest) -> list[int] | None:
        budget = self.slave.timeout * 2 + 1.0
        try:
            result = await asyncio.wait_for(
                self.bus.run(lambda: self._read_blocking(request)), timeout=budget
            )
        except (minimalmodbus.ModbusException, serial.SerialException, TimeoutError) as err:
            kind = type(err).__name__
            self.errors[kind] += 1
            log.warning(
                "modbus read failed",
                sensor=self.sensor,
                unit_id=self.slave.unit_id,
                start=request.start,
                error=kind,
                detail=str(err),
            )
            return None
        return cast("list[int]", result)

    async def read(self) -> list[Reading]:
        """Poll every register group once; a failed group yields no readings."""
        readings: list[Reading] = []
        for request in self.requests:
            taken_at = datetime.now(UTC)
            registers = await self._read_request(request)
            if registers is None:
                continue
            units = {f.metric: f.unit for f in request.fields}
            for metric, value in decode_request(request, registers).items():
                readings.append(
                    Reading(
                        sensor=self.sensor,
                        metric=metric,
                        ts=taken_at,
                        value=value,
                        unit=units[metric],
                    )
                )
        return readings
