"""Streaming drivers for sensors that send lines on a serial port (wristband, NMEA GPS).

The port is opened with pyserial (baud rate, parity, exclusive lock) and read through the event
loop (`connect_read_pipe`): no thread, no polling. Every chunk that arrives is cut into
sentences and decoded by a pure `LineReader`; the readings of each chunk are handed to `emit` as
soon as they are decoded. Garbage and bad checksums are counted and skipped; a port that fails is
reopened after `reopen_delay`; a sensor that sends nothing valid for `silence_timeout` seconds is
counted once as silent until it speaks again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import serial
import structlog
from pydantic import BaseModel, ConfigDict, Field

from edge.clock import gateway_now
from edge.line_decoding import LineDecoder, LineReader, Measurement
from leasewatch.wire import Reading, SensorName

log = structlog.get_logger(__name__)

Emit = Callable[[list[Reading]], Awaitable[None]]
_CHUNK_BYTES = 4096
_TICK_S = 0.5
_MIN_STEP = timedelta(milliseconds=1)


class SerialLineConfig(BaseModel):
    """A sensor that sends text lines on a serial port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensor: SensorName
    port: str
    baudrate: Annotated[int, Field(ge=300, le=921_600)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    silence_timeout: Annotated[float, Field(gt=0, le=3600)] = 5.0
    reopen_delay: Annotated[float, Field(gt=0, le=600)] = 2.0

    def decoder(self, errors: Counter[str]) -> LineDecoder:
        """A fresh decoder for this sensor's sentences, counting anomalies in `errors`."""
        raise NotImplementedError


class SerialLineDriver:
    """Reads one serial line sensor until stopped; `run(emit, stop)` is its whole life."""

    def __init__(self, config: SerialLineConfig) -> None:
        self.config = config
        self.errors: Counter[str] = Counter()
        self.reader = LineReader(config.decoder(self.errors), self.errors)
        self.is_open = False
        self.silent = False
        self.polled: tuple[()] = ()
        self.streaming: tuple[SerialLineDriver, ...] = (self,)
        self._last_heard = time.monotonic()
        self._last_ts = datetime.min.replace(tzinfo=UTC)

    @property
    def sensor(self) -> str:
        """Sensor name of every reading this driver produces."""
        return self.config.sensor

    @property
    def sentences(self) -> int:
        """Valid sentences decoded so far."""
        return self.reader.sentences

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        """Read the port and emit readings until `stop` is set; reopen the port when it fails."""
        self._last_heard = time.monotonic()
        while not stop.is_set():
            try:
                await self._session(emit, stop)
            except OSError as err:  # serial.SerialException is an OSError too
                self.errors["port"] += 1
                log.warning("serial sensor port failed", sensor=self.sensor, detail=str(err))
            try:
                await asyncio.wait_for(stop.wait(), self.config.reopen_delay)
            except TimeoutError:
                continue

    def close(self) -> None:
        """Nothing to release outside `run()`: the port closes when `run()` returns."""

    async def _session(self, emit: Emit, stop: asyncio.Event) -> None:
        """One opening of the port: read chunks until stopped or the port fails."""
        port = await asyncio.to_thread(self._open)
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=_CHUNK_BYTES * 4)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), port
        )
        self.is_open = True
        stopped = asyncio.create_task(stop.wait())
        reading: asyncio.Task[bytes] | None = None
        try:
            while not stop.is_set():
                reading = reading or asyncio.create_task(stream.read(_CHUNK_BYTES))
                done, _ = await asyncio.wait(
                    {reading, stopped}, timeout=_TICK_S, return_when=asyncio.FIRST_COMPLETED
                )
                if reading not in done:
                    self._check_silence()
                    continue
                chunk, reading = reading.result(), None
                if not chunk:
                    raise OSError(f"{self.config.port}: end of file (device gone)")
                await self._handle(chunk, emit)
        finally:
            self.is_open = False
            for task in (stopped, reading):
                if task is not None:
                    task.cancel()
            transport.close()

    def _open(self) -> serial.Serial:
        return serial.Serial(
            port=self.config.port,
            baudrate=self.config.baudrate,
            parity=self.config.parity,
            bytesize=self.config.bytesize,
            stopbits=self.config.stopbits,
            timeout=0,
            exclusive=True,
        )

    async def _handle(self, chunk: bytes, emit: Emit) -> None:
        """Decode a chunk and emit its readings; a valid sentence ends a silence."""
        before = self.reader.sentences
        decoded = self.reader.feed(chunk)
        if self.reader.sentences > before:
            self._last_heard = time.monotonic()
            if self.silent:
                self.silent = False
                log.info("serial sensor speaks again", sensor=self.sensor)
        else:
            self._check_silence()
        readings = [r for measurements in decoded for r in self._stamp(measurements)]
        if readings:
            await emit(readings)

    def _stamp(self, measurements: list[Measurement]) -> list[Reading]:
        """Readings of one sentence, stamped on arrival; strictly later than the previous one."""
        ts = max(gateway_now(), self._last_ts + _MIN_STEP)
        self._last_ts = ts
        return [
            Reading(sensor=self.sensor, metric=m.metric, ts=ts, value=m.value, unit=m.unit)
            for m in measurements
        ]

    def _check_silence(self) -> None:
        """Count a silence once when nothing valid arrived for `silence_timeout` seconds."""
        quiet = time.monotonic() - self._last_heard
        if not self.silent and quiet > self.config.silence_timeout:
            self.silent = True
            self.errors["silence"] += 1
            log.warning("serial sensor silent", sensor=self.sensor, seconds=round(quiet, 1))
