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

from .client import Client, connect, connect_with_db
from .core import Queuer, new_queuer, new_queuer_with_db
from .errors import (
    ConfigurationError,
    DatabaseConnectionError,
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
from .tasks import Task

__all__ = [
    "BatchJob",
    "Client",
    "ConfigurationError",
    "DatabaseConfiguration",
    "DatabaseConnectionError",
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
    "Task",
    "UnknownTaskError",
    "ValidationError",
    "WaitTimeoutError",
    "Worker",
    "WorkerNotFoundError",
    "WorkerStatus",
    "connect",
    "connect_with_db",
    "current_job_rid",
    "new_queuer",
    "new_queuer_with_db",
]
