"""The wristband and NMEA GPS drivers against the simulated sensors on real ptys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from edge.drivers.nmea_gps import NmeaGpsConfig, NmeaGpsDriver
from edge.drivers.serial_lines import SerialLineDriver
from edge.drivers.wristband import WristbandConfig, WristbandDriver
from firmware_sim.machine import HeldMachine
from firmware_sim.pty_pair import PtyPair
from firmware_sim.serial_sensors.emitter import EmittedLine, GpsEmitter, WristbandEmitter
from firmware_sim.serial_sensors.models import GpsTrack, WristbandModel
from leasewatch.wire import Reading

MUNICH, AIRPORT = (48.1374, 11.5755), (48.3538, 11.7861)


@dataclass
class Running:
    """A streaming driver running as the agent runs it, collecting what it emits."""

    driver: SerialLineDriver
    readings: list[Reading] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, readings: list[Reading]) -> None:
        self.readings.extend(readings)


@contextlib.asynccontextmanager
async def _running(driver: SerialLineDriver) -> AsyncIterator[Running]:
    running = Running(driver)
    task = asyncio.create_task(driver.run(running.emit, running.stop))
    for _ in range(100):  # wait for the port to open: bytes sent before are not for us
        if driver.is_open or driver.errors:
            break
        await asyncio.sleep(0.01)
    try:
        yield running
    finally:
        running.stop.set()
        await asyncio.wait_for(task, timeout=3)


@pytest.fixture
async def band_pty() -> AsyncIterator[PtyPair]:
    async with PtyPair() as pair:
        yield pair


async def _wait_for(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def _emitted_values(lines: list[EmittedLine]) -> list[tuple[str, float]]:
    return [item for line in lines for item in line.values.items()]


def _got(readings: list[Reading]) -> list[tuple[str, float]]:
    return [(r.metric, r.value) for r in readings]


async def test_wristband_values_are_what_the_band_sent(band_pty: PtyPair) -> None:
    machine = HeldMachine(running=True, temperature=41.5, vibration_rms=6.2)
    config = WristbandConfig(sensor="band", port=band_pty.client_path, band_id="B7")
    async with _running(WristbandDriver(config)) as running:
        band = WristbandEmitter(WristbandModel(machine), band_pty.device_path, "B7", rate_hz=10)
        async with band:
            await _wait_for(lambda: len(band.emitted) >= 8)
        await _wait_for(lambda: len(running.readings) == 7 * len(band.emitted))
    assert _got(running.readings) == _emitted_values(list(band.emitted))
    units = {r.metric: r.unit for r in running.readings}
    assert units == {
        "vibration_rms_x": "mm/s",
        "vibration_rms_y": "mm/s",
        "vibration_rms_z": "mm/s",
        "vibration_rms": "mm/s",
        "vibration_peak": "m/s2",
        "band_temperature": "degC",
        "battery": "%",
    }
    overall = [r.value for r in running.readings if r.metric == "vibration_rms"]
    assert all(v == pytest.approx(6.2, rel=0.06) for v in overall)
    stamps = [r.ts for r in running.readings if r.metric == "battery"]
    assert stamps == sorted(set(stamps)), "one distinct, increasing time per line"
    assert not running.driver.errors


async def test_garbage_and_bad_checksums_are_counted_and_skipped(band_pty: PtyPair) -> None:
    machine = HeldMachine(running=True, vibration_rms=3.0)
    config = WristbandConfig(sensor="band", port=band_pty.client_path)
    async with _running(WristbandDriver(config)) as running:
        async with WristbandEmitter(WristbandModel(machine), band_pty.device_path) as band:
            band.faults.garbage = True
            await _wait_for(lambda: len(band.emitted) >= 5)
            band.faults.garbage, band.faults.bad_checksum = False, True
            await _wait_for(lambda: len(band.emitted) >= 10)
            band.faults.bad_checksum = False
            await _wait_for(lambda: len(band.emitted) >= 15)
        await _wait_for(lambda: running.driver.sentences >= 10)
    emitted = list(band.emitted)
    garbage = sum(1 for line in emitted if line.fault == "garbage")
    bad = sum(1 for line in emitted if line.fault == "bad_checksum")
    errors = running.driver.errors
    assert (errors["garbage"], errors["checksum"]) == (garbage, bad)
    assert errors["lines_lost"] == bad  # their sequence numbers never arrived
    assert _got(running.readings) == _emitted_values(emitted)  # the good lines, all of them


async def test_gps_track_and_fix_loss(band_pty: PtyPair) -> None:
    track = GpsTrack([MUNICH, AIRPORT], datetime.now(UTC), speed_kmh=90.0, dwell_s=0.3)
    config = NmeaGpsConfig(sensor="gps", port=band_pty.client_path)
    async with _running(NmeaGpsDriver(config)) as running:
        async with GpsEmitter(track, band_pty.device_path, "GN", rate_hz=10) as gps:
            await _wait_for(lambda: len(gps.emitted) >= 12)
            gps.no_fix = True
            await _wait_for(lambda: len(gps.emitted) >= 20)
        await _wait_for(lambda: running.driver.sentences >= len(gps.emitted))
    emitted = list(gps.emitted)
    assert _got(running.readings) == _emitted_values(emitted)
    metrics = [r.metric for r in running.readings]
    assert {"latitude", "longitude", "speed", "course", "hdop", "altitude"} <= set(metrics)
    assert metrics.count("latitude") == sum(1 for line in emitted if "latitude" in line.values)
    after_loss = running.readings[-4:]
    assert [(r.metric, r.value) for r in after_loss] == [
        ("fix_quality", 0.0),
        ("satellites", 0.0),
        ("fix_quality", 0.0),
        ("satellites", 0.0),
    ]
    units = {r.metric: r.unit for r in running.readings}
    assert (units["latitude"], units["speed"], units["altitude"]) == ("deg", "km/h", "m")
    assert not running.driver.errors


async def test_silence_is_counted_once_and_ends_when_the_sensor_speaks(band_pty: PtyPair) -> None:
    machine = HeldMachine(running=True, vibration_rms=1.0)
    config = WristbandConfig(sensor="band", port=band_pty.client_path, silence_timeout=0.4)
    band = WristbandEmitter(WristbandModel(machine), band_pty.device_path)
    async with _running(WristbandDriver(config)) as running, band:
        await _wait_for(lambda: running.driver.sentences >= 2)
        band.faults.silent = True
        await _wait_for(lambda: running.driver.silent)
        await asyncio.sleep(0.6)
        assert running.driver.errors["silence"] == 1
        band.faults.silent = False
        await _wait_for(lambda: not running.driver.silent)
    assert running.driver.errors == {"silence": 1}


async def test_a_missing_port_is_retried_and_stop_is_prompt() -> None:
    config = NmeaGpsConfig(sensor="gps", port="/dev/does-not-exist", reopen_delay=0.1)
    async with _running(NmeaGpsDriver(config)) as running:
        await _wait_for(lambda: running.driver.errors["port"] >= 3)
    assert running.readings == []
