"""Recurring jobs: when and how the next occurrence of a finished one is written (contract §5.13).

The next occurrence is a new row (new rid) with the same task, parameters and options, status
SCHEDULED, inserted in the transaction that archives the current one. Its time is the previous
``scheduled_at`` plus ``interval`` (the intended spacing; the Go library multiplies by the count),
or what the named next-interval function returns for (previous time, occurrences so far).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from queuer.database import NewJob
from queuer.model import Job, JobStatus, uuid7
from queuer.model.jsoncodec import as_utc, dumps, naive_utc

from .tasks import TaskRegistry

log = logging.getLogger("queuer.schedule")


def occurrences_done(job: Job) -> int:
    """Occurrences of the chain so far, this one included.

    ``schedule_count`` grows with every claim, retries included; each occurrence starts at
    ``attempts`` 0, so the retries of this occurrence are taken off again.
    """
    return job.schedule_count - max(job.attempts, 1) + 1


def next_occurrence(job: Job, registry: TaskRegistry) -> NewJob | None:
    """The row that continues ``job``'s schedule, or None when the chain ends here."""
    schedule = job.options.schedule if job.options else None
    if schedule is None or job.options is None:
        return None
    done = occurrences_done(job)
    if schedule.max_count != 0 and done >= schedule.max_count:
        return None
    previous = job.scheduled_at or schedule.start
    if schedule.next_interval:
        fn = registry.next_intervals.get(schedule.next_interval)
        if fn is None:
            log.error(
                "job %s: no next-interval function %r here; its chain ends", job.rid, schedule.next_interval
            )
            return None
        try:
            following = fn(previous, done)
            if not isinstance(following, datetime):
                raise TypeError(f"returned {type(following).__name__}, not a datetime")
        except Exception:
            log.exception(
                "job %s: next-interval function %r failed; its chain ends", job.rid, schedule.next_interval
            )
            return None
        following = as_utc(following)
    elif schedule.interval > timedelta(0):
        following = previous + schedule.interval
    else:
        return None
    return NewJob(
        rid=uuid7(),
        options_json=dumps(job.options.to_json(), "options"),
        task_name=job.task_name,
        parameters_json=dumps(job.parameters, "parameters"),
        parameters_keyed_json=dumps(job.parameters_keyed, "keyword parameters"),
        status=JobStatus.SCHEDULED.value,
        scheduled_at=naive_utc(following),
        schedule_count=done,
    )
