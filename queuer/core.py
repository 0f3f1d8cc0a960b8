"""``Queuer``: a worker. A ``Client`` that also registers tasks, claims and runs jobs, heartbeats,
and takes part in the master election.

Construction registers a worker row (status READY), as the seed API and the Go library do; a
process that only enqueues uses ``queuer.connect()`` instead and leaves no row behind.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload
from uuid import UUID

import psycopg

from queuer.database import DatabaseConfiguration
from queuer.database.listener import parse_payload
from queuer.database.queue_table import CHANNEL as QUEUE_CHANNEL
from queuer.database.store import Refresh
from queuer.database.workflow_table import PROGRESS_CHANNEL
from queuer.model import (
    JobStatus,
    MasterSettings,
    OnError,
    Options,
    QueuerStateError,
    ValidationError,
    Worker,
    WorkerStatus,
    validate_name,
    validate_queue_names,
)
from queuer.model.jsoncodec import dumps, require_int
from queuer.model.periodic import Periodic

from .client import ANALYZE_AFTER, Client, env_encryption
from .discovery import check_includes, import_all
from .hooks import Callback, Hooks, check_callable
from .master import MasterRole
from .metrics import WorkerMetrics
from .periodic import PeriodicRunner
from .runner import in_task_process
from .runtime import Runtime, RuntimeSettings
from .tasks import Task, derive_name

log = logging.getLogger("queuer")

P = ParamSpec("P")
R = TypeVar("R")
NextIntervalFunc = Callable[[datetime, int], datetime]
MAX_CONCURRENCY = 1000
# The default grace for running jobs when the interpreter exits without stop(): none, they go back
# to the queue at once (the process is ending; waiting would only delay another worker).
EXIT_GRACE = 0.0


def _check_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (1 <= value <= MAX_CONCURRENCY):
        raise ValidationError(f"max_concurrency must be an int from 1 to {MAX_CONCURRENCY}")
    return value


class Queuer(Client):
    """A worker (and producer) bound to one queuer database.

    Construction connects, installs the schema if needed and registers a worker row (status READY).
    ``start()`` begins running registered tasks and, by default, takes part in the master election
    (which rescues the jobs of dead workers); ``stop()`` ends it gracefully. A process that ends
    without ``stop()`` is stopped at exit: its row becomes STOPPED and its running jobs go back.
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
        queues: Sequence[str] | None = None,
        include: Sequence[str] | None = None,
    ) -> None:
        validate_name("worker", name)
        self.queues = validate_queue_names(queues)
        self.includes = check_includes(include)
        _check_concurrency(max_concurrency)
        if len(on_error) > 1 or any(not isinstance(o, OnError) for o in on_error):
            raise ValidationError("pass at most one OnError as the worker's default")
        if poll_interval <= 0 or not 0 < heartbeat_interval <= 30:
            raise ValidationError("poll_interval must be > 0 and heartbeat_interval in (0, 30] seconds")
        if pool_size < 2:  # a running worker keeps one pooled connection for its cycle; heartbeat another
            raise ValidationError("pool_size must be >= 2")
        self.name = name
        self.process_tasks = process_tasks
        self.max_concurrency = max_concurrency
        self.settings = RuntimeSettings(poll_interval=poll_interval, heartbeat_interval=heartbeat_interval)
        # A process=True task's own process imports the task's module, which may build a Queuer:
        # there it is a client and never a worker (no row, nothing started).
        self._task_process = in_task_process()
        self._queued_seen = 0  # QUEUED/SCHEDULED notifications since the last refresh began
        self.hooks = Hooks()
        self.periodics: dict[str, Periodic] = {}
        self._periodic: PeriodicRunner | None = None
        self._metrics: WorkerMetrics | None = None
        self._periodic_task: asyncio.Task[None] | None = None
        self._runtime: Runtime | None = None
        self._master: MasterRole | None = None
        self._master_task: asyncio.Task[None] | None = None
        self.worker = Worker(0, UUID(int=0), name, WorkerStatus.READY, max_concurrency)
        super().__init__(
            db_config,
            encryption_key,
            on_error=on_error[0] if on_error else None,
            pool_size=pool_size,
            encrypt_parameters=encrypt_parameters,
            old_encryption_keys=old_encryption_keys,
            thread_name=f"queuer-{name}",
        )

    async def _open(self) -> None:
        await super()._open()
        if self._task_process:
            return
        options = dumps(self.default_on_error.to_json(), "on_error") if self.default_on_error else None
        self.worker = await self._store.insert_worker(self.name, options, self.max_concurrency, [], [])

    # -- the seed API's views of this worker ----------------------------------------------------
    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of ``stop()``."""
        return self._runtime is not None and not self._closed

    @property
    def tasks(self) -> dict[str, Task[..., Any]]:
        """The registered tasks by name."""
        return self.registry.tasks

    @property
    def next_interval_funcs(self) -> dict[str, NextIntervalFunc]:
        """The registered next-interval functions by name."""
        return self.registry.next_intervals

    # -- tasks ----------------------------------------------------------------------------------
    def add_task(
        self,
        fn: Callable[P, R],
        *,
        process: bool | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
    ) -> Task[P, R]:
        """Register ``fn`` under its ``__name__`` and return the ``Task`` (callable as ``fn``).

        ``process=True`` runs a plain function in a process of its own, so a timeout or a
        cancellation can kill it (the function must be picklable: defined at module level).
        The default comes from the queuer's ``process_tasks`` setting. ``on_success`` and
        ``on_failure`` are called with the ended ``Job`` when a job of this task SUCCEEDED or
        FAILED (after its retries) in this worker."""
        return self._register(fn, None, process, on_success, on_failure)

    def add_task_with_name(
        self,
        fn: Callable[P, R],
        name: str,
        *,
        process: bool | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
    ) -> Task[P, R]:
        """Register ``fn`` under an explicit name (the routing key shared with Go workers)."""
        return self._register(fn, name, process, on_success, on_failure)

    @overload
    def task(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        process: bool | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def task(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        process: bool | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
    ) -> Any:
        """Decorator form of ``add_task``: ``@q.task``, ``@q.task()`` or ``@q.task(name="x")``.

        The decorated function stays the function (as in queuerPy); ``q.tasks[name]`` is its Task."""

        def decorate(f: Any) -> Any:
            self._register(f, name, process, on_success, on_failure)
            return f

        return decorate(fn) if fn is not None else decorate

    def task_with_name(
        self, name: str, *, process: bool | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator form of ``add_task_with_name``."""
        return self.task(name=name, process=process)

    def _register(
        self,
        fn: Callable[P, R],
        name: str | None,
        process: bool | None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
    ) -> Task[P, R]:
        """All or nothing: a task whose row update fails is not registered either."""
        self.hooks.check(on_success, on_failure)
        task = self.registry.add(fn, name, self.process_tasks if process is None else process)
        self.hooks.for_task(task.name, on_success, on_failure)
        try:
            self._sync_capabilities()
        except BaseException:
            del self.registry.tasks[task.name]
            raise
        return task

    def add_next_interval_func(self, fn: NextIntervalFunc) -> Worker:
        """Register ``fn(start, count) -> next time`` under its ``__name__`` for
        ``Schedule(next_interval=...)``; only workers that have it claim such jobs. Returns the
        updated worker."""
        return self.add_next_interval_func_with_name(fn, None)

    def add_next_interval_func_with_name(self, fn: NextIntervalFunc, name: str | None) -> Worker:
        """Register a next-interval function under an explicit name (shared with Go workers)."""
        added = self.registry.add_next_interval(fn, name)
        try:
            self._sync_capabilities()
        except BaseException:
            del self.registry.next_intervals[added]
            raise
        return self.worker

    def _sync_capabilities(self) -> None:
        tasks, intervals = list(self.registry.tasks), list(self.registry.next_intervals)
        if not self._task_process:
            self._loop.call(self._store.set_capabilities(self.worker.id, tasks, intervals))
        self.worker.available_tasks, self.worker.available_next_interval = tasks, intervals
        if self._runtime is not None:
            self._loop.loop.call_soon_threadsafe(self._runtime.wake.set)

    def update_worker(self, name: str | None = None, max_concurrency: int | None = None) -> Worker:
        """Change this worker's name or concurrency before ``start()`` (used by ``queuer worker``)."""
        if self._runtime is not None:
            raise QueuerStateError("change name and concurrency before start()")
        if name is not None:
            self.name = validate_name("worker", name)
        if max_concurrency is not None:
            self.max_concurrency = _check_concurrency(max_concurrency)
        self.worker = self._loop.call(
            self._store.rename_worker(self.worker.id, self.name, self.max_concurrency)
        )
        return self.worker

    # -- lifecycle ------------------------------------------------------------------------------
    # -- periodic tasks ---------------------------------------------------------------------------
    def periodic(
        self,
        cron: str | None = None,
        *,
        every: timedelta | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        options: Options | None = None,
        catch_up: str = "latest",
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Declare a schedule in code: ``@q.periodic(cron="0 3 * * *", timezone="Europe/Berlin")``
        or ``@q.periodic(every=timedelta(minutes=5))``. Every started worker that declares it may
        start its ticks; each tick runs once across the fleet. ``name`` defaults to the task's
        name; ``args``/``kwargs`` are passed each time; ``queue`` or ``options`` set the jobs'
        options; ``catch_up`` is what runs after missed ticks: the most recent once (``"latest"``)
        or each of them (``"all"``)."""
        if queue is not None:
            options = replace(options or Options(), queue=queue)

        def declare(fn: Callable[P, R]) -> Callable[P, R]:
            task_name = self.registry.registered_name(fn)
            schedule_name = name or task_name or derive_name(fn)
            if schedule_name in self.periodics:
                raise ValidationError(f"a periodic task named {schedule_name!r} is declared already")
            declaration = Periodic(
                schedule_name,
                task_name or derive_name(fn),
                cron,
                every,
                timezone,
                tuple(args),
                dict(kwargs or {}),
                options,
                catch_up,
            )
            dumps(list(args), "periodic args")
            dumps(dict(kwargs or {}), "periodic kwargs")
            if task_name is None:
                self._register(fn, None, None)
            local = self.registry.tasks[declaration.task_name]
            local.check_call(list(args), dict(kwargs or {}))
            self.periodics[schedule_name] = declaration
            return fn

        return declare

    # -- lifecycle callbacks --------------------------------------------------------------------
    def on(self, event: str, fn: Callback | None = None) -> Any:
        """Call ``fn(job)`` on ``event`` of every job this worker runs: ``job.started``,
        ``job.succeeded``, ``job.failed``, ``job.retrying``, ``job.cancelled``, ``job.expired``.
        Sync or async; one that raises is logged and never changes the job. Also a decorator:
        ``@q.on("job.failed")``."""
        if fn is None:
            return lambda f: self.hooks.on(event, f)
        return self.hooks.on(event, fn)

    def on_startup(self, fn: Callback) -> Callback:
        """Run ``fn()`` when the worker starts, before it claims anything; if it raises, the start
        fails with that error. Also a decorator."""
        self.hooks.startup.append(check_callable(fn, "on_startup's hook"))
        return fn

    def on_shutdown(self, fn: Callback) -> Callback:
        """Run ``fn()`` when the worker stops, after its jobs ended; every shutdown hook runs even
        when one raises (it is logged). Also a decorator."""
        self.hooks.shutdown.append(check_callable(fn, "on_shutdown's hook"))
        return fn

    def include(self, *modules: str) -> None:
        """Import these modules (every module of a package) at ``start``, before claiming, so
        that the tasks their decorators register exist (``new_queuer(..., include=[...])``)."""
        self.includes += check_includes(list(modules))

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve Prometheus metrics on ``http://host:port/metrics`` (loopback by default): jobs
        this worker started and finished, run times per task, and on each scrape the queue's state
        from the database. Needs ``pip install "queuer[metrics]"``."""
        require_int("port", port, minimum=1)
        if self._metrics is None:
            self._metrics = WorkerMetrics(self)
        self._metrics.serve(port, host)
        if self._runtime is not None:
            self._runtime.metrics = self._metrics

    def set_queues(self, queues: Sequence[str] | str | None) -> None:
        """Consume these queues, in this order of precedence (None: every queue); before ``start``.
        A comma-separated string is read as a list."""
        if self._runtime is not None:
            raise QueuerStateError("set_queues must be called before start()")
        self.queues = validate_queue_names(queues)

    def start(self, master_settings: MasterSettings | None = None, *, master: bool = True) -> None:
        """Start claiming and running jobs; returns once listener, poller and heartbeat run.

        The worker takes part in the master election (one worker at a time marks workers that
        stopped heartbeating and rescues their jobs), with ``master_settings`` or the defaults;
        ``master=False`` opts out. A plain script's SIGTERM then stops the worker as ``stop()``
        would (a handler is installed only where none is)."""
        self._import_includes()
        self._loop.call(self.start_async(master_settings, master=master))
        if not self._task_process:
            _stop_on_sigterm()

    async def start_async(
        self, master_settings: MasterSettings | None = None, *, master: bool = True
    ) -> None:
        """``start`` from an event loop (no signal handler is installed: the application's loop
        owns its signals)."""
        if master_settings is not None and not isinstance(master_settings, MasterSettings):
            raise ValidationError("master_settings must be a MasterSettings")
        if self._task_process:
            log.warning("start() ignored: this is a process=True task's own process, not a worker")
            return
        if not self._loop.in_loop_thread():
            self._import_includes()
        await self._loop.call_async(self._start(master_settings, master))

    def _import_includes(self) -> None:
        """Import the included modules once, in the caller's thread (their decorators register
        tasks, which updates the worker row through this queuer's loop)."""
        pending, self.includes = self.includes, []
        if pending:
            log.info("imported %s", ", ".join(import_all(pending)))

    async def _start(self, master_settings: MasterSettings | None, master: bool) -> None:
        if self._closed:
            raise QueuerStateError("this queuer has been stopped")
        if self._runtime is not None:
            raise QueuerStateError("this queuer is already started")
        await self.hooks.run_startup()
        await self._ensure_listener()
        running = await self._store.set_worker_status(self.worker.id, WorkerStatus.RUNNING)
        if running is None:
            raise QueuerStateError(f"worker row {self.worker.rid} no longer exists")
        self.worker = running
        await self._store.register_heartbeat(self.worker.id, self.settings.stale_after)
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
            self.queues,
            self.hooks,
        )
        self._runtime.metrics = self._metrics
        self._runtime.start()
        self._update_channels()
        if self.periodics:
            self._periodic = PeriodicRunner(self._store, self._builder, self.periodics)
            await self._periodic.declare()
            self._periodic_task = asyncio.get_running_loop().create_task(self._periodic.run())
        if master:
            settings = master_settings or MasterSettings()
            self._master = MasterRole(self._store, self.worker.id, self.worker.rid, settings)
            self._master_task = asyncio.get_running_loop().create_task(self._master.run())

    @property
    def is_master(self) -> bool:
        """True while this worker holds the master role."""
        return self._master is not None and self._master.is_master

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop claiming, let running jobs finish (up to ``grace_seconds``; the rest are put back
        in the queue), write pending completions, mark the worker STOPPED and close connections."""
        self._close(grace_seconds)

    async def stop_async(self, grace_seconds: float = 30.0) -> None:
        await self._close_async(grace_seconds)

    def close(self) -> None:
        """``stop()`` with its default grace."""
        self.stop()

    def _close_at_exit(self) -> None:
        self._close(EXIT_GRACE)

    def discard(self) -> None:
        """Close a worker that was never started and delete its row, as if it had never been made
        (``queuer worker`` does this when the application's import fails half-way)."""
        if self._runtime is not None:
            raise QueuerStateError("discard() is for a worker that was never started; use stop()")
        if not self._task_process and not self._loop.loop.is_closed():
            self._loop.call(self._store.delete_unstarted_worker(self.worker.id))
        self._close(None)

    def wait_until_stopped(self, timeout_seconds: float | None = None) -> bool:
        """Block until this worker has stopped (e.g. by a stop request from another process)."""
        return self._stopped.wait(timeout_seconds)

    async def _shutdown(self, grace: float | None, cancel_running: bool) -> None:
        self._closed = True
        try:
            if self._master is not None and self._master_task is not None:
                self._master_task.cancel()
                await asyncio.gather(self._master_task, return_exceptions=True)
                try:
                    await self._master.release()
                except psycopg.Error as exc:  # the lock then expires by itself
                    log.warning("releasing the master lock failed: %s", exc)
            if self._periodic is not None and self._periodic_task is not None:
                self._periodic.stop()
                done, _ = await asyncio.wait([self._periodic_task], timeout=10)
                if not done:
                    self._periodic_task.cancel()
                    await asyncio.gather(self._periodic_task, return_exceptions=True)
            if self._runtime is not None:
                await self._runtime.drain(grace, cancel_running)
                await self.hooks.settle(grace if grace is not None else 30.0)
                await self.hooks.run_shutdown()
            if not self._task_process:
                stopped = await self._store.set_worker_status(
                    self.worker.id, WorkerStatus.STOPPED, retry=True
                )
                if stopped is not None:
                    self.worker = stopped
        finally:
            await super()._shutdown(grace, cancel_running)

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
        await self._store.set_draining(self.worker.id)
        await self._stop(None)

    def _seen_worker(self, worker: Worker) -> Worker:
        """A stop request aimed at this worker also updates ``self.worker``."""
        if worker.rid == self.worker.rid:
            self.worker = worker
        return worker

    # -- notifications --------------------------------------------------------------------------
    async def _on_listener_connect(self) -> None:
        """After a (re)connect or listening again: claim at once, settle waiters and stop running
        jobs that were cancelled meanwhile (their notifications were not heard)."""
        runtime = self._runtime
        running: list[UUID] = []
        if runtime is not None:
            runtime.schedule_changed()
            running = [job.rid for job, _ in runtime.running.values()]
        ended = await self._store.find_ended([*running, *self._subscribers.waited_for()])
        for rid, status in ended.items():
            if runtime is not None and status == JobStatus.CANCELLED.value:
                runtime.cancel_running(rid)
        self._subscribers.settle(ended)

    def _on_saturation(self) -> None:
        """On becoming or ceasing to be saturated, and every ``LONG_JOB`` seconds meanwhile."""
        self._update_channels()
        if self._runtime is not None and self._runtime.saturation.saturated:
            # Not listening, it does not count queued jobs (see _on_notify): a backlog that grows
            # while it works would keep the plan made for a small table.
            self._refresh_statistics("outgrown")

    def _on_refresh_started(self, when: Refresh) -> None:
        if when == "always":
            self._queued_seen = 0  # jobs seen from now on count toward the next refresh

    def _listening_channels(self) -> set[str]:
        """Listen only to what is needed now (see ``queuer.saturation``). A channel listened to
        again is followed by a claim and by the checks of a reconnect."""
        progress = {PROGRESS_CHANNEL} if self._progress_listeners else set()
        if self._runtime is None:
            return {"job", "job_archive", QUEUE_CHANNEL} | progress
        return (
            {QUEUE_CHANNEL}
            | progress
            | self._runtime.saturation.channels(
                insert_or_update_listeners=self._subscribers.wants_job_channel,
                archive_listeners=self._subscribers.wants_archive_channel or self._runtime.waiting_for_room,
            )
        )

    def _on_notify(self, channel: str, payload: str) -> None:
        """Act on a notification, decoding it only when someone needs its rid or status: at
        thousands of jobs a second most are RUNNING/SUCCEEDED echoes of our own work."""
        if channel == QUEUE_CHANNEL:
            if self._runtime is not None:
                self._runtime.queues_changed()
            return
        if channel == PROGRESS_CHANNEL:
            self._deliver_progress(payload)
            return
        if channel == "job_archive" and self._runtime is not None and self._runtime.waiting_for_room:
            self._runtime.wake.set()  # a job ended: maybe one of a queue at its concurrency
        if channel == "job" and self._runtime is not None:
            scheduled = '"SCHEDULED"' in payload
            if scheduled or '"QUEUED"' in payload:
                if scheduled:
                    self._runtime.schedule_changed()
                else:
                    self._runtime.wake.set()
                self._queued_seen += 1
                if self._queued_seen >= ANALYZE_AFTER:
                    self._refresh_statistics()
        cancelled = channel == "job_archive" and self._runtime is not None and '"CANCELLED"' in payload
        if not (cancelled or self._subscribers.needs(channel, payload)):
            return
        event = parse_payload(channel, payload)
        if event is None:
            return
        self._subscribers.deliver(event)
        if cancelled and event.rid is not None and event.status is JobStatus.CANCELLED and self._runtime:
            self._runtime.cancel_running(event.rid)


_sigterm_lock = threading.Lock()


def _stop_on_sigterm() -> None:
    """Where SIGTERM would kill the process outright (no handler of the application's), make it
    raise ``SystemExit`` in the main thread instead, so the exit handler stops every worker: its
    row becomes STOPPED and its running jobs go back to the queue."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _sigterm_lock:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def new_queuer(name: str, max_concurrency: int, *on_error: OnError, **settings: Any) -> Queuer:
    """A Queuer configured from ``QUEUER_DB_*`` / ``QUEUER_DB_URL``, ``QUEUER_ENCRYPTION_KEY`` and
    ``QUEUER_ENCRYPTION_OLD_KEYS`` (comma-separated keys still accepted for reading)."""
    options = {**env_encryption(), **settings}
    return Queuer(name, max_concurrency, *on_error, db_config=DatabaseConfiguration.from_env(), **options)


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
        name,
        max_concurrency,
        *on_error,
        db_config=db_config,
        encryption_key=encryption_key or None,
        **settings,
    )
