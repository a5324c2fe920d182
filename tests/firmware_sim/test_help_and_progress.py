"""What a tester sees: `leasewatch sim ... --help` at 80 columns, and the progress bars."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from firmware_sim.cli import app
from firmware_sim.fleet import BrokerTarget, FleetPlan, FleetReport
from firmware_sim.fleet_processes import run_fleet_with_progress
from firmware_sim.scenarios import load_scenario, resolve
from tests.firmware_sim.test_fleet import SIMULATOR, _principals, subscribed
from tests.services.mosquitto import MosquittoFactory

COMMANDS = [
    ["modbus"],
    ["fleet"],
    ["bench"],
    ["scenario", "list"],
    ["scenario", "check"],
    ["scenario", "run"],
]
LEASEWATCH = Path(sys.executable).parent / "leasewatch"


Command = TyperCommand | TyperGroup


def _command(path: list[str]) -> Command:
    """The (typer's click) command behind `leasewatch sim PATH...`."""
    command = typer.main.get_command(app)
    for name in path:
        assert isinstance(command, TyperGroup), path
        command = command.commands[name]
    assert isinstance(command, TyperCommand | TyperGroup), path
    return command


def _written_lines(command: Command) -> list[str]:
    """The lines of a command's help after its summary, as rich renders them (no escapes)."""
    _, _, rest = inspect.cleandoc(command.help or "").partition("\n\n")
    return [line.replace("\\[", "[") for line in rest.splitlines() if line.strip()]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_reads_as_written_at_80_columns_and_explains_every_option(path: list[str]) -> None:
    command = _command(path)
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    shown = {line.strip() for line in result.output.splitlines()}
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for line in _written_lines(command):  # no sentence broken in two by the terminal's width
        assert line in shown, f"{' '.join(path)} --help wraps {line!r}"
    assert command.help and len(command.help.split()) >= 5
    undocumented = [
        p.name for p in command.params if not getattr(p, "help", None) and p.name != "help"
    ]
    assert undocumented == [], f"{' '.join(path)}: options without help: {undocumented}"


def test_fleet_and_bench_have_one_name_each() -> None:
    scenario_help = CliRunner().invoke(app, ["scenario", "--help"], env={"COLUMNS": "120"})
    listed = re.findall(r"^│ (\w+) ", scenario_help.output, re.MULTILINE)
    assert listed == ["list", "check", "run"]
    sim_help = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert re.findall(r"^│ (\w+) ", sim_help.output, re.MULTILINE) == [
        "modbus",
        "fleet",
        "bench",
        "scenario",
    ]


def test_scenario_run_draws_a_progress_bar_over_the_assets(tmp_path: Path) -> None:
    command = [str(LEASEWATCH), "sim", "scenario", "run", "smoke", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    bar = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"smoke: assets ━+ 5/5 \d:\d\d:\d\d", bar), done.stderr
    assert done.stdout.startswith("smoke: 5 assets x 14 days")
    quiet = subprocess.run(
        [*command, "--no-progress"], capture_output=True, text=True, timeout=120, check=False
    )
    assert (quiet.returncode, quiet.stderr) == (0, "")


@pytest.mark.integration
async def test_fleet_mode_draws_a_progress_bar_with_messages_rate_and_simulated_time(
    mosquitto_factory: MosquittoFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = mosquitto_factory(_principals())
    target = BrokerTarget(broker.host, broker.port, *broker.credentials(SIMULATOR))
    resolved = resolve(load_scenario("fleet-load").with_asset_count(20))
    plan = FleetPlan(speed=None, duration_s=1.0, connections=1, window=8, boot_tag="bar")
    async with subscribed(broker) as subscriber:  # else every publish is 0x10, held and retried
        stats = await run_fleet_with_progress(resolved, target, plan, FleetReport(None), show=True)
        await subscriber.until(stats.messages)
    bar = capsys.readouterr().err.strip().splitlines()[-1]
    found = re.fullmatch(
        r"(?P<sent>[\d,]+) msgs (?P<rate>[\d,]+)/s  sim (?P<sim>\d{4}-\d\d-\d\dT\d\d:\d\d) ━+ .*",
        bar,
    )
    assert found, bar
    assert int(found["sent"].replace(",", "")) == stats.messages > 0
    assert found["sim"] > resolved.scenario.start.isoformat()
