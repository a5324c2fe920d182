"""Edge configuration: the sample is valid, mistakes are explained."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.config import ConfigError, load_config, parse_config, sample_config
from leasewatch.cli import app


def test_the_shipped_sample_is_valid() -> None:
    config = parse_config(sample_config())
    assert config.gateway.device == "gw-0001"
    assert [f.metric for f in config.modbus_rtu[0].slaves[0].fields][:2] == [
        "running",
        "motor_current",
    ]
    assert "change-me" not in repr(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("unit_id = 1", "unit_id = 300"), "modbus_rtu.0.slaves.0.unit_id"),
        (('kind = "i16"', 'kind = "i64"'), "modbus_rtu.0.slaves.0.fields.2.kind"),
        (('device = "gw-0001"', 'device = "GW 1"'), "gateway.device"),
        (("[mqtt]", "[mqtt]\n  surprise = 1"), "mqtt.surprise"),
        (('host = "mqtt.example.com"', "host = "), "not valid TOML"),
    ],
)
def test_bad_configs_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(sample_config().replace(*change, 1), "edge.toml")


def test_missing_file_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "nope.toml")


def test_cli_check_and_sample(tmp_path: Path) -> None:
    runner = CliRunner()
    sample = runner.invoke(app, ["edge", "sample-config"])
    assert sample.exit_code == 0
    path = tmp_path / "edge.toml"
    path.write_text(sample.output)
    ok = runner.invoke(app, ["edge", "--config", str(path), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "configuration is valid" in ok.output
    path.write_text(sample.output.replace("unit_id = 1", "unit_id = 0"))
    bad = runner.invoke(app, ["edge", "--config", str(path), "--check"])
    assert bad.exit_code == 2
    assert "unit_id" in bad.output
