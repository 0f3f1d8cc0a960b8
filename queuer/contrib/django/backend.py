"""``QueuerBackend``: Django's task framework enqueues into queuer. A task is routed by its module
path (``myapp.tasks.send_email``); its queue and priority become the job's, ``run_after`` its
schedule. On a PostgreSQL connection through psycopg 3 the job is written inside the request's
transaction (it commits or rolls back with it); on any other it is written after the commit."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import psycopg
from django.db import connections, transaction
from django.utils.module_loading import import_string

from queuer.client import Client
from queuer.database import DatabaseConfiguration
from queuer.model import Job, JobNotFoundError, JobStatus, Options, Schedule, result_value

from .tasks_api import (
    BaseTaskBackend,
    InvalidTaskError,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)

_STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


def configuration_of(database: str, schema: str | None) -> DatabaseConfiguration:
    """queuer's configuration for one of Django's databases (``DATABASES[database]``)."""
    settings = connections[database].settings_dict
    options = settings.get("OPTIONS") or {}
    values: dict[str, Any] = {
        "host": settings.get("HOST") or "localhost",
        "port": int(settings.get("PORT") or 5432),
        "database": settings["NAME"],
        "username": settings.get("USER") or "postgres",
        "password": settings.get("PASSWORD") or "",
        "sslmode": options.get("sslmode", "prefer"),
    }
    if schema:
        values["schema"] = schema
    return DatabaseConfiguration(**values)


class QueuerBackend(BaseTaskBackend):  # type: ignore[misc,unused-ignore]
    """``TASKS = {"default": {"BACKEND": "queuer.contrib.django.QueuerBackend", "OPTIONS":
    {"DATABASE": "default", "SCHEMA": "public"}}}``: both options optional."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database: str = self.options.get("DATABASE", "default")
        self.schema: str | None = self.options.get("SCHEMA")
        self._client: Client | None = None
        self._lock = threading.Lock()

    def configuration(self) -> DatabaseConfiguration:
        return configuration_of(self.database, self.schema)

    def client(self) -> Client:
        """This process's queuer client, made on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(self.configuration(), pool_size=2)
        return self._client

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if task.takes_context:
            raise InvalidTaskError("queuer's backend does not pass a TaskContext (takes_context=True)")

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        client = self.client()
        name = task.module_path
        client._builder.known_remote_tasks.add(name)  # the worker registers it by the same path
        options = Options(
            queue=task.queue_name,
            priority=task.priority,
            schedule=Schedule(start=task.run_after) if task.run_after is not None else None,
        )
        connection = connections[self.database]
        connection.ensure_connection()
        raw = connection.connection
        if connection.vendor == "postgresql" and isinstance(raw, psycopg.Connection):
            job = client.add_job_with_options_tx(raw, options, name, *args, **kwargs)
        else:  # not psycopg 3: written once the surrounding transaction commits
            new = client._new_job(options, name, tuple(args), dict(kwargs))
            transaction.on_commit(lambda: client._loop.call(client._enqueue(new)), using=self.database)
            job = Job(rid=new.rid, task_name=name, status=JobStatus.QUEUED, parameters=list(args))
        return self._result(task, job)

    def get_result(self, result_id: str) -> Any:
        try:
            job = self.client().find_job(UUID(result_id))
        except (ValueError, JobNotFoundError) as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        return self._result(import_string(job.task_name), job)

    def _result(self, task: Any, job: Job) -> Any:
        status = _STATUS[job.status]
        ended = job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
        result = TaskResult(
            task=task,
            id=str(job.rid),
            status=status,
            enqueued_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.updated_at if ended else None,
            last_attempted_at=job.started_at,
            args=list(job.parameters),
            kwargs=dict(job.parameters_keyed),
            backend=self.alias,
            errors=[TaskError(exception_class_path="builtins.Exception", traceback=job.error)]
            if status == TaskResultStatus.FAILED
            else [],
            worker_ids=[str(job.worker_rid)] * job.attempts if job.worker_rid else [],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", result_value(job.results))
        return result
