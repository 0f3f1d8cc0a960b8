"""The job record as stored in ``job`` and ``job_archive``, and what a batch item holds."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, SafeUUID

from .options import Options
from .queues import DEFAULT_QUEUE


class JobStatus(StrEnum):
    """Job statuses, exactly the contract's strings (§5.1)."""

    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# The columns of job and job_archive in table order; every SELECT of a job lists exactly these.
JOB_COLUMNS: tuple[str, ...] = (
    "id",
    "rid",
    "worker_id",
    "worker_rid",
    "options",
    "task_name",
    "parameters",
    "parameters_encrypted",
    "parameters_keyed",
    "parameters_keyed_encrypted",
    "status",
    "scheduled_at",
    "started_at",
    "schedule_count",
    "attempts",
    "results",
    "results_encrypted",
    "error",
    "created_at",
    "updated_at",
)


def utc_or_none(value: datetime | None) -> datetime | None:
    """A TIMESTAMP column as an aware UTC datetime; Go's year-1 "zero time" reads as None."""
    if value is None or value.year <= 1:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Progress:
    """A running task's own account of how far it is: ``fraction`` from 0 to 1 and a message."""

    fraction: float
    message: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ProgressEvent:
    """What a progress notification carries."""

    rid: UUID
    fraction: float
    message: str


@dataclass
class Job:
    """One job. ``results`` is None for failed jobs (as Go writes them)."""

    id: int = 0
    rid: UUID = field(default_factory=lambda: uuid7())
    task_name: str = ""
    status: JobStatus = JobStatus.QUEUED
    parameters: list[Any] = field(default_factory=list)
    parameters_keyed: dict[str, Any] = field(default_factory=dict)
    options: Options | None = None
    worker_id: int = 0
    worker_rid: UUID | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    schedule_count: int = 0
    attempts: int = 0
    results: list[Any] | None = field(default_factory=list)
    error: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Not a column: True when add_job found a job with the same unique key and wrote nothing;
    # this record is then that existing job.
    duplicate: bool = False
    # Not a column: what the running task last reported (queuer.report_progress), where read.
    progress: Progress | None = None

    @property
    def queue(self) -> str:
        return self.options.queue if self.options is not None else DEFAULT_QUEUE

    @property
    def priority(self) -> int:
        return self.options.priority if self.options is not None else 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build from a dict row of ``JOB_COLUMNS`` with encrypted columns already decoded."""
        parameters = row["parameters"]
        keyed = row["parameters_keyed"]
        return cls(
            id=row["id"],
            rid=row["rid"],
            task_name=row["task_name"] or "",
            status=JobStatus(row["status"]),
            parameters=list(parameters) if isinstance(parameters, list) else [],
            parameters_keyed=dict(keyed) if isinstance(keyed, dict) else {},
            options=options if isinstance(options := row["options"], Options) else Options.from_json(options),
            worker_id=row["worker_id"] or 0,
            worker_rid=row["worker_rid"],
            scheduled_at=utc_or_none(row["scheduled_at"]),
            started_at=utc_or_none(row["started_at"]),
            schedule_count=row["schedule_count"] or 0,
            attempts=row["attempts"] or 0,
            results=row.get("results", []) if isinstance(row.get("results", []), list) else None,
            error=row.get("error") or "",
            created_at=utc_or_none(row["created_at"]),
            updated_at=utc_or_none(row.get("updated_at")),
        )


@dataclass(frozen=True)
class JobEvent:
    """What a notification on channel ``job`` or ``job_archive`` carries (contract §2.1)."""

    id: int
    rid: UUID | None
    status: JobStatus
    channel: str


@dataclass(slots=True)
class BatchJob:
    """One item of ``add_jobs``: a task (callable or name), its arguments and optional options."""

    task: Any
    parameters: Sequence[Any] = ()
    parameters_keyed: Mapping[str, Any] = field(default_factory=dict)
    options: Options | None = None


class BatchResult(list[UUID]):
    """What ``add_jobs`` returns: the rids in input order, and in ``duplicates`` the indexes of the
    items that were not written because a job with their unique key exists (whose rid is listed
    in their place)."""

    def __init__(self, rids: Sequence[UUID] = (), duplicates: Sequence[int] = ()) -> None:
        super().__init__(rids)
        self.duplicates: list[int] = list(duplicates)


def results_of(value: Any) -> list[Any]:
    """Map a task's return value to the results array: None -> [], tuple -> items, else [value]."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return list(value)
    return [value]


def uuid7() -> UUID:
    """A time-ordered UUID (RFC 9562 version 7): keeps the rid index compact for bulk inserts."""
    return uuid7_batch(1)[0]


class _RandomBytes(threading.local):
    """Random bytes drawn from the OS in blocks: one system call per 409 single rids instead of
    one each. Per thread, and dropped in a forked child (which must not repeat its parent's)."""

    def __init__(self) -> None:
        self.block = b""
        self.offset = 0

    def take(self, size: int) -> bytes:
        if size > 256:
            return os.urandom(size)
        if self.offset + size > len(self.block):
            self.block, self.offset = os.urandom(4096), 0
        start, self.offset = self.offset, self.offset + size
        return self.block[start : self.offset]


_random = _RandomBytes()


def _forget_random_bytes() -> None:
    global _random
    _random = _RandomBytes()


os.register_at_fork(after_in_child=_forget_random_bytes)


_RAND_A = 0xFFF
_RAND_B = (1 << 62) - 1


def uuid7_batch(count: int) -> list[UUID]:
    """``count`` version-7 UUIDs sharing the current millisecond, with 74 random bits each.

    Built from integers without ``UUID.__init__``'s argument parsing, which costs more than the
    rest of an enqueue (``UUID`` keeps exactly ``int`` and ``is_safe`` in its slots).
    """
    base = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0b10 << 62
    rand = _random.take(10 * count)
    new, set_attr, unknown = object.__new__, object.__setattr__, SafeUUID.unknown
    out = []
    for i in range(0, 10 * count, 10):
        r = int.from_bytes(rand[i : i + 10], "big")
        u = new(UUID)
        set_attr(u, "int", base | (r >> 62 & _RAND_A) << 64 | r & _RAND_B)
        set_attr(u, "is_safe", unknown)
        out.append(u)
    return out
