"""queuer: a durable job queue that lives entirely in PostgreSQL, shared with Go workers.

The names below are imported when first used, so ``import queuer.model`` (records and their
encoding, no I/O) loads neither psycopg nor the runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_MODEL = (
    "BatchJob BatchResult QueueInfo QueueLimits Step Group Workflow WorkflowStatus Progress ProgressEvent Job JobEvent JobStatus Master MasterSettings OnError Options RetryBackoff Schedule Worker "
    "WorkerStatus new_job new_options new_worker new_worker_with_options ConfigurationError "
    "DatabaseConnectionError DecryptionError DuplicateTaskError JobNotFoundError NotSerializableError "
    "QueuerError QueuerStateError SchemaMissingError UnknownTaskError ValidationError WaitTimeoutError WorkerNotFoundError"
)
# Where each public name lives.
_HOME: dict[str, str] = {
    **dict.fromkeys(_MODEL.split(), "queuer.model"),
    "DatabaseConfiguration": "queuer.database.config",
    "Client": "queuer.client",
    "connect": "queuer.client",
    "connect_with_db": "queuer.client",
    "Queuer": "queuer.core",
    "new_queuer": "queuer.core",
    "new_queuer_with_db": "queuer.core",
    "current_job_rid": "queuer.runner",
    "report_progress": "queuer.progress",
    "Task": "queuer.tasks",
    "new_task": "queuer.tasks",
    "new_task_with_name": "queuer.tasks",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'queuer' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from queuer.database.config import DatabaseConfiguration
    from queuer.model import (
        BatchJob,
        BatchResult,
        ConfigurationError,
        DatabaseConnectionError,
        DecryptionError,
        DuplicateTaskError,
        Group,
        Job,
        JobEvent,
        JobNotFoundError,
        JobStatus,
        Master,
        MasterSettings,
        NotSerializableError,
        OnError,
        Options,
        Progress,
        ProgressEvent,
        QueueInfo,
        QueueLimits,
        QueuerError,
        QueuerStateError,
        RetryBackoff,
        Schedule,
        SchemaMissingError,
        Step,
        UnknownTaskError,
        ValidationError,
        WaitTimeoutError,
        Worker,
        WorkerNotFoundError,
        WorkerStatus,
        Workflow,
        WorkflowStatus,
        new_job,
        new_options,
        new_worker,
        new_worker_with_options,
    )

    from .client import Client, connect, connect_with_db
    from .core import Queuer, new_queuer, new_queuer_with_db
    from .progress import report_progress
    from .runner import current_job_rid
    from .tasks import Task, new_task, new_task_with_name

__all__ = [
    "BatchJob",
    "BatchResult",
    "Client",
    "ConfigurationError",
    "DatabaseConfiguration",
    "DatabaseConnectionError",
    "DecryptionError",
    "DuplicateTaskError",
    "Group",
    "Job",
    "JobEvent",
    "JobNotFoundError",
    "JobStatus",
    "Master",
    "MasterSettings",
    "NotSerializableError",
    "OnError",
    "Options",
    "Progress",
    "ProgressEvent",
    "QueueInfo",
    "QueueLimits",
    "Queuer",
    "QueuerError",
    "QueuerStateError",
    "RetryBackoff",
    "Schedule",
    "SchemaMissingError",
    "Step",
    "Task",
    "UnknownTaskError",
    "ValidationError",
    "WaitTimeoutError",
    "Worker",
    "WorkerNotFoundError",
    "WorkerStatus",
    "Workflow",
    "WorkflowStatus",
    "connect",
    "connect_with_db",
    "current_job_rid",
    "new_job",
    "new_options",
    "new_queuer",
    "new_queuer_with_db",
    "new_task",
    "new_task_with_name",
    "new_worker",
    "new_worker_with_options",
    "report_progress",
]
