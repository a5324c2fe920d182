"""Modbus TCP to PLCs and TCP-to-RTU gateways on the gateway's LAN, read with pymodbus.

One connection per endpoint (host, port), shared by its unit ids one request at a time: many
PLCs and gateways serve a single request at a time and limit their connections. Field specs,
retries, back-off and error semantics are those of the serial driver (`modbus_device`): a unit
that does not answer yields no readings, never zeros. A lost connection is re-established on a
later poll, after a capped exponential delay.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from edge.decoding import BIT_TABLES, RegisterRequest
from edge.drivers.modbus_device import (
    ModbusSlaveConfig,
    ModbusUnitDriver,
    SlaveError,
    unique_unit_ids,
)

log = structlog.get_logger(__name__)

#: Exception codes a TCP-to-RTU gateway answers when the device behind it did not.
_GATEWAY_NO_ANSWER = {0x0A, 0x0B}
#: Unanswered requests in a row after which pymodbus drops the connection (it reconnects later).
_MAX_NO_RESPONSES = 10

Send = Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]


class ModbusTcpSlaveConfig(ModbusSlaveConfig):
    """One unit behind a Modbus TCP endpoint (0 or 255 often address the PLC itself)."""

    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    timeout: Annotated[float, Field(gt=0, le=10)] = 1.0


class ModbusTcpConfig(BaseModel):
    """One Modbus TCP endpoint (a PLC or a TCP-to-RTU gateway) and the units read through it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    connect_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    reconnect_max: Annotated[float, Field(gt=0, le=600)] = 30.0
    slaves: Annotated[list[ModbusTcpSlaveConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_units(self) -> ModbusTcpConfig:
        unique_unit_ids(self.slaves)
        return self


class ModbusTcpEndpoint:
    """The connection to one endpoint, shared by the unit drivers in `polled`."""

    def __init__(self, config: ModbusTcpConfig) -> None:
        self.config = config
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._connect_failures = 0
        self._next_connect = -math.inf
        self.polled: tuple[ModbusTcpSlaveDriver, ...] = tuple(
            ModbusTcpSlaveDriver(self, slave) for slave in config.slaves
        )
        self.streaming: tuple[()] = ()

    async def _connected(self) -> AsyncModbusTcpClient:
        """The connected client, connecting if it is time to try again."""
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._next_connect:
            wait = self._next_connect - now
            raise SlaveError("disconnected", f"reconnecting in {wait:.1f} s", retry=False)
        if self._client is None:
            self._client = AsyncModbusTcpClient(
                self.config.host,
                port=self.config.port,
                name=f"modbus-tcp:{self.config.host}:{self.config.port}",
                timeout=self.config.connect_timeout,
                retries=0,  # retries are the slave's, counted by SlavePoller
                reconnect_delay=0,  # reconnection is ours, on the poll schedule
            )
            self._client.set_max_no_responses(_MAX_NO_RESPONSES)
        self._client.ctx.comm_params.timeout_connect = self.config.connect_timeout
        if not await self._client.connect():
            self._connect_failures += 1
            delay = min(self.config.reconnect_max, 2.0 ** (self._connect_failures - 1))
            self._next_connect = now + delay
            where = f"{self.config.host}:{self.config.port}"
            raise SlaveError("connect", f"cannot connect to {where}", retry=False)
        self._connect_failures = 0
        log.info("modbus tcp connected", host=self.config.host, port=self.config.port)
        return self._client

    async def _call(self, slave: ModbusSlaveConfig, send: Send) -> ModbusPDU:
        """Send one request on the shared connection, bounded by the unit's timeout."""
        async with self._lock:
            client = await self._connected()
            client.ctx.comm_params.timeout_connect = slave.timeout
            budget = slave.timeout * 2 + 1.0
            try:
                return await asyncio.wait_for(send(client), budget)
            except ModbusIOException as err:
                raise SlaveError("timeout", str(err)) from err
            except ConnectionException as err:
                raise SlaveError("disconnected", str(err), retry=False) from err
            except TimeoutError as err:
                raise SlaveError("stalled", f"no result within {budget:.1f} s") from err

    async def transact(self, slave: ModbusSlaveConfig, request: RegisterRequest) -> list[int]:
        """One read request to one unit; raises SlaveError when it got no usable answer."""
        response = await self._call(slave, functools.partial(_send, slave=slave, request=request))
        return _values(response, request)

    async def write_coil(self, slave: ModbusSlaveConfig, address: int, value: bool) -> bool:
        """Set a coil of one unit (e.g. the immobilizer relay); returns it as read back."""

        def write(client: AsyncModbusTcpClient) -> Awaitable[ModbusPDU]:
            """The write request (function code 5)."""
            return client.write_coil(address, value, device_id=slave.unit_id)

        written = await self._call(slave, write)
        if written.isError():
            code = written.exception_code
            raise SlaveError("exception_response", f"exception code {code}", answered=True)
        coil = RegisterRequest("coil", address, 1, ())
        (held,) = await self.transact(slave, coil)
        return bool(held)

    def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()
            self._client = None


async def _send(
    client: AsyncModbusTcpClient, *, slave: ModbusSlaveConfig, request: RegisterRequest
) -> ModbusPDU:
    """The pymodbus read call for a request's table."""
    calls = {
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
    }
    call = calls[request.table]
    return await call(request.start, count=request.count, device_id=slave.unit_id)


def _values(response: ModbusPDU, request: RegisterRequest) -> list[int]:
    """Registers (or bits as 0/1) of a response, or the SlaveError it stands for."""
    if response.isError():
        code = response.exception_code
        detail = f"exception code {code} for {request.table} {request.start}+{request.count}"
        if code in _GATEWAY_NO_ANSWER:
            raise SlaveError("timeout", f"gateway: device did not answer ({detail})")
        raise SlaveError("exception_response", detail, answered=True)
    values = response.bits if request.table in BIT_TABLES else response.registers
    if len(values) < request.count:
        raise SlaveError("bad_frame", f"{len(values)} values for {request.count} requested")
    return [int(v) for v in values[: request.count]]


class ModbusTcpSlaveDriver(ModbusUnitDriver):
    """Polled driver for one unit behind a Modbus TCP endpoint."""

    def __init__(self, endpoint: ModbusTcpEndpoint, slave: ModbusSlaveConfig) -> None:
        super().__init__(endpoint, slave)
        self.endpoint = endpoint
