"""Modbus RTU and ASCII over a serial bus, read with minimalmodbus and pyserial.

Each bus gets its own worker thread: requests on one bus are serialised (RS-485 is half
duplex) while other buses carry on. A slave that does not answer yields no reading and a
counted error, never a zero, and costs the bus only its own timeout (times its retries) until
its back-off makes it cost even less.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal, TypeVar

import minimalmodbus
import serial
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.decoding import BIT_TABLES, RegisterRequest, plan_requests
from edge.drivers.modbus_device import (
    ModbusSlaveConfig,
    ModbusUnitDriver,
    SlaveError,
    unique_unit_ids,
)

T = TypeVar("T")

_MODES = {"rtu": minimalmodbus.MODE_RTU, "ascii": minimalmodbus.MODE_ASCII}
_TURNAROUND_S = 0.005  # a slave's typical think time between request and response


class ModbusRtuBusConfig(BaseModel):
    """One serial bus (RS-485 or RS-232) polled with Modbus RTU or ASCII."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: str
    mode: Literal["rtu", "ascii"] = "rtu"
    baudrate: Annotated[int, Field(ge=300, le=921_600)] = 19200
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    slaves: Annotated[list[ModbusSlaveConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_units(self) -> ModbusRtuBusConfig:
        unique_unit_ids(self.slaves)
        return self


def request_seconds(config: ModbusRtuBusConfig, request: RegisterRequest) -> float:
    """Time one request and its response take on the wire, silent intervals included."""
    data_bytes = math.ceil(request.count / 8) if request.table in BIT_TABLES else 2 * request.count
    frame_bytes = 8 + 5 + data_bytes  # request + response (address, function, count, CRC)
    if config.mode == "ascii":
        frame_bytes = 2 * frame_bytes + 6  # hex characters, ':' and CR LF, LRC instead of CRC
    bits_per_char = 1 + config.bytesize + (config.parity != "N") + config.stopbits
    chars = frame_bytes + 2 * 3.5  # a silent interval of 3.5 characters after each frame
    return chars * bits_per_char / config.baudrate + _TURNAROUND_S


def bus_load(config: ModbusRtuBusConfig) -> float:
    """Fraction of the bus's time its configured polls need (above 1: rates cannot be met)."""
    load = 0.0
    for slave in config.slaves:
        requests = plan_requests(slave.fields, max_gap=slave.max_gap)
        load += sum(request_seconds(config, r) for r in requests) / slave.poll_interval
    return load


class ModbusBus:
    """One serial port shared by the slaves on it, with a dedicated I/O thread."""

    def __init__(self, config: ModbusRtuBusConfig) -> None:
        self.config = config
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"modbus:{config.port}"
        )
        self._instruments: dict[int, minimalmodbus.Instrument] = {}
        self._port: serial.Serial | None = None
        self.polled: tuple[ModbusSlaveDriver, ...] = tuple(
            ModbusSlaveDriver(self, slave) for slave in config.slaves
        )
        self.streaming: tuple[()] = ()

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
            instrument = minimalmodbus.Instrument(
                port, slave.unit_id, mode=_MODES[self.config.mode]
            )
            instrument.clear_buffers_before_each_transaction = True
            self._instruments[slave.unit_id] = instrument
        port.timeout = slave.timeout
        return self._instruments[slave.unit_id]

    @contextlib.contextmanager
    def _slave_errors(self) -> Iterator[None]:
        """Translate minimalmodbus and pyserial errors into counted SlaveError kinds."""
        try:
            yield
        except minimalmodbus.NoResponseError as err:
            raise SlaveError("timeout", str(err)) from err
        except minimalmodbus.SlaveReportedException as err:
            raise SlaveError("exception_response", str(err), answered=True) from err
        except minimalmodbus.ModbusException as err:  # CRC, length, echo: garbage on the line
            raise SlaveError("bad_frame", str(err)) from err
        except (serial.SerialException, OSError) as err:
            self._close_port()  # reopened on the next request: a replugged adapter comes back
            raise SlaveError("port", str(err), retry=False) from err

    def _read_blocking(self, slave: ModbusSlaveConfig, request: RegisterRequest) -> list[int]:
        """One read request, on the bus thread."""
        with self._slave_errors():
            instrument = self.instrument(slave)
            if request.table in BIT_TABLES:
                bits: list[int] = instrument.read_bits(
                    request.start, request.count, functioncode=request.function_code
                )
                return bits
            registers: list[int] = instrument.read_registers(
                request.start, request.count, functioncode=request.function_code
            )
            return registers

    def _write_coil_blocking(self, slave: ModbusSlaveConfig, address: int, value: bool) -> bool:
        """Write a coil (function code 5) and read it back (1), on the bus thread."""
        with self._slave_errors():
            instrument = self.instrument(slave)
            instrument.write_bit(address, int(value), functioncode=5)
            return bool(instrument.read_bit(address, functioncode=1))

    async def _on_thread(self, slave: ModbusSlaveConfig, call: Callable[[], T]) -> T:
        """Run a blocking call on this bus's thread, bounded by the slave's timeout budget."""
        loop = asyncio.get_running_loop()
        budget = slave.timeout * 2 + 1.0
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, call), budget)
        except TimeoutError as err:
            raise SlaveError("stalled", f"no result within {budget:.1f} s") from err

    async def transact(self, slave: ModbusSlaveConfig, request: RegisterRequest) -> list[int]:
        """One read request to one slave; raises SlaveError when it got no usable answer."""
        return await self._on_thread(slave, functools.partial(self._read_blocking, slave, request))

    async def write_coil(self, slave: ModbusSlaveConfig, address: int, value: bool) -> bool:
        """Set a coil of one slave (e.g. the immobilizer relay); returns it as read back."""
        call = functools.partial(self._write_coil_blocking, slave, address, value)
        return await self._on_thread(slave, call)

    def _close_port(self) -> None:
        if self._port is not None:
            self._port.close()
        self._instruments.clear()

    def close(self) -> None:
        """Close the serial port and stop the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._close_port()


class ModbusSlaveDriver(ModbusUnitDriver):
    """Polled driver for one slave on a serial bus."""

    def __init__(self, bus: ModbusBus, slave: ModbusSlaveConfig) -> None:
        super().__init__(bus, slave)
        self.bus = bus
