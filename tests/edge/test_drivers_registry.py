"""The driver registry: one entry per config section kind, groups built without I/O."""

from __future__ import annotations

import re
from pathlib import Path

from edge.config import EdgeConfig, parse_config, sample_config
from edge.drivers import DRIVERS, open_drivers
from edge.drivers.modbus_rtu import ModbusBus, bus_load
from edge.drivers.modbus_tcp import ModbusTcpEndpoint
from edge.drivers.nmea_gps import NmeaGpsDriver
from edge.drivers.wristband import WristbandDriver


def _sample_with_every_driver() -> str:
    """The sample with its commented-out driver sections switched on (one level of '# ')."""
    text = sample_config()
    for kind in ("modbus_tcp", "wristband", "nmea_gps"):
        block = re.search(rf"^# \[\[{kind}\]\]\n(?:#.*\n)*", text, re.MULTILINE)
        assert block is not None, f"the sample documents [[{kind}]]"
        enabled = re.sub(r"^# ?", "", block.group(0), flags=re.MULTILINE)
        text = text.replace(block.group(0), enabled)
    return text


def test_every_config_list_of_edge_config_has_a_driver() -> None:
    driver_lists = {
        name
        for name, field in EdgeConfig.model_fields.items()
        if getattr(field.annotation, "__origin__", None) is list
    }
    assert driver_lists == set(DRIVERS)
    for kind, entry in DRIVERS.items():
        (section_type,) = EdgeConfig.model_fields[kind].annotation.__args__  # type: ignore[union-attr]
        assert section_type is entry.config


def test_the_sample_documents_every_driver_and_each_section_is_valid() -> None:
    config = parse_config(_sample_with_every_driver(), "sample.toml")
    assert config.sensor_names() == ["machine", "plc", "band", "gps"]
    assert config.modbus_tcp[0].slaves[0].fields[0].kind == "f32"
    assert config.wristband[0].baudrate == 115_200
    assert config.nmea_gps[0].require_checksum


def test_open_drivers_builds_one_group_per_section_without_io() -> None:
    groups = open_drivers(parse_config(_sample_with_every_driver()))
    assert [type(g) for g in groups] == [
        ModbusBus,
        ModbusTcpEndpoint,
        WristbandDriver,
        NmeaGpsDriver,
    ]
    polled = [d.sensor for g in groups for d in g.polled]
    streaming = [d.sensor for g in groups for d in g.streaming]
    assert (polled, streaming) == (["machine", "plc"], ["band", "gps"])
    assert [d.poll_interval for g in groups for d in g.polled] == [1.0, 1.0]
    for group in groups:
        group.close()


def test_bus_load_says_when_a_bus_cannot_keep_its_poll_rates() -> None:
    config = parse_config(sample_config())
    bus = config.modbus_rtu[0]
    slave = bus.slaves[0]
    assert 0.005 < bus_load(bus) < 0.05  # one 7-register request a second at 19200 baud
    fast = bus.model_copy(update={"slaves": [slave.model_copy(update={"poll_interval": 0.001})]})
    assert bus_load(fast) > 1.0
    slow_ascii = bus.model_copy(update={"mode": "ascii", "baudrate": 1200})
    assert bus_load(slow_ascii) > 10 * bus_load(bus)


#: Commented options in the sample that show an example value rather than the default.
EXAMPLE_KEYS = frozenset({"ca_file", "client_cert", "client_key", "ntp_server", "band_id"})
_OPTION = re.compile(r"^(\s*)# ?(\s*(?:\[|[A-Za-z_]\w* = ))", re.MULTILINE)


def _leaves(value: object, path: tuple[object, ...] = ()) -> dict[tuple[object, ...], object]:
    """Every scalar of a dumped configuration by its path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, (*path, key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, (*path, i)).items()}
    return {path: value}


def test_every_commented_option_of_the_sample_exists_and_shows_its_default(
    tmp_path: Path,
) -> None:
    """`# key = value` lines are real keys at their real defaults (or named examples)."""
    base = _sample_with_every_driver().replace("/etc/leasewatch/", f"{tmp_path}/")
    everything = _OPTION.sub(r"\1\2", base)
    for name in ("ca.pem", "gateway.pem", "gateway.key"):
        (tmp_path / name).write_text("not read by validation\n")
    assert everything.count("\n  # ") == 0, "every commented option was switched on"
    documented = parse_config(everything, "sample.toml (every option on)")
    defaults = _leaves(parse_config(base).model_dump(mode="json"))
    shown = _leaves(documented.model_dump(mode="json"))
    wrong = {
        path: (shown[path], default)
        for path, default in defaults.items()
        if path in shown and shown[path] != default and path[-1] not in EXAMPLE_KEYS
    }
    assert wrong == {}, "the sample shows these options at values that are not their defaults"
    assert documented.control.immobilizer is not None
    assert documented.features.machine_state and documented.features.vibration_rms
    assert documented.scheduler.poll_intervals == {"machine": 0.5}
    assert documented.mqtt.client_key == tmp_path / "gateway.key"
