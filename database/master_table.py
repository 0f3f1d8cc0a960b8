"""Every SQL statement of the master role: the lock on ``master`` row 1 and the stale handling
of docs/go-interop.md §5.10-5.11 (with the fixes of §8 items 6 and 7)."""

from __future__ import annotations

from psycopg import sql

from .fragments import JOB_COLUMN_LIST, NOW_UTC, archive_move

_COLS = JOB_COLUMN_LIST
_WORKER_DIED = (
    "'WorkerDied: worker ' || COALESCE(worker_rid::text, '?') || "
    "' stopped heartbeating while running this job (attempt ' || attempts || ')'"
)

# A worker is dead when it has not heartbeaten within its threshold: a started Python worker's
# own (queuer_py_worker), or the given one (at least Go's 2 minutes) for every other worker.
_STALE_AFTER = "COALESCE((SELECT p.stale_after FROM {heartbeats} AS p WHERE p.worker_id = w.id), %(threshold)s::interval)"

# Acquire or renew: granted when row 1 can be locked without waiting and it names us, nobody, or a
# holder that has not renewed within the lock timeout (Go's rule), or a holder that is no longer
# alive: its worker row gone, STOPPED, or a Python worker past its heartbeat threshold (so a
# crashed Python master is replaced within seconds, not minutes; a Go master's row is never
# judged by this). Returns the previous holder and settings; no row: someone else holds it.
_ACQUIRE = f"""
WITH old AS (
    SELECT worker_id, worker_rid, settings FROM {{master}} AS m
    WHERE id = 1 AND (worker_id = %(worker_id)s OR worker_id = 0
                      OR updated_at < {NOW_UTC} - %(lock_timeout)s::interval
                      OR NOT EXISTS (SELECT 1 FROM {{worker}} AS w
                                     WHERE w.id = m.worker_id AND w.status <> 'STOPPED')
                      OR EXISTS (SELECT 1 FROM {{worker}} AS w JOIN {{heartbeats}} AS p ON p.worker_id = w.id
                                 WHERE w.id = m.worker_id AND w.status IN ('READY', 'RUNNING')
                                   AND w.updated_at < {NOW_UTC} - p.stale_after))
    FOR UPDATE SKIP LOCKED
)
UPDATE {{master}} AS m
SET worker_id = %(worker_id)s, worker_rid = %(worker_rid)s, settings = %(settings)s::jsonb,
    updated_at = {NOW_UTC}
FROM old WHERE m.id = 1
RETURNING old.worker_id, old.worker_rid, old.settings
"""

_RELEASE = f"""
UPDATE {{master}} SET worker_id = 0, worker_rid = NULL, updated_at = {NOW_UTC}
WHERE id = 1 AND worker_id = %s
"""

_SELECT = "SELECT worker_id, worker_rid, settings, updated_at FROM {master} WHERE id = 1"

# Workers that stopped heartbeating: STOPPED, updated_at unchanged (as Go does). STOPPING rows are
# left alone: a draining Go worker legitimately stops refreshing its row.
_STALE_WORKERS = f"""
UPDATE {{worker}} AS w SET status = 'STOPPED'
WHERE status IN ('READY', 'RUNNING') AND updated_at < {NOW_UTC} - {_STALE_AFTER}
RETURNING rid
"""

# RUNNING jobs of workers that are STOPPED (for longer than the grace the worker itself gets to
# cancel them) or that no longer exist: back to the queue when the job's on_error allows another
# run (same row and rid), otherwise archived FAILED with the reason.
# Which way each goes is the job's retry policy (``OnError.allows_retry``), decided between the two
# statements of one transaction: the first locks the dead jobs, the second moves them.
_DEAD_JOBS = f"""
SELECT j.id, j.attempts, j.options -> 'on_error' AS on_error
FROM {{job}} AS j LEFT JOIN {{worker}} AS w ON w.rid = j.worker_rid
WHERE j.status = 'RUNNING'
  AND (w.id IS NULL OR (w.status = 'STOPPED' AND w.updated_at < {NOW_UTC} - {_STALE_AFTER}))
FOR UPDATE OF j SKIP LOCKED
"""
_RESCUE = f"""
WITH requeued AS (
    UPDATE {{job}} SET status = 'QUEUED' WHERE id = ANY(%(again)s::bigint[]) AND status = 'RUNNING' RETURNING id
), failed AS (
    DELETE FROM {{job}} WHERE id = ANY(%(give_up)s::bigint[]) AND status = 'RUNNING' RETURNING *
), archived AS (
    INSERT INTO {{job_archive}} ({_COLS})
    SELECT {archive_move("'FAILED'", "'null'::jsonb", "''", _WORKER_DIED)}
    FROM failed
    RETURNING id
)
SELECT (SELECT count(*) FROM requeued) AS requeued, (SELECT count(*) FROM archived) AS failed
"""

# Stopped workers are deleted once old, and only when no job still names them as RUNNING.
_DELETE_WORKERS = f"""
DELETE FROM {{worker}} AS w
WHERE w.status = 'STOPPED' AND w.updated_at < {NOW_UTC} - %s::interval
  AND NOT EXISTS (SELECT 1 FROM {{job}} AS j WHERE j.worker_rid = w.rid AND j.status = 'RUNNING')
RETURNING rid
"""

# Heartbeat thresholds of workers that no longer exist.
_FORGET_WORKERS = (
    "DELETE FROM {heartbeats} AS p WHERE NOT EXISTS (SELECT 1 FROM {worker} AS w WHERE w.id = p.worker_id)"
)


# Archive retention without TimescaleDB: the master deletes rows older than the retention in
# bounded batches (never a per-insert trigger, so finishing jobs never pays for it), oldest first.
# The rows are found by walking the updated_at index (ORDER BY keeps any plan on it) and deleted by
# their ctid (a TID scan): the earlier "(id, updated_at) IN (... LIMIT n)" ran as a generic plan
# that read the whole archive on every master tick when no row was old enough, longer as the
# archive grew. Archive rows are never updated, so a ctid found here still names its row.
_RETENTION_BATCH = (
    """
DELETE FROM {job_archive} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {job_archive} WHERE updated_at < """
    + NOW_UTC
    + """ - %s::interval ORDER BY updated_at LIMIT %s
))
"""
)

_HAS_TIMESCALE = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS present"
_IS_HYPERTABLE = """
SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
               WHERE hypertable_schema = %s AND hypertable_name = 'job_archive') AS hyper
"""


class MasterTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        names = {t: sql.Identifier(schema, t) for t in ("master", "worker", "job", "job_archive")}
        names["heartbeats"] = sql.Identifier(schema, "queuer_py_worker")

        def compose(template: str) -> str:
            return sql.SQL(template).format(**names).as_string(None)

        self.acquire = compose(_ACQUIRE)
        self.release = compose(_RELEASE)
        self.select = compose(_SELECT)
        self.stale_workers = compose(_STALE_WORKERS)
        self.dead_jobs = compose(_DEAD_JOBS)
        self.rescue = compose(_RESCUE)
        self.delete_workers = compose(_DELETE_WORKERS)
        self.forget_workers = compose(_FORGET_WORKERS)
        self.retention_batch = compose(_RETENTION_BATCH)
        self.has_timescale = _HAS_TIMESCALE
        self.remove_retention_policy = "SELECT remove_retention_policy(%s, if_exists => TRUE)"
        self.add_retention_policy = "SELECT add_retention_policy(%s, drop_after => %s::interval)"
        self.is_hypertable = _IS_HYPERTABLE
        self.archive_name = f"{schema}.job_archive"
