"""The exceptions queuer raises (defined in ``queuer.model.errors``; re-exported here)."""

from queuer.model.errors import (
    ConfigurationError,
    DatabaseConnectionError,
    DecryptionError,
    DuplicateTaskError,
    JobNotFoundError,
    NotSerializableError,
    QueuerError,
    QueuerStateError,
    SchemaMissingError,
    UnknownTaskError,
    ValidationError,
    WaitTimeoutError,
    WorkerNotFoundError,
)

__all__ = [
    "ConfigurationError",
    "DatabaseConnectionError",
    "DecryptionError",
    "DuplicateTaskError",
    "JobNotFoundError",
    "NotSerializableError",
    "QueuerError",
    "QueuerStateError",
    "SchemaMissingError",
    "UnknownTaskError",
    "ValidationError",
    "WaitTimeoutError",
    "WorkerNotFoundError",
]
