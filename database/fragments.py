"""SQL pieces more than one table module uses, defined once."""

from __future__ import annotations

from queuer.model import JOB_COLUMNS

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
