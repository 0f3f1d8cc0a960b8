"""The worker side of a Queuer: the cycle loop, running jobs, poller, heartbeat.

Everything here runs on the Queuer's event loop. One loop, the *cycle*, sleeps on one
``asyncio.Event``; notifications, the poll tick, the scheduled-job timer and finished jobs only
set it, so any number of wake-ups collapse into one cycle. A cycle is one transaction sent in one
round trip: it archives every job finished since the last cycle, puts retries back in the queue,
inserts next occurrences of recurring jobs, and claims as many new jobs as there are free slots.
While a cycle is in flight, finishing jobs gather for the next one, so the batch grows with load.

A worker whose claims keep filling every free slot is *saturated* (``queuer.saturation``): it
claims again as soon as a slot frees, so it stops listening while it can and checks the table's
statistics instead of counting queued jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from queuer.database.job_table import NOTHING, Claim, Finished, FollowUp, Requeued
from queuer.database.store import Store
from queuer.model import Job, JobStatus, OnError, PassResults, WorkerStatus

from .claims import ClaimCursor, QueuePlan, Segment
from .hooks import Hooks
from .loop import reraise_if_cancelled
from .metrics import WorkerMetrics
from .progress import ProgressReporter, current_reporter
from .runner import Outcome, run_job
from .saturation import Saturation
from .schedules import next_occurrence
from .tasks import TaskRegistry

log = logging.getLogger("queuer.worker")

_EVENT_OF = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.SCHEDULED: "job.retrying",
    JobStatus.QUEUED: "job.retrying",
}

# A started worker counts as dead once it missed this many heartbeats (and at least MIN_STALE_AFTER
# seconds passed): long enough for a slow database, short enough to rescue its jobs within a minute.
STALE_AFTER_HEARTBEATS = 4
MIN_STALE_AFTER = 10.0


class PoisonJob(Exception):
    """A claimed row that cannot be run as it is; the message says why."""


@dataclass
class RuntimeSettings:
    """Intervals of the background loops, in seconds."""

    poll_interval: float = 2.0
    heartbeat_interval: float = 5.0
    retry_backoff_max: float = 5.0
    flush_delay: float = 0.002  # how long ended jobs wait for others to share their transaction

    @property
    def stale_after(self) -> timedelta:
        """How long this worker may go without a heartbeat before the master declares it dead."""
        return timedelta(seconds=max(STALE_AFTER_HEARTBEATS * self.heartbeat_interval, MIN_STALE_AFTER))


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
        on_saturation: Callable[[], None],
        queues: list[str] | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.worker_rid = worker_rid
        self.max_concurrency = max_concurrency
        self.default_on_error = default_on_error
        self.settings = settings
        self._on_stop_request = on_stop_request
        self.saturation = Saturation(lambda: set(self.running), on_saturation)
        self.wake = asyncio.Event()
        self.running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._pending: list[Outcome] = []  # ended, not yet written; their slots are reused by the write
        self._claiming = True
        self._finished = False  # drained: the cycle loop ends
        self.dead = False  # a loop died: nothing runs, nothing heartbeats
        self._writing = False  # a cycle's transaction is in flight
        self._written = asyncio.Event()  # set after every write attempt
        self._ended = asyncio.Event()  # set whenever a running job ends
        self._loops: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        # Whether the earliest due time may have changed since the timer was armed: only something
        # becoming SCHEDULED (a notification says so), the timer, a poll tick or a reconnect can.
        self._schedule_changed = True
        self.plan = QueuePlan(queues)
        self.cursor = ClaimCursor()
        self.hooks = hooks or Hooks()
        self.metrics: WorkerMetrics | None = None  # set by Queuer.serve_metrics
        self._rate_timer: asyncio.TimerHandle | None = None
        # A limited queue of ours is at its concurrency: a job ending anywhere may make room.
        self.waiting_for_room = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._claiming = True
        loop = asyncio.get_running_loop()
        self.progress = ProgressReporter(self.store, loop)
        current_reporter.set(self.progress)  # the loop's context: every job's task inherits it
        for coro in (self._cycle_loop(), self._poll_loop(), self._heartbeat_loop()):
            task = loop.create_task(coro)
            task.add_done_callback(self._loop_ended)
            self._loops.append(task)
        self.wake.set()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A background loop ended. Unless the worker is draining, that was not foreseen: stop
        them all, the heartbeat included, so the master declares this worker dead and rescues its
        jobs. A live heartbeat always means a live claim loop."""
        if self._finished or task.cancelled():
            return
        exc = task.exception()
        log.error(
            "worker %s: a background loop ended unexpectedly (%s); heartbeat stopped so that the "
            "master rescues this worker's jobs",
            self.worker_rid,
            f"{type(exc).__name__}: {exc}" if exc else "returned",
            exc_info=exc,
        )
        self.dead = True
        for other in self._loops:
            other.cancel()

    async def drain(self, grace: float | None, cancel_running: bool = False) -> None:
        """Stop claiming and end the running jobs, then write every pending completion.

        ``cancel_running``: stop them now and archive them CANCELLED (our row was set STOPPED).
        Otherwise let them finish for up to ``grace`` seconds (None: as long as they take) and put
        those still running back in the queue, same row and rid, for another worker.
        """
        self._claiming = False
        for timer in (self._timer, self._rate_timer):
            if timer is not None:
                timer.cancel()
        self.saturation.end()
        await self.flush_all()  # a claim in flight lands in self.running before we look at it
        if cancel_running:
            cancelled = self._take_running()
            if cancelled:
                log.info("cancelling %d running job(s): this worker was stopped", len(cancelled))
                self._pending += [Outcome(j, JobStatus.CANCELLED) for j in cancelled]
        tasks = [t for _, t in self.running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        leftover = self._take_running()
        if leftover:
            log.warning("releasing %d job(s) still running after %.1fs grace", len(leftover), grace or 0)
            now = datetime.now(UTC)
            self._pending += [Outcome(j, JobStatus.QUEUED, retry_at=now) for j in leftover]
        await self.flush_all()
        # The flag ends the cycle loop at its next wake-up even when a cancellation is swallowed
        # (Python 3.11's wait_for loses one that coincides with the awaited event).
        self._finished = True
        self.wake.set()
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()

    def _take_running(self) -> list[Job]:
        jobs = [job for job, _ in self.running.values()]
        for _, task in self.running.values():
            task.cancel()
        self.running.clear()
        return jobs

    async def flush_all(self) -> None:
        """Wait until every ended job is written and no cycle is in flight."""
        while (self._pending or self._writing) and not self.dead:
            self._written.clear()
            self.wake.set()
            await self._written.wait()

    # -- the cycle ------------------------------------------------------------------------------
    async def _cycle_loop(self) -> None:
        delay = 0.05
        while True:
            await self.wake.wait()
            if self._finished:
                return
            self.wake.clear()
            await self._gather_completions()
            batch, self._pending = self._pending, []
            free = self.max_concurrency - len(self.running) if self._claiming and self.registry.tasks else 0
            if not batch and free <= 0:
                continue
            self._writing = True
            try:
                claimed = await self._write(batch, max(free, 0))
                delay = 0.05
            except psycopg.Error as exc:
                # Nothing was committed, or the guard makes a repeat harmless.
                self._pending = batch + self._pending
                reraise_if_cancelled()
                log.warning("worker cycle failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_backoff_max)
                await self._recover()
                self.wake.set()
                continue
            finally:
                self._writing = False
                self._written.set()
            for job in claimed:
                self._start_job(job)
            if free > 0 and self._claiming:
                self.saturation.count_claim(len(claimed), full=len(claimed) == free)
            if free > 0 and len(claimed) < free and self._schedule_changed:
                await self._arm_timer()

    async def _gather_completions(self) -> None:
        """Let jobs that end within ``flush_delay`` share this cycle's transaction: one commit per
        batch instead of one per job, while a busy worker never waits longer than that."""
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.flush_delay
        while self._pending and self.running and self._claiming:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._ended.clear()
            try:
                await asyncio.wait_for(self._ended.wait(), remaining)
            except TimeoutError:
                return

    async def _write(self, batch: list[Outcome], claim_limit: int) -> list[Job]:
        """Write the ended jobs and claim up to ``claim_limit`` new ones: the first claim shares
        the cycle's statement, a limited queue's claim is a transaction of its own."""
        if self.plan.stale and claim_limit > 0:
            try:
                self.plan.update(await self.store.queues.settings())
            except psycopg.Error as exc:  # the plain claim is safe without them
                reraise_if_cancelled()
                log.warning("reading the queues' settings failed: %s", exc)
        segments = self.plan.segments() if claim_limit > 0 else [Segment(self.plan.queues)]
        first = segments[0]
        claimed = await self._write_and_claim(batch, 0 if first.limited else claim_limit, first.queues)
        self.waiting_for_room = False
        wake_in: float | None = None
        for segment in segments if first.limited else segments[1:]:
            room = claim_limit - len(claimed)
            if room <= 0:
                break
            claim = self._claim(room, segment.queues)
            if not segment.limited:
                claimed += await self.store.cycle(self.worker_id, self.worker_rid, [], [], [], claim)
                continue
            assert segment.queues is not None
            got = await self.store.queues.claim_limited(
                self.worker_id, self.worker_rid, segment.queues[0], claim
            )
            claimed += got.jobs
            self.waiting_for_room = self.waiting_for_room or got.full
            if got.wake_in is not None:
                wake_in = got.wake_in if wake_in is None else min(wake_in, got.wake_in)
        if wake_in is not None:
            self._arm_rate_timer(wake_in)
        return claimed

    def _claim(self, limit: int, queues: list[str] | None) -> Claim:
        return Claim(
            limit,
            list(self.registry.tasks),
            list(self.registry.next_intervals),
            queues,
            skip_blocked=queues is None and self.plan.any_blocked,
        )

    def _arm_rate_timer(self, seconds: float) -> None:
        """Sleep until the earliest moment a rate-limited queue allows a start (no polling)."""
        if self._rate_timer is not None:
            self._rate_timer.cancel()
        self._rate_timer = asyncio.get_running_loop().call_later(max(seconds, 0.001), self.wake.set)

    def queues_changed(self) -> None:
        """A queue was paused, resumed or limited somewhere: read the settings again, claim."""
        self.plan.stale = True
        self.wake.set()

    async def _write_and_claim(
        self, batch: list[Outcome], claim_limit: int, queues: list[str] | None
    ) -> list[Job]:
        finished: list[Finished] = []
        retried: list[Requeued] = []
        follow_ups: list[FollowUp] = []
        for o in batch:
            if o.retry_at is not None:
                retried.append(Requeued(o.job.id, o.job.attempts, o.retry_at))
                continue
            try:
                if o.status is JobStatus.CANCELLED:  # as a cancel: the row's results ([]), never sealed
                    results, encrypted = "[]", b""
                else:
                    results, encrypted = self.store.seal_results(o.results_json)
                new = None if o.status is JobStatus.CANCELLED else next_occurrence(o.job, self.registry)
            except Exception as exc:  # this job's completion cannot be written as it is: fail it
                error = f"{type(exc).__name__} while completing the job: {exc}"[:2000]
                log.error("job %s %s: %s", o.job.rid, o.job.task_name, error)
                finished.append(
                    Finished(o.job.id, o.job.attempts, JobStatus.FAILED.value, "null", b"", error)
                )
                continue
            finished.append(Finished(o.job.id, o.job.attempts, o.status.value, results, encrypted, o.error))
            if new is not None:
                follow_ups.append(FollowUp(o.job.id, new))
        claim = self.cursor.place(self._claim(claim_limit, queues))
        flow = any(
            o.job.options is not None and o.job.options.flow is not None and o.job.options.flow.dependents
            for o in batch
        )
        claimed = await self.store.cycle(
            self.worker_id, self.worker_rid, finished, retried, follow_ups, claim, flow=bool(flow)
        )
        self.cursor.claimed(claim, len(claimed), claimed.floor)
        return claimed

    async def _recover(self) -> None:
        """After a failed cycle: drop dead pooled connections, and put back any job the database
        says we hold but we do not run (a claim whose reply was lost with the connection)."""
        try:
            await self.store.check_connections()
            known = set(self.running) | {o.job.id for o in self._pending}
            lost = [(i, a) for i, a in await self.store.held_by(self.worker_id) if i not in known]
            if lost:
                log.warning("releasing %d job(s) claimed by a cycle whose reply was lost", len(lost))
                now = datetime.now(UTC)
                await self.store.cycle(
                    self.worker_id, self.worker_rid, [], [Requeued(i, a, now) for i, a in lost], [], NOTHING
                )
        except psycopg.Error:
            log.debug("recovery after a failed cycle failed; retried with the next cycle", exc_info=True)

    def schedule_changed(self) -> None:
        """A job became SCHEDULED somewhere: look for the earliest due time again."""
        self._schedule_changed = True
        self.wake.set()

    async def _arm_timer(self) -> None:
        """Wake up when the earliest scheduled job we can run comes due (server clock)."""
        self._schedule_changed = False
        try:
            seconds = await self.store.next_due_seconds(
                list(self.registry.tasks), list(self.registry.next_intervals)
            )
        except psycopg.Error as exc:
            reraise_if_cancelled()
            log.warning("next-due query failed: %s", exc)
            self._schedule_changed = True
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds is not None:
            # A job due now but not claimed is locked by another worker: look again shortly.
            delay = seconds if seconds > 0 else 0.05
            self._timer = asyncio.get_running_loop().call_later(delay, self.schedule_changed)

    # -- running --------------------------------------------------------------------------------
    def _start_job(self, job: Job) -> None:
        """Start one claimed job; whatever goes wrong with this job fails it, and only it."""
        try:
            if job.error:  # the store could not decode the row: it says why
                raise PoisonJob(job.error)
            self._start_claimed(job)
        except Exception as exc:
            self._fail_poison(job, exc)

    def _fail_poison(self, job: Job, exc: BaseException) -> None:
        error = str(exc) if isinstance(exc, PoisonJob) else f"{type(exc).__name__}: {exc}"
        log.error("job %s %s failed before it could run: %s", job.rid, job.task_name, error)
        self._pending.append(Outcome(job, JobStatus.FAILED, results_json="null", error=error[:2000]))
        self.wake.set()

    def _start_claimed(self, job: Job) -> None:
        expires_at = job.options.expires_at if job.options else None
        if expires_at is not None and expires_at <= datetime.now(UTC):
            # Not started by its expiry: archived CANCELLED instead of running late.
            log.info("job %s %s expired at %s; not run", job.rid, job.task_name, expires_at.isoformat())
            self._pending.append(Outcome(job, JobStatus.CANCELLED, error="expired"))
            self._announce("job.expired", job, JobStatus.CANCELLED, error="expired")
            self.wake.set()
            return
        schedule = job.options.schedule if job.options else None
        if schedule is not None and job.scheduled_at is None and schedule.start > datetime.now(UTC):
            # A row the Go library's batch insert wrote QUEUED despite its schedule (contract
            # §5.2): hand it back as SCHEDULED at its start instead of holding a slot until then.
            self._pending.append(Outcome(job, JobStatus.SCHEDULED, retry_at=schedule.start))
            self.wake.set()
            return
        task = self.registry.tasks[job.task_name]
        if log.isEnabledFor(logging.INFO):
            log.info("job %s %s started (attempt %d)", job.rid, job.task_name, job.attempts)
        on_error = (job.options.on_error if job.options else None) or self.default_on_error
        work = run_job(task, job, on_error)
        flow = job.options.flow if job.options else None
        if flow is not None and flow.pass_results is not None:
            work = self._with_results(job, flow.pass_results, work)
        runner = asyncio.get_running_loop().create_task(self._run(job, work))
        if self.metrics is not None:
            self.metrics.started(job)
        self._announce("job.started", job, JobStatus.RUNNING)
        self.running[job.id] = (job, runner)

    async def _with_results(
        self, job: Job, passing: PassResults, work: Coroutine[Any, Any, Outcome]
    ) -> Outcome:
        """A workflow step gets what the jobs before it returned as its first argument: the one
        result, or (after a group) the list of them."""
        try:
            results = await self.store.workflows.results_for(job.rid)
        except psycopg.Error as exc:  # the database is away: back to the queue, run it later
            work.close()
            reraise_if_cancelled()
            return Outcome(
                job, JobStatus.QUEUED, error=str(exc), retry_at=datetime.now(UTC) + timedelta(seconds=1)
            )
        except BaseException:
            work.close()
            raise
        job.parameters = [
            results[0] if passing is PassResults.PREVIOUS and results else results,
            *job.parameters,
        ]
        return await work

    async def _run(self, job: Job, work: Coroutine[Any, Any, Outcome]) -> None:
        try:
            outcome = await work
        except asyncio.CancelledError:
            self.running.pop(job.id, None)
            raise
        if self.progress.active:
            self.progress.ended(job.rid)
        if job.id in self.running:
            if log.isEnabledFor(logging.INFO):
                ended = "with a retry planned" if outcome.retry_at else outcome.status.value
                log.info(
                    "job %s %s ended %s%s",
                    job.rid,
                    job.task_name,
                    ended,
                    f": {outcome.error}" if outcome.error else "",
                )
            del self.running[job.id]
            self._pending.append(outcome)
            if self.metrics is not None:
                self.metrics.finished(job, "retrying" if outcome.retry_at else outcome.status.value)
            if outcome.retry_at is not None:
                self._announce("job.retrying", job, JobStatus.QUEUED, error=outcome.error)
            else:
                self._announce(
                    _EVENT_OF[outcome.status], job, outcome.status, outcome.results_json, outcome.error
                )
            self._ended.set()
            self.wake.set()

    def _announce(
        self, event: str, job: Job, status: JobStatus, results_json: str = "[]", error: str = ""
    ) -> None:
        """Fire the callbacks of ``event`` with the job as it now stands (only when there are any)."""
        if self.hooks.active and self.hooks.wants(event, job.task_name):
            results = json.loads(results_json) if status is JobStatus.SUCCEEDED else job.results
            self.hooks.fire(event, replace(job, status=status, results=results, error=error or job.error))

    def cancel_running(self, rid: UUID) -> bool:
        """Stop our execution of a job that was cancelled elsewhere; its archive row stays as is."""
        for job_id, (job, task) in list(self.running.items()):
            if job.rid == rid:
                del self.running[job_id]
                task.cancel()
                self._announce("job.cancelled", job, JobStatus.CANCELLED)
                self.wake.set()
                return True
        return False

    # -- background ticks -----------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            self.plan.stale = True
            self.schedule_changed()  # the fallback for notifications that never arrived

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                status = await self.store.heartbeat(self.worker_id)
                if status in (WorkerStatus.STOPPED, WorkerStatus.STOPPING):
                    self._on_stop_request(status)
            except psycopg.Error as exc:
                reraise_if_cancelled()
                log.warning("heartbeat failed: %s", exc)
                with contextlib.suppress(psycopg.Error):
                    await self.store.check_connections()
            await asyncio.sleep(self.settings.heartbeat_interval)
