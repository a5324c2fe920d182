"""Edge agent configuration: a TOML file validated once at start."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

# Driver sections live with their drivers; re-exported here, where callers find every section.
from edge.config_position import key_lines, line_of
from edge.drivers.modbus_device import ModbusSlaveConfig as ModbusSlaveConfig  # noqa: PLC0414
from edge.drivers.modbus_rtu import ModbusRtuBusConfig as ModbusRtuBusConfig  # noqa: PLC0414
from edge.drivers.modbus_tcp import ModbusTcpConfig as ModbusTcpConfig  # noqa: PLC0414
from edge.drivers.nmea_gps import NmeaGpsConfig as NmeaGpsConfig  # noqa: PLC0414
from edge.drivers.wristband import WristbandConfig as WristbandConfig  # noqa: PLC0414
from leasewatch.wire import DeviceId, MetricName, SensorName


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
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    reconnect_min: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max: Annotated[float, Field(gt=0)] = 60.0
    publish_timeout: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="after")
    def _tls_files(self) -> MqttConfig:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        if not self.tls and (self.ca_file or self.client_cert):
            raise ValueError("ca_file and client_cert need tls = true")
        for path in (self.ca_file, self.client_cert, self.client_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        return self


class DeliveryConfig(_Strict):
    """Batching, compression and store-and-forward buffering of readings."""

    publish_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_readings_per_message: Annotated[int, Field(ge=1, le=5000)] = 500
    compress: bool = False
    buffer_max_messages: Annotated[int, Field(ge=10)] = 200_000
    buffer_max_bytes: Annotated[int, Field(ge=256 * 1024)] = 256 * 1024 * 1024
    historical_after: Annotated[float, Field(gt=0)] = 60.0
    replay_readings_per_second: Annotated[float, Field(gt=0)] = 5000.0


class MachineStateConfig(_Strict):
    """Running/idle/off state of one machine from one measured metric, with hysteresis."""

    sensor: SensorName
    metric: MetricName
    idle_above: float
    running_above: float
    hysteresis: Annotated[float, Field(ge=0)] = 0.0
    min_dwell: Annotated[float, Field(ge=0)] = 0.0
    max_gap: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> MachineStateConfig:
        if self.running_above <= self.idle_above:
            raise ValueError("running_above must be greater than idle_above")
        return self


class VibrationRmsConfig(_Strict):
    """Root mean square of a vibration metric over fixed windows."""

    sensor: SensorName
    metric: MetricName
    window: Annotated[float, Field(gt=0, le=3600)] = 10.0
    output: MetricName | None = None


class FeaturesConfig(_Strict):
    """Features computed at the edge from the sensors' readings."""

    machine_state: list[MachineStateConfig] = []
    vibration_rms: list[VibrationRmsConfig] = []

    @model_validator(mode="after")
    def _one_state_per_sensor(self) -> FeaturesConfig:
        sensors = [f.sensor for f in self.machine_state]
        if repeated := sorted({s for s in sensors if sensors.count(s) > 1}):
            raise ValueError(f"one machine_state per sensor, repeated: {', '.join(repeated)}")
        outputs = [(f.sensor, f.output or f"{f.metric}_rms") for f in self.vibration_rms]
        if len(set(outputs)) != len(outputs):
            raise ValueError("vibration_rms outputs must be unique per sensor")
        return self


class HealthConfig(_Strict):
    """How often the gateway reports on itself, and where it checks its clock."""

    interval: Annotated[float, Field(gt=0, le=3600)] = 60.0
    ntp_server: str | None = None
    ntp_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    clock_step: Annotated[float, Field(ge=0.5, le=3600)] = 2.0


class ImmobilizerConfig(_Strict):
    """The Modbus coil that immobilizes the asset, on a configured Modbus slave (RTU or TCP)."""

    sensor: SensorName
    coil: Annotated[int, Field(ge=0, le=65535)]
    immobilize_value: bool = True


class ControlConfig(_Strict):
    """Commands from the cloud: what they may drive and how long they stay valid."""

    immobilizer: ImmobilizerConfig | None = None
    command_ttl: Annotated[float, Field(gt=0)] = 3600.0
    remember_commands: Annotated[int, Field(ge=10)] = 1000


class SchedulerConfig(_Strict):
    """Poll interval overrides and the per-bus wire-time budget."""

    poll_intervals: dict[SensorName, Annotated[float, Field(gt=0)]] = {}
    max_bus_load: Annotated[float, Field(gt=0, le=1)] = 0.8


class EdgeConfig(_Strict):
    """The whole agent configuration."""

    gateway: GatewayConfig
    mqtt: MqttConfig
    delivery: DeliveryConfig = DeliveryConfig()
    features: FeaturesConfig = FeaturesConfig()
    health: HealthConfig = HealthConfig()
    control: ControlConfig = ControlConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    modbus_rtu: list[ModbusRtuBusConfig] = []
    modbus_tcp: list[ModbusTcpConfig] = []
    wristband: list[WristbandConfig] = []
    nmea_gps: list[NmeaGpsConfig] = []

    @model_validator(mode="after")
    def _unique_sensors(self) -> EdgeConfig:
        names = self.sensor_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sensor names must be unique, repeated: {', '.join(duplicates)}")
        return self

    def sensor_names(self) -> list[str]:
        """Names of every configured sensor, in configuration order."""
        return [
            *(s.sensor for bus in self.modbus_rtu for s in bus.slaves),
            *(s.sensor for endpoint in self.modbus_tcp for s in endpoint.slaves),
            *(line.sensor for line in self.wristband),
            *(line.sensor for line in self.nmea_gps),
        ]

    @model_validator(mode="after")
    def _known_sensors(self) -> EdgeConfig:
        known = set(self.sensor_names())
        referenced = [
            *(f.sensor for f in self.features.machine_state),
            *(f.sensor for f in self.features.vibration_rms),
            *self.scheduler.poll_intervals,
        ]
        unknown = sorted({name for name in referenced if name not in known})
        if unknown:
            raise ValueError(f"unknown sensor(s) referenced: {', '.join(unknown)}")
        immobilizer = self.control.immobilizer
        modbus = {s.sensor for bus in self.modbus_rtu for s in bus.slaves}
        modbus |= {s.sensor for endpoint in self.modbus_tcp for s in endpoint.slaves}
        if immobilizer is not None and immobilizer.sensor not in modbus:
            raise ValueError(f"immobilizer sensor {immobilizer.sensor!r} is not a Modbus slave")
        return self


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def parse_config(text: str, source: str = "<config>") -> EdgeConfig:
    """Validate TOML text as an edge configuration."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    return _validate(document, source, key_lines(text))


def _validate(
    document: dict[str, Any], source: str, lines: dict[tuple[str | int, ...], int] | None = None
) -> EdgeConfig:
    """Validate a parsed document, naming every offending key (and its line, given the text)."""
    try:
        return EdgeConfig.model_validate(document)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            line = line_of(lines, e["loc"]) if lines else None
            problems.append(f"  {where}{f' (line {line})' if line else ''}: {e['msg']}")
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(problems)) from err


#: Sections a pushed configuration may not replace: the gateway's identity and broker access.
LOCAL_SECTIONS = frozenset({"gateway", "mqtt"})


def parse_sections(text: str, source: str = "<pushed config>") -> dict[str, Any]:
    """Parse TOML text holding sections that replace the running configuration's own."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    if local := sorted(LOCAL_SECTIONS & document.keys()):
        raise ConfigError(f"{source}: section(s) {', '.join(local)} cannot be changed remotely")
    return document


def with_sections(
    base: EdgeConfig, sections: dict[str, Any], source: str = "<pushed config>"
) -> EdgeConfig:
    """The base configuration with whole top-level sections replaced, validated again."""
    if local := sorted(LOCAL_SECTIONS & sections.keys()):
        raise ConfigError(f"{source}: section(s) {', '.join(local)} cannot be changed remotely")
    merged = {name: getattr(base, name) for name in type(base).model_fields}
    return _validate({**merged, **sections}, source)


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
