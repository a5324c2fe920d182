"""`leasewatch demo` as a user runs it: starts fast, serves 20 live gateways, stops on Ctrl-C.

The preferred MQTT and API ports are both held by this test (as the system Mosquitto holds 1883
and a dev server often holds 8000 on a developer's machine), so the demo must fall back to free
ports, print the address it really serves, and still work.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest
from typer.testing import CliRunner

from leasewatch.cli import app

ASSETS = 20
LEASEWATCH = Path(sys.executable).parent / "leasewatch"
START_TIMEOUT_S = 30.0
ONLINE_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
DASHBOARDS_LINE = re.compile(
    r"^Dashboards: (?P<url>http://127\.0\.0\.1:\d+)/login +\(API key for this run: (?P<key>\S+)\)$"
)
FIRST_READING_LINE = re.compile(
    r"^First reading stored (?P<seconds>\d+(?:\.\d+)?) s after start\.$"
)


@dataclass
class DemoOutput:
    """The demo's stdout, line by line, read by a thread so a silent process cannot hang us."""

    lines: queue.Queue[str | None]
    seen: list[str]
    stderr_path: Path

    @classmethod
    def follow(cls, stream: IO[str], stderr_path: Path) -> DemoOutput:
        """Start reading `stream` in a daemon thread; None marks its end."""
        output = cls(queue.Queue(), [], stderr_path)

        def pump() -> None:
            for line in stream:
                output.lines.put(line.rstrip("\n"))
            output.lines.put(None)

        threading.Thread(target=pump, name="demo-stdout", daemon=True).start()
        return output

    def until(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str]:
        """The first line matching `pattern`; fail at the deadline or at end of output."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(self._report(f"stdout ended before {pattern.pattern!r}"), pytrace=False)
            self.seen.append(line)
            if match := pattern.match(line):
                return match
        pytest.fail(self._report(f"no line matching {pattern.pattern!r} in time"), pytrace=False)

    def _report(self, why: str) -> str:
        """Why we gave up, with the stdout seen so far and the tail of stderr."""
        errors = self.stderr_path.read_text()[-3000:]
        return f"demo: {why}; stdout: {self.seen}\nstderr tail:\n{errors}"

    def rest(self, timeout: float) -> list[str]:
        """Every remaining line until the stream ends."""
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return self.seen


@contextmanager
def occupied_port() -> Iterator[socket.socket]:
    """A loopback port this test listens on, so nothing else can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def nobody_connected(sock: socket.socket) -> bool:
    """Whether no client connected to our listening socket."""
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def _all_online_with_readings(api_url: str, key: str) -> list[dict[str, object]]:
    """Poll /v1/devices until every gateway is online and has stored readings."""
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    with httpx.Client(base_url=api_url, headers={"X-API-Key": key}, timeout=5) as client:
        while True:
            response = client.get("/v1/devices")
            assert response.status_code == 200, response.text
            devices: list[dict[str, object]] = response.json()
            ready = [d for d in devices if d["status"] == "online" and int(str(d["readings"])) > 0]
            if len(ready) == ASSETS or time.monotonic() > deadline:
                return devices
            time.sleep(0.25)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_demo_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """Start within 30 s on taken MQTT and API ports, 20 live gateways, clean Ctrl-C."""
    assert LEASEWATCH.is_file(), f"{LEASEWATCH} missing: install the package (`make demo`)"
    stderr_path = tmp_path / "demo.stderr"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with occupied_port() as mqtt_sock, occupied_port() as api_sock, stderr_path.open("w") as stderr:
        mqtt_port, api_port = mqtt_sock.getsockname()[1], api_sock.getsockname()[1]
        command = [str(LEASEWATCH), "demo", "--assets", str(ASSETS)]
        command += ["--data-dir", str(tmp_path / "demo"), "--mqtt-port", str(mqtt_port)]
        command += ["--api-port", str(api_port)]
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=tmp_path
        )
        try:
            assert process.stdout is not None
            output = DemoOutput.follow(process.stdout, stderr_path)
            ready = output.until(DASHBOARDS_LINE, started + START_TIMEOUT_S)
            first = output.until(FIRST_READING_LINE, started + START_TIMEOUT_S)
            api_url, key = ready["url"], ready["key"]
            devices = _all_online_with_readings(api_url, key)
            health = httpx.get(f"{api_url}/healthz", timeout=5)
            unauthenticated = httpx.get(f"{api_url}/v1/devices", timeout=5)
            assert nobody_connected(mqtt_sock), "a client connected to the MQTT port we held"
            assert nobody_connected(api_sock), "a client connected to the API port we held"

            process.send_signal(signal.SIGINT)
            stopped = time.monotonic()
            try:
                returncode = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"demo still running {STOP_TIMEOUT_S} s after SIGINT", pytrace=False)
            stop_s = time.monotonic() - stopped
            stdout = output.rest(timeout=STOP_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    errors = stderr_path.read_text()

    assert float(first["seconds"]) < START_TIMEOUT_S
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", api_url), api_url
    assert not api_url.endswith(f":{api_port}"), "the demo announced the API port we held"
    assert f"port {mqtt_port} is taken, using a free port instead" in errors
    assert re.search(rf"port taken, using a free one .*port={api_port}\b", errors), errors
    assert sorted(str(d["device"]) for d in devices) == [f"gw-{i:04d}" for i in range(1, 21)]
    assert all(d["status"] == "online" for d in devices), devices
    assert all(int(str(d["readings"])) > 0 for d in devices), devices
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == "unauthenticated"

    assert returncode == 0, f"exit code {returncode}; stderr:\n{errors}"
    assert stop_s < STOP_TIMEOUT_S
    assert stdout[-1] == "Stopped cleanly.", stdout
    assert "Traceback" not in errors, errors


def test_the_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path) -> None:
    """`--data-dir ~` must never delete someone's files."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty and was not made by `leasewatch demo`" in result.output
    assert precious.read_text() == "keep me"
