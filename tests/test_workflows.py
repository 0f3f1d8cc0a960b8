"""Workflows and lifecycle hooks: chains, groups, chords and dependencies move on in the database;
callbacks, worker hooks, progress and task discovery."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import queuer
from queuer import (
    DatabaseConfiguration,
    Group,
    Job,
    JobStatus,
    OnError,
    Options,
    ProgressEvent,
    Step,
    ValidationError,
    WorkflowStatus,
)

from .helpers import FAST_MASTER, QueuerFactory, count, eventually, run_python


def _tasks(q: queuer.Queuer, seen: list[Any] | None = None) -> None:
    def fetch(url: str) -> str:
        return f"<{url}>"

    def parse(html: str) -> int:
        return len(html)

    def store(n: Any, table: str) -> str:
        if seen is not None:
            seen.append((n, table))
        return f"{table}:{n}"

    def square(x: int) -> int:
        time.sleep(0.01)
        return x * x

    def total(xs: list[int]) -> int:
        return sum(xs)

    def boom(*_: Any) -> None:
        raise ValueError("boom")

    for fn in (fetch, parse, store, square, total, boom):
        q.add_task(fn)


def test_a_chain_passes_each_result_on_and_holds_later_steps_where_go_cannot_claim(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], database_url: str
) -> None:
    q = make_queuer("chain", 2)
    _tasks(q)
    chain = q.add_chain([Step("fetch", "a.com"), Step("parse"), Step("store", table="t")])
    assert [m.status for m in chain.members] == [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.SCHEDULED]
    # Go claims SCHEDULED jobs due within 10 minutes: a held step is not.
    held = sql.execute(
        "SELECT count(*) FROM job WHERE status = 'SCHEDULED' "
        "AND scheduled_at <= (now() AT TIME ZONE 'UTC') + interval '10 minutes'"
    ).fetchone()
    assert held == (0,)
    q.start(master=False)
    done = q.wait_for_workflow(chain.rid, 30)
    assert (done.status, done.results) == (WorkflowStatus.SUCCEEDED, ["<a.com>", 7, "t:7"])
    shown = run_python(database_url, "-m", "queuer", "workflow", "show", str(chain.rid))
    assert shown.returncode == 0, shown.stderr
    assert f"chain {chain.rid}: SUCCEEDED" in shown.stdout and shown.stdout.count("SUCCEEDED") == 4


def test_a_chord_runs_once_with_every_result_in_order_across_two_workers(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    workers = [make_queuer(f"chord-{i}", 4) for i in range(2)]
    for w in workers:
        _tasks(w)
    group = workers[0].add_group([Step("square", i) for i in range(20)], then=Step("total"))
    for w in workers:
        w.start(master=False)
    done = workers[1].wait_for_group(group.rid, 60)
    assert done.status is WorkflowStatus.SUCCEEDED
    assert done.results == [i * i for i in range(20)] + [sum(i * i for i in range(20))]
    assert count(sql, "SELECT count(DISTINCT worker_id) FROM job_archive") == 2
    assert count(sql, "SELECT count(*) FROM job_archive WHERE task_name = 'total'") == 1


def test_a_failed_step_stops_the_chain_and_names_itself(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("breaks", 2, OnError(max_retries=1, retry_delay=0))
    seen: list[Any] = []
    _tasks(q, seen)
    chain = q.add_chain(
        [Step("square", 3), Step("boom"), Step("store", table="x"), Group([Step("store", table="y")])]
    )
    q.start(master=False)
    done = q.wait_for_workflow(chain.rid, 30)
    statuses = [m.status for m in done.members]
    assert statuses == [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CANCELLED]
    broken = str(done.members[1].rid)
    assert all(broken in m.error and "FAILED" in m.error for m in done.members[2:])
    assert done.status is WorkflowStatus.FAILED and seen == []
    assert done.members[1].attempts == 2  # its retry ran before the chain gave up


def test_depends_on_waits_for_running_jobs_and_refuses_or_cancels_the_rest(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("deps", 2)
    release = threading.Event()

    def slow() -> str:
        release.wait(20)
        return "slow"

    q.add_task(slow)
    _tasks(q)
    q.start(FAST_MASTER)
    running = q.add_job(slow)
    eventually(lambda: q.get_job(running.rid).status is JobStatus.RUNNING, what="slow running")
    waiting = q.add_job_with_options(Options(depends_on=[running.rid]), "square", 5)
    assert q.get_job(waiting.rid).status is JobStatus.SCHEDULED  # held
    release.set()
    assert q.wait_for_job_finished(waiting.rid, 30).results == [25]
    after = q.add_job_with_options(Options(depends_on=[running.rid]), "square", 6)
    assert after.status is JobStatus.QUEUED  # its dependency has already succeeded
    failed = q.add_job("boom")
    q.wait_for_job_finished(failed.rid, 30)
    doomed = q.add_job_with_options(Options(depends_on=[failed.rid, running.rid]), "square", 7)
    ended = q.wait_for_job_finished(doomed.rid, 30)
    assert ended.status is JobStatus.CANCELLED and str(failed.rid) in ended.error
    written = "SELECT (SELECT count(*) FROM job) + (SELECT count(*) FROM job_archive)"
    before = count(sql, written)  # stable while jobs move from one table to the other
    with pytest.raises(ValidationError, match="names no job"):
        q.add_job_with_options(Options(depends_on=[queuer.model.uuid7()]), "square", 1)
    assert count(sql, written) == before


def test_a_step_a_go_worker_archives_is_moved_on_by_the_master(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], db_config: DatabaseConfiguration
) -> None:
    with queuer.connect_with_db(db_config) as client:
        producer = make_queuer("producer", 1)
        _tasks(producer)
        chain = client.add_chain([Step("square", 2), Step("total", pass_result=False, xs=[1, 2])])
        first = chain.members[0].rid
        # What a Go worker does: claim, then update_job_final (delete + archive), no workflow step.
        sql.execute(
            "WITH moved AS (DELETE FROM job WHERE rid = %s RETURNING *) "
            "INSERT INTO job_archive SELECT id, rid, worker_id, worker_rid, options, task_name, parameters, "
            "parameters_encrypted, parameters_keyed, parameters_keyed_encrypted, 'SUCCEEDED', scheduled_at, "
            "started_at, schedule_count, attempts + 1, '[4]', results_encrypted, '', created_at, "
            "(now() AT TIME ZONE 'UTC') FROM moved",
            (first,),
        )
        producer.start(FAST_MASTER)  # the master's sweep releases the second step
        done = client.wait_for_workflow(chain.rid, 30)
        assert done.status is WorkflowStatus.SUCCEEDED and done.results == [4, 3]


def test_callbacks_and_worker_hooks_see_each_stage_and_cannot_change_outcomes(
    make_queuer: QueuerFactory,
) -> None:
    q = make_queuer("hooks", 2, OnError(max_retries=1, retry_delay=0))
    events: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def note(event: str) -> Any:
        def record(job: Job) -> None:
            with lock:
                events.append((event, job.task_name, job.status.value))
            if event == "job.succeeded":
                raise RuntimeError("a broken callback")

        return record

    async def on_failure(job: Job) -> None:
        with lock:
            events.append(("task.failure", job.task_name, job.error))

    def ok() -> int:
        return 1

    def bad() -> None:
        raise ValueError("no")

    q.add_task(ok, on_success=note("task.success"))
    q.add_task(bad, on_failure=on_failure)
    for event in ("job.started", "job.succeeded", "job.failed", "job.retrying"):
        q.on(event, note(event))
    order: list[str] = []
    q.on_startup(lambda: order.append("startup"))
    q.on_shutdown(lambda: (_ for _ in ()).throw(RuntimeError("first shutdown hook fails")))
    q.on_shutdown(lambda: order.append("shutdown"))
    q.start(master=False)
    assert q.wait_for_job_finished(q.add_job(ok).rid, 30).status is JobStatus.SUCCEEDED  # despite the raise
    assert q.wait_for_job_finished(q.add_job(bad).rid, 30).status is JobStatus.FAILED
    expected = {
        ("job.started", "ok", "RUNNING"),
        ("job.succeeded", "ok", "SUCCEEDED"),
        ("task.success", "ok", "SUCCEEDED"),
        ("job.retrying", "bad", "QUEUED"),
        ("job.failed", "bad", "FAILED"),
        ("task.failure", "bad", "ValueError: no"),
    }
    eventually(lambda: expected <= set(events), what="every callback")
    q.stop()
    assert order == ["startup", "shutdown"]
    with pytest.raises(ValidationError):
        q.on("job.finished", print)
    with pytest.raises(ValidationError):
        q.on("job.failed", "not callable")  # type: ignore[arg-type]


def test_a_startup_hook_that_raises_stops_the_start(make_queuer: QueuerFactory) -> None:
    q = make_queuer("no-start", 1)

    def refuse() -> None:
        raise RuntimeError("not today")

    q.on_startup(refuse)
    with pytest.raises(RuntimeError, match="not today"):
        q.start(master=False)
    assert not q.running


def test_progress_is_throttled_read_back_and_heard(
    make_queuer: QueuerFactory, db_config: DatabaseConfiguration
) -> None:
    q = make_queuer("progress", 1)
    go_on = threading.Event()

    def crunch() -> str:
        for i in range(1, 2001):
            queuer.report_progress(i / 4000, f"step {i}")
        go_on.wait(20)
        queuer.report_progress(1.0, "done")
        return "ok"

    q.add_task(crunch)
    heard: list[ProgressEvent] = []
    with queuer.connect_with_db(db_config) as client:
        client.listen_for_progress(heard.append)
        q.start(master=False)
        job = client.add_job("crunch")
        eventually(lambda: any(e.message == "step 2000" for e in heard), what="the latest report")
        seen = client.get_job(job.rid)
        assert (
            seen.progress is not None
            and seen.progress.fraction == 0.5
            and seen.progress.message == "step 2000"
        )
        go_on.set()
        client.wait_for_job_finished(job.rid, 30)
        eventually(lambda: heard and heard[-1].fraction == 1.0, what="the final report")
    assert all(e.rid == job.rid for e in heard)
    assert len(heard) <= 6  # 2,001 reports, merged to about one write per half second
    with pytest.raises(queuer.QueuerStateError):
        queuer.report_progress(0.5)
    with pytest.raises(ValidationError):
        queuer.report_progress(1.5)


def test_include_imports_a_package_of_tasks_before_the_start(database_url: str) -> None:
    result = run_python(database_url, "-c", "import tests.discovery_app as app; app.main()")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_bad_workflows_are_refused_at_the_call_and_nothing_is_written(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("refuses", 1)
    _tasks(q)
    for bad in (
        lambda: q.add_chain([]),
        lambda: q.add_group([]),
        lambda: q.add_chain([Step("fetch", "x"), Step("nobody_has_this")]),
        lambda: q.add_chain([Step("fetch", "x"), "not a step"]),
        lambda: q.add_group([Step("square", 1)], then="total"),
        lambda: q.add_chain([Step("square", 1, options=Options(unique_key="k"))]),
        lambda: q.add_chain([Step("parse", "a", "too many")]),
        lambda: q.add_task(print, on_success="nope"),
        lambda: q.include("not a module name"),
    ):
        with pytest.raises(ValidationError):
            bad()
    assert count(sql, "SELECT count(*) FROM job") == 0
    assert count(sql, "SELECT count(*) FROM queuer_py_workflow") == 0


def test_a_released_step_goes_to_a_worker_that_has_its_task(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    first, second = make_queuer("has-fetch", 2), make_queuer("has-parse", 2)

    def fetch(url: str) -> str:
        return f"<{url}>"

    def parse(html: str) -> int:
        return len(html)

    first.add_task(fetch)
    second.add_task(parse)
    chain = first.add_chain([Step("fetch", "b.org"), Step("parse")])
    for w in (first, second):
        w.start(master=False)
    done = first.wait_for_workflow(chain.rid, 30)
    assert done.results == ["<b.org>", 7]
    ran_by = dict(sql.execute("SELECT task_name, worker_id FROM job_archive").fetchall())
    assert ran_by == {"fetch": first.worker.id, "parse": second.worker.id}
