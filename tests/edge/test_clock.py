"""The gateway's timeline: stamps follow the system clock, and a step of it is held or adopted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.clock import Timeline, kernel_clock_synchronized
from leasewatch.chaos.clock import build_clock_shim

T0 = 1_790_000_000.0


class Machine:
    """A system clock that can be stepped and a boot-time clock that cannot."""

    def __init__(self) -> None:
        self.wall = T0
        self.elapsed = 100.0
        self.synchronized: bool | None = False

    def run(self, seconds: float, *, drift: float = 0.0) -> None:
        self.wall += seconds + drift
        self.elapsed += seconds

    def timeline(self, step_s: float = 2.0) -> Timeline:
        return Timeline(
            step_s,
            synchronized=lambda: self.synchronized,
            wall=lambda: self.wall,
            elapsed=lambda: self.elapsed,
        )


def test_stamps_are_the_system_clock_while_it_only_slews() -> None:
    machine = Machine()
    timeline = machine.timeline()
    for _ in range(100):
        machine.run(1.0, drift=0.01)  # NTP slewing: 10 ms a second
        assert timeline.timestamp() == machine.wall
    assert (timeline.steps, timeline.held_s) == (0, 0.0)


def test_a_step_of_an_unsynchronised_clock_is_held_until_the_clock_comes_back() -> None:
    machine = Machine()
    timeline = machine.timeline()
    machine.run(10)
    machine.wall += 3600  # `date -s`: an hour ahead
    assert timeline.timestamp() == pytest.approx(T0 + 10)
    assert (timeline.steps, timeline.held_s) == (1, pytest.approx(-3600))
    assert timeline.last_step is not None and not timeline.last_step.adopted
    machine.run(60)
    assert timeline.timestamp() == pytest.approx(T0 + 70), "stamps go on from the timeline"
    machine.wall -= 3600  # set right again
    machine.run(1)
    assert timeline.timestamp() == pytest.approx(T0 + 71)
    assert (timeline.steps, timeline.held_s) == (2, 0.0)
    assert timeline.last_step is not None and timeline.last_step.adopted


def test_a_step_made_by_a_synchronised_source_is_adopted() -> None:
    machine = Machine()
    timeline = machine.timeline()
    machine.synchronized = True
    machine.wall -= 7200  # NTP sets a clock that booted two hours ahead
    assert timeline.timestamp() == machine.wall
    assert (timeline.steps, timeline.held_s) == (1, 0.0)


def test_a_held_step_is_released_when_the_kernel_clock_becomes_synchronised() -> None:
    machine = Machine()
    timeline = machine.timeline()
    machine.wall += 900
    assert timeline.timestamp() == pytest.approx(T0)
    machine.run(30)
    machine.synchronized = True  # the daemon confirms the new time
    assert timeline.timestamp() == machine.wall
    assert (timeline.steps, timeline.held_s) == (2, 0.0)


def test_an_sntp_answer_far_from_the_timeline_is_adopted_and_kept() -> None:
    machine = Machine()
    timeline = machine.timeline()
    timeline.confirm(0.5)  # within the step threshold: nothing to do
    assert timeline.timestamp() == machine.wall
    timeline.confirm(-600.0)  # the system clock is 10 minutes ahead of the server
    machine.synchronized = True  # a synchronised kernel does not undo what SNTP measured
    machine.run(5)
    assert timeline.timestamp() == pytest.approx(machine.wall - 600)
    assert (timeline.steps, timeline.held_s) == (1, -600.0)


def test_a_held_step_survives_a_restart_of_the_agent_not_of_the_machine(tmp_path: Path) -> None:
    machine = Machine()
    saved = tmp_path / "clock.json"
    first = machine.timeline()
    first.keep_in(saved)
    machine.wall += 3600
    first.timestamp()
    machine.run(20)
    restarted = machine.timeline()  # a new agent process, same machine boot
    restarted.keep_in(saved)
    assert restarted.timestamp() == pytest.approx(T0 + 20)
    assert restarted.held_s == pytest.approx(-3600)
    state = json.loads(saved.read_text())
    state["kernel_boot"] = "another boot"  # boot time restarted: nothing to resume from
    saved.write_text(json.dumps(state))
    rebooted = machine.timeline()
    rebooted.keep_in(saved)
    assert rebooted.timestamp() == machine.wall


def test_an_unreadable_saved_state_starts_on_the_system_clock(tmp_path: Path) -> None:
    saved = tmp_path / "clock.json"
    saved.write_text("{not json")
    machine = Machine()
    timeline = machine.timeline()
    timeline.keep_in(saved)
    assert timeline.timestamp() == machine.wall


def test_this_kernel_answers_whether_its_clock_is_synchronised() -> None:
    assert kernel_clock_synchronized() in (True, False)


_STAMPS = """
import sys, time
from pathlib import Path
from edge.clock import Timeline
timeline = Timeline()
offset = Path(sys.argv[1])
print("=", round(time.time() - timeline.timestamp()), flush=True)
offset.write_text("3600\\n")
time.sleep(0.2)  # the preload library reads its offset file every 50 ms
print("=", round(time.time() - timeline.timestamp()), round(timeline.held_s), flush=True)
offset.write_text("0\\n")
time.sleep(0.2)
print("=", round(time.time() - timeline.timestamp()), timeline.steps, flush=True)
"""


def test_a_real_step_of_a_process_clock_does_not_move_its_stamps(tmp_path: Path) -> None:
    library = build_clock_shim(tmp_path)
    offset = tmp_path / "offset"
    offset.write_text("0\n")
    env = {"LD_PRELOAD": str(library), "LW_CLOCK_OFFSET_FILE": str(offset), "PATH": "/usr/bin"}
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-c", _STAMPS, str(offset)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = [line for line in result.stdout.split("\n") if line.startswith("= ")]
    assert lines == ["= 0", "= 3600 -3600", "= 0 2"], result.stdout + result.stderr
    assert time.time() - started < 60
