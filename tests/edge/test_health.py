"""Health reports: figures, process meter and the clock offset from an (S)NTP server."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge.agent import EdgeAgent
from edge.clock import Timeline
from edge.config import EdgeConfig, GatewayConfig, HealthConfig, MqttConfig
from edge.health import (
    NTP_EPOCH_OFFSET,
    BufferFigures,
    ProcessMeter,
    build_health,
    ntp_offset,
    sntp_offset,
)
from leasewatch.wire import Reading

PACKET = struct.Struct("!B B b b 11I")


def _ntp(seconds: float) -> tuple[int, int]:
    whole = int(seconds) + NTP_EPOCH_OFFSET
    return whole, int((seconds % 1) * 2**32)


def _reply(request: bytes, server_now: float) -> bytes:
    """What a stratum-2 server answers: its receive and transmit times, our transmit echoed."""
    fields = list(PACKET.unpack(request[: PACKET.size]))
    words = [0] * 11
    words[5], words[6] = fields[4 + 9], fields[4 + 10]  # originate = the client's transmit
    words[7], words[8] = _ntp(server_now)
    words[9], words[10] = _ntp(server_now + 0.001)
    return PACKET.pack(0x24, 2, 6, -20, *words)


def test_offset_is_half_the_difference_of_the_two_legs() -> None:
    request = PACKET.pack(0x23, 0, 0, 0, *([0] * 9), *_ntp(1000.0))
    reply = _reply(request, server_now=1002.5)
    assert ntp_offset(1000.0, reply, 1000.002) == pytest.approx(2.4995, abs=1e-4)
    with pytest.raises(ValueError, match="too short"):
        ntp_offset(1000.0, b"\x24", 1000.0)
    with pytest.raises(ValueError, match="not a usable"):
        ntp_offset(1000.0, PACKET.pack(0x24, 0, 0, 0, *([0] * 11)), 1000.0)  # kiss-o'-death


class _AheadServer(asyncio.DatagramProtocol):
    """An SNTP server whose clock runs `ahead` seconds ahead of ours."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(_reply(data, time.time() + self.ahead), addr)


@asynccontextmanager
async def ntp_server(ahead: float) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _AheadServer(ahead), local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


async def test_sntp_measures_the_offset_of_a_server_ahead_of_us() -> None:
    async with ntp_server(ahead=2.5) as server:
        assert await sntp_offset(server, 2.0) == pytest.approx(2.5, abs=0.05)


async def test_a_silent_ntp_server_is_a_timeout_not_an_offset() -> None:
    async with ntp_server(ahead=0) as server:
        silent = server.rsplit(":", 1)[0] + ":9"  # discard port: nothing answers
        with pytest.raises((TimeoutError, OSError)):
            await sntp_offset(silent, 0.3)


def test_build_health_reports_age_evictions_errors_and_the_process() -> None:
    meter = ProcessMeter()
    busy_until = time.process_time() + 0.05
    while time.process_time() < busy_until:  # some CPU to measure
        pass
    report = build_health(
        device="gw-0001",
        boot="boot-1",
        uptime_s=12.5,
        buffer=BufferFigures(
            messages=3,
            readings=40,
            oldest_taken=datetime.now(UTC) - timedelta(minutes=5),
            evicted_messages=2,
            evicted_readings=17,
        ),
        sensor_errors={"machine": 4},
        overruns={"machine": 1},
        meter=meter,
        clock_offset_s=None,
        timeline=Timeline(),
    )
    assert report.oldest_buffered_age_s == pytest.approx(300, abs=2)
    assert (report.evicted_messages, report.evicted_readings) == (2, 17)
    assert (report.sensor_errors, report.overruns) == ({"machine": 4}, {"machine": 1})
    assert report.cpu_percent is not None and report.cpu_percent > 0
    assert report.rss_bytes is not None and report.rss_bytes > 10 * 1024 * 1024
    assert report.clock_offset_s is None, "unknown stays unknown, never 0"
    assert (report.clock_steps, report.clock_held_s) == (0, 0.0)


async def test_the_agent_reports_its_buffer_and_clock_offset(tmp_path: Path) -> None:
    async with ntp_server(ahead=-1.25) as server:
        config = EdgeConfig(
            gateway=GatewayConfig(device="gw-0001", data_dir=tmp_path),
            mqtt=MqttConfig(host="127.0.0.1", port=1, username="gw", password=SecretStr("x")),
            health=HealthConfig(interval=1, ntp_server=server),
        )
        agent = EdgeAgent(config)
        taken = datetime.now(UTC) - timedelta(seconds=30)
        agent.buffer.add([Reading(sensor="machine", metric="rpm", ts=taken, value=1.0)])
        report = await agent.health_report(ProcessMeter())
        agent.buffer.close()
        agent.ledger.close()
    assert (report.buffer_readings, report.buffer_messages) == (1, 0)
    assert report.oldest_buffered_age_s == pytest.approx(30, abs=2)
    assert report.clock_offset_s == pytest.approx(-1.25, abs=0.05)
