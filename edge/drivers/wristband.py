"""The clamp-on wristband: an accelerometer band that sends `$WB` vibration lines on a serial port.

Line format and reported metrics: see `edge.line_decoding`. Streaming: `run(emit, stop)`.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import Field, StringConstraints

from edge.drivers.serial_lines import SerialLineConfig, SerialLineDriver
from edge.line_decoding import WristbandDecoder

BandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,16}$")]


class WristbandConfig(SerialLineConfig):
    """A wristband on a serial port (USB dongle or UART), 1-10 lines per second."""

    baudrate: Annotated[int, Field(ge=300, le=921_600)] = 115_200
    band_id: BandId | None = None

    def decoder(self, errors: Counter[str]) -> WristbandDecoder:
        """A fresh decoder for this band's lines (lost lines and restarts land in `errors`)."""
        return WristbandDecoder(self.band_id, errors)


class WristbandDriver(SerialLineDriver):
    """Streaming driver of one wristband."""

    def __init__(self, config: WristbandConfig) -> None:
        super().__init__(config)
