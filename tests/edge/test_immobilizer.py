"""Immobilize and release through the agent to a real Modbus device (RTU, ASCII, TCP), and the
device's own answer when it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from pymodbus.framer import FramerType

from edge.agent import EdgeAgent
from edge.commands import CommandFailedError
from edge.config import (
    ControlConfig,
    EdgeConfig,
    GatewayConfig,
    ImmobilizerConfig,
    ModbusRtuBusConfig,
    ModbusSlaveConfig,
    ModbusTcpConfig,
    MqttConfig,
)
from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_tcp import OUTPUT_COIL, MachineUnits, ModbusTcpSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.demo import machine_fields
from tests.edge.devices import serve_units

UNIT = 4


@asynccontextmanager
async def device(transport: str) -> AsyncIterator[tuple[MachineUnits, dict[str, object]]]:
    """A simulated machine whose only output is OUTPUT_COIL; yields it and its config section."""
    machines = {UNIT: HeldMachine(running=True, motor_current=12.5)}
    slave = {"sensor": "machine", "unit_id": UNIT, "timeout": 0.3, "fields": machine_fields()}
    if transport == "tcp":
        async with ModbusTcpSlave(machines) as plc:
            yield plc, {"modbus_tcp": [{"host": "127.0.0.1", "port": plc.port, "slaves": [slave]}]}
        return
    units = MachineUnits(machines)
    framer = FramerType.ASCII if transport == "ascii" else FramerType.RTU
    async with PtyPair() as pair:
        server = await serve_units(pair, units, framer)
        try:
            bus = {"port": pair.client_path, "mode": transport, "slaves": [slave]}
            yield units, {"modbus_rtu": [bus]}
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]


def _agent(tmp_path: Path, section: dict[str, object], coil: int) -> EdgeAgent:
    config = EdgeConfig.model_validate(
        {
            "gateway": GatewayConfig(device="gw-0001", data_dir=tmp_path),
            "mqtt": MqttConfig(host="127.0.0.1", port=1, username="gw", password=SecretStr("x")),
            "control": ControlConfig(immobilizer=ImmobilizerConfig(sensor="machine", coil=coil)),
            **section,
        }
    )
    return EdgeAgent(config)


def _close(agent: EdgeAgent) -> None:
    agent.acquisition.close()
    agent.buffer.close()
    agent.ledger.close()


@pytest.mark.parametrize("transport", ["rtu", "ascii", "tcp"])
async def test_immobilize_and_release_answer_with_what_the_device_holds(
    transport: str, tmp_path: Path
) -> None:
    async with device(transport) as (units, section):
        agent = _agent(tmp_path, section, OUTPUT_COIL)
        try:
            immobilized = await agent.set_immobilized(True)
            held_after_immobilize = units.outputs[UNIT]
            released = await agent.set_immobilized(False)
        finally:
            _close(agent)
    assert immobilized == {"coil": OUTPUT_COIL, "value": True, "immobilized": True}
    assert held_after_immobilize is True
    assert released == {"coil": OUTPUT_COIL, "value": False, "immobilized": False}
    assert units.outputs[UNIT] is False


@pytest.mark.parametrize(
    ("transport", "answer"),
    [("rtu", "illegal data address"), ("ascii", "illegal data address"), ("tcp", "code 2")],
)
async def test_a_refused_write_fails_with_the_device_s_answer(
    transport: str, answer: str, tmp_path: Path
) -> None:
    async with device(transport) as (units, section):
        agent = _agent(tmp_path, section, coil=0)  # the running bit: no output of this device
        try:
            with pytest.raises(CommandFailedError, match=f"(?i)coil 0 of machine.*{answer}"):
                await agent.set_immobilized(True)
        finally:
            _close(agent)
    assert units.outputs[UNIT] is False, "nothing was switched"


def test_the_immobilizer_must_be_a_configured_modbus_slave(tmp_path: Path) -> None:
    slave = ModbusSlaveConfig(sensor="machine", unit_id=1, fields=machine_fields())
    section = {"modbus_rtu": [ModbusRtuBusConfig(port="/dev/ttyUSB0", slaves=[slave])]}
    EdgeConfig.model_validate(
        {
            "gateway": {"device": "gw-0001", "data_dir": str(tmp_path)},
            "mqtt": {"host": "h", "username": "u", "password": "p"},
            "control": {"immobilizer": {"sensor": "machine", "coil": 3}},
            "modbus_tcp": [ModbusTcpConfig(host="10.0.0.2", slaves=[slave.model_dump()])],
        }
    )
    with pytest.raises(ValueError, match="'nobody' is not a Modbus slave"):
        EdgeConfig.model_validate(
            {
                "gateway": {"device": "gw-0001", "data_dir": str(tmp_path)},
                "mqtt": {"host": "h", "username": "u", "password": "p"},
                "control": {"immobilizer": {"sensor": "nobody", "coil": 3}},
                **section,
            }
        )
