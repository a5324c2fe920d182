"""Emitters: simulated line sensors writing sentences to a serial device path at a fixed rate.

An emitter opens the device side of a `PtyPair` (or a real port) with pyserial, writes the lines
its model gives for each tick, and logs each line with the values a correct decoder must report
for it (nothing for a corrupted line). Writes never block: bytes the port cannot take are counted
in `dropped_bytes`, as a sensor with nobody listening would lose them.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import serial

from firmware_sim.modbus_slave import DEFAULT_LOG_SIZE, Clock, utc_now
from firmware_sim.serial_sensors.models import GpsTrack, WristbandModel
from firmware_sim.serial_sensors.sentences import frame, nmea_coordinate
from leasewatch.lifecycle import StartStop

_KNOTS_PER_KMH = 1 / 1.852


@dataclass
class LineFaults:
    """Fault switches of an emitter; flip them while it runs."""

    garbage: bool = False  # random non-sentence bytes before every line
    bad_checksum: bool = False  # every line's checksum is wrong
    silent: bool = False  # nothing is written at all


@dataclass(frozen=True, slots=True)
class EmittedLine:
    """One line written: when, its bytes, and what a correct decoder reports for it."""

    at: datetime
    line: bytes
    values: Mapping[str, float] = field(default_factory=dict)
    fault: str = ""


class LineEmitter(StartStop):
    """Base of the emitters: the tick loop, the faults, the port and the log."""

    def __init__(
        self,
        port_path: str,
        rate_hz: float,
        *,
        baudrate: int = 9600,
        seed: int = 0,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Describe the emitter; the port opens on `start()`."""
        if not 0 < rate_hz <= 100:
            raise ValueError("rate_hz must be in (0, 100]")
        self.port_path = port_path
        self.rate_hz = rate_hz
        self.baudrate = baudrate
        self.clock = clock
        self.faults = LineFaults()
        self.emitted: deque[EmittedLine] = deque(maxlen=log_size)
        self.dropped_bytes = 0
        self._random = random.Random(seed)
        self._port: serial.Serial | None = None
        self._task: asyncio.Task[None] | None = None

    def lines(self, now: datetime) -> list[tuple[str, dict[str, float]]]:
        """Sentence bodies for one tick, each with the values it carries."""
        raise NotImplementedError

    async def start(self) -> None:
        """Open the port and start emitting."""
        if self._task is not None:
            raise RuntimeError("emitter is already running")
        self._port = serial.Serial(self.port_path, self.baudrate, timeout=0, write_timeout=0)
        self._task = asyncio.create_task(self._run(), name=f"emitter:{self.port_path}")

    async def stop(self) -> None:
        """Stop emitting and close the port; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        port, self._port = self._port, None
        if port is not None:
            port.close()

    def emit_now(self) -> list[EmittedLine]:
        """Write one tick's lines now (what the loop does at each tick)."""
        if self.faults.silent:
            return []
        now = self.clock()
        written = []
        for body, values in self.lines(now):
            data, line = self._framed(body)
            fault = "garbage" if self.faults.garbage else ""
            fault = "bad_checksum" if self.faults.bad_checksum else fault
            entry = EmittedLine(now, line, {} if self.faults.bad_checksum else values, fault)
            self._write(data)
            self.emitted.append(entry)
            written.append(entry)
        return written

    def _framed(self, body: str) -> tuple[bytes, bytes]:
        """Bytes to write (garbage first, if asked) and the sentence itself."""
        line = frame(body, bad_checksum=self.faults.bad_checksum)
        if not self.faults.garbage:
            return line, line
        junk = bytes(self._random.choice(b"\x00\x7f\xff#@!~ABC123\x13") for _ in range(12))
        return junk + line, line  # no line break: the reader must resync on '$'

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise RuntimeError("emitter is not running")
        try:
            written = os.write(port.fileno(), data)
        except BlockingIOError:
            written = 0
        self.dropped_bytes += len(data) - written

    async def _run(self) -> None:
        """Emit at a fixed rate; a late tick is not made up for."""
        loop = asyncio.get_running_loop()
        period = 1 / self.rate_hz
        deadline = loop.time()
        while True:
            self.emit_now()
            deadline += period
            now = loop.time()
            if now > deadline:
                deadline = now + period - math.fmod(now - deadline, period)
            await asyncio.sleep(deadline - now)


class WristbandEmitter(LineEmitter):
    """A wristband sending `$WB` lines from a `WristbandModel`."""

    def __init__(
        self,
        model: WristbandModel,
        port_path: str,
        band_id: str = "A1B2",
        *,
        rate_hz: float = 10.0,
        baudrate: int = 115_200,
        seed: int = 0,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Emit `model`'s samples as band `band_id`, `rate_hz` lines per second."""
        super().__init__(
            port_path, rate_hz, baudrate=baudrate, seed=seed, log_size=log_size, clock=clock
        )
        self.model = model
        self.band_id = band_id
        self.seq = 0

    def lines(self, now: datetime) -> list[tuple[str, dict[str, float]]]:
        """One `$WB` line."""
        sample = self.model.sample(now)
        x, y, z = (f"{v:.2f}" for v in sample.rms)
        peak, temp, battery = f"{sample.peak:.2f}", f"{sample.temperature:.1f}", sample.battery
        body = f"WB,{self.band_id},{self.seq},{x},{y},{z},{peak},{temp},{int(battery)}"
        self.seq = (self.seq + 1) % 0x10000
        fx, fy, fz = float(x), float(y), float(z)
        values = {
            "vibration_rms_x": fx,
            "vibration_rms_y": fy,
            "vibration_rms_z": fz,
            "vibration_rms": round(math.sqrt(fx * fx + fy * fy + fz * fz), 3),
            "vibration_peak": float(peak),
            "band_temperature": float(temp),
            "battery": float(int(battery)),
        }
        return [(body, values)]


class GpsEmitter(LineEmitter):
    """A GPS receiver sending RMC then GGA for each fix of a `GpsTrack`."""

    def __init__(
        self,
        track: GpsTrack,
        port_path: str,
        talker: str = "GP",
        *,
        rate_hz: float = 1.0,
        baudrate: int = 9600,
        seed: int = 0,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock = utc_now,
    ) -> None:
        """Emit `track`'s fixes, `rate_hz` fixes (RMC + GGA) per second."""
        super().__init__(
            port_path, rate_hz, baudrate=baudrate, seed=seed, log_size=log_size, clock=clock
        )
        self.track = track
        self.talker = talker
        self.no_fix = False  # fault switch: the receiver lost its fix (tunnel, shed)

    def lines(self, now: datetime) -> list[tuple[str, dict[str, float]]]:
        """An RMC and a GGA sentence for the fix at `now`."""
        hhmmss = now.strftime("%H%M%S.") + f"{now.microsecond // 10_000:02d}"
        if self.no_fix:
            rmc = f"{self.talker}RMC,{hhmmss},V,,,,,,,{now:%d%m%y},,,N"
            gga = f"{self.talker}GGA,{hhmmss},,,,,0,00,,,M,,M,,"
            return [(rmc, {}), (gga, {"fix_quality": 0.0, "satellites": 0.0})]
        fix = self.track.fix(now)
        lat, ns, lat_value = nmea_coordinate(fix.latitude, longitude=False)
        lon, ew, lon_value = nmea_coordinate(fix.longitude, longitude=True)
        knots = f"{fix.speed_kmh * _KNOTS_PER_KMH:.2f}"
        moving = fix.speed_kmh >= 0.5
        course = f"{fix.course:.1f}" if moving else ""
        rmc = f"{self.talker}RMC,{hhmmss},A,{lat},{ns},{lon},{ew},{knots},{course},{now:%d%m%y},,,A"
        rmc_values = {"latitude": lat_value, "longitude": lon_value}
        rmc_values["speed"] = round(float(knots) * 1.852, 3)
        if moving:
            rmc_values["course"] = float(course)
        alt = f"{fix.altitude:.1f}"
        gga = f"{self.talker}GGA,{hhmmss},{lat},{ns},{lon},{ew},1,{fix.satellites:02d},"
        gga += f"{fix.hdop:.1f},{alt},M,46.9,M,,"
        gga_values = {"fix_quality": 1.0, "satellites": float(fix.satellites)}
        gga_values |= {"hdop": round(fix.hdop, 1), "altitude": float(alt)}
        return [(rmc, rmc_values), (gga, gga_values)]
