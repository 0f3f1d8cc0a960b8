"""Installs the schema of docs/go-interop.md §1-2: idempotent, safe when several processes start at once."""

from __future__ import annotations

import logging
import zlib

import psycopg
from psycopg import sql

from queuer.model import ConfigurationError
from queuer.sql import load

from .config import DatabaseConfiguration
from .connect_errors import describe
from .fragments import EXPIRES_AT_OF, PRIORITY_OF, QUEUE_OF, READY_AT, UNIQUE_KEY_OF
from .maintenance import apply_storage

log = logging.getLogger("queuer.schema")

# One advisory lock key for every installer, so concurrent starts do not race on CREATE ... IF NOT EXISTS.
SCHEMA_LOCK_KEY = zlib.crc32(b"queuer-schema-install")
TABLES = ("job", "job_archive", "worker", "master")
OWN_TABLES = (
    "queuer_py_worker",
    "queuer_py_queue",
    "queuer_py_queue_start",
    "queuer_py_workflow",
    "queuer_py_member",
    "queuer_py_wait",
    "queuer_py_dependency",
    "queuer_py_progress",
    "queuer_py_periodic",
)  # Python's own, beside Go's
CONNECT_TIMEOUT = 10  # seconds; the first contact with the server, where a user waits

# True when the session's time zone shows UTC wall-clock time both in winter and in summer.
_IS_UTC = """
SELECT (timestamptz '2024-01-15 12:00:00+00' AT TIME ZONE current_setting('TimeZone')) = timestamp '2024-01-15 12:00:00'
   AND (timestamptz '2024-07-15 12:00:00+00' AT TIME ZONE current_setting('TimeZone')) = timestamp '2024-07-15 12:00:00',
       current_setting('TimeZone')
"""


def _queues_sql() -> sql.Composed:
    """sql/queues_v1.sql with the expressions its indexes share with the queries."""
    return sql.SQL(load("queues_v1")).format(  # type: ignore[arg-type,unused-ignore]
        queue=sql.SQL(QUEUE_OF),  # type: ignore[arg-type,unused-ignore]
        priority=sql.SQL(PRIORITY_OF),  # type: ignore[arg-type,unused-ignore]
        ready_at=sql.SQL(READY_AT),  # type: ignore[arg-type,unused-ignore]
        unique_key=sql.SQL(UNIQUE_KEY_OF),  # type: ignore[arg-type,unused-ignore]
        expires_at=sql.SQL(EXPIRES_AT_OF),  # type: ignore[arg-type,unused-ignore]
    )


async def _existing_tables(conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str) -> set[str]:
    cur = await conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name = ANY(%s)",
        (schema, list(TABLES)),
    )
    return {str(row[0]) for row in await cur.fetchall()}


async def _check_time_zone(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Warn when the database default zone is not UTC: Go workers then misjudge heartbeats (§1.9)."""
    cur = await conn.execute(_IS_UTC)
    row = await cur.fetchone()
    if row is not None and not row[0]:
        log.warning(
            "database default TimeZone is %r, not UTC: Go workers sharing this database will mark live "
            "workers stale (docs/go-interop.md §1.9). queuer pins its own sessions to UTC. Fix with "
            "ALTER DATABASE ... SET TimeZone = 'UTC'.",
            row[1],
        )


async def _install_timescale(
    conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str, asked: bool
) -> str | None:
    cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if await cur.fetchone() is None:
        if asked:
            log.warning(
                "with_timescale is on but the timescaledb extension is not available: plain "
                "archive (a Go process with the same flag would fail to start here)"
            )
        return None
    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE")
    cur = await conn.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = %s "
        "AND hypertable_name = 'job_archive'",
        (schema,),
    )
    if await cur.fetchone() is not None:
        return None
    archive = sql.Identifier(schema, "job_archive")
    cur = await conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(archive))
    row = await cur.fetchone()
    if row is not None and row[0]:
        raise ConfigurationError(
            "with_timescale is on but job_archive is a plain table with rows; TimescaleDB can convert "
            "only an empty table (a Go process would panic here). Empty it or turn the flag off."
        )
    await conn.execute(
        "SELECT create_hypertable(%s::regclass, by_range('updated_at'), if_not_exists => TRUE)",
        (f"{schema}.job_archive",),
    )
    return "job_archive converted to a TimescaleDB hypertable"


async def schema_installed(config: DatabaseConfiguration) -> bool:
    """Whether the configured schema holds queuer's tables, on one short connection (which fails
    fast, with a ``DatabaseConnectionError`` that says why, when the server cannot be used)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            config.conninfo(), connect_timeout=CONNECT_TIMEOUT, application_name="queuer"
        )
    except psycopg.OperationalError as exc:
        raise describe(exc, config) from exc
    try:
        cur = await conn.execute("SELECT to_regclass(%s)", (f"{config.schema}.job",))
        row = await cur.fetchone()
    finally:
        await conn.close()
    return row is not None and row[0] is not None


async def install_schema(config: DatabaseConfiguration) -> list[str]:
    """Create what is missing and return a line per action (empty when nothing changed).

    Uses its own short connection, because it must see the database's default time zone; the
    schema's search_path is set for its transaction only.
    """
    actions: list[str] = []
    try:
        conn = await psycopg.AsyncConnection.connect(
            config.conninfo(),
            application_name="queuer",
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except psycopg.OperationalError as exc:
        raise describe(exc, config) from exc
    try:
        await _check_time_zone(conn)
        async with conn.transaction():
            # Transaction-local settings, so this works through a transaction-mode pooler too.
            await conn.execute("SELECT set_config('search_path', %s, true)", (config.schema,))
            await conn.execute("SET LOCAL TimeZone = 'UTC'")
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            if config.with_table_drop:
                for table in (*TABLES, *OWN_TABLES):
                    await conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                            sql.Identifier(config.schema, table)
                        )
                    )
                actions.append("dropped tables " + ", ".join(TABLES) + " (with_table_drop)")
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(config.schema))
            )
            before = await _existing_tables(conn, config.schema)
            await conn.execute(load("schema_v1"), prepare=False)
            await conn.execute(_queues_sql(), prepare=False)
            await conn.execute(load("workflows_v1"), prepare=False)
            actions += await apply_storage(conn, config.schema)
            created = [t for t in TABLES if t not in before]
            if created:
                actions.append("created tables " + ", ".join(created))
            cur = await conn.execute(
                "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE p.proname = 'notify_event' ORDER BY n.nspname = %s DESC LIMIT 1",
                (config.schema,),
            )
            row = await cur.fetchone()
            if row is None:
                await conn.execute(load("notify_event"), prepare=False)
                actions.append("created function notify_event()")
                function_schema = config.schema
            else:
                function_schema = str(row[0])
                if function_schema != config.schema:
                    log.warning(
                        "notify_event() lives in schema %r: this database already holds another queuer "
                        "installation. Both share the NOTIFY channels, and Go workers support only one "
                        "installation per database (docs/go-interop.md §1.10).",
                        function_schema,
                    )
            cur = await conn.execute(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                "AND t.tgname IN ('job_notify_event', 'job_archive_notify_event')",
                (config.schema,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] < 2:
                triggers = sql.SQL(load("notify_triggers")).format(  # type: ignore[arg-type,unused-ignore]
                    function=sql.Identifier(function_schema, "notify_event")
                )
                await conn.execute(triggers, prepare=False)
                actions.append("created triggers job_notify_event, job_archive_notify_event")
            if config.with_timescale is not False:
                done = await _install_timescale(conn, config.schema, asked=bool(config.with_timescale))
                if done:
                    actions.append(done)
    finally:
        await conn.close()
    for action in actions:
        log.info("schema %s: %s", config.schema, action)
    return actions
