"""Issue 22: the first hour in production. Producers leave no worker rows, dead workers' jobs are
rescued with default settings, processes that end without stop() clean up, errors are one clear
line, and the seed's API (and queuerPy's surface) works as written."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

import queuer
from queuer import (
    BatchJob,
    DatabaseConfiguration,
    DatabaseConnectionError,
    DuplicateTaskError,
    Job,
    JobEvent,
    JobNotFoundError,
    JobStatus,
    OnError,
    Options,
    QueuerError,
    RetryBackoff,
    Schedule,
    Task,
    ValidationError,
    Worker,
    WorkerStatus,
)

from .helpers import QueuerFactory, WorkerProcess, count, eventually

ROOT = Path(__file__).resolve().parent.parent


def run_python(database_url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def echo(text: str) -> str:
    return text


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


# -- rescue by default --------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_sigkill_of_the_master_worker_is_rescued_within_a_minute_with_default_settings(
    database_url: str, make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    sql.execute("CREATE TABLE runs (i int, worker text, at timestamptz DEFAULT clock_timestamp())")
    a = WorkerProcess(database_url, "A", defaults=True)
    started = [a]
    try:
        eventually(
            lambda: count(
                sql,
                "SELECT count(*) FROM master m JOIN worker w ON w.id = m.worker_id WHERE w.rid = %s",
                a.rid,
            ),
            what="A is master (every started worker is a candidate)",
        )
        producer = queuer.connect_with_db(DatabaseConfiguration.from_url(database_url))
        retries = Options(on_error=OnError(max_retries=2, timeout=0))
        for i in range(2):
            producer.add_job_with_options(retries, "crash_work", i, 600.0)
        eventually(
            lambda: count(sql, "SELECT count(*) FROM runs WHERE worker = 'A'") == 2, what="A runs both"
        )
        b = WorkerProcess(database_url, "B", defaults=True)
        started.append(b)
        a.kill()
        row = sql.execute("SELECT updated_at FROM worker WHERE rid = %s", (a.rid,)).fetchone()
        assert row is not None
        last_heartbeat = row[0].replace(tzinfo=UTC)
        eventually(
            lambda: count(sql, "SELECT count(*) FROM runs WHERE worker = 'B'") == 2,
            timeout=90,
            what="B runs A's jobs again",
        )
        latest = sql.execute("SELECT max(at) FROM runs WHERE worker = 'B'").fetchone()
        assert latest is not None
        assert latest[0] - last_heartbeat < timedelta(seconds=60)
        assert sql.execute("SELECT status FROM worker WHERE rid = %s", (a.rid,)).fetchone() == ("STOPPED",)
        producer.close()
    finally:
        for w in started:
            w.terminate()


def test_a_live_go_worker_is_never_declared_dead_but_a_silent_python_worker_is(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    master = make_queuer("master", 1)  # installs the schema
    # A Go worker heartbeats every 30 s: a row 90 s old is alive by Go's 2-minute rule.
    go_rid = sql.execute(
        "INSERT INTO worker (name, status, updated_at) VALUES ('go', 'RUNNING', "
        "(now() AT TIME ZONE 'UTC') - interval '90 seconds') RETURNING rid"
    ).fetchone()
    # A started Python worker whose 4 heartbeats (20 s) passed a while ago.
    py = sql.execute(
        "INSERT INTO worker (name, status, updated_at) VALUES ('py', 'RUNNING', "
        "(now() AT TIME ZONE 'UTC') - interval '30 seconds') RETURNING id, rid"
    ).fetchone()
    assert go_rid is not None and py is not None
    sql.execute(
        "INSERT INTO queuer_py_worker (worker_id, stale_after) VALUES (%s, interval '20 seconds')", (py[0],)
    )
    master.start()
    eventually(
        lambda: master.get_worker(py[1]).status is WorkerStatus.STOPPED, what="silent Python worker stopped"
    )
    assert master.get_worker(go_rid[0]).status is WorkerStatus.RUNNING


def test_start_can_opt_out_of_the_master_election(make_queuer: QueuerFactory) -> None:
    q = make_queuer("no-master", 1)
    q.add_task(echo)
    q.start(master=False)
    time.sleep(0.5)  # the first master poll would have happened at once
    assert not q.is_master and q.get_master().worker_id == 0


# -- ending without stop() ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["end", "raise", "sigterm", "sigint"])
def test_a_process_that_ends_without_stop_cleans_up(
    mode: str, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    env = {**os.environ, "QUEUER_DB_URL": database_url}
    script_mode = mode if mode in ("end", "raise") else "wait"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.exit_script", script_mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("running "), line
    worker_rid, job_rid = line.split()[1:]
    if mode == "sigterm":
        proc.send_signal(signal.SIGTERM)
    elif mode == "sigint":
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "Task was destroyed" not in stderr and "Exception ignored" not in stderr, stderr
    if mode == "raise":
        assert "RuntimeError: the application failed" in stderr
    else:
        assert "Traceback" not in stderr or mode == "sigint", stderr
    assert sql.execute("SELECT status FROM worker WHERE rid = %s", (worker_rid,)).fetchone() == ("STOPPED",)
    assert sql.execute("SELECT status FROM job WHERE rid = %s", (job_rid,)).fetchone() == ("QUEUED",)


def test_a_worker_command_whose_import_fails_leaves_no_row(
    database_url: str, sql: psycopg.Connection[Any]
) -> None:
    result = run_python(database_url, "-m", "queuer", "worker", "tests.broken_app:worker")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "ImportError: a module this application needs is missing" in result.stderr.strip().splitlines()[-1]
    assert count(sql, "SELECT count(*) FROM worker") == 0


# -- errors a user can cause --------------------------------------------------------------------
def test_connection_failures_are_one_clear_line(
    db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    def failure(**changes: Any) -> DatabaseConnectionError:
        config = DatabaseConfiguration(**{**db_config.__dict__, **changes})
        with pytest.raises(DatabaseConnectionError) as caught:
            queuer.connect_with_db(config)
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        assert caught.value.original is caught.value.__cause__
        assert "\n" not in str(caught.value)
        return caught.value

    if not db_config.host.startswith("/"):
        assert "cannot reach the database server" in str(failure(port=1))
    assert "authentication failed" in str(failure(username="no_such_role_for_queuer"))
    assert "does not exist" in str(failure(database="no_such_database_for_queuer"))
    ssl = sql.execute("SHOW ssl").fetchone()
    if ssl == ("off",) and not db_config.host.startswith("/"):
        assert "QUEUER_DB_SSLMODE" in str(failure(sslmode="require"))


def test_sslmode_defaults_to_prefer_in_every_form() -> None:
    env = {
        "QUEUER_DB_HOST": "127.0.0.1",
        "QUEUER_DB_PORT": "5432",
        "QUEUER_DB_DATABASE": "d",
        "QUEUER_DB_USERNAME": "u",
    }
    assert DatabaseConfiguration.from_env(env).sslmode == "prefer"
    assert DatabaseConfiguration.from_url("postgresql://u@h/d").sslmode == "prefer"
    assert DatabaseConfiguration().sslmode == "prefer"
    assert DatabaseConfiguration.from_env({**env, "QUEUER_DB_SSLMODE": "require"}).sslmode == "require"


def test_bad_calls_raise_validation_errors_before_anything_is_written(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("validating", 1)

    def two(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    q.add_task(two)
    with pytest.raises(ValidationError, match="rid must be a UUID"):
        q.get_job("not-a-uuid")
    with pytest.raises(ValidationError, match="rid must be a UUID"):
        q.cancel_job(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cannot be called with these arguments"):
        q.add_job(two, 1)
    with pytest.raises(ValidationError, match="cannot be called with these arguments"):
        q.add_job(two, 1, 2, factor=3)
    with pytest.raises(ValidationError, match="batch item 1"):
        q.add_jobs([BatchJob(two, [1, 2]), BatchJob(two, [1, 2, 3])])
    with pytest.raises(ValidationError, match="max_count=1 runs only once"):
        Schedule(interval=timedelta(minutes=1))
    with pytest.raises(ValidationError, match="NUL"):
        q.add_job(two, "a\x00b", 2)
    assert count(sql, "SELECT count(*) FROM job") == 0
    assert q.add_job(two, 1, 2, scale=3).parameters_keyed == {"scale": 3}


def test_times_uuids_and_decimals_travel_as_text_and_arrive_as_their_types(
    make_queuer: QueuerFactory,
) -> None:
    q = make_queuer("typed", 1)

    def typed(when: datetime, day: date, rid: UUID, amount: Decimal) -> list[str]:
        return [type(v).__name__ for v in (when, day, rid, amount)] + [when.isoformat(), str(amount)]

    q.add_task(typed)
    q.start(master=False)
    when = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    job = q.add_job(typed, when, date(2026, 3, 29), uuid4(), Decimal("10.25"))
    assert job.parameters[0] == "2026-03-29T01:30:00Z" and job.parameters[1] == "2026-03-29"
    done = q.wait_for_job_finished(job.rid, 30)
    assert done.results == [["datetime", "date", "UUID", "Decimal", when.isoformat(), "10.25"]]


# -- the seed's API -----------------------------------------------------------------------------
def test_tasks_are_returned_callable_and_decorators_take_both_forms(make_queuer: QueuerFactory) -> None:
    q = make_queuer("seed", 2)

    def plain(x: int) -> int:
        return x + 1

    task = q.add_task(plain)
    assert isinstance(task, Task) and task.name == "plain" and task(1) == 2
    named = q.add_task_with_name(plain, "plain_again")
    assert named.name == "plain_again"

    @q.task
    def bare(x: int) -> int:
        return x * 2

    @q.task(name="renamed")
    def original(x: int) -> int:
        return x * 3

    # A decorated function stays the function; its Task is registered under the name.
    assert bare(2) == 4 and q.tasks["bare"].fn is bare
    assert original(2) == 6 and q.tasks["renamed"].fn is original
    assert set(q.tasks) == {"plain", "plain_again", "bare", "renamed"} == set(q.worker.available_tasks)
    with pytest.raises(DuplicateTaskError) as dup:
        q.add_task(plain)
    assert isinstance(dup.value, RuntimeError) and "Task already exists" in str(dup.value)

    def hourly(start: datetime, count: int) -> datetime:
        return start + timedelta(hours=count)

    worker = q.add_next_interval_func(hourly)
    assert isinstance(worker, Worker) and worker.available_next_interval == ["hourly"]
    assert q.next_interval_funcs == {"hourly": hourly}
    q.start(master=False)
    assert q.running
    assert q.wait_for_job_finished(q.add_job(bare, 21).rid, 30).results == [42]
    q.stop()
    assert not q.running


def test_registration_is_all_or_nothing(make_queuer: QueuerFactory) -> None:
    q = make_queuer("atomic", 1)

    def fine() -> None:
        return None

    with pytest.raises(ValidationError):
        q.add_task_with_name(fine, "bad\x00name")
    with pytest.raises(ValidationError):
        q.add_task_with_name(fine, "bad\ud800name")
    assert q.add_task(fine).name == "fine"
    assert list(q.tasks) == ["fine"]


def test_get_jobs_filters_by_status_and_task(make_queuer: QueuerFactory) -> None:
    q = make_queuer("filters", 2)
    q.add_task(echo)

    def other() -> None:
        return None

    q.add_task(other)
    later = Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(hours=1)))
    queued = [q.add_job(echo, str(i)) for i in range(3)]
    scheduled = q.add_job_with_options(later, other)
    assert {j.rid for j in q.get_jobs(task=echo)} == {j.rid for j in queued}
    assert [j.rid for j in q.get_jobs(status=JobStatus.SCHEDULED)] == [scheduled.rid]
    assert [j.rid for j in q.get_jobs(status="scheduled", task="other")] == [scheduled.rid]
    assert q.get_jobs(status="QUEUED", task="other") == []
    q.cancel_job(queued[0].rid)
    assert [j.rid for j in q.get_jobs_ended(status=JobStatus.CANCELLED, task=echo)] == [queued[0].rid]
    with pytest.raises(ValidationError, match="status must be one of"):
        q.get_jobs(status="DONE")


def test_find_job_looks_in_both_tables(make_queuer: QueuerFactory) -> None:
    q = make_queuer("finder", 1)
    q.add_task(echo)
    job = q.add_job(echo, "x")
    assert q.find_job(job.rid).status is JobStatus.QUEUED
    q.start(master=False)
    q.wait_for_job_finished(job.rid, 30)
    assert q.find_job(str(job.rid)).status is JobStatus.SUCCEEDED
    with pytest.raises(JobNotFoundError):
        q.find_job(uuid4())


def test_seed_defaults_for_on_error_and_schedule() -> None:
    assert OnError() == OnError(timeout=30.0, max_retries=3, retry_delay=1.0, retry_backoff=RetryBackoff.NONE)
    # What Go reads stays its shape: numbers of seconds and the backoff's string.
    assert OnError().to_json() == {
        "timeout": 30.0,
        "max_retries": 3,
        "retry_delay": 1.0,
        "retry_backoff": "none",
    }
    before = datetime.now(UTC)
    assert before <= Schedule().start <= datetime.now(UTC)


def test_queuerpy_surface(make_queuer: QueuerFactory, db_config: DatabaseConfiguration) -> None:
    on_error = OnError(max_retries=1)
    assert on_error.is_valid() and OnError.from_dict(on_error.to_dict()) == on_error
    options = Options(on_error=on_error, schedule=Schedule(start=datetime(2030, 1, 1, tzinfo=UTC)))
    assert options.is_valid() and Options.from_dict(options.to_dict()) == options
    assert db_config.connection_string() == db_config.conninfo()
    job = queuer.new_job("echo", None, 1, 2, flag=True)
    assert (job.task_name, job.parameters, job.parameters_keyed, job.status) == (
        "echo",
        [1, 2],
        {"flag": True},
        JobStatus.QUEUED,
    )
    assert queuer.new_worker("w", 3).max_concurrency == 3
    assert queuer.new_task(echo).name == "echo" and queuer.new_task_with_name(echo, "x").name == "x"
    with pytest.raises(ValidationError):
        queuer.new_worker("w", 0)
    error = QueuerError("wrapped")
    assert error.original is None

    q = make_queuer("listening", 1)
    q.add_task(echo)
    received: list[Job] = []
    seen = threading.Event()

    def on_delete(job: Job) -> None:
        received.append(job)
        seen.set()

    q.listen_for_job_delete(notify_function=on_delete)
    q.start(master=False)
    done = q.wait_for_job_finished(q.add_job(echo, "hi").rid, 30)
    assert seen.wait(20) and received[0].rid == done.rid and received[0].results == ["hi"]
