"""Every SQL statement on ``worker`` (docs/go-interop.md §1.3, §5.9)."""

from __future__ import annotations

from psycopg import sql

from .fragments import NOW_UTC

_COLS = (
    "id, rid, name, options, available_tasks, available_next_interval, max_concurrency, status, "
    "created_at, updated_at"
)


class WorkerTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        worker = sql.Identifier(schema, "worker")
        heartbeats = sql.Identifier(schema, "queuer_py_worker")

        def compose(template: str) -> str:
            return sql.SQL(template).format(worker=worker, heartbeats=heartbeats).as_string(None)

        self.insert = compose(
            f"INSERT INTO {{worker}} (name, options, max_concurrency, available_tasks, "
            f"available_next_interval, status, created_at, updated_at) "
            f"VALUES (%s, %s::jsonb, %s, %s::varchar[], %s::varchar[], 'READY', {NOW_UTC}, {NOW_UTC}) "
            f"RETURNING {_COLS}"
        )
        self.update_capabilities = compose(
            f"UPDATE {{worker}} SET available_tasks = %s::varchar[], available_next_interval = %s::varchar[], "
            f"updated_at = {NOW_UTC} WHERE id = %s"
        )
        self.rename = compose(
            f"UPDATE {{worker}} SET name = %s, max_concurrency = %s, updated_at = {NOW_UTC} WHERE id = %s "
            f"RETURNING {_COLS}"
        )
        self.set_status = compose(
            f"UPDATE {{worker}} SET status = %s, updated_at = {NOW_UTC} WHERE id = %s RETURNING {_COLS}"
        )
        # The heartbeat never overwrites a STOPPED/STOPPING written by someone else (§5.9, §8 item 17).
        self.heartbeat = compose(
            f"UPDATE {{worker}} SET updated_at = {NOW_UTC}, "
            f"status = CASE WHEN status IN ('STOPPED', 'STOPPING') THEN status ELSE 'RUNNING' END "
            f"WHERE id = %s RETURNING status, max_concurrency"
        )
        self.select = compose(f"SELECT {_COLS} FROM {{worker}} WHERE rid = %s")
        # A worker row that never ran anything (its process failed while starting up).
        self.delete_unstarted = compose("DELETE FROM {worker} WHERE id = %s AND status = 'READY'")
        # A started Python worker's staleness threshold (its own table, see schema_v1.sql).
        self.register_heartbeat = compose(
            "INSERT INTO {heartbeats} (worker_id, stale_after) VALUES (%s, %s) "
            "ON CONFLICT (worker_id) DO UPDATE SET stale_after = EXCLUDED.stale_after"
        )
        # Stop requests from any process (§5.9): STOPPED = stop now, STOPPING = drain, then stop.
        self.request_stop = compose(
            f"UPDATE {{worker}} SET status = %s, updated_at = {NOW_UTC} "
            f"WHERE rid = %s AND status <> 'STOPPED' RETURNING {_COLS}"
        )
        self.set_draining = compose(
            f"UPDATE {{worker}} SET max_concurrency = 0, updated_at = {NOW_UTC} WHERE id = %s"
        )
        self.page = compose(
            f"SELECT {_COLS} FROM {{worker}} WHERE (%(last_id)s = 0 OR (created_at, id) < "
            f"(SELECT created_at, id FROM {{worker}} WHERE id = %(last_id)s)) "
            f"ORDER BY created_at DESC, id DESC LIMIT %(entries)s"
        )
        self.filtered = compose(
            f"SELECT {_COLS} FROM {{worker}} WHERE (%(status)s::text IS NULL OR status = %(status)s) "
            f"AND (%(search)s::text IS NULL OR name ILIKE '%%' || %(search)s || '%%' "
            f"     OR array_to_string(available_tasks, ',') ILIKE '%%' || %(search)s || '%%' "
            f"     OR status ILIKE '%%' || %(search)s || '%%') "
            f"AND (%(last_id)s = 0 OR (created_at, id) < (SELECT created_at, id FROM {{worker}} WHERE id = %(last_id)s)) "
            f"ORDER BY created_at DESC, id DESC LIMIT %(entries)s"
        )
        # The sessions of every queuer process (Python or Go) on this database.
        self.connections = (
            "SELECT pid, datname, usename, application_name, state, backend_start, "
            "left(query, 200) AS query FROM pg_stat_activity WHERE application_name = 'queuer' "
            "AND datname = current_database() ORDER BY backend_start"
        )
        # Which of the given task and next-interval names no worker row lists (one query per batch).
        self.unknown_names = compose(
            "SELECT 'task' AS kind, n FROM unnest(%s::text[]) AS n "
            "WHERE NOT EXISTS (SELECT 1 FROM {worker} WHERE n = ANY(available_tasks)) "
            "UNION ALL SELECT 'next_interval', n FROM unnest(%s::text[]) AS n "
            "WHERE NOT EXISTS (SELECT 1 FROM {worker} WHERE n = ANY(available_next_interval))"
        )
