"""Edge configuration: the sample is valid, mistakes are explained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.config import (
    ConfigError,
    load_config,
    parse_config,
    parse_sections,
    sample_config,
    with_sections,
)
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


def _with(extra: str) -> str:
    return sample_config().replace("[delivery]", extra + "\n[delivery]", 1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[features.machine_state]]\nsensor = "ghost"\nmetric = "x"\n'
            "idle_above = 1\nrunning_above = 2\n",
            "unknown sensor(s) referenced: ghost",
        ),
        (
            '[[features.machine_state]]\nsensor = "machine"\nmetric = "x"\n'
            "idle_above = 3\nrunning_above = 2\n",
            "running_above must be greater than idle_above",
        ),
        ('[control.immobilizer]\nsensor = "ghost"\ncoil = 3\n', "is not a Modbus slave"),
        ("[scheduler.poll_intervals]\nghost = 0.5\n", "unknown sensor(s) referenced: ghost"),
    ],
)
def test_runtime_sections_reference_configured_sensors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(_with(extra))


def test_tls_files_must_exist_and_a_key_needs_a_certificate(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("not really a key")
    text = sample_config().replace("[mqtt]", f'[mqtt]\n  client_key = "{key}"', 1)
    with pytest.raises(ConfigError, match="client_key needs client_cert"):
        parse_config(text)
    text = sample_config().replace("[mqtt]", '[mqtt]\n  ca_file = "/nonexistent/ca.pem"', 1)
    with pytest.raises(ConfigError, match="is not a readable file"):
        parse_config(text)


def test_pushed_sections_replace_whole_sections_but_never_identity_or_broker() -> None:
    base = parse_config(sample_config())
    sections = parse_sections("[scheduler.poll_intervals]\nmachine = 0.25\n")
    changed = with_sections(base, sections)
    assert changed.scheduler.poll_intervals == {"machine": 0.25}
    assert changed.mqtt == base.mqtt and changed.modbus_rtu == base.modbus_rtu
    with pytest.raises(ConfigError, match="cannot be changed remotely"):
        parse_sections('[gateway]\ndevice = "gw-9999"\n')
    with pytest.raises(ConfigError, match=re.escape("scheduler.poll_intervals.machine")):
        with_sections(base, {"scheduler": {"poll_intervals": {"machine": -1}}})


def test_check_reports_the_bus_time_budget(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(sample_config().replace("# poll_interval = 1.0", "poll_interval = 0.01"))
    result = CliRunner().invoke(app, ["edge", "--config", str(path), "--check"])
    assert result.exit_code == 0, result.output
    assert "cannot keep its poll rates" in result.output
