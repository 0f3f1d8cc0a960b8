"""Issue 5: scheduled and periodic jobs, next-interval functions, time zones, retention."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from queuer import (
    DatabaseConfiguration,
    JobStatus,
    MasterSettings,
    Options,
    Schedule,
    UnknownTaskError,
    ValidationError,
    new_queuer_with_db,
)

from .helpers import FAST_MASTER, QueuerFactory, count, eventually

BERLIN = ZoneInfo("Europe/Berlin")


def daily_at_three_berlin(previous: datetime, count: int) -> datetime:
    """Every day at 03:00 Europe/Berlin, whatever the daylight saving time."""
    local = previous.astimezone(BERLIN)
    candidate = local.replace(hour=3, minute=0, second=0, microsecond=0)
    if candidate <= local:
        candidate = (candidate.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=BERLIN)
    return candidate.astimezone(UTC)


def test_schedule_validation(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        Schedule(start=None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="interval"):
        Schedule(start=now, max_count=3)
    with pytest.raises(ValidationError, match="interval"):
        Schedule(start=now, max_count=0)
    with pytest.raises(ValidationError):
        Schedule(start=now, max_count=-1)
    q = make_queuer()

    @q.task()
    def noop() -> None: ...

    with pytest.raises(UnknownTaskError, match="next-interval function named 'nobody_has_it'"):
        q.add_job_with_options(
            Options(schedule=Schedule(start=now, max_count=2, next_interval="nobody_has_it")), noop
        )
    assert count(sql, "SELECT count(*) FROM job") == 0


def test_scheduled_job_starts_on_time_not_early(make_queuer: QueuerFactory) -> None:
    q = make_queuer("timely", 2, poll_interval=300)  # the poller cannot be what starts it
    started: list[datetime] = []
    ran = threading.Event()

    @q.task()
    async def at_time() -> None:
        started.append(datetime.now(UTC))
        ran.set()

    q.start()
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    job = q.add_job_with_options(Options(schedule=Schedule(start=due)), at_time)
    assert job.status is JobStatus.SCHEDULED and job.scheduled_at == due
    assert ran.wait(10)
    assert due <= started[0] < due + timedelta(milliseconds=500), started[0] - due


def test_three_occurrences_of_a_periodic_job(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    q = make_queuer("periodic", 2, poll_interval=300)
    starts: list[datetime] = []
    third = threading.Event()

    @q.task()
    async def tick(label: str) -> str:
        starts.append(datetime.now(UTC))
        if len(starts) == 3:
            third.set()
        return label

    q.start()
    first = datetime.now(UTC) + timedelta(milliseconds=200)
    interval = timedelta(milliseconds=400)
    q.add_job_with_options(Options(schedule=Schedule(start=first, max_count=3, interval=interval)), tick, "t")
    assert third.wait(15)
    eventually(lambda: count(sql, "SELECT count(*) FROM job_archive") == 3, what="3 archived")
    rows = sql.execute(
        "SELECT schedule_count, scheduled_at, results, status FROM job_archive ORDER BY scheduled_at"
    ).fetchall()
    expected = [(first + k * interval).replace(tzinfo=None) for k in range(3)]
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [r[1] for r in rows] == expected
    assert {(r[2][0], r[3]) for r in rows} == {("t", "SUCCEEDED")}
    assert all(s >= e.replace(tzinfo=UTC) for s, e in zip(starts, expected, strict=True))
    assert count(sql, "SELECT count(*) FROM job") == 0  # the chain ended at max_count


def test_next_interval_function_every_day_at_three_berlin(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    # Across the October 2026 change from summer (UTC+2) to winter time (UTC+1):
    assert daily_at_three_berlin(datetime(2026, 10, 24, 12, tzinfo=UTC), 1) == datetime(
        2026, 10, 25, 2, tzinfo=UTC
    )
    assert daily_at_three_berlin(datetime(2026, 10, 25, 2, tzinfo=UTC), 2) == datetime(
        2026, 10, 26, 2, tzinfo=UTC
    )
    q = make_queuer("nightly", 1)
    ran = threading.Event()

    @q.task()
    def nightly() -> None:
        ran.set()

    q.add_next_interval_func(daily_at_three_berlin)
    assert q.get_worker(q.worker.rid).available_next_interval == ["daily_at_three_berlin"]
    other = make_queuer("without-the-function", 1)
    other.add_task_with_name(lambda: None, "nightly")
    other.start()  # has the task but not the function: must never claim the job
    q.start()
    start = datetime.now(UTC)
    schedule = Schedule(start=start, max_count=0, next_interval="daily_at_three_berlin")
    job = q.add_job_with_options(Options(schedule=schedule), nightly)
    assert q.wait_for_job_finished(job.rid, 10).worker_rid == q.worker.rid
    assert ran.is_set()
    row = sql.execute("SELECT scheduled_at, schedule_count, status FROM job").fetchone()
    assert row is not None
    assert row[0] == daily_at_three_berlin(start, 1).replace(tzinfo=None) and row[1:] == (1, "SCHEDULED")


def test_max_count_zero_keeps_going(make_queuer: QueuerFactory, sql: psycopg.Connection[Any]) -> None:
    q = make_queuer("forever", 1, poll_interval=300)
    runs: list[int] = []
    fifth = threading.Event()

    @q.task()
    async def again() -> None:
        runs.append(1)
        if len(runs) == 5:
            fifth.set()

    q.start()
    schedule = Schedule(start=datetime.now(UTC), max_count=0, interval=timedelta(milliseconds=50))
    q.add_job_with_options(Options(schedule=schedule), again)
    assert fifth.wait(15)
    q.stop()
    assert count(sql, "SELECT count(*) FROM job_archive WHERE status = 'SUCCEEDED'") >= 5
    assert count(sql, "SELECT count(*) FROM job WHERE status = 'SCHEDULED'") == 1  # the chain goes on


def test_scheduled_job_survives_a_worker_restart(
    make_queuer: QueuerFactory, db_config: DatabaseConfiguration
) -> None:
    first = make_queuer("before", 1)

    @first.task()
    def later() -> str:
        return "done"

    first.start()
    due = datetime.now(UTC) + timedelta(seconds=1)
    job = first.add_job_with_options(Options(schedule=Schedule(start=due)), later)
    first.stop()
    second = make_queuer("after", 1, poll_interval=300)
    second.add_task(later)
    second.start()
    done = second.wait_for_job_finished(job.rid, 15)
    assert done.status is JobStatus.SUCCEEDED and done.worker_rid == second.worker.rid
    assert done.started_at is not None and done.started_at >= due


def test_time_zones_aware_naive_and_a_non_utc_database(
    database_url: str,
    db_config: DatabaseConfiguration,
    sql: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Aware datetimes keep their instant; naive ones are UTC; a non-UTC database zone changes nothing."""
    sql.execute("SELECT set_config('TimeZone', 'UTC', false)")
    dbname = sql.execute("SELECT current_database()").fetchone()
    assert dbname is not None
    sql.execute(f"ALTER DATABASE \"{dbname[0]}\" SET TimeZone = 'America/New_York'")
    q = new_queuer_with_db("zones", 2, None, db_config, poll_interval=300)
    try:
        assert any("not UTC" in r.message for r in caplog.records)  # the installer warns

        started: dict[str, datetime] = {}
        both = threading.Event()

        @q.task()
        async def mark(tag: str) -> None:
            started[tag] = datetime.now(UTC)
            if len(started) == 2:
                both.set()

        q.start()
        tokyo = timezone(timedelta(hours=9))
        aware = (datetime.now(UTC) + timedelta(seconds=1)).astimezone(tokyo)
        naive = (datetime.now(UTC) + timedelta(seconds=1.2)).replace(tzinfo=None)
        a = q.add_job_with_options(Options(schedule=Schedule(start=aware)), mark, "aware")
        n = q.add_job_with_options(Options(schedule=Schedule(start=naive)), mark, "naive")
        with psycopg.connect(database_url) as conn:  # a caller's session in New York time
            tx = q.add_job_tx(conn, mark, "tx")
            created = conn.execute("SELECT created_at FROM job WHERE rid = %s", (tx.rid,)).fetchone()
            conn.rollback()
        assert created is not None and abs(created[0] - datetime.now(UTC).replace(tzinfo=None)) < timedelta(
            minutes=1
        )
        assert both.wait(10)
        assert started["aware"] >= aware and started["naive"] >= naive.replace(tzinfo=UTC)
        q.wait_for_job_finished(a.rid, 10)
        q.wait_for_job_finished(n.rid, 10)
        stored = dict(sql.execute("SELECT rid, scheduled_at FROM job_archive").fetchall())
        assert stored[a.rid] == aware.astimezone(UTC).replace(tzinfo=None)
        assert stored[n.rid] == naive
        options = sql.execute(
            "SELECT options -> 'schedule' ->> 'start' FROM job_archive WHERE rid = %s", (a.rid,)
        ).fetchone()
        assert options is not None and options[0].endswith("Z")  # RFC 3339 with an offset, for Go
    finally:
        q.stop()


def test_go_batch_row_with_future_start_waits_for_it(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    """Go's COPY writes QUEUED rows despite a schedule (§5.2): they still run at their start."""
    q = make_queuer("honours-start", 1, poll_interval=300)
    started: list[datetime] = []

    @q.task()
    async def go_batched() -> None:
        started.append(datetime.now(UTC))

    q.start()
    start = datetime.now(UTC) + timedelta(seconds=1)
    options = f'{{"schedule": {{"start": "{start.isoformat()}", "max_count": 1, "interval": 0}}}}'
    row = sql.execute(
        "INSERT INTO job (task_name, options, parameters) VALUES ('go_batched', %s::jsonb, '[]') RETURNING rid",
        (options,),
    ).fetchone()
    assert row is not None
    done = q.wait_for_job_finished(row[0], 10)
    assert done.status is JobStatus.SUCCEEDED and started[0] >= start


def test_retention_removes_only_old_archive_rows(
    make_queuer: QueuerFactory, sql: psycopg.Connection[Any]
) -> None:
    sql.execute("CREATE TEMP TABLE seq AS SELECT 1")  # (an unrelated table must not matter)
    q = make_queuer("janitor", 1)
    sql.execute(
        "INSERT INTO job_archive (id, task_name, status, updated_at) "
        "SELECT g, 'old', 'SUCCEEDED', (now() AT TIME ZONE 'UTC') - interval '3 days' FROM generate_series(1, 12000) g"
    )
    sql.execute(
        "INSERT INTO job_archive (id, task_name, status, updated_at) "
        "SELECT g, 'new', 'SUCCEEDED', (now() AT TIME ZONE 'UTC') - interval '1 hour' FROM generate_series(20001, 20010) g"
    )
    settings = MasterSettings(**{**FAST_MASTER.__dict__, "retention_archive": timedelta(days=1)})
    q.start(master_settings=settings)
    eventually(
        lambda: count(sql, "SELECT count(*) FROM job_archive WHERE task_name = 'old'") == 0,
        what="old rows gone",
    )
    assert count(sql, "SELECT count(*) FROM job_archive WHERE task_name = 'new'") == 10
    assert not sql.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'job_archive'::regclass AND NOT tgisinternal "
        "AND tgname <> 'job_archive_notify_event'"
    ).fetchone()[0]  # type: ignore[index]
