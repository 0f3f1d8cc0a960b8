"""The bounded connection pool every queuer operation except LISTEN goes through."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from .config import DatabaseConfiguration

PoolType = AsyncConnectionPool[AsyncConnection[DictRow]]


def connection_kwargs(config: DatabaseConfiguration) -> dict[str, Any]:
    """Keyword arguments of every pooled connection: autocommit, dict rows, UTC, search_path."""
    return {
        **config.connect_kwargs(),
        "autocommit": True,
        "row_factory": dict_row,
        # A transaction-mode pooler (PgBouncer) cannot keep prepared statements.
        "prepare_threshold": None if config.behind_pooler else 2,
    }


def make_pool(config: DatabaseConfiguration, max_size: int) -> PoolType:
    """An unopened pool of at most ``max_size`` connections (open it inside the event loop)."""
    return AsyncConnectionPool(
        config.conninfo(),
        min_size=1,
        max_size=max_size,
        kwargs=connection_kwargs(config),
        open=False,
        name="queuer",
        connection_class=AsyncConnection[DictRow],
        reconnect_timeout=3600,
    )
