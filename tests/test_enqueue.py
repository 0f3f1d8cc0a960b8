"""Issue 3: batch (COPY), transactional and async enqueue; parent and child jobs."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from queuer import (
    BatchJob,
    JobStatus,
    MasterSettings,
    NotSerializableError,
    Options,
    Schedule,
    UnknownTaskError,
    ValidationError,
)
from queuer.saturation import SATURATED_AFTER_JOBS

from .helpers import QueuerFactory, count, eventually


def test_add_jobs_copies_in_order_with_per_item_options(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer()

    @q.task()
    def echo(*args: Any, **kwargs: Any) -> None: ...

    later = datetime.now(UTC) + timedelta(hours=1)
    batch = [BatchJob(echo, [i], {"k": str(i)}) for i in range(500)]
    batch.append(BatchJob("echo", (), {}, Options(schedule=Schedule(start=later), metadata={"m": 1})))
    rids = q.add_jobs(batch)
    assert len(rids) == 501 and all(r.version == 7 for r in rids)
    rows = sql.execute(
        "SELECT rid, parameters, parameters_keyed, status, scheduled_at, options, created_at FROM job "
        "ORDER BY created_at, id"
    ).fetchall()
    assert [r[0] for r in rows] == rids
    assert rows[7][1:4] == ([7], {"k": "7"}, "QUEUED")
    assert rows[-1][3] == "SCHEDULED" and rows[-1][4] == later.replace(tzinfo=None)
    assert rows[-1][5]["metadata"] == {"m": 1}
    assert len({r[6] for r in rows}) == 1  # one transaction, one created_at, as Go's COPY
    assert q.get_job(rids[3]).parameters == [3]


def test_add_jobs_validates_everything_before_writing(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer()

    @q.task()
    def echo(x: Any) -> None: ...

    good = [BatchJob(echo, [i]) for i in range(10)]
    with pytest.raises(NotSerializableError, match="batch item 10"):
        q.add_jobs([*good, BatchJob(echo, [object()])])
    with pytest.raises(UnknownTaskError, match="missing"):
        q.add_jobs([*good, BatchJob("missing", [1])])
    with pytest.raises(ValidationError, match="batch item 10"):
        q.add_jobs([*good, BatchJob(echo, "abc")])
    with pytest.raises(ValidationError):
        q.add_jobs([*good, "not a batch job"])  # type: ignore[list-item]
    assert count(sql, "SELECT count(*) FROM job") == 0


def test_a_batch_the_server_rejects_midway_writes_nothing(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    """Every item passes validation, then the server refuses row 1,501 of 2,000 (a CHECK constraint
    stands in for any failure on the server's side): the call raises and no row of the batch stays,
    blocking or async. The COPY runs as one statement, so it commits whole or not at all."""
    q = make_queuer()

    @q.task()
    def echo(x: int) -> None: ...

    sql.execute("ALTER TABLE job ADD CONSTRAINT refuse_1500 CHECK (parameters <> '[1500]')")
    batch = [BatchJob(echo, [i]) for i in range(2000)]
    with pytest.raises(psycopg.errors.CheckViolation):
        q.add_jobs(batch)
    with pytest.raises(psycopg.errors.CheckViolation):
        asyncio.run(q.add_jobs_async(batch))
    assert count(sql, "SELECT count(*) FROM job") == 0
    q.add_jobs(batch[:1500])  # the connections are usable afterwards
    assert count(sql, "SELECT count(*) FROM job") == 1500


def test_add_jobs_wakes_workers_and_all_run(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer("batch", 10, poll_interval=300)
    seen: set[int] = set()
    done = threading.Event()

    @q.task()
    async def mark(i: int) -> None:
        seen.add(i)
        if len(seen) == 2000:
            done.set()

    q.start()
    q.add_jobs([BatchJob(mark, [i]) for i in range(2000)])
    assert done.wait(60)
    q.stop()
    assert count(sql, "SELECT count(*) FROM job_archive WHERE status = 'SUCCEEDED'") == 2000


def test_hundred_thousand_jobs_in_one_call(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer()

    @q.task()
    def echo(x: int) -> None: ...

    rids = q.add_jobs([BatchJob(echo, [i]) for i in range(100_000)])
    assert len(set(rids)) == 100_000
    assert count(sql, "SELECT count(*) FROM job") == 100_000
    assert count(sql, "SELECT max((parameters->>0)::int) FROM job") == 99_999


def test_rollback_leaves_no_job(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer()

    @q.task()
    def echo(x: int) -> None: ...

    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (1)")
        job = q.add_job_tx(conn, echo, 1)
        q.add_jobs_tx(conn, [BatchJob(echo, [2]), BatchJob(echo, [3])])
        assert job.status is JobStatus.QUEUED
        conn.rollback()
    assert count(sql, "SELECT count(*) FROM job") == 0
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        q.add_job_tx(cur, echo, 4)  # a cursor works too
    assert count(sql, "SELECT count(*) FROM job") == 1


def test_worker_starts_a_transactional_job_only_after_commit(
    make_queuer: QueuerFactory, database_url: str
) -> None:
    q = make_queuer("tx", 1, poll_interval=0.05)
    ran: list[int] = []
    events = {1: threading.Event(), 2: threading.Event()}

    @q.task()
    def record(i: int) -> None:
        ran.append(i)
        events[i].set()

    q.start()
    with psycopg.connect(database_url) as conn:
        first = q.add_job_tx(conn, record, 1)
        # A job committed after the open one: claims go oldest first, so it would wait behind the
        # uncommitted job if that one were visible. It runs; the uncommitted one has not.
        q.add_job(record, 2)
        assert events[2].wait(10)
        assert ran == [2]
        conn.commit()
    assert events[1].wait(10)
    assert q.wait_for_job_finished(first.rid, 10).status is JobStatus.SUCCEEDED
    assert ran == [2, 1]


def test_async_twins_from_another_event_loop(make_queuer: QueuerFactory, database_url: str) -> None:
    q = make_queuer("async", 4)

    @q.task()
    async def double(x: int) -> int:
        return 2 * x

    q.start()

    async def app() -> list[Any]:
        ticks = 0

        async def ticker() -> None:  # proves the caller's loop is never blocked
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        job = await q.add_job_async(double, 4)
        rids = await q.add_jobs_async([BatchJob(double, [i]) for i in range(5)])
        done = await q.wait_for_job_finished_async(job.rid, 10)
        others = [await q.wait_for_job_finished_async(r, 10) for r in rids]
        got = await q.get_job_ended_async(job.rid)
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            tx_job = await q.add_job_tx_async(conn, double, 21)
            await q.add_jobs_tx_async(conn, [BatchJob(double, [1])])
            await conn.commit()
        tx_done = await q.wait_for_job_finished_async(tx_job.rid, 10)
        t.cancel()
        return [done.results, [o.results for o in others], got.rid == job.rid, tx_done.results, ticks > 0]

    assert asyncio.run(app()) == [[8], [[0], [2], [4], [6], [8]], True, [42], True]


def test_job_added_inside_a_task_records_its_parent(make_queuer: QueuerFactory) -> None:
    q = make_queuer("parent", 4)
    children: dict[str, UUID] = {}

    @q.task()
    def child() -> None: ...

    @q.task()
    def sync_parent() -> None:
        children["sync"] = q.add_job(child).rid

    @q.task()
    async def async_parent() -> None:
        children["async"] = (await q.add_job_async(child)).rid

    q.start()
    p1 = q.add_job(sync_parent)
    p2 = q.add_job(async_parent)
    q.wait_for_job_finished(p1.rid, 10)
    q.wait_for_job_finished(p2.rid, 10)
    c1 = q.wait_for_job_finished(children["sync"], 10)
    c2 = q.wait_for_job_finished(children["async"], 10)
    assert c1.options is not None and c1.options.parent_rid == p1.rid
    assert c2.options is not None and c2.options.parent_rid == p2.rid
    assert q.add_job(child).options is None  # outside a task: no parent, no options


def test_blocking_call_on_the_queuers_loop_raises(make_queuer: QueuerFactory) -> None:
    q = make_queuer()
    errors: list[BaseException] = []

    @q.task()
    async def misuse() -> None:
        try:
            q.add_job("misuse")
        except BaseException as exc:
            errors.append(exc)
            raise

    q.start()
    done = q.wait_for_job_finished(q.add_job(misuse).rid, 10)
    assert done.status is JobStatus.FAILED
    assert done.error.startswith("QueuerStateError:") and "_async twin" in done.error
    assert type(errors[0]).__name__ == "QueuerStateError"


def test_worker_refreshes_statistics_after_a_foreign_bulk_insert(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    """A big insert that did not come through add_jobs (a Go service's COPY, a plain INSERT ...
    SELECT) leaves the planner's statistics stale until autovacuum, minutes later; the workers
    that see the jobs queued analyze the table themselves."""
    q = make_queuer("stats", 10, poll_interval=300)
    done = threading.Event()
    ran = itertools.count(1)

    @q.task()
    async def tick() -> None:
        if next(ran) == 1500:
            done.set()

    q.start(MasterSettings(master_poll_interval=timedelta(hours=1)))  # the master's check waits
    sql.execute("ALTER TABLE job SET (autovacuum_enabled = false)")  # and autovacuum's never comes
    last_analyze = "SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'job'::regclass"
    assert sql.execute(last_analyze).fetchone() == (None,)
    sql.execute(
        "INSERT INTO job (rid, task_name, status, created_at, updated_at) "
        "SELECT gen_random_uuid(), 'tick', 'QUEUED', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' "
        "FROM generate_series(1, 1500)"
    )
    assert done.wait(60)
    eventually(lambda: sql.execute(last_analyze).fetchone() != (None,), timeout=60, what="job analyzed")


def test_a_saturated_worker_refreshes_statistics_of_a_growing_backlog(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    """A saturated worker does not listen, so it cannot count queued jobs; it checks the table's
    size every second instead, and analyzes it once it has outgrown the last analysis (without
    that, the cycle kept the plan made for a small table while the backlog grew)."""
    q = make_queuer("grow", 2, poll_interval=3600)
    held = threading.Semaphore(0)
    release = threading.Event()

    @q.task()
    async def quick() -> None: ...

    @q.task()
    async def hold() -> None:
        held.release()
        await asyncio.to_thread(release.wait, 60)

    q.start(MasterSettings(master_poll_interval=timedelta(hours=1)))  # the master's check waits
    sql.execute("ALTER TABLE job SET (autovacuum_enabled = false)")  # and autovacuum's never comes
    sql.execute("ANALYZE job")
    analyzed = "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'job'::regclass"
    before = sql.execute(analyzed).fetchone()[0]
    q.add_jobs([*(BatchJob(quick) for _ in range(SATURATED_AFTER_JOBS)), BatchJob(hold), BatchJob(hold)])
    assert held.acquire(timeout=20) and held.acquire(timeout=20)
    assert q._listener is not None  # white box: the worker is deaf now
    try:
        eventually(
            lambda: q._listener is not None and q._listener.channels == {"queuer_py_queue"}, what="deaf"
        )
        with psycopg.connect(database_url, autocommit=True) as other:  # its statistics count at close
            other.execute(
                "INSERT INTO job (rid, task_name, status, created_at, updated_at) SELECT gen_random_uuid(), "
                "'quick', 'QUEUED', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' FROM generate_series(1, 3000)"
            )
        eventually(lambda: sql.execute(analyzed).fetchone()[0] > before, timeout=30, what="job analyzed")
    finally:
        release.set()
