"""Job options: error handling and schedules, encoded exactly as the Go library reads them (§4.1)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from .errors import ValidationError
from .jsoncodec import (
    MAX_SECONDS,
    as_rid,
    as_utc,
    duration_to_nanos,
    nanos_to_duration,
    require_int,
    require_seconds,
    require_text,
    rfc3339_to_time,
    time_to_rfc3339,
)
from .queues import (
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    MAX_QUEUE_NAME,
    MAX_UNIQUE_KEY,
    METADATA_KEY,
    MIN_PRIORITY,
    expiry_text,
    validate_priority,
    validate_queue_name,
    validate_unique_key,
)
from .workflows import FlowLink

MAX_NAME_LENGTH = 100


def validate_name(kind: str, name: Any) -> str:
    """Task, worker and next-interval names: 1 to 100 characters (``VARCHAR(100)`` and Go's rule)."""
    return require_text(f"{kind} name", name, MAX_NAME_LENGTH)


class RetryBackoff(StrEnum):
    """How the delay grows between retries; the values are the contract's strings."""

    NONE = "none"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class _HasJson(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class QueuerPyNames:
    """queuerPy's names for what these records already do: each is validated when it is made, so
    ``is_valid`` is always true, and ``to_dict`` is ``to_json`` (``from_dict`` is per class)."""

    def is_valid(self) -> bool:
        return True

    def to_dict(self: _HasJson) -> dict[str, Any]:
        return self.to_json()


@dataclass(frozen=True)
class OnError(QueuerPyNames):
    """What to do when a run fails or takes too long.

    ``timeout`` and ``retry_delay`` are seconds (0 = no timeout / no delay). A job runs at most
    ``1 + max_retries`` times. The delay before retry k (1-based) is ``retry_delay`` for NONE,
    ``k * retry_delay`` for LINEAR and ``2**(k-1) * retry_delay`` for EXPONENTIAL. The defaults
    are the seed API's (30 s timeout, 3 retries 1 s apart); a job without an ``OnError`` at all
    runs once with no timeout, as in Go.
    """

    timeout: float = 30.0
    max_retries: int = 3
    retry_delay: float = 1.0
    retry_backoff: RetryBackoff = RetryBackoff.NONE

    def __post_init__(self) -> None:
        # queuerPy's wording for the common mistakes, then the full checks.
        for label, value in (
            ("timeout", self.timeout),
            ("max retries", self.max_retries),
            ("retry delay", self.retry_delay),
        ):
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValidationError(f"on_error: {label} cannot be negative, got {value}")
        require_seconds("on_error.timeout", self.timeout)
        require_int("on_error.max_retries", self.max_retries, minimum=0)
        require_seconds("on_error.retry_delay", self.retry_delay)
        try:
            object.__setattr__(self, "retry_backoff", RetryBackoff(self.retry_backoff))
        except ValueError as exc:
            allowed = ", ".join(b.value for b in RetryBackoff)
            raise ValidationError(
                f"on_error: invalid retry backoff (retry_backoff={self.retry_backoff!r}): use one of {allowed}"
            ) from exc

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), at most Go's longest duration
        (a long exponential backoff would otherwise overflow the time it computes)."""
        if self.retry_backoff is RetryBackoff.LINEAR:
            delay = retry * self.retry_delay
        elif self.retry_backoff is RetryBackoff.EXPONENTIAL:
            delay = self.retry_delay * 2.0 ** min(retry - 1, 64) if self.retry_delay else 0.0
        else:
            delay = self.retry_delay
        return min(delay, float(MAX_SECONDS))

    def to_json(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "retry_backoff": self.retry_backoff.value,
        }

    def allows_retry(self, attempts: int) -> bool:
        """Whether a job that failed (or whose worker died) after ``attempts`` claims may run again:
        the one retry rule, for the worker and the master alike."""
        return attempts <= self.max_retries

    @classmethod
    def from_dict(cls, data: Any) -> OnError | None:
        """Read an object a program built (queuerPy's name): missing keys take the defaults, where
        ``from_json`` reads them as Go does (0)."""
        if not isinstance(data, dict):
            return None
        defaults = cls().to_json()
        return cls.from_json({**defaults, **{k: v for k, v in data.items() if v is not None}})

    @classmethod
    def from_json(cls, data: Any) -> OnError | None:
        """Read what Go or Python wrote; an unknown backoff string (Go: one retry) reads as NONE."""
        if not isinstance(data, dict):
            return None
        backoff = data.get("retry_backoff") or "none"
        if backoff not in {b.value for b in RetryBackoff}:
            backoff = "none"
        return cls(
            timeout=float(data.get("timeout") or 0),
            max_retries=int(data.get("max_retries") or 0),
            retry_delay=float(data.get("retry_delay") or 0),
            retry_backoff=RetryBackoff(backoff),
        )


@dataclass(frozen=True)
class Schedule(QueuerPyNames):
    """Delayed and recurring execution.

    ``start`` is when the first occurrence is due (naive datetimes are UTC; default: now). ``max_count``
    is the number of occurrences (0 = unlimited, see docs/guides/scheduling.md for how a Go worker treats that); more
    than one needs ``interval`` or ``next_interval`` (the name of a registered next-interval function).
    """

    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    max_count: int = 1
    interval: timedelta = timedelta(0)
    next_interval: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.start, datetime):
            raise ValidationError("schedule.start must be a datetime")
        try:
            object.__setattr__(self, "start", as_utc(self.start))
        except OverflowError as exc:
            raise ValidationError(f"schedule.start {self.start!r} is out of range in UTC: {exc}") from exc
        require_int("schedule.max_count", self.max_count, minimum=0)
        if not isinstance(self.interval, timedelta) or self.interval < timedelta(0):
            raise ValidationError("schedule.interval must be a timedelta >= 0")
        if self.interval.total_seconds() > MAX_SECONDS:
            raise ValidationError(
                f"schedule.interval must be at most {MAX_SECONDS} seconds (Go's longest duration)"
            )
        if self.next_interval is not None:
            validate_name("next_interval", self.next_interval)
        repeats = self.interval > timedelta(0) or bool(self.next_interval)
        if self.max_count != 1 and not repeats:
            raise ValidationError(
                "a schedule with max_count > 1 or 0 (unlimited) needs an interval > 0 or a next_interval"
            )
        if self.max_count == 1 and repeats:
            raise ValidationError(
                "a schedule with an interval or next_interval and max_count=1 runs only once: "
                "to repeat, set max_count to the number of runs (0 = unlimited)"
            )
        try:
            duration_to_nanos(self.interval)
            time_to_rfc3339(self.start)
        except OverflowError as exc:
            raise ValidationError(f"schedule is out of range: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Any) -> Schedule | None:
        return cls.from_json(data)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "start": time_to_rfc3339(self.start),
            "max_count": self.max_count,
            "interval": duration_to_nanos(self.interval),
        }
        if self.next_interval:
            data["next_interval"] = self.next_interval
        return data

    @classmethod
    def from_json(cls, data: Any) -> Schedule | None:
        if not isinstance(data, dict) or not data.get("start"):
            return None
        start = rfc3339_to_time(str(data["start"]))
        if start.year <= 1:
            return None
        # Rows written elsewhere are taken as they are (Go allows max_count 0 without interval,
        # which it runs once); validation applies to what this library writes.
        schedule = object.__new__(cls)
        for name, value in (
            ("start", start),
            ("max_count", int(data.get("max_count") or 0)),
            ("interval", nanos_to_duration(int(data.get("interval") or 0))),
            ("next_interval", data.get("next_interval") or None),
        ):
            object.__setattr__(schedule, name, value)
        return schedule


@dataclass(frozen=True)
class Options(QueuerPyNames):
    """Per-job options. Unknown keys that another writer stored are kept in ``extra`` and written back.

    ``queue``, ``priority``, ``unique_key`` and ``expires_at`` are Python's own: they are stored
    under ``options.metadata.queuer_py`` (Go keeps them and ignores them), so ``metadata`` holds
    only the caller's own entries.
    """

    on_error: OnError | None = None
    schedule: Schedule | None = None
    metadata: dict[str, Any] | None = None
    parent_rid: UUID | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    unique_key: str | None = None
    expires_at: datetime | None = None
    depends_on: tuple[UUID, ...] = ()
    flow: FlowLink | None = None  # set by workflows, see queuer.model.workflows
    trace: dict[str, str] | None = None  # W3C trace context of the enqueue, set by queuer.tracing

    def __post_init__(self) -> None:
        if self.on_error is not None and not isinstance(self.on_error, OnError):
            raise ValidationError("options.on_error must be an OnError")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise ValidationError("options.schedule must be a Schedule")
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise ValidationError("options.metadata must be a dict")
        if self.metadata and METADATA_KEY in self.metadata:
            raise ValidationError(
                f"options.metadata[{METADATA_KEY!r}] is queuer's own: use queue=, priority=, "
                "unique_key= and expires_at= instead"
            )
        if self.parent_rid is not None and not isinstance(self.parent_rid, UUID):
            raise ValidationError("options.parent_rid must be a UUID")
        if type(self.queue) is not str or self.queue != DEFAULT_QUEUE:
            validate_queue_name(self.queue)
        if type(self.priority) is not int or self.priority:
            validate_priority(self.priority)
        if self.unique_key is not None:
            validate_unique_key(self.unique_key)
        if self.depends_on:
            if isinstance(self.depends_on, str | bytes | UUID):
                raise ValidationError("depends_on must be a list of job rids")
            object.__setattr__(
                self, "depends_on", tuple(as_rid(r, "depends_on rid") for r in self.depends_on)
            )
        if self.flow is not None and not isinstance(self.flow, FlowLink):
            raise ValidationError("options.flow is set by workflows only")
        if self.trace is not None and not _is_trace(self.trace):
            raise ValidationError("options.trace is set by queuer.tracing only (a dict of short strings)")
        if self.expires_at is not None:
            if not isinstance(self.expires_at, datetime):
                raise ValidationError(f"expires_at must be a datetime, got {type(self.expires_at).__name__}")
            object.__setattr__(self, "expires_at", as_utc(self.expires_at))

    def check_new(self, now: datetime) -> None:
        """What only a job about to be written must satisfy (a stored job may well have expired)."""
        if self.expires_at is None:
            return
        if self.expires_at <= now:
            raise ValidationError(f"expires_at {self.expires_at.isoformat()} is in the past")
        if (
            self.schedule is not None
            and self.schedule.max_count <= 1
            and self.expires_at <= self.schedule.start
        ):
            raise ValidationError(
                f"expires_at {self.expires_at.isoformat()} is not after the schedule's start "
                f"{self.schedule.start.isoformat()}: the job could never run"
            )

    def with_defaults(self, on_error: OnError | None, parent_rid: UUID | None) -> Options:
        """Fill in the enqueuing worker's default on_error and the running job's rid (as Go does)."""
        updates: dict[str, Any] = {}
        if self.on_error is None and on_error is not None:
            updates["on_error"] = on_error
        if self.parent_rid is None and parent_rid is not None:
            updates["parent_rid"] = parent_rid
        return replace(self, **updates) if updates else self

    def routing_json(self) -> dict[str, Any]:
        """The ``metadata.queuer_py`` object: only what differs from the defaults."""
        data: dict[str, Any] = {}
        if self.queue != DEFAULT_QUEUE:
            data["queue"] = self.queue
        if self.priority:
            data["priority"] = self.priority
        if self.unique_key is not None:
            data["unique_key"] = self.unique_key
        if self.expires_at is not None:
            data["expires_at"] = expiry_text(self.expires_at)
        if self.depends_on:
            data["depends_on"] = [str(r) for r in self.depends_on]
        if self.flow is not None:
            data.update(self.flow.to_json())
        if self.trace:
            data["trace"] = dict(self.trace)
        return data

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        if self.on_error is not None:
            data["on_error"] = self.on_error.to_json()
        if self.schedule is not None:
            data["schedule"] = self.schedule.to_json()
        routing = self.routing_json()
        if self.metadata or routing:
            data["metadata"] = {**(self.metadata or {}), **({METADATA_KEY: routing} if routing else {})}
        if self.parent_rid is not None:
            data["parent_rid"] = str(self.parent_rid)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Options | None:
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Options | None:
        """Read SQL NULL or ``{}`` (both: no options, None) or a full object. Routing values that
        are not what Python writes (another program's) read as the defaults."""
        if not isinstance(data, dict) or not data:
            return None
        known = {"on_error", "schedule", "metadata", "parent_rid"}
        parent = data.get("parent_rid")
        metadata = data.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, dict) else None
        routing = metadata.pop(METADATA_KEY, None) if metadata is not None else None
        return cls(
            on_error=OnError.from_json(data.get("on_error")),
            schedule=Schedule.from_json(data.get("schedule")),
            metadata=metadata or None,
            parent_rid=UUID(parent) if parent else None,
            extra={k: v for k, v in data.items() if k not in known},
            **_routing_from_json(routing),
        )


def _routing_from_json(routing: Any) -> dict[str, Any]:
    """The routing values another reader wrote as Python writes them; anything else is left out
    (read as the default). Cheap checks: this runs for every claimed job that has any."""
    if not isinstance(routing, dict):
        return {}
    values: dict[str, Any] = {}
    queue = routing.get("queue")
    if type(queue) is str and 0 < len(queue) <= MAX_QUEUE_NAME:
        values["queue"] = queue
    priority = routing.get("priority")
    if type(priority) is int and MIN_PRIORITY <= priority <= MAX_PRIORITY:
        values["priority"] = priority
    key = routing.get("unique_key")
    if type(key) is str and 0 < len(key) <= MAX_UNIQUE_KEY:
        values["unique_key"] = key
    expires = routing.get("expires_at")
    if type(expires) is str:
        with contextlib.suppress(ValidationError):
            values["expires_at"] = rfc3339_to_time(expires)
    depends = routing.get("depends_on")
    if isinstance(depends, list):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            values["depends_on"] = tuple(UUID(r) for r in depends)
    if "workflow" in routing or "dependents" in routing or "pass_results" in routing:
        values["flow"] = FlowLink.from_json(routing)
    trace = routing.get("trace")
    if trace is not None and _is_trace(trace):
        values["trace"] = trace
    return values


MAX_TRACE_ENTRIES = 8
MAX_TRACE_TEXT = 512


def _is_trace(value: Any) -> bool:
    """A propagation carrier: a few short text entries (traceparent, tracestate, baggage)."""
    return (
        isinstance(value, dict)
        and len(value) <= MAX_TRACE_ENTRIES
        and all(
            type(k) is str and type(v) is str and len(k) + len(v) <= MAX_TRACE_TEXT for k, v in value.items()
        )
    )


def may_run_again(on_error: OnError | None, attempts: int) -> bool:
    """The retry rule where a job may have no policy at all (then it runs once)."""
    return on_error is not None and on_error.allows_retry(attempts)
