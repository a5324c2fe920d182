"""Mosquitto started by the tests: the deployed config, generated credentials, a free port.

Fixtures:
    mosquitto_broker   a running broker for `default_principals()` (gw-0001..gw-0003, ingestor)
    mosquitto_factory  `start(principals=None) -> MosquittoBroker`, for tests with their own list

The broker runs `deploy/mosquitto/mosquitto.conf` with only listener, user and file paths
replaced (`cloud.broker_access.mosquitto_conf`). Its log goes to `<tmp>/mosquitto.log`; the
tail is attached to the report of a failing test.
"""

from __future__ import annotations

import getpass
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from cloud.broker_access import (
    Principal,
    check_unique,
    mosquitto_conf,
    write_mosquitto_acl,
    write_mosquitto_passwords,
)
from cloud.broker_tls import TlsListener, make_broker_certificates
from tests.services.ports import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYED_CONF = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
DEFAULT_DEVICES = ("gw-0001", "gw-0002", "gw-0003")
INGESTOR = "ingestor"
INSTALL_HINT = (
    "Mosquitto 2 is required by the integration tests and was not found: install it with "
    "`sudo apt-get install mosquitto mosquitto-clients` (Debian/Ubuntu) or "
    "`brew install mosquitto` (macOS); the tests start their own instance on a free port."
)
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_RELOAD_MARK = "Reloading config."

MosquittoFactory = Callable[..., "MosquittoBroker"]
_BROKERS = pytest.StashKey[list["MosquittoBroker"]]()


def default_principals() -> list[Principal]:
    """Gateways gw-0001..gw-0003 and the ingestor, each with a fresh random password."""
    gateways = [Principal.gateway(device, secrets.token_urlsafe(16)) for device in DEFAULT_DEVICES]
    return [*gateways, Principal.ingestor(INGESTOR, secrets.token_urlsafe(16))]


def _find(name: str, fallback: str) -> str:
    """Path of a Mosquitto executable, or fail the test with how to install it."""
    found = shutil.which(name) or (fallback if Path(fallback).exists() else None)
    if found is None:
        pytest.fail(f"{name} not found. {INSTALL_HINT}", pytrace=False)
    return found


class MosquittoBroker:
    """One Mosquitto process for a test, with its credentials and files."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, principals: Iterable[Principal], *, tls: bool = False
    ) -> None:
        """Prepare the working directory; `start()` launches the process.

        With `tls`, the deployed TLS listener runs too, on `tls_port`, with a certificate for
        127.0.0.1 and localhost issued by a fresh CA (`certificates.ca_cert`).
        """
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.port = 0
        self.tls_port = 0
        self.certificates = (
            make_broker_certificates(workdir / "certs", ["127.0.0.1", "localhost"]) if tls else None
        )
        self._principals = check_unique(principals)
        self._binary = _find("mosquitto", "/usr/sbin/mosquitto")
        self._passwd_tool = _find("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def principals(self) -> Mapping[str, Principal]:
        """The principals the broker currently accepts, by username."""
        return dict(self._principals)

    def password(self, username: str) -> str:
        """The plain password of a principal (tests only)."""
        return self._principals[username].password.get_secret_value()

    def credentials(self, username: str) -> tuple[str, str]:
        """(username, password) to connect as a principal."""
        return username, self.password(username)

    def _write_access_files(self) -> None:
        """Write the password and ACL files for the current principals."""
        principals = list(self._principals.values())
        write_mosquitto_passwords(principals, self.workdir / "passwd", tool=self._passwd_tool)
        write_mosquitto_acl(principals, self.workdir / "acl")

    def _write_conf(self) -> Path:
        """Write the deployed config with this test's port and paths."""
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            mosquitto_conf(
                DEPLOYED_CONF.read_text(),
                host=self.host,
                port=self.port,
                password_file=self.workdir / "passwd",
                acl_file=self.workdir / "acl",
                persistence_dir=data,
                user=getpass.getuser(),
                tls=self._tls_listener(),
            )
        )
        return conf

    def _tls_listener(self) -> TlsListener | None:
        if self.certificates is None:
            return None
        files = self.certificates
        return TlsListener(self.tls_port, files.server_cert, files.server_key)

    def start(self, attempts: int = 3) -> None:
        """Start on a free loopback port and wait until it accepts connections."""
        self._write_access_files()
        for _attempt in range(attempts):
            self.port = free_port()
            self.tls_port = free_port() if self.certificates else 0
            conf = self._write_conf()
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [self._binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_listening():
                return
            if "Address already in use" not in self.log_tail():
                break
        pytest.fail(f"mosquitto did not start:\n{self.log_tail()}", pytrace=False)

    def _wait_listening(self) -> bool:
        """Whether the process listens before it exits or the start timeout passes."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                wait_for_port(self.port, timeout=0.2, host=self.host)
            except TimeoutError:
                continue
            return True
        return False

    def add(self, principal: Principal, *, reload: bool = True) -> None:
        """Accept a new principal (or replace one with the same username)."""
        self._principals[principal.username] = principal
        if reload:
            self.reload()

    def revoke(self, username: str, *, reload: bool = True) -> None:
        """Stop accepting a principal; its live connection is dropped on reload."""
        del self._principals[username]
        if reload:
            self.reload()

    def reload(self, timeout: float = 5.0) -> None:
        """Rewrite password and ACL files and SIGHUP the broker; wait until it has re-read them."""
        if self._process is None:
            raise RuntimeError("mosquitto is not running")
        self._write_access_files()
        before = self._log_text().count(_RELOAD_MARK)
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._log_text().count(_RELOAD_MARK) == before:
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not reload:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the broker, killing it if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_text(self) -> str:
        """The broker log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker log."""
        return "\n".join(self._log_text().splitlines()[-lines:])

    def __repr__(self) -> str:
        """Address and usernames; never passwords."""
        return f"MosquittoBroker({self.host}:{self.port}, users={sorted(self._principals)})"


@pytest.fixture
def mosquitto_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MosquittoFactory]:
    """Start Mosquitto brokers for given principals (default set if None); stop them after."""
    brokers = request.node.stash.setdefault(_BROKERS, [])

    def start(principals: Iterable[Principal] | None = None) -> MosquittoBroker:
        workdir = tmp_path / f"mosquitto-{len(brokers)}"
        workdir.mkdir()
        broker = MosquittoBroker(
            workdir, default_principals() if principals is None else principals
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto_broker(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A running Mosquitto for `default_principals()`."""
    return mosquitto_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of each Mosquitto log to the report of a failed test."""
    report: pytest.TestReport = yield
    if report.failed:
        for broker in item.stash.get(_BROKERS, []):
            report.sections.append(
                (f"mosquitto log {broker.host}:{broker.port}", broker.log_tail())
            )
    return report
