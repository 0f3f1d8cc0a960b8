"""Worker and master records (tables ``worker`` and ``master``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from .errors import ValidationError
from .job import utc_or_none
from .jsoncodec import duration_to_nanos, nanos_to_duration
from .options import OnError


class WorkerStatus(StrEnum):
    """Worker statuses, exactly the contract's strings (§5.1)."""

    READY = "READY"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


@dataclass
class Worker:
    """A worker row. ``options`` is the default on_error for jobs this process enqueues."""

    id: int
    rid: UUID
    name: str
    status: WorkerStatus
    max_concurrency: int
    options: OnError | None = None
    available_tasks: list[str] = field(default_factory=list)
    available_next_interval: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def available_next_interval_funcs(self) -> list[str]:
        """queuerPy's name for ``available_next_interval``."""
        return self.available_next_interval

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Worker:
        return cls(
            id=row["id"],
            rid=row["rid"],
            name=row["name"] or "",
            status=WorkerStatus(row["status"]),
            max_concurrency=row["max_concurrency"] or 0,
            options=OnError.from_json(row["options"]),
            available_tasks=list(row["available_tasks"] or []),
            available_next_interval=list(row["available_next_interval"] or []),
            created_at=utc_or_none(row["created_at"]),
            updated_at=utc_or_none(row["updated_at"]),
        )


# JSON keys of master.settings and Go's defaults when a value is 0 (contract §4.3).
_SETTINGS_DEFAULTS: dict[str, timedelta] = {
    "master_lock_timeout": timedelta(minutes=5),
    "master_poll_interval": timedelta(minutes=1),
    "retention_archive": timedelta(days=7),
    "worker_stale_threshold": timedelta(minutes=5),
    "worker_delete_threshold": timedelta(hours=24),
    "job_stale_threshold": timedelta(hours=1),
}


@dataclass(frozen=True)
class MasterSettings:
    """Settings of the master role; stored as integer nanoseconds in ``master.settings``.

    ``worker_stale_threshold`` applies to workers that did not tell us their own heartbeat (Go
    workers): keep it at or above Go's hard-coded 2 minutes where Go workers share the database
    (contract §5.10); the default is 5 minutes. A started Python worker is judged by its own
    heartbeat interval instead. The poll interval is 10 seconds (Go's is a minute), so the jobs
    of a dead Python worker run again well within a minute.
    """

    master_lock_timeout: timedelta = timedelta(minutes=5)
    master_poll_interval: timedelta = timedelta(seconds=10)
    retention_archive: timedelta = timedelta(days=7)
    worker_stale_threshold: timedelta = timedelta(minutes=5)
    worker_delete_threshold: timedelta = timedelta(hours=24)
    job_stale_threshold: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        for key in _SETTINGS_DEFAULTS:
            value = getattr(self, key)
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise ValidationError(f"MasterSettings.{key} must be a timedelta >= 0")

    def to_json(self) -> dict[str, int]:
        return {key: duration_to_nanos(getattr(self, key)) for key in _SETTINGS_DEFAULTS}

    @classmethod
    def from_json(cls, data: Any) -> MasterSettings:
        """Read Go's or our own settings; 0 or missing means Go's default."""
        values: dict[str, timedelta] = {}
        source = data if isinstance(data, dict) else {}
        for key, default in _SETTINGS_DEFAULTS.items():
            raw = source.get(key) or 0
            values[key] = nanos_to_duration(int(raw)) if raw else default
        return cls(**values)


@dataclass
class Master:
    """The single master row: who holds the role and since when it was last renewed."""

    worker_id: int
    worker_rid: UUID | None
    settings: MasterSettings
    updated_at: datetime | None
