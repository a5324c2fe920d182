"""A gateway's wall clock that the chaos suite can step, as NTP or an operator would.

The agent runs with a small LD_PRELOAD library that adds an offset, read from a file, to
CLOCK_REALTIME (clock_gettime, gettimeofday, time). CLOCK_MONOTONIC and CLOCK_BOOTTIME are
left alone, exactly as a real step of the system clock leaves them, and `adjtimex` says the
clock is not synchronised while the offset is not 0, as after `date -s`. (libfaketime would
do, but 0.9.10 breaks Python's monotonic sleeps when monotonic time is not faked:
clock_nanosleep gets a negative deadline.) The library is compiled once with the system C
compiler into the work directory.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

static long long cached_ns = 0;
static struct timespec checked = {0, 0};

static long long offset_ns(void) {
    static int (*real)(clockid_t, struct timespec *) = 0;
    struct timespec now;
    if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
    real(CLOCK_MONOTONIC, &now);
    long long since = (now.tv_sec - checked.tv_sec) * 1000000000LL + now.tv_nsec - checked.tv_nsec;
    if (checked.tv_sec == 0 || since > 50000000LL) {
        const char *path = getenv("LW_CLOCK_OFFSET_FILE");
        FILE *f = path ? fopen(path, "r") : 0;
        double seconds = 0;
        if (f) { if (fscanf(f, "%lf", &seconds) != 1) seconds = 0; fclose(f); }
        cached_ns = (long long)(seconds * 1e9);
        checked = now;
    }
    return cached_ns;
}

static int shifted(clockid_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *) = 0;
    if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && shifted(id)) {
        long long ns = ts->tv_sec * 1000000000LL + ts->tv_nsec + offset_ns();
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

/* A clock set by hand is not synchronised: settimeofday makes the kernel say so
   (TIME_ERROR), and the agent holds such a step (edge/clock.py). Passed through at offset 0. */
int adjtimex(struct timex *buf) {
    static int (*real)(struct timex *) = 0;
    if (!real) real = dlsym(RTLD_NEXT, "adjtimex");
    int rc = real(buf);
    return (rc >= 0 && offset_ns() != 0) ? TIME_ERROR : rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
"""


class ClockShimError(Exception):
    """The clock library could not be built (no C compiler, or it failed)."""


def build_clock_shim(workdir: Path) -> Path:
    """Compile the offset library into `workdir`; its path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ClockShimError(
            "the clock-jump fault needs a C compiler (Debian: apt-get install gcc)"
        )
    source, library = workdir / "clockshift.c", workdir / "libclockshift.so"
    source.write_text(_SOURCE)
    result = subprocess.run(  # noqa: S603 - fixed argv
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClockShimError(f"building the clock library failed:\n{result.stderr}")
    return library


class GatewayClock:
    """The offset file one gateway's agent reads; `step()` moves its wall clock."""

    def __init__(self, library: Path, offset_file: Path) -> None:
        """Start at the true time (offset 0)."""
        self.library = library
        self.offset_file = offset_file
        self.offset_s = 0.0
        self.step(0.0)

    def env(self) -> dict[str, str]:
        """The environment that puts the agent on this clock."""
        return {"LD_PRELOAD": str(self.library), "LW_CLOCK_OFFSET_FILE": str(self.offset_file)}

    def step(self, offset_s: float) -> None:
        """Set the clock to true time + offset_s (seen by the agent within 50 ms)."""
        temporary = self.offset_file.with_suffix(".tmp")
        temporary.write_text(f"{offset_s}\n")
        temporary.replace(self.offset_file)
        self.offset_s = offset_s
