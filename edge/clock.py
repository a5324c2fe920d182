"""The gateway's time: stamps that a step of the system clock cannot move.

Every reading, event, message and report of the agent is stamped from one timeline: the wall
clock at an anchor plus the time elapsed since on CLOCK_BOOTTIME (it counts through a suspend
and nobody can set it). While the system clock agrees with the timeline within `step_s`, the
timeline follows it (NTP slewing, small corrections), so stamps are the system clock's. A
larger disagreement is a step of the system clock, and the timeline decides:

- it **adopts** the new time when the kernel says the clock is synchronised (an NTP daemon
  stepped it) or when the agent's own SNTP check (`health.ntp_server`) confirms it;
- it **holds** otherwise (the clock was set by hand or by a faulty source: settimeofday marks
  the kernel's clock unsynchronised): stamps go on from the timeline, and the held offset is
  reported until the clock comes back or a synchronised source confirms the new time.

Every step is counted and logged, and the health report carries the count and the held offset.
A held step survives a restart of the agent (not of the machine): the timeline is saved in the
agent's data directory with the kernel's boot id, since CLOCK_BOOTTIME restarts with the machine.
"""

from __future__ import annotations

import ctypes
import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
_TIMEX_BYTES = 512  # struct timex is 208 bytes on x86-64; zeroed, so `modes` = 0 (read only)
_KERNEL_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def _adjtimex() -> Callable[[ctypes.Array[ctypes.c_char]], int] | None:
    try:
        function: Callable[[ctypes.Array[ctypes.c_char]], int] = ctypes.CDLL(None).adjtimex
    except (OSError, AttributeError):
        return None
    return function


def kernel_clock_synchronized() -> bool | None:
    """Whether the kernel says the system clock is synchronised (adjtimex); None if unknown."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    state = int(adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES)))
    if state < 0:
        return None
    return state != _TIME_ERROR


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _kernel_boot() -> str:
    try:
        return _KERNEL_BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class ClockStep:
    """One step of the system clock as the timeline saw it."""

    at: datetime  # on the timeline
    step_s: float  # how far the system clock moved against the timeline
    adopted: bool  # True: the timeline moved with it; False: held
    reason: str


class Timeline:
    """Wall-clock stamps from an anchor and CLOCK_BOOTTIME; see the module docstring."""

    def __init__(
        self,
        step_s: float = 2.0,
        *,
        synchronized: Callable[[], bool | None] = kernel_clock_synchronized,
        wall: Callable[[], float] = time.time,
        elapsed: Callable[[], float] = _boottime,
    ) -> None:
        self.step_s = step_s
        self.steps = 0
        self.last_step: ClockStep | None = None
        self._synchronized = synchronized
        self._wall = wall
        self._elapsed = elapsed
        self._lock = threading.Lock()
        self._offset = 0.0  # what the timeline keeps added to the system clock
        self._holding = False  # a step is held (not confirmed by any synchronised source)
        self._anchor = (wall(), elapsed())
        self._saved_to: Path | None = None
        self._changed = False  # the offset changed since the last save

    @property
    def held_s(self) -> float:
        """Timeline minus system clock: 0 while following, the step's opposite while holding."""
        return self._offset

    def now(self) -> datetime:
        """The current stamp, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def timestamp(self) -> float:
        """The current stamp, in seconds since the epoch."""
        with self._lock:
            wall, elapsed = self._wall(), self._elapsed()
            expected = self._anchor[0] + (elapsed - self._anchor[1])
            gap = wall + self._offset - expected
            if abs(gap) > self.step_s:
                self._stepped(wall, expected, gap)
            elif self._holding and self._synchronized():
                self._record(expected, -self._offset, True, "the kernel's clock is synchronised")
                self._set_offset(0.0, holding=False)
            self._anchor = (wall + self._offset, elapsed)
            if self._changed:
                self._save()
            return self._anchor[0]

    def confirm(self, true_offset_s: float) -> None:
        """An SNTP check: true time is the system clock plus `true_offset_s`; adopt it if far."""
        with self._lock:
            wall, elapsed = self._wall(), self._elapsed()
            if abs(true_offset_s - self._offset) <= self.step_s:
                return
            stamp = self._anchor[0] + (elapsed - self._anchor[1])
            self._record(stamp, wall + true_offset_s - stamp, True, "confirmed by sntp")
            self._set_offset(true_offset_s, holding=False)
            self._anchor = (wall + self._offset, elapsed)
            self._save()

    def _stepped(self, wall: float, expected: float, gap: float) -> None:
        if abs(expected - wall) <= self.step_s:
            self._record(expected, gap, True, "the system clock is back on the timeline")
            self._set_offset(0.0, holding=False)
        elif self._synchronized():
            self._record(expected, gap, True, "the kernel's clock is synchronised")
            self._set_offset(0.0, holding=False)
        else:
            self._record(expected, gap, False, "the kernel's clock is not synchronised")
            self._set_offset(expected - wall, holding=True)

    def _set_offset(self, offset: float, *, holding: bool) -> None:
        self._offset, self._holding = offset, holding
        self._changed = True

    def _record(self, at: float, step_s: float, adopted: bool, reason: str) -> None:
        self.steps += 1
        self.last_step = ClockStep(datetime.fromtimestamp(at, UTC), step_s, adopted, reason)
        log.warning(
            "system clock stepped: adopted" if adopted else "system clock stepped: held",
            step_s=round(step_s, 3),
            reason=reason,
        )

    # --- surviving a restart of the agent ---

    def keep_in(self, path: Path) -> None:
        """Restore a held offset saved at `path` during this machine boot; save changes there."""
        self._saved_to = path
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning(
                "saved clock state unreadable: starting on the system clock", error=str(err)
            )
            return
        if saved.get("kernel_boot") != _kernel_boot() or not saved.get("held_s"):
            return
        with self._lock:
            elapsed = self._elapsed()
            stamp = float(saved["stamp"]) + (elapsed - float(saved["elapsed"]))
            self._offset = stamp - self._wall()
            self._holding = bool(saved.get("holding", True))
            self._anchor = (stamp, elapsed)
        log.warning("clock step still held from before the restart", held_s=round(self._offset, 3))

    def _save(self) -> None:
        self._changed = False
        if self._saved_to is None:
            return
        state = {
            "kernel_boot": _kernel_boot(),
            "stamp": self._anchor[0],
            "elapsed": self._anchor[1],
            "held_s": self._offset,
            "holding": self._holding,
        }
        temporary = self._saved_to.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(state))
            temporary.replace(self._saved_to)
        except OSError as err:  # a full disk must not stop the stamps
            log.warning("clock state not saved", error=str(err))


#: The process's timeline: one machine, one clock; the agent configures it at start.
TIMELINE = Timeline()


def gateway_now() -> datetime:
    """The agent's current stamp (see `Timeline`)."""
    return TIMELINE.now()
