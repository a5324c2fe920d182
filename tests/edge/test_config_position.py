"""Configuration errors name the line of the offending key."""

from __future__ import annotations

import pytest

from edge.config import ConfigError, parse_config, sample_config
from edge.config_position import key_lines, line_of

TEXT = """\
[gateway]
device = "gw-1"

[[modbus_rtu]]
port = "/dev/a"
  [[modbus_rtu.slaves]]
  sensor = "a"
  [[modbus_rtu.slaves]]
  sensor = "b"   # a comment
[[modbus_rtu]]
port = "/dev/b"
  [[modbus_rtu.slaves]]
  unit_id = 3
"""


def test_key_lines_follow_arrays_of_tables() -> None:
    lines = key_lines(TEXT)
    assert lines[("gateway", "device")] == 2
    assert lines[("modbus_rtu", 0, "slaves", 1, "sensor")] == 9
    assert lines[("modbus_rtu", 1, "slaves", 0, "unit_id")] == 13
    assert line_of(lines, ("modbus_rtu", 1, "slaves", 0, "fields")) == 12
    assert line_of(lines, ("nowhere",)) is None


def test_a_validation_error_names_key_reason_and_line() -> None:
    text = sample_config().replace("unit_id = 1", "unit_id = 0", 1)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "unit_id = 0" in t)
    with pytest.raises(ConfigError, match=rf"unit_id \(line {line}\): Input should be greater"):
        parse_config(text, "edge.toml")
