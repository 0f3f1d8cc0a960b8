"""Queues, priorities and flow control: routing and precedence, pause and resume, fleet-wide
concurrency and rate limits, unique jobs, expiry, the overview and the CLI."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import queuer
from queuer import BatchJob, DatabaseConfiguration, JobStatus, Options, ValidationError

from .helpers import FAST_MASTER, QueuerFactory, count, eventually, explain_claim, run_python

DONE = "SELECT count(*) FROM job_archive WHERE status = 'SUCCEEDED'"


def _recorder(q: queuer.Queuer, seen: list[str], delay: float = 0.0) -> None:
    def record(label: str) -> str:
        seen.append(label)
        if delay:
            time.sleep(delay)
        return label

    q.add_task_with_name(record, "record")


def test_a_worker_takes_its_queues_in_order_then_priority_then_creation(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    worker = make_queuer("ordered", 1, queues=["critical", "default", "low"])
    seen: list[str] = []
    _recorder(worker, seen)
    add = worker.add_job_with_options
    add(Options(queue="low"), "record", "low-1")
    add(None, "record", "default-1")
    add(Options(priority=5), "record", "default-p5")
    add(Options(queue="other"), "record", "other")  # not one of its queues
    add(Options(queue="critical", priority=-1), "record", "critical-p-1")
    add(Options(queue="critical"), "record", "critical-1")
    add(Options(priority=5), "record", "default-p5-later")
    worker.start(master=False)
    eventually(lambda: count(sql, DONE) == 6, what="six jobs done")
    assert seen == ["critical-1", "critical-p-1", "default-p5", "default-p5-later", "default-1", "low-1"]
    assert count(sql, "SELECT count(*) FROM job WHERE status = 'QUEUED'") == 1
    # What Go reads: Python's own data sits under options.metadata.queuer_py, nothing else.
    row = sql.execute("SELECT options FROM job_archive WHERE parameters = '[\"critical-p-1\"]'").fetchone()
    assert row is not None and row[0] == {"metadata": {"queuer_py": {"queue": "critical", "priority": -1}}}


def test_a_worker_of_every_queue_goes_by_priority_across_queues(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    worker = make_queuer("all", 1)
    seen: list[str] = []
    _recorder(worker, seen)
    for label, options in (
        ("a-0", Options(queue="a")),
        ("b-3", Options(queue="b", priority=3)),
        ("plain", None),
        ("a-7", Options(queue="a", priority=7)),
    ):
        worker.add_job_with_options(options, "record", label)
    worker.start(master=False)
    eventually(lambda: count(sql, DONE) == 4, what="four jobs done")
    assert seen == ["a-7", "b-3", "a-0", "plain"]


def test_a_paused_queue_keeps_its_jobs_and_resume_wakes_the_workers_at_once(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], db_config: DatabaseConfiguration
) -> None:
    # No fallback poll in the test's time: only the resume's notification can start the job.
    worker = make_queuer("paused", 2, poll_interval=3600)
    seen: list[str] = []
    _recorder(worker, seen)
    worker.start(master=False)
    with queuer.connect_with_db(db_config) as client:
        client.pause_queue("emails")
        held = client.add_job_with_options(Options(queue="emails"), "record", "held")
        marker = client.add_job("record", "marker")  # the worker is claiming meanwhile
        client.wait_for_job_finished(marker.rid, 30)
        row = sql.execute(
            "SELECT status, attempts, worker_id FROM job WHERE rid = %s", (held.rid,)
        ).fetchone()
        assert row == ("QUEUED", 0, 0)
        info = {q.name: q for q in client.get_queues()}
        assert info["emails"].paused and info["emails"].queued == 1
        client.resume_queue("emails")
        assert client.wait_for_job_finished(held.rid, 30).status is JobStatus.SUCCEEDED
    assert seen == ["marker", "held"]


def _max_running(sql_url: str, queue: str, stop: threading.Event, peaks: list[int]) -> None:
    with psycopg.connect(sql_url, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(*) FROM job WHERE status = 'RUNNING' "
                "AND options -> 'metadata' -> 'queuer_py' ->> 'queue' = %s",
                (queue,),
            ).fetchone()
            peaks.append(row[0] if row else 0)


def test_a_concurrency_limit_holds_across_workers(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], database_url: str
) -> None:
    workers = [make_queuer(f"limited-{i}", 5) for i in range(2)]
    for w in workers:
        _recorder(w, [], delay=0.1)
    workers[0].set_queue_limits("api", concurrency=3)
    workers[0].add_jobs([BatchJob("record", [f"api-{i}"], options=Options(queue="api")) for i in range(24)])
    plain = workers[0].add_jobs([BatchJob("record", [f"plain-{i}"]) for i in range(6)])
    stop, peaks = threading.Event(), []
    sampler = threading.Thread(target=_max_running, args=(database_url, "api", stop, peaks))
    sampler.start()
    try:
        for w in workers:
            w.start(master=False)
        for rid in plain:  # the unlimited queue is not held up by the limited one
            workers[1].wait_for_job_finished(rid, 30)
        eventually(lambda: count(sql, DONE) == 30, timeout=60, what="all jobs done")
    finally:
        stop.set()
        sampler.join()
    assert max(peaks) == 3  # reached, never exceeded
    by_worker = sql.execute("SELECT count(DISTINCT worker_id) FROM job_archive").fetchone()
    assert by_worker == (2,)


def test_a_rate_limit_allows_at_most_rate_starts_in_any_window(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    worker = make_queuer("rated", 10)
    _recorder(worker, [])
    limits = worker.set_queue_limits("partner", rate=4, per=timedelta(seconds=1))
    assert (limits.rate, limits.concurrency) == (4, None)
    worker.add_jobs([BatchJob("record", [i], options=Options(queue="partner")) for i in range(10)])
    worker.start(master=False)
    eventually(lambda: count(sql, DONE) == 10, timeout=60, what="ten jobs done")
    starts = [r[0] for r in sql.execute("SELECT started_at FROM job_archive ORDER BY started_at")]
    # Any 5 consecutive starts span at least a period: no window of 1 s holds more than 4.
    assert all(starts[i + 4] - starts[i] >= timedelta(seconds=1) for i in range(len(starts) - 4))
    # And the worker slept until starts were allowed, not a poll interval later (10 jobs: 3 waves).
    assert starts[-1] - starts[0] < timedelta(seconds=2 + 1.5)


def test_unique_jobs_are_written_once_even_under_concurrent_producers(
    make_queuer: QueuerFactory, db_config: DatabaseConfiguration, sql: psycopg.Connection[Any]
) -> None:
    worker = make_queuer("unique", 2)
    _recorder(worker, [])
    first = worker.add_job_with_options(Options(unique_key="welcome:42"), "record", "one")
    again = worker.add_job_with_options(Options(unique_key="welcome:42"), "record", "two")
    assert (first.duplicate, again.duplicate, again.rid) == (False, True, first.rid)
    assert again.parameters == ["one"]

    barrier, rids = threading.Barrier(6), []

    def produce() -> None:
        with queuer.connect_with_db(db_config) as client:
            barrier.wait()
            rids.append(client.add_job_with_options(Options(unique_key="race"), "record", "r").rid)

    threads = [threading.Thread(target=produce) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(rids)) == 1 and len(rids) == 6
    batch = worker.add_jobs(
        [
            BatchJob("record", ["b0"], options=Options(unique_key="race")),
            BatchJob("record", ["b1"], options=Options(unique_key="fresh")),
            BatchJob("record", ["b2"], options=Options(unique_key="fresh")),
            BatchJob("record", ["b3"]),
        ]
    )
    assert batch.duplicates == [0, 2]
    assert batch[0] == rids[0] and batch[2] == batch[1]
    assert count(sql, "SELECT count(*) FROM job") == 4  # welcome, race, fresh, b3

    worker.start(master=False)
    worker.wait_for_job_finished(first.rid, 30)
    later = worker.add_job_with_options(Options(unique_key="welcome:42"), "record", "after")
    assert not later.duplicate and later.rid != first.rid  # the key is free once its job ended


def test_an_expired_job_is_archived_cancelled_instead_of_running_late(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    seen: list[str] = []
    worker = make_queuer("expiry", 2, queues=["default"])
    _recorder(worker, seen)
    soon = datetime.now(UTC) + timedelta(seconds=0.5)
    claimed_late = worker.add_job_with_options(Options(expires_at=soon), "record", "claimed-late")
    swept = worker.add_job_with_options(Options(queue="nobody", expires_at=soon), "record", "swept")
    eventually(lambda: datetime.now(UTC) > soon, what="expiry passed")
    worker.start(FAST_MASTER)  # the worker finds one at its claim, the master sweeps the other
    for rid in (claimed_late.rid, swept.rid):
        job = worker.wait_for_job_finished(rid, 30)
        assert (job.status, job.error) == (JobStatus.CANCELLED, "expired")
    assert seen == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Options(queue=""), "queue name"),
        (lambda: Options(queue="q" * 101), "at most 100"),
        (lambda: Options(priority="high"), "priority"),
        (lambda: Options(priority=1.5), "priority"),
        (lambda: Options(priority=True), "priority"),
        (lambda: Options(unique_key="k" * 256), "at most 255"),
        (lambda: Options(metadata={"queuer_py": {}}), "queuer's own"),
    ],
)
def test_bad_options_are_refused_when_made(make: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make()


def test_bad_queue_input_is_refused_at_the_call_and_nothing_is_written(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("refuses", 1)
    _recorder(q, [])
    past = Options(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="in the past"):
        q.add_job_with_options(past, "record", "x")
    with pytest.raises(ValidationError, match="batch item 1"):
        q.add_jobs([BatchJob("record", ["ok"]), BatchJob("record", ["x"], options=past)])
    for bad in (
        lambda: q.set_queue_limits("api", concurrency=-1),
        lambda: q.set_queue_limits("api", rate=-5),
        lambda: q.set_queue_limits("api", rate=5, per=timedelta(0)),
        lambda: q.pause_queue(""),
        lambda: q.set_queues([]),
        lambda: q.set_queues(["a", "a"]),
    ):
        with pytest.raises(ValidationError):
            bad()
    assert count(sql, "SELECT count(*) FROM job") == 0
    assert count(sql, "SELECT count(*) FROM queuer_py_queue") == 0


def test_the_cli_lists_pauses_resumes_and_limits_queues(
    make_queuer: QueuerFactory, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("cli", 1)
    _recorder(q, [])
    q.add_job_with_options(Options(queue="emails"), "record", "x")

    def cli(*args: str) -> str:
        result = run_python(database_url, "-m", "queuer", "--dsn", database_url, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "paused" in cli("queue", "pause", "emails")
    assert "at most 2 running, at most 10 starts per 60s" in cli(
        "queue", "limit", "emails", "--concurrency", "2", "--rate", "10", "--per", "60"
    )
    listed = cli("queue", "list")
    assert listed.splitlines()[0].split()[:5] == ["NAME", "QUEUED", "SCHEDULED", "RUNNING", "PAUSED"]
    assert listed.splitlines()[1].split()[:8] == ["emails", "1", "0", "0", "true", "2", "10", "60.0"]
    assert "resumed" in cli("queue", "resume", "emails")
    row = sql.execute("SELECT paused, concurrency, rate, per FROM queuer_py_queue").fetchone()
    assert row == (False, 2, 10, timedelta(seconds=60))
    assert count(sql, "SELECT count(*) FROM queuer_py_queue_start WHERE queue = 'emails'") == 10


def _job_rows_read(plan: dict[str, Any]) -> tuple[int, list[str]]:
    """Rows of ``job`` an executed plan read (returned or filtered out), and its node types on job."""
    rows, kinds = 0, []
    if plan.get("Relation Name") == "job" and "Scan" in plan["Node Type"]:
        rows += (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"]
        kinds.append(f"{plan['Node Type']} {plan.get('Index Name', '')}".strip())
    for child in plan.get("Plans", []):
        more, more_kinds = _job_rows_read(child)
        rows += more
        kinds += more_kinds
    return rows, kinds


def test_a_scheduled_job_takes_its_place_in_the_queue_when_it_comes_due(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    from queuer import Schedule

    seen: list[str] = []
    q = make_queuer("ready-order", 1)
    _recorder(q, seen)
    due = datetime.now(UTC) + timedelta(milliseconds=500)
    q.add_job_with_options(Options(schedule=Schedule(start=due)), "record", "scheduled")
    q.add_job("record", "before")
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.2)
    q.add_job("record", "after")
    q.start(master=False)
    eventually(lambda: len(seen) == 3, what="three jobs")
    # In the order they became claimable: the scheduled one at its time, not at its creation.
    assert seen == ["before", "scheduled", "after"]


def test_each_claim_walks_an_index_and_reads_few_rows_whatever_the_backlog(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    from queuer.database.job_table import Claim

    q = make_queuer("plans", 1)
    _recorder(q, [])
    from queuer import Schedule

    tomorrow = Schedule(start=datetime.now(UTC) + timedelta(days=1))
    q.add_jobs([BatchJob("record", [i], options=Options(queue="bulk")) for i in range(5000)])
    # Jobs scheduled ahead, written before every job a claim can take: not read either.
    for queue in ("mail", "bulk"):
        q.add_jobs(
            [BatchJob("record", [i], options=Options(queue=queue, schedule=tomorrow)) for i in range(3000)]
        )
    q.add_jobs([BatchJob("record", [i], options=Options(queue="mail", priority=i % 3)) for i in range(1000)])
    q.pause_queue("bulk")  # its backlog sits at the head of the every-queue index
    sql.execute("ANALYZE job")

    def explain(claim: Claim) -> tuple[int, list[str], int]:
        plan, taken = explain_claim(sql, claim)
        rows, kinds = _job_rows_read(plan)
        return rows, kinds, len(taken)

    for claim, index in (
        (Claim(10, ["record"], [], ["bulk", "mail"]), "queuer_py_job_ready_queue"),
        (Claim(10, ["record"], [], None, skip_blocked=True), "queuer_py_job_ready_queue"),
    ):
        rows, kinds, claimed = explain(claim)
        assert claimed == 10, claim  # ten mail jobs: the paused backlog is skipped
        assert not any(k.startswith("Seq Scan") for k in kinds), kinds
        assert any(index in k for k in kinds), kinds
        assert rows < 100, (claim, rows, kinds)  # not the 5,000 paused jobs, nor the 6,000 ahead
    q.resume_queue("bulk")
    rows, kinds, claimed = explain(Claim(10, ["record"], [], None))
    assert claimed == 10 and rows < 100 and any("queuer_py_job_ready_any" in k for k in kinds), kinds


def test_a_recurring_unique_job_hands_its_key_to_its_next_occurrence(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    from queuer import Schedule

    worker = make_queuer("recurring-unique", 2)
    _recorder(worker, [])
    every = Schedule(start=datetime.now(UTC), max_count=3, interval=timedelta(milliseconds=50))
    first = worker.add_job_with_options(Options(schedule=every, unique_key="nightly"), "record", "tick")
    again = worker.add_job_with_options(Options(schedule=every, unique_key="nightly"), "record", "tick")
    assert again.duplicate and again.rid == first.rid
    worker.start(master=False)
    # The next occurrence is written in the statement that archives the last: the key moves on.
    eventually(lambda: count(sql, DONE) == 3, what="three occurrences")
    assert count(sql, "SELECT count(*) FROM job") == 0
    with pytest.raises(queuer.QueuerStateError):
        worker.set_queues(["late"])
