"""Every SQL statement on ``job`` and ``job_archive``, with the row effects of POLYGLOT.md §5.

Statements are composed once per schema (identifiers quoted with ``psycopg.sql``) and executed on a
pooled connection, or on the caller's own connection for transactional enqueue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import sql
from queuer.model import JOB_COLUMNS

NOW_UTC = "(now() AT TIME ZONE 'UTC')"
_COLS = ", ".join(JOB_COLUMNS)
# What running a job needs: results and error are always [] and '' in job (results decode = waste).
_CLAIM_COLS = ", ".join(
    f"j.{c}" for c in JOB_COLUMNS if c not in ("results", "results_encrypted", "error", "updated_at")
)

_INSERT = f"""
INSERT INTO {{job}} (rid, options, task_name, parameters, parameters_keyed, status, scheduled_at,
                    schedule_count, parameters_encrypted, parameters_keyed_encrypted, created_at, updated_at)
VALUES (%s, %s::jsonb, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, {NOW_UTC}, {NOW_UTC})
RETURNING {_COLS}
"""

# One statement claims up to %(limit)s due jobs this worker can run, oldest first (§5.3).
_CLAIM = f"""
WITH picked AS (
    SELECT id FROM {{job}}
    WHERE (status = 'QUEUED' OR (status = 'SCHEDULED' AND scheduled_at <= {NOW_UTC}))
      AND task_name = ANY(%(tasks)s::text[])
      AND (COALESCE(options -> 'schedule' ->> 'next_interval', '') = ''
           OR options -> 'schedule' ->> 'next_interval' = ANY(%(intervals)s::text[]))
    ORDER BY created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {{job}} AS j
SET worker_id = %(worker_id)s, worker_rid = %(worker_rid)s, status = 'RUNNING',
    started_at = {NOW_UTC}, schedule_count = j.schedule_count + 1, attempts = j.attempts + 1,
    updated_at = {NOW_UTC}
FROM picked WHERE j.id = picked.id
RETURNING {_CLAIM_COLS}
"""

# Moves finished jobs to the archive in one statement; guarded by the claim that holds each job
# (worker and attempt), so a job rescued from this worker is left alone (§5.6, §8 item 8).
_FINISH = f"""
WITH done AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(statuses)s::text[],
                         %(results)s::text[], %(results_encrypted)s::bytea[], %(errors)s::text[])
        AS d(id, attempts, status, results, results_encrypted, error)
), moved AS (
    DELETE FROM {{job}} AS j USING done AS d
    WHERE j.id = d.id AND j.worker_id = %(worker_id)s AND j.status = 'RUNNING' AND j.attempts = d.attempts
    RETURNING j.*, d.status AS new_status, d.results AS new_results,
              d.results_encrypted AS new_results_encrypted, d.error AS new_error
)
INSERT INTO {{job_archive}} ({_COLS})
SELECT id, rid, worker_id, worker_rid, options, task_name, parameters, parameters_encrypted,
       parameters_keyed, parameters_keyed_encrypted, new_status, scheduled_at, started_at,
       schedule_count, attempts, new_results::jsonb, new_results_encrypted, new_error, created_at, {NOW_UTC}
FROM moved
RETURNING id
"""

# Next occurrences of recurring jobs, written in the transaction that archives the current ones,
# and only for those this worker really archived in it (guarded finish, same transaction time).
_INSERT_FOLLOW_UPS = f"""
INSERT INTO {{job}} (rid, options, task_name, parameters, parameters_keyed, status, scheduled_at,
                    schedule_count, parameters_encrypted, parameters_keyed_encrypted, created_at, updated_at)
SELECT f.rid, f.options::jsonb, f.task_name, f.parameters::jsonb, f.parameters_keyed::jsonb, f.status,
       f.scheduled_at, f.schedule_count, f.parameters_encrypted, f.parameters_keyed_encrypted, {NOW_UTC}, {NOW_UTC}
FROM unnest(%(rids)s::uuid[], %(options)s::text[], %(task_names)s::text[], %(parameters)s::text[],
            %(parameters_keyed)s::text[], %(statuses)s::text[], %(scheduled_at)s::timestamp[],
            %(schedule_counts)s::int[], %(parameters_encrypted)s::bytea[], %(parameters_keyed_encrypted)s::bytea[],
            %(source_ids)s::bigint[])
     AS f(rid, options, task_name, parameters, parameters_keyed, status, scheduled_at, schedule_count,
          parameters_encrypted, parameters_keyed_encrypted, source_id)
WHERE EXISTS (SELECT 1 FROM {{job_archive}} AS a WHERE a.id = f.source_id AND a.worker_id = %(worker_id)s
              AND a.updated_at = {NOW_UTC} AND a.status IN ('SUCCEEDED', 'FAILED'))
"""

# Puts jobs back in the queue (retry with a delay, or released at shutdown); same row and rid (§5.7).
_REQUEUE = f"""
UPDATE {{job}} AS j
SET status = CASE WHEN d.due > {NOW_UTC} THEN 'SCHEDULED' ELSE 'QUEUED' END,
    scheduled_at = CASE WHEN d.due > {NOW_UTC} THEN d.due ELSE j.scheduled_at END
FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(due)s::timestamp[]) AS d(id, attempts, due)
WHERE j.id = d.id AND j.worker_id = %(worker_id)s AND j.status = 'RUNNING' AND j.attempts = d.attempts
RETURNING j.id
"""

# Cancel: the archive move with status CANCELLED, results and error copied from the row (§5.8).
_CANCEL = f"""
WITH moved AS (
    DELETE FROM {{job}} WHERE {{where}} AND status IN ('QUEUED', 'SCHEDULED', 'RUNNING') RETURNING *
)
INSERT INTO {{job_archive}} ({_COLS})
SELECT id, rid, worker_id, worker_rid, options, task_name, parameters, parameters_encrypted,
       parameters_keyed, parameters_keyed_encrypted, 'CANCELLED', scheduled_at, started_at,
       schedule_count, attempts, results, results_encrypted, error, created_at, {NOW_UTC}
FROM moved
RETURNING {_COLS}
"""

# Re-add (§5.14): a new job (new rid) with the archived task, parameters and options; a schedule
# makes it SCHEDULED at its original start. Encrypted parameters are carried over as they are.
_READD = f"""
INSERT INTO {{job}} (rid, options, task_name, parameters, parameters_keyed, parameters_encrypted,
                    parameters_keyed_encrypted, status, scheduled_at, created_at, updated_at)
SELECT %s, options, task_name, parameters, parameters_keyed, parameters_encrypted,
       parameters_keyed_encrypted,
       CASE WHEN options -> 'schedule' ->> 'start' IS NULL THEN 'QUEUED' ELSE 'SCHEDULED' END,
       (options -> 'schedule' ->> 'start')::timestamptz AT TIME ZONE 'UTC', {NOW_UTC}, {NOW_UTC}
FROM {{job_archive}} WHERE rid = %s
LIMIT 1
RETURNING {_COLS}
"""

# Filtered listing for operators (the CLI): newest first, same cursor as the pages below.
_SELECT_FILTERED = f"""
SELECT {_COLS} FROM {{table}}
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(task)s::text IS NULL OR task_name = %(task)s)
  AND (%(search)s::text IS NULL OR rid::text ILIKE '%%' || %(search)s || '%%'
       OR task_name ILIKE '%%' || %(search)s || '%%' OR status ILIKE '%%' || %(search)s || '%%')
  AND (%(last_id)s = 0 OR (created_at, id) <
       (SELECT created_at, id FROM {{table}} WHERE id = %(last_id)s LIMIT 1))
ORDER BY created_at DESC, id DESC
LIMIT %(entries)s
"""

_SELECT_ONE = f"SELECT {_COLS} FROM {{table}} WHERE rid = %s LIMIT 1"

# Newest first; the cursor is the (created_at, id) of the row with id last_id, so rows that share a
# created_at (every batch) are neither skipped nor repeated (fixes §8 item 15).
_SELECT_PAGE = f"""
SELECT {_COLS} FROM {{table}}
WHERE {{filter}} AND (%(last_id)s = 0 OR (created_at, id) <
      (SELECT created_at, id FROM {{table}} WHERE id = %(last_id)s LIMIT 1))
ORDER BY created_at DESC, id DESC
LIMIT %(entries)s
"""


class NewJob(NamedTuple):
    """The values of one job insert, already validated and encoded (in the insert's order)."""

    rid: UUID
    options_json: str
    task_name: str
    parameters_json: str
    parameters_keyed_json: str
    status: str
    scheduled_at: Any
    schedule_count: int = 0
    parameters_encrypted: bytes = b""
    parameters_keyed_encrypted: bytes = b""
    next_interval: str | None = None  # not a column: for validating the name before the write

    def params(self) -> tuple[Any, ...]:
        """The ten values of the insert, in its order."""
        return tuple(self)[:10]


# Columns written by the COPY of add_jobs, in this order.
COPY_COLUMNS = (
    "rid",
    "options",
    "task_name",
    "parameters",
    "parameters_keyed",
    "status",
    "scheduled_at",
    "schedule_count",
    "parameters_encrypted",
    "parameters_keyed_encrypted",
    "created_at",
    "updated_at",
)


class JobTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        names = {"job": sql.Identifier(schema, "job"), "job_archive": sql.Identifier(schema, "job_archive")}

        def compose(template: str, **extra: sql.Composable) -> str:
            return sql.SQL(template).format(**names, **extra).as_string(None)

        self.insert = compose(_INSERT)
        self.claim = compose(_CLAIM)
        self.finish = compose(_FINISH)
        self.requeue = compose(_REQUEUE)
        self.insert_follow_ups = compose(_INSERT_FOLLOW_UPS)
        self.cancel = compose(_CANCEL, where=sql.SQL("rid = %s"))
        self.cancel_by_worker = compose(_CANCEL, where=sql.SQL("worker_rid = %s"))
        self.readd = compose(_READD)
        self.filtered_jobs = compose(_SELECT_FILTERED, table=names["job"])
        self.filtered_ended = compose(_SELECT_FILTERED, table=names["job_archive"])
        # Operators' overview (queuer stats): counts by table, status and task; recent throughput.
        self.stats = compose(
            "SELECT 'job' AS tbl, status, task_name, count(*) AS n FROM {job} GROUP BY status, task_name "
            "UNION ALL SELECT 'job_archive', status, task_name, count(*) FROM {job_archive} "
            "GROUP BY status, task_name ORDER BY 1, 2, 3"
        )
        self.recent = compose(
            f"SELECT count(*) AS finished_last_minute, "
            f"(SELECT EXTRACT(EPOCH FROM {NOW_UTC} - min(created_at))::float8 FROM {{job}} WHERE status = 'QUEUED')"
            f" AS oldest_queued_seconds FROM {{job_archive}} WHERE updated_at > {NOW_UTC} - interval '1 minute'"
        )
        self.select_job = compose(_SELECT_ONE, table=names["job"])
        self.select_ended = compose(_SELECT_ONE, table=names["job_archive"])
        self.page_jobs = compose(_SELECT_PAGE, table=names["job"], filter=sql.SQL("TRUE"))
        self.page_ended = compose(_SELECT_PAGE, table=names["job_archive"], filter=sql.SQL("TRUE"))
        self.page_by_worker = compose(
            _SELECT_PAGE, table=names["job"], filter=sql.SQL("worker_rid = %(worker_rid)s")
        )
        self.copy = compose(
            "COPY {job} ({cols}) FROM STDIN (FORMAT BINARY)",
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in COPY_COLUMNS),
        )
        # Seconds until the earliest SCHEDULED job this worker could run (server clock; NULL: none).
        self.next_due = compose(
            f"SELECT EXTRACT(EPOCH FROM (min(scheduled_at) - {NOW_UTC}))::float8 AS seconds FROM {{job}} "
            "WHERE status = 'SCHEDULED' AND task_name = ANY(%(tasks)s::text[]) "
            "AND (COALESCE(options -> 'schedule' ->> 'next_interval', '') = '' "
            "     OR options -> 'schedule' ->> 'next_interval' = ANY(%(intervals)s::text[]))"
        )
        # Fresh statistics keep the claim on its index after a big batch (stale ones make the
        # planner think the table is tiny and sort the whole queue on every claim).
        self.analyze = compose("ANALYZE {job}")
        self.needs_analyze = (
            "SELECT n_mod_since_analyze > GREATEST(1000, n_live_tup / 10) AS stale FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'job'"
        )
        self.running_of_worker = compose(
            "SELECT id, attempts FROM {job} WHERE worker_id = %s AND status = 'RUNNING'"
        )


def follow_up_params(worker_id: int, follow_ups: Sequence[tuple[int, NewJob]]) -> dict[str, Any]:
    """Columnar parameters of ``JobTable.insert_follow_ups`` from (source job id, new job)."""
    news = [n for _, n in follow_ups]
    return {
        "worker_id": worker_id,
        "source_ids": [i for i, _ in follow_ups],
        "rids": [n.rid for n in news],
        "options": [n.options_json for n in news],
        "task_names": [n.task_name for n in news],
        "parameters": [n.parameters_json for n in news],
        "parameters_keyed": [n.parameters_keyed_json for n in news],
        "statuses": [n.status for n in news],
        "scheduled_at": [n.scheduled_at for n in news],
        "schedule_counts": [n.schedule_count for n in news],
        "parameters_encrypted": [n.parameters_encrypted for n in news],
        "parameters_keyed_encrypted": [n.parameters_keyed_encrypted for n in news],
    }


def finish_params(
    worker_id: int,
    rows: Sequence[tuple[int, int, str, str, bytes, str]],
) -> dict[str, Any]:
    """Columnar parameters of ``JobTable.finish`` from (id, attempts, status, results, enc, error)."""
    ids, attempts, statuses, results, encrypted, errors = (list(col) for col in zip(*rows, strict=True))
    return {
        "worker_id": worker_id,
        "ids": ids,
        "attempts": attempts,
        "statuses": statuses,
        "results": results,
        "results_encrypted": encrypted,
        "errors": errors,
    }
