"""A real agent process on a full disk (a small tmpfs): it evicts, counts, reports, runs on."""

from __future__ import annotations

import asyncio
import getpass
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiomqtt
import pytest

from firmware_sim.machine import HeldMachine
from firmware_sim.modbus_slave import ModbusRtuSlave
from firmware_sim.pty_pair import PtyPair
from leasewatch.wire import GatewayHealth, TelemetryBatch, decode_health, decode_telemetry
from tests.edge.test_agent import DEVICE, agent_toml, start_agent
from tests.services.ports import free_port, wait_for_port

_PRELOAD = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from edge.buffer import ReadingBuffer
from leasewatch.wire import Reading
buffer = ReadingBuffer(Path(sys.argv[1]) / "buffer.sqlite")  # with its ballast
day_ago = datetime.now(UTC) - timedelta(days=1)
for seq in range(120):  # about 5 MB of yesterday's readings, not yet sent
    at = day_ago + timedelta(seconds=seq * 500)
    buffer.add([Reading(sensor="machine", metric=f"m{i % 16}", ts=at + timedelta(seconds=i),
                        value=i) for i in range(500)])
    buffer.seal("yesterday", seq, 500, day_ago)
buffer.close()
"""


@pytest.mark.integration
async def test_an_agent_on_a_full_disk_evicts_reports_and_keeps_running(tmp_path: Path) -> None:
    if subprocess.run(["unshare", "-rm", "true"], check=False).returncode != 0:  # noqa: ASYNC221
        pytest.skip("needs `unshare -rm` (user namespaces) to mount a small tmpfs")
    disk, log = tmp_path / "disk", tmp_path / "agent.log"
    disk.mkdir()
    (tmp_path / "preload.py").write_text(_PRELOAD)
    port = free_port()
    async with PtyPair() as pair, ModbusRtuSlave(HeldMachine(running=True), pair.device_path):
        config = tmp_path / "edge.toml"
        config.write_text(
            agent_toml(
                password="unused",
                port=port,
                data_dir=disk,
                port_path=pair.client_path,
                extra="[health]\ninterval = 0.5\n",
            )
        )
        mount = f"mount -t tmpfs -o size=24m tmpfs {disk}"
        preload = f"{sys.executable} {tmp_path / 'preload.py'} {disk}"
        in_namespace = ("unshare", "-rm", "sh", "-c", f'{mount} && {preload} && exec "$@"', "sh")
        agent = await start_agent(config, log, prefix=in_namespace)
        try:
            await _logged(agent, log, "mqtt link down", 30)  # running, buffering, no broker yet
            await _fill_disk(agent.pid, disk / "filler")  # someone else fills the disk
            # the broker is away: the agent keeps buffering on a full disk until it must make room
            await _logged(agent, log, "buffer evicted oldest messages", 60)
            async with mosquitto(tmp_path, port), observe(port) as (health, telemetry):
                live = await _first(telemetry, lambda b: not b.historical, 30)
                report = await _first(health, lambda h: h.evicted_messages > 0, 30)
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 30) == 0, log.read_text()[-2000:]
        finally:
            if agent.returncode is None:  # a failed step leaves no agent behind
                agent.kill()
                await agent.wait()

    text = log.read_text()
    assert "buffer storage full" in text and "buffer evicted oldest messages" in text
    assert report.evicted_readings >= 500, "yesterday's readings went first"
    assert live.boot != "yesterday" and live.readings


async def _logged(agent: asyncio.subprocess.Process, log: Path, line: str, timeout: float) -> None:
    """Wait until the running agent has logged `line`."""
    async with asyncio.timeout(timeout):
        while line not in (text := await asyncio.to_thread(log.read_text)):
            assert agent.returncode is None, text[-2000:]
            await asyncio.sleep(0.1)


async def _fill_disk(pid: int, filler: Path) -> None:
    """Fill the agent's small disk from inside its mount namespace, until the write fails.

    The check is dd's own "No space left" and not the free space after it: the agent may meet
    the full disk first and give up its ballast (edge/ballast.py) before `df` runs, as a CI
    run under load once saw (4 MB free).
    """
    fill = await asyncio.create_subprocess_exec(
        "nsenter", "-t", str(pid), "-m", "--", "sh", "-c",
        f"dd if=/dev/zero of={filler} bs=64k 2>&1 >/dev/null | grep -c 'No space left'",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await fill.communicate()
    assert out.strip() == b"1", f"dd filled the disk: {out!r}"


class mosquitto:  # noqa: N801 (used as a context manager, like a function)
    """An anonymous Mosquitto on a given port, started late."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        )
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> None:
        self.process = subprocess.Popen(  # noqa: ASYNC220 (started once, waited for below)
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.to_thread(wait_for_port, self.port, 10, "127.0.0.1")

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        await asyncio.to_thread(self.process.wait, 10)


class observe:  # noqa: N801
    """Health reports and telemetry batches of the gateway, as they arrive."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.health: asyncio.Queue[GatewayHealth] = asyncio.Queue()
        self.telemetry: asyncio.Queue[TelemetryBatch] = asyncio.Queue()
        self._client = aiomqtt.Client("127.0.0.1", port, identifier="observer")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(
        self,
    ) -> tuple[asyncio.Queue[GatewayHealth], asyncio.Queue[TelemetryBatch]]:
        await self._client.__aenter__()
        await self._client.subscribe(f"lw/v1/{DEVICE}/#", qos=1)
        self._task = asyncio.create_task(self._pump())
        return self.health, self.telemetry

    async def _pump(self) -> None:
        async for message in self._client.messages:
            topic, payload = str(message.topic), message.payload
            assert isinstance(payload, bytes)
            if topic.endswith("/health"):
                self.health.put_nowait(decode_health(topic, payload))
            elif topic.endswith("/telemetry"):
                self.telemetry.put_nowait(decode_telemetry(topic, payload))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self._client.__aexit__(None, None, None)


T = TypeVar("T")


async def _first(queue: asyncio.Queue[T], wanted: Callable[[T], bool], timeout: float) -> T:
    async with asyncio.timeout(timeout):
        while True:
            item = await queue.get()
            if wanted(item):
                return item
