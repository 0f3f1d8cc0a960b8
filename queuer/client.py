"""The producer side of queuer: ``Client`` enqueues, reads, waits, cancels and listens, and never
writes a worker row. ``Queuer`` (a worker) is a ``Client`` that also runs tasks.

Every I/O method is written once, as ``name_async``, and runs on the client's own event loop (a
background thread); ``name`` is its blocking twin made by ``twins.blocking``. The blocking enqueue
methods are the exception: they write from the caller's thread on a connection of their own, so
that a web request's ``add_job`` costs one round trip and no hop between threads.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar
from uuid import UUID

import psycopg

from queuer.database import DatabaseConfiguration, NewJob, install_schema
from queuer.database.connect_errors import connection_lost
from queuer.database.encryption import PgpCodec
from queuer.database.listener import Listener, parse_payload
from queuer.database.schema import schema_installed
from queuer.database.store import Refresh, Store
from queuer.database.workflow_table import PROGRESS_CHANNEL
from queuer.model import (
    BatchJob,
    BatchResult,
    Job,
    JobEvent,
    JobStatus,
    Master,
    OnError,
    Options,
    ProgressEvent,
    QueuerStateError,
    SchemaMissingError,
    ValidationError,
    WaitTimeoutError,
    Worker,
    WorkerStatus,
)
from queuer.model.jsoncodec import as_rid, require_int

from .batcher import InsertBatcher
from .enqueue import JobBuilder
from .loop import LoopThread
from .periodic import PeriodicOperations
from .queues import QueueOperations
from .subscribers import EventCallback, Kind, Subscribers
from .tasks import TaskRef, TaskRegistry
from .twins import blocking
from .workflows import WorkflowOperations

log = logging.getLogger("queuer")

T = TypeVar("T")
JobCallback = Callable[[Job], Any]
# The caller's own connection for transactional enqueue: psycopg's, or a SQLAlchemy 2 Session,
# Connection (sync) or AsyncSession, AsyncConnection (async) on the psycopg driver (typed Any: an
# optional dependency).
SyncConn = psycopg.Connection[Any] | psycopg.Cursor[Any] | Any
AsyncConn = psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any] | Any
ANALYZE_AFTER = 1000  # new jobs (one batch of ours, or seen queued by a worker) before an ANALYZE
ENCRYPTION_KEY_ENV = "QUEUER_ENCRYPTION_KEY"
OLD_KEYS_ENV = "QUEUER_ENCRYPTION_OLD_KEYS"

# Clients and workers still open, closed at interpreter exit (end of a script, an uncaught
# exception, Ctrl-C, SIGTERM with the handler a worker installs) so nothing is left behind.
_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for client in list(_open_clients):
        try:
            client._close_at_exit()
        except Exception:  # one failure must not keep the others open
            log.exception("closing %r at interpreter exit failed", client)


def open_clients() -> list[Client]:
    """Every client and worker of this process that is not closed yet."""
    return list(_open_clients)


class Client(QueueOperations, WorkflowOperations, PeriodicOperations):
    """A connection to one queuer database for producers: enqueue, read, wait, cancel, listen.

    It never registers a worker, so web apps, scripts and admin tools can use it freely. Build it
    with ``queuer.connect()`` (configuration from the environment) or ``connect_with_db``.
    """

    def __init__(
        self,
        db_config: DatabaseConfiguration,
        encryption_key: str | None = None,
        *,
        on_error: OnError | None = None,
        pool_size: int = 5,
        encrypt_parameters: bool = False,
        old_encryption_keys: Sequence[str] = (),
        thread_name: str = "queuer-client",
        install: bool = True,
    ) -> None:
        if not isinstance(db_config, DatabaseConfiguration):
            raise ValidationError("db_config must be a DatabaseConfiguration")
        if on_error is not None and not isinstance(on_error, OnError):
            raise ValidationError("on_error must be an OnError")
        require_int("pool_size", pool_size, minimum=2)
        if encrypt_parameters and not encryption_key:
            raise ValidationError("encrypt_parameters needs an encryption key")
        self.default_on_error = on_error
        self.registry = TaskRegistry()
        codec = PgpCodec(encryption_key, old_encryption_keys) if encryption_key else None
        self._store = Store(db_config, pool_size, codec, encrypt_parameters)
        self._builder = JobBuilder(self.registry, self._store, on_error)
        self._subscribers = Subscribers(self._spawn)
        self._progress_listeners: list[Callable[[ProgressEvent], Any]] = []
        self._batcher = InsertBatcher(self._insert_batch, self._store_insert_again)
        self._sync_lock = threading.Lock()
        self._sync_inserts = 0  # blocking add_job calls in flight
        self._listener: Listener | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._background: set[asyncio.Task[Any]] = set()  # strong references until done
        self._maintenance: set[asyncio.Task[None]] = set()  # waited for before the pool closes
        self._refreshing = False  # a statistics refresh is running
        self._refresh_again = False  # and another was asked for meanwhile
        self._closed = False
        self._install = install
        self._loop = LoopThread(thread_name)
        try:
            self._loop.call(self._open())
        except BaseException:
            self._loop.close()
            raise
        _open_clients.add(self)

    async def _open(self) -> None:
        """Install the schema where it is missing (``install=False``: refuse to start without it,
        as the operator's command line does), then open the pool."""
        if self._install:
            await install_schema(self._store.config)
        elif not await schema_installed(self._store.config):
            config = self._store.config
            raise SchemaMissingError(
                f"no queuer schema in {config.database!r} schema {config.schema!r} (run: queuer init)"
            )
        await self._store.open()

    @property
    def config(self) -> DatabaseConfiguration:
        return self._store.config

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()

    # -- closing --------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections (waits and listeners end). Later calls do nothing."""
        self._close(None)

    async def close_async(self) -> None:
        await self._close_async(None)

    def _close(self, grace: float | None, cancel_running: bool = False) -> None:
        with self._stop_lock:  # one caller closes; others wait for it and return
            if self._loop.loop.is_closed():
                return
            try:
                self._loop.call(self._stop(grace, cancel_running))
            finally:
                self._loop.close()
                self._store.close_sync()
                _open_clients.discard(self)

    async def _close_async(self, grace: float | None) -> None:
        if self._loop.loop.is_closed():
            return
        await self._loop.call_async(self._stop(grace))
        self._loop.close()
        await asyncio.get_running_loop().run_in_executor(None, self._store.close_sync)
        _open_clients.discard(self)

    def _close_at_exit(self) -> None:
        """The interpreter is exiting without ``close()``: close now (no executor is left to use)."""
        self.close()

    async def _stop(self, grace: float | None, cancel_running: bool = False) -> None:
        """Shut down once; later calls wait for the same shutdown."""
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(grace, cancel_running))
        await asyncio.shield(self._stop_task)

    async def _shutdown(self, grace: float | None, cancel_running: bool) -> None:
        """What every client does when it closes; a worker does its part first (see Queuer)."""
        self._closed = True
        if self._listener_task is not None:
            self._listener_task.cancel()
            await asyncio.gather(self._listener_task, return_exceptions=True)
        self._subscribers.cancel_waiters()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, *self._maintenance, return_exceptions=True)
        await self._store.close()
        self._stopped.set()

    # -- notifications --------------------------------------------------------------------------
    async def _ensure_listener(self) -> None:
        if self._listener is None:
            self._listener = Listener(self._store.config, self._on_notify, self._on_listener_connect)
            self._listener.set_channels(frozenset(self._listening_channels()))
            self._listener_task = asyncio.get_running_loop().create_task(self._listener.run())
        await asyncio.wait_for(self._listener.connected.wait(), timeout=60)

    async def _on_listener_connect(self) -> None:
        """After a (re)connect: settle waiters whose jobs ended meanwhile (notifications sent while
        disconnected are gone)."""
        self._subscribers.settle(await self._store.find_ended(self._subscribers.waited_for()))

    def _listening_channels(self) -> set[str]:
        """The channels this client needs now (a worker may need fewer, see Queuer)."""
        channels = {"job", "job_archive"} if self._subscribers.wants_job_channel else {"job_archive"}
        return channels | ({PROGRESS_CHANNEL} if self._progress_listeners else set())

    def _update_channels(self) -> None:
        if self._listener is not None:
            self._listener.set_channels(frozenset(self._listening_channels()))

    def _on_notify(self, channel: str, payload: str) -> None:
        """Decode a notification only when someone needs its rid or status."""
        if channel == PROGRESS_CHANNEL:
            self._deliver_progress(payload)
            return
        if self._subscribers.needs(channel, payload) and (event := parse_payload(channel, payload)):
            self._subscribers.deliver(event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _listen(
        self, kind: Kind, callback: EventCallback | None, notify_function: JobCallback | None
    ) -> Callable[[], None]:
        if (callback is None) == (notify_function is None):
            raise ValidationError("pass one callback (or notify_function=, which receives the Job)")
        chosen: EventCallback = callback if callback is not None else self._job_callback(notify_function)
        if not callable(chosen):
            raise ValidationError("callback must be callable")
        unsubscribe = self._subscribers.subscribe(kind, chosen)
        self._loop.call(self._ensure_listener())
        self._loop.loop.call_soon_threadsafe(self._update_channels)
        return unsubscribe  # channels follow at the next change

    def _job_callback(self, notify_function: Any) -> EventCallback:
        """queuerPy's listener form: the callback receives the Job the event is about."""
        if not callable(notify_function):
            raise ValidationError("notify_function must be callable")

        async def deliver(event: JobEvent) -> None:
            if event.rid is None:
                return
            try:
                job = await self._store.find_job(event.rid)
            except Exception:  # gone already (cancelled and purged), or unreadable: nothing to say
                log.debug("no job %s to deliver to a listener", event.rid, exc_info=True)
                return
            if inspect.iscoroutinefunction(notify_function):
                await notify_function(job)
            else:
                await asyncio.get_running_loop().run_in_executor(None, notify_function, job)

        return deliver

    def listen_for_progress(self, callback: Callable[[ProgressEvent], Any]) -> Callable[[], None]:
        """Call ``callback(ProgressEvent)`` whenever a running task reports progress (any worker
        process). Returns a function that unsubscribes. Sync callbacks run in a thread."""
        if not callable(callback):
            raise ValidationError("callback must be callable")
        self._progress_listeners.append(callback)
        self._loop.call(self._ensure_listener())
        self._loop.loop.call_soon_threadsafe(self._update_channels)

        def unsubscribe() -> None:
            if callback in self._progress_listeners:
                self._progress_listeners.remove(callback)

        return unsubscribe

    def _deliver_progress(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            event = ProgressEvent(UUID(data["rid"]), float(data["fraction"]), str(data["message"]))
        except (ValueError, KeyError, TypeError):
            return
        for callback in list(self._progress_listeners):
            self._spawn(_call_listener(callback, event))

    def listen_for_job_insert(
        self, callback: EventCallback | None = None, *, notify_function: JobCallback | None = None
    ) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` for every job inserted or put back in the queue (any process);
        with ``notify_function=`` the function receives the ``Job`` instead. Returns a function that
        unsubscribes. Sync callbacks run in a thread, async ones on the loop."""
        return self._listen("insert", callback, notify_function)

    def listen_for_job_update(
        self, callback: EventCallback | None = None, *, notify_function: JobCallback | None = None
    ) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` for every other change of a job row (e.g. claimed: RUNNING)."""
        return self._listen("update", callback, notify_function)

    def listen_for_job_delete(
        self, callback: EventCallback | None = None, *, notify_function: JobCallback | None = None
    ) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` when a job leaves ``job`` for the archive (finished/cancelled)."""
        return self._listen("delete", callback, notify_function)

    # -- enqueue --------------------------------------------------------------------------------
    def add_job(self, task: TaskRef, /, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``task(*args, **kwargs)``; positional arguments are what Go workers receive."""
        return self.add_job_with_options(None, task, *args, **kwargs)

    async def add_job_async(self, task: TaskRef, /, *args: Any, **kwargs: Any) -> Job:
        return await self.add_job_with_options_async(None, task, *args, **kwargs)

    def add_job_with_options(
        self, options: Options | None, task: TaskRef, /, *args: Any, **kwargs: Any
    ) -> Job:
        new = self._new_job(options, task, args, kwargs)
        self._loop.refuse_blocking()
        with self._sync_lock:
            shared = self._sync_inserts > 0 and not (new.unique_key or new.depends_on)
            self._sync_inserts += 1
        try:
            if shared:  # another thread's insert is in flight: share a commit with the others
                return self._loop.call(self._enqueue(new))
            return self._insert_now(new)
        finally:
            with self._sync_lock:
                self._sync_inserts -= 1

    def _insert_now(self, new: NewJob) -> Job:
        """The blocking insert on the caller's thread (no hop to the loop): for a lone caller."""
        try:
            with self._store.sync_connection() as conn:
                self._check_names_sync(conn.cursor(), [new])
                return self._store.insert_job_blocking(conn, new)
        except psycopg.DatabaseError as exc:
            if not connection_lost(exc):
                raise
            log.warning("add_job: connection lost (%s); sending job %s again", _first_line(exc), new.rid)
            return self._store.insert_job_again_blocking(new)

    async def add_job_with_options_async(
        self, options: Options | None, task: TaskRef, /, *args: Any, **kwargs: Any
    ) -> Job:
        new = self._new_job(options, task, args, kwargs)
        return await self._loop.call_async(self._enqueue(new))

    async def _enqueue(self, new: NewJob) -> Job:
        """One insert on a pooled connection, shared with the inserts of concurrent calls (see
        ``queuer.batcher``); when the connection breaks around it, once more on a fresh one, which
        finds the first attempt if it committed (the rid is ours)."""
        if not (new.unique_key or new.depends_on):
            return await self._batcher.submit(new)
        try:
            return await self._on_pooled(self._insert_pooled, new)
        except psycopg.DatabaseError as exc:
            if not connection_lost(exc):
                raise
            log.warning("add_job: connection lost (%s); sending job %s again", _first_line(exc), new.rid)
            return await self._store.insert_job_again(new)

    def add_jobs(self, batch: Sequence[BatchJob]) -> BatchResult:
        """Enqueue many jobs with one binary COPY; returns their rids in input order.

        Every item is validated before anything is sent: one bad item raises and nothing is written.
        Items with a unique key that a live job holds are not written: the result lists that job's
        rid in their place and their indexes in ``duplicates``.
        """
        news = self._new_jobs(batch)
        with self._store.sync_connection() as conn:  # autocommit: the COPY is one statement
            result = self._copy_sync(conn, news)
        self._after_batch(len(news))
        return result

    async def add_jobs_async(self, batch: Sequence[BatchJob]) -> BatchResult:
        news = self._new_jobs(batch)
        result = await self._loop.call_async(self._on_pooled(self._copy_async, news))
        self._after_batch(len(news))
        return result

    def _after_batch(self, count: int) -> None:
        if count >= ANALYZE_AFTER and not self._loop.loop.is_closed():
            self._loop.loop.call_soon_threadsafe(self._refresh_statistics)

    def _refresh_statistics(self, when: Refresh = "always") -> None:
        """Refresh ``job``'s statistics in the background (on the loop; the caller does not wait):
        after a big batch of ours, or when a worker asks (see Queuer). One refresh at a time; an
        unconditional request that arrives while one runs gets one more afterwards (its rows may
        have been too late)."""
        if self._closed:
            return
        if self._refreshing:
            self._refresh_again = self._refresh_again or when == "always"
            return
        self._refreshing = True
        self._on_refresh_started(when)

        async def refresh() -> None:
            try:
                await self._store.refresh_statistics(when)
            finally:
                self._refreshing = False
                if self._refresh_again:
                    self._refresh_again = False
                    self._refresh_statistics()

        task = asyncio.get_running_loop().create_task(refresh())
        self._maintenance.add(task)
        task.add_done_callback(self._maintenance.discard)

    def _on_refresh_started(self, when: Refresh) -> None:
        """Hook for a worker, which counts the queued jobs it sees between refreshes."""

    # Transactional enqueue: the job is written on the caller's connection (or cursor) and commits or
    # rolls back with the caller's own work; workers see it only after the commit. The blocking and
    # async methods above are these same code paths on a pooled connection.
    def add_job_tx(self, conn: SyncConn, task: TaskRef, /, *args: Any, **kwargs: Any) -> Job:
        """``add_job`` inside the caller's transaction (a psycopg ``Connection`` or ``Cursor``)."""
        return self._insert_sync(conn, self._new_job(None, task, args, kwargs))

    def add_job_with_options_tx(
        self, conn: SyncConn, options: Options | None, task: TaskRef, /, *args: Any, **kwargs: Any
    ) -> Job:
        return self._insert_sync(conn, self._new_job(options, task, args, kwargs))

    async def add_job_tx_async(self, conn: AsyncConn, task: TaskRef, /, *args: Any, **kwargs: Any) -> Job:
        """``add_job`` inside the caller's transaction (an ``AsyncConnection`` or ``AsyncCursor``)."""
        return await self._insert_async(conn, self._new_job(None, task, args, kwargs))

    async def add_job_with_options_tx_async(
        self, conn: AsyncConn, options: Options | None, task: TaskRef, /, *args: Any, **kwargs: Any
    ) -> Job:
        return await self._insert_async(conn, self._new_job(options, task, args, kwargs))

    def add_jobs_tx(self, conn: SyncConn, batch: Sequence[BatchJob]) -> BatchResult:
        """``add_jobs`` inside the caller's transaction."""
        return self._copy_sync(conn, self._new_jobs(batch))

    async def add_jobs_tx_async(self, conn: AsyncConn, batch: Sequence[BatchJob]) -> BatchResult:
        return await self._copy_async(conn, self._new_jobs(batch))

    def _insert_sync(self, conn: SyncConn, new: NewJob) -> Job:
        self._loop.refuse_blocking()
        cur = _cursor(conn)
        self._check_names_sync(cur, [new])
        return self._store.insert_job_on(cur, new)

    async def _insert_async(self, conn: AsyncConn, new: NewJob) -> Job:
        cur = await _cursor_async(conn)
        await self._check_names_async(cur, [new])
        return await self._store.insert_job_on_async(cur, new)

    async def _insert_batch(self, news: list[NewJob]) -> list[Job]:
        async with self._store.connection() as conn:
            await self._check_names_async(conn.cursor(), news)
            return await self._store.insert_jobs(conn, news)

    async def _store_insert_again(self, new: NewJob) -> Job:
        return await self._store.insert_job_again(new)

    async def _insert_pooled(self, conn: psycopg.AsyncConnection[Any], new: NewJob) -> Job:
        """``add_job_async`` on a pooled connection: the insert on libpq directly (``_insert_async``
        is the same write on the caller's own connection, through psycopg)."""
        await self._check_names_async(conn.cursor(), [new])
        return await self._store.insert_job(conn, new)

    def _copy_sync(self, conn: SyncConn, news: list[NewJob]) -> BatchResult:
        self._loop.refuse_blocking()
        cur = _cursor(conn)
        self._check_names_sync(cur, news)
        return self._store.copy_jobs_on(cur, news)

    async def _copy_async(self, conn: AsyncConn, news: list[NewJob]) -> BatchResult:
        cur = await _cursor_async(conn)
        await self._check_names_async(cur, news)
        return await self._store.copy_jobs_on_async(cur, news)

    async def _on_pooled(
        self, write: Callable[[psycopg.AsyncConnection[Any], Any], Coroutine[Any, Any, T]], arg: Any
    ) -> T:
        """Run ``write`` on a pooled (autocommit) connection, on the client's loop. No transaction:
        what a write changes is one statement (one INSERT, or one COPY), atomic on its own."""
        async with self._store.connection() as conn:
            return await write(conn, arg)

    def _check_names_sync(self, cur: psycopg.Cursor[Any], news: Sequence[NewJob]) -> None:
        self._builder.check_names(cur, news)

    async def _check_names_async(self, cur: psycopg.AsyncCursor[Any], news: Sequence[NewJob]) -> None:
        await self._builder.check_names_async(cur, news)

    def _new_jobs(self, batch: Sequence[BatchJob]) -> list[NewJob]:
        self._refuse_when_closed()
        return self._builder.batch(batch)

    def _new_job(
        self, options: Options | None, task: TaskRef, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> NewJob:
        self._refuse_when_closed()
        return self._builder.one(options, task, args, kwargs)

    def _refuse_when_closed(self) -> None:
        if self._closed:
            raise QueuerStateError("this queuer has been stopped")

    # -- reading --------------------------------------------------------------------------------
    async def get_job_async(self, rid: UUID | str) -> Job:
        """The job with ``rid`` from ``job`` (queued, scheduled or running)."""
        return await self._loop.call_async(self._with_progress(self._store.get_job(as_rid(rid), ended=False)))

    async def _with_progress(self, read: Coroutine[Any, Any, Job]) -> Job:
        return await self._store.workflows.progress_of(await read)

    async def get_job_ended_async(self, rid: UUID | str) -> Job:
        """The job with ``rid`` from ``job_archive`` (succeeded, failed or cancelled)."""
        return await self._loop.call_async(self._store.get_job(as_rid(rid), ended=True))

    async def find_job_async(self, rid: UUID | str) -> Job:
        """The job with ``rid`` wherever it is: in ``job`` while it waits or runs, in
        ``job_archive`` once it ended. Raises ``JobNotFoundError`` when it is in neither."""
        return await self._loop.call_async(self._with_progress(self._store.find_job(as_rid(rid))))

    async def get_jobs_async(
        self,
        last_id: int = 0,
        entries: int = 100,
        *,
        status: JobStatus | str | None = None,
        task: TaskRef | None = None,
        search: str | None = None,
    ) -> list[Job]:
        """A page of ``job``, newest first, optionally only one ``status`` or ``task`` (or rows
        whose rid, task or status contain ``search``); pass the last id of a page for the next."""
        return await self._page(False, last_id, entries, status, task, search)

    async def get_jobs_ended_async(
        self,
        last_id: int = 0,
        entries: int = 100,
        *,
        status: JobStatus | str | None = None,
        task: TaskRef | None = None,
        search: str | None = None,
    ) -> list[Job]:
        """A page of ``job_archive``, newest first, with the same filters as ``get_jobs``."""
        return await self._page(True, last_id, entries, status, task, search)

    async def _page(
        self,
        ended: bool,
        last_id: int,
        entries: int,
        status: JobStatus | str | None,
        task: TaskRef | None,
        search: str | None,
    ) -> list[Job]:
        _check_page(last_id, entries, search)
        status_text = _status_value(JobStatus, status)
        task_name = None if task is None else self.registry.name_of(task)
        return await self._loop.call_async(
            self._store.list_jobs(ended, status_text, task_name, search, last_id, entries)
        )

    async def get_jobs_by_worker_rid_async(
        self, worker_rid: UUID | str, last_id: int = 0, entries: int = 100
    ) -> list[Job]:
        """A page of the jobs in ``job`` claimed by one worker."""
        rid = as_rid(worker_rid, "worker_rid")
        _check_page(last_id, entries, None)
        return await self._loop.call_async(self._store.jobs_of_worker(rid, last_id, entries))

    async def get_worker_async(self, rid: UUID | str) -> Worker:
        return await self._loop.call_async(self._store.get_worker(as_rid(rid, "worker rid")))

    async def get_workers_async(
        self,
        last_id: int = 0,
        entries: int = 100,
        *,
        status: WorkerStatus | str | None = None,
        search: str | None = None,
    ) -> list[Worker]:
        """A page of worker rows (Python and Go), newest first, optionally of one status or with
        ``search`` in the name, tasks or status."""
        _check_page(last_id, entries, search)
        status_text = _status_value(WorkerStatus, status)
        return await self._loop.call_async(self._store.list_workers(status_text, search, last_id, entries))

    async def get_connections_async(self) -> list[dict[str, Any]]:
        """The database sessions of every queuer process (Python or Go): pid, state, query."""
        return await self._loop.call_async(self._store.connections())

    async def get_stats_async(self) -> dict[str, Any]:
        """Job counts by table, status and task; jobs finished in the last minute; the age of the
        oldest queued job; the master."""
        return await self._loop.call_async(self._stats())

    async def _stats(self) -> dict[str, Any]:
        counts, recent = await self._store.counts()
        master = await self._store.get_master()
        return {
            "counts": [
                {"table": r["tbl"], "status": r["status"], "task": r["task_name"], "count": r["n"]}
                for r in counts
            ],
            "finished_last_minute": recent["finished_last_minute"],
            "throughput_per_second": round(recent["finished_last_minute"] / 60, 2),
            "oldest_queued_seconds": recent["oldest_queued_seconds"],
            "master_worker_rid": str(master.worker_rid) if master.worker_rid else None,
        }

    async def get_master_async(self) -> Master:
        """The master row: who holds the role, its settings, when it was last renewed."""
        return await self._loop.call_async(self._store.get_master())

    # -- steering -------------------------------------------------------------------------------
    async def cancel_job_async(self, rid: UUID | str) -> Job:
        """Move a queued, scheduled or running job to the archive as CANCELLED (running ones stop)."""
        return await self._loop.call_async(self._store.cancel(as_rid(rid)))

    async def cancel_all_jobs_by_worker_async(self, worker_rid: UUID | str) -> list[Job]:
        """Cancel every job in ``job`` that names this worker (running or handed back); archived
        CANCELLED in one statement. Returns the cancelled jobs."""
        rid = as_rid(worker_rid, "worker_rid")
        return await self._loop.call_async(self._store.cancel_by_worker(rid))

    async def readd_job_from_archive_async(self, rid: UUID | str) -> Job:
        """Enqueue a new job (new rid) with the task, parameters and options of an archived one;
        a schedule makes it SCHEDULED at its original start (so usually due at once)."""
        return await self._loop.call_async(self._store.readd(as_rid(rid)))

    async def cancel_jobs_async(self, rids: Sequence[UUID | str]) -> int:
        """Cancel many jobs in one statement (those still queued, scheduled or running); how many
        were. Nothing is decoded, so it works without the encryption key."""
        checked = _rids(rids)
        return await self._loop.call_async(self._store.cancel_many(checked)) if checked else 0

    async def readd_jobs_from_archive_async(self, rids: Sequence[UUID | str]) -> int:
        """Enqueue a new job from each of many archived jobs in one statement; how many were
        (a job whose unique key a live job holds is left out)."""
        checked = _rids(rids)
        return await self._loop.call_async(self._store.readd_many(checked)) if checked else 0

    async def stop_worker_async(self, worker_rid: UUID | str) -> Worker:
        """Ask any worker (Python or Go) to stop now: its row becomes STOPPED, it cancels its
        running jobs and exits at its next heartbeat."""
        rid = as_rid(worker_rid, "worker_rid")
        return self._seen_worker(
            await self._loop.call_async(self._store.request_stop(rid, WorkerStatus.STOPPED))
        )

    async def stop_worker_gracefully_async(self, worker_rid: UUID | str) -> Worker:
        """Ask any worker to drain: its row becomes STOPPING; it finishes what runs, takes nothing
        new, then marks itself STOPPED."""
        rid = as_rid(worker_rid, "worker_rid")
        return self._seen_worker(
            await self._loop.call_async(self._store.request_stop(rid, WorkerStatus.STOPPING))
        )

    def _seen_worker(self, worker: Worker) -> Worker:
        """Hook for a worker, which keeps its own row current."""
        return worker

    # -- waiting --------------------------------------------------------------------------------
    async def wait_for_job_finished_async(self, rid: UUID | str, timeout_seconds: float = 30.0) -> Job:
        """Wait until the job is in the archive and return it; raises ``WaitTimeoutError``.

        Driven by the ``job_archive`` notification of that rid, not by polling."""
        return await self._loop.call_async(self._wait(as_rid(rid), timeout_seconds))

    async def _wait(self, rid: UUID, timeout: float) -> Job:
        late = await self._until_ended([rid], timeout)
        if late:
            raise WaitTimeoutError(f"job {rid} did not finish within {timeout}s")
        return await self._store.get_job(rid, ended=True)

    async def _until_ended(self, rids: list[UUID], timeout: float) -> int:
        """Wait until every job of ``rids`` is in the archive (their notifications, not a poll);
        how many were not by ``timeout``."""
        await self._ensure_listener()
        futures = {rid: self._subscribers.wait_for(rid) for rid in rids}
        self._update_channels()  # a saturated worker listens to job_archive again
        try:
            ended = await self._store.find_ended(rids)
            pending = [f for rid, f in futures.items() if rid not in ended]
            if not pending:
                return 0
            done, late = await asyncio.wait(pending, timeout=timeout)
            for future in done:
                future.result()  # a waiter ended by the client's close raises here
            return len(late)
        finally:
            for rid, future in futures.items():
                self._subscribers.forget(rid, future)

    get_job = blocking(get_job_async)
    get_job_ended = blocking(get_job_ended_async)
    find_job = blocking(find_job_async)
    get_jobs = blocking(get_jobs_async)
    get_jobs_ended = blocking(get_jobs_ended_async)
    get_jobs_by_worker_rid = blocking(get_jobs_by_worker_rid_async)
    get_worker = blocking(get_worker_async)
    get_master = blocking(get_master_async)
    get_workers = blocking(get_workers_async)
    get_connections = blocking(get_connections_async)
    get_stats = blocking(get_stats_async)
    cancel_job = blocking(cancel_job_async)
    cancel_all_jobs_by_worker = blocking(cancel_all_jobs_by_worker_async)
    readd_job_from_archive = blocking(readd_job_from_archive_async)
    cancel_jobs = blocking(cancel_jobs_async)
    readd_jobs_from_archive = blocking(readd_jobs_from_archive_async)
    stop_worker = blocking(stop_worker_async)
    stop_worker_gracefully = blocking(stop_worker_gracefully_async)
    wait_for_job_finished = blocking(wait_for_job_finished_async)


def _cursor(conn: SyncConn) -> psycopg.Cursor[Any]:
    """A cursor on the caller's connection (see ``SyncConn``)."""
    if isinstance(conn, psycopg.Cursor):
        return conn
    if isinstance(conn, psycopg.Connection):
        return conn.cursor()
    from .contrib.sqlalchemy import is_sqlalchemy, psycopg_connection

    if is_sqlalchemy(conn):
        return psycopg_connection(conn).cursor()
    raise ValidationError(f"expected a psycopg or SQLAlchemy connection, got {type(conn).__name__}")


async def _cursor_async(conn: AsyncConn) -> psycopg.AsyncCursor[Any]:
    """An async cursor on the caller's connection (see ``AsyncConn``)."""
    if isinstance(conn, psycopg.AsyncCursor):
        return conn
    if isinstance(conn, psycopg.AsyncConnection):
        return conn.cursor()
    from .contrib.sqlalchemy import is_sqlalchemy, psycopg_connection_async

    if is_sqlalchemy(conn):
        return (await psycopg_connection_async(conn)).cursor()
    raise ValidationError(f"expected a psycopg or SQLAlchemy async connection, got {type(conn).__name__}")


async def _call_listener(callback: Callable[[Any], Any], event: Any) -> None:
    """A listener's callback: async on the loop, sync in a thread; one that raises is logged."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(event)
        else:
            await asyncio.get_running_loop().run_in_executor(None, callback, event)
    except Exception:
        log.exception("a listener's callback raised")


MANY_RIDS = 10_000  # rids per bulk call: one statement, one transaction


def _rids(rids: object) -> list[UUID]:
    """The rids of a bulk call, checked before anything is written."""
    if isinstance(rids, str | bytes) or not isinstance(rids, Sequence | set | frozenset):
        raise ValidationError("rids must be a list of job rids")
    if len(rids) > MANY_RIDS:
        raise ValidationError(f"at most {MANY_RIDS} rids per call, got {len(rids)}")
    return [as_rid(r) for r in rids]


def _check_page(last_id: int, entries: int, search: str | None) -> None:
    """The arguments every listing takes: a page cursor, a page size, an optional search text."""
    require_int("last_id", last_id, minimum=0)
    require_int("entries", entries, minimum=1)
    if search is not None and not isinstance(search, str):
        raise ValidationError("search must be a string")


def _status_value(statuses: type[JobStatus] | type[WorkerStatus], status: object) -> str | None:
    """A status filter as the contract's string (any case), or a ValidationError naming the
    allowed ones."""
    if status is None:
        return None
    try:
        return statuses(str(status).upper()).value
    except ValueError:
        allowed = ", ".join(s.value for s in statuses)
        raise ValidationError(f"status must be one of {allowed}, got {status!r}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def env_encryption() -> dict[str, Any]:
    """The encryption settings the environment gives: ``QUEUER_ENCRYPTION_KEY`` and
    ``QUEUER_ENCRYPTION_OLD_KEYS`` (comma-separated keys still accepted for reading)."""
    return {
        "encryption_key": os.environ.get(ENCRYPTION_KEY_ENV) or None,
        "old_encryption_keys": [k for k in os.environ.get(OLD_KEYS_ENV, "").split(",") if k],
    }


def connect(*, on_error: OnError | None = None, **settings: Any) -> Client:
    """A producer ``Client`` configured like ``new_queuer``: ``QUEUER_DB_*`` / ``QUEUER_DB_URL``
    and the encryption variables. It never registers a worker."""
    options = {**env_encryption(), **settings}
    key = options.pop("encryption_key")
    return Client(DatabaseConfiguration.from_env(), key, on_error=on_error, **options)


def connect_with_db(
    db_config: DatabaseConfiguration,
    encryption_key: str | None = None,
    *,
    on_error: OnError | None = None,
    **settings: Any,
) -> Client:
    """A producer ``Client`` with an explicit configuration and encryption key (None or "" = none)."""
    return Client(db_config, encryption_key or None, on_error=on_error, **settings)
