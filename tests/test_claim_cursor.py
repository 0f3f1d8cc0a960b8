"""A saturated worker's claim resumes behind its last job instead of walking, on every claim,
the entries that the jobs claimed since the last VACUUM left at the head of the claim index."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from queuer import BatchJob, DatabaseConfiguration, Options, Queuer, Schedule
from queuer.claims import ClaimCursor
from queuer.database import install_schema
from queuer.database.job_table import Claim, ClaimFloor, JobTable

from .helpers import QueuerFactory, eventually, explain_claim


def _noop_worker(make_queuer: QueuerFactory, name: str, slots: int = 1, *tasks: str) -> Queuer:
    """A queuer whose tasks (``record`` unless named) do nothing."""
    q = make_queuer(name, slots)

    async def noop(*_: Any) -> None: ...

    for task in tasks or ("record",):
        q.add_task_with_name(noop, task)
    return q


def _index_buffers(plan: dict[str, Any], index: str) -> int:
    here = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] if plan.get("Index Name") == index else 0
    return here + sum(_index_buffers(child, index) for child in plan.get("Plans", []))


def test_a_claim_resumed_behind_the_last_job_skips_the_claimed_entries_at_the_head(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = _noop_worker(make_queuer, "onward")
    q.add_jobs([BatchJob("record", [i]) for i in range(40_000)])
    # 30,000 of them claimed since the last VACUUM: their entries stay at the head of the index.
    sql.execute(
        "UPDATE job SET status = 'RUNNING', worker_id = 99 WHERE id IN (SELECT id FROM job ORDER BY id LIMIT 30000)"
    )
    sql.execute("ANALYZE job")
    last = sql.execute(
        "SELECT created_at, id FROM job WHERE status = 'RUNNING' ORDER BY created_at DESC, id DESC LIMIT 1"
    ).fetchone()
    assert last is not None
    floor = ClaimFloor("0", last[0], last[1])
    for head, onward_claim, index in (
        (Claim(10, ["record"], []), Claim(10, ["record"], [], after=floor), "queuer_py_job_ready_any"),
        (
            Claim(10, ["record"], [], ["default"]),
            Claim(10, ["record"], [], ["default"], after=floor),
            "queuer_py_job_ready_queue",
        ),
    ):
        head_plan, from_head = explain_claim(sql, head)
        onward_plan, onward = explain_claim(sql, onward_claim)
        head_buffers, onward_buffers = _index_buffers(head_plan, index), _index_buffers(onward_plan, index)
        assert onward_claim.shape in ("onward", "queue_onward")
        assert len(from_head) == 10 and onward == from_head  # the same next ten jobs
        assert onward_buffers > 0 and onward_buffers * 10 < head_buffers, (
            index,
            onward_buffers,
            head_buffers,
        )


def _row(id: int, priority: int | None = 0, minute: int = 0) -> dict[str, Any]:
    return {
        "id": id,
        "claim_priority": None if priority is None else str(priority),
        "claim_ready_at": datetime(2026, 1, 1, 12, minute),
    }


def test_the_floor_is_the_last_claimed_job_in_the_claims_order() -> None:
    # The lowest priority, then the latest to become ready, then the highest id.
    assert ClaimFloor.last_of([_row(3, 2, 9), _row(1, 0, 5), _row(2, 0, 5)]) == ClaimFloor(
        "0", _row(0, 0, 5)["claim_ready_at"], 2
    )
    assert ClaimFloor.last_of([_row(4, 1, 0), _row(5, 0, 0), _row(6, 0, 1)]).id == 6  # type: ignore[union-attr]
    # Jobs a workflow step released carry no key; with nothing else there is no floor.
    assert ClaimFloor.last_of([_row(7, None)]) is None
    assert ClaimFloor.last_of([]) is None


def test_the_cursor_resumes_only_after_full_claims_and_walks_from_the_head_now_and_then() -> None:
    now = [0.0]
    cursor = ClaimCursor(head_every=0.25, clock=lambda: now[0])
    plain = Claim(3, ["t"], [])

    def floor(id: int) -> ClaimFloor:
        return ClaimFloor("0", _row(id)["claim_ready_at"], id)

    first = cursor.place(plain)
    assert first.after is None  # nothing claimed yet: from the head
    cursor.claimed(first, 3, floor(3))
    second = cursor.place(plain)
    assert second.shape == "onward" and second.after == floor(3)
    cursor.claimed(second, 3, floor(6))
    now[0] = 0.3  # a quarter of a second since the last walk from the head: another one
    third = cursor.place(plain)
    assert third.after is None
    cursor.claimed(third, 3, floor(9))
    fourth = cursor.place(plain)
    assert fourth.after == floor(9)
    cursor.claimed(fourth, 1, floor(10))  # fewer than asked for: the priority's jobs ran out
    assert cursor.place(plain).after is None
    # Claims of several listed queues, or while some queue is blocked, always walk from the head.
    cursor.claimed(cursor.place(plain), 3, floor(13))
    assert cursor.place(Claim(3, ["t"], [], ["a", "b"])).after is None
    assert cursor.place(Claim(3, ["t"], [], skip_blocked=True)).after is None
    # A position is kept for the claim it came from: one queue's is not another's.
    one = Claim(3, ["t"], [], ["a"])
    assert cursor.place(one).after is None
    cursor.claimed(one, 3, floor(16))
    resumed = cursor.place(one)
    assert resumed.shape == "queue_onward" and resumed.after == floor(16)
    assert cursor.place(Claim(3, ["t"], [], ["b"])).after is None
    assert cursor.place(plain).after is None


def test_a_higher_priority_job_added_during_a_backlog_is_taken_before_the_backlog_ends(
    make_queuer: QueuerFactory,
) -> None:
    started: list[int] = []
    seen = threading.Event()
    q = make_queuer("onward-priority", 4)

    async def record(n: int) -> None:
        started.append(n)
        if n == -1:
            seen.set()

    q.add_task_with_name(record, "record")
    q.add_jobs([BatchJob("record", [i]) for i in range(20_000)])
    q.start(master=False)
    eventually(lambda: len(started) > 500, what="the drain under way")
    q.add_job_with_options(Options(priority=5), "record", -1)
    assert seen.wait(30), "the urgent job never ran"
    assert len(started) < 19_000, "taken only at the end of the backlog"


def test_the_wait_for_the_next_scheduled_job_reads_few_rows_however_many_are_scheduled(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = _noop_worker(make_queuer, "next-due", 1, "record", "other")
    tomorrow = Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(days=1)))
    q.add_jobs([BatchJob("record", [i], options=tomorrow) for i in range(3000)])
    q.add_job_with_options(
        Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(hours=1))), "record", 0
    )
    q.add_job_with_options(
        Options(schedule=Schedule(start=datetime.now(UTC) + timedelta(minutes=1))), "other", 0
    )
    sql.execute("ANALYZE job")
    text = JobTable("public").next_due
    params = {"tasks": ["record"], "intervals": []}
    row = sql.execute(text, params).fetchone()
    assert row is not None and 3500 < row[0] <= 3600  # the hour, not the other task's minute
    plan = sql.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, params).fetchone()
    assert plan is not None
    node = plan[0][0]["Plan"]
    while node.get("Relation Name") != "job":
        node = node["Plans"][0]
    assert node.get("Index Name") == "queuer_py_job_due", node["Node Type"]
    assert node["Actual Rows"] + node.get("Rows Removed by Filter", 0) < 10


def test_installing_over_an_earlier_version_replaces_its_claim_indexes(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any], db_config: DatabaseConfiguration
) -> None:
    make_queuer("upgrade", 1)
    # The creation-order claim indexes of earlier versions.
    sql.execute("DROP INDEX queuer_py_job_ready_any")
    sql.execute(
        "CREATE INDEX queuer_py_job_claim_any ON job (created_at, id) WHERE status IN ('QUEUED', 'SCHEDULED')"
    )
    sql.execute("CREATE INDEX queuer_py_job_claim_queue ON job (id) WHERE status IN ('QUEUED', 'SCHEDULED')")
    actions = asyncio.run(install_schema(db_config))
    assert isinstance(actions, list)
    names = {r[0] for r in sql.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'job'")}
    assert {"queuer_py_job_ready_any", "queuer_py_job_ready_queue", "queuer_py_job_due"} <= names
    assert not names & {"queuer_py_job_claim_any", "queuer_py_job_claim_queue"}
