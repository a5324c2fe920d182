"""An NMEA 0183 GPS receiver on a serial port: RMC and GGA sentences to position and fix.

Reported metrics: see `edge.line_decoding`. Streaming: `run(emit, stop)`.
"""

from __future__ import annotations

from collections import Counter

from edge.drivers.serial_lines import SerialLineConfig, SerialLineDriver
from edge.line_decoding import NmeaDecoder


class NmeaGpsConfig(SerialLineConfig):
    """A GPS receiver sending NMEA 0183 at (usually) 9600 baud, once per second."""

    require_checksum: bool = True

    def decoder(self, errors: Counter[str]) -> NmeaDecoder:
        """A fresh decoder for this receiver's sentences (NMEA has no sequence to count)."""
        del errors
        return NmeaDecoder(require_checksum=self.require_checksum)


class NmeaGpsDriver(SerialLineDriver):
    """Streaming driver of one GPS receiver."""

    def __init__(self, config: NmeaGpsConfig) -> None:
        super().__init__(config)
