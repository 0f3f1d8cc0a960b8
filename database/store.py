"""Runs the statements of the table modules on the pool and turns rows into model records."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, Connection, pq
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from queuer.model import (
    BatchResult,
    DecryptionError,
    Job,
    JobNotFoundError,
    JobStatus,
    Master,
    MasterSettings,
    Options,
    QueuerError,
    Worker,
    WorkerNotFoundError,
    WorkerStatus,
    uuid7,
)
from queuer.model.job import utc_or_none
from queuer.model.jsoncodec import naive_utc

from .batch import copy_jobs, copy_jobs_async
from .config import DatabaseConfiguration
from .connect_errors import connection_lost
from .direct import DirectConnection, DirectStatement, fetch_blocking, forget_prepared, prepared_names
from .job_table import (
    Claim,
    ClaimFloor,
    Finished,
    FollowUp,
    JobTable,
    NewJob,
    Requeued,
    cycle_params,
    json_row,
)
from .maintenance import Maintenance
from .master_store import MasterStore
from .master_table import MasterTable
from .pool import PoolType, UnreadableJson, connection_kwargs, make_pool, read_json_tolerantly
from .queue_store import QueueStore
from .queue_table import QueueTable
from .worker_table import WorkerTable
from .workflow_store import WorkflowStore
from .workflow_table import WorkflowTable

log = logging.getLogger("queuer.store")

_ENCRYPTED = (
    ("parameters", "parameters_encrypted"),
    ("parameters_keyed", "parameters_keyed_encrypted"),
    ("results", "results_encrypted"),
)


# The cycle connection's session settings, set when it is taken and reset when it goes back to the
# pool (``Store._take_cycle_connection`` says why each is there).
CYCLE_SETTINGS = (
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_sort", "off"),
    ("enable_seqscan", "off"),
    ("jit", "off"),
)


_EARLIEST = datetime.min.replace(tzinfo=UTC)


class Claimed(list[Job]):
    """The jobs a cycle claimed, and where in the claim index the last of them sat (``floor``:
    where the next claim may resume, ``queuer.claims.ClaimCursor``)."""

    floor: ClaimFloor | None = None


Refresh = Literal["always", "many_changes", "outgrown"]


class Codec(Protocol):
    """Encrypts and decrypts column values (see ``queuer.database.encryption``)."""

    def encrypt(self, text: str) -> bytes: ...
    def decrypt(self, data: bytes) -> str: ...


class Store:
    """Pool plus composed statements of one schema."""

    def __init__(
        self,
        config: DatabaseConfiguration,
        pool_size: int,
        codec: Codec | None = None,
        encrypt_parameters: bool = False,
    ) -> None:
        self.config = config
        self.pool: PoolType = make_pool(config, pool_size)
        self.jobs = JobTable(config.schema)
        self.workers = WorkerTable(config.schema)
        self.masters = MasterTable(config.schema)
        self.master = MasterStore(self.masters, self.execute, self.pool)
        self.maintenance = Maintenance(config.schema, self.execute)
        self.workflows = WorkflowStore(
            WorkflowTable(config.schema),
            self.jobs,
            self.execute,
            self.job_from_row,
            codec.decrypt if codec is not None else None,
        )
        self.queues = QueueStore(
            QueueTable(config.schema), self.jobs, self.execute, self.pool, self._claimed_job
        )
        self.codec = codec
        self.encrypt_parameters = encrypt_parameters and codec is not None
        self._pool_size = pool_size
        self._sync_pool: ConnectionPool[Connection[DictRow]] | None = None
        self._sync_lock = threading.Lock()
        self._cycle: DirectConnection | None = None
        self._options: dict[str | None, Options | None] = {}  # decoded options by their text
        self._cycle_statements = {
            (kind, shape): DirectStatement(f"queuer_cycle_{kind}_{shape}", text)
            for (kind, shape), text in self.jobs.cycle.items()
        }
        self._insert = DirectStatement("queuer_insert", self.jobs.insert)

    def sync_connection(self) -> AbstractContextManager[Connection[DictRow]]:
        """A connection for blocking calls from the caller's thread (a pool opened on first use),
        so a blocking ``add_job`` costs one round trip and no hop to the event loop."""
        if self._sync_pool is None:
            with self._sync_lock:
                if self._sync_pool is None:
                    self._sync_pool = ConnectionPool(
                        self.config.conninfo(),
                        min_size=1,
                        max_size=self._pool_size,
                        kwargs=connection_kwargs(self.config),
                        connection_class=Connection[DictRow],
                        configure=read_json_tolerantly,
                        name="queuer-sync",
                        open=True,
                    )
        return self._sync_pool.connection()

    def close_sync(self) -> None:
        with self._sync_lock:
            if self._sync_pool is not None:
                self._sync_pool.close()
                self._sync_pool = None

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self._release_cycle_connection()
        await self.pool.close()

    # -- encryption -----------------------------------------------------------------------------
    def seal(self, new: NewJob) -> NewJob:
        """With parameter encryption on, move the parameters into the ``*_encrypted`` columns."""
        if not self.encrypt_parameters or self.codec is None:
            return new
        return new._replace(
            parameters_json="[]",
            parameters_keyed_json="{}",
            parameters_encrypted=self.codec.encrypt(new.parameters_json),
            parameters_keyed_encrypted=self.codec.encrypt(new.parameters_keyed_json),
        )

    def seal_results(self, results_json: str) -> tuple[str, bytes]:
        """(results, results_encrypted) of a finish: with a key, the plain column stays ``[]``
        (contract §6; a FAILED job's ``null`` needs no secret)."""
        if self.codec is None or results_json == "null":
            return results_json, b""
        return "[]", self.codec.encrypt(results_json)

    # -- decoding -------------------------------------------------------------------------------
    def job_from_row(self, row: Mapping[str, Any]) -> Job:
        """A Job from a full row; non-empty ``*_encrypted`` columns win over the plain ones (§6).
        Whatever another program stored, reading never fails but for a missing key: what cannot
        be decoded is left out and named in ``error``."""
        return self._tolerant_job(self._decrypted(row))

    def _decrypted(self, row: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(row)
        for plain, encrypted in _ENCRYPTED:
            data = values.get(encrypted)
            if data:
                if self.codec is None:
                    raise DecryptionError(
                        f"job {values['rid']}: column {encrypted} is encrypted; no key given"
                    )
                values[plain] = json.loads(self.codec.decrypt(bytes(data)))
        return values

    def _strict_job(self, row: Mapping[str, Any]) -> Job:
        """A Job from a row, raising on anything that cannot be decoded (for jobs about to run)."""
        values = self._decrypted(row)
        bad = [k for k, v in values.items() if isinstance(v, UnreadableJson)]
        if bad:
            raise ValueError(f"{', '.join(bad)} nested too deeply to decode")
        return Job.from_row(values)

    def _tolerant_job(self, values: dict[str, Any]) -> Job:
        unreadable = [k for k, v in values.items() if isinstance(v, UnreadableJson)]
        for column in unreadable:
            values[column] = None
        try:
            job = Job.from_row(values)
        except Exception as exc:
            # A row another program wrote: what can be read is shown, the problem in ``error``.
            values["options"] = None
            job = Job.from_row(values)
            unreadable.append(f"options ({type(exc).__name__}: {exc})")
        note = f"[queuer could not decode: {', '.join(unreadable)}]"
        if unreadable and note not in job.error:
            job.error = f"{job.error} {note}".strip()
        return job

    def _decode_claimed(self, row: dict[str, Any]) -> Job:
        """A Job from a row the cycle claimed: its JSON columns arrive as text (most are ``{}``
        or ``[]``, decoded here without a parser), see ``CLAIM_JSON_COLUMNS``. Options are
        decoded once per distinct text: most jobs share theirs (a task's retry policy, a queue
        and priority), and an ``Options`` is immutable."""
        row["options"] = self._options_of(row["options"])
        row["parameters"] = _json_text(row["parameters"])
        row["parameters_keyed"] = _json_text(row["parameters_keyed"])
        return self._strict_job(row)

    # -- jobs -----------------------------------------------------------------------------------
    def insert_job_blocking(self, conn: Connection[DictRow], new: NewJob) -> Job:
        """``add_job`` on a connection of the sync pool: the insert on libpq directly, one round trip
        and less client CPU than psycopg's execute (see ``queuer.database.direct``)."""
        if new.unique_key or new.depends_on:
            with conn.transaction():
                return self.insert_job_on(conn.cursor(), new)
        rows = fetch_blocking(conn, self._insert, new._asdict(), prepare=not self.config.behind_pooler)
        return self.job_from_row(rows[0])

    async def insert_job(self, conn: AsyncConnection[DictRow], new: NewJob) -> Job:
        """``add_job_async`` on a pooled connection, the same way on the loop. Cancelled while its
        statement is in flight, the server is asked to cancel it and the pool closes the busy
        connection."""
        if new.unique_key or new.depends_on:
            async with conn.transaction():
                return await self.insert_job_on_async(conn.cursor(), new)
        direct = DirectConnection(conn, prepare=not self.config.behind_pooler)
        try:
            rows = await direct.fetch(self._insert, new._asdict())
        finally:
            direct.detach()
        return self.job_from_row(rows[0])

    async def insert_jobs(self, conn: AsyncConnection[DictRow], news: list[NewJob]) -> list[Job]:
        """Jobs of concurrent ``add_job`` calls in one statement (one commit): one alone goes by
        the prepared single insert."""
        if len(news) == 1 or self.encrypt_parameters:  # read back whole (decrypted)
            return [await self.insert_job(conn, new) for new in news]
        rows = json.dumps([json_row(n) for n in news])
        cur = await conn.execute(self.jobs.insert_rows_returning, {"rows": rows})
        made = {row["rid"]: row for row in await cur.fetchall()}
        # The rows are what was sent: the jobs are made from that, not decoded back.
        return [self._job_of(new, made[new.rid]) for new in news]

    def _job_of(self, new: NewJob, row: Mapping[str, Any]) -> Job:
        created = utc_or_none(row["created_at"])
        return Job(
            id=row["id"],
            rid=new.rid,
            task_name=new.task_name,
            status=JobStatus(new.status),
            parameters=_json_text(new.parameters_json),
            parameters_keyed=_json_text(new.parameters_keyed_json),
            options=self._options_of(new.options_json),
            scheduled_at=utc_or_none(new.scheduled_at),
            created_at=created,
            updated_at=created,
        )

    def _options_of(self, text: str | None) -> Options | None:
        """Decoded options by their text (an ``Options`` is immutable; most jobs share theirs)."""
        try:
            return self._options[text]
        except KeyError:
            options = Options.from_json(_json_text(text))
            if len(self._options) >= OPTIONS_CACHE:
                self._options.clear()
            self._options[text] = options
            return options

    async def insert_job_again(self, new: NewJob) -> Job:
        """``add_job`` once more after its connection broke: a fresh connection (dead ones are
        dropped first), the row written only when its rid is nowhere yet, else the existing job."""
        await self.pool.check()
        try:
            rows = await self.execute(self.jobs.insert_again, new._asdict())
        except psycopg.errors.UniqueViolation:
            rows = []
        if rows:
            return self.job_from_row(rows[0])
        try:
            return await self.find_job(new.rid)
        except JobNotFoundError:
            if not new.unique_key:
                raise
        async with self.pool.connection() as conn:  # not written: a live job holds its key
            return await self.insert_job_on_async(conn.cursor(), new)

    def insert_job_again_blocking(self, new: NewJob) -> Job:
        """``insert_job_again`` from the caller's thread, on the blocking pool."""
        pool = self._sync_pool
        if pool is not None:
            pool.check()
        with self.sync_connection() as conn:
            try:
                row = conn.execute(self.jobs.insert_again, new._asdict()).fetchone()
            except psycopg.errors.UniqueViolation:
                row = None
            if row is None:
                row = conn.execute(self.jobs.select_anywhere, {"rid": new.rid}).fetchone()
            if row is None and new.unique_key:  # not written: a live job holds its key
                return self.insert_job_on(conn.cursor(), new)
            if row is None:
                raise JobNotFoundError(f"Job not found: job {new.rid} vanished while it was enqueued again")
        return self.job_from_row(row)

    async def execute_retrying(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> list[DictRow]:
        """``execute`` with one more try on a fresh connection when the first one was dead (after a
        server restart). Only for statements that may safely run twice."""
        try:
            return await self.execute(query, params)
        except psycopg.DatabaseError as exc:
            if not connection_lost(exc):
                raise
            await self.pool.check()
            return await self.execute(query, params)

    async def cycle(
        self,
        worker_id: int,
        worker_rid: UUID,
        finished: Sequence[Finished],
        requeued: Sequence[Requeued],
        follow_ups: Sequence[FollowUp],
        claim: Claim,
        flow: bool = False,
    ) -> Claimed:
        """One worker cycle as one statement (one round trip, one commit): archive the finished
        jobs, requeue the retried, insert next occurrences of recurring jobs, and claim new ones
        as ``claim`` says, which it returns. ``flow``: some finished job has dependents, whose
        workflow moves on in the same statement.

        Finished rows leave ``job`` in the commit that marks their replacements RUNNING, so no
        committed state ever shows more RUNNING rows for this worker than its slots.
        """
        params = cycle_params(
            worker_id,
            worker_rid,
            finished,
            [r._replace(due=naive_utc(r.due)) for r in requeued],
            [f._replace(job=self.seal(f.job)) for f in follow_ups],
            claim,
        )
        # The cycle keeps one pooled connection checked out: taking and returning it each time
        # cost more client time than decoding the claimed rows. After an error (or a cancel) it
        # is released (see there) and the next cycle takes another.
        if self._cycle is None:
            self._cycle = DirectConnection(
                await self._take_cycle_connection(), prepare=not self.config.behind_pooler
            )
        try:
            rows = await self._cycle.fetch(
                self._cycle_statements[
                    "flow" if flow else "full" if requeued or follow_ups else "lean", claim.shape
                ],
                params,
            )
        except BaseException:  # an error, or cancelled mid-statement: its state is unknown
            await self._release_cycle_connection()
            raise
        claimed = Claimed(self._claimed_job(r) for r in rows)
        claimed.sort(key=lambda j: (j.created_at or _EARLIEST, j.id))
        claimed.floor = ClaimFloor.last_of(rows)
        return claimed

    def _claimed_job(self, row: dict[str, Any]) -> Job:
        """A Job from a row the cycle claimed. A row that cannot be decoded (written by another
        program, or nested beyond what the decoder handles) becomes a Job that carries only its
        identity and, in ``error``, why: the worker fails it instead of dying on it."""
        try:
            return self._decode_claimed(row)
        except Exception as exc:  # whatever a row holds must not stop the cycle
            return Job(
                id=row["id"],
                rid=row["rid"],
                task_name=str(row.get("task_name") or ""),
                status=JobStatus.RUNNING,
                attempts=row.get("attempts") or 0,
                created_at=utc_or_none(row.get("created_at")),
                error=f"UnreadableJob: the row cannot be decoded ({type(exc).__name__}: {exc})"[:2000],
            )

    async def _take_cycle_connection(self) -> AsyncConnection[DictRow]:
        """The cycle's connection, with generic plans: planning the cycle statement anew for each
        execution cost more than executing it, and grew as a draining queue left dead index
        entries behind. A generic plan is kept until the table is analyzed again, and one made
        while the queue was small would walk the whole table and sort it: without sorts, the
        claim can only walk its claim index in order, whatever the table's size and
        statistics. Only this connection: the operators' filtered listings want plans for their
        parameters. Keep the cycle statement free of sorts: with ``enable_sort`` off, a plan that
        must sort carries the planner's disable cost, crosses ``jit_above_cost``, and would be
        JIT-compiled at every execution; ``jit`` is off so that no such plan is compiled.
        Sequential scans are off too: the generic plan made on an empty table (a new worker's
        first cycle) would otherwise find the finished rows by scanning ``job`` whole until the
        next ANALYZE. Every table access of the cycle has an index to use: the primary key, the
        claim index. The benchmark log has the measurements behind each setting."""
        conn = await self.pool.getconn()
        if not self.config.behind_pooler:  # no session settings behind a transaction pooler
            try:
                await conn.execute("; ".join(f"SET {name} = {value}" for name, value in CYCLE_SETTINGS))
            except psycopg.Error:
                await self.pool.putconn(conn)
                raise
        return conn

    async def _release_cycle_connection(self) -> None:
        """Back to the pool as the pool handed it out: session settings reset, our prepared
        statements (the cycle's generic plans among them) deallocated. A connection left
        mid-statement by a cancel, or lost, is closed instead: its state is unknown."""
        cycle, self._cycle = self._cycle, None
        if cycle is None:
            return
        cycle.detach()
        conn = cycle.conn
        prepared = prepared_names(conn)
        if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:  # mid-statement, or lost
            await conn.close()
        elif not self.config.behind_pooler:
            try:
                await conn.execute(
                    "; ".join(
                        [f"RESET {name}" for name, _ in CYCLE_SETTINGS]
                        + [f"DEALLOCATE {n}" for n in prepared]
                    )
                )
                forget_prepared(conn, prepared)
            except psycopg.Error:
                await conn.close()
        await self.pool.putconn(conn)  # a closed or broken one is discarded

    async def refresh_statistics(self, when: Refresh = "always") -> bool:
        """ANALYZE ``job`` (whether it ran). Stale statistics after a big insert make the planner
        sort the whole queue on every claim until autovacuum comes, minutes later (if it runs);
        the analysis also makes the cycle's cached generic plan be made again. Skipped while
        another process analyzes it, and unless ``when`` holds: ``many_changes`` since the last
        analysis, or the table ``outgrown`` what it saw. Errors (not the table's owner, say) are
        logged, not raised: this is maintenance."""
        precheck = {
            "always": None,
            "many_changes": self.jobs.needs_analyze,
            "outgrown": self.jobs.outgrew_analyze,
        }[when]
        try:
            if precheck is not None:
                rows = await self.execute(precheck, (self.config.schema,))
                if not (rows and rows[0]["stale"]):
                    return False
            async with self.pool.connection() as conn, conn.transaction():
                row = await (await conn.execute(self.jobs.analyze_lock, (self.config.schema,))).fetchone()
                if not (row and row["got"]):
                    return False
                await conn.execute(self.jobs.analyze)
            return True
        except psycopg.Error as exc:
            log.debug("ANALYZE of job failed: %s", exc)
            return False

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[DictRow]]:
        """A pooled connection (autocommit, dict rows) for one write the caller composes."""
        return self.pool.connection()

    async def check_connections(self) -> None:
        """Drop pooled connections that died (a server restart); the pool makes new ones."""
        await self.pool.check()

    async def next_due_seconds(self, tasks: list[str], intervals: list[str]) -> float | None:
        """Seconds until the earliest SCHEDULED job a worker with these tasks could run (server
        clock; negative when one is due already), or None when there is none."""
        rows = await self.execute(self.jobs.next_due, {"tasks": tasks, "intervals": intervals})
        seconds: float | None = rows[0]["seconds"] if rows else None
        return seconds

    async def jobs_of_worker(self, worker_rid: UUID, last_id: int, entries: int) -> list[Job]:
        """A page of the jobs in ``job`` claimed by one worker."""
        return await self.page(self.jobs.page_by_worker, last_id, entries, worker_rid=worker_rid)

    # Writes on the caller's own connection or cursor (transactional enqueue), and of jobs with a
    # unique key. Such a job is written only while no live job holds its key (the index decides,
    # under any concurrency); otherwise the live job is returned, marked ``duplicate``. A holder
    # that ends between the two statements is the one race: the insert is tried again. Each write
    # is written once, as steps (``Steps``) that a blocking and an async cursor both run.
    def insert_job_on(self, cur: psycopg.Cursor[Any], new: NewJob) -> Job:
        return run_steps(cur, self.insert_steps(new))

    async def insert_job_on_async(self, cur: psycopg.AsyncCursor[Any], new: NewJob) -> Job:
        return await run_steps_async(cur, self.insert_steps(new))

    def copy_jobs_on(self, cur: psycopg.Cursor[Any], news: list[NewJob]) -> BatchResult:
        if not any(n.unique_key for n in news):
            copy_jobs(cur, self.jobs.copy, news)
            return BatchResult([n.rid for n in news])
        return run_steps(cur, self._unique_batch_steps(news))

    async def copy_jobs_on_async(self, cur: psycopg.AsyncCursor[Any], news: list[NewJob]) -> BatchResult:
        if not any(n.unique_key for n in news):
            await copy_jobs_async(cur, self.jobs.copy, news)
            return BatchResult([n.rid for n in news])
        return await run_steps_async(cur, self._unique_batch_steps(news))

    def insert_steps(self, new: NewJob) -> Steps[Job]:
        if new.depends_on:
            rows = yield from self.workflows.dependent_steps(new, self.jobs.insert)
            return self.job_from_row(rows[0])
        for _ in range(UNIQUE_TRIES):
            rows = yield (self.jobs.insert_unique if new.unique_key else self.jobs.insert), new._asdict()
            if rows:
                return self.job_from_row(rows[0])
            rows = yield self.jobs.select_by_keys, {"keys": [new.unique_key]}
            if rows:
                row = rows[0]
                row.pop("unique_key", None)
                job = self.job_from_row(row)
                job.duplicate = True
                return job
        raise QueuerError(f"unique key {new.unique_key!r}: its holder kept changing; try again")

    def _unique_batch_steps(self, news: list[NewJob]) -> Steps[BatchResult]:
        """Each item is written, or a live job holds its key (another, or an earlier item of the
        batch: the rows go in in batch order), or its holder ended meanwhile (tried again)."""
        rids: dict[int, UUID] = {}
        for _ in range(UNIQUE_TRIES):
            todo = [i for i in range(len(news)) if i not in rids]
            if not todo:
                break
            rows = yield self.jobs.insert_rows_unique, {"rows": json.dumps([json_row(news[i]) for i in todo])}
            inserted = {r["rid"] for r in rows}
            rows = yield self.jobs.select_by_keys, {"keys": [news[i].unique_key for i in todo]}
            holders = {r["unique_key"]: r["rid"] for r in rows}
            for i in todo:
                if news[i].rid in inserted:
                    rids[i] = news[i].rid
                elif news[i].unique_key in holders:
                    rids[i] = holders[news[i].unique_key]
        if len(rids) < len(news):
            raise QueuerError("a unique key's holder kept changing during add_jobs; try again")
        order = range(len(news))
        return BatchResult([rids[i] for i in order], [i for i in order if rids[i] != news[i].rid])

    async def expire_jobs(self) -> int:
        """Archive CANCELLED ("expired") the queued and scheduled jobs whose expiry passed."""
        return len(await self.execute(self.jobs.expire, ()))

    def unknown_names_on(
        self, cur: psycopg.Cursor[Any], tasks: list[str], intervals: list[str]
    ) -> list[tuple[str, str]]:
        """Which of these task and next-interval names no worker row lists: (kind, name)."""
        cur.execute(self.workers.unknown_names, (tasks, intervals))
        return [_kind_name(r) for r in cur.fetchall()]

    async def unknown_names_on_async(
        self, cur: psycopg.AsyncCursor[Any], tasks: list[str], intervals: list[str]
    ) -> list[tuple[str, str]]:
        await cur.execute(self.workers.unknown_names, (tasks, intervals))
        return [_kind_name(r) for r in await cur.fetchall()]

    async def held_by(self, worker_id: int) -> list[tuple[int, int]]:
        """(id, attempts) of the jobs the database says this worker is running."""
        rows = await self.execute(self.jobs.running_of_worker, (worker_id,))
        return [(r["id"], r["attempts"]) for r in rows]

    async def cancel(self, rid: UUID) -> Job:
        """Archive a queued, scheduled or running job as CANCELLED (§5.8)."""
        rows = await self.execute(self.jobs.cancel, (rid,))
        if not rows:
            raise JobNotFoundError(f"Job not found: no queued, scheduled or running job with rid {rid}")
        job = self.job_from_row(rows[0])
        if job.options is not None and job.options.flow is not None and job.options.flow.dependents:
            await self.workflows.sweep()  # the jobs waiting for it are cancelled with it
        return job

    async def cancel_by_worker(self, worker_rid: UUID) -> list[Job]:
        """Archive every job in ``job`` that names this worker as CANCELLED, in one statement."""
        return [self.job_from_row(r) for r in await self.execute(self.jobs.cancel_by_worker, (worker_rid,))]

    async def readd(self, rid: UUID) -> Job:
        """A new job (new rid) from an archived one (§5.14)."""
        try:
            rows = await self.execute(self.jobs.readd, (uuid7(), rid))
        except psycopg.errors.UniqueViolation as exc:
            raise QueuerError(
                f"job {rid} cannot be added again: a queued, scheduled or running job holds its unique key"
            ) from exc
        if not rows:
            raise JobNotFoundError(f"Job not found in archive: no job with rid {rid} in job_archive")
        return self.job_from_row(rows[0])

    async def cancel_many(self, rids: Sequence[UUID]) -> int:
        """Archive those of ``rids`` that are queued, scheduled or running as CANCELLED; how many."""
        row = (await self.execute(self.jobs.cancel_many, {"rids": list(rids)}))[0]
        if row["dependents"]:
            await self.workflows.sweep()  # the jobs waiting for them are cancelled with them
        return int(row["n"])

    async def readd_many(self, rids: Sequence[UUID]) -> int:
        """A new job from each archived job of ``rids`` (none where its unique key is held); how many."""
        params = {"new": [uuid7() for _ in rids], "old": list(rids)}
        return len(await self.execute(self.jobs.readd_many, params))

    async def get_job(self, rid: UUID, ended: bool) -> Job:
        query = self.jobs.select_ended if ended else self.jobs.select_job
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, (rid,))
            row = await cur.fetchone()
        if row is None:
            if ended:
                raise JobNotFoundError(f"Job not found in archive: no job with rid {rid} in job_archive")
            raise JobNotFoundError(f"Job not found: no job with rid {rid} in job")
        return self.job_from_row(row)

    async def find_job(self, rid: UUID) -> Job:
        """The job with ``rid`` from ``job`` or, once it ended, from ``job_archive``."""
        rows = await self.execute(self.jobs.select_anywhere, {"rid": rid})
        if not rows:
            raise JobNotFoundError(f"Job not found: no job with rid {rid} in job or job_archive")
        return self.job_from_row(rows[0])

    async def list_jobs(
        self,
        ended: bool,
        status: str | None = None,
        task: str | None = None,
        search: str | None = None,
        last_id: int = 0,
        entries: int = 100,
    ) -> list[Job]:
        """A page of ``job`` (or ``job_archive``), newest first, filtered by status, task name and
        a search text (a substring of rid, task or status); ``last_id`` continues a page."""
        query = self.jobs.filtered_ended if ended else self.jobs.filtered_jobs
        return await self.page(query, last_id, entries, status=status, task=task, search=search)

    async def find_ended(self, rids: Sequence[UUID]) -> dict[UUID, str]:
        """Which of ``rids`` are in the archive, with their status; used when the listener may have
        missed their notifications."""
        if not rids:
            return {}
        return {row["rid"]: row["status"] for row in await self.execute(self.jobs.ended_rids, (list(rids),))}

    async def page(self, query: str, last_id: int, entries: int, **extra: Any) -> list[Job]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, {"last_id": last_id, "entries": entries, **extra})
            return [self.job_from_row(r) for r in await cur.fetchall()]

    # -- workers --------------------------------------------------------------------------------
    async def insert_worker(
        self,
        name: str,
        options_json: str | None,
        max_concurrency: int,
        tasks: list[str],
        intervals: list[str],
    ) -> Worker:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                self.workers.insert, (name, options_json, max_concurrency, tasks, intervals)
            )
            row = await cur.fetchone()
        assert row is not None
        return Worker.from_row(row)

    async def execute(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> list[DictRow]:
        """Run one statement on a pooled connection and return its rows (empty when none)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    async def register_heartbeat(self, worker_id: int, stale_after: timedelta) -> None:
        """Record how long this worker may go without a heartbeat before it counts as dead."""
        await self.execute(self.workers.register_heartbeat, (worker_id, stale_after))

    async def set_capabilities(self, worker_id: int, tasks: list[str], intervals: list[str]) -> None:
        await self.execute(self.workers.update_capabilities, (tasks, intervals, worker_id))

    async def rename_worker(self, worker_id: int, name: str, max_concurrency: int) -> Worker:
        rows = await self.execute(self.workers.rename, (name, max_concurrency, worker_id))
        return Worker.from_row(rows[0])

    async def set_worker_status(
        self, worker_id: int, status: WorkerStatus, retry: bool = False
    ) -> Worker | None:
        """Write a worker's status; ``retry``: once more on a fresh connection after a dead one."""
        run = self.execute_retrying if retry else self.execute
        rows = await run(self.workers.set_status, (status.value, worker_id))
        return Worker.from_row(rows[0]) if rows else None

    async def set_draining(self, worker_id: int) -> None:
        await self.execute(self.workers.set_draining, (worker_id,))

    async def delete_unstarted_worker(self, worker_id: int) -> None:
        await self.execute(self.workers.delete_unstarted, (worker_id,))

    async def heartbeat(self, worker_id: int) -> WorkerStatus | None:
        """Refresh the worker's row; the status it has (another process may have written STOPPED
        or STOPPING), None when the row is gone."""
        rows = await self.execute(self.workers.heartbeat, (worker_id,))
        return WorkerStatus(rows[0]["status"]) if rows else None

    async def list_workers(
        self, status: str | None, search: str | None, last_id: int, entries: int
    ) -> list[Worker]:
        params = {"status": status, "search": search, "last_id": last_id, "entries": entries}
        return [Worker.from_row(r) for r in await self.execute(self.workers.filtered, params)]

    async def connections(self) -> list[dict[str, Any]]:
        """The sessions of every queuer process (Python or Go) on this database."""
        return [dict(r) for r in await self.execute(self.workers.connections, ())]

    async def counts(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Job counts by table, status and task, and the recent throughput and oldest queued age."""
        counts = [dict(r) for r in await self.execute(self.jobs.stats, ())]
        recent = dict((await self.execute(self.jobs.recent, ()))[0])
        return counts, recent

    async def get_worker(self, rid: UUID) -> Worker:
        rows = await self.execute(self.workers.select, (rid,))
        if not rows:
            raise WorkerNotFoundError(f"no worker with rid {rid}")
        return Worker.from_row(rows[0])

    async def request_stop(self, rid: UUID, status: WorkerStatus) -> Worker:
        """Ask any worker to stop (STOPPED) or drain (STOPPING) through its row (§5.9)."""
        rows = await self.execute(self.workers.request_stop, (status.value, rid))
        if not rows:
            return await self.get_worker(rid)  # raises when absent; else it is STOPPED already
        return Worker.from_row(rows[0])

    # -- master ---------------------------------------------------------------------------------
    async def get_master(self) -> Master:
        row = (await self.execute(self.masters.select, ()))[0]
        return Master(
            worker_id=row["worker_id"],
            worker_rid=row["worker_rid"],
            settings=MasterSettings.from_json(row["settings"]),
            updated_at=utc_or_none(row["updated_at"]),
        )


UNIQUE_TRIES = 5
R = TypeVar("R")
# A write as steps: it yields (statement, parameters) and is sent each statement's rows as dicts.
Steps = Generator[tuple[str, Mapping[str, Any]], list[dict[str, Any]], R]


def run_steps(cur: psycopg.Cursor[Any], steps: Steps[R]) -> R:
    """Run ``steps`` on a blocking cursor (the caller's transaction, or a pooled connection)."""
    try:
        query, params = next(steps)
        while True:
            cur.execute(query, params)
            rows = [_row_dict(cur, r) for r in cur.fetchall()] if cur.description else []
            query, params = steps.send(rows)
    except StopIteration as done:
        result: R = done.value
        return result


async def run_steps_async(cur: psycopg.AsyncCursor[Any], steps: Steps[R]) -> R:
    """``run_steps`` on an async cursor."""
    try:
        query, params = next(steps)
        while True:
            await cur.execute(query, params)
            rows = [_row_dict(cur, r) for r in await cur.fetchall()] if cur.description else []
            query, params = steps.send(rows)
    except StopIteration as done:
        result: R = done.value
        return result


OPTIONS_CACHE = 1024  # distinct option texts remembered by a worker


def _json_text(text: str | None) -> Any:
    """A JSON column read as text; the common empty values without a parser."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return None if text is None else json.loads(text)


def _row_dict(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any], row: Any) -> dict[str, Any]:
    """A row of the caller's cursor as a dict, whatever row factory the caller uses."""
    if isinstance(row, Mapping):
        return dict(row)
    names = [c.name for c in cur.description or []]
    return dict(zip(names, row, strict=True))


def _kind_name(row: Any) -> tuple[str, str]:
    return (row["kind"], row["n"]) if isinstance(row, Mapping) else (row[0], row[1])
