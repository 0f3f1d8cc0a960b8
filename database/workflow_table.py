"""Every SQL statement on Python's workflow tables (``queuer_py_workflow``, ``queuer_py_member``,
``queuer_py_wait``, ``queuer_py_dependency``); the transitions that run when a job is archived by
a worker are part of the worker's cycle (``job_table``), these are the rest."""

from __future__ import annotations

from psycopg import sql

from .fragments import HELD, HELD_J, JOB_COLUMN_LIST, NOW_UTC, cancel_doomed

_COLS = JOB_COLUMN_LIST

# A workflow's links, written in one statement with the rows of its jobs' dependencies and waits.
_INSERT_LINKS = """
WITH wf AS (
    INSERT INTO {workflow} (rid, kind) SELECT %(workflow)s, %(kind)s WHERE %(workflow)s::uuid IS NOT NULL
), members AS (
    INSERT INTO {member} (workflow_rid, position, stage, job_rid)
    SELECT %(workflow)s, x.position, x.stage, x.rid
    FROM json_to_recordset(%(members)s::json) AS x(position int, stage int, rid uuid)
), deps AS (
    INSERT INTO {dependency} (job_rid, depends_on, position)
    SELECT x.job_rid, x.depends_on, x.position
    FROM json_to_recordset(%(dependencies)s::json) AS x(job_rid uuid, depends_on uuid, position int)
), waits AS (
    INSERT INTO {wait} (job_rid, remaining)
    SELECT x.job_rid, x.remaining FROM json_to_recordset(%(waits)s::json) AS x(job_rid uuid, remaining int)
)
SELECT 1
"""

# Where the jobs named in depends_on are: live, or archived with their status.
_WHERE_ARE = """
SELECT rid, status, FALSE AS ended FROM {job} WHERE rid = ANY(%(rids)s::uuid[])
UNION ALL
SELECT rid, status, TRUE FROM {job_archive} WHERE rid = ANY(%(rids)s::uuid[])
"""

# A live job that another now depends on says so in its options, so that the worker that
# finishes it moves the workflow on in the same statement.
_MARK_DEPENDENTS = """
UPDATE {job} SET options = jsonb_set(
    COALESCE(options, '{{}}'::jsonb), '{{metadata}}',
    COALESCE(options -> 'metadata', '{{}}'::jsonb) || jsonb_build_object(
        'queuer_py', COALESCE(options -> 'metadata' -> 'queuer_py', '{{}}'::jsonb) || '{{"dependents": true}}'::jsonb))
WHERE rid = ANY(%(rids)s::uuid[])
"""

# The master's sweep, for what the cycle cannot see: a dependency that a Go worker ran, that was
# cancelled, expired or rescued as failed, or that ended while its dependent was being added.
# Held jobs whose dependencies all succeeded are released; those with a failed one are archived
# CANCELLED with their dependents.
_SWEEP = f"""
WITH RECURSIVE held AS (
    SELECT w.job_rid FROM {{wait}} AS w JOIN {{job}} AS j ON j.rid = w.job_rid AND {HELD_J}
), deps AS (
    SELECT d.job_rid, d.depends_on, a.status FROM {{dependency}} AS d JOIN held AS h ON h.job_rid = d.job_rid
    LEFT JOIN LATERAL (SELECT status FROM {{job_archive}} WHERE rid = d.depends_on LIMIT 1) AS a ON TRUE
), ready AS (
    SELECT job_rid FROM deps GROUP BY job_rid HAVING bool_and(COALESCE(status = 'SUCCEEDED', FALSE))
), released AS (
    UPDATE {{job}} AS j SET status = 'QUEUED', scheduled_at = NULL
    FROM ready AS r WHERE j.rid = r.job_rid AND {HELD_J}
    RETURNING j.rid
), doomed AS (
    SELECT job_rid AS rid, depends_on AS cause, status AS cause_status FROM deps
    WHERE status IN ('FAILED', 'CANCELLED')
    UNION
    SELECT d.job_rid, x.cause, x.cause_status FROM {{dependency}} AS d JOIN doomed AS x ON d.depends_on = x.rid
{cancel_doomed()})
SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM doomed_archived) AS cancelled
"""

# Links no longer needed: waits of jobs no longer held, dependencies of jobs that ended.
_FORGET = f"""
WITH waits AS (
    DELETE FROM {{wait}} AS w WHERE NOT EXISTS (SELECT 1 FROM {{job}} WHERE rid = w.job_rid AND {HELD})
)
DELETE FROM {{dependency}} AS d WHERE EXISTS (SELECT 1 FROM {{job_archive}} WHERE rid = d.job_rid)
"""

# What a released job receives: the results of the jobs it waited for, in their order.
_RESULTS = """
SELECT d.position, a.results, a.results_encrypted
FROM {dependency} AS d JOIN LATERAL (
    SELECT results, results_encrypted FROM {job_archive} WHERE rid = d.depends_on LIMIT 1
) AS a ON TRUE
WHERE d.job_rid = %(rid)s ORDER BY d.position
"""

# A workflow's members in order, each wherever it is now.
_MEMBERS = f"""
SELECT m.position, m.stage, x.* FROM {{member}} AS m
CROSS JOIN LATERAL (
    (SELECT {_COLS} FROM {{job}} WHERE rid = m.job_rid)
    UNION ALL
    (SELECT {_COLS} FROM {{job_archive}} WHERE rid = m.job_rid)
    LIMIT 1
) AS x
WHERE m.workflow_rid = %(rid)s ORDER BY m.position
"""


PROGRESS_CHANNEL = "queuer_py_progress"  # NOTIFY: {"rid", "fraction", "message"}
_WRITE_PROGRESS = f"""
WITH p AS (
    INSERT INTO {{progress}} AS cur (job_rid, fraction, message, updated_at)
    VALUES (%(rid)s, %(fraction)s, %(message)s, {NOW_UTC})
    ON CONFLICT (job_rid) DO UPDATE SET fraction = EXCLUDED.fraction, message = EXCLUDED.message,
        updated_at = EXCLUDED.updated_at
    RETURNING job_rid, fraction, message
)
SELECT pg_notify('{PROGRESS_CHANNEL}', json_build_object('rid', job_rid, 'fraction', fraction, 'message', message)::text)
FROM p
"""


class WorkflowTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        names = {
            name: sql.Identifier(schema, table)
            for name, table in (
                ("job", "job"),
                ("job_archive", "job_archive"),
                ("workflow", "queuer_py_workflow"),
                ("member", "queuer_py_member"),
                ("wait", "queuer_py_wait"),
                ("dependency", "queuer_py_dependency"),
                ("progress", "queuer_py_progress"),
            )
        }

        def compose(template: str) -> str:
            return sql.SQL(template).format(**names).as_string(None)

        self.insert_links = compose(_INSERT_LINKS)
        self.where_are = compose(_WHERE_ARE)
        self.mark_dependents = compose(_MARK_DEPENDENTS)
        self.sweep = compose(_SWEEP)
        self.forget = compose(_FORGET)
        self.results = compose(_RESULTS)
        self.members = compose(_MEMBERS)
        self.write_progress = compose(_WRITE_PROGRESS)
        self.read_progress = compose(
            "SELECT fraction, message, updated_at FROM {progress} WHERE job_rid = %(rid)s"
        )
        # Progress of ended jobs is dropped by the master with the other links.
        self.forget_progress = compose(
            "DELETE FROM {progress} AS p WHERE EXISTS (SELECT 1 FROM {job_archive} WHERE rid = p.job_rid)"
        )
        self.kind = compose("SELECT kind FROM {workflow} WHERE rid = %(rid)s")
