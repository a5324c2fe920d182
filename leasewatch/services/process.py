"""What every runner shares: free ports, waiting for a listener, log tails, stopping a process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

STOP_TIMEOUT_S = 30.0


class ServiceError(Exception):
    """A service could not be started or stopped; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on host:port; TimeoutError if it does not."""
    if not wait_until(lambda: listening(port, host, timeout=0.5), None, timeout):
        raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes] | None, timeout: float
) -> bool:
    """Poll `ready()` until it is true (True), the process exits or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    return False


def http_ok(url: str) -> bool:
    """Whether GET url answers 200 now."""
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == httpx.codes.OK
    return False


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file ('' when there is none)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM and wait; SIGKILL when it does not exit in time. None or exited: nothing to do."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL and reap: no shutdown code runs."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


class ProcessHandle:
    """A started process with its log: pid, whether it runs, SIGKILL, the log's tail."""

    log_path: Path
    _process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """How the process ended (None while it runs or before it started)."""
        return self._process.poll() if self._process is not None else None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        kill(self._process)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the process logged."""
        return log_tail(self.log_path, lines)
