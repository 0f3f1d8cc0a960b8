"""The seed's public API and the errors a user can cause: one clear line, at the call, nothing
written; queuerPy's surface."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
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
    JobNotFoundError,
    JobStatus,
    OnError,
    Options,
    QueuerError,
    QueuerStateError,
    RetryBackoff,
    Schedule,
    Task,
    ValidationError,
    Worker,
)

from .helpers import QueuerFactory, count, echo


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

    # A registration whose worker-row update fails (here: the queuer is stopped) leaves nothing
    # registered, so the same name can be registered on another queuer and no later call trips on it.
    def late() -> None:
        return None

    q.stop()
    with pytest.raises(QueuerStateError):
        q.add_task(late)
    with pytest.raises(QueuerStateError):
        q.add_next_interval_func(lambda_free_next)
    assert list(q.tasks) == ["fine"] and q.next_interval_funcs == {}


def lambda_free_next(start: datetime, count: int) -> datetime:
    return start + timedelta(minutes=count)


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
