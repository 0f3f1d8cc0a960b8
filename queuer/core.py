"""The public API: ``Queuer`` and its constructors. A thin layer over the store and the runtime.

Every I/O method exists twice: ``name(...)`` blocks the calling thread, ``name_async(...)`` awaits
from any event loop. Both run the same coroutine on the Queuer's own loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg

from queuer.database import DatabaseConfiguration, NewJob, install_schema
from queuer.database.batch import copy_jobs, copy_jobs_async
from queuer.database.encryption import PgpCodec
from queuer.database.listener import Listener, parse_payload
from queuer.database.store import Store
from queuer.model import (
    BatchJob,
    Job,
    JobEvent,
    JobStatus,
    Master,
    MasterSettings,
    OnError,
    Options,
    QueuerStateError,
    UnknownTaskError,
    ValidationError,
    WaitTimeoutError,
    Worker,
    WorkerStatus,
    uuid7,
    uuid7_batch,
    validate_name,
)
from queuer.model.jsoncodec import dumps, naive_utc, require_int

from .loop import LoopThread
from .master import MasterRole
from .runner import current_job_rid
from .runtime import Runtime, RuntimeSettings
from .tasks import TaskRegistry

log = logging.getLogger("queuer")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
EventCallback = Callable[[JobEvent], Any]
TaskRef = str | Callable[..., Any]
NextIntervalFunc = Callable[[datetime, int], datetime]
SyncConn = psycopg.Connection[Any] | psycopg.Cursor[Any]
AsyncConn = psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any]
MAX_CONCURRENCY = 1000
ANALYZE_AFTER = 1000  # new jobs (one batch of ours, or seen queued by a worker) before an ANALYZE


class Queuer:
    """A worker (and producer) bound to one queuer database.

    Construction connects, installs the schema if needed and registers a worker row (status READY).
    ``start()`` begins running registered tasks; ``stop()`` ends it gracefully. A Queuer that is
    never started still enqueues, reads and waits.
    """

    def __init__(
        self,
        name: str,
        max_concurrency: int,
        *on_error: OnError,
        db_config: DatabaseConfiguration,
        encryption_key: str | None = None,
        poll_interval: float = 2.0,
        heartbeat_interval: float = 5.0,
        pool_size: int = 5,
        process_tasks: bool = False,
        encrypt_parameters: bool = False,
        old_encryption_keys: Sequence[str] = (),
    ) -> None:
        validate_name("worker", name)
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or not (1 <= max_concurrency <= MAX_CONCURRENCY)
        ):
            raise ValidationError(f"max_concurrency must be an int from 1 to {MAX_CONCURRENCY}")
        if len(on_error) > 1 or any(not isinstance(o, OnError) for o in on_error):
            raise ValidationError("pass at most one OnError as the worker's default")
        if poll_interval <= 0 or not 0 < heartbeat_interval <= 30:
            raise ValidationError("poll_interval must be > 0 and heartbeat_interval in (0, 30] seconds")
        # A running worker keeps one pooled connection for its cycle; the heartbeat needs another.
        require_int("pool_size", pool_size, minimum=2)
        self.name = name
        self.process_tasks = process_tasks
        self.max_concurrency = max_concurrency
        self.default_on_error = on_error[0] if on_error else None
        self._default_options_json = dumps(Options(on_error=self.default_on_error).to_json(), "options")
        self.settings = RuntimeSettings(poll_interval=poll_interval, heartbeat_interval=heartbeat_interval)
        self.registry = TaskRegistry()
        if encrypt_parameters and not encryption_key:
            raise ValidationError("encrypt_parameters needs an encryption key")
        codec = PgpCodec(encryption_key, old_encryption_keys) if encryption_key else None
        self._store = Store(db_config, pool_size, codec, encrypt_parameters)
        self._known_remote_tasks: set[str] = set()
        self._known_remote_intervals: set[str] = set()
        self._waiters: dict[UUID, list[asyncio.Future[None]]] = defaultdict(list)
        self._callbacks: dict[str, list[EventCallback]] = {"insert": [], "update": [], "delete": []}
        self._listener: Listener | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._runtime: Runtime | None = None
        self._master: MasterRole | None = None
        self._master_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._background: set[asyncio.Task[Any]] = set()  # strong references until done
        self._maintenance: set[asyncio.Task[None]] = set()  # waited for before the pool closes
        self._refreshing = False  # a statistics refresh is running
        self._refresh_again = False  # and another was asked for meanwhile
        self._queued_seen = 0  # QUEUED/SCHEDULED notifications since the last refresh began
        self._closed = False
        self._loop = LoopThread(f"queuer-{name}")
        try:
            self.worker: Worker = self._loop.call(self._open())
        except BaseException:
            self._loop.close()
            raise

    async def _open(self) -> Worker:
        await install_schema(self._store.config)
        await self._store.open()
        options = dumps(self.default_on_error.to_json(), "on_error") if self.default_on_error else None
        return await self._store.insert_worker(self.name, options, self.max_concurrency, [], [])

    def __enter__(self) -> Queuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tasks ----------------------------------------------------------------------------------
    def add_task(self, fn: F, *, process: bool | None = None) -> F:
        """Register ``fn`` under its ``__name__``.

        ``process=True`` runs a plain function in a process of its own, so a timeout or a
        cancellation can kill it (the function must be picklable: defined at module level).
        The default comes from the queuer's ``process_tasks`` setting."""
        self.registry.add(fn, None, self._in_process(process))
        self._sync_capabilities()
        return fn

    def add_task_with_name(self, fn: F, name: str, *, process: bool | None = None) -> F:
        """Register ``fn`` under an explicit name (the routing key shared with Go workers)."""
        self.registry.add(fn, name, self._in_process(process))
        self._sync_capabilities()
        return fn

    def task(self, *, process: bool | None = None) -> Callable[[F], F]:
        """Decorator form of ``add_task``."""
        return lambda fn: self.add_task(fn, process=process)

    def task_with_name(self, name: str, *, process: bool | None = None) -> Callable[[F], F]:
        """Decorator form of ``add_task_with_name``."""
        return lambda fn: self.add_task_with_name(fn, name, process=process)

    def add_next_interval_func(self, fn: NextIntervalFunc) -> NextIntervalFunc:
        """Register ``fn(start, count) -> next time`` under its ``__name__`` for
        ``Schedule(next_interval=...)``; only workers that have it claim such jobs."""
        self.registry.add_next_interval(fn)
        self._sync_capabilities()
        return fn

    def add_next_interval_func_with_name(self, fn: NextIntervalFunc, name: str) -> NextIntervalFunc:
        """Register a next-interval function under an explicit name (shared with Go workers)."""
        self.registry.add_next_interval(fn, name)
        self._sync_capabilities()
        return fn

    def _in_process(self, process: bool | None) -> bool:
        return self.process_tasks if process is None else process

    def _sync_capabilities(self) -> None:
        tasks, intervals = list(self.registry.tasks), list(self.registry.next_intervals)
        self.worker.available_tasks, self.worker.available_next_interval = tasks, intervals
        self._loop.call(
            self._store.execute(self._store.workers.update_capabilities, (tasks, intervals, self.worker.id))
        )
        if self._runtime is not None:
            self._loop.loop.call_soon_threadsafe(self._runtime.wake.set)

    def update_worker(self, name: str | None = None, max_concurrency: int | None = None) -> Worker:
        """Change this worker's name or concurrency before ``start()`` (used by ``queuer worker``)."""
        if self._runtime is not None:
            raise QueuerStateError("change name and concurrency before start()")
        if name is not None:
            self.name = validate_name("worker", name)
        if max_concurrency is not None:
            if (
                isinstance(max_concurrency, bool)
                or not isinstance(max_concurrency, int)
                or not (1 <= max_concurrency <= MAX_CONCURRENCY)
            ):
                raise ValidationError(f"max_concurrency must be an int from 1 to {MAX_CONCURRENCY}")
            self.max_concurrency = max_concurrency
        rows = self._loop.call(
            self._store.execute(self._store.workers.rename, (self.name, self.max_concurrency, self.worker.id))
        )
        self.worker = Worker.from_row(rows[0])
        return self.worker

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, master_settings: MasterSettings | None = None) -> None:
        """Start claiming and running jobs; returns once listener, poller and heartbeat run.

        With ``master_settings`` this worker also takes part in the master election (one worker
        at a time handles dead workers and their jobs, see the README)."""
        if master_settings is not None and not isinstance(master_settings, MasterSettings):
            raise ValidationError("master_settings must be a MasterSettings")
        self._loop.call(self._start(master_settings))

    async def start_async(self, master_settings: MasterSettings | None = None) -> None:
        await self._loop.call_async(self._start(master_settings))

    async def _start(self, master_settings: MasterSettings | None) -> None:
        if self._closed:
            raise QueuerStateError("this queuer has been stopped")
        if self._runtime is not None:
            raise QueuerStateError("this queuer is already started")
        await self._ensure_listener()
        rows = await self._store.execute(self._store.workers.set_status, ("RUNNING", self.worker.id))
        self.worker = Worker.from_row(rows[0])
        self._runtime = Runtime(
            self._store,
            self.registry,
            self.worker.id,
            self.worker.rid,
            self.max_concurrency,
            self.default_on_error,
            self.settings,
            self._on_stop_request,
            self._on_saturation,
        )
        self._runtime.start()
        if master_settings is not None:
            self._master = MasterRole(self._store, self.worker.id, self.worker.rid, master_settings)
            self._master_task = asyncio.get_running_loop().create_task(self._master.run())

    @property
    def is_master(self) -> bool:
        """True while this worker holds the master role."""
        return self._master is not None and self._master.is_master

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop claiming, let running jobs finish (up to ``grace_seconds``; the rest are put back
        in the queue), write pending completions, mark the worker STOPPED and close connections."""
        with self._stop_lock:  # one caller stops; others wait for it and return
            if self._loop.loop.is_closed():
                return
            try:
                self._loop.call(self._stop(grace_seconds))
            finally:
                self._loop.close()
                self._store.close_sync()

    async def stop_async(self, grace_seconds: float = 30.0) -> None:
        if self._loop.loop.is_closed():
            return
        await self._loop.call_async(self._stop(grace_seconds))
        self._loop.close()
        await asyncio.get_running_loop().run_in_executor(None, self._store.close_sync)

    def wait_until_stopped(self, timeout_seconds: float | None = None) -> bool:
        """Block until this worker has stopped (e.g. by a stop request from another process)."""
        return self._stopped.wait(timeout_seconds)

    async def _stop(self, grace: float | None, cancel_running: bool = False) -> None:
        """Shut down once; later calls wait for the same shutdown."""
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(grace, cancel_running))
        await asyncio.shield(self._stop_task)

    async def _shutdown(self, grace: float | None, cancel_running: bool) -> None:
        self._closed = True
        try:
            if self._master is not None and self._master_task is not None:
                self._master_task.cancel()
                await asyncio.gather(self._master_task, return_exceptions=True)
                await self._master.release()
            if self._runtime is not None:
                await self._runtime.drain(grace, cancel_running)
            rows = await self._store.execute(self._store.workers.set_status, ("STOPPED", self.worker.id))
            if rows:
                self.worker = Worker.from_row(rows[0])
        finally:
            if self._listener_task is not None:
                self._listener_task.cancel()
                await asyncio.gather(self._listener_task, return_exceptions=True)
            for futures in self._waiters.values():
                for fut in futures:
                    if not fut.done():
                        fut.cancel()
            await asyncio.gather(*self._maintenance, return_exceptions=True)
            await self._store.close()
            self._stopped.set()

    def _on_stop_request(self, status: WorkerStatus) -> None:
        """Our row says STOPPED or STOPPING (written by another process): obey it (§5.9)."""
        if self._closed:
            return
        log.info("worker %s: row set to %s by another process", self.worker.rid, status.value)
        if status is WorkerStatus.STOPPED:
            self._spawn(self._stop(0.0, cancel_running=True))
        else:
            self._spawn(self._drain_on_request())

    async def _drain_on_request(self) -> None:
        await self._store.execute(self._store.workers.set_draining, (self.worker.id,))
        await self._stop(None)

    # -- other workers --------------------------------------------------------------------------
    def stop_worker(self, worker_rid: UUID) -> Worker:
        """Ask any worker (Python or Go) to stop now: its row becomes STOPPED, it cancels its
        running jobs and exits at its next heartbeat."""
        return self._loop.call(self._store.request_stop(worker_rid, WorkerStatus.STOPPED))

    async def stop_worker_async(self, worker_rid: UUID) -> Worker:
        return await self._loop.call_async(self._store.request_stop(worker_rid, WorkerStatus.STOPPED))

    def stop_worker_gracefully(self, worker_rid: UUID) -> Worker:
        """Ask any worker to drain: its row becomes STOPPING; it finishes what runs, takes nothing
        new, then marks itself STOPPED."""
        return self._loop.call(self._store.request_stop(worker_rid, WorkerStatus.STOPPING))

    async def stop_worker_gracefully_async(self, worker_rid: UUID) -> Worker:
        return await self._loop.call_async(self._store.request_stop(worker_rid, WorkerStatus.STOPPING))

    def get_master(self) -> Master:
        """The master row: who holds the role, its settings, when it was last renewed."""
        return self._loop.call(self._store.get_master())

    async def get_master_async(self) -> Master:
        return await self._loop.call_async(self._store.get_master())

    # -- notifications --------------------------------------------------------------------------
    async def _ensure_listener(self) -> None:
        if self._listener is None:
            self._listener = Listener(self._store.config, self._on_notify, self._on_listener_connect)
            self._listener_task = asyncio.get_running_loop().create_task(self._listener.run())
        await asyncio.wait_for(self._listener.connected.wait(), timeout=60)

    async def _on_listener_connect(self) -> None:
        """After a (re)connect or listening again: claim at once, settle waiters and stop running
        jobs that were cancelled meanwhile (their notifications were not heard)."""
        runtime = self._runtime
        running: list[UUID] = []
        if runtime is not None:
            runtime.schedule_changed()
            running = [job.rid for job, _ in runtime.running.values()]
        for rid, status in (await self._store.find_ended([*running, *self._waiters])).items():
            if runtime is not None and status == JobStatus.CANCELLED.value:
                runtime.cancel_running(rid)
            self._settle_waiters(rid)

    def _on_saturation(self) -> None:
        """On becoming or ceasing to be saturated, and every ``LONG_JOB`` seconds meanwhile."""
        self._update_channels()
        if self._runtime is not None and self._runtime.saturated:
            # Not listening, it does not count queued jobs (see _on_notify): a backlog that grows
            # while it works would keep the plan made for a small table (measured: cycles from 1
            # to 11 ms in five seconds at 8,000 jobs/s offered, and the worker fell behind).
            self._refresh_statistics(self._store.jobs.outgrew_analyze)

    def _update_channels(self) -> None:
        """Listen only to what is needed now. A saturated worker claims again whenever a slot
        frees, so the wake-ups (every queued, claimed and finished job of the whole fleet, each
        read off the socket by this process and sent by a backend woken for it) are pure cost:
        measured, two saturated workers drained 20 % more jobs per second without them. ``job``
        stays for insert/update callbacks; ``job_archive`` for waiters, delete callbacks and the
        cancellation of jobs that run long (``LONG_JOB``; shorter ones end before it matters). A
        channel listened to again is followed by a claim and by the checks of a reconnect."""
        if self._listener is None:
            return
        runtime = self._runtime
        saturated = runtime is not None and runtime.saturated
        channels: set[str] = set()
        if not saturated or self._callbacks["insert"] or self._callbacks["update"]:
            channels.add("job")
        if not saturated or self._waiters or self._callbacks["delete"] or (runtime and runtime.long_running):
            channels.add("job_archive")
        self._listener.set_channels(frozenset(channels))

    def _settle_waiters(self, rid: UUID) -> None:
        for fut in self._waiters.get(rid, []):
            if not fut.done():
                fut.set_result(None)

    def _on_notify(self, channel: str, payload: str) -> None:
        """Act on a notification, decoding it only when someone needs its rid or status: at
        thousands of jobs a second most are RUNNING/SUCCEEDED echoes of our own work."""
        callbacks = self._callbacks
        if channel == "job":
            scheduled = '"SCHEDULED"' in payload
            queued = scheduled or '"QUEUED"' in payload
            if self._runtime is not None and queued:
                if scheduled:
                    self._runtime.schedule_changed()
                else:
                    self._runtime.wake.set()
                self._queued_seen += 1
                if self._queued_seen >= ANALYZE_AFTER:
                    self._refresh_statistics()
            if not callbacks["insert" if queued else "update"]:
                return
        elif not (self._waiters or callbacks["delete"] or '"CANCELLED"' in payload):
            return
        event = parse_payload(channel, payload)
        if event is not None:
            self._on_event(event)

    def _on_event(self, event: JobEvent) -> None:
        if event.channel == "job":
            queued = event.status in (JobStatus.QUEUED, JobStatus.SCHEDULED)
            self._fire("insert" if queued else "update", event)
            return
        if event.rid is not None:
            self._settle_waiters(event.rid)
            if event.status is JobStatus.CANCELLED and self._runtime is not None:
                self._runtime.cancel_running(event.rid)
        self._fire("delete", event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fire(self, kind: str, event: JobEvent) -> None:
        loop = asyncio.get_running_loop()
        for callback in self._callbacks[kind]:
            if inspect.iscoroutinefunction(callback):
                self._spawn(callback(event))
            else:
                loop.run_in_executor(None, callback, event)

    def _listen(self, kind: str, callback: EventCallback) -> Callable[[], None]:
        if not callable(callback):
            raise ValidationError("callback must be callable")
        self._callbacks[kind].append(callback)
        self._loop.call(self._ensure_listener())
        self._loop.loop.call_soon_threadsafe(self._update_channels)
        return lambda: self._callbacks[kind].remove(callback)  # channels follow at the next change

    def listen_for_job_insert(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` for every job inserted or put back in the queue (any process).
        Returns a function that unsubscribes. Sync callbacks run in a thread, async ones on the loop."""
        return self._listen("insert", callback)

    def listen_for_job_update(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` for every other change of a job row (e.g. claimed: RUNNING)."""
        return self._listen("update", callback)

    def listen_for_job_delete(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` when a job leaves ``job`` for the archive (finished/cancelled)."""
        return self._listen("delete", callback)

    # -- enqueue --------------------------------------------------------------------------------
    def add_job(self, task: TaskRef, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``task(*args, **kwargs)``; positional arguments are what Go workers receive."""
        return self.add_job_with_options(None, task, *args, **kwargs)

    async def add_job_async(self, task: TaskRef, *args: Any, **kwargs: Any) -> Job:
        return await self.add_job_with_options_async(None, task, *args, **kwargs)

    def add_job_with_options(self, options: Options | None, task: TaskRef, *args: Any, **kwargs: Any) -> Job:
        new = self._new_job(options, task, args, kwargs)
        self._loop.refuse_blocking()
        with self._store.sync_connection() as conn:
            self._check_names_sync(conn.cursor(), [new])
            return self._store.insert_job_blocking(conn, new)

    async def add_job_with_options_async(
        self, options: Options | None, task: TaskRef, *args: Any, **kwargs: Any
    ) -> Job:
        new = self._new_job(options, task, args, kwargs)
        return await self._loop.call_async(self._on_pooled(self._insert_pooled, new))

    def add_jobs(self, batch: Sequence[BatchJob]) -> list[UUID]:
        """Enqueue many jobs with one binary COPY; returns their rids in input order.

        Every item is validated before anything is sent: one bad item raises and nothing is written.
        """
        news = self._new_jobs(batch)
        with self._store.sync_connection() as conn:  # autocommit: the COPY is one statement
            self._copy_sync(conn, news)
        if len(news) >= ANALYZE_AFTER:
            self._loop.loop.call_soon_threadsafe(self._refresh_statistics)
        return [n.rid for n in news]

    async def add_jobs_async(self, batch: Sequence[BatchJob]) -> list[UUID]:
        news = self._new_jobs(batch)
        await self._loop.call_async(self._on_pooled(self._copy_async, news))
        if len(news) >= ANALYZE_AFTER:
            self._loop.loop.call_soon_threadsafe(self._refresh_statistics)
        return [n.rid for n in news]

    def _refresh_statistics(self, precheck: str | None = None) -> None:
        """Refresh ``job``'s statistics in the background (on the loop; the caller does not wait):
        after a big batch of ours, and when a worker has seen ``ANALYZE_AFTER`` jobs queued by
        anyone (a Go service's COPY, a plain INSERT ... SELECT), and with a ``precheck`` by a
        saturated worker, which does not hear them. One refresh at a time; an unconditional
        request that arrives while one runs gets one more afterwards (its rows may have been too
        late)."""
        if self._closed:
            return
        if self._refreshing:
            self._refresh_again = self._refresh_again or precheck is None
            return
        self._refreshing = True
        if precheck is None:
            self._queued_seen = 0  # jobs seen from now on count toward the next refresh

        async def refresh() -> None:
            try:
                await self._store.refresh_statistics(precheck)
            finally:
                self._refreshing = False
                if self._refresh_again:
                    self._refresh_again = False
                    self._refresh_statistics()

        task = asyncio.get_running_loop().create_task(refresh())
        self._maintenance.add(task)
        task.add_done_callback(self._maintenance.discard)

    # Transactional enqueue: the job is written on the caller's connection (or cursor) and commits or
    # rolls back with the caller's own work; workers see it only after the commit. The blocking and
    # async methods above are these same code paths on a pooled connection.
    def add_job_tx(self, conn: SyncConn, task: TaskRef, *args: Any, **kwargs: Any) -> Job:
        """``add_job`` inside the caller's transaction (a psycopg ``Connection`` or ``Cursor``)."""
        return self._insert_sync(conn, self._new_job(None, task, args, kwargs))

    def add_job_with_options_tx(
        self, conn: SyncConn, options: Options | None, task: TaskRef, *args: Any, **kwargs: Any
    ) -> Job:
        return self._insert_sync(conn, self._new_job(options, task, args, kwargs))

    async def add_job_tx_async(self, conn: AsyncConn, task: TaskRef, *args: Any, **kwargs: Any) -> Job:
        """``add_job`` inside the caller's transaction (an ``AsyncConnection`` or ``AsyncCursor``)."""
        return await self._insert_async(conn, self._new_job(None, task, args, kwargs))

    async def add_job_with_options_tx_async(
        self, conn: AsyncConn, options: Options | None, task: TaskRef, *args: Any, **kwargs: Any
    ) -> Job:
        return await self._insert_async(conn, self._new_job(options, task, args, kwargs))

    def add_jobs_tx(self, conn: SyncConn, batch: Sequence[BatchJob]) -> list[UUID]:
        """``add_jobs`` inside the caller's transaction."""
        news = self._new_jobs(batch)
        self._copy_sync(conn, news)
        return [n.rid for n in news]

    async def add_jobs_tx_async(self, conn: AsyncConn, batch: Sequence[BatchJob]) -> list[UUID]:
        news = self._new_jobs(batch)
        await self._copy_async(conn, news)
        return [n.rid for n in news]

    def _insert_sync(self, conn: SyncConn, new: NewJob) -> Job:
        self._loop.refuse_blocking()
        cur = conn if isinstance(conn, psycopg.Cursor) else conn.cursor()
        self._check_names_sync(cur, [new])
        cur.execute(self._store.jobs.insert, new._asdict())
        return self._store.job_from_row(_as_dict(cur, cur.fetchone()))

    async def _insert_async(self, conn: AsyncConn, new: NewJob) -> Job:
        cur = conn if isinstance(conn, psycopg.AsyncCursor) else conn.cursor()
        await self._check_names_async(cur, [new])
        await cur.execute(self._store.jobs.insert, new._asdict())
        return self._store.job_from_row(_as_dict(cur, await cur.fetchone()))

    async def _insert_pooled(self, conn: psycopg.AsyncConnection[Any], new: NewJob) -> Job:
        """``add_job_async`` on a pooled connection: the insert on libpq directly (``_insert_async``
        is the same write on the caller's own connection, through psycopg)."""
        await self._check_names_async(conn.cursor(), [new])
        return await self._store.insert_job(conn, new)

    def _copy_sync(self, conn: SyncConn, news: list[NewJob]) -> None:
        self._loop.refuse_blocking()
        cur = conn if isinstance(conn, psycopg.Cursor) else conn.cursor()
        self._check_names_sync(cur, news)
        copy_jobs(cur, self._store.jobs.copy, news)

    async def _copy_async(self, conn: AsyncConn, news: list[NewJob]) -> None:
        cur = conn if isinstance(conn, psycopg.AsyncCursor) else conn.cursor()
        await self._check_names_async(cur, news)
        await copy_jobs_async(cur, self._store.jobs.copy, news)

    async def _on_pooled(
        self, write: Callable[[psycopg.AsyncConnection[Any], Any], Coroutine[Any, Any, T]], arg: Any
    ) -> T:
        """Run ``write`` on a pooled (autocommit) connection, on the Queuer's loop. No transaction:
        what a write changes is one statement (one INSERT, or one COPY), atomic on its own, and a
        transaction around it cost two more round trips (BEGIN, COMMIT) per call."""
        async with self._store.pool.connection() as conn:
            return await write(conn, arg)

    # A task (or next-interval function) is known when this queuer or any worker row in the
    # database lists it. Names found in the database are remembered: the check costs a query only
    # the first time a name is used.
    def _missing(self, news: Sequence[NewJob]) -> tuple[list[str], list[str]]:
        tasks = {n.task_name for n in news} - self.registry.tasks.keys() - self._known_remote_tasks
        intervals = {n.next_interval for n in news if n.next_interval}
        intervals -= self.registry.next_intervals.keys() | self._known_remote_intervals
        return sorted(tasks), sorted(i for i in intervals if i)

    def _check_names_sync(self, cur: psycopg.Cursor[Any], news: Sequence[NewJob]) -> None:
        tasks, intervals = self._missing(news)
        if tasks or intervals:
            cur.execute(self._store.workers.unknown_names, (tasks, intervals))
            self._note_known(tasks, intervals, cur.fetchall())

    async def _check_names_async(self, cur: psycopg.AsyncCursor[Any], news: Sequence[NewJob]) -> None:
        tasks, intervals = self._missing(news)
        if tasks or intervals:
            await cur.execute(self._store.workers.unknown_names, (tasks, intervals))
            self._note_known(tasks, intervals, await cur.fetchall())

    def _note_known(self, tasks: list[str], intervals: list[str], unknown_rows: list[Any]) -> None:
        unknown = [(r["kind"], r["n"]) if isinstance(r, Mapping) else (r[0], r[1]) for r in unknown_rows]
        if unknown:
            kind, name = unknown[0]
            what = "task" if kind == "task" else "next-interval function"
            how = "add_task" if kind == "task" else "add_next_interval_func"
            raise UnknownTaskError(
                f"no worker has registered a {what} named {name!r}; register it with {how}"
            )
        self._known_remote_tasks.update(tasks)
        self._known_remote_intervals.update(intervals)

    def _new_jobs(self, batch: Sequence[BatchJob]) -> list[NewJob]:
        """Validate and encode a whole batch; per-batch work (rids, parent, names) is done once."""
        if isinstance(batch, str | bytes) or not isinstance(batch, Sequence):
            raise ValidationError("add_jobs takes a list of BatchJob")
        if self._closed:
            raise QueuerStateError("this queuer has been stopped")
        rids = uuid7_batch(len(batch))
        parent = current_job_rid.get()
        # The common item (no options, no keyword parameters, not inside a task, no parameter
        # encryption) is built inline: at 20,000 items the general path cost a fifth of add_jobs.
        plain = parent is None and not self._store.encrypt_parameters
        default_options = self._default_options_json
        queued = JobStatus.QUEUED.value
        names: dict[Any, str] = {}
        news = []
        for index, item in enumerate(batch):
            try:
                if not isinstance(item, BatchJob):
                    raise ValidationError(f"{type(item).__name__} is not a BatchJob")
                params, keyed = item.parameters, item.parameters_keyed
                if type(params) is not list and type(params) is not tuple:
                    if isinstance(params, str | bytes | Mapping) or not isinstance(params, Sequence):
                        raise ValidationError("parameters must be a list or tuple")
                    params = list(params)
                if type(keyed) is not dict:
                    if not isinstance(keyed, Mapping):
                        raise ValidationError("parameters_keyed must be a dict")
                    keyed = dict(keyed)
                try:
                    name = names[item.task]
                except (KeyError, TypeError):
                    name = names[item.task] = self.registry.name_of(item.task)
                if plain and item.options is None and not keyed:
                    params_json = dumps(params, "parameters")
                    news.append(NewJob(rids[index], default_options, name, params_json, "{}", queued, None))
                else:
                    news.append(self._encode(item.options, name, params, keyed, rids[index], parent))
            except ValidationError as exc:
                raise type(exc)(f"batch item {index}: {exc}") from exc
        return news

    def _new_job(
        self, options: Options | None, task: TaskRef, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> NewJob:
        """Validate and encode one job without I/O; every problem raises here, before any write."""
        return self._encode(
            options, self.registry.name_of(task), args, kwargs, uuid7(), current_job_rid.get()
        )

    def _encode(
        self,
        options: Options | None,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        rid: UUID,
        parent: UUID | None,
    ) -> NewJob:
        if self._closed:
            raise QueuerStateError("this queuer has been stopped")
        schedule = None
        if options is None and parent is None:
            options_json = self._default_options_json
        else:
            if options is not None and not isinstance(options, Options):
                raise ValidationError(f"options must be an Options, got {type(options).__name__}")
            opts = (options or Options()).with_defaults(self.default_on_error, parent)
            schedule = opts.schedule
            options_json = dumps(opts.to_json(), "options")
        if kwargs and any(type(k) is not str for k in kwargs):
            raise ValidationError("keyword parameter names must be strings")
        new = NewJob(
            rid=rid,
            options_json=options_json,
            task_name=name,
            parameters_json=dumps(args, "parameters"),
            parameters_keyed_json=dumps(kwargs, "keyword parameters"),
            status=JobStatus.SCHEDULED.value if schedule else JobStatus.QUEUED.value,
            scheduled_at=naive_utc(schedule.start) if schedule else None,
            next_interval=schedule.next_interval if schedule else None,
        )
        return self._store.seal(new)

    # -- reading --------------------------------------------------------------------------------
    def get_job(self, rid: UUID) -> Job:
        """The job with ``rid`` from ``job`` (queued, scheduled or running)."""
        return self._loop.call(self._store.get_job(rid, ended=False))

    async def get_job_async(self, rid: UUID) -> Job:
        return await self._loop.call_async(self._store.get_job(rid, ended=False))

    def get_job_ended(self, rid: UUID) -> Job:
        """The job with ``rid`` from ``job_archive`` (succeeded, failed or cancelled)."""
        return self._loop.call(self._store.get_job(rid, ended=True))

    async def get_job_ended_async(self, rid: UUID) -> Job:
        return await self._loop.call_async(self._store.get_job(rid, ended=True))

    def get_jobs(self, last_id: int = 0, entries: int = 100) -> list[Job]:
        """A page of ``job``, newest first; pass the last id of a page to get the next one."""
        return self._loop.call(self._store.page(self._store.jobs.page_jobs, last_id, entries))

    async def get_jobs_async(self, last_id: int = 0, entries: int = 100) -> list[Job]:
        return await self._loop.call_async(self._store.page(self._store.jobs.page_jobs, last_id, entries))

    def get_jobs_ended(self, last_id: int = 0, entries: int = 100) -> list[Job]:
        """A page of ``job_archive``, newest first."""
        return self._loop.call(self._store.page(self._store.jobs.page_ended, last_id, entries))

    async def get_jobs_ended_async(self, last_id: int = 0, entries: int = 100) -> list[Job]:
        return await self._loop.call_async(self._store.page(self._store.jobs.page_ended, last_id, entries))

    def get_jobs_by_worker_rid(self, worker_rid: UUID, last_id: int = 0, entries: int = 100) -> list[Job]:
        """A page of the jobs in ``job`` claimed by one worker."""
        return self._loop.call(
            self._store.page(self._store.jobs.page_by_worker, last_id, entries, worker_rid=worker_rid)
        )

    async def get_jobs_by_worker_rid_async(
        self, worker_rid: UUID, last_id: int = 0, entries: int = 100
    ) -> list[Job]:
        return await self._loop.call_async(
            self._store.page(self._store.jobs.page_by_worker, last_id, entries, worker_rid=worker_rid)
        )

    def get_worker(self, rid: UUID) -> Worker:
        return self._loop.call(self._store.get_worker(rid))

    async def get_worker_async(self, rid: UUID) -> Worker:
        return await self._loop.call_async(self._store.get_worker(rid))

    def cancel_job(self, rid: UUID) -> Job:
        """Move a queued, scheduled or running job to the archive as CANCELLED (running ones stop)."""
        return self._loop.call(self._store.cancel(rid))

    async def cancel_job_async(self, rid: UUID) -> Job:
        return await self._loop.call_async(self._store.cancel(rid))

    def cancel_all_jobs_by_worker(self, worker_rid: UUID) -> list[Job]:
        """Cancel every job in ``job`` that names this worker (running or handed back); archived
        CANCELLED in one statement. Returns the cancelled jobs."""
        return self._loop.call(self._store.cancel_by_worker(worker_rid))

    async def cancel_all_jobs_by_worker_async(self, worker_rid: UUID) -> list[Job]:
        return await self._loop.call_async(self._store.cancel_by_worker(worker_rid))

    def readd_job_from_archive(self, rid: UUID) -> Job:
        """Enqueue a new job (new rid) with the task, parameters and options of an archived one;
        a schedule makes it SCHEDULED at its original start (so usually due at once)."""
        return self._loop.call(self._store.readd(rid))

    async def readd_job_from_archive_async(self, rid: UUID) -> Job:
        return await self._loop.call_async(self._store.readd(rid))

    # -- waiting --------------------------------------------------------------------------------
    def wait_for_job_finished(self, rid: UUID, timeout_seconds: float = 30.0) -> Job:
        """Block until the job is in the archive and return it; raises ``WaitTimeoutError``.

        Driven by the ``job_archive`` notification of that rid, not by polling."""
        return self._loop.call(self._wait(rid, timeout_seconds))

    async def wait_for_job_finished_async(self, rid: UUID, timeout_seconds: float = 30.0) -> Job:
        return await self._loop.call_async(self._wait(rid, timeout_seconds))

    async def _wait(self, rid: UUID, timeout: float) -> Job:
        await self._ensure_listener()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[rid].append(fut)
        self._update_channels()  # a saturated worker listens to job_archive again
        try:
            if rid not in await self._store.find_ended([rid]):
                try:
                    await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    raise WaitTimeoutError(f"job {rid} did not finish within {timeout}s") from None
            return await self._store.get_job(rid, ended=True)
        finally:
            waiting = self._waiters.get(rid)
            if waiting is not None:
                waiting.remove(fut)
                if not waiting:
                    del self._waiters[rid]


def _as_dict(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any], row: Any) -> dict[str, Any]:
    """A row of the caller's cursor as a dict, whatever row factory the caller uses."""
    if isinstance(row, Mapping):
        return dict(row)
    names = [c.name for c in cur.description or []]
    return dict(zip(names, row, strict=True))


def new_queuer(name: str, max_concurrency: int, *on_error: OnError, **settings: Any) -> Queuer:
    """A Queuer configured from ``QUEUER_DB_*`` / ``QUEUER_DB_URL``, ``QUEUER_ENCRYPTION_KEY`` and
    ``QUEUER_ENCRYPTION_OLD_KEYS`` (comma-separated keys still accepted for reading)."""
    old_keys = [k for k in os.environ.get("QUEUER_ENCRYPTION_OLD_KEYS", "").split(",") if k]
    settings.setdefault("old_encryption_keys", old_keys)
    return Queuer(
        name,
        max_concurrency,
        *on_error,
        db_config=DatabaseConfiguration.from_env(),
        encryption_key=os.environ.get("QUEUER_ENCRYPTION_KEY") or None,
        **settings,
    )


def new_queuer_with_db(
    name: str,
    max_concurrency: int,
    encryption_key: str | None,
    db_config: DatabaseConfiguration,
    *on_error: OnError,
    **settings: Any,
) -> Queuer:
    """A Queuer with an explicit configuration and encryption key (None or "" = no encryption)."""
    return Queuer(
        name, max_concurrency, *on_error, db_config=db_config, encryption_key=encryption_key, **settings
    )
