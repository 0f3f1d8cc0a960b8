"""The exceptions queuer raises (defined in ``queuer.model.errors``; re-exported here)."""

from queuer.model.errors import (
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

__all__ = [
    "ConfigurationError",
    "DecryptionError",
    "DuplicateTaskError",
    "JobNotFoundError",
    "NotSerializableError",
    "QueuerError",
    "QueuerStateError",
    "UnknownTaskError",
    "ValidationError",
    "WaitTimeoutError",
    "WorkerNotFoundError",
]
