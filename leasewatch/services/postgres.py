"""A private PostgreSQL cluster (initdb) on a free loopback port, with databases made on demand.

`PostgresService(root).start()` runs initdb (trust auth, user `postgres`, no fsync: a scratch
cluster for tests and the chaos suite, never for data) and pg_ctl start; `create_database()`
returns a SQLAlchemy URL. As root the cluster runs as the `postgres` system user, since
PostgreSQL refuses to run as root. `stop()` stops it at once and removes its files.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from leasewatch.services.process import ServiceError, free_port, listening, wait_until

INSTALL_HINT = "install the server binaries (Debian: apt-get install postgresql)"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServiceError(f"PostgreSQL's initdb and pg_ctl were not found: {INSTALL_HINT}")
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise ServiceError(
            f"running as root needs a `postgres` system user: {INSTALL_HINT}"
        ) from err
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_postgres(command), capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise ServiceError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


class PostgresService:
    """One private cluster in its own directory (removed by `stop()`)."""

    def __init__(self, root: Path | None = None) -> None:
        """Choose the directory; `start()` creates and starts the cluster.

        As root the postgres user must be able to reach `root`: the default, a fresh directory
        in the system's temporary directory, works where pytest's private tmp_path would not.
        """
        self.root = root or Path(tempfile.mkdtemp(prefix="lw-pg-"))
        self.data_dir = self.root / "data"
        self.port = 0
        self._bin = _bin_dir()

    def start(self) -> None:
        """initdb and start on a free port; wait until it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        initdb = [str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        _run([*initdb, "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.port = free_port()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "postgres.log")
        _run(
            [
                str(self._bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                log,
                "-w",
                "start",
            ]
        )
        if not wait_until(lambda: listening(self.port), None, 15):
            raise ServiceError(f"postgres did not listen on {self.port}")

    def url(self, database: str) -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def create_database(self, prefix: str = "lw") -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, even with clients still connected."""
        name = url.rsplit("/", 1)[1]
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the cluster at once (its data is scratch)."""
        if (self.data_dir / "postmaster.pid").exists():
            _run([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)
