"""Producers are not workers: a Client enqueues, reads, waits, cancels and listens and never writes
a worker row; a process=True task's process never registers one either."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import queuer
from queuer import (
    BatchJob,
    DatabaseConfiguration,
    Job,
    JobEvent,
    JobStatus,
    Options,
    Schedule,
)

from .helpers import QueuerFactory, count, echo, eventually, run_python


# -- producers are not workers ------------------------------------------------------------------
def test_a_client_enqueues_reads_waits_cancels_and_listens_without_a_worker_row(
    make_queuer: QueuerFactory, db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    worker = make_queuer("echo-worker", 2)
    worker.add_task(echo)
    worker.start(master=False)
    rows_before = count(sql, "SELECT count(*) FROM worker")

    with queuer.connect_with_db(db_config) as client:
        deleted: list[JobEvent] = []
        client.listen_for_job_delete(deleted.append)
        job = client.add_job("echo", "one")  # by name: the client does not import the task
        assert client.wait_for_job_finished(job.rid, 30).results == ["one"]
        rids = client.add_jobs([BatchJob("echo", ["two"]), BatchJob("echo", ["three"])])
        with psycopg.connect(db_config.conninfo()) as conn:
            in_tx = client.add_job_tx(conn, "echo", "four")
        done = [client.wait_for_job_finished(r, 30) for r in [*rids, in_tx.rid]]
        assert [d.results for d in done] == [["two"], ["three"], ["four"]]
        assert client.find_job(job.rid).status is JobStatus.SUCCEEDED
        scheduled = client.add_job_with_options(
            Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(hours=1))), "echo", "later"
        )
        assert client.cancel_job(scheduled.rid).status is JobStatus.CANCELLED
        assert client.get_worker(worker.worker.rid).name == "echo-worker"
        eventually(lambda: {e.rid for e in deleted} >= {job.rid, scheduled.rid}, what="delete events")

        async def from_asyncio() -> Job:
            queued = await client.add_job_async("echo", "five")
            return await client.wait_for_job_finished_async(queued.rid, 30)

        assert asyncio.run(from_asyncio()).results == ["five"]
    assert count(sql, "SELECT count(*) FROM worker") == rows_before


def test_a_process_task_child_never_registers_a_worker(
    database_url: str, sql: psycopg.Connection[Any]
) -> None:
    result = run_python(database_url, "tests/process_app.py")
    assert result.returncode == 0, result.stderr
    status, square, parent_pid = result.stdout.split()
    assert (status, square) == ("SUCCEEDED", "49")
    # One row: the script's own worker. The fork server and the task's process imported the
    # module (which builds a Queuer) without registering.
    assert count(sql, "SELECT count(*) FROM worker") == 1
    row = sql.execute("SELECT results FROM job_archive").fetchone()
    assert row is not None and row[0][0][1] != int(parent_pid)  # it did run in another process


def test_concurrent_enqueues_share_commits_and_each_gets_its_own_job(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("shared-commits", 1)
    q.add_task(echo)

    async def many() -> list[Job]:
        return list(await asyncio.gather(*(q.add_job_async(echo, f"c{i}") for i in range(64))))

    jobs = asyncio.run(many())
    assert [j.parameters for j in jobs] == [[f"c{i}"] for i in range(64)]
    assert len({j.rid for j in jobs}) == 64
    threaded: list[Job] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        job = q.add_job(echo, f"t{i}")
        with lock:
            threaded.append(job)

    workers = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(j.parameters[0] for j in threaded) == sorted(f"t{i}" for i in range(16))
    assert count(sql, "SELECT count(*) FROM job") == 80
    # Jobs written by one statement share its transaction's time: commits were shared.
    shared = sql.execute(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM job GROUP BY created_at) AS t"
    ).fetchone()
    assert shared is not None and shared[0] > 1
