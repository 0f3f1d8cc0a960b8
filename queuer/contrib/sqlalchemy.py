"""SQLAlchemy 2 sessions and connections as transactional enqueue targets: ``add_job_tx(session,
...)`` writes the job on the session's own connection, so it commits or rolls back with the ORM's
work. The engine must use the psycopg (3) driver (``postgresql+psycopg://``)."""

from __future__ import annotations

from typing import Any

import psycopg

from queuer.model import ValidationError

_SYNC = ("Session", "Connection", "scoped_session")
_ASYNC = ("AsyncSession", "AsyncConnection", "async_scoped_session")


def is_sqlalchemy(target: Any) -> bool:
    """Whether ``target`` is a SQLAlchemy session or connection (without importing SQLAlchemy)."""
    module = type(target).__module__
    return module.startswith("sqlalchemy.") and type(target).__name__ in (*_SYNC, *_ASYNC)


def _driver(raw: Any, kind: type[Any]) -> Any:
    connection = getattr(raw, "driver_connection", None)
    if not isinstance(connection, kind):
        raise ValidationError(
            "a SQLAlchemy session or connection must use the psycopg driver (postgresql+psycopg://), "
            f"got {type(connection).__name__}"
        )
    return connection


def psycopg_connection(target: Any) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy ``Session`` or ``Connection``, in its current
    transaction (a session begins one if it has none)."""
    if type(target).__name__ in _ASYNC:
        raise ValidationError("an AsyncSession or AsyncConnection goes to the *_tx_async methods")
    connection = target.connection() if type(target).__name__ != "Connection" else target
    if not connection.in_transaction():  # so that the caller's commit() commits the job too
        connection.begin()
    raw: psycopg.Connection[Any] = _driver(connection.connection, psycopg.Connection)
    return raw


async def psycopg_connection_async(target: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg async connection under a SQLAlchemy ``AsyncSession`` or ``AsyncConnection``."""
    if type(target).__name__ not in _ASYNC:
        raise ValidationError("a Session or Connection goes to the blocking *_tx methods")
    connection = await target.connection() if type(target).__name__ != "AsyncConnection" else target
    if not connection.in_transaction():
        await connection.begin()
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = _driver(raw, psycopg.AsyncConnection)
    return driver
