"""The filter of a job list, read from a page's query string and checked there, so a bad value
is refused with a clear message before any statement runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from queuer.model import ValidationError, validate_queue_name

LIVE_STATUSES = ("QUEUED", "SCHEDULED", "RUNNING")
ENDED_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED")
PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows: one table (``job`` or the archive), and optionally one status,
    queue, task and a search text (a rid, or a piece of the task name or error)."""

    ended: bool = False
    status: str | None = None
    queue: str | None = None
    task: str | None = None
    search: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str], ended: bool) -> JobFilter:
        status = _blank(query.get("status"))
        if status is not None:
            status = status.upper()
            allowed = ENDED_STATUSES if ended else LIVE_STATUSES
            if status not in allowed:
                raise ValidationError(f"status must be one of {', '.join(allowed)}, not {status!r}")
        queue = _blank(query.get("queue"))
        if queue is not None:
            validate_queue_name(queue)
        task = _blank(query.get("task"))
        if task is not None and len(task) > 100:
            raise ValidationError("task names have at most 100 characters")
        search = _blank(query.get("q"))
        if search is not None and len(search) > 200:
            raise ValidationError("a search text has at most 200 characters")
        return cls(ended=ended, status=status, queue=queue, task=task, search=search)

    def params(self) -> dict[str, Any]:
        """The statement parameters of ``database.dashboard_table``'s filter."""
        rid: UUID | None = None
        text: str | None = None
        if self.search is not None:
            try:
                rid = UUID(self.search)
            except ValueError:
                escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                text = f"%{escaped}%"
        return {"status": self.status, "queue": self.queue, "task": self.task, "rid": rid, "text": text}

    def query(self) -> dict[str, str]:
        """The filter as query-string values (for links that keep it)."""
        values = {"status": self.status, "queue": self.queue, "task": self.task, "q": self.search}
        return {key: value for key, value in values.items() if value is not None}

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.status, self.queue, self.task, self.search))


def page_size(query: Mapping[str, str]) -> int:
    raw = _blank(query.get("size"))
    if raw is None:
        return 50
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise ValidationError(f"size must be one of {', '.join(map(str, PAGE_SIZES))}")
    return int(raw)


def cursor(query: Mapping[str, str], key: str) -> int | None:
    """A page cursor (a job id) from the query string."""
    raw = _blank(query.get(key))
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ValidationError(f"{key} must be a job id")
    return int(raw)


def _blank(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None
