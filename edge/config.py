"""Edge agent configuration: a TOML file validated once at start."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from edge.decoding import RegisterField
from leasewatch.wire import DeviceId, SensorName


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatewayConfig(_Strict):
    """Who this gateway is and where it keeps its durable state."""

    device: DeviceId
    data_dir: Path


class MqttConfig(_Strict):
    """How the gateway reaches the broker."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 8883
    username: str
    password: SecretStr
    protocol: Literal[5, 311] = 5
    tls: bool = True
    ca_file: Path | None = None
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_min: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max: Annotated[float, Field(gt=0)] = 60.0
    publish_timeout: Annotated[float, Field(gt=0)] = 10.0


class DeliveryConfig(_Strict):
    """Batching and store-and-forward buffering of readings."""

    publish_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_readings_per_message: Annotated[int, Field(ge=1, le=5000)] = 500
    buffer_max_messages: Annotated[int, Field(ge=10)] = 200_000
    historical_after: Annotated[float, Field(gt=0)] = 60.0
    replay_messages_per_second: Annotated[float, Field(gt=0)] = 50.0


class ModbusSlaveConfig(_Strict):
    """One Modbus slave on a bus: its unit id, poll rate and register fields."""

    sensor: SensorName
    unit_id: Annotated[int, Field(ge=1, le=247)]
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    timeout: Annotated[float, Field(gt=0, le=10)] = 0.3
    fields: Annotated[list[RegisterField], Field(min_length=1)]


class ModbusRtuBusConfig(_Strict):
    """One serial bus (RS-485 or RS-232) polled with Modbus RTU."""

    port: str
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    slaves: Annotated[list[ModbusSlaveConfig], Field(min_length=1)]


class EdgeConfig(_Strict):
    """The whole agent configuration."""

    gateway: GatewayConfig
    mqtt: MqttConfig
    delivery: DeliveryConfig = DeliveryConfig()
    modbus_rtu: list[ModbusRtuBusConfig] = []

    @model_validator(mode="after")
    def _unique_sensors(self) -> EdgeConfig:
        names = [s.sensor for bus in self.modbus_rtu for s in bus.slaves]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sensor names must be unique, repeated: {', '.join(duplicates)}")
        return self


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def parse_config(text: str, source: str = "<config>") -> EdgeConfig:
    """Validate TOML text as an edge configuration."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    try:
        return EdgeConfig.model_validate(document)
    except ValidationError as err:
        problems = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in err.errors()
        ]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(problems)) from err


def load_config(path: Path) -> EdgeConfig:
    """Read and validate a configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read configuration: {err.strerror}") from err
    return parse_config(text, str(path))


def sample_config() -> str:
    """The documented sample configuration shipped with the package."""
    return resources.files("edge").joinpath("sample.toml").read_text(encoding="utf-8")
