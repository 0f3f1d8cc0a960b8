"""A saturated worker's claim resumes behind its last job instead of walking, on every claim,
the entries that the jobs claimed since the last VACUUM left at the head of the claim index."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

import queuer
from queuer import BatchJob, Options
from queuer.claims import ClaimCursor
from queuer.database.job_table import Claim, ClaimFloor
from queuer.model import Job, JobStatus

from .helpers import QueuerFactory


def _explain_claim(sql: psycopg.Connection[Any], claim: Claim, index: str) -> tuple[list[int], int]:
    """Run ``claim`` (as the lean cycle, generic plan, rolled back): the ids it took and the
    buffers its walk of the claim index touched."""
    from queuer.database.direct import encode_param, to_positional
    from queuer.database.job_table import JobTable, cycle_params
    from queuer.database.store import CYCLE_SETTINGS

    text, names = to_positional(JobTable("public").cycle["lean", claim.shape])
    params = cycle_params(1, uuid.uuid4(), [], [], [], claim)
    literal = ", ".join(
        "NULL" if v is None else "'" + v.decode().replace("'", "''") + "'"
        for v in (encode_param(params[n]) for n in names)
    )
    with sql.transaction(force_rollback=True):
        for name, value in CYCLE_SETTINGS:
            sql.execute(f"SET LOCAL {name} = {value}")
        sql.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        sql.execute(f"PREPARE claim AS {text}")
        row = sql.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim({literal})").fetchone()
        taken = [r[0] for r in sql.execute("SELECT id FROM job WHERE worker_id = 1 ORDER BY id")]
        sql.execute("DEALLOCATE claim")
    assert row is not None
    return taken, _index_buffers(row[0][0]["Plan"], index)


def _index_buffers(plan: dict[str, Any], index: str) -> int:
    here = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] if plan.get("Index Name") == index else 0
    return here + sum(_index_buffers(child, index) for child in plan.get("Plans", []))


def test_a_claim_resumed_behind_the_last_job_skips_the_claimed_entries_at_the_head(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("onward", 1)

    async def record(*_: Any) -> None: ...

    q.add_task_with_name(record, "record")
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
    floor = ClaimFloor(0, last[0], last[1])
    for head, onward_claim, index in (
        (Claim(10, ["record"], []), Claim(10, ["record"], [], after=floor), "queuer_py_job_claim_any"),
        (
            Claim(10, ["record"], [], ["default"]),
            Claim(10, ["record"], [], ["default"], after=floor),
            "queuer_py_job_claim_queue",
        ),
    ):
        from_head, head_buffers = _explain_claim(sql, head, index)
        onward, onward_buffers = _explain_claim(sql, onward_claim, index)
        assert onward_claim.shape in ("onward", "queue_onward")
        assert len(from_head) == 10 and onward == from_head  # the same next ten jobs
        assert onward_buffers > 0 and onward_buffers * 10 < head_buffers, (
            index,
            onward_buffers,
            head_buffers,
        )


def _job(id: int, priority: int = 0) -> Job:
    from datetime import UTC, datetime, timedelta

    return Job(
        id=id,
        rid=uuid.uuid4(),
        task_name="t",
        status=JobStatus.RUNNING,
        options=Options(priority=priority),
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=id),
    )


def test_the_cursor_resumes_only_after_full_claims_and_walks_from_the_head_now_and_then() -> None:
    now = [0.0]
    cursor = ClaimCursor(head_every=0.25, clock=lambda: now[0])
    plain = Claim(3, ["t"], [])
    first = cursor.place(plain)
    assert first.after is None  # nothing claimed yet: from the head
    cursor.claimed(first, [_job(3), _job(1, priority=2), _job(2)])
    second = cursor.place(plain)
    # Behind the last job in the index's order: the lowest priority, then the newest.
    assert second.shape == "onward" and second.after is not None
    assert (second.after.priority, second.after.id) == (0, 3) and second.after.created_at.tzinfo is None
    cursor.claimed(second, [_job(4), _job(5), _job(6)])
    now[0] = 0.3  # a quarter of a second since the last walk from the head: another one
    third = cursor.place(plain)
    assert third.after is None
    cursor.claimed(third, [_job(7), _job(8), _job(9)])
    fourth = cursor.place(plain)
    assert fourth.after is not None and fourth.after.id == 9
    cursor.claimed(fourth, [_job(10)])  # fewer than asked for: the band ran out
    assert cursor.place(plain).after is None
    # Claims of several listed queues, or while some queue is blocked, always walk from the head.
    cursor.claimed(cursor.place(plain), [_job(11), _job(12), _job(13)])
    assert cursor.place(Claim(3, ["t"], [], ["a", "b"])).after is None
    assert cursor.place(Claim(3, ["t"], [], skip_blocked=True)).after is None
    # A position is kept for the claim it came from: one queue's is not another's.
    one = Claim(3, ["t"], [], ["a"])
    assert cursor.place(one).after is None
    cursor.claimed(one, [_job(14), _job(15), _job(16)])
    resumed = cursor.place(one)
    assert resumed.shape == "queue_onward" and resumed.after is not None and resumed.after.id == 16
    assert cursor.place(Claim(3, ["t"], [], ["b"])).after is None
    assert cursor.place(plain).after is None


def test_a_higher_priority_job_added_during_a_backlog_is_taken_before_the_backlog_ends(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    import threading

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
    from .helpers import eventually

    eventually(lambda: len(started) > 500, what="the drain under way")
    q.add_job_with_options(Options(priority=5), "record", -1)
    assert seen.wait(30), "the urgent job never ran"
    assert len(started) < 19_000, "taken only at the end of the backlog"
    _ = queuer
