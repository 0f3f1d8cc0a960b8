"""Issue 2: a job goes in, a worker runs it, it lands in the archive."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from queuer import (
    DuplicateTaskError,
    JobNotFoundError,
    JobStatus,
    NotSerializableError,
    UnknownTaskError,
    ValidationError,
    WaitTimeoutError,
    WorkerStatus,
    new_queuer,
)

from .helpers import QueuerFactory, count


def test_readme_snippet_runs_as_written(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUER_DB_URL", database_url)
    q = new_queuer("exampleWorker", 3)
    try:

        @q.task()
        def add(a: int, b: int, scale: int = 1) -> int:
            return (a + b) * scale

        q.start()
        job = q.add_job(add, 1, 2, scale=10)
        assert job.status is JobStatus.QUEUED and job.parameters == [1, 2]
        assert job.parameters_keyed == {"scale": 10}
        done = q.wait_for_job_finished(job.rid, timeout_seconds=10)
        assert done.status == "SUCCEEDED" and done.results == [30]
        assert done.rid == job.rid and done.attempts == 1 and done.error == ""
    finally:
        q.stop()
    assert q.worker.status is WorkerStatus.STOPPED


def test_task_registration_forms(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer()

    def by_callable() -> None: ...

    def by_name() -> None: ...

    q.add_task(by_callable)
    q.add_task_with_name(by_name, "explicit")

    @q.task()
    def decorated() -> None: ...

    @q.task_with_name("decorated-named")
    def other() -> None: ...

    expected = ["by_callable", "explicit", "decorated", "decorated-named"]
    assert list(q.registry.tasks) == expected
    row = sql.execute("SELECT available_tasks FROM worker WHERE id = %s", (q.worker.id,)).fetchone()
    assert row is not None and row[0] == expected
    with pytest.raises(DuplicateTaskError):
        q.add_task(by_callable)
    with pytest.raises(ValidationError, match="at most 100"):
        q.add_task_with_name(by_name, "x" * 101)
    with pytest.raises(ValidationError, match="name"):
        q.add_task(lambda: None)


def test_exception_fails_the_job_with_its_text(make_queuer: QueuerFactory) -> None:
    q = make_queuer()

    @q.task()
    def broken(x: int) -> None:
        raise RuntimeError(f"bad input {x}")

    q.start()
    job = q.add_job(broken, 7)
    done = q.wait_for_job_finished(job.rid, timeout_seconds=10)
    assert done.status is JobStatus.FAILED
    assert done.error == "RuntimeError: bad input 7"
    assert done.results is None


def test_async_and_thread_tasks_and_return_shapes(make_queuer: QueuerFactory) -> None:
    q = make_queuer()
    loop_threads: list[str] = []

    @q.task()
    async def on_loop(a: str) -> tuple[str, int]:
        loop_threads.append(threading.current_thread().name)
        await asyncio.sleep(0)
        return a, 2

    @q.task()
    def in_thread() -> None:
        loop_threads.append(threading.current_thread().name)

    q.start()
    first = q.wait_for_job_finished(q.add_job(on_loop, "x").rid, 10)
    second = q.wait_for_job_finished(q.add_job("in_thread").rid, 10)
    assert first.results == ["x", 2]
    assert second.results == []
    assert loop_threads[0].startswith("queuer-test-worker")
    assert loop_threads[1].startswith("queuer-task-in_thread")


def test_bad_input_raises_at_the_call_and_writes_nothing(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer()

    @q.task()
    def known(x: Any) -> None: ...

    with pytest.raises(UnknownTaskError, match="nope"):
        q.add_job("nope", 1)
    with pytest.raises(NotSerializableError):
        q.add_job(known, object())
    with pytest.raises(NotSerializableError):
        q.add_job(known, float("nan"))
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(NotSerializableError, match="contains itself"):
        q.add_job(known, looped)
    shared = {"same": [1, 2]}  # one object twice is not a cycle
    q.add_job(known, [shared, shared])
    sql.execute("DELETE FROM job")
    with pytest.raises(ValidationError):
        q.add_job_with_options("not options", known)  # type: ignore[arg-type]
    assert count(sql, "SELECT count(*) FROM job") == 0


def test_task_registered_by_another_worker_is_known(make_queuer: QueuerFactory) -> None:
    worker = make_queuer("runner")

    @worker.task()
    def remote_only(x: int) -> int:
        return x * 2

    producer = make_queuer("producer")
    worker.start()
    job = producer.add_job("remote_only", 21)
    assert producer.wait_for_job_finished(job.rid, 10).results == [42]


def test_thousand_jobs_over_two_queuers_run_exactly_once(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    total = 1000
    runs: Counter[int] = Counter()
    runners: Counter[str] = Counter()
    lock = threading.Lock()
    all_done = threading.Event()

    def make(name: str) -> Any:
        q = make_queuer(name, 8)

        async def work(i: int) -> int:
            with lock:
                runs[i] += 1
                runners[name] += 1
                if sum(runs.values()) >= total:
                    all_done.set()
            return i

        q.add_task_with_name(work, "work")
        return q

    a, b = make("a"), make("b")
    a.start()
    b.start()
    for i in range(total):
        (a if i % 2 else b).add_job("work", i)
    assert all_done.wait(60), f"only {sum(runs.values())} of {total} ran"
    a.stop()
    b.stop()
    assert len(runs) == total and set(runs.values()) == {1}
    assert runners["a"] > 0 and runners["b"] > 0
    assert count(sql, "SELECT count(*) FROM job") == 0
    assert count(sql, "SELECT count(*) FROM job_archive WHERE status = 'SUCCEEDED'") == total
    assert count(sql, "SELECT count(DISTINCT rid) FROM job_archive") == total


def test_max_concurrency_is_never_exceeded(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    limit, total = 3, 30
    state = {"now": 0, "max": 0, "done": 0}
    lock = threading.Lock()
    finished = threading.Event()
    q = make_queuer("limited", limit)
    seen_running: list[int] = []

    def slow() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        row = sql.execute(
            "SELECT count(*) FROM job WHERE worker_id = %s AND status = 'RUNNING'", (q.worker.id,)
        ).fetchone()
        seen_running.append(int(row[0]) if row else 0)
        time.sleep(0.02)  # a job that takes a while, so jobs overlap
        with lock:
            state["now"] -= 1
            state["done"] += 1
            if state["done"] == total:
                finished.set()

    q.add_task(slow)
    for _ in range(total):
        q.add_job(slow)
    q.start()
    assert finished.wait(60)
    assert state["max"] == limit
    assert max(seen_running) <= limit


def test_creation_order_is_kept_with_concurrency_one(make_queuer: QueuerFactory) -> None:
    q = make_queuer("ordered", 1)
    order: list[int] = []
    done = threading.Event()

    async def record(i: int) -> None:
        order.append(i)
        if len(order) == 25:
            done.set()

    q.add_task_with_name(record, "record")
    for i in range(25):
        q.add_job("record", i)
    q.start()
    assert done.wait(30)
    assert order == list(range(25))


def test_idle_worker_is_woken_by_notify_not_the_poller(make_queuer: QueuerFactory) -> None:
    q = make_queuer("idle", 2, poll_interval=300)
    started = threading.Event()

    @q.task()
    async def ping() -> None:
        started.set()

    q.start()
    began = time.monotonic()
    q.add_job(ping)
    # The poller would take 300 s; anything within a few seconds can only be the notification.
    assert started.wait(10)
    assert time.monotonic() - began < 10


def test_wait_times_out_with_a_clear_error(make_queuer: QueuerFactory) -> None:
    q = make_queuer()

    @q.task()
    def never_runs() -> None: ...

    job = q.add_job(never_runs)  # the queuer is not started, so nothing runs it
    with pytest.raises(WaitTimeoutError, match=str(job.rid)):
        q.wait_for_job_finished(job.rid, timeout_seconds=0.3)
    assert q.get_job(job.rid).status is JobStatus.QUEUED


def test_reading_jobs_archive_and_workers(make_queuer: QueuerFactory) -> None:
    q = make_queuer("reader", 2)

    @q.task()
    def echo(x: int) -> int:
        return x

    jobs = [q.add_job(echo, i) for i in range(5)]
    page1 = q.get_jobs(entries=3)
    page2 = q.get_jobs(last_id=page1[-1].id, entries=3)
    assert [j.rid for j in page1 + page2] == [j.rid for j in reversed(jobs)]
    with pytest.raises(JobNotFoundError):
        q.get_job_ended(jobs[0].rid)
    q.start()
    for job in jobs:
        q.wait_for_job_finished(job.rid, 10)
    ended = q.get_jobs_ended(entries=10)
    assert {j.rid for j in ended} == {j.rid for j in jobs}
    assert q.get_job_ended(jobs[2].rid).results == [2]
    assert q.get_jobs_by_worker_rid(q.worker.rid) == []
    worker = q.get_worker(q.worker.rid)
    assert worker.name == "reader" and worker.status is WorkerStatus.RUNNING
    assert worker.available_tasks == ["echo"]
    with pytest.raises(JobNotFoundError):
        q.get_job(jobs[0].rid)


def test_job_event_callbacks(make_queuer: QueuerFactory) -> None:
    q = make_queuer()
    events: dict[str, list[Any]] = {"insert": [], "update": [], "delete": []}
    got_delete = threading.Event()

    @q.task()
    def noop() -> None: ...

    q.listen_for_job_insert(lambda e: events["insert"].append(e))

    async def on_update(e: Any) -> None:
        events["update"].append(e)

    q.listen_for_job_update(on_update)

    def on_delete(e: Any) -> None:
        events["delete"].append(e)
        got_delete.set()

    q.listen_for_job_delete(on_delete)
    q.start()
    job = q.add_job(noop)
    assert got_delete.wait(10)
    q.stop()
    assert [(e.rid, e.status) for e in events["insert"]] == [(job.rid, JobStatus.QUEUED)]
    assert [(e.rid, e.status) for e in events["update"]] == [(job.rid, JobStatus.RUNNING)]
    assert [(e.rid, e.status, e.channel) for e in events["delete"]] == [
        (job.rid, JobStatus.SUCCEEDED, "job_archive")
    ]


def test_constructor_validation(db_config: Any) -> None:
    from queuer import OnError, new_queuer_with_db

    with pytest.raises(ValidationError):
        new_queuer_with_db("w", 0, None, db_config)
    with pytest.raises(ValidationError):
        new_queuer_with_db("", 1, None, db_config)
    with pytest.raises(ValidationError):
        new_queuer_with_db("w", 1, None, db_config, OnError(), OnError())
    with pytest.raises(ValidationError, match="pool_size"):  # the cycle keeps one, the heartbeat needs one
        new_queuer_with_db("w", 1, None, db_config, pool_size=1)
