"""Queues: the names, the per-job routing data Python keeps in ``options.metadata``, fleet-wide
limits and the operators' overview of a queue. Go workers ignore all of it (docs/go-interop.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import ValidationError
from .jsoncodec import as_utc, require_int, require_text

# The namespaced key under ``options.metadata`` that holds Python-only job data (contract §4.1:
# Go keeps metadata through its rewrites of options).
METADATA_KEY = "queuer_py"
DEFAULT_QUEUE = "default"
MAX_QUEUE_NAME = 100
MAX_UNIQUE_KEY = 255
# Priorities are stored as JSON numbers, which Go reads as float64: a 32-bit range keeps them exact.
MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1
# A rate limit keeps one start time per allowed start of its period: this bounds that table.
MAX_RATE = 100_000


def validate_queue_name(name: Any) -> str:
    """1 to 100 characters of text that a ``VARCHAR(100)`` and a notification payload can hold."""
    return require_text("queue name", name, MAX_QUEUE_NAME)


def validate_queue_names(names: Any) -> list[str] | None:
    """A worker's queues in order of precedence (None: every queue); no name twice."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",") if part.strip()]
    try:
        listed = [validate_queue_name(n) for n in names]
    except TypeError as exc:
        raise ValidationError(f"queues must be a list of queue names, got {names!r}") from exc
    if not listed:
        raise ValidationError("queues must name at least one queue (leave it out to consume every queue)")
    if len(set(listed)) != len(listed):
        raise ValidationError(f"queues lists a queue twice: {listed}")
    return listed


def validate_priority(value: Any) -> int:
    require_int("priority", value)
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValidationError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {value}")
    return int(value)


def validate_unique_key(value: Any) -> str:
    return require_text("unique_key", value, MAX_UNIQUE_KEY)


def expiry_text(value: datetime) -> str:
    """A fixed-width UTC text (microseconds, ``Z``): the database compares expiry times as text,
    which an index can serve, and Go reads it as RFC 3339."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class QueueLimits:
    """Fleet-wide limits of one queue: at most ``concurrency`` jobs RUNNING at once, at most
    ``rate`` starts in any window of ``per``. None: no such limit."""

    concurrency: int | None = None
    rate: int | None = None
    per: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if self.concurrency is not None:
            require_int("concurrency", self.concurrency, minimum=0)
        if self.rate is not None:
            require_int("rate", self.rate, minimum=0)
            if self.rate > MAX_RATE:
                raise ValidationError(f"rate is {self.rate}; at most {MAX_RATE} starts per period allowed")
        if not isinstance(self.per, timedelta) or self.per <= timedelta(0):
            raise ValidationError(f"per must be a positive timedelta, got {self.per!r}")
        if self.per > timedelta(days=366):
            raise ValidationError(f"per is {self.per}; at most 366 days allowed")

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None


@dataclass(frozen=True)
class QueueInfo:
    """One queue as operators see it: counts of the jobs in ``job``, its state and limits."""

    name: str
    queued: int = 0
    scheduled: int = 0
    running: int = 0
    paused: bool = False
    limits: QueueLimits = QueueLimits()
    oldest_queued_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queued": self.queued,
            "scheduled": self.scheduled,
            "running": self.running,
            "paused": self.paused,
            "concurrency": self.limits.concurrency,
            "rate": self.limits.rate,
            "per_seconds": self.limits.per.total_seconds() if self.limits.rate is not None else None,
            "oldest_queued_seconds": self.oldest_queued_seconds,
        }
