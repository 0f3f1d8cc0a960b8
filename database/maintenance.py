"""queuer's own care of its tables, which does not count on the server's autovacuum (it may be
off, or far behind a queue's churn): storage settings that suit a queue, and a VACUUM of a table
once it holds many dead rows, run by one process at a time (the master)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow

log = logging.getLogger("queuer.maintenance")

Execute = Callable[[str, Any], Awaitable[list[DictRow]]]

# Tables that churn: every row is inserted, updated and deleted (job), or deleted by retention.
CHURNING = ("job", "job_archive", "queuer_py_wait", "queuer_py_dependency", "queuer_py_progress")
# A table is vacuumed once its dead rows reach this many and this share of its live rows.
MIN_DEAD = 20_000
DEAD_SHARE = 0.2

# Storage settings (the contract allows them; columns stay as Go made them):
# - vacuum_truncate off: a queue's table grows and shrinks all day; giving its empty tail back to
#   the file system needs an exclusive lock that would stall every claim while it is held.
# - where autovacuum runs, it comes for job after 2 % of its rows died instead of 20 %: a queue's
#   live rows are few next to the rows it churns through.
STORAGE = {
    "job": "vacuum_truncate = false, autovacuum_vacuum_scale_factor = 0.02, "
    "autovacuum_vacuum_threshold = 5000, autovacuum_analyze_scale_factor = 0.05",
    "job_archive": "vacuum_truncate = false",
}

_DEAD = (
    "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables "
    "WHERE schemaname = %s AND relname = ANY(%s)"
)


class Maintenance:
    """Vacuums the schema's churning tables when they need it."""

    def __init__(self, schema: str, execute: Execute) -> None:
        self._schema = schema
        self._execute = execute

    async def vacuum_if_needed(self) -> list[str]:
        """VACUUM each churning table with many dead rows; the tables vacuumed. Errors (not the
        owner, say) are logged: this is care, not the queue's work."""
        done: list[str] = []
        try:
            rows = await self._execute(_DEAD, (self._schema, list(CHURNING)))
        except psycopg.Error as exc:
            log.debug("reading table statistics failed: %s", exc)
            return done
        for row in rows:
            if row["n_dead_tup"] < max(MIN_DEAD, DEAD_SHARE * row["n_live_tup"]):
                continue
            statement = sql.SQL("VACUUM (TRUNCATE false) {}").format(
                sql.Identifier(self._schema, row["relname"])
            )
            try:
                await self._execute(statement.as_string(None), ())
                done.append(row["relname"])
            except psycopg.Error as exc:
                log.warning("VACUUM of %s failed: %s", row["relname"], exc)
        return done


async def apply_storage(conn: psycopg.AsyncConnection[Any], schema: str) -> list[str]:
    """Set the storage settings where they are not set yet (inside the installer's transaction)."""
    actions: list[str] = []
    for table, settings in STORAGE.items():
        cur = await conn.execute(
            "SELECT coalesce(reloptions, '{}') @> %s::text[] FROM pg_class WHERE oid = to_regclass(%s)",
            ([s.strip().replace(" = ", "=") for s in settings.split(",")], f"{schema}.{table}"),
        )
        row = await cur.fetchone()
        if row is None or row[0]:
            continue
        await conn.execute(
            sql.SQL("ALTER TABLE {} SET ({})").format(sql.Identifier(schema, table), sql.SQL(settings))
        )
        actions.append(f"storage settings of {table}: {settings}")
    return actions
