"""PostgreSQL started by the tests: a private cluster (initdb) on a free loopback port.

One cluster per test session (initdb takes a couple of seconds); every test gets a fresh
database in it. A thin pytest layer over the package's runner (leasewatch/services/postgres.py),
which runs the cluster as the `postgres` system user when run as root.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leasewatch.services.postgres import PostgresService
from leasewatch.services.process import ServiceError

PostgresServer = PostgresService


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the whole session, removed afterwards."""
    try:
        server = PostgresService()
    except ServiceError as err:
        pytest.fail(f"PostgreSQL for the tests: {err}", pytrace=False)
    try:
        server.start()
        yield server
    except ServiceError as err:
        pytest.fail(f"PostgreSQL did not start: {err}", pytrace=False)
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
