"""The worker side of a Queuer: claim loop, running jobs, completion buffer, poller, heartbeat.

Everything here runs on the Queuer's event loop. The claim loop sleeps on one ``asyncio.Event``;
notifications, the poll tick and freed slots only set it, so any number of wake-ups collapse into
one claim statement. A slot stays taken until the job's completion is written, so the number of
RUNNING rows of this worker never exceeds ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from queuer.database import NewJob
from queuer.database.store import Store
from queuer.model import Job, JobStatus, OnError, WorkerStatus

from .runner import Outcome, run_job
from .schedules import next_occurrence
from .tasks import TaskRegistry

log = logging.getLogger("queuer.worker")


@dataclass
class RuntimeSettings:
    """Intervals of the background loops, in seconds."""

    poll_interval: float = 2.0
    heartbeat_interval: float = 5.0
    retry_backoff_max: float = 5.0


class Runtime:
    """Claims, runs and completes jobs for one worker row."""

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        worker_id: int,
        worker_rid: UUID,
        max_concurrency: int,
        default_on_error: OnError | None,
        settings: RuntimeSettings,
        on_stop_request: Callable[[WorkerStatus], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.worker_rid = worker_rid
        self.max_concurrency = max_concurrency
        self.default_on_error = default_on_error
        self.settings = settings
        self._on_stop_request = on_stop_request
        self.wake = asyncio.Event()
        self.running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._pending: list[Outcome] = []
        self._in_flush = 0
        self._flush_needed = asyncio.Event()
        self._flushed = asyncio.Event()
        self._claiming = True
        self._loops: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._claiming = True
        for coro in (self._claim_loop(), self._flush_loop(), self._poll_loop(), self._heartbeat_loop()):
            self._loops.append(asyncio.get_running_loop().create_task(coro))
        self.wake.set()

    def occupied(self) -> int:
        return len(self.running) + len(self._pending) + self._in_flush

    async def drain(self, grace: float | None, cancel_running: bool = False) -> None:
        """Stop claiming and end the running jobs, then write every pending completion.

        ``cancel_running``: stop them now and archive them CANCELLED (our row was set STOPPED).
        Otherwise let them finish for up to ``grace`` seconds (None: as long as they take) and put
        those still running back in the queue, same row and rid, for another worker.
        """
        self._claiming = False
        self.wake.set()
        if cancel_running:
            cancelled = [job for job, _ in self.running.values()]
            for _, task in list(self.running.values()):
                task.cancel()
            self.running.clear()
            if cancelled:
                log.info("cancelling %d running job(s): this worker was stopped", len(cancelled))
                await self._write_with_retry(
                    [(j.id, j.attempts, JobStatus.CANCELLED.value, "[]", b"", "") for j in cancelled], []
                )
        tasks = [t for _, t in self.running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        leftover = [job for job, _ in self.running.values()]
        for _, task in list(self.running.values()):
            task.cancel()
        if leftover:
            log.warning("releasing %d job(s) still running after %.1fs grace", len(leftover), grace or 0)
            now = datetime.now(UTC)
            await self._write_with_retry([], [(j.id, j.attempts, now) for j in leftover])
            self.running.clear()
        await self.flush_all()
        if self._timer is not None:
            self._timer.cancel()
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()

    async def flush_all(self) -> None:
        while self._pending or self._in_flush:
            self._flushed.clear()
            self._flush_needed.set()
            await self._flushed.wait()

    # -- claiming -------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        delay = 0.05
        while True:
            await self.wake.wait()
            self.wake.clear()
            free = self.max_concurrency - self.occupied()
            if not self._claiming or free <= 0 or not self.registry.tasks:
                continue
            try:
                jobs = await self.store.claim(
                    self.worker_id,
                    self.worker_rid,
                    list(self.registry.tasks),
                    list(self.registry.next_intervals),
                    free,
                )
                delay = 0.05
            except psycopg.Error as exc:
                log.warning("claim failed (%s); retrying in %.2fs", exc, delay)
                await self._purge_broken()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_backoff_max)
                self.wake.set()
                continue
            for job in jobs:
                self._start_job(job)
            if len(jobs) < free:
                await self._arm_timer()

    async def _arm_timer(self) -> None:
        """Wake up when the earliest scheduled job we can run comes due (server clock)."""
        try:
            rows = await self.store.execute(
                self.store.jobs.next_due,
                {"tasks": list(self.registry.tasks), "intervals": list(self.registry.next_intervals)},
            )
        except psycopg.Error as exc:
            log.warning("next-due query failed: %s", exc)
            return
        seconds = rows[0]["seconds"] if rows else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds is not None:
            # A job due now but not claimed is locked by another worker: look again shortly.
            delay = seconds if seconds > 0 else 0.05
            self._timer = asyncio.get_running_loop().call_later(delay, self.wake.set)

    def _start_job(self, job: Job) -> None:
        schedule = job.options.schedule if job.options else None
        if schedule is not None and job.scheduled_at is None and schedule.start > datetime.now(UTC):
            # A row the Go library's batch insert wrote QUEUED despite its schedule (contract
            # §5.2): hand it back as SCHEDULED at its start instead of holding a slot until then.
            self._pending.append(Outcome(job, JobStatus.SCHEDULED, retry_at=schedule.start))
            self._flush_needed.set()
            return
        task = self.registry.tasks[job.task_name]
        log.info("job %s %s started (attempt %d)", job.rid, job.task_name, job.attempts)
        on_error = (job.options.on_error if job.options else None) or self.default_on_error
        runner = asyncio.get_running_loop().create_task(self._run(job, run_job(task, job, on_error)))
        self.running[job.id] = (job, runner)

    async def _run(self, job: Job, work: Coroutine[Any, Any, Outcome]) -> None:
        try:
            outcome = await work
        except asyncio.CancelledError:
            self.running.pop(job.id, None)
            raise
        if job.id in self.running:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "job %s %s ended %s%s",
                    job.rid,
                    job.task_name,
                    "with a retry planned" if outcome.retry_at else outcome.status.value,
                    f": {outcome.error}" if outcome.error else "",
                )
            del self.running[job.id]
            self._pending.append(outcome)
            self._flush_needed.set()

    def cancel_running(self, rid: UUID) -> bool:
        """Stop our execution of a job that was cancelled elsewhere; its archive row stays as is."""
        for job_id, (job, task) in list(self.running.items()):
            if job.rid == rid:
                del self.running[job_id]
                task.cancel()
                self.wake.set()
                return True
        return False

    # -- completing -----------------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            await asyncio.sleep(0)  # let completions of the same tick join this batch
            batch, self._pending = self._pending, []
            if batch:
                self._in_flush = len(batch)
                finished = [
                    (
                        o.job.id,
                        o.job.attempts,
                        o.status.value,
                        *self.store.seal_results(o.results_json),
                        o.error,
                    )
                    for o in batch
                    if o.retry_at is None
                ]
                follow_ups = {}
                for o in batch:
                    if o.retry_at is None and (new := next_occurrence(o.job, self.registry)) is not None:
                        follow_ups[o.job.id] = new
                retried = [(o.job.id, o.job.attempts, o.retry_at) for o in batch if o.retry_at is not None]
                await self._write_with_retry(finished, retried, follow_ups)
                self._in_flush = 0
                self.wake.set()
            if not self._pending:
                self._flushed.set()

    async def _write_with_retry(
        self,
        finished: Sequence[tuple[int, int, str, str, bytes, str]],
        retried: Sequence[tuple[int, int, datetime]],
        follow_ups: Mapping[int, NewJob] | None = None,
    ) -> None:
        """Completion writes are retried until they land: they are guarded, so a repeat is harmless."""
        delay = 0.05
        while True:
            try:
                await self.store.complete(self.worker_id, finished, retried, follow_ups or {})
                return
            except psycopg.Error as exc:
                log.warning("completion write failed (%s); retrying in %.2fs", exc, delay)
                await self._purge_broken()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_backoff_max)

    async def _purge_broken(self) -> None:
        """After a connection error (e.g. a server restart), drop the pool's dead connections."""
        try:
            await self.store.pool.check()
        except Exception:  # the check itself may fail while the server is down; retried next time
            log.debug("pool check failed", exc_info=True)

    # -- background ticks -----------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            self.wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                rows = await self.store.execute(self.store.workers.heartbeat, (self.worker_id,))
                if rows:
                    status = WorkerStatus(rows[0]["status"])
                    if status in (WorkerStatus.STOPPED, WorkerStatus.STOPPING):
                        self._on_stop_request(status)
            except psycopg.Error as exc:
                log.warning("heartbeat failed: %s", exc)
                await self._purge_broken()
            await asyncio.sleep(self.settings.heartbeat_interval)
