"""Transactional enqueue through SQLAlchemy 2 (psycopg driver): the job commits or rolls back
with the ORM's work."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from queuer import BatchJob, ValidationError

from .helpers import QueuerFactory, count

sqlalchemy = pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402


def _url(database_url: str) -> str:
    return database_url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_a_session_commits_or_rolls_back_its_jobs_with_its_rows(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("orm", 1)
    q.add_task(print)
    engine = sqlalchemy.create_engine(_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id serial PRIMARY KEY, note text)"))
    with Session(engine) as session:
        session.execute(text("INSERT INTO orders (note) VALUES ('kept')"))
        job = q.add_job_tx(session, "print", "kept")
        q.add_jobs_tx(session, [BatchJob("print", ["batch"])])
        assert count(sql, "SELECT count(*) FROM job") == 0  # not committed yet: invisible
        session.commit()
    with Session(engine) as session:
        session.execute(text("INSERT INTO orders (note) VALUES ('dropped')"))
        q.add_job_tx(session, "print", "dropped")
        session.rollback()
    with engine.connect() as conn:
        q.add_job_tx(conn, "print", "on a connection")
        conn.commit()
    assert count(sql, "SELECT count(*) FROM orders") == 1
    assert sorted(r[0] for r in sql.execute("SELECT parameters ->> 0 FROM job").fetchall()) == [
        "batch",
        "kept",
        "on a connection",
    ]
    assert q.get_job(job.rid).parameters == ["kept"]
    sqlite = sqlalchemy.create_engine("sqlite://")
    with Session(sqlite) as session, pytest.raises(ValidationError, match="psycopg driver"):
        q.add_job_tx(session, "print", "nope")
    engine.dispose()


def test_an_async_session_enqueues_in_its_transaction(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("orm-async", 1)
    q.add_task(print)

    async def scenario() -> None:
        engine = create_async_engine(_url(database_url))
        async with AsyncSession(engine) as session:
            await q.add_job_tx_async(session, "print", "async kept")
            await session.commit()
        async with AsyncSession(engine) as session:
            await q.add_job_tx_async(session, "print", "async dropped")
            await session.rollback()
        await engine.dispose()

    asyncio.run(scenario())
    assert [r[0] for r in sql.execute("SELECT parameters ->> 0 FROM job").fetchall()] == ["async kept"]
