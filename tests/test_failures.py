"""Issue 4: retries, timeouts, cancellation, stop requests, master and rescue, reconnect."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from queuer import (
    BatchJob,
    JobNotFoundError,
    JobStatus,
    OnError,
    Options,
    RetryBackoff,
    ValidationError,
    WorkerStatus,
)
from queuer.database.job_table import NOTHING, Finished
from queuer.database.queue_table import CHANNEL as QUEUE_CHANNEL
from queuer.saturation import SATURATED_AFTER_JOBS

from . import process_tasks
from .helpers import FAST_MASTER, QueuerFactory, add_long_task, count, eventually, eventually_async


def test_on_error_validation_and_backoff_formula() -> None:
    with pytest.raises(ValidationError):
        OnError(timeout=-1)
    with pytest.raises(ValidationError):
        OnError(max_retries=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        OnError(max_retries=True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        OnError(retry_delay=float("inf"))
    with pytest.raises(ValidationError, match="retry_backoff"):
        OnError(retry_backoff="sometimes")  # type: ignore[arg-type]
    assert OnError(retry_backoff="linear").retry_backoff is RetryBackoff.LINEAR  # type: ignore[arg-type]
    delays = {
        b: [OnError(retry_delay=2, retry_backoff=b).delay_before_retry(k) for k in (1, 2, 3)]
        for b in RetryBackoff
    }
    assert delays == {
        RetryBackoff.NONE: [2, 2, 2],
        RetryBackoff.LINEAR: [2, 4, 6],
        RetryBackoff.EXPONENTIAL: [2, 4, 8],
    }


def test_retries_keep_the_row_and_wait_by_backoff(make_queuer: QueuerFactory) -> None:
    q = make_queuer("retry", 2, poll_interval=0.05)
    starts: list[float] = []

    @q.task()
    def always_fails(x: int) -> None:
        starts.append(time.monotonic())
        raise ValueError(f"attempt {len(starts)} of {x}")

    q.start()
    on_error = OnError(max_retries=2, retry_delay=0.3, retry_backoff=RetryBackoff.LINEAR)
    job = q.add_job_with_options(Options(on_error=on_error), always_fails, 5)
    done = q.wait_for_job_finished(job.rid, 20)
    assert done.status is JobStatus.FAILED and done.rid == job.rid
    assert done.attempts == 3 and done.error == "ValueError: attempt 3 of 5" and done.results is None
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 2 and gaps[0] >= 0.3 and gaps[1] >= 0.6  # linear: 1 x delay, then 2 x delay


def test_retry_then_success_and_worker_default_on_error(make_queuer: QueuerFactory) -> None:
    q = make_queuer("flaky", 1, OnError(max_retries=3), poll_interval=0.05)
    calls: list[int] = []

    @q.task()
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "ok"

    q.start()
    job = q.add_job(flaky)
    assert job.options is not None and job.options.on_error == OnError(max_retries=3)
    done = q.wait_for_job_finished(job.rid, 20)
    assert (done.status, done.attempts, done.results, done.error) == (JobStatus.SUCCEEDED, 3, ["ok"], "")


def test_async_timeout_cancels_the_task(make_queuer: QueuerFactory) -> None:
    q = make_queuer()
    _, cancelled = add_long_task(q, "slow")
    q.start()
    job = q.add_job_with_options(Options(on_error=OnError(timeout=0.2)), "slow")
    done = q.wait_for_job_finished(job.rid, 10)
    assert done.status is JobStatus.FAILED and "timeout" in done.error
    assert cancelled.wait(5)


def test_thread_timeout_frees_the_slot(make_queuer: QueuerFactory) -> None:
    q = make_queuer("one-slot", 1)
    release = threading.Event()

    @q.task()
    def stuck() -> None:
        release.wait(60)  # ignores the timeout: a thread cannot be killed

    @q.task()
    def quick() -> str:
        return "ran"

    q.start()
    try:
        first = q.add_job_with_options(Options(on_error=OnError(timeout=0.2)), stuck)
        second = q.add_job(quick)
        assert q.wait_for_job_finished(first.rid, 10).error.startswith("TaskTimeoutError")
        assert q.wait_for_job_finished(second.rid, 10).results == ["ran"]  # the slot was freed
    finally:
        release.set()


def test_process_tasks_run_and_are_killed_on_timeout(make_queuer: QueuerFactory, tmp_path: Path) -> None:
    q = make_queuer("procs", 2)
    q.add_task(process_tasks.cpu_square, process=True)
    q.add_task(process_tasks.hang_and_report, process=True)
    q.add_task(process_tasks.explode, process=True)
    q.start()
    square = q.wait_for_job_finished(q.add_job(process_tasks.cpu_square, 7).rid, 30)
    assert square.results is not None and square.results[0] == 49 and square.results[1] != os.getpid()
    boom = q.wait_for_job_finished(q.add_job(process_tasks.explode).rid, 30)
    assert boom.status is JobStatus.FAILED and boom.error == "ValueError: boom in a process"
    pid_file = tmp_path / "pid"
    hung = q.add_job_with_options(
        Options(on_error=OnError(timeout=1)), process_tasks.hang_and_report, str(pid_file)
    )
    assert q.wait_for_job_finished(hung.rid, 30).status is JobStatus.FAILED
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cancel_queued_and_running_jobs(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer("cancel", 3)
    started, stopped = add_long_task(q, "long_async")
    thread_release = threading.Event()
    thread_started = threading.Event()

    @q.task()
    def long_thread() -> str:
        thread_started.set()
        thread_release.wait(30)
        return "finished anyway"

    queued = q.add_job("long_async")
    cancelled = q.cancel_job(queued.rid)  # never started
    assert cancelled.status is JobStatus.CANCELLED and cancelled.results == []
    q.start()
    running = q.add_job("long_async")
    in_thread = q.add_job(long_thread)
    assert started.wait(10) and thread_started.wait(10)
    assert q.cancel_job(running.rid).status is JobStatus.CANCELLED
    assert stopped.wait(10)  # the async task was cancelled by the archive notification
    q.cancel_job(in_thread.rid)
    thread_release.set()
    follow_up = q.add_job(long_thread)  # proves the worker went on after discarding the result
    assert q.wait_for_job_finished(follow_up.rid, 10).status is JobStatus.SUCCEEDED
    rows = sql.execute(
        "SELECT rid, status, error FROM job_archive WHERE rid = ANY(%s)", ([running.rid, in_thread.rid],)
    ).fetchall()
    assert sorted(r[1:] for r in rows) == [("CANCELLED", ""), ("CANCELLED", "")]
    with pytest.raises(JobNotFoundError):
        q.cancel_job(running.rid)


def test_cancel_all_jobs_of_a_worker_and_readd(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("bulk", 2)
    gate = threading.Event()
    started = threading.Semaphore(0)

    @q.task()
    def blocked(i: int) -> int:
        started.release()
        gate.wait(30)
        return i

    q.start()
    jobs = [q.add_job_with_options(Options(metadata={"i": i}), blocked, i) for i in range(2)]
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    cancelled = q.cancel_all_jobs_by_worker(q.worker.rid)
    gate.set()
    assert {j.rid for j in cancelled} == {j.rid for j in jobs}
    assert count(sql, "SELECT count(*) FROM job_archive WHERE status = 'CANCELLED'") == 2
    again = q.readd_job_from_archive(jobs[1].rid)
    assert again.rid != jobs[1].rid and again.task_name == "blocked" and again.parameters == [1]
    assert again.options is not None and again.options.metadata == {"i": 1}
    assert q.wait_for_job_finished(again.rid, 10).results == [1]


def test_stop_worker_request_cancels_its_running_jobs(make_queuer: QueuerFactory) -> None:
    target = make_queuer("target", 2, heartbeat_interval=0.1)
    admin = make_queuer("admin", 1)
    started = threading.Event()

    @target.task()
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    target.start()
    job = admin.add_job("forever")
    assert started.wait(10)
    assert admin.stop_worker(target.worker.rid).status is WorkerStatus.STOPPED
    assert target.wait_until_stopped(10)
    assert admin.wait_for_job_finished(job.rid, 10).status is JobStatus.CANCELLED
    assert admin.get_worker(target.worker.rid).status is WorkerStatus.STOPPED


def test_graceful_stop_request_drains(make_queuer: QueuerFactory) -> None:
    target = make_queuer("drainer", 1, heartbeat_interval=0.1)
    admin = make_queuer("admin", 1)
    started = threading.Event()
    release = threading.Event()

    @target.task()
    def work(i: int) -> int:
        started.set()
        release.wait(30)
        return i

    target.start()
    first = admin.add_job("work", 1)
    assert started.wait(10)
    assert admin.stop_worker_gracefully(target.worker.rid).status is WorkerStatus.STOPPING
    eventually(lambda: admin.get_worker(target.worker.rid).max_concurrency == 0, what="draining")
    second = admin.add_job("work", 2)
    release.set()
    assert admin.wait_for_job_finished(first.rid, 10).results == [1]
    assert target.wait_until_stopped(10)
    assert admin.get_worker(target.worker.rid).status is WorkerStatus.STOPPED
    assert admin.get_job(second.rid).status is JobStatus.QUEUED  # taken by nobody


def test_one_master_at_a_time_and_takeover(make_queuer: QueuerFactory) -> None:
    a = make_queuer("a", 1, heartbeat_interval=0.2)
    b = make_queuer("b", 1, heartbeat_interval=0.2)
    a.start(master_settings=FAST_MASTER)
    eventually(lambda: a.is_master, what="a is master")
    b.start(master_settings=FAST_MASTER)
    master = a.get_master()
    assert master.worker_rid == a.worker.rid and master.settings == FAST_MASTER
    time.sleep(0.5)  # several poll rounds of b: it must not take the lock from a live master
    assert not b.is_master and a.get_master().worker_rid == a.worker.rid
    a.stop()
    eventually(lambda: b.is_master, what="b takes over")
    assert b.get_master().worker_rid == b.worker.rid


def test_master_rescues_jobs_of_dead_workers_by_policy(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    live = make_queuer("live", 2, heartbeat_interval=0.2)

    @live.task()
    def rescued(tag: str) -> str:
        return tag

    dead = sql.execute(
        "INSERT INTO worker (name, status, updated_at) VALUES ('dead', 'RUNNING', "
        "(now() AT TIME ZONE 'UTC') - interval '10 minutes') RETURNING id, rid"
    ).fetchone()
    assert dead is not None

    def running_job(tag: str, retries: int, worker_rid: Any) -> Any:
        options = f'{{"on_error": {{"timeout": 0, "max_retries": {retries}, "retry_delay": 0, "retry_backoff": "none"}}}}'
        row = sql.execute(
            "INSERT INTO job (task_name, parameters, options, status, worker_id, worker_rid, attempts, started_at) "
            "VALUES ('rescued', %s::jsonb, %s::jsonb, 'RUNNING', %s, %s, 1, now()) RETURNING rid",
            (f'["{tag}"]', options, dead[0], worker_rid),
        ).fetchone()
        assert row is not None
        return row[0]

    with_retries = running_job("again", 1, dead[1])
    no_retries = running_job("gone", 0, dead[1])
    orphan = running_job("orphan", 2, "00000000-0000-0000-0000-000000000001")  # its worker row was deleted
    live.start(master_settings=FAST_MASTER)
    assert live.wait_for_job_finished(with_retries, 20).attempts == 2
    failed = live.wait_for_job_finished(no_retries, 20)
    assert failed.status is JobStatus.FAILED and failed.error.startswith("WorkerDied: worker")
    assert live.wait_for_job_finished(orphan, 20).results == ["orphan"]
    assert live.get_worker(dead[1]).status is WorkerStatus.STOPPED


def test_long_job_on_a_live_worker_is_never_rescued(make_queuer: QueuerFactory) -> None:
    q = make_queuer("steady", 1, heartbeat_interval=0.1)
    runs: list[int] = []

    @q.task()
    async def long_job() -> None:
        runs.append(1)
        await asyncio.sleep(2.5)  # longer than the stale threshold; the heartbeat keeps it alive

    q.start(master_settings=FAST_MASTER)
    done = q.wait_for_job_finished(q.add_job(long_job).rid, 20)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1 and runs == [1]


def test_finish_is_guarded_by_the_claim(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    """A rescued job's old worker finishing late changes nothing (one archive row per job)."""
    q = make_queuer()
    row = sql.execute(
        "INSERT INTO job (task_name, status, worker_id, attempts) VALUES ('x', 'RUNNING', 7, 2) RETURNING id"
    ).fetchone()
    assert row is not None
    job_id = row[0]
    store = q._store

    def finish(worker_id: int, attempts: int) -> int:
        row = Finished(job_id, attempts, "SUCCEEDED", "[]", b"", "")
        q._loop.call(store.cycle(worker_id, q.worker.rid, [row], [], [], NOTHING))
        return count(sql, "SELECT count(*) FROM job_archive")

    assert finish(8, 2) == 0  # another worker
    assert finish(7, 1) == 0  # an older claim
    sql.execute("UPDATE job SET status = 'QUEUED' WHERE id = %s", (job_id,))  # rescued meanwhile
    assert finish(7, 2) == 0
    sql.execute("UPDATE job SET status = 'RUNNING' WHERE id = %s", (job_id,))
    assert finish(7, 2) == 1
    assert finish(7, 2) == 1  # a retried write changes nothing
    assert count(sql, "SELECT count(*) FROM job_archive") == 1


def test_worker_survives_dropped_connections(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("resilient", 2, poll_interval=300)
    seen: list[int] = []
    done = threading.Event()

    @q.task()
    async def note(i: int) -> None:
        seen.append(i)
        if i == 2:
            done.set()

    q.start()
    assert q.wait_for_job_finished(q.add_job(note, 1).rid, 10).status is JobStatus.SUCCEEDED
    killed = sql.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'queuer' AND datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()
    assert killed is not None and killed[0] >= 2  # the listener and pooled connections
    # The poller is 300 s away: only a re-established LISTEN (or the claim after reconnect) runs it.
    eventually(lambda: _add_quietly(q, note, 2), timeout=20, what="enqueue after reconnect")
    assert done.wait(20)
    assert seen == [1, 2]


def _add_quietly(q: Any, task: Any, *args: Any) -> bool:
    try:
        q.add_job(task, *args)
    except psycopg.OperationalError:
        return False  # the sync pool's connection died with the others; the next one is fresh
    return True


def test_listener_proves_a_quiet_connection_alive_and_reconnects(
    db_config: Any, sql: psycopg.Connection[Any]
) -> None:
    """The LISTEN connection after a quiet spell (liveness query) and after being killed: both
    times notifications keep arriving, and every (re)connect is reported."""
    from queuer.database.listener import Listener

    received: list[tuple[str, str]] = []
    connects: list[float] = []

    async def scenario() -> None:
        got = asyncio.Event()

        def on_notify(channel: str, payload: str) -> None:
            received.append((channel, payload))
            got.set()

        async def on_connect() -> None:
            connects.append(time.monotonic())

        listener = Listener(db_config, on_notify, on_connect, check_interval=0.1)
        task = asyncio.get_running_loop().create_task(listener.run())
        try:
            await asyncio.wait_for(listener.connected.wait(), 30)
            me = "(SELECT pid FROM pg_stat_activity WHERE query = 'SELECT 1' AND datname = current_database() AND pid <> pg_backend_pid())"

            # Quiet for longer than check_interval: the liveness query ran on the listener.
            await eventually_async(lambda: sql.execute(f"SELECT count(*) FROM {me} AS p").fetchone()[0] > 0)
            sql.execute("SELECT pg_notify('job', %s)", ('{"status" : "QUEUED"}',))
            await asyncio.wait_for(got.wait(), 30)
            assert received[-1] == ("job", '{"status" : "QUEUED"}')

            got.clear()
            sql.execute(f"SELECT pg_terminate_backend(pid) FROM {me} AS p")
            await eventually_async(lambda: len(connects) >= 2)
            await asyncio.wait_for(listener.connected.wait(), 30)
            sql.execute("SELECT pg_notify('job_archive', %s)", ('{"id" : 1, "status" : "CANCELLED"}',))
            await asyncio.wait_for(got.wait(), 30)
            assert received[-1] == ("job_archive", '{"id" : 1, "status" : "CANCELLED"}')
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_a_saturated_worker_stops_listening_and_misses_nothing(make_queuer: QueuerFactory) -> None:
    """While every claim fills every free slot the worker listens to nothing (it claims again as
    soon as a slot frees); a job that runs long brings ``job_archive`` back so its cancellation
    still arrives; a job queued while nobody listened is run; a short claim brings ``job`` back
    and the next job is picked up by its notification (the poll is an hour away)."""
    q = make_queuer("saturated", 2, poll_interval=3600)
    ran: list[str] = []
    ran_event = threading.Event()
    held = threading.Semaphore(0)
    release = threading.Event()
    cancelled = threading.Event()

    @q.task()
    async def quick(label: str) -> None:
        ran.append(label)
        ran_event.set()

    @q.task()
    async def hold() -> None:
        held.release()
        try:
            await asyncio.to_thread(release.wait, 60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def channels() -> frozenset[str]:
        assert q._listener is not None  # white box: what the LISTEN connection listens to now
        return q._listener.channels

    q.start()
    assert channels() == {"job", "job_archive", QUEUE_CHANNEL}
    # Full claims of quick jobs make the worker saturated; the next one claims both hold jobs.
    quick_jobs = [BatchJob(quick, ["batch"]) for _ in range(SATURATED_AFTER_JOBS)]
    rids = q.add_jobs([*quick_jobs, BatchJob(hold), BatchJob(hold)])
    assert held.acquire(timeout=20) and held.acquire(timeout=20)
    eventually(lambda: channels() == {QUEUE_CHANNEL}, what="only the queues' channel while saturated")
    late = q.add_job(quick, "late")  # nobody hears its notification; both slots are taken anyway

    # After LONG_JOB seconds the hold jobs count as long: cancellations must be heard again.
    eventually(lambda: channels() == {"job_archive", QUEUE_CHANNEL}, what="job_archive for long jobs")
    q.cancel_job(rids[-2])
    assert cancelled.wait(20)  # its slot is free: the next claim takes the late job
    eventually(lambda: "late" in ran, what="the job queued while nobody listened ran")
    # That claim was full (one slot, one job); the one after it came back short: listening again.
    eventually(lambda: channels() == {"job", "job_archive", QUEUE_CHANNEL}, what="listening again")
    ran_event.clear()
    after = q.add_job(quick, "after")
    assert ran_event.wait(20) and ran[-1] == "after"  # woken by the notification, not the poll
    release.set()
    assert q.wait_for_job_finished(rids[-1], 20).status is JobStatus.SUCCEEDED
    assert q.wait_for_job_finished(late.rid, 20).status is JobStatus.SUCCEEDED
    assert q.wait_for_job_finished(after.rid, 20).status is JobStatus.SUCCEEDED
    assert ran.count("batch") == SATURATED_AFTER_JOBS


def test_listening_again_stops_jobs_cancelled_meanwhile(make_queuer: QueuerFactory) -> None:
    """A cancellation whose notification was not heard (the channel was dropped, or the listener
    was reconnecting) still stops the running job as soon as the worker listens again."""
    q = make_queuer("deaf", 2, poll_interval=3600)
    started, cancelled = add_long_task(q, "long_async")
    q.start()
    job = q.add_job("long_async")
    assert started.wait(20)
    listener = q._listener  # white box: drop every channel as a saturated worker would
    assert listener is not None
    on_loop = q._loop.loop.call_soon_threadsafe  # the listener belongs to the queuer's loop
    on_loop(listener.set_channels, frozenset())
    eventually(lambda: listener.channels == frozenset(), what="no channel")
    assert q.cancel_job(job.rid).status is JobStatus.CANCELLED
    assert not cancelled.wait(0.5)  # nobody heard it (a bounded check that it did not happen)
    on_loop(listener.set_channels, frozenset({"job", "job_archive"}))
    assert cancelled.wait(20)  # the checks after listening again found it


def test_listener_follows_channel_changes_asked_for_while_it_applies_one(db_config: Any) -> None:
    """A saturated worker can flip between listening and not within a few milliseconds. Every
    change asked for while the listener is running LISTEN/UNLISTEN for the previous one must still
    be applied, and a channel listened to again reported (so the worker claims and re-checks)."""
    from queuer.database.listener import CHANNELS, Listener

    both = frozenset(CHANNELS)
    received: list[str] = []
    reported: list[float] = []

    async def scenario() -> None:
        got = asyncio.Event()

        def on_notify(channel: str, payload: str) -> None:
            received.append(channel)
            got.set()

        async def on_connect() -> None:
            reported.append(time.monotonic())

        listener = Listener(db_config, on_notify, on_connect)
        task = asyncio.get_running_loop().create_task(listener.run())
        try:
            await asyncio.wait_for(listener.connected.wait(), 30)
            listener.set_channels(frozenset())
            while listener._changed.is_set():  # white box: until its UNLISTEN is under way
                await asyncio.sleep(0)
            listener.set_channels(both)  # while the connection still listens to both
            deadline = time.monotonic() + 30
            while len(reported) < 2:  # the connect, then listening again after the UNLISTEN
                assert time.monotonic() < deadline, f"stuck listening to {set(listener.channels)}"
                await asyncio.sleep(0.01)
            assert listener.channels == both
            received.clear()
            async with await psycopg.AsyncConnection.connect(db_config.conninfo(), autocommit=True) as c:
                await c.execute("SELECT pg_notify('job_archive', %s)", ('{"status" : "SUCCEEDED"}',))
            await asyncio.wait_for(got.wait(), 30)
            assert received == ["job_archive"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
