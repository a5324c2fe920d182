"""The gateway's report on itself: buffer, evictions, sensor errors, overruns, CPU, memory, clock.

`HealthReport.build` turns what the agent counted into a wire `GatewayHealth`. The clock offset
comes from one SNTP exchange with `health.ntp_server` when one is configured (RFC 4330:
offset = ((t2 - t1) + (t3 - t4)) / 2, positive when the gateway's clock is behind); MQTT carries
no time, so without an NTP server the offset is reported as unknown (None), never as 0.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psutil  # type: ignore[import-untyped]
import structlog

from edge.clock import Timeline, gateway_now
from edge.config import HealthConfig
from leasewatch.wire import GatewayHealth

log = structlog.get_logger(__name__)

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_NTP_PACKET = struct.Struct("!B B b b 11I")
_NTP_PORT = 123


@dataclass(frozen=True, slots=True)
class BufferFigures:
    """What the durable buffer holds and lost."""

    messages: int
    readings: int
    oldest_taken: datetime | None
    evicted_messages: int
    evicted_readings: int


def buffer_figures(stats: Mapping[str, int], oldest_taken: datetime | None) -> BufferFigures:
    """Figures of `ReadingBuffer.stats()`: sealed and pending readings, evicted and dropped."""
    return BufferFigures(
        messages=stats["outbox_messages"],
        readings=stats["outbox_readings"] + stats["pending_readings"],
        oldest_taken=oldest_taken,
        evicted_messages=stats["evicted_messages"],
        evicted_readings=stats["evicted_readings"] + stats["dropped_readings"],
    )


class ProcessMeter:
    """CPU share (of one core, since the last call) and resident memory of this process."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement

    def cpu_percent(self) -> float:
        """CPU used since the last call, in percent of one core."""
        return float(self._process.cpu_percent(None))

    def rss_bytes(self) -> int:
        """Resident set size."""
        return int(self._process.memory_info().rss)


def build_health(
    *,
    device: str,
    boot: str,
    uptime_s: float,
    buffer: BufferFigures,
    sensor_errors: Mapping[str, int],
    overruns: Mapping[str, int],
    meter: ProcessMeter | None,
    clock_offset_s: float | None,
    timeline: Timeline,
) -> GatewayHealth:
    """A GatewayHealth report from the agent's figures."""
    now = gateway_now()
    oldest_age = None
    if buffer.oldest_taken is not None:
        oldest_age = max(0.0, (now - buffer.oldest_taken).total_seconds())
    return GatewayHealth(
        device=device,
        boot=boot,
        ts=now,
        uptime_s=max(0.0, uptime_s),
        buffer_messages=buffer.messages,
        buffer_readings=buffer.readings,
        oldest_buffered_age_s=oldest_age,
        evicted_messages=buffer.evicted_messages,
        evicted_readings=buffer.evicted_readings,
        sensor_errors=dict(sensor_errors),
        overruns=dict(overruns),
        cpu_percent=None if meter is None else meter.cpu_percent(),
        rss_bytes=None if meter is None else meter.rss_bytes(),
        clock_offset_s=clock_offset_s,
        clock_steps=timeline.steps,
        clock_held_s=timeline.held_s,
    )


def _ntp_time(seconds: int, fraction: int) -> float:
    return seconds - NTP_EPOCH_OFFSET + fraction / 2**32


def _ntp_request(now: float) -> bytes:
    """An SNTP v4 client request carrying its transmit time."""
    seconds = int(now) + NTP_EPOCH_OFFSET
    fraction = int((now % 1) * 2**32)
    fields = [0] * 11
    fields[9], fields[10] = seconds, fraction
    return _NTP_PACKET.pack(0x23, 0, 0, 0, *fields)  # LI 0, version 4, mode 3 (client)


def ntp_offset(request_sent: float, reply: bytes, reply_received: float) -> float:
    """Clock offset from one SNTP reply (server time minus ours)."""
    if len(reply) < _NTP_PACKET.size:
        raise ValueError(f"SNTP reply of {len(reply)} bytes is too short")
    fields = _NTP_PACKET.unpack(reply[: _NTP_PACKET.size])
    mode, stratum = fields[0] & 0x7, fields[1]
    if mode != 4 or stratum == 0:
        raise ValueError(f"not a usable SNTP server reply (mode {mode}, stratum {stratum})")
    words = fields[4:]
    received = _ntp_time(words[7], words[8])
    transmitted = _ntp_time(words[9], words[10])
    return ((received - request_sent) + (transmitted - reply_received)) / 2


class _SntpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[tuple[bytes, float]] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self.reply.done():
            self.reply.set_result((data, time.time()))

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def sntp_offset(server: str, wait_s: float) -> float:
    """Ask an (S)NTP server once; raises OSError, TimeoutError or ValueError on failure."""
    host, _, port = server.partition(":")
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _SntpProtocol, remote_addr=(host, int(port or _NTP_PORT))
    )
    try:
        sent = time.time()
        transport.sendto(_ntp_request(sent))
        reply, received = await asyncio.wait_for(protocol.reply, wait_s)
    finally:
        transport.close()
    return ntp_offset(sent, reply, received)


async def clock_offset(config: HealthConfig) -> float | None:
    """The configured NTP server's view of our clock, or None (and a warning) when unknown."""
    if config.ntp_server is None:
        return None
    try:
        return await sntp_offset(config.ntp_server, config.ntp_timeout)
    except (OSError, TimeoutError, ValueError) as err:
        log.warning("clock offset unknown: ntp server did not answer", error=str(err))
        return None
