"""The exception hierarchy of queuer.

It lives in the model package because validation happens in the model (before any I/O), and the
model imports nothing of ours. ``queuer.errors`` re-exports every class.
"""

from __future__ import annotations


class QueuerError(Exception):
    """Base class of every error queuer raises on purpose.

    The driver's or the library's own error that caused it, if any, is chained as ``__cause__``
    and also reachable as ``original`` (the name queuerPy code uses)."""

    @property
    def original(self) -> BaseException | None:
        return self.__cause__


class ConfigurationError(QueuerError):
    """The database configuration or a constructor argument is unusable."""


class SchemaMissingError(ConfigurationError):
    """The configured schema holds no queuer tables (run ``queuer init``)."""


class ValidationError(QueuerError, ValueError):
    """An argument is invalid; raised at the call that received it, before anything is written."""


class NotSerializableError(ValidationError):
    """A job parameter cannot be encoded as JSON (the format Go workers read too)."""


class UnknownTaskError(ValidationError):
    """No worker (here or in the database) has registered a task of that name."""


class DuplicateTaskError(ValidationError, RuntimeError):
    """A task or next-interval function of that name is already registered on this queuer (also a
    ``RuntimeError``, which is what queuerPy raised)."""


class JobNotFoundError(QueuerError, LookupError):
    """No job with that rid exists in the table that was asked."""


class WorkerNotFoundError(QueuerError, LookupError):
    """No worker with that rid exists."""


class WaitTimeoutError(QueuerError, TimeoutError):
    """``wait_for_job_finished`` gave up before the job reached the archive."""


class QueuerStateError(QueuerError, RuntimeError):
    """The call does not fit the queuer's state (started twice, used after stop, sync call on its loop)."""


class DatabaseConnectionError(QueuerError, ConnectionError):
    """The database could not be reached or refused us: the message says which, in one line."""


class DecryptionError(QueuerError):
    """An encrypted column could not be decrypted: wrong key or corrupt data."""
