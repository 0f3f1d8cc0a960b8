"""The dashboard's reads, one statement per view, over every table it shows (all read-only; its
writes go through the client's operations and their table modules).

Each statement is built to stay fast on big tables: lists walk the primary key from a cursor
(no OFFSET), counts of big tables come from a block sample of a fixed number of pages, the hour's
chart reads the archive's ``updated_at`` index.
"""

from __future__ import annotations

from psycopg import sql

from .fragments import NOW_UTC, PRIORITY_OF, QUEUE_OF

# What a list row shows: never parameters or results, the error cut short.
_LIST_COLUMNS = f"""id, rid, task_name, status, {QUEUE_OF} AS queue, {PRIORITY_OF}::text AS priority,
attempts, worker_rid, scheduled_at, started_at, created_at, updated_at, left(error, 200) AS error"""

# The filters of the job lists (each NULL when unset; the planner drops those at plan time, so
# statements run unprepared). ``text`` is an ILIKE pattern on the task name and the error.
_FILTER = f"""(%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR {QUEUE_OF} = %(queue)s)
  AND (%(task)s::text IS NULL OR task_name = %(task)s)
  AND (%(rid)s::uuid IS NULL OR rid = %(rid)s)
  AND (%(text)s::text IS NULL OR task_name ILIKE %(text)s OR error ILIKE %(text)s)"""

# Older rows than the cursor (or the newest page), newest first; and newer rows than a cursor,
# oldest first (the caller reverses them).
_OLDER = f"""SELECT {_LIST_COLUMNS} FROM {{table}}
WHERE {_FILTER} AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)
ORDER BY id DESC LIMIT %(entries)s"""
_NEWER = f"""SELECT {_LIST_COLUMNS} FROM {{table}}
WHERE {_FILTER} AND id > %(cursor)s
ORDER BY id ASC LIMIT %(entries)s"""
# The rids a bulk action works through, a batch at a time from a cursor.
_MATCHING = f"""SELECT id, rid FROM {{table}}
WHERE {_FILTER} AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)
ORDER BY id DESC LIMIT %(entries)s"""

# Counts by status, queue and task: of every row, or of a SYSTEM sample of %(percent)s of the
# table's pages scaled up (``scale`` = 100 / percent).
_COUNTS = f"""SELECT status, {QUEUE_OF} AS queue, task_name, count(*) * %(scale)s::float8 AS n
FROM {{table}} {{sample}} GROUP BY 1, 2, 3"""

_PAGES = """SELECT pg_relation_size(%(table)s::regclass) / current_setting('block_size')::int AS pages"""

# Jobs archived in each of the last 60 minutes, by status (0: the current minute).
_HOUR = f"""SELECT floor(EXTRACT(EPOCH FROM {NOW_UTC} - updated_at) / 60)::int AS minutes_ago, status,
count(*) AS n
FROM {{job_archive}} WHERE updated_at > {NOW_UTC} - interval '60 minutes'
GROUP BY 1, 2"""

_OLDEST_QUEUED = f"""SELECT EXTRACT(EPOCH FROM {NOW_UTC} - min(created_at))::float8 AS seconds
FROM {{job}} WHERE status = 'QUEUED'"""

# One job, from job or the archive, with its progress and where it belongs.
_JOB = """(SELECT *, FALSE AS ended FROM {job} WHERE rid = %(rid)s LIMIT 1)
UNION ALL
(SELECT *, TRUE FROM {job_archive} WHERE rid = %(rid)s LIMIT 1)
LIMIT 1"""
_PROGRESS = "SELECT fraction, message, updated_at FROM {progress} WHERE job_rid = %(rid)s"
_CHILDREN = f"""(SELECT {_LIST_COLUMNS} FROM {{job}} WHERE options ->> 'parent_rid' = %(rid)s::text LIMIT 100)
UNION ALL
(SELECT {_LIST_COLUMNS} FROM {{job_archive}} WHERE options ->> 'parent_rid' = %(rid)s::text LIMIT 100)"""
_WORKFLOW_OF = """SELECT m.workflow_rid, w.kind FROM {member} AS m JOIN {workflow} AS w ON w.rid = m.workflow_rid
WHERE m.job_rid = %(rid)s LIMIT 1"""
# A workflow's members in order, wherever each job is now.
_MEMBERS = """SELECT m.position, m.stage, m.job_rid AS rid, x.task_name, x.status, x.updated_at
FROM {member} AS m
LEFT JOIN LATERAL (
    (SELECT task_name, status, updated_at FROM {job} WHERE rid = m.job_rid LIMIT 1)
    UNION ALL
    (SELECT task_name, status, updated_at FROM {job_archive} WHERE rid = m.job_rid LIMIT 1)
    LIMIT 1
) AS x ON TRUE
WHERE m.workflow_rid = %(workflow)s ORDER BY m.position"""
# What a job waits for, and what waits for it.
_DEPENDENCIES = """SELECT 'needs' AS relation, depends_on AS rid FROM {dependency} WHERE job_rid = %(rid)s
UNION ALL
SELECT 'needed_by', job_rid FROM {dependency} WHERE depends_on = %(rid)s"""

_WORKERS = f"""SELECT w.id, w.rid, w.name, w.status, w.available_tasks, w.current_concurrency, w.max_concurrency,
w.options, w.created_at, w.updated_at,
EXTRACT(EPOCH FROM {NOW_UTC} - w.updated_at)::float8 AS heartbeat_age,
(SELECT count(*) FROM {{job}} AS j WHERE j.worker_id = w.id AND j.status = 'RUNNING') AS running
FROM {{worker}} AS w
ORDER BY (w.status IN ('STOPPED', 'FAILED')), w.updated_at DESC
LIMIT %(entries)s"""
_RUNNING_OF = f"""SELECT {_LIST_COLUMNS} FROM {{job}} WHERE worker_rid = %(worker)s AND status = 'RUNNING'
ORDER BY id LIMIT 100"""
_MASTER = f"""SELECT m.worker_id, m.worker_rid, m.settings, m.updated_at, w.name AS worker_name,
EXTRACT(EPOCH FROM {NOW_UTC} - m.updated_at)::float8 AS age
FROM {{master}} AS m LEFT JOIN {{worker}} AS w ON w.id = m.worker_id WHERE m.id = 1"""
# A digest of the worker rows, for the live feed (worker rows send no notifications).
_WORKER_DIGEST = """SELECT md5(string_agg(rid::text || status || current_concurrency::text, ',' ORDER BY id))
AS digest, count(*) AS n FROM {worker}"""

# What happened between two scrapes of /metrics, by task and queue: jobs enqueued, started and
# finished (by status), and the finished runs' durations by histogram bucket (``bounds``: the
# buckets' upper bounds). Each event counts in the window holding its timestamp, read from the
# table the row is in now (one snapshot: every row is in exactly one).
_ACTIVITY = f"""WITH rows AS (
    SELECT task_name, {QUEUE_OF} AS queue, NULL::text AS status, created_at, started_at, NULL::timestamp AS ended_at
    FROM {{job}} WHERE created_at >= %(since)s AND created_at < %(until)s
    UNION ALL
    SELECT task_name, {QUEUE_OF}, NULL, created_at, started_at, NULL
    FROM {{job}} WHERE status = 'RUNNING' AND started_at >= %(since)s AND started_at < %(until)s
      AND created_at < %(since)s
    UNION ALL
    SELECT task_name, {QUEUE_OF}, status, created_at, started_at, updated_at
    FROM {{job_archive}} WHERE updated_at >= %(since)s
)
SELECT task_name, queue, status,
       count(*) FILTER (WHERE created_at >= %(since)s AND created_at < %(until)s) AS enqueued,
       count(*) FILTER (WHERE started_at >= %(since)s AND started_at < %(until)s) AS started,
       count(*) FILTER (WHERE ended_at < %(until)s) AS finished,
       count(*) FILTER (WHERE timed) AS timed,
       COALESCE(sum(run) FILTER (WHERE timed), 0) AS run_seconds,
       CASE WHEN timed THEN width_bucket(run, %(bounds)s::float8[]) END AS bucket
FROM (SELECT *, ended_at < %(until)s AND started_at IS NOT NULL AS timed,
             EXTRACT(EPOCH FROM ended_at - started_at)::float8 AS run FROM rows) AS r
GROUP BY task_name, queue, status, bucket"""


class DashboardTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        names = {
            "job": sql.Identifier(schema, "job"),
            "job_archive": sql.Identifier(schema, "job_archive"),
            "worker": sql.Identifier(schema, "worker"),
            "master": sql.Identifier(schema, "master"),
            "progress": sql.Identifier(schema, "queuer_py_progress"),
            "member": sql.Identifier(schema, "queuer_py_member"),
            "workflow": sql.Identifier(schema, "queuer_py_workflow"),
            "dependency": sql.Identifier(schema, "queuer_py_dependency"),
        }
        self.qualified = {key: name.as_string(None) for key, name in names.items()}

        def compose(template: str, **extra: sql.Composable) -> str:
            return sql.SQL(template).format(**names, **extra).as_string(None)

        def per_table(template: str, **extra: sql.Composable) -> dict[bool, str]:
            """The statement on ``job`` (False) and on ``job_archive`` (True)."""
            return {
                ended: compose(template, table=names["job_archive" if ended else "job"], **extra)
                for ended in (False, True)
            }

        self.older = per_table(_OLDER)
        self.newer = per_table(_NEWER)
        self.matching = per_table(_MATCHING)
        self.counts_exact = per_table(_COUNTS, sample=sql.SQL(""))
        self.counts_sampled = per_table(_COUNTS, sample=sql.SQL("TABLESAMPLE SYSTEM (%(percent)s)"))
        self.pages = _PAGES
        self.hour = compose(_HOUR)
        self.oldest_queued = compose(_OLDEST_QUEUED)
        self.job = compose(_JOB)
        self.progress = compose(_PROGRESS)
        self.children = compose(_CHILDREN)
        self.workflow_of = compose(_WORKFLOW_OF)
        self.members = compose(_MEMBERS)
        self.dependencies = compose(_DEPENDENCIES)
        self.workers = compose(_WORKERS)
        self.running_of = compose(_RUNNING_OF)
        self.master = compose(_MASTER)
        self.worker_digest = compose(_WORKER_DIGEST)
        self.activity = compose(_ACTIVITY)
