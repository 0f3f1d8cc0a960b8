"""SQL pieces more than one table module uses, defined once."""

from __future__ import annotations

from queuer.model import HELD_UNTIL, JOB_COLUMNS

# The current time as the naive UTC value a TIMESTAMP column holds (contract §1.9).
NOW_UTC = "(now() AT TIME ZONE 'UTC')"
# Every column of job and job_archive, in table order.
JOB_COLUMN_LIST = ", ".join(JOB_COLUMNS)


def archive_move(status: str, results: str, results_encrypted: str, error: str) -> str:
    """The SELECT list that writes a row leaving ``job`` into ``job_archive``: every column as it
    was but these four, and ``updated_at`` now. The arguments are SQL expressions."""
    values = {
        "status": status,
        "results": results,
        "results_encrypted": results_encrypted,
        "error": error,
        "updated_at": NOW_UTC,
    }
    return ", ".join(values.get(column, column) for column in JOB_COLUMNS)


# Python's own job data (``options.metadata.queuer_py``, see queuer.model.queues) as SQL
# expressions on ``options``. The indexes of sql/queues_v1.sql are built from these same strings:
# a query must use them verbatim for the planner to match an index.
_OWN = "options -> 'metadata' -> 'queuer_py'"
QUEUE_OF = f"COALESCE({_OWN} ->> 'queue', 'default')"
PRIORITY_OF = f"COALESCE({_OWN} -> 'priority', '0'::jsonb)"
UNIQUE_KEY_OF = f"({_OWN} ->> 'unique_key')"
EXPIRES_AT_OF = f"({_OWN} ->> 'expires_at')"
# When a job became (or becomes) claimable: its scheduled time while SCHEDULED, else its creation.
# The claim indexes order each priority by it, so scheduled jobs not yet due sit behind every job
# a claim can take, and the claim's bound on it stops the walk before them.
READY_AT = "(CASE WHEN status = 'SCHEDULED' THEN scheduled_at ELSE created_at END)"
# Now as the fixed-width text ``expiry_text`` writes, to compare with EXPIRES_AT_OF.
NOW_EXPIRY_TEXT = f"""to_char({NOW_UTC}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# A job held for its dependencies (queuer.model.HELD_UNTIL): never due, for Go too.
_HELD_AT = f"timestamp '{HELD_UNTIL.isoformat(sep=' ')}'"
HELD = f"status = 'SCHEDULED' AND scheduled_at = {_HELD_AT}"
HELD_J = f"j.status = 'SCHEDULED' AND j.scheduled_at = {_HELD_AT}"


def cancel_doomed() -> str:
    """CTEs that archive CANCELLED every held job in ``doomed(rid, cause, cause_status)`` (a
    recursive CTE the caller defines: the dependents of failed jobs, transitively), with an
    error naming the dependency that broke it. Needs ``{job}`` and ``{job_archive}``."""
    error = "'workflow: dependency ' || cause || ' ended ' || cause_status"
    return f"""
), doomed_one AS (
    SELECT rid, min(cause::text) AS cause, min(cause_status) AS cause_status FROM doomed GROUP BY rid
), doomed_moved AS (
    DELETE FROM {{job}} AS j USING doomed_one AS x
    WHERE j.rid = x.rid AND {HELD_J}
    RETURNING j.*, x.cause, x.cause_status
), doomed_archived AS (
    INSERT INTO {{job_archive}} ({JOB_COLUMN_LIST})
    SELECT {archive_move("'CANCELLED'", "results", "results_encrypted", error)} FROM doomed_moved
    RETURNING id
"""
