"""The bounded connection pool every queuer operation except LISTEN goes through."""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from .config import DatabaseConfiguration

PoolType = AsyncConnectionPool[AsyncConnection[DictRow]]


class UnreadableJson(str):
    """A JSON column the decoder could not read (nested beyond its recursion limit); the text says
    why. Reading it never raises, so a listing or a wait survives any row."""


def tolerant_json_loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        return UnreadableJson("nested too deeply to decode")


def read_json_tolerantly(conn: Connection[DictRow] | AsyncConnection[DictRow]) -> None:
    """Every pooled connection decodes json/jsonb with ``tolerant_json_loads``."""
    set_json_loads(tolerant_json_loads, conn)


async def configure_async(conn: AsyncConnection[DictRow]) -> None:
    read_json_tolerantly(conn)


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
        configure=configure_async,
    )
