"""The systemd unit in deploy/systemd: systemd accepts it, and what it runs behaves as it says."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import sample_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "leasewatch-edge.service"
INSTALLED_PYTHON = "/opt/leasewatch/venv/bin/python"


def _settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit, in order (systemd allows a key more than once)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _exec_start(config: Path) -> list[str]:
    """The unit's ExecStart with this checkout's interpreter and a given configuration."""
    (command,) = _settings()["ExecStart"]
    argv = shlex.split(command)
    assert argv[0] == INSTALLED_PYTHON
    return [sys.executable, *argv[1:-1], str(config)]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: `apt-get install systemd` to run this test")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_PYTHON, sys.executable))
    verified = _run([analyze, "verify", str(unit)])
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")


def test_the_unit_restarts_on_crashes_and_stops_with_sigterm() -> None:
    settings = _settings()
    assert settings["Restart"] == ["on-failure"]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert settings["User"] == ["leasewatch"] and "dialout" in settings["SupplementaryGroups"][0]
    assert settings["StateDirectory"] == ["leasewatch/edge"]


def test_exec_start_checks_a_configuration(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(sample_config())
    checked = _run([*_exec_start(config), "--check"])
    assert checked.returncode == 0, checked.stderr
    assert "configuration is valid" in checked.stdout


def test_refusals_exit_with_the_codes_the_unit_does_not_restart_on(tmp_path: Path) -> None:
    """A refused configuration (2) or a buffer of another schema (3) would only loop."""
    (prevent,) = _settings()["RestartPreventExitStatus"]
    config = tmp_path / "edge.toml"
    config.write_text(sample_config().replace("unit_id = 1", "unit_id = 0"))
    refused = _run(_exec_start(config))
    assert "unit_id (line" in refused.stderr
    data_dir = tmp_path / "edge"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "buffer.sqlite") as db:
        db.execute("CREATE TABLE pending (id INTEGER PRIMARY KEY)")
    config.write_text(
        sample_config()
        .replace('data_dir = "/var/lib/leasewatch/edge"', f'data_dir = "{data_dir}"')
        .replace('port = "/dev/ttyUSB0"', f'port = "{tmp_path / "no-such-port"}"')
    )
    old_buffer = _run(_exec_start(config))
    assert "buffer schema 0" in old_buffer.stderr
    assert sorted(prevent.split()) == sorted({str(refused.returncode), str(old_buffer.returncode)})
    assert {refused.returncode, old_buffer.returncode} == {2, 3}
