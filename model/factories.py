"""queuerPy's record factories (``new_job``, ``new_worker``): unsaved records built with the same
validation the API applies, for code written against queuerPy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ValidationError
from .job import Job, JobStatus, uuid7
from .jsoncodec import require_int
from .options import OnError, Options, Schedule, validate_name
from .worker import Worker, WorkerStatus


def _task_name(task: str | Callable[..., Any]) -> str:
    if isinstance(task, str):
        return validate_name("task", task)
    name = getattr(task, "name", None) or getattr(task, "__name__", None)
    if not callable(task) or not isinstance(name, str) or name == "<lambda>":
        raise ValidationError(f"task must be a name or a named callable, got {task!r}")
    return validate_name("task", name)


def new_job(
    task: str | Callable[..., Any], options: Options | None = None, *parameters: Any, **parameters_keyed: Any
) -> Job:
    """An unsaved job (id 0, a fresh rid): QUEUED, or SCHEDULED at the schedule's start."""
    if options is not None and not isinstance(options, Options):
        raise ValidationError(f"options must be an Options, got {type(options).__name__}")
    schedule = options.schedule if options else None
    return Job(
        id=0,
        rid=uuid7(),
        task_name=_task_name(task),
        status=JobStatus.SCHEDULED if schedule else JobStatus.QUEUED,
        parameters=list(parameters),
        parameters_keyed=dict(parameters_keyed),
        options=options,
        scheduled_at=schedule.start if schedule else None,
    )


def new_worker(name: str, max_concurrency: int) -> Worker:
    """An unsaved worker record (status READY)."""
    validate_name("worker", name)
    require_int("max_concurrency", max_concurrency, minimum=1)
    return Worker(id=0, rid=uuid7(), name=name, status=WorkerStatus.READY, max_concurrency=max_concurrency)


def new_worker_with_options(name: str, max_concurrency: int, options: OnError) -> Worker:
    """``new_worker`` with a default ``OnError`` for the jobs it enqueues."""
    if not isinstance(options, OnError):
        raise ValidationError("options must be an OnError")
    worker = new_worker(name, max_concurrency)
    worker.options = options
    return worker


def new_options(on_error: OnError | None = None, schedule: Schedule | None = None) -> Options:
    """``Options`` from its two parts (queuerPy's factory)."""
    return Options(on_error=on_error, schedule=schedule)
