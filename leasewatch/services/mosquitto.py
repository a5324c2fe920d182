"""Mosquitto with the deployed config, generated credentials, restartable on the same port.

`MosquittoService(workdir, principals).start()` writes the password and ACL files
(`cloud.broker_access`) and `deploy/mosquitto/mosquitto.conf` with only listener, user and
file paths replaced, and starts the broker on a free loopback port. `restart()` stops it
gracefully (Mosquitto saves its persistence file on SIGTERM) and starts it on the same port,
config and data, where its clients expect it. (`firmware_sim.bench.local_mosquitto` is the
benchmark's fixed-principal variant; this one takes any principals and restarts.)
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from cloud.broker_access import (
    Principal,
    check_unique,
    mosquitto_conf,
    write_mosquitto_acl,
    write_mosquitto_passwords,
)
from leasewatch.services.process import (
    ServiceError,
    free_port,
    listening,
    log_tail,
    terminate,
    wait_until,
)

DEPLOYED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
START_TIMEOUT_S = 15.0
_ATTEMPTS = 3


def _binary(name: str, fallback: str) -> str:
    found = shutil.which(name) or (fallback if Path(fallback).exists() else None)
    if found is None:
        raise ServiceError(f"{name} not found: install it (Debian: apt-get install mosquitto)")
    return found


class MosquittoService:
    """One Mosquitto process with its credentials, config, persistence and log."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, principals: Iterable[Principal]) -> None:
        """Remember the principals; `start()` writes the files and launches the broker."""
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.port = 0
        self.principals = check_unique(principals)
        self._binary = _binary("mosquitto", "/usr/sbin/mosquitto")
        self._passwd_tool = _binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def password(self, username: str) -> str:
        """The plain password of a principal (for the processes this suite starts)."""
        return self.principals[username].password.get_secret_value()

    def start(self) -> None:
        """Write access files and config, start on a free port, wait until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        listed = list(self.principals.values())
        write_mosquitto_passwords(listed, self.workdir / "passwd", tool=self._passwd_tool)
        write_mosquitto_acl(listed, self.workdir / "acl")
        for _ in range(_ATTEMPTS):  # a port taken between choosing and binding: another one
            self.port = free_port(self.host)
            self._write_conf()
            try:
                self._launch()
            except ServiceError:
                if "Address already in use" not in self.log_tail():
                    raise
            else:
                return
        raise ServiceError(f"mosquitto found no free port:\n{self.log_tail()}")

    def _write_conf(self) -> None:
        (self.workdir / "mosquitto.conf").write_text(
            mosquitto_conf(
                DEPLOYED_CONF.read_text(),
                host=self.host,
                port=self.port,
                password_file=self.workdir / "passwd",
                acl_file=self.workdir / "acl",
                persistence_dir=self.workdir / "data",
                user=getpass.getuser(),
            )
        )

    def _launch(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [self._binary, "-c", str(self.workdir / "mosquitto.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_until(lambda: listening(self.port, self.host), self._process, START_TIMEOUT_S):
            self.stop()
            raise ServiceError(f"mosquitto did not listen on {self.port}:\n{self.log_tail()}")

    def restart(self) -> None:
        """Graceful stop (persistence saved), then start again on the same port and data."""
        self.stop()
        self._launch()

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after a timeout)."""
        terminate(self._process)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the broker logged."""
        return log_tail(self.log_path, lines)
