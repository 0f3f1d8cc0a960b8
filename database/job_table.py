"""Every SQL statement on ``job`` and ``job_archive``, with the row effects of docs/go-interop.md §5.

Statements are composed once per schema (identifiers quoted with ``psycopg.sql``) and executed on a
pooled connection, or on the caller's own connection for transactional enqueue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import sql

from queuer.model import JOB_COLUMNS

from .fragments import (
    EXPIRES_AT_OF,
    HELD_J,
    JOB_COLUMN_LIST,
    NOW_EXPIRY_TEXT,
    NOW_UTC,
    PRIORITY_OF,
    QUEUE_OF,
    READY_AT,
    UNIQUE_KEY_OF,
    archive_move,
    cancel_doomed,
)

_COLS = JOB_COLUMN_LIST
# What running a job needs: results and error are always [] and '' in job (results decode = waste).
# The JSON columns come back as text: most are '{}' or '[]', which the caller maps without a parser.
CLAIM_JSON_COLUMNS = ("options", "parameters", "parameters_keyed")
_CLAIM_COLS = ", ".join(
    f"j.{c}::text AS {c}" if c in CLAIM_JSON_COLUMNS else f"j.{c}"
    for c in JOB_COLUMNS
    if c not in ("results", "results_encrypted", "error", "updated_at")
)
# Beside each claimed row: its key in the claim's order (the priority as jsonb text, READY_AT),
# where a later claim may resume (``ClaimFloor``). NULL for jobs a workflow step released.
_CLAIM_KEY_COLS = "picked.priority::text AS claim_priority, picked.ready_at AS claim_ready_at"

# Parameters named as NewJob's fields (``NewJob._asdict()``), for psycopg and the direct path alike.
_INSERT_INTO = """
INSERT INTO {job} (rid, options, task_name, parameters, parameters_keyed, status, scheduled_at,
                   schedule_count, parameters_encrypted, parameters_keyed_encrypted, created_at, updated_at)
"""
_INSERT_VALUES = f"""%(rid)s, %(options_json)s::jsonb, %(task_name)s, %(parameters_json)s::jsonb,
        %(parameters_keyed_json)s::jsonb, %(status)s, %(scheduled_at)s, %(schedule_count)s,
        %(parameters_encrypted)s, %(parameters_keyed_encrypted)s, {NOW_UTC}, {NOW_UTC}"""
_INSERT = f"{_INSERT_INTO}VALUES ({_INSERT_VALUES})\nRETURNING {_COLS}\n"
# The same insert sent again after the connection broke around the first: the rid was made by the
# client, so a first attempt that did commit is found (in job: a unique violation; in job_archive,
# already run: no row inserted) instead of being enqueued twice.
_INSERT_AGAIN = (
    f"{_INSERT_INTO}SELECT {_INSERT_VALUES}\n"
    "WHERE NOT EXISTS (SELECT 1 FROM {job_archive} WHERE rid = %(rid)s)\n"
    f"RETURNING {_COLS}\n"
)

# One worker cycle in ONE statement (one round trip, one commit): archive the finished jobs
# (guarded by the claim that holds each one: worker and attempt, so a job rescued from this worker
# is left alone, §5.6 and §8 item 8), put retried jobs back (same row and rid, §5.7), insert the
# next occurrence of recurring jobs that were archived here, and claim up to %(limit)s due jobs
# this worker can run, oldest first, skipping locked rows (§5.3). The row sets are disjoint: the
# first three touch this worker's RUNNING rows, the claim only QUEUED/SCHEDULED ones, and every
# part sees the same snapshot. Batch data arrives as JSON arrays (one parameter each); the ids are
# also passed as an array so the rows are found through the primary key. The guard is wrapped in
# "IS TRUE" (same result: NULL fails either way) so that no index on status or worker_id can serve
# it: the generic plan, made when the statistics showed no RUNNING row, walked idx_job_status over
# every RUNNING row of the fleet (two workers: 20 heap fetches per cycle instead of 10).
_CYCLE_FINISH = f"""
WITH done AS (
    SELECT * FROM json_to_recordset(%(finished)s::json)
        AS d(id bigint, attempts int, status text, results text, enc text, error text)
), moved AS (
    DELETE FROM {{job}} AS j USING done AS d
    WHERE j.id = ANY(%(finished_ids)s::bigint[]) AND j.id = d.id
      AND (j.worker_id = %(worker_id)s AND j.status = 'RUNNING') IS TRUE AND j.attempts = d.attempts
    RETURNING j.*, d.status AS new_status, d.results AS new_results, d.enc AS new_enc, d.error AS new_error
), archived AS (
    INSERT INTO {{job_archive}} ({_COLS})
    SELECT {archive_move("new_status", "new_results::jsonb", "decode(new_enc, 'hex')", "new_error")}
    FROM moved
    RETURNING id, rid, status
"""
_CYCLE_RETRY = f"""
), retried AS (
    UPDATE {{job}} AS j
    SET status = CASE WHEN r.due > {NOW_UTC} THEN 'SCHEDULED' ELSE 'QUEUED' END,
        scheduled_at = CASE WHEN r.due > {NOW_UTC} THEN r.due ELSE j.scheduled_at END
    FROM json_to_recordset(%(requeued)s::json) AS r(id bigint, attempts int, due timestamp)
    WHERE j.id = ANY(%(requeued_ids)s::bigint[]) AND j.id = r.id
      AND (j.worker_id = %(worker_id)s AND j.status = 'RUNNING') IS TRUE AND j.attempts = r.attempts
    RETURNING j.id
"""
# New jobs sent as one JSON array (rows of ``json_row``): the next occurrences a cycle inserts,
# and batches with unique keys.
_JSON_ROWS = f"""SELECT f.rid, f.options::jsonb, f.task_name, f.parameters::jsonb, f.parameters_keyed::jsonb, f.status,
           f.scheduled_at, f.schedule_count, decode(f.penc, 'hex'), decode(f.pkenc, 'hex'), {NOW_UTC}, {NOW_UTC}
    FROM ROWS FROM (json_to_recordset(%(rows)s::json)
        AS (source_id bigint, rid uuid, options text, task_name text, parameters text, parameters_keyed text,
            status text, scheduled_at timestamp, schedule_count int, penc text, pkenc text)) WITH ORDINALITY
        AS f(source_id, rid, options, task_name, parameters, parameters_keyed, status, scheduled_at,
             schedule_count, penc, pkenc, ord)"""
_CYCLE_FOLLOW_UP = f"""
), followed AS (
    {_INSERT_INTO}
    {_JSON_ROWS.replace("%(rows)s", "%(follow_ups)s")}
    JOIN archived AS a ON a.id = f.source_id AND a.status IN ('SUCCEEDED', 'FAILED')
    RETURNING id
"""
# Unique keys (queuer_py_job_unique): a job whose key a live job holds is not written; the
# conflict is decided by the index, so concurrent producers cannot both write one.
_ON_KEY_CONFLICT = f"ON CONFLICT ({UNIQUE_KEY_OF}) WHERE {UNIQUE_KEY_OF} IS NOT NULL DO NOTHING"
_INSERT_UNIQUE = f"{_INSERT_INTO}VALUES ({_INSERT_VALUES})\n{_ON_KEY_CONFLICT}\nRETURNING {_COLS}\n"
_INSERT_ROWS_UNIQUE = f"{_INSERT_INTO}{_JSON_ROWS}\nORDER BY f.ord\n{_ON_KEY_CONFLICT}\nRETURNING rid\n"
_EXPIRED_MOVE = archive_move("'CANCELLED'", "results", "results_encrypted", "'expired'")
_INSERT_ROWS = f"{_INSERT_INTO}{_JSON_ROWS}\nORDER BY f.ord\nRETURNING rid\n"
# The jobs of concurrent add_job calls, written together (queuer.batcher): each comes back whole.
_INSERT_ROWS_RETURNING = f"{_INSERT_INTO}{_JSON_ROWS}\nORDER BY f.ord\nRETURNING rid, id, created_at\n"
_SELECT_BY_KEYS = f"SELECT {UNIQUE_KEY_OF} AS unique_key, {_COLS} FROM {{job}} WHERE {UNIQUE_KEY_OF} = ANY(%(keys)s::text[])"

# Which jobs a worker may claim (§5.3), as a WHERE on ``job``: due (QUEUED, or SCHEDULED with its
# time come: READY_AT, which the claim indexes hold, so that the walk stops before the jobs not yet
# due instead of reading each of their rows), one of its tasks and next-interval functions.
_CLAIMABLE = f"""status IN ('QUEUED', 'SCHEDULED') AND {READY_AT} <= {NOW_UTC}
      AND task_name = ANY(%(tasks)s::text[])
      AND (COALESCE(options -> 'schedule' ->> 'next_interval', '') = ''
           OR options -> 'schedule' ->> 'next_interval' = ANY(%(intervals)s::text[]))"""
# Queues no ordinary claim takes from, read by the claim itself (an InitPlan, once per statement):
# paused ones, and limited ones, whose jobs only the limited claim takes (``QueueStore``), unless
# %(take_limited)s (that claim itself). Fleet-wide state, so a pause holds from its commit on.
_BLOCKED = """ARRAY(SELECT name::text FROM {queue_table}
                  WHERE paused OR (NOT %(take_limited)s AND (concurrency IS NOT NULL OR rate IS NOT NULL)))"""
# The order of every claim: highest priority first, then the job that became ready first. Each
# pick returns, beside the id, the claimed job's key in it (for ``ClaimFloor``).
_ORDER = f"{PRIORITY_OF} DESC, {READY_AT}, id"
_KEY = f"{PRIORITY_OF} AS priority, {READY_AT} AS ready_at"
# Every queue, on queuer_py_job_ready_any.
_PICK_ANY = f"""
), picked AS (
    SELECT id, {_KEY} FROM {{job}}
    WHERE {_CLAIMABLE}
      AND {QUEUE_OF} <> ALL({_BLOCKED})
    ORDER BY {_ORDER}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
"""
# Where a claim resumes (``ClaimFloor``): behind the last job of the worker's last full claim,
# within its priority. A draining backlog leaves the entries of the jobs claimed since the last
# VACUUM at the head of the claim index, and a walk from the head reads them all on every claim;
# a claim that finds fewer jobs than asked for is followed by one from the head
# (queuer.claims.ClaimCursor).
_AFTER = f"""
      AND {PRIORITY_OF} = %(after_priority)s::jsonb
      AND ({READY_AT}, id) > (%(after_ready_at)s::timestamp, %(after_id)s::bigint)"""
# Every queue, resumed.
_PICK_ONWARD = _PICK_ANY.replace("\n    ORDER BY", f"{_AFTER}\n    ORDER BY", 1)
# One listed queue, resumed, on queuer_py_job_ready_queue (a worker dedicated to a queue).
_PICK_QUEUE_ONWARD = f"""
), picked AS (
    SELECT id, {_KEY} FROM {{job}}
    WHERE {QUEUE_OF} = (%(queues)s::text[])[1] AND {_CLAIMABLE}
      AND (%(queues)s::text[])[1] <> ALL({_BLOCKED}){_AFTER}
    ORDER BY {_ORDER}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
"""
# The worker's queues in their order of precedence, each walked on queuer_py_job_ready_queue; the
# outer LIMIT stops before a later queue is read (or any of its rows locked) once the earlier
# ones filled the slots.
_PICK_LISTED = f"""
), picked AS (
    SELECT c.id, c.priority, c.ready_at FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q(name, pos)
    CROSS JOIN LATERAL (
        SELECT id, {_KEY} FROM {{job}}
        WHERE {QUEUE_OF} = q.name AND {_CLAIMABLE}
        ORDER BY {_ORDER}
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE q.name <> ALL({_BLOCKED})
    LIMIT %(limit)s
"""
# Every queue by priority while some queue is paused or limited: the blocked queue's jobs may sit
# at the head of queuer_py_job_ready_any (a paused backlog), and walking past them would cost a
# claim more with every job they hold. Instead the queues that hold jobs are found by a skip scan
# of queuer_py_job_ready_queue (one descent per queue), the blocked ones dropped, each other one
# walked for its first %(limit)s jobs, and those merged by priority and readiness.
_NAMES = f"""
), names AS (
    SELECT min({QUEUE_OF}) AS name FROM {{job}} WHERE status IN ('QUEUED', 'SCHEDULED')
    UNION ALL
    SELECT (SELECT min({QUEUE_OF}) FROM {{job}} WHERE status IN ('QUEUED', 'SCHEDULED') AND {QUEUE_OF} > n.name)
    FROM names AS n WHERE n.name IS NOT NULL
"""
_PICK_MERGED = f"""{_NAMES}), picked AS (
    SELECT c.id, c.priority, c.ready_at FROM names AS q
    CROSS JOIN LATERAL (
        SELECT id, {_KEY} FROM {{job}}
        WHERE {QUEUE_OF} = q.name AND {_CLAIMABLE}
        ORDER BY {_ORDER}
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE q.name IS NOT NULL AND q.name <> ALL({_BLOCKED})
    ORDER BY c.priority DESC, c.ready_at, c.id
    LIMIT %(limit)s
"""
_CLAIM = f"""
)
UPDATE {{job}} AS j
SET worker_id = %(worker_id)s, worker_rid = %(worker_rid)s, status = 'RUNNING',
    started_at = {NOW_UTC}, schedule_count = j.schedule_count + 1, attempts = j.attempts + 1,
    updated_at = {NOW_UTC}
FROM picked WHERE j.id = picked.id
RETURNING {_CLAIM_COLS}, {_CLAIM_KEY_COLS}
"""


# The flow cycle's end: what it claims beside the jobs it released into its own hands (which
# count against its free slots).
_CLAIM_FLOW = (
    _CLAIM.replace("\n)\nUPDATE", "\n), claimed AS (\nUPDATE", 1) + "UNION ALL SELECT * FROM flow_taken\n"
).replace(
    f"RETURNING {_CLAIM_COLS}, {_CLAIM_KEY_COLS}\n",
    f"RETURNING {_CLAIM_COLS}, {_CLAIM_KEY_COLS}\n)\nSELECT * FROM claimed\n",
)


def _cycle(*parts: str) -> str:
    flow = _CYCLE_FLOW in parts
    if flow:  # the free slots the released jobs left
        parts = (
            *parts[:-1],
            parts[-1].replace(
                "LIMIT %(limit)s", "LIMIT GREATEST(%(limit)s - (SELECT count(*) FROM flow_taken), 0)"
            ),
        )
    text = "".join(parts) + (_CLAIM_FLOW if flow else _CLAIM)
    recursive = _NAMES in text or flow
    return text.replace("\nWITH ", "\nWITH RECURSIVE ", 1) if recursive else text


# The claim of each shape of ``Claim`` (its ``shape``).
_PICKS = {
    "any": _PICK_ANY,
    "onward": _PICK_ONWARD,
    "listed": _PICK_LISTED,
    "queue_onward": _PICK_QUEUE_ONWARD,
    "merged": _PICK_MERGED,
}

# Workflows (only when a finished job has dependents): in the statement that archives a job,
# count down the waits of the jobs that depend on it when it SUCCEEDED and release those with
# none left (QUEUED: their notification wakes the workers), or archive its dependents CANCELLED,
# transitively, when it did not.
_CYCLE_FLOW = f"""
), flow_ended AS (
    SELECT rid, status FROM archived
), flow_counted AS (
    UPDATE {{wait}} AS w SET remaining = w.remaining - x.n
    FROM (SELECT d.job_rid, count(*) AS n FROM {{dependency}} AS d
          JOIN flow_ended AS e ON e.rid = d.depends_on AND e.status = 'SUCCEEDED' GROUP BY d.job_rid) AS x
    WHERE w.job_rid = x.job_rid
    RETURNING w.job_rid, w.remaining
), flow_ready AS (
    SELECT j.id, row_number() OVER () <= %(limit)s
           AND j.task_name = ANY(%(tasks)s::text[])
           AND COALESCE(j.options -> 'schedule' ->> 'next_interval', '') = ''
           AND (%(release_queues)s::text[] IS NULL OR {QUEUE_OF.replace("options", "j.options")} = ANY(%(release_queues)s::text[]))
           AND {QUEUE_OF.replace("options", "j.options")} <> ALL({_BLOCKED}) AS mine
    FROM {{job}} AS j JOIN flow_counted AS c ON j.rid = c.job_rid AND c.remaining <= 0 AND {HELD_J}
), flow_released AS (
    -- A released job this worker can run is claimed by it at once (one statement per chain step);
    -- any other goes back to the queue for whoever can.
    UPDATE {{job}} AS j SET scheduled_at = NULL,
        status = CASE WHEN r.mine THEN 'RUNNING' ELSE 'QUEUED' END,
        worker_id = CASE WHEN r.mine THEN %(worker_id)s ELSE j.worker_id END,
        worker_rid = CASE WHEN r.mine THEN %(worker_rid)s ELSE j.worker_rid END,
        started_at = CASE WHEN r.mine THEN {NOW_UTC} ELSE j.started_at END,
        schedule_count = j.schedule_count + CASE WHEN r.mine THEN 1 ELSE 0 END,
        attempts = j.attempts + CASE WHEN r.mine THEN 1 ELSE 0 END,
        updated_at = CASE WHEN r.mine THEN {NOW_UTC} ELSE j.updated_at END
    FROM flow_ready AS r WHERE j.id = r.id AND {HELD_J}
    RETURNING r.mine, {_CLAIM_COLS}
), flow_taken AS (
    SELECT {", ".join(c.split(" AS ")[-1].removeprefix("j.") for c in _CLAIM_COLS.split(", "))},
           NULL::text AS claim_priority, NULL::timestamp AS claim_ready_at
    FROM flow_released WHERE mine
), doomed AS (
    SELECT d.job_rid AS rid, e.rid AS cause, e.status AS cause_status
    FROM {{dependency}} AS d JOIN flow_ended AS e ON e.rid = d.depends_on AND e.status <> 'SUCCEEDED'
    UNION
    SELECT d.job_rid, x.cause, x.cause_status FROM {{dependency}} AS d JOIN doomed AS x ON d.depends_on = x.rid
{cancel_doomed()}"""
# The parts of each kind of cycle: lean (only finishes and claims), full (retries, next
# occurrences), flow (full, and workflow transitions).
_PARTS = {
    "lean": (_CYCLE_FINISH,),
    "full": (_CYCLE_FINISH, _CYCLE_RETRY, _CYCLE_FOLLOW_UP),
    "flow": (_CYCLE_FINISH, _CYCLE_FLOW, _CYCLE_RETRY, _CYCLE_FOLLOW_UP),
}


# Cancel: the archive move with status CANCELLED, results and error copied from the row (§5.8).
_CANCEL = f"""
WITH moved AS (
    DELETE FROM {{job}} WHERE {{where}} AND status IN ('QUEUED', 'SCHEDULED', 'RUNNING') RETURNING *
)
INSERT INTO {{job_archive}} ({_COLS})
SELECT {archive_move("'CANCELLED'", "results", "results_encrypted", "error")}
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

# Cancel or re-add many jobs at once (operators' bulk actions): counts only, so no row is decoded
# (the operator may not hold the encryption key). ``dependents``: some cancelled job had held
# jobs waiting for it (the caller sweeps them).
_CANCEL_MANY = f"""
WITH moved AS (
    DELETE FROM {{job}} WHERE rid = ANY(%(rids)s::uuid[]) AND status IN ('QUEUED', 'SCHEDULED', 'RUNNING')
    RETURNING *
), archived AS (
    INSERT INTO {{job_archive}} ({_COLS})
    SELECT {archive_move("'CANCELLED'", "results", "results_encrypted", "error")} FROM moved
    RETURNING options
)
SELECT count(*) AS n,
       COALESCE(bool_or(options -> 'metadata' -> 'queuer_py' -> 'dependents' = 'true'::jsonb), FALSE) AS dependents
FROM archived
"""
# New rids pair with archived ones; a job whose unique key is held again is left out.
_READD_MANY = f"""
WITH source AS (
    SELECT DISTINCT ON (a.rid) x.new_rid, a.*
    FROM unnest(%(new)s::uuid[], %(old)s::uuid[]) AS x(new_rid, old_rid)
    JOIN {{job_archive}} AS a ON a.rid = x.old_rid
    ORDER BY a.rid, a.updated_at DESC
)
INSERT INTO {{job}} (rid, options, task_name, parameters, parameters_keyed, parameters_encrypted,
                    parameters_keyed_encrypted, status, scheduled_at, created_at, updated_at)
SELECT new_rid, options, task_name, parameters, parameters_keyed, parameters_encrypted,
       parameters_keyed_encrypted,
       CASE WHEN options -> 'schedule' ->> 'start' IS NULL THEN 'QUEUED' ELSE 'SCHEDULED' END,
       (options -> 'schedule' ->> 'start')::timestamptz AT TIME ZONE 'UTC', {NOW_UTC}, {NOW_UTC}
FROM source
ON CONFLICT DO NOTHING
RETURNING rid
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
# A rid wherever it is: a job moves from job to job_archive in one statement, so reading both in
# one snapshot finds it exactly once.
_SELECT_ANYWHERE = f"""
(SELECT {_COLS} FROM {{job}} WHERE rid = %(rid)s LIMIT 1)
UNION ALL
(SELECT {_COLS} FROM {{job_archive}} WHERE rid = %(rid)s LIMIT 1)
LIMIT 1
"""

# Newest first; the cursor is the (created_at, id) of the row with id last_id, so rows that share a
# created_at (every batch) are neither skipped nor repeated (fixes §8 item 15).
_SELECT_PAGE = f"""
SELECT {_COLS} FROM {{table}}
WHERE {{filter}} AND (%(last_id)s = 0 OR (created_at, id) <
      (SELECT created_at, id FROM {{table}} WHERE id = %(last_id)s LIMIT 1))
ORDER BY created_at DESC, id DESC
LIMIT %(entries)s
"""


class Finished(NamedTuple):
    """A job a cycle archives: held by (worker,) ``attempts``, ending with this status and output."""

    id: int
    attempts: int
    status: str
    results: str  # JSON text
    results_encrypted: bytes
    error: str


class Requeued(NamedTuple):
    """A job a cycle puts back in the queue (same row and rid), due at ``due`` (naive UTC)."""

    id: int
    attempts: int
    due: Any


class FollowUp(NamedTuple):
    """The next occurrence of a recurring job, written when ``source_id`` is archived."""

    source_id: int
    job: NewJob


class ClaimFloor(NamedTuple):
    """A position in a claim index: the key of the last job a claim took there."""

    priority: str  # as jsonb text
    ready_at: datetime  # naive UTC, as the columns hold it
    id: int

    @classmethod
    def last_of(cls, rows: Sequence[dict[str, Any]]) -> ClaimFloor | None:
        """The key of the last of these claimed rows in the claim's order (None: none has one)."""
        keyed = [
            r for r in rows if r.get("claim_priority") is not None and r.get("claim_ready_at") is not None
        ]
        if not keyed:
            return None
        last = max(keyed, key=lambda r: (-_number(r["claim_priority"]), r["claim_ready_at"], r["id"]))
        return cls(last["claim_priority"], last["claim_ready_at"], last["id"])


def _number(priority: str) -> float:
    """A jsonb priority's value for ordering (jsonb orders numbers by value; anything else a
    program other than queuer wrote there counts as 0: a floor then only resumes too early)."""
    try:
        value = json.loads(priority)
    except ValueError:
        return 0.0
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class Claim(NamedTuple):
    """What a cycle claims: up to ``limit`` due jobs of these tasks and next-interval functions,
    from ``queues`` in that order of precedence (None: every queue, by priority). Queues that are
    paused are never taken from; limited ones only with ``take_limited`` (the limited claim).
    ``after``: an every-queue claim, or the claim of a single listed queue, starts behind that
    position, within its priority."""

    limit: int
    tasks: list[str]
    intervals: list[str]
    queues: list[str] | None = None
    take_limited: bool = False
    skip_blocked: bool = False  # every queue while some are blocked: see _PICK_MERGED
    after: ClaimFloor | None = None  # see _PICK_ONWARD, _PICK_QUEUE_ONWARD

    @property
    def shape(self) -> str:
        if self.queues is not None:
            return "queue_onward" if self.after is not None and len(self.queues) == 1 else "listed"
        if self.skip_blocked:
            return "merged"
        return "any" if self.after is None else "onward"


NOTHING = Claim(0, [], [])


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
    unique_key: str | None = None  # not a column: decides which insert writes it
    depends_on: tuple[UUID, ...] = ()  # not a column: written as links (a workflow's tables)


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
        names = {
            "job": sql.Identifier(schema, "job"),
            "job_archive": sql.Identifier(schema, "job_archive"),
            "queue_table": sql.Identifier(schema, "queuer_py_queue"),
            "wait": sql.Identifier(schema, "queuer_py_wait"),
            "dependency": sql.Identifier(schema, "queuer_py_dependency"),
        }

        def compose(template: str, **extra: sql.Composable) -> str:
            return sql.SQL(template).format(**names, **extra).as_string(None)

        self.insert = compose(_INSERT)
        self.insert_again = compose(_INSERT_AGAIN)
        self.insert_unique = compose(_INSERT_UNIQUE)
        self.insert_rows_unique = compose(_INSERT_ROWS_UNIQUE)
        self.insert_rows = compose(_INSERT_ROWS)
        self.insert_rows_returning = compose(_INSERT_ROWS_RETURNING)
        self.select_by_keys = compose(_SELECT_BY_KEYS)
        # Jobs nobody started before they expired: archived CANCELLED, error "expired".
        self.expire = compose(
            "WITH moved AS (DELETE FROM {job} WHERE "
            f"{EXPIRES_AT_OF} IS NOT NULL AND {EXPIRES_AT_OF} < {NOW_EXPIRY_TEXT} "
            "AND status IN ('QUEUED', 'SCHEDULED') RETURNING *) "
            f"INSERT INTO {{job_archive}} ({_COLS}) "
            f"SELECT {_EXPIRED_MOVE} FROM moved "
            "RETURNING id"
        )
        # The cycle in four shapes: with retries and next occurrences or without (the common
        # cycle: fewer plan nodes to start for every execution), claiming from every queue or
        # from a list.
        self.cycle = {
            (kind, shape): compose(_cycle(*parts, pick))
            for kind, parts in _PARTS.items()
            for shape, pick in _PICKS.items()
        }
        self.cancel = compose(_CANCEL, where=sql.SQL("rid = %s"))
        self.cancel_by_worker = compose(_CANCEL, where=sql.SQL("worker_rid = %s"))
        self.readd = compose(_READD)
        self.cancel_many = compose(_CANCEL_MANY)
        self.readd_many = compose(_READD_MANY)
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
        self.select_anywhere = compose(_SELECT_ANYWHERE)
        self.ended_rids = compose("SELECT rid, status FROM {job_archive} WHERE rid = ANY(%s)")
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
        # The earliest scheduled job a worker can run, on queuer_py_job_due (no row: none).
        self.next_due = compose(
            f"SELECT EXTRACT(EPOCH FROM (scheduled_at - {NOW_UTC}))::float8 AS seconds FROM {{job}} "
            "WHERE status = 'SCHEDULED' AND scheduled_at IS NOT NULL AND task_name = ANY(%(tasks)s::text[]) "
            "AND (COALESCE(options -> 'schedule' ->> 'next_interval', '') = '' "
            "     OR options -> 'schedule' ->> 'next_interval' = ANY(%(intervals)s::text[])) "
            "ORDER BY scheduled_at LIMIT 1"
        )
        # Fresh statistics keep the claim on its index after a big batch (stale ones make the
        # planner think the table is tiny and sort the whole queue on every claim).
        self.analyze = compose("ANALYZE {job}")
        # Taken in the ANALYZE's transaction: when many workers see the same burst of inserts at
        # once, one of them analyzes and the others skip (the lock is per schema).
        self.analyze_lock = "SELECT pg_try_advisory_xact_lock(hashtext('queuer.analyze.' || %s)) AS got"
        # Prechecks of a refresh (one row, column "stale"). Many rows changed since the last
        # analysis (the master, now and then):
        self.needs_analyze = (
            "SELECT n_mod_since_analyze > GREATEST(1000, n_live_tup / 10) AS stale FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'job'"
        )
        # The table outgrew what the last analysis saw (a saturated worker, every second: a
        # draining queue never qualifies, a growing backlog does once per doubling):
        self.outgrew_analyze = (
            "SELECT s.n_live_tup > GREATEST(1000, 2 * c.reltuples) AS stale FROM pg_stat_user_tables AS s "
            "JOIN pg_class AS c ON c.oid = s.relid WHERE s.schemaname = %s AND s.relname = 'job'"
        )
        self.running_of_worker = compose(
            "SELECT id, attempts FROM {job} WHERE worker_id = %s AND status = 'RUNNING'"
        )


def cycle_params(
    worker_id: int,
    worker_rid: UUID,
    finished: Sequence[Finished],
    requeued: Sequence[Requeued],
    follow_ups: Sequence[FollowUp],
    claim: Claim,
) -> dict[str, Any]:
    """Parameters of ``JobTable.cycle``; batches as JSON (one cheap parameter each)."""
    return {
        "worker_id": worker_id,
        "worker_rid": worker_rid,
        "finished": json.dumps(
            [
                {"id": i, "attempts": a, "status": s, "results": r, "enc": e.hex(), "error": err}
                for i, a, s, r, e, err in finished
            ]
        ),
        "requeued": json.dumps([{"id": i, "attempts": a, "due": d.isoformat()} for i, a, d in requeued]),
        "follow_ups": json.dumps([json_row(n, source) for source, n in follow_ups]),
        "finished_ids": _id_array(f.id for f in finished),
        "requeued_ids": _id_array(r.id for r in requeued),
        "limit": claim.limit,
        "tasks": claim.tasks,
        "intervals": claim.intervals,
        "take_limited": claim.take_limited,
        "release_queues": claim.queues,
        **({"queues": claim.queues} if claim.queues is not None else {}),
        **(
            {
                "after_priority": claim.after.priority,
                "after_ready_at": claim.after.ready_at,
                "after_id": claim.after.id,
            }
            if claim.after is not None and claim.shape in ("onward", "queue_onward")
            else {}
        ),
    }


def json_row(new: NewJob, source_id: int | None = None) -> dict[str, Any]:
    """One new job as a row of ``_JSON_ROWS``."""
    return {
        "source_id": source_id,
        "rid": str(new.rid),
        "options": new.options_json,
        "task_name": new.task_name,
        "parameters": new.parameters_json,
        "parameters_keyed": new.parameters_keyed_json,
        "status": new.status,
        "scheduled_at": new.scheduled_at.isoformat() if new.scheduled_at else None,
        "schedule_count": new.schedule_count,
        "penc": new.parameters_encrypted.hex(),
        "pkenc": new.parameters_keyed_encrypted.hex(),
    }


def _id_array(ids: Iterable[int]) -> str:
    """A ``bigint[]`` literal: one text parameter whose type never changes (a list of ints would
    be sent as int2[], int4[] or int8[] by value, each a new prepared statement)."""
    return "{" + ",".join(map(str, ids)) + "}"
