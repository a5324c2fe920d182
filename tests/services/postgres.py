"""PostgreSQL started by the tests: a private cluster (initdb) on a free loopback port.

One cluster per test session (initdb takes a couple of seconds); every test gets a fresh
database in it. As root, the cluster runs as the `postgres` system user (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.services.ports import free_port, wait_for_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them with "
    "`sudo apt-get install postgresql` (Debian); the tests start their own cluster."
)


@dataclass(frozen=True)
class PostgresServer:
    """A running private cluster."""

    port: int
    data_dir: Path

    def url(self, database: str) -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root needs a `postgres` system user: " + INSTALL_HINT)
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_postgres(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the whole session, removed afterwards."""
    bin_dir = _bin_dir()
    # pytest's tmp dirs are private to root; the postgres user needs a path it can traverse
    root = Path(tempfile.mkdtemp(prefix="leasewatch-pg-"))
    root.chmod(0o755)
    data_dir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]
    )
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-o",
            options,
            "-l",
            str(root / "postgres.log"),
            "-w",
            "start",
        ]
    )
    wait_for_port(port)
    try:
        yield PostgresServer(port, data_dir)
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"lw_{secrets.token_hex(6)}"
    with postgres_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    yield postgres_server.url(name)
    with postgres_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
