"""The simulated wristband and GPS: models, sentence text, and emitters on a real pty."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.machine import HeldMachine
from firmware_sim.pty_pair import PtyPair
from firmware_sim.serial_sensors.emitter import GpsEmitter, WristbandEmitter
from firmware_sim.serial_sensors.models import GpsTrack, WristbandModel
from firmware_sim.serial_sensors.sentences import checksum, frame, nmea_coordinate

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DEPOT, SITE = (52.5200, 13.4050), (52.5300, 13.4200)


def test_checksum_and_frame() -> None:
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    assert checksum(body) == "47"
    assert frame(body) == f"${body}*47\r\n".encode()
    assert frame(body, bad_checksum=True) != frame(body)


@pytest.mark.parametrize(
    ("value", "longitude", "expected"),
    [
        (48.1173, False, ("4807.03800", "N", 48.1173)),
        (-33.85752, False, ("3351.45120", "S", -33.85752)),
        (-151.2111833, True, ("15112.67100", "W", -151.2111833)),
        (11.9999999999, True, ("01200.00000", "E", 12.0)),
    ],
)
def test_nmea_coordinates(value: float, longitude: bool, expected: tuple[str, str, float]) -> None:
    assert nmea_coordinate(value, longitude=longitude) == expected


def test_the_band_shares_the_machines_vibration_over_its_axes() -> None:
    machine = HeldMachine(running=True, vibration_rms=5.0, temperature=50.0)
    band = WristbandModel(machine, seed=3, drain_per_hour=2.0)
    first = band.sample(T0)
    assert math.sqrt(sum(v * v for v in first.rms)) == pytest.approx(5.0, rel=0.05)
    assert first.temperature == 47.0
    assert first.peak > 0
    later = band.sample(T0 + timedelta(hours=2))
    assert later.battery == pytest.approx(first.battery - 4.0)
    assert WristbandModel(machine, seed=3).sample(T0) == first  # deterministic


def test_the_track_waits_then_drives_to_the_next_site_and_back() -> None:
    track = GpsTrack([DEPOT, SITE], T0, speed_kmh=36.0, dwell_s=60.0)
    parked = track.fix(T0 + timedelta(seconds=30))
    assert (parked.latitude, parked.longitude, parked.speed_kmh) == (*DEPOT, 0.0)
    driving = track.fix(T0 + timedelta(seconds=90))
    assert driving.speed_kmh == 36.0
    assert DEPOT[0] < driving.latitude < SITE[0]
    assert 0 < driving.course < 90  # north-east
    # About 1.5 km at 10 m/s: on site from about 210 s to 270 s, back at the depot later.
    arrived = track.fix(T0 + timedelta(seconds=220))
    assert (arrived.latitude, arrived.longitude, arrived.speed_kmh) == (*SITE, 0.0)
    returning = track.fix(T0 + timedelta(seconds=300))
    assert 180 < returning.course < 270 and returning.speed_kmh == 36.0


class Listener:
    """The client side of a pty pair, opened once, read in windows."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)

    def drain(self) -> bytes:
        """Whatever has arrived so far."""
        data = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                return data
            data += chunk

    async def read_for(self, seconds: float) -> list[bytes]:
        """Lines that arrive within `seconds` (whatever was waiting is dropped first)."""
        self.drain()
        await asyncio.sleep(seconds)
        return self.drain().splitlines()


@pytest.fixture
async def listening() -> AsyncIterator[tuple[PtyPair, Listener]]:
    async with PtyPair() as pair:
        listener = Listener(pair.client_path)
        try:
            yield pair, listener
        finally:
            os.close(listener.fd)


def _good(line: bytes) -> bool:
    body, _, check = line.strip().lstrip(b"$").partition(b"*")
    return checksum(body.decode()) == check.decode()


async def test_the_wristband_emits_checked_lines_at_its_rate(
    listening: tuple[PtyPair, Listener],
) -> None:
    pair, listener = listening
    band = WristbandModel(HeldMachine(running=True, vibration_rms=2.0))
    async with WristbandEmitter(band, pair.device_path, "Z9", rate_hz=20) as emitter:
        lines = await listener.read_for(1.0)
    assert 12 <= len(lines) <= 24
    assert all(line.startswith(b"$WB,Z9,") and _good(line) for line in lines)
    sequence = [int(line.split(b",")[2]) for line in lines]
    assert sequence == list(range(sequence[0], sequence[0] + len(lines)))
    logged = [e.line.strip() for e in emitter.emitted]
    start = logged.index(lines[0])
    assert logged[start : start + len(lines)] == lines
    assert set(emitter.emitted[-1].values) >= {"vibration_rms", "battery", "band_temperature"}


async def test_the_wristband_fault_switches(listening: tuple[PtyPair, Listener]) -> None:
    pair, listener = listening
    band = WristbandModel(HeldMachine(running=True, vibration_rms=2.0))
    async with WristbandEmitter(band, pair.device_path, rate_hz=20) as emitter:
        emitter.faults.silent = True
        await asyncio.sleep(0.1)
        assert await listener.read_for(0.3) == []
        emitter.faults.silent, emitter.faults.bad_checksum = False, True
        bad = await listener.read_for(0.3)
        emitter.faults.bad_checksum, emitter.faults.garbage = False, True
        await asyncio.sleep(0.1)
        junk = await listener.read_for(0.3)
    assert bad and not any(_good(line) for line in bad)
    assert all(e.values == {} for e in emitter.emitted if e.fault == "bad_checksum")
    assert junk and all(not line.startswith(b"$") and b"$WB," in line for line in junk)
    assert all(_good(b"$" + line.split(b"$", 1)[1]) for line in junk)


async def test_the_gps_emits_rmc_and_gga_and_can_lose_its_fix(
    listening: tuple[PtyPair, Listener],
) -> None:
    pair, listener = listening
    track = GpsTrack([DEPOT, SITE], datetime.now(UTC), dwell_s=0.0)
    async with GpsEmitter(track, pair.device_path, "GN", rate_hz=10) as gps:
        fixed = await listener.read_for(0.5)
        gps.no_fix = True
        await asyncio.sleep(0.15)
        lost = await listener.read_for(0.4)
    assert {line[:6] for line in fixed} == {b"$GNRMC", b"$GNGGA"}
    assert all(_good(line) for line in fixed + lost)
    rmc = next(line for line in fixed if line.startswith(b"$GNRMC")).split(b",")
    assert rmc[2] == b"A" and rmc[4] == b"N" and rmc[6] == b"E"
    assert {line.split(b",")[2] for line in lost if line.startswith(b"$GNRMC")} == {b"V"}
    assert {line.split(b",")[6] for line in lost if line.startswith(b"$GNGGA")} == {b"0"}
    assert all("latitude" not in e.values for e in list(gps.emitted)[-4:])
