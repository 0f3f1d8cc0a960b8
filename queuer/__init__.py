"""queuer: a durable job queue that lives entirely in PostgreSQL, shared with Go workers."""

from queuer.database.config import DatabaseConfiguration
from queuer.model import (
    BatchJob,
    Job,
    JobEvent,
    JobStatus,
    Master,
    MasterSettings,
    OnError,
    Options,
    RetryBackoff,
    Schedule,
    Worker,
    WorkerStatus,
)

from .core import Queuer, new_queuer, new_queuer_with_db
from .errors import (
    ConfigurationError,
    DecryptionError,
    DuplicateTaskError,
    JobNotFoundError,
    NotSerializableError,
    QueuerError,
    QueuerStateError,
    UnknownTaskError,
    ValidationError,
    WaitTimeoutError,
    WorkerNotFoundError,
)
from .runner import current_job_rid

__all__ = [
    "BatchJob",
    "ConfigurationError",
    "DatabaseConfiguration",
    "DecryptionError",
    "DuplicateTaskError",
    "Job",
    "JobEvent",
    "JobNotFoundError",
    "JobStatus",
    "Master",
    "MasterSettings",
    "NotSerializableError",
    "OnError",
    "Options",
    "Queuer",
    "QueuerError",
    "QueuerStateError",
    "RetryBackoff",
    "Schedule",
    "UnknownTaskError",
    "ValidationError",
    "WaitTimeoutError",
    "Worker",
    "WorkerNotFoundError",
    "WorkerStatus",
    "current_job_rid",
    "new_queuer",
    "new_queuer_with_db",
]
