"""Sentence formatting shared by the simulated line sensors: NMEA framing and coordinates."""

from __future__ import annotations


def checksum(body: str) -> str:
    """NMEA checksum of a sentence body: XOR of its bytes, two uppercase hex digits."""
    value = 0
    for byte in body.encode("ascii"):
        value ^= byte
    return f"{value:02X}"


def frame(body: str, *, bad_checksum: bool = False) -> bytes:
    """`$body*HH` and CR LF; with `bad_checksum`, a checksum that cannot match."""
    good = checksum(body)
    check = f"{int(good, 16) ^ 0x5A:02X}" if bad_checksum else good
    return f"${body}*{check}\r\n".encode("ascii")


def nmea_coordinate(value: float, *, longitude: bool) -> tuple[str, str, float]:
    """NMEA `(d)ddmm.mmmmm`, hemisphere, and the decimal degrees that text stands for."""
    hemisphere = ("E" if value >= 0 else "W") if longitude else ("N" if value >= 0 else "S")
    magnitude = abs(value)
    degrees = int(magnitude)
    minutes = round((magnitude - degrees) * 60, 5)
    if minutes >= 60:  # 59.999996 rounds up to the next degree
        degrees, minutes = degrees + 1, 0.0
    text = f"{degrees:03d}{minutes:08.5f}" if longitude else f"{degrees:02d}{minutes:08.5f}"
    decimal = degrees + float(text[-8:]) / 60
    return text, hemisphere, round(decimal if value >= 0 else -decimal, 7)
