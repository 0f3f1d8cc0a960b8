"""Records of queuer and their Go-compatible JSON encoding. No I/O happens here."""

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
from .factories import new_job, new_worker, new_worker_with_options
from .job import (
    JOB_COLUMNS,
    BatchJob,
    Job,
    JobEvent,
    JobStatus,
    results_of,
    uuid7,
    uuid7_batch,
)
from .options import OnError, Options, RetryBackoff, Schedule, validate_name
from .worker import Master, MasterSettings, Worker, WorkerStatus

__all__ = [
    "JOB_COLUMNS",
    "BatchJob",
    "ConfigurationError",
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
    "new_job",
    "new_worker",
    "new_worker_with_options",
    "results_of",
    "uuid7",
    "uuid7_batch",
    "validate_name",
]
