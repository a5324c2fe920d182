"""Serial line sensors: bytes to sentences to values, pure and I/O free.

Both sensors speak NMEA-style sentences: `$<fields separated by commas>*<HH>` then CR LF, where
HH is the XOR of every byte between `$` and `*` as two hex digits. A sentence that fails its
checksum, or any bytes that are not a sentence, is rejected and counted under a reason
(`garbage`, `too_long`, `no_checksum`, `checksum`, `malformed`, `out_of_range`, `other_band`).

The clamp-on wristband (an accelerometer band on the machine housing, 1-10 lines per second):

    $WB,<band>,<seq>,<rms_x>,<rms_y>,<rms_z>,<peak>,<temp>,<battery>*<HH>
    $WB,A1B2,1234,1.23,0.98,2.41,14.70,36.5,87*34

    band     band id, 1-16 letters, digits or '-'
    seq      line counter 0..65535, +1 per line, wraps; a jump counts the lines lost
    rms_x/y/z  vibration velocity RMS per axis, mm/s (10-1000 Hz band, ISO 20816), >= 0
    peak     peak acceleration over the line's window, m/s2, >= 0
    temp     band temperature, degC, -40..125
    battery  battery charge, %, 0..100

It reports vibration_rms_x/_y/_z, vibration_rms (the vector sum of the axes), vibration_peak,
band_temperature and battery. The NMEA 0183 GPS reports, from RMC and GGA sentences of any
talker (GP, GN, GL, ...): latitude and longitude (deg, once per fix time), speed (km/h), course
(deg), fix_quality (0 = no fix), satellites, hdop and altitude (m). A sentence without a fix
gives no position, speed or course: missing, never 0,0. Other sentence types are ignored.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

MAX_LINE_BYTES = 128
_SPLIT = re.compile(rb"\n|(?=\$)")
_BOUNDARY = re.compile(rb"[\n$]")
_BAND_ID = re.compile(r"^[A-Za-z0-9-]{1,16}$")
_KNOTS_TO_KMH = 1.852


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value a sentence carries: metric, value and unit, not yet stamped or named."""

    metric: str
    value: float
    unit: str = ""


class LineError(ValueError):
    """A line that cannot be used; `reason` is the key it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LineDecoder(Protocol):
    """Turns one sentence into measurements, or raises LineError."""

    def decode(self, line: bytes) -> list[Measurement]:
        """Measurements of one sentence (empty when it carries none)."""
        ...


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between `$` and `*`."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def sentence_fields(line: bytes, *, require_checksum: bool = True) -> list[str]:
    """Fields of a checked sentence (`$GPRMC,...*HH` -> ["GPRMC", ...])."""
    if len(line) > MAX_LINE_BYTES:
        raise LineError("too_long", f"{len(line)} bytes, at most {MAX_LINE_BYTES}")
    if not line.startswith(b"$"):
        raise LineError("garbage", f"not a sentence: {line[:24]!r}")
    body, star, tail = line[1:].partition(b"*")
    if star:
        if not re.fullmatch(rb"[0-9A-Fa-f]{2}", tail):
            raise LineError("malformed", f"checksum field {tail[:8]!r}")
        if int(tail, 16) != nmea_checksum(body):
            raise LineError("checksum", f"{tail.decode()} != {nmea_checksum(body):02X}")
    elif require_checksum:
        raise LineError("no_checksum", "sentence has no *HH checksum")
    if not all(0x20 <= b <= 0x7E for b in body):
        raise LineError("garbage", "sentence holds non-printable bytes")
    return body.decode("ascii").split(",")


class LineReader:
    """Cuts a byte stream into sentences and decodes them, counting what it rejects."""

    def __init__(self, decoder: LineDecoder, errors: Counter[str] | None = None) -> None:
        self.decoder = decoder
        self.errors: Counter[str] = Counter() if errors is None else errors
        self.sentences = 0
        self._pending = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[list[Measurement]]:
        """Measurements of every complete sentence in `data` (one list per sentence)."""
        buffer = self._pending + data
        if self._discarding:  # the rest of an overlong line, up to the next line or sentence
            end = _BOUNDARY.search(buffer)
            if end is None:
                self._pending = b""
                return []
            self._discarding = False
            buffer = buffer[end.start() :]
        pieces = _SPLIT.split(buffer)
        self._pending = pieces.pop()
        if len(self._pending) > MAX_LINE_BYTES:  # no end in sight: count it, drop the rest
            self.errors["too_long"] += 1
            self._pending = b""
            self._discarding = True
        decoded: list[list[Measurement]] = []
        for piece in pieces:
            line = piece.strip()
            if not line:
                continue
            try:
                measurements = self.decoder.decode(line)
            except LineError as err:
                self.errors[err.reason] += 1
                continue
            self.sentences += 1
            if measurements:
                decoded.append(measurements)
        return decoded


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise LineError("malformed", f"{name} {text!r} is not a number") from err
    if not math.isfinite(value):
        raise LineError("malformed", f"{name} {text!r} is not finite")
    return value


def _bounded(value: float, name: str, low: float, high: float) -> float:
    if not low <= value <= high:
        raise LineError("out_of_range", f"{name} {value} outside {low}..{high}")
    return value


class WristbandDecoder:
    """Decodes `$WB` lines of one band (or any band when `band_id` is None)."""

    def __init__(self, band_id: str | None = None, errors: Counter[str] | None = None) -> None:
        self.band_id = band_id
        self.errors: Counter[str] = Counter() if errors is None else errors
        self._last_seq: int | None = None

    def decode(self, line: bytes) -> list[Measurement]:
        """Measurements of one wristband line."""
        fields = sentence_fields(line)
        if fields[0] != "WB" or len(fields) != 9:
            raise LineError("malformed", f"not a 9-field $WB line: {fields[0]!r}, {len(fields)}")
        band, seq_text = fields[1], fields[2]
        if not _BAND_ID.match(band) or not seq_text.isdigit() or int(seq_text) > 0xFFFF:
            raise LineError("malformed", f"band {band!r} or sequence {seq_text!r}")
        if self.band_id is not None and band != self.band_id:
            raise LineError("other_band", f"line from band {band!r}")
        rms = [_bounded(_number(t, "rms"), "rms", 0.0, 1000.0) for t in fields[3:6]]
        peak = _bounded(_number(fields[6], "peak"), "peak", 0.0, 2000.0)
        temp = _bounded(_number(fields[7], "temp"), "temp", -40.0, 125.0)
        battery = _bounded(_number(fields[8], "battery"), "battery", 0.0, 100.0)
        self._track_sequence(int(seq_text))
        x, y, z = rms
        return [
            Measurement("vibration_rms_x", x, "mm/s"),
            Measurement("vibration_rms_y", y, "mm/s"),
            Measurement("vibration_rms_z", z, "mm/s"),
            Measurement("vibration_rms", round(math.sqrt(x * x + y * y + z * z), 3), "mm/s"),
            Measurement("vibration_peak", peak, "m/s2"),
            Measurement("band_temperature", temp, "degC"),
            Measurement("battery", battery, "%"),
        ]

    def _track_sequence(self, seq: int) -> None:
        """Count lines lost between two sequence numbers; a big jump back is a band restart."""
        last, self._last_seq = self._last_seq, seq
        if last is None:
            return
        gap = (seq - last - 1) % 0x10000
        if gap >= 0x8000:
            self.errors["band_restart"] += 1
        elif gap:
            self.errors["lines_lost"] += gap


def _coordinate(value: str, hemisphere: str, *, longitude: bool) -> float:
    """Decimal degrees from NMEA `dddmm.mmmm` and N/S/E/W."""
    axis, signs, digits = ("longitude", "EW", 3) if longitude else ("latitude", "NS", 2)
    match = re.fullmatch(rf"(\d{{{digits}}})(\d{{2}}(?:\.\d+)?)", value)
    if match is None or len(hemisphere) != 1 or hemisphere not in signs:
        raise LineError("malformed", f"{axis} {value!r} {hemisphere!r}")
    degrees, minutes = int(match[1]), float(match[2])
    decimal = degrees + minutes / 60
    if minutes >= 60 or decimal > (180 if longitude else 90):
        raise LineError("out_of_range", f"{axis} {value!r}")
    return round(-decimal if hemisphere == signs[1] else decimal, 7)


def _fix_time(text: str) -> float | None:
    """Seconds of the day of an NMEA `hhmmss.ss` time, None when absent."""
    match = re.fullmatch(r"(\d{2})(\d{2})(\d{2}(?:\.\d+)?)", text)
    if match is None:
        return None
    return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])


class NmeaDecoder:
    """Decodes RMC and GGA sentences; position is reported once per fix time."""

    def __init__(self, *, require_checksum: bool = True) -> None:
        self.require_checksum = require_checksum
        self._position_time: float | None = None

    def decode(self, line: bytes) -> list[Measurement]:
        """Measurements of one NMEA sentence (empty for sentences it does not use)."""
        fields = sentence_fields(line, require_checksum=self.require_checksum)
        address = fields[0]
        if re.fullmatch(r"[A-Z]{2}RMC", address):
            return self._rmc(fields)
        if re.fullmatch(r"[A-Z]{2}GGA", address):
            return self._gga(fields)
        if not re.fullmatch(r"[A-Z0-9]{3,6}", address):
            raise LineError("malformed", f"sentence address {address[:8]!r}")
        return []

    def _position(self, fields: list[str], at: int, time_text: str) -> list[Measurement]:
        """Latitude and longitude from fields[at:at+4], unless this fix time gave them already."""
        latitude = _coordinate(fields[at], fields[at + 1], longitude=False)
        longitude = _coordinate(fields[at + 2], fields[at + 3], longitude=True)
        fix_time = _fix_time(time_text)
        if fix_time is not None and fix_time == self._position_time:
            return []
        self._position_time = fix_time
        return [
            Measurement("latitude", latitude, "deg"),
            Measurement("longitude", longitude, "deg"),
        ]

    def _rmc(self, fields: list[str]) -> list[Measurement]:
        """RMC: position, speed over ground and course when the status is valid (A)."""
        if len(fields) < 12 or fields[2] not in {"A", "V"}:
            raise LineError("malformed", f"RMC with {len(fields)} fields, status {fields[2:3]}")
        mode = fields[12] if len(fields) > 12 else "A"
        if fields[2] != "A" or mode == "N":
            return []
        measurements = self._position(fields, 3, fields[1])
        if fields[7]:
            knots = _bounded(_number(fields[7], "speed"), "speed", 0.0, 2000.0)
            measurements.append(Measurement("speed", round(knots * _KNOTS_TO_KMH, 3), "km/h"))
        if fields[8]:
            course = _bounded(_number(fields[8], "course"), "course", 0.0, 360.0)
            measurements.append(Measurement("course", course, "deg"))
        return measurements

    def _gga(self, fields: list[str]) -> list[Measurement]:
        """GGA: fix quality and satellites always; position, HDOP and altitude with a fix."""
        if len(fields) < 14 or not fields[6].isdigit():
            raise LineError("malformed", f"GGA with {len(fields)} fields, quality {fields[6:7]}")
        quality = int(fields[6])
        measurements = [Measurement("fix_quality", float(quality))]
        if fields[7]:
            satellites = _bounded(_number(fields[7], "satellites"), "satellites", 0, 99)
            measurements.append(Measurement("satellites", satellites))
        if quality == 0:
            return measurements
        measurements[:0] = self._position(fields, 2, fields[1])
        if fields[8]:
            hdop = _bounded(_number(fields[8], "hdop"), "hdop", 0.0, 99.99)
            measurements.append(Measurement("hdop", hdop))
        if fields[9] and fields[10] == "M":
            measurements.append(Measurement("altitude", _number(fields[9], "altitude"), "m"))
        return measurements
