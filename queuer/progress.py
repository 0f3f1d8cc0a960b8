"""``report_progress`` inside a running task: recorded in ``queuer_py_progress``, announced on
channel ``queuer_py_progress``, and throttled per job so that a tight loop cannot flood the
database (the latest report of each interval is the one written)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg

from queuer.model import QueuerStateError, ValidationError

from .runner import current_job_rid

if TYPE_CHECKING:
    from queuer.database.store import Store

log = logging.getLogger("queuer.progress")

MIN_INTERVAL = 0.5  # seconds between two writes of one job's progress
MAX_MESSAGE = 1000


class ProgressReporter:
    """One per running worker; called from the loop or from task threads."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._latest: dict[UUID, tuple[float, str]] = {}
        self._written_at: dict[UUID, float] = {}
        self._due: set[UUID] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self.active = False  # some job reported progress (the runtime skips ``ended`` if not)

    def report(self, rid: UUID, fraction: float, message: str) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # a task's thread
            on_loop = False
        if on_loop:
            self._note(rid, fraction, message)
        else:
            self._loop.call_soon_threadsafe(self._note, rid, fraction, message)

    def _note(self, rid: UUID, fraction: float, message: str) -> None:
        self.active = True
        self._latest[rid] = (fraction, message)
        if rid in self._due:
            return
        self._due.add(rid)
        wait = self._written_at.get(rid, -math.inf) + MIN_INTERVAL - self._loop.time()
        self._loop.call_later(max(wait, 0.0), self._flush, rid)

    def _flush(self, rid: UUID) -> None:
        self._due.discard(rid)
        latest = self._latest.pop(rid, None)
        if latest is None:
            return
        self._written_at[rid] = self._loop.time()
        task = self._loop.create_task(self._write(rid, *latest))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, rid: UUID, fraction: float, message: str) -> None:
        try:
            await self._store.workflows.write_progress(rid, fraction, message)
        except psycopg.Error as exc:  # progress is a report, not the job: never fail it
            log.warning("progress of job %s not recorded: %s", rid, exc)

    def ended(self, rid: UUID) -> None:
        """The job ended: write what is pending now, forget the job."""
        if rid in self._latest:
            self._flush(rid)
        self._written_at.pop(rid, None)


current_reporter: contextvars.ContextVar[ProgressReporter | None] = contextvars.ContextVar(
    "queuer_progress_reporter", default=None
)


def report_progress(fraction: float, message: str = "") -> None:
    """Inside a running task (async or in a thread): record how far it is, ``fraction`` from 0 to
    1, with an optional message. ``get_job``, ``queuer get job`` and ``listen_for_progress`` see it.
    Reports closer than half a second apart are merged (the latest is written)."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        raise ValidationError(f"progress must be a number from 0 to 1, got {fraction!r}")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        raise ValidationError(f"the progress message must be a string of at most {MAX_MESSAGE} characters")
    rid, reporter = current_job_rid.get(), current_reporter.get()
    if rid is None or reporter is None:
        raise QueuerStateError("report_progress is for the task of a running job (not process=True tasks)")
    reporter.report(rid, float(fraction), message)
